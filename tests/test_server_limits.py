"""The local server under load and abuse, over real sockets: a burst of 200 POSTs, size and part
limits enforced before the body is read, 404/405/HEAD, Host and Origin checks, malformed JSON."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.services import Services, build_services
from shared.adapters.storage import OUTPUTS, UPLOADS, WORK
from shared.config import Settings
from shared.functions.http_api import MAX_FORM_PARTS, max_body_bytes
from shared.local.cli import make_runtime
from shared.local.server import VariaServer
from tests.images import scene_png
from tests.support import multipart, offline_env

BURST = 200


@pytest.fixture
def services(tmp_path: Path) -> Services:
    # A 1 MB upload limit keeps the over-limit bodies small; the rules are the same at 20 MB.
    return build_services(Settings.from_env(offline_env(tmp_path, VARIA_MAX_UPLOAD_MB="1")))


@pytest.fixture
def server(services: Services) -> Iterator[VariaServer]:
    srv = VariaServer(services, make_runtime(services, retry_scale=0.001), port=0, poll_interval=None)
    srv.start()
    yield srv
    srv.close()


def _stored(services: Services) -> list[str]:
    """Everything a started job would have written: the upload, its work files, its outputs."""
    return [f"{c}/{n}" for c in (UPLOADS, WORK, OUTPUTS) for n in services.storage.list(c)]


def _request(
    server: VariaServer, method: str, path: str, body: bytes | Iterable[bytes] | None = None, **headers: str
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request; an iterable body goes out chunked (Transfer-Encoding: chunked, no Content-Length)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def _raw(server: VariaServer, data: bytes, timeout: float = 30) -> bytes:
    """Send bytes as they are and read the whole answer (the server closes every connection)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:80]
    return int(answer.split(b" ", 2)[1])


def _json_body(answer: bytes) -> Any:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


# ---- a class pressing the button at once ---------------------------------------------------------


def test_two_hundred_simultaneous_posts_all_get_an_answer(server: VariaServer) -> None:
    body, content_type = multipart({"prompt": "as sepia", "n": "1"}, scene_png(96, 64))
    head = (
        f"POST /api/variations HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    request = head.encode() + body
    start = threading.Barrier(BURST)
    outcomes: list[str] = [""] * BURST

    def post(i: int) -> None:
        start.wait()  # every connection is opened in the same instant
        try:
            answer = _raw(server, request, timeout=120)
            outcomes[i] = str(_status(answer)) if answer.startswith(b"HTTP/1.1 ") else f"garbled {answer[:40]!r}"
        except OSError as exc:  # ConnectionResetError, BrokenPipeError, TimeoutError
            outcomes[i] = type(exc).__name__

    threads = [threading.Thread(target=post, args=(i,)) for i in range(BURST)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    counts = Counter(outcomes)
    assert set(counts) <= {"202", "200", "429", "503"}, counts  # no reset, no timeout, no other 5xx
    assert counts["202"] >= 1, counts


# ---- sizes, checked before the body is read ------------------------------------------------------


def test_a_huge_declared_length_gets_413_while_the_body_is_still_unsent(
    server: VariaServer, services: Services
) -> None:
    # Only the headers go out: if the server waited for the 10 GB it announced, the read would time out.
    answer = _raw(
        server,
        f"POST /api/variations HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        "Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n".encode(),
        timeout=10,
    )
    assert _status(answer) == 413
    error = _json_body(answer)
    assert error["code"] == "upload_too_large" and "1 MB" in error["error"]
    assert _stored(services) == []


def test_a_chunked_body_over_the_limit_is_refused(server: VariaServer, services: Services) -> None:
    over = max_body_bytes(services.settings) // 65536 + 8  # chunks past the body limit, with no Content-Length
    chunks = (b"x" * 65536 for _ in range(over))  # read only up to the limit
    status, _, data = _request(server, "POST", "/api/variations", chunks, **{"Content-Type": "application/json"})
    assert status == 413 and json.loads(data)["code"] == "upload_too_large"
    assert _stored(services) == []


def test_a_form_of_many_tiny_parts_is_refused_at_the_part_limit(server: VariaServer, services: Services) -> None:
    boundary = "b0undary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nx\r\n' for i in range(20_000)]
    body = ("".join(parts) + f"--{boundary}--\r\n").encode()  # about 1.1 MB, under the body limit
    status, _, data = _request(
        server, "POST", "/api/variations", body, **{"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    error = json.loads(data)
    assert status == 413 and error["code"] == "form_too_large" and str(MAX_FORM_PARTS) in error["error"]
    assert _stored(services) == []


# ---- routes and methods --------------------------------------------------------------------------


def test_unknown_paths_are_404_wrong_methods_405_and_head_is_get_without_a_body(server: VariaServer) -> None:
    status, _, data = _request(server, "GET", "/api/variationz")
    assert status == 404 and json.loads(data)["code"] == "not_found"
    for method in ("PUT", "PATCH", "DELETE", "OPTIONS"):
        status, headers, data = _request(server, method, "/api/variations")
        assert status == 405 and headers["Allow"] == "POST" and json.loads(data)["code"] == "method_not_allowed"
    status, headers, _ = _request(server, "POST", "/api/ui")
    assert status == 405 and headers["Allow"] == "GET"

    get_status, get_headers, page = _request(server, "GET", "/api/ui/app.js")
    head_status, head_headers, nothing = _request(server, "HEAD", "/api/ui/app.js")
    assert get_status == head_status == 200 and nothing == b""
    assert head_headers["Content-Length"] == get_headers["Content-Length"] == str(len(page))
    assert head_headers["Content-Type"] == get_headers["Content-Type"]
    status, _, nothing = _request(server, "HEAD", "/api/variations/http-" + "0" * 32)
    assert status == 404 and nothing == b""


# ---- who may ask ---------------------------------------------------------------------------------


def _form_post(server: VariaServer, **headers: str) -> tuple[int, dict[str, Any]]:
    body, content_type = multipart({"prompt": "as sepia", "n": "4"}, scene_png(96, 64))
    status, _, data = _request(server, "POST", "/api/variations", body, **{"Content-Type": content_type, **headers})
    return status, json.loads(data)


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "http://127.0.0.1:1"},  # another port on this machine is another origin
        {"Origin": "null"},  # a sandboxed frame or a file:// page
        {"Sec-Fetch-Site": "cross-site"},  # a browser that sends no Origin still says where it comes from
        {"Sec-Fetch-Site": "same-site"},
    ],
    ids=["other-site", "other-port", "null", "cross-site", "same-site"],
)
def test_a_post_from_another_origin_starts_nothing(
    server: VariaServer, services: Services, headers: dict[str, str]
) -> None:
    status, error = _form_post(server, **headers)
    assert status == 403 and error["code"] == "cross_origin_refused", error
    assert f"{server.url}/api/ui" in error["error"]
    assert _stored(services) == []


def test_text_plain_json_is_refused_from_anywhere(server: VariaServer, services: Services) -> None:
    payload = json.dumps({"image": base64.b64encode(scene_png(96, 64)).decode(), "prompt": "as sepia"}).encode()
    status, _, data = _request(
        server, "POST", "/api/variations", payload, **{"Content-Type": "text/plain", "Origin": "http://evil.example"}
    )
    assert status == 403 and json.loads(data)["code"] == "cross_origin_refused"
    status, _, data = _request(server, "POST", "/api/variations", payload, **{"Content-Type": "text/plain"})
    assert status == 415 and "application/json" in json.loads(data)["error"]
    assert _stored(services) == []


def test_the_page_own_origin_and_programs_without_one_may_post(server: VariaServer) -> None:
    assert _form_post(server, Origin=server.url, **{"Sec-Fetch-Site": "same-origin"})[0] == 202
    assert _form_post(server)[0] == 202  # curl and scripts send no Origin


@pytest.mark.parametrize("host", ["evil.example", "rebind.evil.example:{port}", "localhost:1", "localhost:{port}x"])
def test_a_host_that_is_not_this_server_is_refused_even_for_reading(server: VariaServer, host: str) -> None:
    # A DNS-rebinding page reaches 127.0.0.1 under its own name: the Host header gives it away.
    answer = _raw(server, f"GET /api/ui HTTP/1.1\r\nHost: {host.format(port=server.port)}\r\n\r\n".encode())
    assert _status(answer) == 403 and _json_body(answer)["code"] == "host_not_allowed"


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}"])
def test_the_names_of_this_machine_are_served(server: VariaServer, host: str) -> None:
    answer = _raw(server, f"GET /api/ui HTTP/1.1\r\nHost: {host.format(port=server.port)}\r\n\r\n".encode())
    assert _status(answer) == 200


