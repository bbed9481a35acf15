"""Shared fixtures: the fake Azure AI server, Azurite, settings and services for each kind of run."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.services import Services, build_services
from shared.adapters.storage import BlobStorage, LocalStorage, Storage
from shared.config import Settings
from tests.fake_ai import FakeAzureAI
from tests.images import scene_png
from tests.support import REPO, NoCredential, free_port, offline_env

# The tests never send telemetry: shared/telemetry.py turns Azure Monitor on only when this is set.
os.environ.pop("APPLICATIONINSIGHTS_CONNECTION_STRING", None)

AZURITE = REPO / "node_modules" / ".bin" / "azurite"
# Azurite's well-known development account key (public, documented, for the emulator only).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeAzureAI]:
    with FakeAzureAI() as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeAzureAI) -> Iterator[FakeAzureAI]:
    fake_server.reset()
    fake_server.image_size_override = (96, 64)  # small images keep the tests fast
    yield fake_server
    fake_server.reset()


class Azurite:
    """Azurite from npm on free loopback ports, in a throw-away folder."""

    def __init__(self, workdir: Path, debug_log: Path | None = None) -> None:
        self.workdir = workdir
        self.debug_log = debug_log  # Azurite's --debug log: one line per request, method and URL
        self.blob_port, self.queue_port, self.table_port = free_port(), free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        return (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.blob_port}/devstoreaccount1;"
            f"QueueEndpoint=http://127.0.0.1:{self.queue_port}/devstoreaccount1;"
            f"TableEndpoint=http://127.0.0.1:{self.table_port}/devstoreaccount1;"
        )

    def start(self) -> None:
        args = [
            str(AZURITE), "--silent", "--location", str(self.workdir), "--skipApiVersionCheck", "--loose",
            "--blobHost", "127.0.0.1", "--blobPort", str(self.blob_port),
            "--queueHost", "127.0.0.1", "--queuePort", str(self.queue_port),
            "--tableHost", "127.0.0.1", "--tablePort", str(self.table_port),
        ]  # fmt: skip
        if self.debug_log is not None:
            args += ["--debug", str(self.debug_log)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.blob_port), timeout=0.5):
                    return
            except OSError:
                if self.process.poll() is not None:
                    stderr = self.process.stderr.read().decode() if self.process.stderr else ""
                    raise RuntimeError(f"Azurite exited: {stderr}") from None
                time.sleep(0.1)
        raise RuntimeError("Azurite did not start within 30 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:  # open keep-alive connections can hold it up
                self.process.kill()
                self.process.wait(timeout=5)

    def requests(self) -> list[tuple[str, str]]:
        """(method, path) of every request Azurite has served, from its debug log, in order.

        Azurite writes its log asynchronously. A marker request, sent now, appears in the log only
        after every request served before it: waiting for it makes the list complete.
        """
        assert self.debug_log is not None, "start Azurite with a debug_log to see its requests"
        marker = f"/devstoreaccount1/log-marker-{uuid.uuid4().hex}"
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{self.blob_port}{marker}", timeout=10)  # noqa: S310 (loopback)
        deadline = time.monotonic() + 10
        while True:
            found = re.findall(r"RequestMethod=(\w+) RequestURL=http://[^/\s]+(/\S*)", self.debug_log.read_text())
            served = [(method, path) for method, path in found]
            paths = [path for _, path in served]
            if marker in paths:
                return [request for request in served[: paths.index(marker)] if "/log-marker-" not in request[1]]
            assert time.monotonic() < deadline, "Azurite's debug log never showed the marker request"
            time.sleep(0.02)

    def clear(self) -> None:
        """Delete every container, so each test starts from empty storage."""
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient.from_connection_string(self.connection_string)
        for container in service.list_containers():
            service.delete_container(container.name)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    if not AZURITE.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("Azurite is not installed: `make test` runs `npm ci` first")
        pytest.skip("Azurite is not installed; run `make test` (it runs `npm ci`)")
    if shutil.which("node") is None:
        pytest.fail("Node.js is needed to run Azurite")
    server = Azurite(tmp_path_factory.mktemp("azurite"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["local", "blob"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """Each test once on a local folder and once on Azurite: both back ends keep one contract."""
    if request.param == "local":
        return LocalStorage(tmp_path)
    azurite: Azurite = request.getfixturevalue("azurite")
    azurite.clear()
    return BlobStorage.from_settings(azurite.connection_string, "")


@pytest.fixture
def offline_services(tmp_path: Path) -> Services:
    return build_services(Settings.from_env(offline_env(tmp_path)), NoCredential)


@pytest.fixture
def offline_server(offline_services: Services) -> Iterator[Any]:
    """The local server on a free port of 127.0.0.1 over `offline_services`, its job retries scaled down."""
    from shared.local.cli import make_runtime
    from shared.local.server import VariaServer

    server = VariaServer(offline_services, make_runtime(offline_services, retry_scale=0.001), port=0, poll_interval=0.1)
    server.start()
    yield server
    server.close()


@pytest.fixture
def sample_png() -> bytes:
    return scene_png()


class _Manifests(logging.Handler):
    """Every manifest a test wrote in this process, from the log line persist writes for each."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[Any] = []

    def emit(self, record: logging.LogRecord) -> None:
        manifest = getattr(record, "varia_manifest", None)
        if manifest is not None:
            self.seen.append(manifest)


MANIFESTS = _Manifests()


def pytest_sessionstart(session: pytest.Session) -> None:
    steps_log = logging.getLogger("varia.steps")
    steps_log.addHandler(MANIFESTS)
    steps_log.setLevel(min(steps_log.level or logging.INFO, logging.INFO))


def untrue_messages(manifests: list[Any]) -> list[str]:
    """Final messages that are not true when read: a promised retry, a Python repr, a hash for a name.

    A manifest is final, so "will retry" is never true in it; "<_io." and "object at 0x" are
    Python's words, not the user's; 64 hex digits are an upload's sha256, shown where the user
    gave the image a name of their own.
    """
    found = []
    for manifest in manifests:
        texts = [manifest.message or ""] + [v.reason or "" for v in manifest.variations]
        for text in texts:
            if re.search(r"will retry|<_io\.|object at 0x", text, re.IGNORECASE):
                found.append(f"{manifest.job_id}: {text}")
            elif (name := manifest.request.filename) and any(h not in name for h in re.findall(r"[0-9a-f]{64}", text)):
                found.append(f"{manifest.job_id} ({manifest.request.filename}): {text}")
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Judge the messages of every manifest and the reliability ledger once every test has run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    untrue = untrue_messages(MANIFESTS.seen)
    if untrue:
        for line in untrue:
            if reporter is not None:
                reporter.write_line(f"Untrue final message: {line}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

    from tests.hostile import CASES
    from tests.reliability import LEDGER, is_complete, readme_table, verdict

    expected = {f"http:{c.name}" for c in CASES if c.http} | {f"blob:{c.name}" for c in CASES if c.blob}
    if not is_complete(LEDGER, expected):
        return  # a partial run: the figures would not mean anything
    LEDGER.save()
    failure = verdict(LEDGER, readme_table())
    if failure is not None:
        if reporter is not None:
            reporter.write_line(f"Reliability ledger: {failure}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
