"""Varia on localhost without Core Tools: `python -m shared.server [--port 7071] [--host 127.0.0.1]`.

Serves the app's HTTP routes at the paths the Functions host uses (/api/variations..., /api/ui...)
by turning each request into a `func.HttpRequest` and calling the same handlers, so the answers
are the host's. Jobs run on the in-process `LocalRuntime`, and a polling thread plays the
Development blob trigger: an image dropped into the `inputs` container (the folder
`.varia/inputs/` with local storage) starts a job. With nothing configured every step uses the
offline providers and storage is the local folder `.varia/`.

The HTTP side is werkzeug's threaded WSGI server (werkzeug comes with azure-functions) with a
large listen backlog, so a classroom pressing the button at once is queued, not reset. Before a
handler runs, each request passes the checks a server on a laptop needs and the Functions host
does not do for it:

- Host must name this server (localhost, an IP address, or the host it was started with, and its
  port), which defeats DNS rebinding;
- a POST (or any request that is not GET or HEAD) from a page on another origin is refused with
  403: its Origin must be the server's own, and `Sec-Fetch-Site` must not say cross-site;
- the declared Content-Length is checked against the upload limit before a byte of the body is
  read (413), and chunked bodies are read only up to that limit;
- unknown paths get 404 and wrong methods 405 with `Allow`; HEAD is GET without the body.

The per-caller limit on jobs in flight (VARIA_MAX_JOBS_PER_CALLER, shared/core/callers.py) counts
jobs by the socket's peer address: this server is the edge, so no forwarding or identity header
is believed.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import socket
import sys
import threading
import urllib.parse
from collections.abc import Callable, Coroutine, Iterable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

import azure.functions as func
from werkzeug.exceptions import ClientDisconnected, HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge
from werkzeug.routing import Map, RequestRedirect, Rule
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler, get_sockaddr, select_address_family
from werkzeug.wrappers import Request, Response

from shared.adapters.services import Services, build_services
from shared.adapters.storage import INPUTS, OUTPUTS
from shared.config import ConfigError, Settings
from shared.core.callers import caller_at_edge
from shared.core.jobs import JobClient, blob_job_id
from shared.core.steps import manifest_name
from shared.functions import http_api, web_ui
from shared.functions.blob_trigger import handle_blob
from shared.local.runtime import LocalRuntime

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

DEFAULT_PORT = 7071  # the Functions host's port, so URLs are the same with `func start`
DEFAULT_POLL_SECONDS = 2.0
UI_PATH = "/api/ui"
LISTEN_BACKLOG = 1024  # connections the kernel queues while every thread is busy (Linux caps it at somaxconn)
REQUEST_TIMEOUT_SECONDS = 60  # a client that stalls mid-request this long loses its connection
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})

log = logging.getLogger("varia.server")

Handler = Callable[[func.HttpRequest], Coroutine[Any, Any, func.HttpResponse]]


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


def _to_wsgi(response: func.HttpResponse) -> Response:
    """The handler's answer as werkzeug sends it: same status, headers, type and body."""
    headers = [
        (name, value)
        for name, value in response.headers.items()
        if name.lower() not in ("content-type", "content-length", "connection", "transfer-encoding")
    ]
    return Response(response.get_body() or b"", response.status_code, headers, content_type=_content_type(response))


def _error(status: int, code: str, message: str, **headers: str) -> Response:
    response = _to_wsgi(http_api.error_response(status, message, code))
    response.headers.extend(headers)
    return response


class _RequestHandler(WSGIRequestHandler):
    timeout = REQUEST_TIMEOUT_SECONDS
    server_version = "Varia-local"  # not werkzeug's and Python's versions
    sys_version = ""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug('%s "%s" %s', self.address_string(), self.requestline, code)

    def log(self, type: str, message: str, *args: Any) -> None:
        (log.error if type == "error" else log.debug)(message.rstrip(), *args)


class _WSGIServer(ThreadedWSGIServer):
    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True  # a slow client never holds up Ctrl-C


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket with the large backlog; OSError (port busy, unknown host) is for the caller to report."""
    family = select_address_family(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(get_sockaddr(host, port, family))
        sock.listen(LISTEN_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (RequestEntityTooLarge) one over `limit` bytes without buffering it.

    A declared Content-Length over the limit is refused before a byte is read; a chunked body
    (no length) is read chunk by chunk and refused as soon as it passes the limit.
    """
    if request.environ.get("wsgi.input_terminated"):  # Transfer-Encoding: chunked, decoded by werkzeug
        stream = request.environ["wsgi.input"]
        parts: list[bytes] = []
        size = 0
        while chunk := stream.read(65536):
            size += len(chunk)
            if size > limit:
                raise RequestEntityTooLarge()
            parts.append(chunk)
        return b"".join(parts)
    request.max_content_length = limit  # werkzeug compares the declared length before reading
    return request.get_data(cache=False)


