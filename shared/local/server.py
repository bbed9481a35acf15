"""Varia on localhost without Core Tools: `python -m shared.server [--port 7071] [--host 127.0.0.1]`.

Serves the app's HTTP routes at the paths the Functions host uses (/api/variations..., /api/ui...)
by turning each request into a `func.HttpRequest` and calling the same handlers, so the answers
are the host's. Jobs run on the in-process `LocalRuntime`, and a polling thread plays the
Development blob trigger: an image dropped into the `inputs` container (the folder
`.varia/inputs/` with local storage) starts a job. With nothing configured every step uses the
offline providers and storage is the local folder `.varia/`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import sys
import threading
import urllib.parse
from collections.abc import Callable, Coroutine, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

import azure.functions as func

from shared.adapters.services import Services, build_services
from shared.adapters.storage import INPUTS, OUTPUTS
from shared.config import ConfigError, Settings
from shared.core.jobs import JobClient, blob_job_id
from shared.core.steps import manifest_name
from shared.functions import http_api, web_ui
from shared.functions.blob_trigger import handle_blob
from shared.local.runtime import LocalRuntime

DEFAULT_PORT = 7071  # the Functions host's port, so URLs are the same with `func start`
DEFAULT_POLL_SECONDS = 2.0
UI_PATH = "/api/ui"

log = logging.getLogger("varia.server")

Handler = Callable[[func.HttpRequest], Coroutine[Any, Any, func.HttpResponse]]

_VARIATIONS = re.compile(r"^/api/variations/?$")
_VARIATION = re.compile(r"^/api/variations/(?P<job_id>[^/]+)/?$")
_IMAGE = re.compile(r"^/api/variations/(?P<job_id>[^/]+)/images/(?P<which>[^/]+)/?$")
_UI = re.compile(r"^/api/ui/?$")
_UI_FILE = re.compile(r"^/api/ui/(?P<file>[^/]+)$")


class BlobPoller:
    """The Development polling twin of the blob trigger: a new blob version in `inputs` starts its job.

    A blob is started once it looks the same (same etag) in two scans in a row, so a file still
    being copied into the folder is not read half-written. A version whose job already has a
    manifest (from an earlier run of the server) is not started again, as the host's blob
    receipts would do; the job ids are the trigger's own, so duplicates are impossible anyway.
    """

    def __init__(self, services: Services, client: JobClient, interval: float = DEFAULT_POLL_SECONDS) -> None:
        self.services = services
        self.client = client
        self.interval = interval
        self._candidates: dict[str, str] = {}  # name -> etag seen once, waiting to settle
        self._handled: set[tuple[str, str]] = set()  # (name, etag) started or skipped
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def scan_once(self) -> list[str]:
        """One scan of `inputs`; returns the ids of the jobs it started."""
        storage = self.services.storage
        started: list[str] = []
        for name in storage.list(INPUTS):
            info = storage.info(INPUTS, name)
            if info is None or (name, info.etag) in self._handled:
                continue
            if self._candidates.get(name) != info.etag:
                self._candidates[name] = info.etag  # first sight of this version: wait one scan
                continue
            del self._candidates[name]
            self._handled.add((name, info.etag))
            if storage.info(OUTPUTS, manifest_name(blob_job_id(INPUTS, name, info.etag))) is not None:
                continue
            job_id = asyncio.run(
                handle_blob(INPUTS, name, info.etag, info.metadata, self.client, self.services, size=info.size)
            )
            if job_id:
                started.append(job_id)
        return started

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.scan_once()
            except Exception:
                # Storage may be briefly unreachable (Azurite restarting); the next scan tries again.
                log.exception("Scanning the inputs container failed")
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="blob-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def _content_type(response: func.HttpResponse) -> str:
    """The Content-Type the Functions host would send for this response (azure.functions' own rule)."""
    declared = response.headers.get("content-type")
    if declared:
        return declared
    mimetype = response.mimetype or "text/plain"
    return f"{mimetype}; charset={response.charset}" if mimetype.startswith("text/") else mimetype


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a slow client never holds up Ctrl-C
    app: VariaServer


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds a client may stall mid-request before its connection is dropped
    server_version = "Varia-local"
    _body_read = False  # whether the current request's body was consumed

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self, method: str) -> None:
        app = self.server.app
        url = urllib.parse.urlsplit(self.path)
        self._body_read = False
        try:
            response = app.respond(method, url.path, url.query, dict(self.headers.items()), self._body)
        except Exception:
            log.exception("%s %s failed", method, url.path)
            response = _error(500, "The local server failed on this request; its console shows why.")
        if not self._body_read and (
            self.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in self.headers
        ):
            # A body left unread would be taken for the next request on this connection: close it instead.
            self.close_connection = True
        self._send(response, head=method == "HEAD")

    def _body(self, limit: int) -> bytes | int:
        """The request body, or the HTTP status refusing it: 411 without a length, 413 over `limit` bytes."""
        declared = self.headers.get("Content-Length")
        if declared is None or not declared.isdigit():
            return 411  # stdlib http.server does not decode chunked bodies
        size = int(declared)
        if size > limit:
            return 413  # refused before reading a byte of it
        self._body_read = True
        return self.rfile.read(size)

    def _send(self, response: func.HttpResponse, head: bool) -> None:
        body = response.get_body() or b""
        self.send_response(response.status_code)
        for name, value in response.headers.items():
            if name.lower() not in ("content-type", "content-length", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Type", _content_type(response))
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head:
            self.wfile.write(body)


def _error(status: int, message: str) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"error": message}), status_code=status, mimetype="application/json")


