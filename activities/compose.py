"""Activity `compose`: compose the output prompt, or a refusal, under the job's safety profile."""

import azure.durable_functions as df

bp = df.Blueprint()


@bp.activity_trigger(input_name="payload")
def compose(payload: dict) -> dict:  # `dict`, not `dict[str, Any]`: see activities/__init__.py
    from shared.core.steps import run_step  # on first call, not at indexing: keeps cold start light

    return run_step("compose", payload)
