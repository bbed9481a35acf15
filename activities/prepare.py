"""Activity `prepare`: check the prompt, then validate and normalize the source image into work/{job}/source."""

import azure.durable_functions as df

bp = df.Blueprint()


@bp.activity_trigger(input_name="payload")
def prepare(payload: dict) -> dict:  # `dict`, not `dict[str, Any]`: see activities/__init__.py
    from shared.core.steps import run_step  # on first call, not at indexing: keeps cold start light

    return run_step("prepare", payload)
