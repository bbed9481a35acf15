"""The HTTP API's handlers with `func.HttpRequest`, over the local runtime as the Durable client."""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest

from shared.adapters.services import Services
from shared.functions.http_api import get_image, get_variation, post_variation
from shared.local.cli import make_runtime
from shared.local.runtime import LocalRuntime
from tests.images import scene_png
from tests.support import post_form


@pytest.fixture
def runtime(offline_services: Services) -> Iterator[LocalRuntime]:
    rt = make_runtime(offline_services, retry_scale=0.001)
    yield rt
    rt.shutdown()


def post_json(payload: dict[str, Any]) -> func.HttpRequest:
    body = json.dumps(payload).encode()
    return func.HttpRequest("POST", "/api/variations", headers={"Content-Type": "application/json"}, body=body)


def call(result: Any) -> tuple[int, Any]:
    """(status, body) of a handler's response; async handlers' coroutines are run first."""
    response: func.HttpResponse = asyncio.run(result) if inspect.iscoroutine(result) else result
    body = response.get_body()
    if response.mimetype == "application/json":
        return response.status_code, json.loads(body)
    return response.status_code, body


def wait_done(runtime: LocalRuntime, job_id: str) -> None:
    assert runtime._instances[job_id].done.wait(30)


def test_multipart_upload_starts_a_job_and_the_status_shows_the_result(
    runtime: LocalRuntime, offline_services: Services
) -> None:
    request = post_form({"prompt": "as pixel art", "n": "2", "profile": "kids"}, scene_png())
    status, body = call(post_variation(request, runtime, offline_services))

    assert status == 202 and body["created"] is True
    job_id = body["job_id"]
    assert job_id.startswith("http-") and body["status_url"] == f"/api/variations/{job_id}"
    wait_done(runtime, job_id)

    status, view = call(get_variation(job_id, runtime, offline_services))
    assert status == 200
    assert view["status"] == "succeeded" and view["stage"] == "done"
    assert view["caption"] and "pixel art" in view["output_prompt"]
    assert view["subtasks"]["style"] == "pixel art"
    assert [img["url"] for img in view["images"]] == [f"/api/variations/{job_id}/images/{k}" for k in range(2)]
    assert "statusQueryGetUri" not in json.dumps(view) and "code=" not in json.dumps(view)

    status, png = call(get_image(job_id, "0", offline_services))
    assert status == 200 and png.startswith(b"\x89PNG")
    status, source = call(get_image(job_id, "source", offline_services))
    assert status == 200 and source.startswith((b"\x89PNG", b"\xff\xd8"))  # the prepared source: PNG or JPEG

    # Every link in the status is a route the app serves (the page offers them as downloads).
    prefix = f"/api/variations/{job_id}/images/"
    links = [view["source_url"], view["manifest_url"], *(img["url"] for img in view["images"])]
    assert all(link.startswith(prefix) for link in links)
    status, manifest = call(get_image(job_id, view["manifest_url"].removeprefix(prefix), offline_services))
    assert status == 200 and manifest["job_id"] == job_id and manifest["status"] == "succeeded"


