"""Activity `generate`: one image request of a job (one variation, or several in one request); skips stored ones."""

import azure.durable_functions as df

bp = df.Blueprint()


@bp.activity_trigger(input_name="payload")
def generate(payload: dict) -> dict:  # `dict`, not `dict[str, Any]`: see activities/__init__.py
    from shared.core.steps import run_step  # on first call, not at indexing: keeps cold start light

    return run_step("generate", payload)
