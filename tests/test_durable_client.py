"""Start-once against the real Durable client SDK, talking HTTP to a fake of the host's Durable API.

The Durable extension answers `POST {rpcBaseUrl}orchestrators/{name}/{id}` with 202, or with an
error saying an instance "already exists" while one runs; `GET {rpcBaseUrl}instances/{id}` answers
404 for an unknown id. Ten deliveries of one blob event race through `start_job`: one job starts.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import azure.durable_functions as df
import pytest

from shared.blob_trigger import handle_blob
from shared.jobs import DurableJobClient, blob_job_id
from shared.services import Services
from shared.storage import INPUTS
from tests.images import scene_png


class FakeDurableHost:
    """The slice of the Durable extension's HTTP API that the Python client uses to start and query."""

    def __init__(self) -> None:
        self.instances: dict[str, dict[str, Any]] = {}
        self.starts: list[str] = []  # ids of accepted starts
        self.lock = threading.Lock()
        self.start_delay_s = 0.05  # widens the window between a status check and a start
        host = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                instance_id = self.path.split("?")[0].rstrip("/").split("/")[-1]
                with host.lock:
                    state = host.instances.get(instance_id)
                if state is None:
                    self._send(404, None)
                else:
                    self._send(202, state)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                if isinstance(body, str):  # the Python client posts the input already JSON-encoded
                    body = json.loads(body)
                *_, name, instance_id = self.path.split("?")[0].split("/")
                time.sleep(host.start_delay_s)
                with host.lock:
                    if instance_id in host.instances:
                        self._send(
                            500,
                            {
                                "Message": "Something went wrong while processing your request",
                                "ExceptionMessage": "An Orchestration instance with the status Running already exists.",
                                "ExceptionType": "System.InvalidOperationException",
                            },
                        )
                        return
                    host.instances[instance_id] = {
                        "name": name, "instanceId": instance_id, "runtimeStatus": "Running", "input": body,
                        "customStatus": {"stage": "queued", "done": 0, "total": 0}, "output": None,
                        "createdTime": "2026-11-21T00:00:00Z", "lastUpdatedTime": "2026-11-21T00:00:00Z",
                    }  # fmt: skip
                    host.starts.append(instance_id)
                self._send(202, {"id": instance_id})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.rpc_base_url = f"http://127.0.0.1:{self.server.server_address[1]}/runtime/webhooks/durabletask/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def client_binding(self) -> str:
        """The JSON the host hands to a function's durableClient binding."""
        return json.dumps(
            {
                "taskHubName": "VariaHub",
                "creationUrls": {},
                "managementUrls": {},
                "baseUrl": self.rpc_base_url,
                "requiredQueryStringParameters": "",
                "rpcBaseUrl": self.rpc_base_url,
            }
        )


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
    host.thread.start()
    yield host
    host.server.shutdown()
    host.server.server_close()


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
