"""Storage faults: a full disk, a read-only folder or identity, an unreachable store.

Each ends with a specific code and a message that says what to do, logged with the job id where
there is one; local writes are atomic and a failed one leaves no temporary file; request paths
use short timeouts, so an unreachable store answers in seconds.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

import shared.adapters.storage as storage_module
from shared.adapters.services import Services, build_services
from shared.adapters.storage import (
    OUTPUTS,
    REQUEST_TIMEOUTS,
    BlobStorage,
    LocalStorage,
    StorageFull,
    StorageReadOnly,
    StorageUnavailable,
    Timeouts,
    for_requests,
)
from shared.config import Settings
from shared.core.steps import manifest_name
from shared.functions.http_api import get_variation, post_variation
from shared.local.cli import make_runtime
from tests.support import NoCredential, offline_env, post_form, run_job, upload_request

# --- Helpers: OS faults on chosen paths, and a loopback server that answers as a broken store ---


def fail_writes(monkeypatch: pytest.MonkeyPatch, error: int, under: Callable[[Path], bool]) -> None:
    """Make LocalStorage's writes of the files `under` selects fail with OSError(error) midway.

    The file is created, then the write raises, as a disk that fills up does.
    """
    real_open = open

    class Failing:
        def __init__(self, file: Any) -> None:
            self.file = file

        def __enter__(self) -> Failing:
            return self

        def __exit__(self, *exc: object) -> None:
            self.file.close()

        def write(self, data: bytes) -> int:
            self.file.write(data[: len(data) // 2])
            raise OSError(error, os.strerror(error))

    def faulty_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        file = real_open(path, mode, *args, **kwargs)
        if "w" in mode and under(Path(path)):
            return Failing(file)
        return file

    monkeypatch.setattr(storage_module, "open", faulty_open, raising=False)


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


class BrokenStore:
    """A loopback HTTP server standing in for Blob Storage: it resets, hangs or answers an error.

    `connections` counts the TCP connections the client opened (one per attempt).
    """

    def __init__(self, behaviour: str, status: int = 0, error_code: str = "") -> None:
        self.behaviour, self.status, self.error_code = behaviour, status, error_code
        self.connections = 0
        self.client_hung_up_first = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def connection_string(self) -> str:
        return (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/devstoreaccount1;"
        )

    def _serve(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            if self.behaviour == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                return  # closed with RST, no answer
            conn.settimeout(30)
            try:
                request = conn.recv(65536)
                if self.behaviour == "hang":
                    if conn.recv(1) == b"":  # nothing is ever sent: only the client can end this
                        self.client_hung_up_first.set()
                    return
                while b"\r\n\r\n" not in request:
                    request += conn.recv(65536)
                body = f"<?xml version='1.0'?><Error><Code>{self.error_code}</Code><Message>no</Message></Error>"
                head = (
                    f"HTTP/1.1 {self.status} Refused\r\nx-ms-error-code: {self.error_code}\r\n"
                    f"Content-Type: application/xml\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                )
                conn.sendall(head.encode() + body.encode())
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


@pytest.fixture
def broken_store(request: pytest.FixtureRequest) -> Iterator[BrokenStore]:
    server = BrokenStore(*request.param)
    yield server
    server.close()


@pytest.fixture
def local_services(tmp_path: Path) -> Services:
    return build_services(Settings.from_env(offline_env(tmp_path)), NoCredential)


def call(coroutine: Any) -> tuple[int, dict[str, Any]]:
    response: func.HttpResponse = asyncio.run(coroutine)
    return response.status_code, json.loads(response.get_body())


# --- Local folder: atomic writes, no temporary files, full and read-only classified ------------


def test_concurrent_puts_and_reads_never_see_a_partial_file(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    versions = [json.dumps({"v": k, "pad": "x" * (k * 997 % 5000)}).encode() for k in range(8)]
    storage.put(OUTPUTS, "job/manifest.json", versions[0], "application/json", {"k": "0"})
    errors: list[BaseException] = []
    seen: set[bytes] = set()

    def writer(k: int) -> None:
        for _ in range(150):
            storage.put(OUTPUTS, "job/manifest.json", versions[k], "application/json", {"k": str(k)})

    def reader() -> None:
        for _ in range(300):
            info = storage.info(OUTPUTS, "job/manifest.json")
            assert info is not None and info.content_type == "application/json"
            seen.add(storage.get(OUTPUTS, "job/manifest.json"))

    def guarded(target: Callable[..., None], *args: Any) -> Callable[[], None]:
        def run() -> None:
            try:
                target(*args)
            except BaseException as exc:  # noqa: BLE001 - every error is the test's finding
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guarded(writer, k)) for k in range(8)]
    threads += [threading.Thread(target=guarded(reader)) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert seen <= set(versions)  # every read saw one whole version
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize(
    ("error", "fault", "code", "advice"),
    [
        (errno.ENOSPC, StorageFull, "storage_full", "Free some space"),
        (errno.EROFS, StorageReadOnly, "storage_read_only", "writable"),
        (errno.EACCES, StorageReadOnly, "storage_read_only", "writable"),
    ],
)
def test_a_failed_local_write_is_classified_keeps_the_old_file_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: int, fault: type[Exception], code: str, advice: str
) -> None:
    storage = LocalStorage(tmp_path)
    storage.put(OUTPUTS, "job/variation-0.png", b"first version", "image/png")
    fail_writes(monkeypatch, error, lambda path: True)

    with pytest.raises(fault) as raised:
        storage.put(OUTPUTS, "job/variation-0.png", b"second version, never whole", "image/png")

    assert getattr(raised.value, "code", None) == code
    assert str(tmp_path) in str(raised.value) and advice in str(raised.value)
    assert storage.get(OUTPUTS, "job/variation-0.png") == b"first version"
    assert temp_files(tmp_path) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes through chmod")
def test_a_really_read_only_folder_is_classified(tmp_path: Path) -> None:
    root = tmp_path / "store"
    storage = LocalStorage(root)
    storage.put(OUTPUTS, "job/a.png", b"a", "image/png")
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        folder.chmod(0o555)
    try:
        with pytest.raises(StorageReadOnly, match="writable"):
            storage.put(OUTPUTS, "job/b.png", b"b", "image/png")
    finally:
        for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
            folder.chmod(0o755)
    assert temp_files(root) == []


# --- A job meets a full or read-only folder: a failed manifest with the code, a log line --------


@pytest.mark.parametrize(
    ("error", "code", "advice"),
    [(errno.ENOSPC, "storage_full", "Free some space"), (errno.EROFS, "storage_read_only", "writable")],
)
def test_a_job_ends_failed_with_the_storage_code_and_logs_the_job_id(
    local_services: Services,
    sample_png: bytes,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    error: int,
    code: str,
    advice: str,
) -> None:
    request = upload_request(local_services, sample_png, n=1)
    root = Path(local_services.settings.local_dir).resolve()
    job_folder = root / "work" / request.job_id
    fail_writes(monkeypatch, error, lambda path: job_folder in path.parents)  # prepare cannot save the source

    with caplog.at_level(logging.ERROR):
        instance = run_job(local_services, request)

    assert instance.runtime_status == "Completed"
    manifest = json.loads(local_services.storage.get(OUTPUTS, manifest_name(request.job_id)))
    assert (manifest["status"], manifest["code"]) == ("failed", code)
    assert advice in manifest["message"] and str(root) in manifest["message"]
    assert any(request.job_id in r.getMessage() and code in r.getMessage() for r in caplog.records)
    assert temp_files(root) == []


def test_a_job_whose_manifest_cannot_be_stored_still_says_why(
    local_services: Services, sample_png: bytes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    request = upload_request(local_services, sample_png, n=1)
    root = Path(local_services.settings.local_dir).resolve()
    job_folders = (root / "work" / request.job_id, root / "outputs" / request.job_id)
    fail_writes(monkeypatch, errno.ENOSPC, lambda path: any(f in path.parents for f in job_folders))

    runtime = make_runtime(local_services, retry_scale=0.001)
    try:
        with caplog.at_level(logging.ERROR):
            instance = runtime.run(request.job_id, request.model_dump(mode="json"))
        status, view = call(get_variation(request.job_id, runtime, local_services))
    finally:
        runtime.shutdown()

    assert local_services.storage.info(OUTPUTS, manifest_name(request.job_id)) is None
    assert instance.output["code"] == "storage_full" and instance.output["status"] == "failed"
    assert status == 200 and (view["status"], view["code"]) == ("failed", "storage_full")
    assert "Free some space" in view["message"] and "force=true" not in view["message"]
    assert any(request.job_id in r.getMessage() and "storage_full" in r.getMessage() for r in caplog.records)
    assert temp_files(root) == []


def test_an_upload_to_a_full_folder_answers_507_with_the_code(
    local_services: Services, sample_png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_writes(monkeypatch, errno.ENOSPC, lambda path: "uploads" in path.parts)
    runtime_client = NoJobs()
    status, body = call(post_variation(post_form({"prompt": "as sepia"}, sample_png), runtime_client, local_services))
    assert status == 507
    assert body["code"] == "storage_full" and "Free some space" in body["error"]
    assert "force=true" not in body["error"]
    assert runtime_client.started == []


class NoJobs:
    """A JobClient that knows no job; records what it was asked to start."""

    def __init__(self) -> None:
        self.started: list[str] = []

    async def status(self, job_id: str) -> Any:
        return None

    async def start(self, request: Any) -> None:
        self.started.append(request.job_id)


# --- Blob Storage: answers classified, short timeouts on request paths -------------------------


@pytest.mark.parametrize(
    ("broken_store", "fault", "code"),
    [
        (("answer", 403, "AuthorizationPermissionMismatch"), StorageReadOnly, "storage_read_only"),
        (("answer", 409, "BlobImmutableDueToPolicy"), StorageReadOnly, "storage_read_only"),
        (("answer", 507, "InsufficientAccountResources"), StorageFull, "storage_full"),
    ],
    indirect=["broken_store"],
)
def test_blob_answers_are_classified(broken_store: BrokenStore, fault: type[Exception], code: str) -> None:
    storage = BlobStorage.from_settings(broken_store.connection_string, "", timeouts=Timeouts(2, 2, 0, 0))
    with pytest.raises(fault) as raised:
        storage.put(OUTPUTS, "job/variation-0.png", b"png", "image/png")
    assert getattr(raised.value, "code", None) == code
    assert f"127.0.0.1:{broken_store.port}" in str(raised.value) and "AccountKey" not in str(raised.value)


def test_request_paths_use_short_timeouts_and_one_retry(tmp_path: Path) -> None:
    blob = BlobStorage.from_settings("UseDevelopmentStorage=true", "")
    assert blob.timeouts is None  # activities keep the SDK's patient defaults: Durable waits for them
    short = for_requests(blob)
    assert isinstance(short, BlobStorage) and short.timeouts == REQUEST_TIMEOUTS
    assert REQUEST_TIMEOUTS.connect <= 5 and REQUEST_TIMEOUTS.read <= 10 and REQUEST_TIMEOUTS.retries <= 1
    assert for_requests(short) is short
    local = LocalStorage(tmp_path)
    assert for_requests(local) is local


@pytest.mark.parametrize("broken_store", [("reset",)], indirect=True)
def test_an_unreachable_store_is_tried_as_often_as_the_request_policy_says(broken_store: BrokenStore) -> None:
    storage = for_requests(BlobStorage.from_settings(broken_store.connection_string, ""))
    with pytest.raises(StorageUnavailable) as raised:
        storage.info(OUTPUTS, "job/manifest.json")
    assert raised.value.code == "storage_unreachable" and "npx azurite" in str(raised.value)
    assert broken_store.connections == 1 + REQUEST_TIMEOUTS.retries


@pytest.mark.parametrize("broken_store", [("hang",)], indirect=True)
def test_the_read_timeout_is_the_clients(broken_store: BrokenStore) -> None:
    storage = BlobStorage.from_settings(broken_store.connection_string, "", timeouts=Timeouts(2, 0.5, 0, 0))
    with pytest.raises(StorageUnavailable):
        storage.info(OUTPUTS, "job/manifest.json")
    assert broken_store.client_hung_up_first.wait(5)  # the client gave up, not the silent server
    assert broken_store.connections == 1


@pytest.mark.parametrize("broken_store", [("reset",)], indirect=True)
def test_http_requests_meet_an_unreachable_store_with_503_and_what_to_do(
    broken_store: BrokenStore, tmp_path: Path, sample_png: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings.from_env({"AzureWebJobsStorage": broken_store.connection_string})
    services = build_services(settings, NoCredential)
    client = NoJobs()

    status, body = call(post_variation(post_form({"prompt": "as sepia"}, sample_png), client, services))
    assert status == 503 and body["code"] == "storage_unreachable"
    assert "npx azurite" in body["error"] and "AzureWebJobsStorage" in body["error"]
    assert broken_store.connections == 1 + REQUEST_TIMEOUTS.retries  # the short policy, not the SDK's
    assert client.started == []

    job_id = "http-" + "0" * 32
    with caplog.at_level(logging.ERROR):
        status, body = call(get_variation(job_id, client, services))
    assert status == 503 and body["code"] == "storage_unreachable"
    assert any(job_id in r.getMessage() and "storage_unreachable" in r.getMessage() for r in caplog.records)
