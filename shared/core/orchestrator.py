"""The job orchestrator: prepare → caption → compose → generate ×n → persist, on Durable Functions.

It is a deterministic generator, replayed many times by the Durable runtime: no clock (only
`context.current_utc_datetime`), no I/O, no environment reads. Activities receive and return
small JSON documents, each the JSON of a contract in `models.py`; images stay in storage. The
job's record is a `JobRecord`, filled step by step. Every job ends with a manifest, whatever
happened.

The models are imported when the orchestrator first runs, not when the app is indexed: this
module is imported at every cold start and stays light.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import azure.durable_functions as df

if TYPE_CHECKING:
    from pydantic import TypeAdapter

    from shared.core.models import JobRecord, Stage

ORCHESTRATOR_NAME = "orchestrate_job"

# Steps before and after the fan-out: a transient failure (a 429 or 5xx with budget left, an
# unreachable store) raises and the step runs again, 5 s later, up to three runs. A paid call
# still gets at most 2 attempts in all: the spend budget counts them across runs, and a run that
# finds the budget spent returns the last answer as a Problem instead of calling again.
# Permanent outcomes come back as values and are never retried.
RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=5_000, max_number_of_attempts=3)
# A generation gets at most GENERATE_ROUNDS rounds for a transient answer. The generate step
# marks a failure retryable while the spend budget (shared/core/budget.py) has room: 2 billed
# attempts, and 3 more turned away by a 429 (not billed), at most one round each.
GENERATE_ROUNDS = 5
GENERATE_RETRY_DELAY = timedelta(seconds=5)  # when the service did not say how long to wait
MIN_RETRY_DELAY = timedelta(seconds=1)  # a durable timer's useful floor
MAX_RETRY_DELAY = timedelta(seconds=60)
# The host failing a generate activity (a timeout, a lost worker) gets one more try.
RETRY_HOST_FAULT = df.RetryOptions(first_retry_interval_in_milliseconds=5_000, max_number_of_attempts=2)

JSON = dict[str, Any]
_ACTIVITY_PREFIX = re.compile(r"^(?:Orchestrator|Activity) function '[^']*' failed:\s*")
_ERROR_TYPE_PREFIX = re.compile(r"^(?:(?:Exception|Result: Failure):\s*)*(?:[A-Za-z_][\w.]*(?:Error|Exception):\s*)?")


def _report(context: df.DurableOrchestrationContext, stage: Stage, done: int = 0, total: int = 0) -> None:
    # The shape of models.ProgressStatus, built by hand: this module stays light to import.
    context.set_custom_status({"stage": stage, "done": done, "total": total, "message": None})


def failure_message(stage: str, exc: Exception) -> str:
    """The part of an activity failure a user can act on.

    Durable hands the orchestrator `Exception(f"{Reason} \\n {Details}")`, where Reason reads
    "Activity function 'x' failed: SomeError: message" and Details may be JSON with a stack trace.
    """
    lines = [line.strip() for line in str(exc).split("\n") if line.strip()]
    # The Python worker may report "Result: Failure" then "Exception: <type>: <message>" then "Stack: ...".
    text = next((line for line in lines if line.startswith("Exception:")), lines[0] if lines else type(exc).__name__)
    text = _ACTIVITY_PREFIX.sub("", text)
    text = _ERROR_TYPE_PREFIX.sub("", text)
    text = text[:400].rstrip(".")
    return f"The job stopped while {stage}: {text}. Send it again; if it stops again, the app's logs say why."


def _step(
    context: df.DurableOrchestrationContext,
    job: JobRecord,
    stage: Stage,
    activity: str,
    payload: Any,
    outcome: TypeAdapter[Any],
) -> Generator[Any, Any, Any]:
    """One activity: report the stage, run it with retries, and read its outcome.

    None when the activity returned a problem (recorded as job.problem): the job stops there.
    """
    from shared.core.models import Problem

    job.stage = stage
    _report(context, stage)
    result = outcome.validate_python((yield context.call_activity_with_retry(activity, RETRY, payload)))
    if isinstance(result, Problem):
        job.problem = result
        return None
    return result


def _steps(context: df.DurableOrchestrationContext, job: JobRecord) -> Generator[Any, Any, None]:
    """Run the steps, recording each result in `job`; stop at the first problem or refusal."""
    from shared.core.models import Captioned, Composed, Prepared, Variation

    request = job.request.model_dump(mode="json")
    job.prepared = yield from _step(context, job, "preparing", "prepare", request, Prepared)
    if job.prepared is None:
        return
    prepared = job.prepared.model_dump(mode="json")
    job.caption = yield from _step(context, job, "captioning", "caption", prepared, Captioned)
    if job.caption is None:
        return
    compose_input = {"request": request, "caption": job.caption.model_dump(mode="json")}
    job.composition = yield from _step(context, job, "composing", "compose", compose_input, Composed)
    if job.composition is None or job.composition.verdict != "allow":
        return  # a problem, or refused: not a single image call

    job.stage = "generating"
    work = {"request": request, "prepared": prepared, "composition": job.composition.model_dump(mode="json")}
    variations = yield from _generate_all(context, work, job.request.n)
    job.variations = [Variation.model_validate(v) for v in variations]


def _generate_all(context: df.DurableOrchestrationContext, work: JSON, n: int) -> Generator[Any, Any, list[JSON]]:
    """All n variations: their quota slots reserved, then their image requests fanned out at once.

    Each round first asks the `reserve` step for the job's image requests and their slots in the
    quota every instance shares (shared/adapters/quota.py), then waits for the first slot on a
    durable timer (no activity is held while the job waits its turn), then runs the requests with
    one `task_all`: the fan-out the Durable extension replays the same way under every replay
    schema (a loop of `task_any` can hang under the schema bundle v4 uses). The generate step
    never raises for a service answer: it returns failed variations, marked `retryable` when a
    later attempt may work, so `task_all` always waits for every image and no generation is
    still running when the manifest is written. Retryable failures get another round, after a
    durable timer.
    """
    results: dict[int, JSON] = {}
    todo = list(range(n))
    avoid: list[str] = []
    job_id = work["request"]["job_id"]
    for attempt in range(1, GENERATE_ROUNDS + 1):
        if attempt > 1:
            yield context.create_timer(context.current_utc_datetime + _retry_delay([results[k] for k in todo]))
        _report(context, "generating", _delivered(results), n)
        plan: JSON = yield context.call_activity_with_retry(
            "reserve", RETRY, {"job_id": job_id, "indices": todo, "avoid": avoid}
        )
        if plan.get("kind") == "problem":  # storage refused the schedule (full, read-only): no image call
            results.update({k: _failed(k, plan["code"], plan["message"]) for k in todo})
            break
        requests: list[JSON] = plan["requests"]
        first = min(float(r["not_before"]) for r in requests)
        if first > 0:
            start = datetime.fromtimestamp(first, UTC)
            if start - context.current_utc_datetime >= MIN_RETRY_DELAY:
                yield context.create_timer(start)  # the job's turn in the shared quota
        tasks = [
            context.call_activity_with_retry(
                "generate",
                RETRY_HOST_FAULT,
                {**work, "index": r["indices"][0], "indices": r["indices"], "deployment": r["deployment"],
                 "not_before": r["not_before"], "attempt": attempt},
            )
            for r in requests
        ]  # fmt: skip
        try:
            outcomes: list[JSON] = yield context.task_all(tasks)
        except Exception as exc:  # the host itself failed an activity (timeout, crash) twice
            outcomes = [
                t.result
                if t.is_completed and not isinstance(t.result, Exception)
                else {"variations": [_failed(k, "internal", failure_message("generating", exc)) for k in r["indices"]]}
                for r, t in zip(requests, tasks, strict=True)
            ]  # fmt: skip
        for outcome in outcomes:
            # A generate step of an earlier version (still in a running job's history) answered one variation.
            for variation in outcome["variations"] if "variations" in outcome else [outcome]:
                results[variation["index"]] = variation
        todo = [k for k in todo if results[k]["status"] == "failed" and results[k].get("retryable")]
        avoid = sorted({str(results[k]["deployment"]) for k in todo if results[k].get("deployment")})
        if not todo:
            break
    _report(context, "generating", _delivered(results), n)
    return [results[k] for k in range(n)]


def _failed(index: int, code: str, reason: str) -> JSON:
    return {"index": index, "status": "failed", "provider": "unknown", "code": code, "reason": reason}


def _retry_delay(retrying: list[JSON]) -> timedelta:
    """As long as the service asked (its retry-after, 1 s to a minute), else GENERATE_RETRY_DELAY.

    A 429's retry-after says when the window has room again: waiting longer only leaves quota
    unused. A 5xx says nothing, and gets the default pause. With several deployments (a
    variation then names its deployment), a 429 waits only the floor: the shared quota holds that
    deployment off for its retry-after, and the next round's slots come from another one.
    """
    if all(v.get("code") == "quota_exhausted" and v.get("deployment") for v in retrying):
        return MIN_RETRY_DELAY
    asked = [float(v["retry_after_s"]) for v in retrying if v.get("retry_after_s") is not None]
    if not asked or len(asked) < len(retrying):
        return min(max(GENERATE_RETRY_DELAY, timedelta(seconds=max(asked, default=0.0))), MAX_RETRY_DELAY)
    return min(max(MIN_RETRY_DELAY, timedelta(seconds=max(asked))), MAX_RETRY_DELAY)


def _delivered(results: dict[int, JSON]) -> int:
    return sum(1 for v in results.values() if v["status"] == "succeeded")


def orchestrate_job(context: df.DurableOrchestrationContext) -> Generator[Any, Any, JSON]:
    from shared.core.models import JobRecord, JobRequest, Problem

    job = JobRecord(request=JobRequest.model_validate(context.get_input()))
    try:
        yield from _steps(context, job)
    except Exception as exc:  # an activity failed after all its retries
        job.problem = Problem(
            status="failed", code="internal", stage=job.stage, message=failure_message(job.stage, exc)
        )
    _report(context, "saving")
    job.finished_at = context.current_utc_datetime.isoformat()
    manifest: JSON = yield context.call_activity_with_retry("persist", RETRY, job.model_dump(mode="json"))
    n = job.request.n
    context.set_custom_status({"stage": "done", "done": n, "total": n, "message": manifest["status"]})
    return manifest
