"""Activity `persist`: write outputs/{job}/manifest.json, the job's commit point."""

from typing import Any

import azure.durable_functions as df

bp = df.Blueprint()


@bp.activity_trigger(input_name="payload")
def persist(payload: dict[str, Any]) -> dict[str, Any]:
    from shared.steps import run_step  # on first call, not at indexing: keeps cold start light

    return run_step("persist", payload)
