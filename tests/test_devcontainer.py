"""The developer's tools: the dev container (.devcontainer/devcontainer.json) and test.http, sent to the local server.

test.http is read as the REST Client extension reads it (file variables, `###` between requests,
`# @name` and `{{name.response.body.$.field}}`, `< ./file` in a body) and every request is sent to
the local server on 127.0.0.1, in the file's order; each must be answered as its comment says
("Expect 202", "Expect 404 job_not_found"). Every route the app registers, in the Functions
bindings and in the local server, must have a request there.
"""

from __future__ import annotations

import ast
import http.client
import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.services import Services, build_services
from shared.config import Settings
from shared.local.cli import make_runtime
from shared.local.server import DEFAULT_PORT, VariaServer
from tests.support import REPO, offline_env

DEVCONTAINER = REPO / ".devcontainer" / "devcontainer.json"
TEST_HTTP = REPO / "test.http"
AZURITE_PORTS = {10000, 10001, 10002}  # blob, queue, table: what UseDevelopmentStorage=true connects to
FEATURES = {
    "python": "ghcr.io/devcontainers/features/python",
    "node": "ghcr.io/devcontainers/features/node",
    "azure-cli": "ghcr.io/devcontainers/features/azure-cli",
    "azd": "ghcr.io/azure/azure-dev/azd",
    "core-tools": "ghcr.io/jlaundry/devcontainer-features/azure-functions-core-tools",
}
EXTENSIONS = {"ms-azuretools.vscode-azurefunctions", "ms-python.python", "ms-azuretools.vscode-bicep"}


# ---- the dev container -------------------------------------------------------------------------
def _devcontainer() -> dict[str, Any]:
    config: dict[str, Any] = json.loads(DEVCONTAINER.read_text(encoding="utf-8"))  # plain JSON: no comments
    return config


def _feature(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The options of a feature, whatever version tag it is pinned to."""
    matches = [options for key, options in config["features"].items() if key.rsplit(":", 1)[0] == FEATURES[name]]
    assert len(matches) == 1, f"the dev container has no {name} feature ({FEATURES[name]})"
    options: dict[str, Any] = matches[0]
    return options


def test_devcontainer_installs_the_tools_azure_runs_and_the_readme_uses() -> None:
    config = _devcontainer()
    parameters = json.loads((REPO / "infra" / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    azure_python = re.fullmatch(r"\$\{\w+=(3\.\d+)\}", parameters["pythonVersion"]["value"])
    assert azure_python, "infra/main.parameters.json sets the Python that Azure runs"
    assert _feature(config, "python")["version"] == azure_python.group(1), "the container's Python is Azure's"
    assert int(_feature(config, "node")["version"]) >= 20, "the README asks for Node.js 20+ (Azurite)"
    for name in ("azure-cli", "azd", "core-tools"):
        _feature(config, name)
    assert EXTENSIONS <= set(config["customizations"]["vscode"]["extensions"])


def test_devcontainer_forwards_the_function_host_and_azurite() -> None:
    config = _devcontainer()
    ports = set(config["forwardPorts"])
    assert DEFAULT_PORT in ports, "the port of `func start` and the local server"
    assert AZURITE_PORTS <= ports
    assert {str(port) for port in ports} <= set(config["portsAttributes"])


def test_devcontainer_post_create_command_is_a_makefile_target_that_installs_the_dev_tools() -> None:
    command = _devcontainer()["postCreateCommand"]
    match = re.fullmatch(r"make ([\w-]+)", command)
    assert match, f"postCreateCommand {command!r} is one make target"
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(rf"^{re.escape(match.group(1))}:(.*)$", makefile, re.M)
    assert recipe, f"the Makefile has no target {match.group(1)}"
    prerequisites = recipe.group(1).split()
    assert "$(VENV)/.dev" in prerequisites, "the venv with requirements-dev.txt"
    assert "node_modules/.installed" in prerequisites, "Azurite from npm"


# ---- test.http ---------------------------------------------------------------------------------
@dataclass
class HttpRequest:
    """One request of test.http, as written (variables not yet replaced)."""

    title: str
    method: str
    url: str
    headers: dict[str, str]
    body: list[str]
    name: str | None = None
    expect_status: int = 0
    expect_code: str | None = None
    comments: list[str] = field(default_factory=list)


def parse_http_file(text: str) -> tuple[dict[str, str], list[HttpRequest]]:
    """File variables and requests of a REST Client file."""
    variables: dict[str, str] = {}
    requests: list[HttpRequest] = []
    blocks = re.split(r"^###", text, flags=re.M)
    for line in blocks[0].splitlines():
        if assignment := re.fullmatch(r"@(\w+)\s*=\s*(.*?)\s*", line):
            variables[assignment.group(1)] = assignment.group(2)
    for block in blocks[1:]:
        lines = block.split("\n")
        title, comments, name = lines[0].strip(), [], None
        index = 1
        while index < len(lines) and (not lines[index].strip() or lines[index].lstrip().startswith(("#", "//"))):
            comment = lines[index].lstrip("#/ ").strip()
            if named := re.fullmatch(r"@name\s+(\w+)", comment):
                name = named.group(1)
            elif comment:
                comments.append(comment)
            index += 1
        method, url = lines[index].split()[:2]
        index += 1
        headers: dict[str, str] = {}
        while index < len(lines) and lines[index].strip():
            key, _, value = lines[index].partition(":")
            headers[key.strip()] = value.strip()
            index += 1
        body = lines[index + 1 :]
        while body and not body[-1].strip():
            body.pop()
        expect = re.search(r"Expect (\d{3})(?: ([a-z]+_[a-z_]+))?", " ".join([title, *comments]))
        assert expect, f"the request {title!r} in test.http says what it expects ('Expect 200', 'Expect 404 code')"
        requests.append(
            HttpRequest(title, method, url, headers, body, name, int(expect.group(1)), expect.group(2), comments)
        )
    return variables, requests


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RestClient:
    """Sends test.http's requests as REST Client does: variables replaced, files read, multipart in CRLF."""

    def __init__(self, variables: dict[str, str], base: Path) -> None:
        self.variables = variables
        self.base = base
        self.answers: dict[str, Answer] = {}

    def resolve(self, text: str) -> str:
        def value(match: re.Match[str]) -> str:
            reference = match.group(1).strip()
            if reference in self.variables:
                return self.variables[reference]
            name, part, rest = reference.split(".", 2)
            answer = self.answers[name]
            if part == "response" and rest.startswith("body.$."):
                found: Any = answer.json()
                for key in rest.removeprefix("body.$.").split("."):
                    found = found[key]
                return str(found)
            if part == "response" and rest.startswith("headers."):
                return answer.headers[rest.removeprefix("headers.").lower()]
            raise AssertionError(f"test.http uses a reference this reader does not know: {reference}")

        return re.sub(r"\{\{(.+?)\}\}", value, text)

    def body(self, request: HttpRequest) -> bytes:
        multipart = request.headers.get("Content-Type", "").startswith("multipart/form-data")
        parts: list[bytes] = []
        for line in request.body:
            if line.startswith("< "):
                parts.append((self.base / line[2:].strip()).read_bytes())
            else:
                parts.append(self.resolve(line).encode("utf-8"))
        return (b"\r\n" if multipart else b"\n").join(parts)

    def send(self, request: HttpRequest) -> Answer:
        url = urllib.parse.urlsplit(self.resolve(request.url))
        connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
        try:
            headers = {key: self.resolve(value) for key, value in request.headers.items()}
            connection.request(
                request.method, url.path + (f"?{url.query}" if url.query else ""), self.body(request), headers
            )
            response = connection.getresponse()
            answer = Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()
        if request.name:
            self.answers[request.name] = answer
        return answer


def _function_routes() -> list[tuple[str, str]]:
    """(method, route) of every HTTP function the Functions bindings declare, read from their decorators."""
    tree = ast.parse((REPO / "shared" / "functions" / "bindings.py").read_text(encoding="utf-8"))
    routes: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "route":
            keywords = {
                keyword.arg: ast.literal_eval(keyword.value)
                for keyword in node.keywords
                if keyword.arg in ("route", "methods")
            }
            routes.extend((method, keywords["route"]) for method in keywords["methods"])
    assert routes, "no HTTP route found in shared/functions/bindings.py"
    return routes


def _matches(route: str, path: str) -> bool:
    """Whether a path is one of a Functions route template under /api (`{name}` is one path segment)."""
    pattern = "/api/" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(route))
    return re.fullmatch(pattern, path) is not None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[VariaServer]:
    services: Services = build_services(Settings.from_env(offline_env(tmp_path)))
    srv = VariaServer(services, make_runtime(services, retry_scale=0.001), host="127.0.0.1", port=0, poll_interval=None)
    srv.start()
    yield srv
    srv.close()


