"""Activity `prepare`: check the prompt, then validate and normalize the source image into work/{job}/source.png."""

from typing import Any

import azure.durable_functions as df

bp = df.Blueprint()


@bp.activity_trigger(input_name="payload")
def prepare(payload: dict[str, Any]) -> dict[str, Any]:
    from shared.steps import run_step  # on first call, not at indexing: keeps cold start light

    return run_step("prepare", payload)