# ---- malformed input is a 4xx that names what to fix -----------------------------------------------


def test_every_malformed_json_field_is_named_in_one_400(server: VariaServer, services: Services) -> None:
    body = b'{"image": 5, "prompt": ["x"], "n": Infinity, "profile": ["kids"], "mode": {}, "force": "maybe"}'
    status, _, data = _request(server, "POST", "/api/variations", body, **{"Content-Type": "application/json"})
    error = json.loads(data)
    assert status == 400 and error["code"] == "invalid_request", error
    assert [f["field"] for f in error["fields"]] == ["image", "prompt", "profile", "n", "mode", "force"]
    assert all(f["problem"] and f["problem"] in error["error"] for f in error["fields"])
    assert _stored(services) == []


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000, b"\xff\xfe{}", b"{", b"[]"],
    ids=["deep-list", "deep-object", "not-utf8", "cut-short", "not-an-object"],
)
def test_bodies_that_are_not_a_json_object_are_400(server: VariaServer, body: bytes) -> None:
    status, _, data = _request(server, "POST", "/api/variations", body, **{"Content-Type": "application/json"})
    assert status == 400 and json.loads(data)["code"] == "malformed_body"


@pytest.mark.parametrize(
    "path",
    [
        "/api/variations/http-" + "0" * 32 + "%0A",  # a job id ending in a newline
        "/api/variations/http-" + "0" * 32 + "%0A/images/0",
        "/api/variations/http-" + "0" * 32 + "/images/%C2%B2",  # a superscript two
        "/api/variations/http-" + "0" * 32 + "/images/%D9%A3",  # an Arabic-Indic three
        "/api/variations/http-" + "%EF%BC%90" * 32,  # full-width zeros
        "/api/variations/%00",
    ],
)
def test_odd_job_ids_and_indexes_are_404(server: VariaServer, path: str) -> None:
    status, _, data = _request(server, "GET", path)
    assert status == 404 and json.loads(data)["code"] in ("job_not_found", "image_not_found")