class VariaServer:
    """The app's HTTP routes and the blob poller over one `LocalRuntime`, on one host and port."""

    def __init__(
        self,
        services: Services,
        runtime: LocalRuntime,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        poll_interval: float | None = DEFAULT_POLL_SECONDS,
    ) -> None:
        self.services = services
        self.runtime = runtime
        self.poller = BlobPoller(services, runtime, poll_interval) if poll_interval else None
        self.httpd = _Server((host, port), _RequestHandler)
        self.httpd.app = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else str(host)  # noqa: S104 - only compared, never bound
        return f"http://{shown}:{port}"

    # ---- routing -------------------------------------------------------------------------------
    def _routes(self) -> list[tuple[re.Pattern[str], str, Handler]]:
        """(path pattern, method, handler) for each of the app's HTTP functions, as the blueprints declare them."""
        services, runtime = self.services, self.runtime

        async def start_variation(req: func.HttpRequest) -> func.HttpResponse:
            return await http_api.post_variation(req, runtime, services)

        async def variation_status(req: func.HttpRequest) -> func.HttpResponse:
            return await http_api.get_variation(req.route_params["job_id"], runtime, services)

        async def variation_image(req: func.HttpRequest) -> func.HttpResponse:
            return http_api.get_image(req.route_params["job_id"], req.route_params["which"], services)

        async def web_ui_file(req: func.HttpRequest) -> func.HttpResponse:
            name = req.route_params.get("file")
            return web_ui.serve_ui(name, lambda: services.settings, True, req.headers.get("if-none-match"))

        return [
            (_VARIATIONS, "POST", start_variation),
            (_IMAGE, "GET", variation_image),
            (_VARIATION, "GET", variation_status),
            (_UI, "GET", web_ui_file),
            (_UI_FILE, "GET", web_ui_file),
        ]

    def respond(
        self,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        read_body: Callable[[int], bytes | int],
    ) -> func.HttpResponse:
        """Route one request to the app's handler, as the Functions host would."""
        if path == "/":
            return func.HttpResponse(status_code=302, headers={"Location": UI_PATH})
        found = next(((m, allowed, h) for pattern, allowed, h in self._routes() if (m := pattern.match(path))), None)
        if found is None:
            return _error(404, f"No route {path[:200]}: the page is at {UI_PATH}, the API under /api/variations.")
        match, allowed, handler = found
        if method != allowed and not (method == "HEAD" and allowed == "GET"):
            response = _error(405, f"{method} is not allowed here; use {allowed}.")
            response.headers["Allow"] = allowed
            return response

        body = b""
        if method == "POST":
            read = read_body(http_api.max_body_bytes(self.services.settings))
            if read == 411:
                return _error(411, "Send the upload with a Content-Length header.")
            if isinstance(read, int):
                mb = self.services.settings.max_upload_bytes // (1024 * 1024)
                return _error(413, f"The upload is larger than {mb} MB.")  # the words post_variation uses
            body = read
        request = func.HttpRequest(
            "GET" if method == "HEAD" else method,
            f"{self.url}{path}" + (f"?{query}" if query else ""),
            headers=dict(headers.items()),
            params=dict(urllib.parse.parse_qsl(query)),
            # Route values arrive decoded, as the host passes them; the handlers validate them.
            route_params={k: urllib.parse.unquote(v) for k, v in match.groupdict().items()},
            body=body,
        )
        # Each request runs its coroutine on its own loop: the handlers await nothing long-lived.
        return asyncio.run(handler(request))

    # ---- running -------------------------------------------------------------------------------
    def start(self) -> None:
        """Serve on a background thread (tests); `serve_forever` serves on the calling thread."""
        if self.poller:
            self.poller.start()
        # serve_forever notices a shutdown request once per poll interval: a short one makes close() quick.
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.1,), name="http", daemon=True)
        self._thread.start()

    def serve_forever(self) -> None:
        if self.poller:
            self.poller.start()
        self.httpd.serve_forever()

    def close(self) -> None:
        """Stop taking requests, stop polling, then let running activities finish."""
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=10)
        self.httpd.server_close()
        if self.poller:
            self.poller.stop()
        self.runtime.shutdown()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared.server",
        description="Varia's web page and HTTP API on this machine (offline providers unless Azure is configured).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free)")
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=DEFAULT_POLL_SECONDS,
        help="how often to scan the inputs container for new images (0: never)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    return parser


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the server the way Ctrl-C does


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    from shared.local.cli import make_runtime  # the CLI owns the runtime wiring; imported late to keep startup light

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDKs log every HTTP call at INFO
    try:
        settings = Settings.from_env(dict(os.environ) if environ is None else environ)
        services = build_services(settings)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runtime = make_runtime(services)
    try:
        server = VariaServer(services, runtime, args.host, args.port, args.poll_seconds or None)
    except OSError as exc:
        runtime.shutdown()
        print(f"error: cannot listen on {args.host}:{args.port} ({exc.strerror}); try --port 0", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _raise_interrupt)
    providers = services.providers.names()
    print(f"Varia is running. Open {server.url}{UI_PATH}", flush=True)
    print(f"  providers: {providers}; storage: {services.storage.description}", flush=True)
    if server.poller:
        print(f"  images dropped into the '{INPUTS}' container start jobs too", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        # The local server has no sign-in (like `func start` in Development): say who can reach it.
        print(f"  listening on {args.host}: anyone who can reach this machine can use it (no sign-in)", flush=True)
    print("  press Ctrl-C to stop", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    print("Stopping: letting running steps finish (Ctrl-C again to quit at once)...", flush=True)
    try:
        server.close()
    except KeyboardInterrupt:
        os._exit(130)  # the activity pool's threads would otherwise be joined at exit
    print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