def test_inline_images_name_their_file_without_reading_the_manifest_each(
    runtime: LocalRuntime, offline_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page loads each image of a job (and its history's thumbnails): the prompt in their file
    names is read from the manifest once per process at most, and not at all after the job's status."""
    storage = offline_services.storage
    reads: list[str] = []
    real_get = storage.get

    def counting_get(container: str, name: str) -> bytes:
        reads.append(name)
        return real_get(container, name)

    monkeypatch.setattr(storage, "get", counting_get)
    jobs = []
    for prompt in ("as pixel art", "as charcoal"):  # forced: new jobs, their prompts kept nowhere yet
        form = post_form({"prompt": prompt, "n": "3", "force": "true"}, scene_png())
        status, body = call(post_variation(form, runtime, offline_services))
        assert status == 202
        wait_done(runtime, body["job_id"])
        jobs.append(body["job_id"])

    def manifest_reads(job_id: str, *which: str) -> int:
        reads.clear()
        for name in which:
            response = get_image(job_id, name, offline_services)
            assert response.status_code == 200
            assert response.headers["Content-Disposition"].startswith('inline; filename="varia-as-')
        return reads.count(f"{job_id}/manifest.json")

    cold, warm = jobs
    assert manifest_reads(cold, "0", "1", "2", "source") == 1
    assert manifest_reads(cold, "0", "1", "2") == 0
    status, view = call(get_variation(warm, runtime, offline_services))
    assert status == 200 and view["images"][0]["filename"].startswith("varia-as-charcoal-")
    assert manifest_reads(warm, "0", "1", "2", "source") == 0
    response = get_image(warm, "0", offline_services)
    assert response.headers["Content-Disposition"] == f'inline; filename="{view["images"][0]["filename"]}"'


def test_json_base64_upload_is_accepted(runtime: LocalRuntime, offline_services: Services) -> None:
    image = "data:image/png;base64," + base64.b64encode(scene_png()).decode()
    status, body = call(
        post_variation(post_json({"image": image, "prompt": "as sepia", "n": 1}), runtime, offline_services)
    )
    assert status == 202
    wait_done(runtime, body["job_id"])
    status, view = call(get_variation(body["job_id"], runtime, offline_services))
    assert view["status"] == "succeeded" and len(view["images"]) == 1


def test_identical_request_returns_the_existing_job_unless_forced(
    runtime: LocalRuntime, offline_services: Services
) -> None:
    image = scene_png()
    first = call(post_variation(post_form({"prompt": "as neon"}, image), runtime, offline_services))[1]
    wait_done(runtime, first["job_id"])
    second = call(post_variation(post_form({"prompt": "as neon"}, image), runtime, offline_services))[1]
    forced = call(post_variation(post_form({"prompt": "as neon", "force": "true"}, image), runtime, offline_services))[
        1
    ]

    assert second["job_id"] == first["job_id"] and second["created"] is False
    assert forced["job_id"] != first["job_id"] and forced["created"] is True
    wait_done(runtime, forced["job_id"])
    assert set(runtime._instances) == {first["job_id"], forced["job_id"]}


@pytest.mark.parametrize(
    ("fields", "image", "status", "message"),
    [
        ({"prompt": "as a watercolour"}, b"just some text", 400, "Not an image"),
        ({"prompt": "   "}, scene_png(), 400, "prompt is empty"),
        ({"prompt": "as a watercolour", "profile": "pirates"}, scene_png(), 400, "Unknown profile"),
        ({"prompt": "as a watercolour", "n": "11"}, scene_png(), 400, "out of range"),
        ({"prompt": "as a watercolour", "mode": "remix"}, scene_png(), 400, "Unknown mode"),
        ({"prompt": "as a \x07 watercolour"}, scene_png(), 400, "control characters"),
    ],
)
def test_bad_requests_get_a_clear_400_and_start_nothing(
    runtime: LocalRuntime, offline_services: Services, fields: dict[str, str], image: bytes, status: int, message: str
) -> None:
    code, body = call(post_variation(post_form(fields, image), runtime, offline_services))
    assert code == status and message in body["error"]
    assert runtime._instances == {}


def test_declared_oversize_upload_is_refused_with_413(runtime: LocalRuntime, offline_services: Services) -> None:
    request = func.HttpRequest(
        "POST",
        "/api/variations",
        headers={"Content-Type": "multipart/form-data; boundary=x", "Content-Length": "99999999"},
        body=b"",
    )
    code, body = call(post_variation(request, runtime, offline_services))
    assert code == 413 and "20 MB" in body["error"]


def test_unknown_job_ids_are_404(runtime: LocalRuntime, offline_services: Services) -> None:
    assert call(get_variation("../../etc/passwd", runtime, offline_services))[0] == 404
    assert call(get_variation("http-" + "0" * 32, runtime, offline_services))[0] == 404
    assert call(get_image("http-" + "0" * 32, "0", offline_services))[0] == 404
    assert call(get_image("http-" + "0" * 32, "../secret", offline_services))[0] == 404


def test_refusal_is_reported_in_plain_words(runtime: LocalRuntime, offline_services: Services) -> None:
    request = post_form({"prompt": "con una espada", "profile": "kids"}, scene_png())
    job_id = call(post_variation(request, runtime, offline_services))[1]["job_id"]
    wait_done(runtime, job_id)
    view = call(get_variation(job_id, runtime, offline_services))[1]
    assert view["status"] == "refused" and "espada" in view["message"] and view["images"] == []


def test_an_image_url_is_never_fetched(runtime: LocalRuntime, offline_services: Services) -> None:
    # Varia only takes bytes: a URL in place of the image is refused, not downloaded server-side.
    request = post_json({"image": "http://127.0.0.1:9/cat.jpg", "prompt": "as sepia"})
    code, body = call(post_variation(request, runtime, offline_services))
    assert code == 400 and "base64" in body["error"]
    assert runtime._instances == {}
