"""The texts people read, kept as snapshot files (tests/__snapshots__/test_snapshots.ambr).

A manifest, the status view the page polls, and the refusal and failure messages a user meets.
A change to any of them shows up as a diff of the snapshot file, to be read and accepted with
`.venv/bin/python -m pytest tests/test_snapshots.py --snapshot-update`. Values that change from
run to run (finish times, etags, folders) are replaced by placeholders first.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion

from shared.adapters.services import Services
from shared.config import ConfigError, Settings
from shared.core import steps
from shared.core.jobs import RequestError
from shared.core.models import JobRecord, JobRequest, Problem
from shared.functions.http_api import get_variation
from shared.local.cli import make_runtime
from tests.images import scene_png
from tests.support import run_job, upload_request


def stable(value: Any) -> Any:
    """The value with what differs between runs replaced by placeholders."""
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    text = re.sub(r'"(finished_at|etag)": "[^"]*"', r'"\1": "<\1>"', text)
    return json.loads(text)


def finished_job(services: Services, prompt: str, png: bytes, **options: Any) -> dict[str, Any]:
    request = upload_request(services, png, prompt, **options)
    instance = run_job(services, request)
    assert instance.runtime_status == "Completed", instance.error
    return dict(instance.output)


def test_the_manifest_of_a_succeeded_job(offline_services: Services, snapshot: SnapshotAssertion) -> None:
    manifest = finished_job(offline_services, "as a watercolour", scene_png(320, 240), n=2)
    assert manifest["status"] == "succeeded"
    assert stable(manifest) == snapshot


def test_the_status_view_of_a_finished_job(offline_services: Services, snapshot: SnapshotAssertion) -> None:
    manifest = finished_job(offline_services, "as pixel art", scene_png(320, 240), n=1)
    runtime = make_runtime(offline_services)
    try:
        response = asyncio.run(get_variation(manifest["job_id"], runtime, offline_services))
    finally:
        runtime.shutdown()
    assert response.status_code == 200
    assert stable(json.loads(response.get_body())) == snapshot


@pytest.mark.parametrize(
    ("prompt", "profile"),
    [
        ("put a bloody sword in his hand", "kids"),
        ("make her naked", "general"),
        ("ajoute une épée ensanglantée", "kids"),
    ],
)
def test_refusals_of_the_word_check(
    offline_services: Services, snapshot: SnapshotAssertion, prompt: str, profile: str
) -> None:
    manifest = finished_job(offline_services, prompt, scene_png(64, 48), n=1, profile=profile)
    assert manifest["status"] == "refused"
    assert {key: manifest[key] for key in ("status", "code", "message", "paid_calls")} == snapshot


@pytest.mark.parametrize(
    "data",
    [b"GIF89a" + bytes(40), scene_png(320, 240)[:400], b"%PDF-1.7 not an image"],
    ids=["damaged-gif", "truncated-png", "pdf"],
)
def test_what_a_user_is_told_about_a_file_that_is_not_an_image(
    offline_services: Services, snapshot: SnapshotAssertion, data: bytes
) -> None:
    """Refused when it is stored, or failed by the prepare step: either way, a message that says what to do."""
    try:
        request = upload_request(offline_services, data, n=1, filename="holiday.jpg")
    except RequestError as exc:
        told: dict[str, Any] = {"refused at upload": str(exc)}
    else:
        manifest = run_job(offline_services, request).output
        told = {key: manifest[key] for key in ("status", "code", "message")}
        assert manifest["status"] == "failed"
    assert told == snapshot


def test_the_failed_manifest_of_a_problem_before_any_step(
    offline_services: Services, snapshot: SnapshotAssertion
) -> None:
    request = JobRequest.model_validate(
        {"job_id": "blob-0", "source": {"container": "inputs", "name": "huge.tif"}, "prompt": "(none)"}
    )
    problem = Problem(status="failed", code="image_too_large", stage="queued", message="huge.tif is 100.0 MB.")
    manifest = steps.persist(offline_services, JobRecord(request=request, problem=problem, finished_at="now"))
    assert stable(manifest.model_dump(mode="json")) == snapshot


def test_the_message_for_a_bad_configuration(snapshot: SnapshotAssertion) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(
            {"VARIA_MAX_VARIATIONS": "eleven", "VARIA_IMAGE_PROVIDER": "dalle-3", "VARIA_STORAGE": "blob"}
        )
    assert str(raised.value) == snapshot
