"""Activity `compose`: compose the output prompt, or a refusal, under the job's safety profile."""

from typing import Any

import azure.durable_functions as df

bp = df.Blueprint()


@bp.activity_trigger(input_name="payload")
def compose(payload: dict[str, Any]) -> dict[str, Any]:
    from shared.steps import run_step  # on first call, not at indexing: keeps cold start light

    return run_step("compose", payload)