def _wait_for_jobs(client: RestClient, host: str) -> None:
    """Wait, as a person would before asking for the images, until every job started so far has finished."""
    for name, answer in client.answers.items():
        if answer.status != 202:
            continue
        request = HttpRequest(f"{name} status", "GET", f"{host}{answer.json()['status_url']}", {}, [])
        deadline = time.monotonic() + 60
        while (view := client.send(request).json())["status"] == "running":
            assert time.monotonic() < deadline, f"the job of {name} did not finish in 60 s"
            time.sleep(0.05)
        assert view["status"] == "succeeded", view


def test_http_file_points_at_the_local_port() -> None:
    variables, _ = parse_http_file(TEST_HTTP.read_text(encoding="utf-8"))
    assert variables["host"] == f"http://localhost:{DEFAULT_PORT}"


def test_http_file_has_a_request_for_every_route_and_each_is_answered_as_it_says(server: VariaServer) -> None:
    variables, requests = parse_http_file(TEST_HTTP.read_text(encoding="utf-8"))
    variables["host"] = server.url  # the server listens on a free port of 127.0.0.1
    client = RestClient(variables, TEST_HTTP.parent)

    # Coverage first, from the code: the Functions bindings' routes and the local server's rules.
    paths = [(r.method, urllib.parse.urlsplit(r.url.replace("{{host}}", "")).path) for r in requests]
    for method, route in _function_routes():
        assert any(m == method and _matches(route, p) for m, p in paths), f"test.http has no {method} /api/{route}"
    adapter = server._routes.bind("127.0.0.1")
    covered = {adapter.match(p, m, return_rule=True)[0].rule for m, p in paths}
    missing = {rule.rule for rule in server._routes.iter_rules()} - covered
    assert not missing, f"test.http has no request for the local server's routes {sorted(missing)}"
    starts = [r for r in requests if r.method == "POST" and r.expect_status == 202]
    assert {r.headers["Content-Type"].split(";")[0] for r in starts} == {"multipart/form-data", "application/json"}

    for request in requests:
        if "/images/" in request.url and request.expect_status == 200:
            _wait_for_jobs(client, server.url)
        answer = client.send(request)
        shown = f"{request.method} {request.url} ({request.title}): {answer.status} {answer.body[:300]!r}"
        assert answer.status == request.expect_status, shown
        if request.expect_code:
            assert answer.json()["code"] == request.expect_code, shown
        if answer.status == 202:
            assert answer.json()["status_url"] == answer.headers["location"], shown
