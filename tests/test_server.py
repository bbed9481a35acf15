"""The local server over real HTTP: the API and the page at the host's paths, limits, and Development blob polling."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.services import Services, load_presets
from shared.adapters.storage import INPUTS, OUTPUTS
from shared.core.jobs import blob_job_id
from shared.core.steps import manifest_name
from shared.local.cli import make_runtime
from shared.local.server import BlobPoller, VariaServer, main
from tests.images import scene_png
from tests.support import REPO, free_port, multipart, offline_env

STAGES = ["queued", "preparing", "captioning", "composing", "generating", "saving", "done"]


@pytest.fixture
def services(offline_services: Services) -> Services:
    return offline_services


@pytest.fixture
def server(offline_server: VariaServer) -> VariaServer:
    return offline_server


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    data: bytes

    def getheader(self, name: str) -> str | None:
        return self.headers.get(name)


def _raw(server: VariaServer, method: str, path: str, body: bytes | None = None, **headers: str) -> Reply:
    """One request exactly as written (no redirects followed, no path normalization)."""
    host, port = server.httpd.server_address[:2]
    conn = http.client.HTTPConnection(str(host), int(port), timeout=10)
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    reply = Reply(response.status, response.headers, response.read())
    conn.close()
    return reply


def _get(server: VariaServer, path: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(server.url + path, timeout=10) as response:
        return response.status, dict(response.headers), response.read()


def _post_job(server: VariaServer, fields: dict[str, str], image: bytes) -> Reply:
    body, content_type = multipart(fields, image)
    return _raw(server, "POST", "/api/variations", body, **{"Content-Type": content_type})


def _wait(server: VariaServer, job_id: str, timeout: float = 30) -> tuple[dict[str, Any], list[str]]:
    """Poll the status as the page does; returns the final view and the stages seen on the way."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = json.loads(_get(server, f"/api/variations/{job_id}")[2])
        if not seen or seen[-1] != view["stage"]:
            seen.append(view["stage"])
        if view["status"] != "running":
            return view, seen
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s (stages seen: {seen})")


def test_upload_then_poll_to_done_and_every_link_in_the_status_answers(server: VariaServer) -> None:
    response = _post_job(server, {"prompt": "as pixel art", "n": "3", "profile": "kids"}, scene_png())
    assert response.status == 202
    answer = json.loads(response.data)
    assert response.getheader("Location") == answer["status_url"] == f"/api/variations/{answer['job_id']}"

    view, seen = _wait(server, answer["job_id"])
    assert view["status"] == "succeeded" and view["stage"] == "done"
    assert [STAGES.index(s) for s in seen] == sorted(STAGES.index(s) for s in seen), seen

    links = [view["source_url"], *[image["url"] for image in view["images"]], view["manifest_url"]]
    assert len(links) == 5
    for link in links:
        status, headers, body = _get(server, link)
        assert status == 200, link
        if link == view["manifest_url"]:
            assert headers["Content-Type"].startswith("application/json")
            assert json.loads(body)["job_id"] == answer["job_id"]
        elif link == view["source_url"]:  # the prepared source: JPEG, or PNG where it has transparent parts
            assert (headers["Content-Type"], body[:2]) in (("image/png", b"\x89P"), ("image/jpeg", b"\xff\xd8"))
        else:
            assert headers["Content-Type"] == "image/png" and body.startswith(b"\x89PNG")


def test_bad_requests_get_the_handlers_answers(server: VariaServer) -> None:
    response = _post_job(server, {"prompt": "   "}, scene_png())
    assert response.status == 400 and "prompt is empty" in json.loads(response.data)["error"]
    response = _post_job(server, {"prompt": "as sepia"}, b"not an image at all")
    assert response.status == 400 and "Not an image" in json.loads(response.data)["error"]
    assert _raw(server, "GET", "/api/variations/http-" + "0" * 32).status == 404


def test_an_upload_declared_too_large_is_refused_before_its_body_is_read(server: VariaServer) -> None:
    host, port = server.httpd.server_address[:2]
    conn = http.client.HTTPConnection(str(host), int(port), timeout=5)
    conn.putrequest("POST", "/api/variations")
    conn.putheader("Content-Type", "multipart/form-data; boundary=x")
    conn.putheader("Content-Length", str(200 * 1024 * 1024))
    conn.endheaders()  # and not one byte of the 200 MB: the answer must come anyway
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    assert response.status == 413 and "20 MB" in body["error"]
    assert response.getheader("Connection") == "close"


def test_a_chunked_upload_without_content_length_starts_a_job(server: VariaServer) -> None:
    body, content_type = multipart({"prompt": "as sepia", "n": "1"}, scene_png())
    host, port = server.httpd.server_address[:2]
    conn = http.client.HTTPConnection(str(host), int(port), timeout=10)
    # http.client sends an iterable body as chunks, with Transfer-Encoding: chunked and no Content-Length.
    conn.request(
        "POST", "/api/variations", body=iter([body[:1000], body[1000:]]), headers={"Content-Type": content_type}
    )
    response = conn.getresponse()
    answer = json.loads(response.read())
    conn.close()
    assert response.status == 202, answer
    assert _wait(server, answer["job_id"])[0]["status"] == "succeeded"


