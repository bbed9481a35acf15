"""The per-caller limit on jobs in flight (VARIA_MAX_JOBS_PER_CALLER): who a caller is, over real HTTP on the
local server, behind the Functions host's headers, across two instances sharing storage (a local folder and
Azurite), and under simultaneous requests."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from shared.adapters.services import Services, build_services
from shared.adapters.storage import OUTPUTS, UPLOADS, WORK
from shared.config import Settings
from shared.core.callers import (
    LOCAL_CALLER,
    START_GRACE_S,
    UNKNOWN_CALLER,
    Caller,
    TooManyJobs,
    admit,
    caller_at_edge,
    caller_behind_host,
)
from shared.core.jobs import JobState
from shared.functions.http_api import post_variation
from shared.local.cli import bind_activities, make_runtime
from shared.local.runtime import LocalRuntime
from shared.local.server import VariaServer
from tests.conftest import Azurite
from tests.images import scene_png
from tests.support import NoCredential, multipart, offline_env, post_form

LIMIT = 2


class Gate:
    """Holds every job in its first step until opened, so jobs stay in flight as long as a test needs."""

    def __init__(self) -> None:
        self.open = threading.Event()

    def runtime(self, services: Services) -> LocalRuntime:
        bound = bind_activities(services)
        prepare = bound["prepare"]

        def held(data: Any) -> Any:
            assert self.open.wait(60), "the test never opened the gate"
            return prepare(data)

        return make_runtime(services, max_workers=16, retry_scale=0.001, activities={**bound, "prepare": held})


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    gate.open.set()  # let held jobs finish, so the runtimes shut down


def local_services(tmp_path: Path, limit: int = LIMIT) -> Services:
    return build_services(Settings.from_env(offline_env(tmp_path, VARIA_MAX_JOBS_PER_CALLER=str(limit))), NoCredential)


@pytest.fixture
def services(tmp_path: Path) -> Services:
    return local_services(tmp_path)


def serve(services: Services, runtime: LocalRuntime) -> VariaServer:
    server = VariaServer(services, runtime, port=0, poll_interval=None)
    server.start()
    return server


@pytest.fixture
def server(services: Services, gate: Gate) -> Iterator[VariaServer]:
    srv = serve(services, gate.runtime(services))
    yield srv
    gate.open.set()
    srv.close()


def post(
    server: VariaServer,
    prompt: str,
    image: bytes | None = None,
    source: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """POST a job from the address `source` (any 127.x.y.z reaches the server): (status, headers, body)."""
    body, content_type = multipart({"prompt": prompt, "n": "1"}, image or scene_png(96, 64))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30, source_address=(source, 0))
    try:
        conn.request("POST", "/api/variations", body=body, headers={"Content-Type": content_type, **(headers or {})})
        response = conn.getresponse()
        return response.status, dict(response.headers), json.loads(response.read())
    finally:
        conn.close()


def stored(services: Services) -> dict[str, list[str]]:
    """What jobs leave in storage: uploads, outputs, and work/ apart from the callers' tickets."""
    work = [n for n in services.storage.list(WORK) if not n.startswith("callers/")]
    return {UPLOADS: services.storage.list(UPLOADS), OUTPUTS: services.storage.list(OUTPUTS), WORK: work}


