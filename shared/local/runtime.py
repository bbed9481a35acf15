"""Run the real orchestrator in process, through the azure-functions-durable SDK's own replay engine.

The CLI, the local server and the tests use this instead of the Functions host: the same
`orchestrate_job` generator is replayed by `Orchestrator.handle()` on a history this driver
writes (OrchestratorStarted, ExecutionStarted, TaskScheduled, TaskCompleted/TaskFailed,
TimerCreated/TimerFired for retries), and activities run in a thread pool so fan-out is parallel.

The orchestration context carries the replay schema the Durable extension in extension bundle
v4 announces (`upperSchemaVersion` / `upperSchemaVersionNew`), so the SDK answers with the
actions Azure sees (nested WhenAll under schema V3), not the flat V1 list it falls back to.

One completion is added per episode, as the Durable host may do. The SDK numbers its tasks in
the order it creates them; the driver keeps the same count (`next_task_id`) so that every
completion event names the task the SDK expects.

How an episode is replayed and how an activity runs are parameters (`Replayer`, `Activity`): the
CLI and server replay in process; the host-contract tests replay through the Python worker.
"""

from __future__ import annotations

import datetime as dt
import json
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from azure.durable_functions import DurableOrchestrationContext, Orchestrator

from shared.core.jobs import JobAlreadyExists, JobState
from shared.core.models import JobRequest

Activity = Callable[[Any], Any]
StatusCallback = Callable[[str, dict[str, Any] | None], None]
# (instance id, orchestration input, history) -> the orchestrator's state JSON for that episode
Replayer = Callable[[str, Any, list[dict[str, Any]]], dict[str, Any]]

# What the Durable extension (WebJobs.Extensions.DurableTask, extension bundle v4) puts beside the
# history in every orchestration context: its replay schema range (SchemaVersion V2 = 1, V3 = 2,
# so the Python SDK replays under its ReplaySchema.V3) and the Azure Storage backend's timer limits.
EXTENSION_CONTEXT: dict[str, Any] = {
    "upperSchemaVersion": 1,
    "upperSchemaVersionNew": 2,
    "maximumShortTimerDuration": "6.00:00:00",
    "longRunningTimerIntervalDuration": "3.00:00:00",
    "defaultHttpAsyncRequestSleepTimeMillseconds": 30000,
}

# HistoryEventType values of the Durable Task framework.
ORCHESTRATOR_STARTED, EXECUTION_STARTED = 12, 0
TASK_SCHEDULED, TASK_COMPLETED, TASK_FAILED = 4, 5, 6
TIMER_CREATED, TIMER_FIRED = 10, 11
# Action types the SDK asks for.
CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY, CREATE_TIMER, WHEN_ALL, WHEN_ANY = 0, 1, 5, 12, 11


class OrchestrationFailed(RuntimeError):
    """The orchestrator itself raised (not an activity): a bug, never a user error."""


@dataclass
class _Attempt:
    """One run of one activity: its SDK task id and, for retried calls, how it may retry."""

    task_id: int
    name: str
    input: Any
    max_attempts: int = 1
    interval_s: float = 0.0
    attempt: int = 1


@dataclass
class _Timer:
    """A durable timer the orchestrator asked for (`create_timer`)."""

    task_id: int
    fire_at: dt.datetime


@dataclass
class Instance:
    """One orchestration's state, as the local runtime keeps it."""

    instance_id: str
    input: Any
    runtime_status: str = "Pending"
    custom_status: dict[str, Any] | None = None
    output: Any = None
    error: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


