"""A stand-in for the Durable Functions extension, running orchestrations through the Python worker.

The extension is .NET code inside the Functions host and cannot run here. This fake plays its two
roles over the same wire formats:

- the HTTP API the Python Durable client calls (tests/durable_api.py);
- the dispatcher: each orchestrator episode is an invocation of the orchestrator function through
  the worker, with the orchestration context the extension in bundle v4 sends (history plus
  `upperSchemaVersion` / `upperSchemaVersionNew`); each activity is an invocation of the activity
  function through the worker, with its input as JSON text. The history is written by
  `shared.local.runtime`'s driver, the same one the CLI uses.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from shared.local.runtime import Instance, LocalRuntime, orchestration_context
from tests.durable_api import DurableHttpApi, status_body
from tests.worker.host import WorkerHost

ACTIVITIES = ("prepare", "caption", "compose", "reserve", "generate", "persist")


class FakeDurableExtension:
    def __init__(self, host: WorkerHost, orchestrator: str = "orchestrate_job") -> None:
        self.host = host
        self.orchestrator = orchestrator
        self.episodes = 0  # orchestrator invocations through the worker
        self.activity_calls: list[str] = []
        self.starts: list[str] = []  # instance ids of accepted starts, in order
        self.dispatching = threading.Event()  # cleared: activities wait (to watch a trigger alone)
        self.dispatching.set()
        self.runtime = LocalRuntime(
            orchestrator=lambda context: None,  # never called: episodes run through the worker
            activities={name: self._activity(name) for name in ACTIVITIES},
            max_workers=4,
            retry_scale=0.001,
            replayer=self._replay,
        )
        self.lock = threading.Lock()
        self.api = DurableHttpApi(self._start, self._status)

    # ---- the HTTP API ----------------------------------------------------------------------------
    def client_binding(self) -> str:
        return self.api.client_binding()

    def _start(self, name: str, instance_id: str, input_: Any) -> None:
        assert name == self.orchestrator, name
        # A finished instance is replaced, a running one raises JobAlreadyExists, as in the extension.
        self.runtime.start_background(instance_id, input_, replace_finished=True)
        with self.lock:
            self.starts.append(instance_id)

    def _status(self, instance_id: str) -> dict[str, Any] | None:
        inst = self.runtime.get(instance_id)
        if inst is None:
            return None
        return status_body(
            self.orchestrator, instance_id, inst.runtime_status, inst.input, inst.custom_status, inst.output
        )

    def _replay(self, instance_id: str, input_: Any, history: list[dict[str, Any]]) -> dict[str, Any]:
        context = json.dumps(orchestration_context(instance_id, input_, history))
        with self.lock:
            self.episodes += 1
        response = self.host.run(self.host.invoke(self.orchestrator, {"context": self.host.string(context)}))
        state: Any = self.host.returned_json(response)
        if isinstance(state, str):  # the SDK's state is JSON text inside the json TypedData
            state = json.loads(state)
        assert isinstance(state, dict)
        return state

    def _activity(self, name: str) -> Any:
        def run(payload: Any) -> Any:
            assert self.dispatching.wait(60), "activities were held for a minute"
            with self.lock:
                self.activity_calls.append(name)
            data = self.host.json_data(json.dumps(payload))
            response = self.host.run(self.host.invoke(name, {"payload": data}))
            return self.host.returned_json(response)

        return run

    # ---- instances -----------------------------------------------------------------------------
    def instance(self, instance_id: str) -> Instance | None:
        return self.runtime.get(instance_id)

    def wait(self, instance_id: str, timeout: float = 60) -> Instance:
        inst = self.instance(instance_id)
        assert inst is not None, f"no orchestration {instance_id} was started"
        assert inst.done.wait(timeout), f"orchestration {instance_id} did not finish in {timeout} s"
        return inst

    def close(self) -> None:
        self.api.close()
        self.runtime.shutdown()