def wait_finished(server: VariaServer, job_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while services_manifest_missing(server, job_id):
        assert time.monotonic() < deadline, f"job {job_id} did not finish"
        time.sleep(0.02)


def services_manifest_missing(server: VariaServer, job_id: str) -> bool:
    return server.services.storage.info(OUTPUTS, f"{job_id}/manifest.json") is None


def assert_too_many(status: int, headers: dict[str, str], body: dict[str, Any], running: int = LIMIT) -> None:
    assert status == 429, body
    assert body["code"] == "too_many_jobs" and body["limit"] == LIMIT and body["running"] == running
    assert int(headers["Retry-After"]) > 0
    assert f"You already have {running} jobs running" in body["error"]
    assert "Wait for one of your jobs to finish" in body["error"]


# ---- over real HTTP: the local server ------------------------------------------------------------


def test_the_job_over_the_limit_gets_429_and_nothing_is_stored_or_started(
    server: VariaServer, services: Services
) -> None:
    jobs = [post(server, f"as sepia {i}")[2]["job_id"] for i in range(LIMIT)]
    before = stored(services)
    started = set(server.runtime._instances)
    assert started == set(jobs)

    status, headers, body = post(server, "as neon", scene_png(96, 72))  # a new image: an upload would show
    assert_too_many(status, headers, body)
    assert stored(services) == before, "a refused job left something behind"
    assert set(server.runtime._instances) == started, "a refused job was started"


def test_another_caller_is_not_affected_and_headers_do_not_make_a_new_caller(server: VariaServer) -> None:
    for i in range(LIMIT):
        assert post(server, f"as sepia {i}")[0] == 202
    # The local server is the edge: whatever a client writes in these headers, its caller is its address.
    spoofed = {"X-Forwarded-For": "203.0.113.7", "X-MS-CLIENT-PRINCIPAL-ID": "someone-else"}
    assert post(server, "as neon", headers=spoofed)[0] == 429
    status, _, body = post(server, "as neon", source="127.0.0.2")
    assert status == 202, body
    assert post(server, "as pop art", source="127.0.0.2")[0] == 202
    assert post(server, "as pixel art", source="127.0.0.2")[0] == 429


def test_once_a_job_finishes_the_caller_may_start_another(server: VariaServer, gate: Gate) -> None:
    jobs = [post(server, f"as sepia {i}")[2]["job_id"] for i in range(LIMIT)]
    assert post(server, "as neon")[0] == 429
    gate.open.set()
    for job_id in jobs:
        wait_finished(server, job_id)
    status, _, body = post(server, "as neon")
    assert status == 202, body
    assert body["created"] is True


def test_an_identical_request_at_the_limit_is_refused_and_counts_once(server: VariaServer) -> None:
    first = post(server, "as sepia")[2]["job_id"]
    # The same image and prompt is the same job: holding it twice does not take a second place.
    again = post(server, "as sepia", source="127.0.0.1")
    assert again[0] == 202 and again[2]["job_id"] == first and again[2]["created"] is False
    assert post(server, "as neon")[0] == 202
    assert_too_many(*post(server, "as pop art"))


def test_simultaneous_requests_from_one_caller_start_exactly_the_limit(server: VariaServer) -> None:
    burst = 12
    start = threading.Barrier(burst)
    statuses: list[int] = [0] * burst

    def send(i: int) -> None:
        start.wait()
        statuses[i] = post(server, f"as sepia {i}")[0]

    threads = [threading.Thread(target=send, args=(i,)) for i in range(burst)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Counter(statuses) == {202: LIMIT, 429: burst - LIMIT}, statuses
    assert len(server.runtime._instances) == LIMIT


def test_zero_means_no_limit(tmp_path: Path, gate: Gate) -> None:
    services = local_services(tmp_path, limit=0)
    server = serve(services, gate.runtime(services))
    try:
        assert [post(server, f"as sepia {i}")[0] for i in range(LIMIT + 3)] == [202] * (LIMIT + 3)
        assert [n for n in services.storage.list(WORK) if n.startswith("callers/")] == []  # nothing counted
    finally:
        gate.open.set()
        server.close()


def test_two_instances_sharing_a_folder_share_the_limit(tmp_path: Path, gate: Gate) -> None:
    first_services, second_services = local_services(tmp_path), local_services(tmp_path)
    first = serve(first_services, gate.runtime(first_services))
    second = serve(second_services, gate.runtime(second_services))
    try:
        assert post(first, "as sepia")[0] == 202
        assert post(second, "as neon")[0] == 202
        assert_too_many(*post(first, "as pop art"))
        assert_too_many(*post(second, "as pop art"))
        assert post(second, "as pop art", source="127.0.0.3")[0] == 202
    finally:
        gate.open.set()
        first.close()
        second.close()


# ---- over Azurite: two instances, and requests racing between them --------------------------------


@pytest.mark.azurite
def test_two_instances_on_azurite_never_start_more_than_the_limit_between_them(azurite: Azurite, gate: Gate) -> None:
    azurite.clear()
    env = {"AzureWebJobsStorage": azurite.connection_string, "VARIA_MAX_JOBS_PER_CALLER": str(LIMIT)}
    instances = [build_services(Settings.from_env(env), NoCredential) for _ in range(2)]
    servers = [serve(services, gate.runtime(services)) for services in instances]
    try:
        burst = 8
        start = threading.Barrier(burst)
        answers: list[tuple[int, dict[str, str], dict[str, Any]]] = [(0, {}, {})] * burst

        def send(i: int) -> None:
            start.wait()
            answers[i] = post(servers[i % 2], "as sepia", scene_png(90 + i, 64))  # each its own upload

        threads = [threading.Thread(target=send, args=(i,)) for i in range(burst)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        statuses = Counter(status for status, _, _ in answers)
        assert statuses == {202: LIMIT, 429: burst - LIMIT}, [a[2] for a in answers]
        # Each runtime also knows the other's jobs (from the records in storage): count them once.
        started = {job for server in servers for job in server.runtime._instances}
        assert len(started) == LIMIT
        assert len(instances[1].storage.list(UPLOADS)) == LIMIT  # a refused job's image was never stored

        gate.open.set()
        for answer in answers:
            if answer[0] == 202:
                wait_finished(servers[0], answer[2]["job_id"])
        assert post(servers[1], "as neon")[0] == 202  # places free again, seen from either instance
    finally:
        gate.open.set()
        for server in servers:
            server.close()


# ---- behind the Functions host: which headers are believed ---------------------------------------


AZURE: dict[str, str] = {}  # in Azure, without Easy Auth
EASY_AUTH = {"WEBSITE_AUTH_ENABLED": "True"}


@pytest.mark.parametrize(
    ("headers", "environ", "same_as"),
    [
        # Azure's front end appends the address it saw (ip:port): only the last hop is Azure's.
        ({"X-Forwarded-For": "198.51.100.4:50123"}, AZURE, {"X-Forwarded-For": "198.51.100.4:61000"}),
        ({"X-Forwarded-For": "203.0.113.9, 198.51.100.4:50123"}, AZURE, {"X-Forwarded-For": "198.51.100.4:1"}),
        ({"X-Forwarded-For": "[2001:db8:1:2::a]:443"}, AZURE, {"X-Forwarded-For": "[2001:db8:1:2:ffff::1]:80"}),
        # Without Easy Auth a principal header is the client's own: ignored.
        (
            {"X-Forwarded-For": "198.51.100.4:1", "X-MS-CLIENT-PRINCIPAL-ID": "u1"},
            AZURE,
            {"X-Forwarded-For": "198.51.100.4:2"},
        ),
        # With Easy Auth the principal is the caller, wherever it connects from.
        (
            {"X-Forwarded-For": "198.51.100.4:1", "X-MS-CLIENT-PRINCIPAL-ID": "u1", "X-MS-CLIENT-PRINCIPAL-IDP": "aad"},
            EASY_AUTH,
            {"X-Forwarded-For": "192.0.2.1:9", "X-MS-CLIENT-PRINCIPAL-ID": "u1", "X-MS-CLIENT-PRINCIPAL-IDP": "aad"},
        ),
    ],
    ids=["port-ignored", "client-written-hops-ignored", "ipv6-by-64", "principal-without-easy-auth", "easy-auth"],
)
def test_the_same_caller(headers: dict[str, str], environ: dict[str, str], same_as: dict[str, str]) -> None:
    assert caller_behind_host(headers, environ) == caller_behind_host(same_as, environ)


@pytest.mark.parametrize(
    ("headers", "environ", "other"),
    [
        ({"X-Forwarded-For": "198.51.100.4:1"}, AZURE, {"X-Forwarded-For": "198.51.100.5:1"}),
        ({"X-Forwarded-For": "198.51.100.4:1"}, AZURE, {"X-Forwarded-For": "198.51.100.4, 198.51.100.6:1"}),
        ({"X-Forwarded-For": "[2001:db8:1:2::a]:1"}, AZURE, {"X-Forwarded-For": "[2001:db8:1:3::a]:1"}),
        (
            {"X-MS-CLIENT-PRINCIPAL-ID": "u1", "X-MS-CLIENT-PRINCIPAL-IDP": "aad"},
            EASY_AUTH,
            {"X-MS-CLIENT-PRINCIPAL-ID": "u2", "X-MS-CLIENT-PRINCIPAL-IDP": "aad"},
        ),
        (
            {"X-MS-CLIENT-PRINCIPAL-ID": "u1", "X-MS-CLIENT-PRINCIPAL-IDP": "aad"},
            EASY_AUTH,
            {"X-MS-CLIENT-PRINCIPAL-ID": "u1", "X-MS-CLIENT-PRINCIPAL-IDP": "github"},
        ),
    ],
    ids=["another-address", "another-last-hop", "another-64", "another-principal", "another-provider"],
)
def test_another_caller(headers: dict[str, str], environ: dict[str, str], other: dict[str, str]) -> None:
    assert caller_behind_host(headers, environ) != caller_behind_host(other, environ)


def test_under_func_start_every_header_is_the_clients_own_so_all_are_one_caller() -> None:
    development = {"AZURE_FUNCTIONS_ENVIRONMENT": "Development", "WEBSITE_AUTH_ENABLED": "True"}
    spoofed = {"X-Forwarded-For": "198.51.100.4:1", "X-MS-CLIENT-PRINCIPAL-ID": "u1"}
    assert caller_behind_host(spoofed, development) == caller_behind_host({}, development) == LOCAL_CALLER
    assert caller_behind_host({}, AZURE) == caller_behind_host({"X-Forwarded-For": "junk"}, AZURE) == UNKNOWN_CALLER
    assert caller_at_edge("127.0.0.1") == caller_at_edge("::ffff:127.0.0.1") != caller_at_edge("127.0.0.2")
    assert caller_at_edge(None) == LOCAL_CALLER


def _form_post(image: bytes, prompt: str, **headers: str) -> func.HttpRequest:
    return post_form({"prompt": prompt, "n": "1"}, image, **headers)


def test_behind_the_host_callers_are_told_apart_by_the_front_ends_address(
    services: Services, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AZURE_FUNCTIONS_ENVIRONMENT", raising=False)
    monkeypatch.delenv("WEBSITE_AUTH_ENABLED", raising=False)
    runtime = gate.runtime(services)
    try:

        def send(prompt: str, forwarded: str) -> func.HttpResponse:
            request = _form_post(scene_png(96, 64), prompt, **{"X-Forwarded-For": forwarded})
            return asyncio.run(post_variation(request, runtime, services))

        assert [send(f"as sepia {i}", f"198.51.100.4:{5000 + i}").status_code for i in range(LIMIT)] == [202] * LIMIT
        refused = send("as neon", "10.9.9.9, 198.51.100.4:6000")  # a hop of its own before Azure's changes nothing
        assert refused.status_code == 429 and refused.headers["Retry-After"]
        assert json.loads(refused.get_body())["code"] == "too_many_jobs"
        assert send("as neon", "198.51.100.5:6000").status_code == 202
    finally:
        gate.open.set()
        runtime.shutdown()


# ---- the count itself ----------------------------------------------------------------------------


class Jobs:
    """A JobClient whose jobs have the states a test sets."""

    def __init__(self) -> None:
        self.states: dict[str, str] = {}

    async def status(self, job_id: str) -> JobState | None:
        state = self.states.get(job_id)
        return None if state is None else JobState(job_id, state, None, None)

    async def start(self, request: Any) -> None:
        raise AssertionError("not used")


def test_a_dead_request_and_a_job_that_never_started_stop_counting_after_the_grace(services: Services) -> None:
    storage, jobs, caller = services.storage, Jobs(), Caller.of("address", "192.0.2.1")
    now = [1_800_000_000.0]

    def take() -> Any:
        return asyncio.run(admit(storage, jobs, caller, LIMIT, lambda: now[0]))

    take()  # a request that died before holding a job
    take().hold("http-" + "1" * 32)  # a job whose start never happened
    with pytest.raises(TooManyJobs) as refused:
        take()
    assert refused.value.running == LIMIT
    now[0] += START_GRACE_S + 1
    take().hold("http-" + "2" * 32)
    jobs.states["http-" + "2" * 32] = "Running"
    take().hold("http-" + "3" * 32)
    jobs.states["http-" + "3" * 32] = "Pending"
    with pytest.raises(TooManyJobs):
        take()
    jobs.states["http-" + "2" * 32] = "Failed"  # ended without a manifest (it could not be written): not counted
    take()


def test_jobs_of_yesterday_still_count_and_older_ones_do_not(services: Services) -> None:
    storage, jobs, caller = services.storage, Jobs(), Caller.of("address", "192.0.2.1")
    day = 86_400.0
    start = 1_800_000_000.0 - (1_800_000_000.0 % day) + day - 10  # ten seconds before midnight UTC
    for i in range(LIMIT):
        asyncio.run(admit(storage, jobs, caller, LIMIT, lambda: start)).hold(f"http-{i:032d}")
        jobs.states[f"http-{i:032d}"] = "Running"
    with pytest.raises(TooManyJobs):
        asyncio.run(admit(storage, jobs, caller, LIMIT, lambda: start + 20))  # after midnight
    asyncio.run(admit(storage, jobs, caller, LIMIT, lambda: start + 2 * day))  # two days on: stuck, not counted
