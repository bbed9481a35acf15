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

With an `InstanceStore` the runtime is durable, as the Durable host is: each orchestration's
record (history, status, the work scheduled and not yet finished) is saved in storage whenever
its history grows, and before any activity it schedules is dispatched. `resume_unfinished()`
picks every unfinished orchestration up where its record stops: activities whose completion was
not recorded run again (they are idempotent), timers fire at their time. `shutdown()` lets the
running activities finish, records their results and what was scheduled next, and stops; the
next start resumes from there.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from azure.durable_functions import DurableOrchestrationContext, Orchestrator

from shared import telemetry
from shared.core.jobs import JobAlreadyExists, JobState
from shared.core.models import JobRequest
from shared.local.store import InstanceStore

Activity = Callable[[Any], Any]
StatusCallback = Callable[[str, dict[str, Any] | None], None]
# (instance id, orchestration input, history) -> the orchestrator's state JSON for that episode
Replayer = Callable[[str, Any, list[dict[str, Any]]], dict[str, Any]]

log = logging.getLogger("varia.runtime")

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


class _Limits:
    """How many activities of each name may run at once, asked again each time one is to start.

    `limit(name)` may change while the runtime runs (the image workers follow the measured image
    latency): an activity over its limit waits in its pool thread until one of its kind ends.
    """

    def __init__(self, limit: Callable[[str], int]) -> None:
        self._limit = limit
        self._running: dict[str, int] = {}
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def running(self, name: str) -> Iterator[None]:
        with self._changed:
            while self._running.get(name, 0) >= max(1, self._limit(name)):
                self._changed.wait(timeout=1.0)  # the limit itself may rise meanwhile
            self._running[name] = self._running.get(name, 0) + 1
        try:
            yield
        finally:
            with self._changed:
                self._running[name] -= 1
                self._changed.notify_all()


class OrchestrationFailed(RuntimeError):
    """The orchestrator itself raised (not an activity): a bug, never a user error."""


class _Stopped(Exception):
    """The runtime is shutting down: the driver has recorded its orchestration and stops."""


_WAKE = object()  # put in a driver's queue so that it looks at the stop flag
FINISHED = ("Completed", "Failed")


@dataclass
class _Attempt:
    """One run of one activity: its SDK task id and, for retried calls, how it may retry."""

    task_id: int
    name: str
    input: Any
    max_attempts: int = 1
    interval_s: float = 0.0
    attempt: int = 1

    def record(self) -> dict[str, Any]:
        return {"kind": "activity", **asdict(self)}


@dataclass
class _Timer:
    """A durable timer: one the orchestrator asked for (`create_timer`), or the delay before a retry."""

    task_id: int
    fire_at: dt.datetime
    retry: _Attempt | None = None  # the failed attempt of a call_activity_with_retry this timer delays

    def record(self) -> dict[str, Any]:
        retry = asdict(self.retry) if self.retry else None
        return {"kind": "timer", "task_id": self.task_id, "fire_at": self.fire_at.isoformat(), "retry": retry}


