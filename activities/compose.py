"""Activity `compose`: compose the output prompt, or a refusal, under the job's safety profile."""

from typing import Any

import azure.durable_functions as df

from shared.steps import run_step

bp = df.Blueprint()


@bp.activity_trigger(input_name="payload")
def compose(payload: dict[str, Any]) -> dict[str, Any]:
    return run_step("compose", payload)
