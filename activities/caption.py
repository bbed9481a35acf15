"""Activity `caption`: caption the normalized image (AI Vision, chat or offline), cached by image sha256."""

import azure.durable_functions as df

bp = df.Blueprint()


@bp.activity_trigger(input_name="payload")
def caption(payload: dict) -> dict:  # `dict`, not `dict[str, Any]`: see activities/__init__.py
    from shared.core.steps import run_step  # on first call, not at indexing: keeps cold start light

    return run_step("caption", payload)