def test_the_page_and_its_assets_are_served_with_types_and_csp(server: VariaServer, services: Services) -> None:
    status, headers, body = _get(server, "/api/ui")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"

    # Every asset the page links to is served, with its type.
    assets = re.findall(r'(?:href|src)="(/api/ui/[^"]+)"', body.decode())
    assert {"/api/ui/app.css", "/api/ui/app.js", "/api/ui/favicon.svg"} <= set(assets)
    types = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
    for asset in assets:
        status, headers, _ = _get(server, asset)
        assert status == 200 and headers["Content-Type"] == types[Path(asset).suffix], asset

    config = json.loads(_get(server, "/api/ui/config.json")[2])
    assert config["presets"] == load_presets()
    assert config["max_variations"] == services.settings.max_variations
    assert config["max_upload_mb"] == 20


@pytest.mark.parametrize(
    "path",
    [
        "/api/ui/../server.py",
        "/api/ui/..%2Fserver.py",
        "/api/ui/%2e%2e%2fconfig.py",
        "/api/ui/..%5Cserver.py",
        "/api/ui/.gitignore",
        "/api/ui/web_ui.py",
        "/api/ui/presets.json",  # a real file, in shared/data/, not in shared/functions/web/
        "/api/ui/index.html%00.css",
        "/api/ui/web/index.html",
        "/api/ui/%2Fetc%2Fpasswd",
    ],
)
def test_nothing_outside_the_web_folder_is_served(server: VariaServer, path: str) -> None:
    response = _raw(server, "GET", path)
    assert response.status == 404, path
    assert b"import" not in response.data and b"root:" not in response.data and b"watercolor" not in response.data


def test_root_redirects_to_the_page_and_unknown_routes_say_where_to_go(server: VariaServer) -> None:
    root = _raw(server, "GET", "/")
    assert root.status == 302 and root.getheader("Location") == "/api/ui"
    missing = _raw(server, "GET", "/api/nothing")
    assert missing.status == 404 and "/api/ui" in json.loads(missing.data)["error"]
    unread = _raw(server, "POST", "/api/nothing", b"x" * 100)  # the body is never read, so the connection ends
    assert unread.status == 404 and unread.getheader("Connection") == "close"
    wrong = _raw(server, "DELETE", "/api/variations/http-" + "0" * 32)
    assert wrong.status == 405 and wrong.getheader("Allow") == "GET"
    assert _raw(server, "GET", "/api/variations").getheader("Allow") == "POST"
    head = _raw(server, "HEAD", "/api/ui")
    assert head.status == 200 and head.data == b"" and int(head.getheader("Content-Length") or 0) > 1000


def test_an_image_dropped_into_the_inputs_folder_starts_one_job(server: VariaServer, services: Services) -> None:
    # As a user would: copy a file into .varia/inputs/<preset>/ with a file manager (no metadata sidecar).
    folder = Path(services.settings.local_dir) / INPUTS / "sepia"
    folder.mkdir(parents=True)
    data = scene_png()
    (folder / "house.png").write_bytes(data)
    job_id = blob_job_id(INPUTS, "sepia/house.png", hashlib.sha256(data).hexdigest()[:32])

    deadline = time.monotonic() + 20
    while services.storage.info(OUTPUTS, manifest_name(job_id)) is None:
        assert time.monotonic() < deadline, "the dropped image did not become a job"
        time.sleep(0.05)
    view, _ = _wait(server, job_id)
    assert view["status"] == "succeeded" and view["prompt"] == load_presets()["sepia"]
    time.sleep(0.5)  # several more scans: the same version must not start again
    assert [j for j in server.runtime._instances if j.startswith("blob-")] == [job_id]


def test_the_poller_waits_for_a_settled_file_and_never_repeats_a_version(services: Services) -> None:
    runtime = make_runtime(services, retry_scale=0.001)
    try:
        poller = BlobPoller(services, runtime, interval=0)
        path = Path(services.settings.local_dir) / INPUTS / "cat.png"
        path.parent.mkdir(parents=True)
        path.write_bytes(scene_png()[:200])  # a copy still in progress
        assert poller.scan_once() == []
        path.write_bytes(scene_png())  # the copy finished: a new etag, so wait once more
        assert poller.scan_once() == []
        [first] = poller.scan_once()
        assert poller.scan_once() == [] and poller.scan_once() == []
        runtime._instances[first].done.wait(20)

        # A fresh poller (the server restarted) sees the finished job's manifest and leaves it alone.
        again = BlobPoller(services, runtime, interval=0)
        assert again.scan_once() == [] and again.scan_once() == []

        path.write_bytes(scene_png(200, 120))  # a new version of the same name is a new job
        assert poller.scan_once() == []
        [second] = poller.scan_once()
        assert second != first
        runtime._instances[second].done.wait(20)
    finally:
        runtime.shutdown()


def test_the_command_prints_the_url_serves_the_page_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    env = {**os.environ, **offline_env(tmp_path)}
    for name in ("AZURE_OPENAI_ENDPOINT", "AZURE_VISION_ENDPOINT", "AzureWebJobsStorage"):
        env.pop(name, None)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.server", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = [process.stdout.readline() for _ in range(4)]  # the URL, providers, polling, how to stop
        assert banner[0].strip() == f"Varia is running. Open http://127.0.0.1:{port}/api/ui"
        assert "'image': 'offline'" in banner[1] and "Ctrl-C" in banner[3]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/ui", timeout=10) as response:
            assert response.status == 200 and b"Make my pictures" in response.read()
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert output.rstrip().endswith("Stopped.")


def test_a_busy_port_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["--port", str(port), "--poll-seconds", "0"], offline_env(tmp_path))
    assert code == 2 and "--port 0" in capsys.readouterr().err


def test_a_bad_setting_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--port", "0"], offline_env(tmp_path, VARIA_MAX_VARIATIONS="lots"))
    assert code == 2 and "VARIA_MAX_VARIATIONS" in capsys.readouterr().err
