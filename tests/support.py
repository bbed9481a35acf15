"""Helpers the tests and the benchmarks share: settings for each kind of run, jobs, HTTP bodies."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import azure.functions as func

from shared.adapters.services import Services
from shared.core.jobs import request_for_upload
from shared.core.models import JobRequest, Mode, Profile
from shared.local.cli import make_runtime
from shared.local.runtime import Activity, Instance
from tests.fake_ai import FakeAzureAI

REPO = Path(__file__).resolve().parent.parent


class NoCredential:
    """A credential that fails loudly: tests must never reach for a real Azure token."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        raise AssertionError(f"a test asked for an Azure token ({scopes}); use keys against the fake server")


CHROMIUM = Path("/usr/bin/chromium")
PLAYWRIGHT = REPO / "node_modules" / "playwright-core"


def require_browser() -> None:
    """Chromium, Node.js and playwright-core, or the browser test is skipped (failed under CI=true)."""
    import os
    import shutil

    import pytest

    for ok, reason in (
        (CHROMIUM.exists(), f"{CHROMIUM} is missing: `apt-get install chromium` (.ci/run does it in CI)"),
        (shutil.which("node") is not None, "Node.js is needed for the browser tests"),
        (PLAYWRIGHT.is_dir(), "playwright-core is not installed: `make test` runs `npm ci`"),
    ):
        if ok:
            continue
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: the browser tests must run)")
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def offline_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"VARIA_STORAGE": "local", "VARIA_LOCAL_DIR": str(tmp_path / "store"), **extra}


def azure_env(fake: FakeAzureAI, connection_string: str | None = None, **extra: str) -> dict[str, str]:
    """Azure providers with API keys against the fake server; Blob Storage if a connection string is given."""
    env = {
        "AZURE_OPENAI_ENDPOINT": fake.url,
        "AZURE_OPENAI_API_KEY": "test-openai-key",
        "AZURE_VISION_ENDPOINT": fake.url,
        "AZURE_VISION_API_KEY": "test-vision-key",
        "VARIA_SERVICE_TIMEOUT_SECONDS": "10",
        "VARIA_IMAGE_REQUESTS_PER_MINUTE": "6000",  # the fake has no quota unless a test sets one
    }
    if connection_string:
        env["AzureWebJobsStorage"] = connection_string
    env.update(extra)
    return env


def upload_request(
    services: Services,
    data: bytes,
    prompt: str = "as a watercolour",
    *,
    n: int = 2,
    profile: Profile = "general",
    mode: Mode = "edit",
    filename: str | None = None,
) -> JobRequest:
    """Store `data` in uploads/ and describe its job, as the CLI does (`filename`: the user's name for it)."""
    return request_for_upload(
        services.storage, data, "bin", prompt=prompt, profile=profile, n=n, mode=mode, origin="cli", filename=filename
    )


def run_job(
    services: Services,
    request: JobRequest,
    retry_scale: float = 0.001,
    activities: Mapping[str, Activity] | None = None,
    max_workers: int | None = None,
) -> Instance:
    """Run one job through the real orchestrator on the SDK's replay engine, in process.

    `activities` replaces the bound steps (see shared.local.cli.bind_activities) to inject faults.
    """
    runtime = make_runtime(services, max_workers, retry_scale, activities)
    try:
        return runtime.run(request.job_id, request.model_dump(mode="json"))
    finally:
        runtime.shutdown()


def multipart(fields: dict[str, str], image: bytes, filename: str = "photo.png") -> tuple[bytes, str]:
    """A multipart/form-data body with text fields and an `image` file part: (body, content type)."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + image
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post_form(fields: dict[str, str], image: bytes, **headers: str) -> func.HttpRequest:
    """POST /api/variations as a browser form sends it, Content-Length included."""
    body, content_type = multipart(fields, image)
    all_headers = {"Content-Type": content_type, "Content-Length": str(len(body)), **headers}
    return func.HttpRequest("POST", "/api/variations", headers=all_headers, body=body)


class RuntimeJobClient:
    """The local runtime as the JobClient the blob trigger uses, waiting for the jobs it starts."""

    def __init__(self, services: Services) -> None:
        self.runtime = make_runtime(services, retry_scale=0.001)
        self.started: list[str] = []

    async def status(self, job_id: str) -> Any:
        return await self.runtime.status(job_id)

    async def start(self, request: Any) -> None:
        self.started.append(request.job_id)
        await self.runtime.start(request)

    def wait(self) -> None:
        """Wait for every job started so far to end."""
        for job_id in self.started:
            instance = self.runtime.get(job_id)
            assert instance is not None, job_id
            instance.done.wait(30)
