"""Start-once against the real Durable client SDK, talking HTTP to a fake of the host's Durable API.

The Durable extension answers `POST {rpcBaseUrl}orchestrators/{name}/{id}` with 202, or with an
error saying an instance "already exists" while one runs; `GET {rpcBaseUrl}instances/{id}` answers
404 for an unknown id. Ten deliveries of one blob event race through `start_job`: one job starts.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import azure.durable_functions as df
import pytest

from shared.adapters.services import Services
from shared.adapters.storage import INPUTS
from shared.core.jobs import DurableJobClient, JobAlreadyExists, blob_job_id
from shared.functions.blob_trigger import handle_blob
from tests.durable_api import DurableHttpApi, status_body
from tests.images import scene_png


class FakeDurableHost:
    """Instances in a dict behind the Durable HTTP API; a start takes a moment, as in the host."""

    def __init__(self) -> None:
        self.instances: dict[str, dict[str, Any]] = {}
        self.starts: list[str] = []  # ids of accepted starts
        self.lock = threading.Lock()
        self.start_delay_s = 0.05  # widens the window between a status check and a start
        self.api = DurableHttpApi(self._start, self.instances.get)

    def _start(self, name: str, instance_id: str, input_: Any) -> None:
        time.sleep(self.start_delay_s)
        with self.lock:
            if instance_id in self.instances:
                raise JobAlreadyExists(instance_id)
            custom = {"stage": "queued", "done": 0, "total": 0}
            self.instances[instance_id] = status_body(name, instance_id, "Running", input_, custom, None)
            self.starts.append(instance_id)

    def client_binding(self) -> str:
        return self.api.client_binding()


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for the module, as in the Functions worker: the Durable client keeps one
    aiohttp session per process, bound to the loop that created it."""
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


@pytest.fixture
def durable_host() -> Iterator[FakeDurableHost]:
    host = FakeDurableHost()
    yield host
    host.api.close()


def test_ten_concurrent_deliveries_of_one_blob_start_one_job(
    durable_host: FakeDurableHost, offline_services: Services, loop: asyncio.AbstractEventLoop
) -> None:
    etag = offline_services.storage.put(INPUTS, "class/dog.png", scene_png(), "image/png").etag
    assert etag is not None

    async def deliver(times: int, etag: str) -> list[str | None]:
        client = DurableJobClient(df.DurableOrchestrationClient(durable_host.client_binding()))
        deliveries = [handle_blob(INPUTS, "class/dog.png", etag, {}, client, offline_services) for _ in range(times)]
        return list(await asyncio.gather(*deliveries))

    job_ids = loop.run_until_complete(deliver(10, etag))

    expected = blob_job_id(INPUTS, "class/dog.png", etag)
    assert job_ids == [expected] * 10
    assert durable_host.starts == [expected]
    started_input = durable_host.instances[expected]["input"]
    assert started_input["source"] == {"container": INPUTS, "name": "class/dog.png", "etag": etag, "sha256": None}

    # A re-upload is a new blob version (new etag), so a new job.
    new_etag = offline_services.storage.put(INPUTS, "class/dog.png", scene_png(300, 200), "image/png").etag
    assert new_etag is not None and new_etag != etag
    assert loop.run_until_complete(deliver(1, new_etag)) == [blob_job_id(INPUTS, "class/dog.png", new_etag)]
    assert len(durable_host.starts) == 2


def test_status_of_unknown_and_running_jobs(durable_host: FakeDurableHost, loop: asyncio.AbstractEventLoop) -> None:
    async def scenario() -> tuple[Any, Any]:
        client = DurableJobClient(df.DurableOrchestrationClient(durable_host.client_binding()))
        missing = await client.status("blob-" + "0" * 32)
        durable_host.instances["blob-" + "1" * 32] = {
            "name": "orchestrate_job", "instanceId": "blob-" + "1" * 32, "runtimeStatus": "Running",
            "customStatus": {"stage": "generating", "done": 1, "total": 2}, "output": None,
            "createdTime": "2026-11-21T00:00:00Z", "lastUpdatedTime": "2026-11-21T00:00:00Z",
        }  # fmt: skip
        running = await client.status("blob-" + "1" * 32)
        return missing, running

    missing, running = loop.run_until_complete(scenario())
    assert missing is None
    assert running.runtime_status == "Running" and running.custom_status == {
        "stage": "generating",
        "done": 1,
        "total": 2,
    }