def _pending_from(record: dict[str, Any]) -> _Attempt | _Timer:
    fields = {k: v for k, v in record.items() if k != "kind"}
    if record["kind"] == "activity":
        return _Attempt(**fields)
    retry = _Attempt(**fields["retry"]) if fields.get("retry") else None
    return _Timer(fields["task_id"], dt.datetime.fromisoformat(fields["fire_at"]), retry)


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
    generation: int = 0  # a new start of a finished instance id is the next generation
    driver_state: dict[str, Any] = field(default_factory=dict)  # as last recorded: pending work, counters

    def record(self) -> dict[str, Any]:
        """What the store keeps (without the driver's part)."""
        return {
            "instance_id": self.instance_id,
            "generation": self.generation,
            "input": self.input,
            "runtime_status": self.runtime_status,
            "custom_status": self.custom_status,
            "output": self.output,
            "error": self.error,
            "history": self.history,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Instance:
        inst = cls(
            record["instance_id"],
            record["input"],
            record["runtime_status"],
            record.get("custom_status"),
            record.get("output"),
            record.get("error"),
            record.get("history") or [],
            generation=int(record.get("generation", 0)),
            driver_state=record.get("driver") or {},
        )
        if inst.runtime_status in FINISHED:
            inst.done.set()
        return inst


class LocalRuntime:
    """Runs orchestrations in process. Also a `JobClient`, so HTTP handlers can use it directly.

    `replayer` replays one episode (default: the SDK's engine in this process); `retry_scale`
    shrinks retry intervals and durable timers (tests), never the quota. With a `store` every
    orchestration is recorded in storage and survives the process (see the module's docstring).
    """

    def __init__(
        self,
        orchestrator: Callable[[DurableOrchestrationContext], Any],
        activities: Mapping[str, Activity],
        max_workers: int = 8,
        retry_scale: float = 1.0,
        replayer: Replayer | None = None,
        store: InstanceStore | None = None,
        limit: Callable[[str], int] | None = None,
    ) -> None:
        self._activities = activities
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="activity")
        self._limits = _Limits(limit) if limit is not None else None
        self._retry_scale = retry_scale
        self._replayer: Replayer = replayer or (lambda iid, inp, history: replay(orchestrator, iid, inp, history))
        self._store = store
        self._instances: dict[str, Instance] = {}
        self._drivers: dict[str, tuple[threading.Thread, _Driver]] = {}
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    @property
    def durable(self) -> bool:
        """Whether orchestrations are recorded in storage (and so survive a restart)."""
        return self._store is not None

    # ---- JobClient ---------------------------------------------------------------------------
    async def status(self, job_id: str) -> JobState | None:
        inst = self.get(job_id)
        if inst is None:
            return None
        return JobState(job_id, inst.runtime_status, inst.custom_status, inst.output)

    async def start(self, request: JobRequest) -> None:
        self.start_background(request.job_id, request.model_dump(mode="json"))

    def get(self, instance_id: str) -> Instance | None:
        """The instance, from memory or, for one recorded by an earlier process, from the store."""
        with self._lock:
            inst = self._instances.get(instance_id)
        if inst is not None or self._store is None:
            return inst
        record = self._store.load(instance_id)
        if record is None:
            return None
        with self._lock:
            return self._instances.setdefault(instance_id, Instance.from_record(record))

    # ---- running -------------------------------------------------------------------------------
    def start_background(
        self, instance_id: str, input_: Any, on_status: StatusCallback | None = None, replace_finished: bool = False
    ) -> Instance:
        """Start an orchestration on its own thread; raises JobAlreadyExists for a known id.

        `replace_finished` replaces a finished instance of that id, as the Durable extension does
        (host.json `overridableExistingInstanceStates`); a running one always raises. An
        instance recorded unfinished by an earlier process is resumed, not started again.
        """
        self.get(instance_id)  # loads a recorded instance
        with self._lock:
            existing = self._instances.get(instance_id)
            if existing is None:
                inst = Instance(instance_id, input_)
            elif existing.done.is_set() and replace_finished:
                inst = Instance(instance_id, input_, generation=existing.generation + 1)
            elif existing.done.is_set() or self._is_driven(instance_id):
                raise JobAlreadyExists(instance_id)
            else:
                inst = existing  # recorded by an earlier process and unfinished: resume it
            self._instances[instance_id] = inst
            self._launch(inst, on_status)
        return inst

    def resume_unfinished(self) -> list[str]:
        """Resume every orchestration the store holds unfinished; their ids (none without a store)."""
        if self._store is None:
            return []
        resumed = []
        for record in self._store.unfinished():
            inst = Instance.from_record(record)
            if inst.done.is_set():  # it finished, but the process ended before saying so
                self._store.mark_finished(inst.instance_id, inst.generation)
                continue
            with self._lock:
                if self._is_driven(inst.instance_id):
                    continue
                self._instances[inst.instance_id] = inst
                self._launch(inst, None)
            resumed.append(inst.instance_id)
        return resumed

    def run(self, instance_id: str, input_: Any, on_status: StatusCallback | None = None) -> Instance:
        """Run an orchestration to its end and return it (check `runtime_status`, `output`)."""
        inst = self.start_background(instance_id, input_, on_status)
        inst.done.wait()
        return inst

    def shutdown(self) -> list[str]:
        """Stop: running activities finish and their results are recorded; nothing new is dispatched.

        Returns the ids of the orchestrations left unfinished. With a store they are recorded,
        with the work they had scheduled, and `resume_unfinished()` carries them on.
        """
        self._stopping.set()
        with self._lock:
            drivers = list(self._drivers.values())
        for _thread, driver in drivers:
            driver.completions.put(_WAKE)
        for thread, _driver in drivers:
            thread.join()
        self._pool.shutdown(wait=True)
        return self.unfinished()

    def unfinished(self) -> list[str]:
        """The ids of the orchestrations this runtime knows that have not finished."""
        with self._lock:
            return sorted(i for i, inst in self._instances.items() if not inst.done.is_set())

    def _is_driven(self, instance_id: str) -> bool:
        entry = self._drivers.get(instance_id)
        return entry is not None and entry[0].is_alive()

    def _launch(self, inst: Instance, on_status: StatusCallback | None) -> None:
        driver = _Driver(self, inst, on_status)
        thread = threading.Thread(target=self._drive, args=(driver,), daemon=True, name=f"orch-{inst.instance_id}")
        self._drivers[inst.instance_id] = (thread, driver)
        thread.start()

    def _drive(self, driver: _Driver) -> None:
        inst, on_status = driver.inst, driver.on_status
        try:
            inst.runtime_status = "Running"
            driver.run()
        except _Stopped:
            return  # recorded as it stands; the next start resumes it
        except Exception as exc:  # noqa: BLE001 - recorded on the instance, as the host would
            inst.runtime_status, inst.error = "Failed", str(exc)
            try:
                driver.finish()
            except Exception:  # noqa: BLE001 - storage is down too: the record stays unfinished
                log.exception("Recording the failure of orchestration %s failed", inst.instance_id)
        finally:
            if driver.span is not None:
                driver.span.end()
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
        self.completions: queue.Queue[Any] = queue.Queue()  # (_Attempt | _Timer, ok, value), or _WAKE
        recorded = inst.driver_state
        self.handled_actions: int = recorded.get("handled_actions", 0)
        self.next_task_id: int = recorded.get("next_task_id", 0)  # mirrors the SDK's task sequence number
        # Work scheduled (TaskScheduled / TimerCreated written) and not yet completed, by task id.
        self.pending: dict[int, _Attempt | _Timer] = {
            p.task_id: p for p in map(_pending_from, recorded.get("pending", []))
        }
        self.dispatched = 0  # activities handed to the pool whose completion has not been taken
        # As the Durable extension does: one span for the orchestration, child of whatever started it
        # (the trigger's span), parent of its activities' spans. Made here, in the starting thread.
        self.span = telemetry.start_span("orchestration", inst.instance_id)
        last = dt.datetime.fromisoformat(self.history[-1]["Timestamp"]) if self.history else None
        self.clock = max(dt.datetime.now(dt.UTC), last) if last else dt.datetime.now(dt.UTC)

    def _event(self, event_type: int, **fields: Any) -> None:
        # Timestamps only move forward, as in a real history.
        self.clock = max(self.clock + dt.timedelta(microseconds=1), dt.datetime.now(dt.UTC))
        event = {"EventType": event_type, "EventId": -1, "IsPlayed": False, "Timestamp": self.clock.isoformat()}
        event.update(fields)
        self.history.append(event)

    def _save(self) -> None:
        """Record the instance, its history and its pending work; a few tries if storage hiccups."""
        store = self.rt._store
        if store is None:
            return
        record = self.inst.record()
        record["driver"] = {
            "handled_actions": self.handled_actions,
            "next_task_id": self.next_task_id,
            "pending": [p.record() for p in self.pending.values()],
        }
        for attempt in range(3):
            try:
                store.save(record)
                return
            except Exception:
                if attempt == 2:
                    raise
                log.warning("Recording orchestration %s failed; trying again", self.inst.instance_id, exc_info=True)
                time.sleep(0.5 * 2**attempt)

    def finish(self) -> None:
        """Record the finished instance and mark it finished in the store."""
        self._save()
        if self.rt._store is not None:
            self.rt._store.mark_finished(self.inst.instance_id, self.inst.generation)

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
        if not self.history:
            self._event(ORCHESTRATOR_STARTED)
            self._event(EXECUTION_STARTED, Input=json.dumps(self.inst.input), Name="orchestrator", Version="")
            self._save()
        else:
            self._restart_pending()
        while True:
            state = self._replay()
            if state.get("isDone"):
                self.inst.output = state.get("output")
                self.inst.runtime_status = "Completed"
                self.finish()
                return
            if state.get("error"):
                raise OrchestrationFailed(state["error"])
            self._schedule_new(state)
            if not self.pending:
                raise OrchestrationFailed("The orchestrator is waiting for nothing (no task in flight).")
            self._complete_one()

    def _restart_pending(self) -> None:
        """Carry on with the work an earlier process recorded: run its activities, arm its timers."""
        for item in sorted(self.pending.values(), key=lambda p: p.task_id):
            if isinstance(item, _Attempt):
                self._dispatch(item)
            elif item.retry is None:
                self._arm(item)
        for item in sorted(self.pending.values(), key=lambda p: p.task_id):
            if isinstance(item, _Timer) and item.retry is not None:
                self._fire_retry(item)

    def _new_actions(self, state: dict[str, Any]) -> Iterator[dict[str, Any]]:
        # V1 sends one list of actions per episode, V2 and later one growing list: either way the
        # atomic actions appear in the order the SDK created them, old ones first.
        flat = [atomic for episode in state.get("actions", []) for action in episode for atomic in _atomic(action)]
        for action in flat[self.handled_actions :]:
            self.handled_actions += 1
            yield action

    def _schedule_new(self, state: dict[str, Any]) -> None:
        """Write the episode's new tasks into the history, record it, then dispatch them."""
        new: list[_Attempt | _Timer] = []
        for action in self._new_actions(state):
            kind = action["actionType"]
            task_id = self.next_task_id
            self.next_task_id += 1
            if kind == CREATE_TIMER:
                timer = _Timer(task_id, dt.datetime.fromisoformat(action["fireAt"]))
                self._event(TIMER_CREATED, EventId=timer.task_id, FireAt=timer.fire_at.isoformat())
                self.pending[task_id] = timer
                new.append(timer)
                continue
            if kind not in (CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY):
                raise OrchestrationFailed(f"The local runtime does not support action type {kind}.")
            attempt = _Attempt(task_id, action["functionName"], action.get("input"))
            if kind == CALL_ACTIVITY_WITH_RETRY:
                options = action["retryOptions"]
                attempt.max_attempts = int(options["maxNumberOfAttempts"])
                attempt.interval_s = options["firstRetryIntervalInMilliseconds"] / 1000 * self.rt._retry_scale
            self._scheduled(attempt)
            new.append(attempt)
        if not new:
            return
        self._save()  # before anything runs: a crash from here on re-runs these, never loses them
        for item in new:
            if isinstance(item, _Timer):
                self._arm(item)
            else:
                self._dispatch(item)

    def _scheduled(self, attempt: _Attempt) -> None:
        self._event(TASK_SCHEDULED, EventId=attempt.task_id, Name=attempt.name)
        self.pending[attempt.task_id] = attempt

    def _arm(self, timer: _Timer) -> None:
        delay = max(0.0, (timer.fire_at - dt.datetime.now(dt.UTC)).total_seconds()) * self.rt._retry_scale
        alarm = threading.Timer(delay, self.completions.put, args=((timer, True, None),))
        alarm.daemon = True
        alarm.start()

    def _dispatch(self, attempt: _Attempt) -> None:
        if self.rt._stopping.is_set():
            return  # recorded as scheduled: the next start runs it
        self.dispatched += 1
        self.rt._pool.submit(self._execute, attempt)

    def _execute(self, attempt: _Attempt) -> None:
        payload = attempt.input
        if isinstance(payload, str):
            payload = json.loads(payload)  # the SDK hands activity input over as JSON text
        limits = self.rt._limits
        try:
            with limits.running(attempt.name) if limits is not None else contextlib.nullcontext():
                with telemetry.within(self.span):
                    result = self.rt._activities[attempt.name](payload)
            self.completions.put((attempt, True, result))
        except Exception as exc:  # noqa: BLE001 - becomes a TaskFailed event, as in the host
            self.completions.put((attempt, False, exc))

    def _next_completion(self) -> tuple[_Attempt | _Timer, bool, Any]:
        while True:
            if self.rt._stopping.is_set() and self.dispatched == 0:
                raise _Stopped  # everything done so far is recorded
            item = self.completions.get()
            if item is not _WAKE:
                completion: tuple[_Attempt | _Timer, bool, Any] = item
                return completion

    def _complete_one(self) -> None:
        item, ok, value = self._next_completion()
        del self.pending[item.task_id]
        self._event(ORCHESTRATOR_STARTED)
        if isinstance(item, _Timer):
            self._event(TIMER_FIRED, TimerId=item.task_id, FireAt=item.fire_at.isoformat())
            self._save()
            return
        attempt = item
        self.dispatched -= 1
        if ok:
            self._event(TASK_COMPLETED, TaskScheduledId=attempt.task_id, Result=json.dumps(value))
            self._save()
            return
        # Shaped as the Functions host reports a failed activity.
        reason = f"Activity function '{attempt.name}' failed: {type(value).__name__}: {value}"
        details = json.dumps({"Message": reason, "StackTrace": "".join(traceback.format_exception(value))})
        self._event(TASK_FAILED, TaskScheduledId=attempt.task_id, Reason=reason, Details=details)
        if attempt.max_attempts <= 1:
            self._save()
            return
        # A failed retryable call: the SDK creates a timer task (next id) on the failure, and a
        # rescheduled task (the id after) when the timer fires, unless the attempts are used up.
        timer = _Timer(self.next_task_id, self.clock + dt.timedelta(seconds=attempt.interval_s), retry=attempt)
        self.next_task_id += 1
        self._event(TIMER_CREATED, EventId=timer.task_id, FireAt=timer.fire_at.isoformat())
        self.pending[timer.task_id] = timer
        self._save()
        self._fire_retry(timer)

    def _fire_retry(self, timer: _Timer) -> None:
        """Wait for a retry timer, then fire it and schedule the next attempt (if any is left).

        This driver waits here, as the host's retry does, so the timer's events stay together in
        the history. Even while stopping it waits (a few seconds), so that the retry is recorded.
        """
        failed = timer.retry
        if failed is None:
            raise OrchestrationFailed(f"Timer {timer.task_id} is not a retry.")
        time.sleep(max(0.0, (timer.fire_at - dt.datetime.now(dt.UTC)).total_seconds()))
        del self.pending[timer.task_id]
        self._event(ORCHESTRATOR_STARTED)
        self._event(TIMER_FIRED, TimerId=timer.task_id, FireAt=timer.fire_at.isoformat())
        retry = None
        if failed.attempt < failed.max_attempts:
            retry = replace(failed, task_id=self.next_task_id, attempt=failed.attempt + 1)
            self.next_task_id += 1
            self._scheduled(retry)
        self._save()
        if retry is not None:
            self._dispatch(retry)


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
