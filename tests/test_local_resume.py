"""Local jobs survive the process: recorded in storage as they run, resumed at the next start, one owner per storage.

The server runs as a real process (`python -m shared.server`) against the fake Azure AI server, which holds one
image call in flight (`fake.hold`) so that the job is mid-generation with one image stored when the server is
killed or stopped. What counts is what the fake received: a stored image is never asked for again.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.services import Services, build_services
from shared.adapters.storage import INPUTS, OUTPUTS, LocalStorage, Storage
from shared.config import Settings
from shared.core.steps import manifest_name
from shared.local.cli import STOPPING, bind_activities, make_runtime
from shared.local.store import StorageInUse, lock_storage
from tests.conftest import Azurite
from tests.fake_ai import FakeAzureAI
from tests.images import scene_png
from tests.support import REPO, NoCredential, azure_env, free_port, offline_env, upload_request

IMAGE_ROUTE = "images.edit"  # the default mode, edit, sends the source image
WAIT_S = 60.0  # how long a step may take before a test gives up waiting (never an assertion on time)


def _wait(condition: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)
    return value


class Server:
    """`python -m shared.server` in a child process; its output is collected line by line."""

    def __init__(self, env: dict[str, str], poll_seconds: float = 0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "shared.server", "--port", str(self.port), "--poll-seconds", str(poll_seconds)]
        self.process = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_line(self, predicate: Callable[[str], bool], what: str) -> str:
        """The first line (from here on) that matches; fails if the process ends first."""
        while True:
            try:
                line = self._queue.get(timeout=WAIT_S)
            except queue.Empty:
                raise AssertionError(f"the server never printed {what}: {self.lines}") from None
            if line is None:
                raise AssertionError(f"the server ended without printing {what}: {self.lines}")
            self.lines.append(line)
            if predicate(line):
                return line

    def ready(self) -> Server:
        self.wait_line(lambda line: "press Ctrl-C to stop" in line, "its banner")
        return self

    def output(self) -> str:
        """Everything it printed, once it has ended."""
        self.process.wait(timeout=WAIT_S)
        while (line := self._queue.get(timeout=WAIT_S)) is not None:
            self.lines.append(line)
        self._queue.put(None)
        return "\n".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=WAIT_S)

    def post_job(self, image: bytes, n: int = 2) -> dict[str, Any]:
        body = json.dumps({"image": base64.b64encode(image).decode(), "prompt": "as a watercolour", "n": n})
        request = urllib.request.Request(
            f"{self.url}/api/variations", body.encode(), {"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=WAIT_S) as response:  # noqa: S310 (loopback)
            answer: dict[str, Any] = json.loads(response.read())
            return answer

    def job(self, job_id: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/api/variations/{job_id}", timeout=WAIT_S) as response:  # noqa: S310
            answer: dict[str, Any] = json.loads(response.read())
            return answer


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def _server_env(tmp_path: Path, fake: FakeAzureAI | None, connection_string: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "VARIA_")) and k != "AzureWebJobsStorage"}
    env.update(offline_env(tmp_path))
    if fake is not None:
        env.update(azure_env(fake, connection_string))
    if connection_string:
        env["VARIA_STORAGE"] = "blob"
    return env


def _storage(env: dict[str, str]) -> Storage:
    return build_services(Settings.from_env(env), NoCredential).storage


def _stored_variations(storage: Storage, job_id: str) -> dict[str, bytes]:
    names = [n for n in storage.list(OUTPUTS, f"{job_id}/") if n.split("/")[-1].startswith("variation-")]
    return {name: storage.get(OUTPUTS, name) for name in names}


def _start_job_mid_generation(server: Server, fake: FakeAzureAI, storage: Storage) -> tuple[str, dict[str, bytes]]:
    """POST a 2-image job; return once one image is stored and the other call is in flight (held by the fake)."""
    fake.hold(IMAGE_ROUTE, 2)
    job_id: str = server.post_job(scene_png(), n=2)["job_id"]
    _wait(lambda: fake.arrived(IMAGE_ROUTE) == 2, "both image calls to reach the fake")
    stored = _wait(lambda: _stored_variations(storage, job_id), "the first image to be stored")
    assert len(stored) == 1
    return job_id, stored


def _finished(server: Server, job_id: str) -> dict[str, Any]:
    view: dict[str, Any] = _wait(lambda: (v := server.job(job_id))["status"] != "running" and v, "the job to end")
    return view


@pytest.mark.parametrize("backend", ["local folder", "Azurite"])
def test_a_job_killed_mid_generation_finishes_after_a_restart_and_no_stored_image_is_paid_again(
    backend: str, fake: FakeAzureAI, tmp_path: Path, servers: list[Server], request: pytest.FixtureRequest
) -> None:
    connection_string = None
    if backend == "Azurite":
        azurite: Azurite = request.getfixturevalue("azurite")
        azurite.clear()
        connection_string = azurite.connection_string
    env = _server_env(tmp_path, fake, connection_string)
    storage = _storage(env)
    first = Server(env).ready()
    servers.append(first)
    job_id, stored_before = _start_job_mid_generation(first, fake, storage)
    chat_calls, vision_calls = fake.arrived("chat"), fake.arrived("vision.analyze")

    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=WAIT_S)
    fake.release()  # the image the killed server was waiting for is drawn for nobody
    assert storage.info(OUTPUTS, manifest_name(job_id)) is None

    second = Server(env).ready()
    servers.append(second)
    resuming = second.wait_line(lambda line: "resuming" in line, "that it resumes the job")
    assert resuming.strip() == f"resuming 1 unfinished job(s) where they stopped: {job_id}"
    view = _finished(second, job_id)

    assert view["status"] == "succeeded", view
    assert [image["status"] for image in view["images"]] == ["succeeded", "succeeded"]
    manifest = json.loads(storage.get(OUTPUTS, manifest_name(job_id)))
    assert manifest["status"] == "succeeded"
    # One more image call, for the image that was in flight; the stored one is kept as it was.
    assert fake.arrived(IMAGE_ROUTE) == 3
    for name, data in stored_before.items():
        assert storage.get(OUTPUTS, name) == data
    # Caption and compose ran before the kill: their recorded results are replayed, not asked for again.
    assert (fake.arrived("chat"), fake.arrived("vision.analyze")) == (chat_calls, vision_calls)

    # The same request to the restarted server is the same job: nothing new is started or paid.
    again = second.post_job(scene_png(), n=2)
    assert (again["job_id"], again["created"]) == (job_id, False)
    assert fake.arrived(IMAGE_ROUTE) == 3 and fake.arrived("chat") == chat_calls


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stop_lets_the_running_step_finish_records_the_job_and_the_next_start_finishes_it(
    stop: signal.Signals, fake: FakeAzureAI, tmp_path: Path, servers: list[Server]
) -> None:
    env = _server_env(tmp_path, fake)
    storage = _storage(env)
    first = Server(env).ready()
    servers.append(first)
    job_id, _stored = _start_job_mid_generation(first, fake, storage)

    first.process.send_signal(stop)
    stopping = first.wait_line(lambda line: line.startswith("Stopping:"), "that it is stopping")
    assert stopping == STOPPING  # which says: running steps finish and are saved, the job resumes at the next start
    fake.release()  # the image call in flight answers: the running step finishes
    output = first.output()
    assert first.process.returncode == 0, output
    assert "1 unfinished job(s) saved: they resume at the next start\nStopped." in output
    assert fake.arrived(IMAGE_ROUTE) == 2
    assert len(_stored_variations(storage, job_id)) == 2  # the running step did finish
    assert storage.info(OUTPUTS, manifest_name(job_id)) is None

    second = Server(env).ready()
    servers.append(second)
    view = _finished(second, job_id)
    assert view["status"] == "succeeded", view
    # The step that ran during the stop was recorded: nothing is drawn again.
    assert fake.arrived(IMAGE_ROUTE) == 2


def test_a_second_server_on_the_same_folder_refuses_to_start_and_the_first_runs_the_blob_jobs(
    tmp_path: Path, servers: list[Server]
) -> None:
    env = _server_env(tmp_path, None)
    first = Server(env, poll_seconds=0.1).ready()
    servers.append(first)

    second = Server(env, poll_seconds=0.1)
    servers.append(second)
    output = second.output()
    assert second.process.returncode == 2, output
    folder = Path(env["VARIA_LOCAL_DIR"]).resolve()
    assert "error (storage_in_use): Another Varia process, `python -m shared.server`" in output
    assert f"pid {first.process.pid}" in output and str(folder) in output
    assert "Stop it (Ctrl-C in its terminal) or use another folder (VARIA_LOCAL_DIR=another-folder)" in output

    storage = LocalStorage(folder)
    storage.put(INPUTS, "dropped.png", scene_png(), "image/png")
    manifests = _wait(lambda: [n for n in storage.list(OUTPUTS) if n.endswith("/manifest.json")], "the blob's job")
    assert len(manifests) == 1
    assert json.loads(storage.get(OUTPUTS, manifests[0]))["status"] == "succeeded"
    assert first.process.poll() is None


# ---- in process: the store and the lock on both kinds of storage ---------------------------------------------


@pytest.fixture(params=["local folder", "Azurite"])
def services(request: pytest.FixtureRequest, tmp_path: Path) -> Services:
    if request.param == "Azurite":
        azurite: Azurite = request.getfixturevalue("azurite")
        azurite.clear()
        env = {"VARIA_STORAGE": "blob", "AzureWebJobsStorage": azurite.connection_string}
    else:
        env = offline_env(tmp_path)
    return build_services(Settings.from_env(env), NoCredential)


def test_a_runtime_that_dies_mid_job_is_resumed_by_the_next_from_storage_alone(services: Services) -> None:
    calls: list[tuple[str, int | None]] = []
    hung, revive = threading.Event(), threading.Event()
    steps = bind_activities(services)

    def counting(name: str, hang_on_index: int | None) -> Callable[[Any], Any]:
        def activity(payload: Any) -> Any:
            index = payload.get("index") if isinstance(payload, dict) else None
            calls.append((name, index))
            if hang_on_index is not None and index == hang_on_index:
                hung.set()
                revive.wait()  # this runtime "dies" here: the call does not return while the test runs
            return steps[name](payload)

        return activity

    job = upload_request(services, scene_png(), n=2)
    dying = make_runtime(services, retry_scale=0.001, activities={n: counting(n, 1) for n in steps})
    try:
        dying.start_background(job.job_id, job.model_dump(mode="json"))
        _wait(hung.is_set, "generate 1 to start")
        _wait(lambda: _stored_variations(services.storage, job.job_id), "variation 0 to be stored")
        assert ("generate", 0) in calls
        calls.clear()

        # A new runtime on the same storage: it knows the job only from what was recorded.
        resumed = make_runtime(services, retry_scale=0.001, activities={n: counting(n, None) for n in steps})
        try:
            assert resumed.resume_unfinished() == [job.job_id]
            instance = resumed.get(job.job_id)
            assert instance is not None
            _wait(instance.done.is_set, "the resumed job to finish")
        finally:
            resumed.shutdown()
    finally:
        revive.set()
        dying.shutdown()
    assert instance.runtime_status == "Completed" and instance.output["status"] == "succeeded"
    # Only what had not completed runs again: generate 1 (generate 0 too if its completion was not
    # recorded yet; it then finds its image stored), then persist.
    assert ("generate", 1) in calls and ("persist", None) in calls
    assert not {name for name, _ in calls} & {"prepare", "caption", "compose"}


def test_an_image_stored_by_a_step_whose_completion_was_never_recorded_is_not_drawn_again(
    services: Services,
) -> None:
    steps = bind_activities(services)
    stored, revive = threading.Event(), threading.Event()

    def generate_then_die(payload: Any) -> Any:
        result = steps["generate"](payload)
        if payload["index"] == 1:
            stored.set()
            revive.wait()  # the image is stored, the process "dies" before its completion is recorded
        return result

    job = upload_request(services, scene_png(), n=2)
    dying = make_runtime(services, retry_scale=0.001, activities={**steps, "generate": generate_then_die})
    try:
        dying.start_background(job.job_id, job.model_dump(mode="json"))
        _wait(stored.is_set, "variation 1 to be stored")
        # Variation 0 runs at the same time and may or may not be stored yet: only 1 is known now.
        second = f"{job.job_id}/variation-1.png"
        drawn = services.storage.get(OUTPUTS, second)
        resumed = make_runtime(services, retry_scale=0.001)
        try:
            assert resumed.resume_unfinished() == [job.job_id]
            instance = resumed.get(job.job_id)
            assert instance is not None
            _wait(instance.done.is_set, "the resumed job to finish")
        finally:
            resumed.shutdown()
    finally:
        revive.set()
        dying.shutdown()
    manifest = instance.output
    assert manifest["status"] == "succeeded"
    assert manifest["variations"][1]["reused"] is True  # generate found it stored: no second call
    stored_now = _stored_variations(services.storage, job.job_id)
    assert sorted(stored_now) == [f"{job.job_id}/variation-0.png", second]
    assert stored_now[second] == drawn  # the same bytes: not drawn again


def test_an_identical_request_after_a_restart_is_the_finished_job(services: Services) -> None:
    job = upload_request(services, scene_png(), n=1)
    first = make_runtime(services, retry_scale=0.001)
    try:
        assert first.run(job.job_id, job.model_dump(mode="json")).runtime_status == "Completed"
    finally:
        first.shutdown()
    later = make_runtime(services, retry_scale=0.001)
    try:
        state = _run(later.status(job.job_id))
        assert state is not None and state.runtime_status == "Completed"
        assert state.output is not None and state.output["status"] == "succeeded"
    finally:
        later.shutdown()


def _run(coroutine: Any) -> Any:
    import asyncio

    return asyncio.run(coroutine)


def test_one_process_owns_a_storage_and_the_refusal_names_it(services: Services) -> None:
    held = lock_storage(services.storage, "python -m shared.server", "use another folder")
    try:
        with pytest.raises(StorageInUse) as refused:
            lock_storage(services.storage, "python -m shared.cli vary", "use another folder")
        message = str(refused.value)
        assert refused.value.code == "storage_in_use"
        assert f"`python -m shared.server` (pid {os.getpid()}" in message
        assert message.endswith("Stop it (Ctrl-C in its terminal) or use another folder.")
    finally:
        held.release()
    lock_storage(services.storage, "python -m shared.cli vary", "use another folder").release()


def test_a_job_known_only_by_its_manifest_is_finished(tmp_path: Path) -> None:
    """A manifest is the end of a job, even with no record of it (a folder from before records were kept)."""
    services = build_services(Settings.from_env(offline_env(tmp_path)), NoCredential)
    job = upload_request(services, scene_png(), n=1)
    first = make_runtime(services, retry_scale=0.001)
    try:
        first.run(job.job_id, job.model_dump(mode="json"))
    finally:
        first.shutdown()
    for record in (Path(tmp_path / "store" / "work" / "orchestrations")).rglob("*"):
        if record.is_file():
            record.unlink()
    state = _run(make_runtime(services).status(job.job_id))
    assert state is not None and state.runtime_status == "Completed"
    assert state.output is not None and state.output["status"] == "succeeded"
