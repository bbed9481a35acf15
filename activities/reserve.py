"""Activity `reserve`: a job's image requests for one round, each with its slot in the shared quota."""

import azure.durable_functions as df

bp = df.Blueprint()


@bp.activity_trigger(input_name="payload")
def reserve(payload: dict) -> dict:  # `dict`, not `dict[str, Any]`: see activities/__init__.py
    from shared.core.steps import run_step  # on first call, not at indexing: keeps cold start light

    return run_step("reserve", payload)
