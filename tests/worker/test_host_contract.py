"""Varia through Azure's Python worker: indexing, loading and invoking every kind of function.

Each test sends what the Functions host would send (see host.py and durable.py) and reads what
the worker answers. Storage is Azurite; the AI services are the fake server, through the real SDKs.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from azure.storage.blob import BlobServiceClient

from shared.adapters.storage import INPUTS, OUTPUTS
from shared.core.jobs import blob_job_id
from shared.functions.bindings import BLOB_FUNCTION_NAME, POLLING_FUNCTION_NAME
from tests.images import scene_png
from tests.support import multipart
from tests.worker.conftest import ENVIRONMENT, Stack
from tests.worker.durable import FakeDurableExtension
from tests.worker.host import WorkerHost

DEVELOPMENT = ENVIRONMENT == "Development"
EXPECTED = {
    "orchestrate_job", "prepare", "caption", "compose", "reserve", "generate", "persist",
    "start_variation", "variation_status", "cancel_variation", "variation_image", BLOB_FUNCTION_NAME,
    "web_ui_index", "web_ui_file",
} | ({POLLING_FUNCTION_NAME} if DEVELOPMENT else set())  # fmt: skip
BLOB_TRIGGERS = [BLOB_FUNCTION_NAME] + ([POLLING_FUNCTION_NAME] if DEVELOPMENT else [])


def _blob_service(stack: Stack) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(stack.direct_connection_string)


def _upload(stack: Stack, name: str, data: bytes, metadata: dict[str, str] | None = None) -> Any:
    container = _blob_service(stack).get_container_client(INPUTS)
    if not container.exists():
        container.create_container()
    container.upload_blob(name, data, overwrite=True, metadata=metadata)
    return container.get_blob_client(name).get_blob_properties()


def _manifest(stack: Stack, job_id: str) -> dict[str, Any]:
    blob = _blob_service(stack).get_blob_client(OUTPUTS, f"{job_id}/manifest.json")
    manifest: dict[str, Any] = json.loads(blob.download_blob().readall())
    return manifest


def test_every_function_indexes_and_loads(worker: WorkerHost) -> None:
    assert set(worker.function_ids) == EXPECTED
    for activity in ("prepare", "caption", "compose", "reserve", "generate", "persist"):
        assert [b["type"] for b in worker.raw_bindings(activity)] == ["activityTrigger"]
    # The blob trigger asks the host for a reference (ParameterBindingData), not the content.
    for name in BLOB_TRIGGERS:
        trigger = next(b for b in worker.raw_bindings(name) if b["type"] == "blobTrigger")
        assert trigger["properties"] == {"SupportsDeferredBinding": True}
        assert trigger["source"] == ("EventGrid" if name == BLOB_FUNCTION_NAME else "LogsAndContainerScan")
    auth = "ANONYMOUS" if DEVELOPMENT else "FUNCTION"
    post = next(b for b in worker.raw_bindings("start_variation") if b["type"] == "httpTrigger")
    assert post["authLevel"] == auth and post["route"] == "variations"


def test_a_whole_http_job_runs_through_the_worker(
    worker: WorkerHost, durable: FakeDurableExtension, stack: Stack, fake: Any
) -> None:
    body, content_type = multipart({"prompt": "as a watercolour", "n": "2"}, scene_png(160, 120))
    post = worker.http("POST", "/api/variations", body=body, headers={"Content-Type": content_type})
    client = worker.string(durable.client_binding())

    answer = worker.http_answer(worker.run(worker.invoke("start_variation", {"req": post, "client": client})))
    assert answer.status == 202, answer.body
    job_id = answer.json()["job_id"]
    assert answer.headers["Location"] == f"/api/variations/{job_id}"

    instance = durable.wait(job_id)
    assert instance.runtime_status == "Completed", instance.error
    assert instance.output["status"] == "succeeded"
    assert durable.episodes >= 7  # every episode was an orchestrator invocation through the worker
    assert fake.count("vision.analyze") == 1 and fake.count("chat") == 1 and fake.count("images.edit") == 2

    get = worker.http("GET", f"/api/variations/{job_id}", params={"job_id": job_id})
    view = worker.http_answer(worker.run(worker.invoke("variation_status", {"req": get, "client": client})))
    assert view.status == 200
    status = view.json()
    assert status["status"] == "succeeded" and status["done"] == 2 and len(status["images"]) == 2
    assert status["caption"] == fake.caption_text

    image = worker.http("GET", status["images"][0]["url"], params={"job_id": job_id, "which": "0"})
    png = worker.http_answer(worker.run(worker.invoke("variation_image", {"req": image})))
    assert png.status == 200 and png.body.startswith(b"\x89PNG")
    assert _manifest(stack, job_id)["variations"][1]["status"] == "succeeded"


def test_a_blob_drop_runs_one_job_through_the_worker_whatever_the_etag_shape(
    worker: WorkerHost, durable: FakeDurableExtension, stack: Stack, fake: Any
) -> None:
    for trigger in BLOB_TRIGGERS:
        name = f"watercolor/{trigger}-cat.png"
        props = _upload(stack, name, scene_png(200, 150), {"prompt": "as%20pixel%20art"})
        url = f"http://127.0.0.1:{stack.azurite.blob_port}/devstoreaccount1/{INPUTS}/{name}"
        client = worker.string(durable.client_binding())
        job_ids = []
        durable.dispatching.clear()  # the job's activities wait: Azurite's log shows the trigger alone
        try:
            # The host serializes the ETag with Newtonsoft: sometimes a string, sometimes {}.
            etag_shapes: list[Any] = [{}, props.etag]
            for etag_shape in etag_shapes:
                properties = {"ETag": etag_shape, "Length": props.size}
                metadata = worker.blob_trigger_metadata(INPUTS, name, url, properties, {})
                blob = worker.blob_reference(INPUTS, name)
                before = len(stack.azurite.requests())
                worker.run(worker.invoke(trigger, {"blob": blob, "client": client}, metadata))
                served = stack.azurite.requests()[before:]
                # The trigger read the blob's properties once and never its content.
                assert [m for m, path in served if path.endswith(f"/{INPUTS}/{name}")] == ["HEAD"], served
                job_ids.append(blob_job_id(INPUTS, name, props.etag))
        finally:
            durable.dispatching.set()
        assert durable.starts.count(job_ids[0]) == 1  # the duplicate delivery found the job
        instance = durable.wait(job_ids[0])
        assert instance.runtime_status == "Completed", instance.error
        manifest = _manifest(stack, job_ids[0])
        assert manifest["status"] == "succeeded"
        assert manifest["request"]["prompt"] == "as pixel art"  # percent-encoded metadata, decoded


def test_a_100_mb_blob_is_refused_from_its_properties_before_any_download(
    worker: WorkerHost, durable: FakeDurableExtension, stack: Stack
) -> None:
    name = "huge-scan.tif"
    props = _upload(stack, name, os.urandom(1024) * 100 * 1024)  # 100 MB
    assert props.size == 100 * 1024 * 1024
    url = f"http://127.0.0.1:{stack.azurite.blob_port}/devstoreaccount1/{INPUTS}/{name}"
    metadata = worker.blob_trigger_metadata(INPUTS, name, url, {"ETag": props.etag, "Length": props.size}, {})
    before = len(stack.azurite.requests())

    client = worker.string(durable.client_binding())
    blob = worker.blob_reference(INPUTS, name)
    worker.run(worker.invoke(BLOB_FUNCTION_NAME, {"blob": blob, "client": client}, metadata))

    served = stack.azurite.requests()[before:]
    assert [m for m, path in served if path.endswith(f"/{INPUTS}/{name}")] == ["HEAD"], served
    job_id = blob_job_id(INPUTS, name, props.etag)
    assert durable.instance(job_id) is None  # no job, so no paid call
    manifest = _manifest(stack, job_id)
    assert manifest["status"] == "failed"
    assert manifest["message"].startswith(f"{name} is 100.0 MB; the limit is")
    assert _blob_service(stack).get_blob_client(INPUTS, name).exists()  # the input stays


def test_two_slow_requests_to_async_routes_overlap_in_time(
    worker: WorkerHost, durable: FakeDurableExtension, stack: Stack
) -> None:
    """The worker runs async functions on one event loop: a blocking storage call would serialize them."""
    client = worker.string(durable.client_binding())
    body, content_type = multipart({"prompt": "as a sketch", "n": "1"}, scene_png(90, 70))
    post = worker.http("POST", "/api/variations", body=body, headers={"Content-Type": content_type})
    unknown = "http-" + "7" * 32
    get = worker.http("GET", f"/api/variations/{unknown}", params={"job_id": unknown})

    async def timed(function: str, inputs: dict[str, Any]) -> tuple[float, float, Any]:
        began = time.monotonic()
        response = await worker.invoke(function, inputs)
        return began, time.monotonic(), response

    async def both() -> list[tuple[float, float, Any]]:
        return list(
            await asyncio.gather(
                timed("start_variation", {"req": post, "client": client}),
                timed("variation_status", {"req": get, "client": client}),
            )
        )

    stack.proxy.delay_s = 0.6  # each storage request now takes 0.6 s
    stack.proxy.windows.clear()
    (post_began, post_ended, posted), (get_began, get_ended, got) = worker.run(both())
    windows = list(stack.proxy.windows)
    stack.proxy.delay_s = 0.0

    assert worker.http_answer(posted).status == 202 and worker.http_answer(got).status == 404
    # The two requests' storage calls were in flight at the same moment: neither blocked the loop.
    overlapping = [(a, b) for i, a in enumerate(windows) for b in windows[i + 1 :] if a[0] < b[1] and b[0] < a[1]]
    assert overlapping, f"storage calls never overlapped: {windows}"
    assert max(post_began, get_began) < min(post_ended, get_ended)
    durable.wait(worker.http_answer(posted).json()["job_id"])


def test_the_page_and_its_files_are_served_through_the_worker(worker: WorkerHost) -> None:
    page = worker.http_answer(worker.run(worker.invoke("web_ui_index", {"req": worker.http("GET", "/api/ui")})))
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert b"app.js" in page.body

    script_req = worker.http("GET", "/api/ui/app.js", params={"file": "app.js"})
    script = worker.http_answer(worker.run(worker.invoke("web_ui_file", {"req": script_req})))
    assert script.status == 200 and "javascript" in script.headers["Content-Type"]

    revalidate = {"If-None-Match": script.headers["ETag"]}
    again = worker.http("GET", "/api/ui/app.js", params={"file": "app.js"}, headers=revalidate)
    # Azure revalidates by ETag; Development always sends the file, so edits show on reload.
    expected = (200, "no-store") if DEVELOPMENT else (304, "no-cache")
    answer = worker.http_answer(worker.run(worker.invoke("web_ui_file", {"req": again})))
    assert (answer.status, answer.headers["Cache-Control"]) == expected
