"""Fake Azure AI Content Safety on 127.0.0.1, speaking its REST wire format to the real `azure-ai-contentsafety` SDK.

Routes, as Microsoft documents them (the SDK's `_operations.py` for the first two, the Prompt Shields REST quickstart
for the third, `articles/ai-services/content-safety/includes/quickstarts/rest-quickstart-prompt-shields.md`):

- ``POST /contentsafety/text:analyze?api-version=2023-10-01`` ("cs.text"): ``{"text", "categories", "outputType"}``
  -> ``{"blocklistsMatch": [], "categoriesAnalysis": [{"category": "Hate", "severity": 0}, ...]}``
- ``POST /contentsafety/image:analyze?api-version=2023-10-01`` ("cs.image"): ``{"image": {"content": base64}}``
  -> ``{"categoriesAnalysis": [...]}``; the image must decode and be 50 to 2048 px a side (the SDK's ImageData docs)
- ``POST /contentsafety/text:shieldPrompt?api-version=2024-09-01`` ("cs.shield"): ``{"userPrompt", "documents"}``
  -> ``{"userPromptAnalysis": {"attackDetected": bool}, "documentsAnalysis": [{"attackDetected": bool}, ...]}``

Credentials: ``Ocp-Apim-Subscription-Key`` (an API key) or ``Authorization: Bearer`` (Entra ID), else 401.  Error
bodies are ``{"error": {"code", "message"}}`` with the codes of Microsoft's "Content Safety error codes" page
(InvalidRequestBody, InternalError, ServerBusy, TooManyRequests) and the gateway's 401/403 wording.

What the fake rates: a text gets the severities of every phrase of ``text_ratings`` it contains (the highest per
category); a shield call detects an attack where a phrase of ``injections`` appears; an image gets the next rating
queued with ``rate_next_images``, else all zeros.  ``fail_next(route, fault)`` queues a fault (FAULTS).  Every call
is logged in ``calls`` with ``billed`` (every 200 answer, as Azure meters each analysed record or image).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from PIL import Image

ROUTES = {
    "/contentsafety/text:analyze": ("cs.text", ("2023-10-01", "2024-09-01")),
    "/contentsafety/image:analyze": ("cs.image", ("2023-10-01", "2024-09-01")),
    "/contentsafety/text:shieldPrompt": ("cs.shield", ("2024-09-01",)),
}
CATEGORIES = ("Hate", "SelfHarm", "Sexual", "Violence")
FAULTS = frozenset({"401", "403", "404", "429", "500", "503", "malformed", "partial"})
ACCESS_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an "
    "active subscription and use a correct regional API endpoint for your resource."
)
DEFAULT_TEXT_RATINGS: dict[str, dict[str, int]] = {
    "bloody": {"Violence": 4},
    "massacre": {"Violence": 6},
    "knight with a sword": {"Violence": 2},
    "gory": {"Violence": 6},
    "nude": {"Sexual": 4},
}
DEFAULT_INJECTIONS = ("ignore previous instructions", "ignore all previous instructions", "you are now dan")


@dataclass
class Call:
    route: str
    status: int
    billed: bool
    body: dict[str, Any] = field(default_factory=dict)
    auth: str = ""  # "key" or "bearer"


class FakeContentSafety:
    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._lock = threading.Lock()
        self.calls: list[Call] = []
        self.reset()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeContentSafety:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.calls = []
            self.text_ratings = dict(DEFAULT_TEXT_RATINGS)
            self.injections = list(DEFAULT_INJECTIONS)
            self._image_ratings: deque[dict[str, int]] = deque()
            self._faults: dict[str, deque[str]] = {}

    def rate_next_images(self, *ratings: dict[str, int]) -> None:
        """The severities the next image calls get, in order (then zeros again)."""
        with self._lock:
            self._image_ratings.extend(ratings)

    def fail_next(self, route: str, fault: str, times: int = 1) -> None:
        assert fault in FAULTS, f"unknown fault {fault!r}: one of {sorted(FAULTS)}"
        assert route in {name for name, _ in ROUTES.values()}, route
        with self._lock:
            self._faults.setdefault(route, deque()).extend([fault] * times)

    def count(self, route: str) -> int:
        return sum(1 for call in self.calls if call.route == route)

    def billed(self, route: str | None = None) -> int:
        return sum(1 for call in self.calls if call.billed and (route is None or call.route == route))

    # --- answers ---------------------------------------------------------------------------------

    def _next_fault(self, route: str) -> str | None:
        with self._lock:
            queue = self._faults.get(route)
            return queue.popleft() if queue else None

    def answer(self, route: str, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        fault = self._next_fault(route)
        if fault is not None:
            return _fault(fault, route)
        if route == "cs.text":
            text = body.get("text")
            if not isinstance(text, str) or not text or len(text) > 10_000:
                return _error(400, "InvalidRequestBody", "The text must be 1 to 10,000 characters.")
            return 200, {"blocklistsMatch": [], "categoriesAnalysis": self._rate_text(text, body)}, {}
        if route == "cs.image":
            problem = _check_image(body)
            if problem:
                return _error(400, "InvalidRequestBody", problem)
            with self._lock:
                rating = self._image_ratings.popleft() if self._image_ratings else {}
            return 200, {"categoriesAnalysis": _analysis(rating, body.get("categories"))}, {}
        prompt, documents = body.get("userPrompt"), body.get("documents", [])
        if not isinstance(prompt, str) or not isinstance(documents, list) or len(documents) > 5:
            return _error(400, "InvalidRequestBody", "userPrompt must be a string and documents a list of up to 5.")
        return (
            200,
            {
                "userPromptAnalysis": {"attackDetected": self._attack(prompt)},
                "documentsAnalysis": [{"attackDetected": self._attack(str(d))} for d in documents],
            },
            {},
        )

    def _rate_text(self, text: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        lowered = text.lower()
        rating: dict[str, int] = {}
        for phrase, severities in self.text_ratings.items():
            if phrase in lowered:
                for name, level in severities.items():
                    rating[name] = max(rating.get(name, 0), level)
        return _analysis(rating, body.get("categories"))

    def _attack(self, text: str) -> bool:
        lowered = text.lower()
        return any(marker in lowered for marker in self.injections)


def _analysis(rating: dict[str, int], categories: Any) -> list[dict[str, Any]]:
    names = categories if isinstance(categories, list) and categories else list(CATEGORIES)
    return [{"category": name, "severity": rating.get(name, 0)} for name in names]


def _check_image(body: dict[str, Any]) -> str | None:
    content = (body.get("image") or {}).get("content")
    if not isinstance(content, str):
        return "image.content (base64) is required."
    try:
        data = base64.b64decode(content, validate=True)
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except (binascii.Error, ValueError, OSError):
        return "The image could not be decoded (InvalidImageFormat)."
    if len(data) > 4 * 1024 * 1024 or min(width, height) < 50 or max(width, height) > 2048:
        return f"The image is {width}x{height} ({len(data)} bytes): InvalidImageSize."
    return None


def _error(status: int, code: str, message: str) -> tuple[int, Any, dict[str, str]]:
    return status, {"error": {"code": code, "message": message}}, {}


def _fault(fault: str, route: str) -> tuple[int, Any, dict[str, str]]:
    if fault == "401":
        return _error(401, "401", ACCESS_DENIED)
    if fault == "403":
        return _error(403, "403", "Traffic is not from an approved private endpoint.")
    if fault == "404":
        return _error(404, "404", "Resource not found")
    if fault == "429":
        status, body, _ = _error(429, "TooManyRequests", "Rate limit is exceeded. Try again in 1 seconds.")
        return status, body, {"Retry-After": "1"}
    if fault == "500":
        return _error(500, "InternalError", "An unexpected error occurred.")
    if fault == "503":
        return _error(503, "ServerBusy", "The server is busy, try again later.")
    if fault == "malformed":
        return 200, b"<html>not json", {"Content-Type": "application/json"}
    # partial: a 200 whose rating leaves out categories
    if route == "cs.shield":
        return 200, {"documentsAnalysis": []}, {}
    return 200, {"categoriesAnalysis": [{"category": "Hate", "severity": 0}]}, {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        fake: FakeContentSafety = self.server.fake  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        known = ROUTES.get(url.path)
        if known is None:
            return self._send(*_error(404, "404", "Resource not found"))
        route, versions = known
        version = dict(parse_qsl(url.query)).get("api-version")
        if version not in versions:
            return self._send(*_error(404, "404", f"Resource not found (api-version {version!r})"))
        key, bearer = self.headers.get("Ocp-Apim-Subscription-Key"), self.headers.get("Authorization", "")
        auth = "key" if key else "bearer" if bearer.startswith("Bearer ") else ""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        if not auth:
            status, answer, headers = _error(401, "401", ACCESS_DENIED)
        elif not isinstance(body, dict):
            status, answer, headers = _error(400, "InvalidRequestBody", "The body is not a JSON object.")
        else:
            status, answer, headers = fake.answer(route, body)
        with fake._lock:
            fake.calls.append(Call(route, status, status == 200, body if isinstance(body, dict) else {}, auth))
        self._send(status, answer, headers)

    def _send(self, status: int, answer: Any, headers: dict[str, str]) -> None:
        data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
