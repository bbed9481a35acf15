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
from shared.core.blobs import manifest_name, source_name
from shared.functions.blob_trigger import handle_blob
from shared.functions.http_api import post_variation
from shared.local.cli import make_runtime
from shared.local.runtime import LocalRuntime
from tests.conftest import Azurite
from tests.hostile import CASES, Case, Http, blob_metadata
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


def manifest_of(runtime: LocalRuntime, services: Services, job_id: str, label: str) -> dict[str, Any] | None:
    """The job's manifest once it has ended (None if it never wrote one), counted in the reliability ledger."""
    LEDGER.jobs += 1
    instance = runtime.get(job_id)
    if instance is not None:
        instance.done.wait(60)
    if services.storage.info(OUTPUTS, manifest_name(job_id)) is None:
        LEDGER.lost.append(label)
        return None
    manifest: dict[str, Any] = json.loads(services.storage.get(OUTPUTS, manifest_name(job_id)))
    return manifest


def stored_images(services: Services, manifest: dict[str, Any]) -> list[bytes]:
    """The job's normalized source and its variations, as stored."""
    job_id = manifest["job_id"]
    images = [services.storage.get(OUTPUTS, v["image"]["name"]) for v in manifest["variations"]]
    return [services.storage.get(WORK, source_name(job_id)), *images]


def is_clean_image(data: bytes) -> bool:
    """A JPEG or PNG Varia wrote (the prepared source, or a variation), with no GPS left in it."""
    return data.startswith((b"\x89PNG", b"\xff\xd8\xff")) and not has_gps(data)


def error_text(body: dict[str, Any]) -> str:
    error = body["error"]
    return str(error["message"] if isinstance(error, dict) else error)


@pytest.mark.parametrize("case", [c for c in CASES if c.http is not None], ids=lambda c: c.name)
def test_http_api(case: Case, services: Services, runtime: LocalRuntime) -> None:
    data = case.data()
    response: func.HttpResponse = asyncio.run(post_variation(_form(case, data), runtime, services))
    LEDGER.inputs.add(f"http:{case.name}")
    body = json.loads(response.get_body())
    if isinstance(case.http, Http):
        assert response.status_code == case.http.status, body
        assert case.http.fragment in error_text(body), body
        return
    assert case.http is not None and response.status_code == 202, body

    manifest = manifest_of(runtime, services, body["job_id"], f"http:{case.name}")

    assert manifest is not None, "the job ended without a manifest"
    assert manifest["status"] == case.http.status, manifest["message"]
    assert case.http.fragment in (manifest["message"] or ""), manifest["message"]
    if manifest["status"] == "succeeded":
        assert len(manifest["variations"]) == manifest["request"]["n"]
        assert all(is_clean_image(image) for image in stored_images(services, manifest))
        source = manifest["request"]["source"]
        assert not has_gps(services.storage.get(source["container"], source["name"])), "the upload kept its GPS"


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

    manifest = manifest_of(runtime, services, job_id, f"blob:{case.name}")

    assert manifest is not None, "the job ended without a manifest"
    assert manifest["status"] == case.blob.status, manifest["message"]
    assert case.blob.fragment in (manifest["message"] or ""), manifest["message"]
    if manifest["status"] == "succeeded":
        assert len(manifest["variations"]) == manifest["request"]["n"]
        assert all(is_clean_image(image) for image in stored_images(services, manifest))
    if storable:
        assert services.storage.get(INPUTS, name) == data, "the input blob was changed"


def test_there_are_at_least_forty_distinct_hostile_inputs() -> None:
    assert len({c.name for c in CASES}) == len(CASES) >= 40
