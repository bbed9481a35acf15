"""A property-based fuzz of the HTTP API through the local server, over real sockets: whatever the
JSON, the multipart form or the path, the answer is never a 5xx.

Hypothesis draws the inputs (derandomized, so CI sees the same ones on every run); the examples
mix valid values (a real PNG, known profiles, n in range) with hostile ones (Infinity, lists in
place of strings, lone surrogates, nesting, broken boundaries, bytes that are not UTF-8), so some
requests start jobs and most are refused.
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.adapters.services import build_services
from shared.config import Settings
from shared.local.cli import make_runtime
from shared.local.server import VariaServer
from tests.images import scene_png
from tests.support import offline_env

FIELDS = ["image", "prompt", "profile", "n", "mode", "force"]
PNG = scene_png(64, 64)
FUZZ = settings(
    max_examples=120,
    derandomize=True,  # the same examples on every run
    database=None,  # nothing remembered between runs, nothing written to the checkout
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VariaServer]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    services = build_services(Settings.from_env(offline_env(tmp)))
    srv = VariaServer(services, make_runtime(services, retry_scale=0.001), port=0, poll_interval=None)
    srv.start()
    yield srv
    srv.close()


def _send(server: VariaServer, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    assert response.status < 500, (response.status, data[:500])
    if data and response.status >= 400 and response.getheader("Content-Type", "").startswith("application/json"):
        error = json.loads(data)
        assert error["code"] and error["error"], error  # every refusal says what and why
    return response.status


# ---- values ------------------------------------------------------------------------------------

hostile_text = st.text(
    st.characters(codec=None, exclude_categories=()),  # any code point, lone surrogates included
    max_size=40,
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
    st.sampled_from(["", " ", "general", "kids", "edit", "generate", "true", "2", "²", "٣", "1e3", "0x2", "-1"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
    max_leaves=8,
)
images = st.one_of(
    st.just(base64.b64encode(PNG).decode()),
    st.just("data:image/png;base64," + base64.b64encode(PNG).decode()),
    st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
    json_values,
)
VALID = {"image": base64.b64encode(PNG).decode(), "prompt": "as sepia", "profile": "kids", "n": 1, "mode": "edit"}
# Values that broke the API before (Infinity, a list for a string, a superscript digit, ...), tried often.
KNOWN_BAD = st.sampled_from(
    [float("inf"), float("-inf"), float("nan"), 10**30, -1, 2.5, True, ["kids"], {"n": 1}, "\ud800", "²", "٣", "Ⅳ"]
)


@st.composite
def json_requests(draw: st.DrawFn) -> Any:
    """A valid request with some fields dropped or replaced: the bad value reaches the code behind the others."""
    body: dict[str, Any] = dict(VALID)
    for field in FIELDS:
        change = draw(st.sampled_from(["keep", "keep", "drop", "known-bad", "any"]))
        if change == "drop":
            body.pop(field, None)
        elif change == "known-bad":
            body[field] = draw(KNOWN_BAD)
        elif change == "any":
            body[field] = draw(images if field == "image" else json_values)
    body.update(draw(st.dictionaries(hostile_text, json_values, max_size=2)))  # unknown fields are ignored
    return body


json_objects = st.one_of(json_requests(), json_values)  # and bodies that are not even an object


def _json_bytes(value: Any) -> bytes:
    # json.dumps writes Infinity and NaN, and escapes lone surrogates as \ud800: both reach the server.
    return json.dumps(value).encode("ascii")


json_bodies = st.one_of(
    json_objects.map(_json_bytes),
    st.binary(max_size=200),  # not JSON, maybe not UTF-8
    st.integers(min_value=1, max_value=3000).map(lambda depth: b"[" * depth + b"]" * depth),
)
json_types = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "application/problem+json", "text/plain", "", "x/y"]
)


@FUZZ
@given(body=json_bodies, content_type=json_types)
def test_json_posts_never_get_a_5xx(server: VariaServer, body: bytes, content_type: str) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    _send(server, "POST", "/api/variations", body, headers)


# ---- multipart -----------------------------------------------------------------------------------

part_names = st.one_of(st.sampled_from(FIELDS), st.text(st.characters(codec="utf-8"), max_size=12))
part_values = st.one_of(
    st.sampled_from(["as sepia", "general", "kids", "2", "edit", "generate", "true", "", "Infinity", "²"]),
    st.text(st.characters(codec="utf-8"), max_size=60),
)


@st.composite
def multipart_bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    boundary = draw(
        st.one_of(
            st.just("varia-fuzz-boundary"), st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
        )
    )
    parts: list[bytes] = []
    for name, value in draw(st.lists(st.tuples(part_names, part_values), max_size=8)):
        header = f'Content-Disposition: form-data; name="{name}"\r\n\r\n'
        parts.append(f"--{boundary}\r\n".encode() + header.encode("utf-8") + value.encode("utf-8") + b"\r\n")
    if draw(st.booleans()):
        data = draw(st.one_of(st.just(PNG), st.binary(max_size=300)))
        filename = draw(st.sampled_from(["photo.png", "", "../../etc/passwd", 'a"b.png', "ünï.png"]))
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'.encode()
            + b"Content-Type: application/octet-stream\r\n\r\n"
            + data
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    cut = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=len(body))))
    if cut is not None:
        body = body[:cut]  # a body cut short
    content_type = draw(
        st.sampled_from(
            [
                f"multipart/form-data; boundary={boundary}",
                f'multipart/form-data; boundary="{boundary}"',
                "multipart/form-data",
                "multipart/form-data; boundary=",
                "multipart/mixed; boundary=" + boundary,
            ]
        )
    )
    return body, content_type


@FUZZ
@given(form=multipart_bodies())
def test_multipart_posts_never_get_a_5xx(server: VariaServer, form: tuple[bytes, str]) -> None:
    body, content_type = form
    _send(server, "POST", "/api/variations", body, {"Content-Type": content_type})


# ---- paths ---------------------------------------------------------------------------------------

JOB_ID = "http-" + "0" * 32
job_ids = st.one_of(
    st.builds(
        lambda prefix, suffix: prefix + suffix,
        st.sampled_from([JOB_ID, "blob-" + "a" * 32, "cli-" + "f" * 32]),
        st.sampled_from(["", "\n", "\r\n", " ", "\x00", "/..", "²", "%"]),
    ),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=40),
)
image_names = st.one_of(
    st.sampled_from(["0", "9", "10", "-1", "source", "manifest", "²", "٣", "０", "1\n", "01", ".."]),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=20),
)


@FUZZ
@given(job=job_ids, which=st.one_of(st.none(), image_names), method=st.sampled_from(["GET", "HEAD"]))
def test_status_and_image_paths_never_get_a_5xx(server: VariaServer, job: str, which: str | None, method: str) -> None:
    path = "/api/variations/" + urllib.parse.quote(job, safe="")
    if which is not None:
        path += "/images/" + urllib.parse.quote(which, safe="")
    _send(server, method, path, None, {})
