"""Run the real orchestrator in process, through the azure-functions-durable SDK's own replay engine.

The CLI, the local server and the tests use this instead of the Functions host: the same
`orchestrate_job` generator is replayed by `Orchestrator.handle()` on a history this driver
writes (OrchestratorStarted, ExecutionStarted, TaskScheduled, TaskCompleted/TaskFailed,
TimerCreated/TimerFired for retries), and activities run in a thread pool so fan-out is parallel.

One completion is added per episode, as the Durable host may do. The SDK numbers its tasks in
the order it creates them; the driver keeps the same count (`_next_task_id`) so that every
completion event names the task the SDK expects.
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

from .jobs import JobAlreadyExists, JobState
from .models import JobRequest

Activity = Callable[[Any], Any]
StatusCallback = Callable[[str, dict[str, Any] | None], None]

# HistoryEventType values of the Durable Task framework.
ORCHESTRATOR_STARTED, EXECUTION_STARTED = 12, 0
TASK_SCHEDULED, TASK_COMPLETED, TASK_FAILED = 4, 5, 6
TIMER_CREATED, TIMER_FIRED = 10, 11
# Action types the SDK asks for.
CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY, WHEN_ALL, WHEN_ANY = 0, 1, 12, 11


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
    """Runs orchestrations in process. Also a `JobClient`, so HTTP handlers can use it directly."""

    def __init__(
        self,
        orchestrator: Callable[[DurableOrchestrationContext], Any],
        activities: Mapping[str, Activity],
        max_workers: int = 8,
        retry_scale: float = 1.0,
    ) -> None:
        self._orchestrator = orchestrator
        self._activities = activities
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="activity")
        self._retry_scale = retry_scale  # tests shrink Durable's retry intervals
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

    # ---- running -------------------------------------------------------------------------------
    def start_background(self, instance_id: str, input_: Any, on_status: StatusCallback | None = None) -> Instance:
        """Start an orchestration on its own thread; raises JobAlreadyExists for a known id."""
        with self._lock:
            if instance_id in self._instances:
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
        self.completions: queue.Queue[tuple[_Attempt, bool, Any]] = queue.Queue()
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
        state = replay(self.rt._orchestrator, self.inst.instance_id, self.inst.input, self.history)
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
        flat = [action for episode in state.get("actions", []) for action in episode]
        for action in flat[self.handled_actions :]:
            self.handled_actions += 1
            yield from _atomic(action)

    def _schedule_new(self, state: dict[str, Any]) -> None:
        for action in self._new_actions(state):
            kind = action["actionType"]
            if kind not in (CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY):
                raise OrchestrationFailed(f"The local runtime does not support action type {kind}.")
            attempt = _Attempt(self.next_task_id, action["functionName"], action.get("input"))
            self.next_task_id += 1
            if kind == CALL_ACTIVITY_WITH_RETRY:
                options = action["retryOptions"]
                attempt.max_attempts = int(options["maxNumberOfAttempts"])
                attempt.interval_s = options["firstRetryIntervalInMilliseconds"] / 1000 * self.rt._retry_scale
            self._submit(attempt)

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
        attempt, ok, value = self.completions.get()
        self.in_flight -= 1
        self._event(ORCHESTRATOR_STARTED)
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


def replay(
    orchestrator: Callable[[DurableOrchestrationContext], Any],
    instance_id: str,
    input_: Any,
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    """One replay of `orchestrator` on `history` by the SDK's engine: the state it returns to the host."""
    context = {
        "history": history,
        "instanceId": instance_id,
        "isReplaying": False,
        "parentInstanceId": None,
        "input": json.dumps(input_),
    }
    handled = Orchestrator(orchestrator).handle(DurableOrchestrationContext.from_json(json.dumps(context)))
    state: dict[str, Any] = json.loads(handled)
    return state


def _atomic(action: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The atomic actions inside an action (task_all / task_any nest them under compoundActions)."""
    if action["actionType"] in (WHEN_ALL, WHEN_ANY):
        for child in action.get("compoundActions", []):
            yield from _atomic(child)
    else:
        yield action