class LocalRuntime:
    """Runs orchestrations in process. Also a `JobClient`, so HTTP handlers can use it directly.

    `replayer` replays one episode (default: the SDK's engine in this process); `retry_scale`
    shrinks retry intervals and durable timers (tests), never the quota.
    """

    def __init__(
        self,
        orchestrator: Callable[[DurableOrchestrationContext], Any],
        activities: Mapping[str, Activity],
        max_workers: int = 8,
        retry_scale: float = 1.0,
        replayer: Replayer | None = None,
    ) -> None:
        self._activities = activities
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="activity")
        self._retry_scale = retry_scale
        self._replayer: Replayer = replayer or (lambda iid, inp, history: replay(orchestrator, iid, inp, history))
        self._instances: dict[str, Instance] = {}
        self._lock = threading.Lock()

    # ---- JobClient ---------------------------------------------------------------------------
    async def status(self, job_id: str) -> JobState | None:
        inst = self._instances.get(job_id)
        if inst is None:
            return None
        return JobState(job_id, inst.runtime_status, inst.custom_status, inst.output)

    async def start(self, request: JobRequest) -> None:
        self.start_background(request.job_id, request.model_dump(mode="json"))

    def get(self, instance_id: str) -> Instance | None:
        return self._instances.get(instance_id)

    # ---- running -------------------------------------------------------------------------------
    def start_background(
        self, instance_id: str, input_: Any, on_status: StatusCallback | None = None, replace_finished: bool = False
    ) -> Instance:
        """Start an orchestration on its own thread; raises JobAlreadyExists for a known id.

        `replace_finished` replaces a finished instance of that id, as the Durable extension does
        (host.json `overridableExistingInstanceStates`); a running one always raises.
        """
        with self._lock:
            existing = self._instances.get(instance_id)
            if existing is not None and not (replace_finished and existing.done.is_set()):
                raise JobAlreadyExists(instance_id)
            inst = self._instances[instance_id] = Instance(instance_id, input_)
        threading.Thread(target=self._drive, args=(inst, on_status), daemon=True, name=f"orch-{instance_id}").start()
        return inst

    def run(self, instance_id: str, input_: Any, on_status: StatusCallback | None = None) -> Instance:
        """Run an orchestration to its end and return it (check `runtime_status`, `output`)."""
        inst = self.start_background(instance_id, input_, on_status)
        inst.done.wait()
        return inst

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)

    def _drive(self, inst: Instance, on_status: StatusCallback | None) -> None:
        try:
            inst.runtime_status = "Running"
            _Driver(self, inst, on_status).run()
        except Exception as exc:  # noqa: BLE001 - recorded on the instance, as the host would
            inst.runtime_status, inst.error = "Failed", str(exc)
        finally:
            if on_status:
                on_status(inst.runtime_status, inst.custom_status)
            inst.done.set()


