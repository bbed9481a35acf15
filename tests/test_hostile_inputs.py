"""Hostile inputs through the HTTP API and the blob path: each gets its expected answer, and nothing is lost."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest

from shared.adapters.services import Services, build_services
from shared.adapters.storage import INPUTS, OUTPUTS, WORK, check_blob_name
from shared.config import Settings
from shared.core.steps import manifest_name
from shared.functions.blob_trigger import handle_blob
from shared.functions.http_api import post_variation
from shared.local.cli import make_runtime
from shared.local.runtime import LocalRuntime
from tests.conftest import Azurite
from tests.hostile import CASES, Case, Http, Job, blob_metadata
from tests.images import has_gps
from tests.reliability import LEDGER
from tests.support import NoCredential, post_form

pytestmark = pytest.mark.azurite


@pytest.fixture(scope="module")
def services(azurite: Azurite) -> Services:
    """Offline providers over real Blob Storage (Azurite)."""
    azurite.clear()
    return build_services(Settings.from_env({"AzureWebJobsStorage": azurite.connection_string}), NoCredential)


@pytest.fixture(scope="module")
def runtime(services: Services) -> Iterator[LocalRuntime]:
    rt = make_runtime(services, retry_scale=0.001)
    yield rt
    rt.shutdown()


def _form(case: Case, data: bytes) -> func.HttpRequest:
    return post_form({"prompt": case.prompt, "profile": case.profile, **case.options}, data)


def _finish(runtime: LocalRuntime, services: Services, job_id: str, expected: Job, label: str) -> dict[str, Any]:
    """Wait for the job, then check it ended with the expected manifest; record it in the ledger."""
    LEDGER.jobs += 1
    instance = runtime._instances.get(job_id)
    if instance is not None:
        assert instance.done.wait(60), f"{label}: job did not finish"
    if services.storage.info(OUTPUTS, manifest_name(job_id)) is None:
        LEDGER.lost.append(label)
        pytest.fail(f"{label}: no manifest for job {job_id}")
    manifest: dict[str, Any] = json.loads(services.storage.get(OUTPUTS, manifest_name(job_id)))
    assert manifest["status"] == expected.status, (label, manifest["message"])
    assert expected.fragment in (manifest["message"] or ""), (label, manifest["message"])
    if manifest["status"] == "succeeded":
        assert len(manifest["variations"]) == manifest["request"]["n"]
        for variation in manifest["variations"]:
            image = services.storage.get(OUTPUTS, variation["image"]["name"])
            assert image.startswith(b"\x89PNG") and not has_gps(image), label
        assert not has_gps(services.storage.get(WORK, f"{job_id}/source.png")), label
    return manifest


@pytest.mark.parametrize("case", [c for c in CASES if c.http is not None], ids=lambda c: c.name)
def test_http_api(case: Case, services: Services, runtime: LocalRuntime) -> None:
    data = case.data()
    response: func.HttpResponse = asyncio.run(post_variation(_form(case, data), runtime, services))
    LEDGER.inputs.add(f"http:{case.name}")
    body = json.loads(response.get_body())
    if isinstance(case.http, Http):
        assert response.status_code == case.http.status, body
        assert case.http.fragment in body["error"], body
        return
    assert case.http is not None and response.status_code == 202, body
    manifest = _finish(runtime, services, body["job_id"], case.http, f"http:{case.name}")
    source = manifest["request"]["source"]
    assert services.storage.get(source["container"], source["name"]) == data, "the upload was changed"


@pytest.mark.parametrize("case", [c for c in CASES if c.blob is not None], ids=lambda c: c.name)
def test_blob_path(case: Case, services: Services, runtime: LocalRuntime) -> None:
    data = case.data()
    name = case.blob_name or f"hostile/{case.name}.img"
    storable = True
    try:
        check_blob_name(name)
    except ValueError:
        storable = False  # such names reach the trigger only from outside; never write them ourselves
    etag = None
    if storable:
        etag = services.storage.put(INPUTS, name, data, "application/octet-stream", blob_metadata(case)).etag
    job_id = asyncio.run(handle_blob(INPUTS, name, etag, None if storable else {}, runtime, services))
    LEDGER.inputs.add(f"blob:{case.name}")
    assert job_id is not None and case.blob is not None
    _finish(runtime, services, job_id, case.blob, f"blob:{case.name}")
    if storable:
        assert services.storage.get(INPUTS, name) == data, "the input blob was changed"


def test_there_are_at_least_forty_distinct_hostile_inputs() -> None:
    assert len({c.name for c in CASES}) == len(CASES) >= 40