def _split_host(value: str) -> tuple[str, int | None] | None:
    """(host name, port) of a Host or Origin authority, lower case; None if it is not one."""
    try:
        parts = urllib.parse.urlsplit(f"//{value}")
        return (parts.hostname or ""), parts.port
    except ValueError:
        return None


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
        sock = _listen(host, port)
        try:
            self.httpd = _WSGIServer(host, port, self._wsgi, handler=_RequestHandler, fd=sock.fileno())
        finally:
            sock.close()  # werkzeug serves on its own duplicate of the socket
        self.host = host
        self.port = int(self.httpd.server_address[1])
        self._routes = self._route_map()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = str(self.httpd.server_address[0])
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 - only compared, never bound
            host = "127.0.0.1"
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    # ---- routing -------------------------------------------------------------------------------
    def _route_map(self) -> Map:
        """The app's HTTP functions at the routes the blueprints declare; GET rules answer HEAD too."""
        return Map(
            [
                Rule("/", endpoint="root", methods=["GET"]),
                Rule("/api/variations", endpoint="start", methods=["POST"], strict_slashes=False),
                Rule("/api/variations/<job_id>", endpoint="status", methods=["GET"], strict_slashes=False),
                Rule("/api/variations/<job_id>/cancel", endpoint="cancel", methods=["POST"], strict_slashes=False),
                Rule(
                    "/api/variations/<job_id>/images/<which>", endpoint="image", methods=["GET"], strict_slashes=False
                ),
                Rule("/api/ui", endpoint="ui", methods=["GET"], strict_slashes=False),
                Rule("/api/ui/<file>", endpoint="ui", methods=["GET"]),
            ],
            merge_slashes=False,
        )

    def _handler(self, endpoint: str, peer: str | None = None) -> Handler:
        """The app's handler for `endpoint`; `peer` is the socket's address, the caller of a job."""
        services, runtime = self.services, self.runtime

        async def start_variation(req: func.HttpRequest) -> func.HttpResponse:
            # This server is the edge: the peer address is the caller, and no header is believed
            # (X-Forwarded-For or X-MS-CLIENT-PRINCIPAL-ID would be whatever the client wrote).
            return await http_api.post_variation(req, runtime, services, caller_at_edge(peer))

        async def variation_status(req: func.HttpRequest) -> func.HttpResponse:
            return await http_api.get_variation(req.route_params["job_id"], runtime, services)

        async def cancel_variation(req: func.HttpRequest) -> func.HttpResponse:
            return await http_api.cancel_variation(req.route_params["job_id"], runtime, services)

        async def variation_image(req: func.HttpRequest) -> func.HttpResponse:
            download = req.params.get("download") in ("1", "true")
            return http_api.get_image(req.route_params["job_id"], req.route_params["which"], services, download)

        async def web_ui_file(req: func.HttpRequest) -> func.HttpResponse:
            name = req.route_params.get("file")
            return web_ui.serve_ui(name, lambda: services.settings, True, req.headers.get("if-none-match"))

        handlers: dict[str, Handler] = {
            "start": start_variation,
            "status": variation_status,
            "cancel": cancel_variation,
            "image": variation_image,
            "ui": web_ui_file,
        }
        return handlers[endpoint]

    # ---- cross-site checks ---------------------------------------------------------------------
    def _host_allowed(self, name: str, port: int | None) -> bool:
        """Localhost, an IP address, or the host the server was started with, on the server's port.

        A DNS-rebinding page reaches the server under its own domain name, so the name is the check;
        an IP address cannot be rebound (the browser's origin is the address itself).
        """
        if port != self.port:
            return False
        if name in LOCAL_NAMES or name == self.host.lower().strip("[]"):
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    def _refuse_cross_site(self, request: Request) -> Response | None:
        """403 for a Host that is not this server, and for a state-changing request from another origin."""
        own = f"{self.url}{UI_PATH}"
        host_header = request.headers.get("Host")
        if host_header is not None:
            host = _split_host(host_header)
            if host is None or not self._host_allowed(*host):
                log.warning(
                    "Refused %s %s for Host %r: not a name of this server",
                    request.method,
                    request.path[:200],
                    host_header[:100],
                )
                return _error(
                    403,
                    "host_not_allowed",
                    f"This server answers as localhost or an IP address on port {self.port}, not as"
                    f" {host_header[:100]!r}. Open {own} instead.",
                )
        if request.method in SAFE_METHODS:
            return None
        origin = request.headers.get("Origin")
        fetch_site = (request.headers.get("Sec-Fetch-Site") or "").lower()
        same_origin = origin is None or (host_header is not None and origin.lower() == f"http://{host_header.lower()}")
        if same_origin and fetch_site not in ("cross-site", "same-site"):
            return None  # the page itself, or a program that is no browser (curl, a script)
        shown = origin if origin is not None else f"a {fetch_site} page"
        log.warning(
            "Refused %s %s from %s: not this server's own page", request.method, request.path[:200], shown[:100]
        )
        return _error(
            403,
            "cross_origin_refused",
            f"Varia's local server only takes jobs from its own page, and this request came from {shown[:100]!r}."
            f" Open {own} and start the job there.",
        )

    # ---- answering -----------------------------------------------------------------------------
    def _wsgi(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._answer(request)
        except Exception:
            log.exception("%s %s failed", request.method, request.path[:200])
            response = _error(500, "server_error", "The local server failed on this request; its console shows why.")
        return response(environ, start_response)

    def _answer(self, request: Request) -> Response:
        """Check, route and run one request, as the Functions host would run the app's function."""
        refused = self._refuse_cross_site(request)
        if refused is not None:
            return refused
        try:
            endpoint, route_params = self._routes.bind_to_environ(request.environ).match()
        except RequestRedirect as redirect:
            return redirect.get_response()
        except MethodNotAllowed as exc:
            allowed = ", ".join(sorted(m for m in exc.valid_methods or () if m != "HEAD"))
            return _error(
                405, "method_not_allowed", f"{request.method} is not allowed here; use {allowed}.", Allow=allowed
            )
        except NotFound:
            return _error(
                404,
                "not_found",
                f"No route {request.path[:200]}: the page is at {UI_PATH}, the API under /api/variations.",
            )
        except HTTPException as exc:
            return _error(exc.code or 400, "bad_request", exc.description or "The request could not be read.")
        if endpoint == "root":
            return Response(status=302, headers={"Location": UI_PATH})

        body = b""
        if request.method == "POST":
            try:
                body = _read_body(request, http_api.max_body_bytes(self.services.settings))
            except RequestEntityTooLarge:
                mb = self.services.settings.max_upload_bytes // (1024 * 1024)
                return _error(413, "upload_too_large", f"The upload is larger than {mb} MB; send a smaller image.")
            except (ClientDisconnected, OSError):
                return _error(
                    400,
                    "body_incomplete",
                    "The request body ended early or its chunks were malformed; send the upload again.",
                )
        func_request = func.HttpRequest(
            "GET" if request.method == "HEAD" else request.method,
            f"{self.url}{request.path}"
            + (f"?{request.query_string.decode('latin-1')}" if request.query_string else ""),
            headers={name: value for name, value in request.headers.items()},
            params=dict(request.args.items()),
            route_params={name: str(value) for name, value in route_params.items()},  # decoded, as the host passes them
            body=body,
        )
        # Each request runs its coroutine on its own loop: the handlers await nothing long-lived.
        return _to_wsgi(asyncio.run(self._handler(endpoint, request.remote_addr)(func_request)))

    # ---- running -------------------------------------------------------------------------------
    def _begin(self) -> None:
        """What runs once before the first request is served: the blob poller (and any other startup work)."""
        if self.poller:
            self.poller.start()

    def start(self) -> None:
        """Serve on a background thread (tests); `serve_forever` serves on the calling thread."""
        self._begin()
        # serve_forever notices a shutdown request once per poll interval: a short one makes close() quick.
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.1,), name="http", daemon=True)
        self._thread.start()

    def serve_forever(self) -> None:
        """Serve on the calling thread until Ctrl-C or SIGTERM (werkzeug returns on KeyboardInterrupt); then close()."""
        self._begin()
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
    # The CLI owns the runtime wiring; imported late to keep startup light.
    from shared.local.cli import STOPPING, owning_runtime
    from shared.local.store import StorageInUse

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDKs log every HTTP call at INFO
    try:
        settings = Settings.from_env(dict(os.environ) if environ is None else environ)
        services = build_services(settings)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:  # one process owns the storage; the jobs recorded there survive restarts
        runtime = owning_runtime(services, "python -m shared.server", "VARIA_LOCAL_DIR=another-folder")
    except StorageInUse as exc:
        print(f"error ({exc.code}): {exc}", file=sys.stderr)
        return 2
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
    if resumed := runtime.resume_unfinished():
        print(f"  resuming {len(resumed)} unfinished job(s) where they stopped: {', '.join(resumed)}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    print(STOPPING, flush=True)
    try:
        server.close()
    except KeyboardInterrupt:
        os._exit(130)  # the activity pool's threads would otherwise be joined at exit
    if unfinished := runtime.unfinished():
        print(f"  {len(unfinished)} unfinished job(s) saved: they resume at the next start", flush=True)
    print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
