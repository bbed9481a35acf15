"""Activity `caption`: caption the normalized image (AI Vision, chat or offline), cached by image sha256."""

from typing import Any

import azure.durable_functions as df

bp = df.Blueprint()


@bp.activity_trigger(input_name="payload")
def caption(payload: dict[str, Any]) -> dict[str, Any]:
    from shared.steps import run_step  # on first call, not at indexing: keeps cold start light

    return run_step("caption", payload)
