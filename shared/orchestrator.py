"""The job orchestrator: prepare → caption → compose → generate ×n → persist, on Durable Functions.

It is a deterministic generator, replayed many times by the Durable runtime: no clock (only
`context.current_utc_datetime`), no I/O, no environment reads. Activities receive and return
small JSON documents; images stay in storage. Every job ends with a manifest, whatever happened.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import azure.durable_functions as df

if TYPE_CHECKING:
    from .models import Stage

ORCHESTRATOR_NAME = "orchestrate_job"

# Transient failures (429s that outlast the SDK's own retries, 5xx, storage hiccups) get three
# attempts, 5 s apart. Permanent ones come back as values and are never retried.
RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=5_000, max_number_of_attempts=3)

JSON = dict[str, Any]
_ACTIVITY_PREFIX = re.compile(r"^(?:Orchestrator|Activity) function '[^']*' failed:\s*")
_ERROR_TYPE_PREFIX = re.compile(r"^(?:(?:Exception|Result: Failure):\s*)*(?:[A-Za-z_][\w.]*(?:Error|Exception):\s*)?")


def _report(context: df.DurableOrchestrationContext, stage: Stage, done: int = 0, total: int = 0) -> None:
    # The shape of models.ProgressStatus, built by hand: this module stays light to import.
    context.set_custom_status({"stage": stage, "done": done, "total": total, "message": None})


def _failure_message(stage: str, exc: Exception) -> str:
    """The part of an activity failure a user can act on.

    Durable hands the orchestrator `Exception(f"{Reason} \\n {Details}")`, where Reason reads
    "Activity function 'x' failed: SomeError: message" and Details may be JSON with a stack trace.
    """
    lines = [line.strip() for line in str(exc).split("\n") if line.strip()]
    # The Python worker may report "Result: Failure" then "Exception: <type>: <message>" then "Stack: ...".
    text = next((line for line in lines if line.startswith("Exception:")), lines[0] if lines else type(exc).__name__)
    text = _ACTIVITY_PREFIX.sub("", text)
    text = _ERROR_TYPE_PREFIX.sub("", text)
    return f"The job stopped while {stage}: {text[:400]}"


def _step(
    context: df.DurableOrchestrationContext, job: JSON, stage: Stage, activity: str, payload: JSON, key: str
) -> Generator[Any, Any, JSON | None]:
    """One activity: report the stage, run it with retries, record its result as job[key].

    None when the activity returned a problem (recorded as job["problem"]): the job stops there.
    """
    job["stage"] = stage
    _report(context, stage)
    result: JSON = yield context.call_activity_with_retry(activity, RETRY, payload)
    if "problem" in result:
        job["problem"] = result["problem"]
        return None
    job[key] = result
    return result


def _steps(context: df.DurableOrchestrationContext, job: JSON) -> Generator[Any, Any, None]:
    """Run the steps, recording each result in `job`; stop at the first problem or refusal."""
    request = job["request"]
    n = int(request["n"])

    prepared = yield from _step(context, job, "preparing", "prepare", request, "prepared")
    if prepared is None:
        return
    caption = yield from _step(context, job, "captioning", "caption", prepared, "caption")
    if caption is None:
        return
    composition = yield from _step(
        context, job, "composing", "compose", {"request": request, "caption": caption}, "composition"
    )
    if composition is None:
        return
    if composition["verdict"] != "allow":
        return  # refused: not a single image call

    job["stage"] = "generating"
    _report(context, "generating", 0, n)
    work = {"request": request, "prepared": prepared, "composition": composition}
    tasks = [context.call_activity_with_retry("generate", RETRY, {**work, "index": k}) for k in range(n)]
    # Fan out all n at once; wait for each in turn so the status can say "k of n", and so that no
    # generation is still running when the manifest is written (task_all would stop at a failure).
    pending = list(tasks)
    while pending:
        finished = yield context.task_any(pending)
        pending.remove(finished)
        _report(context, "generating", n - len(pending), n)
    job["variations"] = [
        {"index": k, "status": "failed", "provider": "unknown", "reason": _failure_message("generating", t.result)}
        if isinstance(t.result, Exception)
        else t.result
        for k, t in enumerate(tasks)
    ]


def orchestrate_job(context: df.DurableOrchestrationContext) -> Generator[Any, Any, JSON]:
    request: JSON = context.get_input()
    job: JSON = {"request": request, "stage": "queued"}
    try:
        yield from _steps(context, job)
    except Exception as exc:  # an activity failed after all its retries
        job["problem"] = {"status": "failed", "stage": job["stage"], "message": _failure_message(job["stage"], exc)}
    _report(context, "saving")
    job["finished_at"] = context.current_utc_datetime.isoformat()
    manifest: JSON = yield context.call_activity_with_retry("persist", RETRY, job)
    n = request["n"]
    context.set_custom_status({"stage": "done", "done": n, "total": n, "message": manifest["status"]})
    return manifest
