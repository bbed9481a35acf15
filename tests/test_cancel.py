"""Cancelling a job: the steps still to run make no paid call, images already drawn are kept, and the job
ends with a manifest that says it was cancelled.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from shared.adapters.services import Services, build_services
from shared.adapters.storage import WORK
from shared.config import Settings
from shared.core.blobs import cancel_name, job_of
from shared.core.models import Manifest
from shared.core.steps import STEPS
from shared.local.cli import bind_activities, make_runtime
from shared.local.server import VariaServer
from tests.fake_ai import FakeAzureAI
from tests.images import scene_png
from tests.support import NoCredential, azure_env, multipart, offline_env, upload_request

PAID = {"caption", "compose", "image", "moderation"}


def _cancel_after(services: Services, step: str) -> dict[str, Any]:
    """The activities, with `step` marking its job cancelled once it has run (as a user's click would then)."""
    activities = dict(bind_activities(services))

    def then_cancel(payload: Any) -> Any:
        result = STEPS[step](services, payload)
        job = payload["request"]["job_id"] if "request" in payload else payload["job_id"]
        services.storage.put(WORK, cancel_name(job), b"cancelled", "text/plain")
        return result

    activities[step] = then_cancel
    return activities


def test_a_job_cancelled_while_composing_pays_for_no_image(fake: FakeAzureAI, tmp_path: Path) -> None:
    services = build_services(Settings.from_env({**azure_env(fake), **offline_env(tmp_path)}), NoCredential)
    request = upload_request(services, scene_png(), n=2)
    runtime = make_runtime(services, retry_scale=0.001, activities=_cancel_after(services, "compose"))
    try:
        manifest = Manifest.model_validate(runtime.run(request.job_id, request.model_dump(mode="json")).output)
    finally:
        runtime.shutdown()
    assert (manifest.status, manifest.code) == ("failed", "cancelled")
    assert [v.code for v in manifest.variations] == ["cancelled", "cancelled"]
    assert "not paid for" in (manifest.variations[0].reason or "") and "force=true" in (manifest.message or "")
    assert fake.count("images.edit") == fake.count("images.generate") == 0
    assert manifest.paid_calls.image.attempted == 0 and manifest.paid_calls.compose.attempted == 1


def test_a_job_cancelled_before_it_prepares_stops_there(offline_services: Services) -> None:
    request = upload_request(offline_services, scene_png(), n=1)
    offline_services.storage.put(WORK, cancel_name(request.job_id), b"cancelled", "text/plain")
    runtime = make_runtime(offline_services, retry_scale=0.001)
    try:
        manifest = Manifest.model_validate(runtime.run(request.job_id, request.model_dump(mode="json")).output)
    finally:
        runtime.shutdown()
    assert (manifest.status, manifest.code, manifest.source) == ("failed", "cancelled", None)
    assert manifest.message is not None and manifest.message.startswith("Cancelled at your request while preparing")


def _post(server: VariaServer, path: str, body: bytes = b"", **headers: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(server.url + path, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_api_cancels_a_running_job_and_refuses_to_cancel_a_finished_or_unknown_one(tmp_path: Path) -> None:
    services = build_services(Settings.from_env(offline_env(tmp_path)))
    # Captioning waits until the job is cancelled, so the cancel surely comes while the job runs.
    activities = dict(bind_activities(services))

    def slow_caption(payload: Any) -> Any:
        job = job_of(payload["image"]["name"])
        deadline = time.monotonic() + 20
        while services.storage.info(WORK, cancel_name(job)) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return STEPS["caption"](services, payload)

    activities["caption"] = slow_caption
    server = VariaServer(services, make_runtime(services, retry_scale=0.001, activities=activities), port=0)
    server.start()
    try:
        body, content_type = multipart({"prompt": "as a watercolour", "n": "2"}, scene_png())
        status, started = _post(server, "/api/variations", body, **{"Content-Type": content_type})
        assert status == 202
        job = started["job_id"]
        status, answer = _post(server, f"/api/variations/{job}/cancel")
        assert status == 202 and answer["cancelling"] is True and answer["status_url"] == started["status_url"]
        deadline = time.monotonic() + 20
        while (view := json.loads(urllib.request.urlopen(server.url + started["status_url"]).read()))["status"] == (
            "running"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert (view["status"], view["code"]) == ("failed", "cancelled") and view["images"] == []
        status, answer = _post(server, f"/api/variations/{job}/cancel")
        assert status == 409 and answer["code"] == "job_finished"
        status, answer = _post(server, "/api/variations/http-" + "0" * 32 + "/cancel")
        assert status == 404 and answer["code"] == "job_not_found"
    finally:
        server.close()