class _Driver:
    """Writes one orchestration's history and replays the orchestrator on it until it is done."""

    def __init__(self, runtime: LocalRuntime, inst: Instance, on_status: StatusCallback | None) -> None:
        self.rt = runtime
        self.inst = inst
        self.on_status = on_status
        self.history = inst.history
        self.completions: queue.Queue[tuple[_Attempt | _Timer, bool, Any]] = queue.Queue()
        self.handled_actions = 0
        self.next_task_id = 0  # mirrors the SDK's task sequence number
        self.in_flight = 0
        self.clock = dt.datetime.now(dt.UTC)

    def _event(self, event_type: int, **fields: Any) -> None:
        # Timestamps only move forward, as in a real history.
        self.clock = max(self.clock + dt.timedelta(microseconds=1), dt.datetime.now(dt.UTC))
        event = {"EventType": event_type, "EventId": -1, "IsPlayed": False, "Timestamp": self.clock.isoformat()}
        event.update(fields)
        self.history.append(event)

    def _replay(self) -> dict[str, Any]:
        state = self.rt._replayer(self.inst.instance_id, self.inst.input, self.history)
        for event in self.history:
            event["IsPlayed"] = True  # the next episode replays these as the past
        custom = state.get("customStatus")
        if custom != self.inst.custom_status:
            self.inst.custom_status = custom
            if self.on_status:
                self.on_status(self.inst.runtime_status, custom)
        return state

    def run(self) -> None:
        self._event(ORCHESTRATOR_STARTED)
        self._event(EXECUTION_STARTED, Input=json.dumps(self.inst.input), Name="orchestrator", Version="")
        while True:
            state = self._replay()
            if state.get("isDone"):
                self.inst.output = state.get("output")
                self.inst.runtime_status = "Completed"
                return
            if state.get("error"):
                raise OrchestrationFailed(state["error"])
            self._schedule_new(state)
            if self.in_flight == 0:
                raise OrchestrationFailed("The orchestrator is waiting for nothing (no task in flight).")
            self._complete_one()

    def _new_actions(self, state: dict[str, Any]) -> Iterator[dict[str, Any]]:
        # V1 sends one list of actions per episode, V2 and later one growing list: either way the
        # atomic actions appear in the order the SDK created them, old ones first.
        flat = [atomic for episode in state.get("actions", []) for action in episode for atomic in _atomic(action)]
        for action in flat[self.handled_actions :]:
            self.handled_actions += 1
            yield action

    def _schedule_new(self, state: dict[str, Any]) -> None:
        for action in self._new_actions(state):
            kind = action["actionType"]
            task_id = self.next_task_id
            self.next_task_id += 1
            if kind == CREATE_TIMER:
                self._start_timer(_Timer(task_id, dt.datetime.fromisoformat(action["fireAt"])))
                continue
            if kind not in (CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY):
                raise OrchestrationFailed(f"The local runtime does not support action type {kind}.")
            attempt = _Attempt(task_id, action["functionName"], action.get("input"))
            if kind == CALL_ACTIVITY_WITH_RETRY:
                options = action["retryOptions"]
                attempt.max_attempts = int(options["maxNumberOfAttempts"])
                attempt.interval_s = options["firstRetryIntervalInMilliseconds"] / 1000 * self.rt._retry_scale
            self._submit(attempt)

    def _start_timer(self, timer: _Timer) -> None:
        self._event(TIMER_CREATED, EventId=timer.task_id, FireAt=timer.fire_at.isoformat())
        self.in_flight += 1
        delay = max(0.0, (timer.fire_at - dt.datetime.now(dt.UTC)).total_seconds()) * self.rt._retry_scale
        threading.Timer(delay, self.completions.put, args=((timer, True, None),)).start()

    def _submit(self, attempt: _Attempt) -> None:
        self._event(TASK_SCHEDULED, EventId=attempt.task_id, Name=attempt.name)
        self.in_flight += 1
        self.rt._pool.submit(self._execute, attempt)

    def _execute(self, attempt: _Attempt) -> None:
        payload = attempt.input
        if isinstance(payload, str):
            payload = json.loads(payload)  # the SDK hands activity input over as JSON text
        try:
            result = self.rt._activities[attempt.name](payload)
            self.completions.put((attempt, True, result))
        except Exception as exc:  # noqa: BLE001 - becomes a TaskFailed event, as in the host
            self.completions.put((attempt, False, exc))

    def _complete_one(self) -> None:
        item, ok, value = self.completions.get()
        self.in_flight -= 1
        self._event(ORCHESTRATOR_STARTED)
        if isinstance(item, _Timer):
            self._event(TIMER_FIRED, TimerId=item.task_id, FireAt=item.fire_at.isoformat())
            return
        attempt = item
        if ok:
            self._event(TASK_COMPLETED, TaskScheduledId=attempt.task_id, Result=json.dumps(value))
            return
        # Shaped as the Functions host reports a failed activity.
        reason = f"Activity function '{attempt.name}' failed: {type(value).__name__}: {value}"
        details = json.dumps({"Message": reason, "StackTrace": "".join(traceback.format_exception(value))})
        self._event(TASK_FAILED, TaskScheduledId=attempt.task_id, Reason=reason, Details=details)
        if attempt.max_attempts <= 1:
            return
        # A failed retryable call: the SDK creates a timer task (next id) on the failure, and a
        # rescheduled task (the id after) when the timer fires, unless the attempts are used up.
        timer_id = self.next_task_id
        self.next_task_id += 1
        fire_at = self.clock + dt.timedelta(seconds=attempt.interval_s)
        self._event(TIMER_CREATED, EventId=timer_id, FireAt=fire_at.isoformat())
        time.sleep(attempt.interval_s)
        self._event(ORCHESTRATOR_STARTED)
        self._event(TIMER_FIRED, TimerId=timer_id, FireAt=fire_at.isoformat())
        if attempt.attempt < attempt.max_attempts:
            retry = _Attempt(
                self.next_task_id,
                attempt.name,
                attempt.input,
                attempt.max_attempts,
                attempt.interval_s,
                attempt.attempt + 1,
            )
            self.next_task_id += 1
            self._submit(retry)


def orchestration_context(instance_id: str, input_: Any, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The orchestration trigger's JSON, as the Durable extension sends it to the Python worker."""
    return {
        "history": history,
        "instanceId": instance_id,
        "isReplaying": False,
        "parentInstanceId": None,
        "input": json.dumps(input_),
        **EXTENSION_CONTEXT,
    }


def replay(
    orchestrator: Callable[[DurableOrchestrationContext], Any],
    instance_id: str,
    input_: Any,
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    """One replay of `orchestrator` on `history` by the SDK's engine: the state it returns to the host."""
    context = json.dumps(orchestration_context(instance_id, input_, history))
    handled = Orchestrator(orchestrator).handle(DurableOrchestrationContext.from_json(context))
    state: dict[str, Any] = json.loads(handled)
    return state


def _atomic(action: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The atomic actions inside an action (task_all / task_any nest them under compoundActions)."""
    if action["actionType"] in (WHEN_ALL, WHEN_ANY):
        for child in action.get("compoundActions", []):
            yield from _atomic(child)
    else:
        yield action
