"""Who is calling, and how many of their jobs are in flight: the per-caller limit of the HTTP API.

`VARIA_MAX_JOBS_PER_CALLER` (default 4, 0 for no limit) caps the jobs one caller may have
unfinished through `POST /api/variations`; one more is refused with 429 `too_many_jobs` before
anything is stored. Blob drops and CLI runs are not limited: a drop has nobody to answer, and the
CLI runs on the operator's own machine.

**Who is a caller.** Only what the request cannot forge is used, so it depends on what stands in
front of the app:

- In Azure with App Service Authentication (Easy Auth) on, the signed-in principal:
  `X-MS-CLIENT-PRINCIPAL-IDP` + `X-MS-CLIENT-PRINCIPAL-ID`. With authentication on, App Service
  sets these headers and does not let an incoming request set them ("Work with user identities in
  Azure App Service authentication"). The platform says authentication is on in the
  `WEBSITE_AUTH_ENABLED` environment variable; without it nothing vouches for these headers, so
  they are ignored.
- In Azure otherwise (function keys: the app is not told which key was used), the client address
  from `X-Forwarded-For`. A proxy that finds the header in a request appends to it, so a client
  can write every hop but the last, and the last is the address Azure's front end accepted the
  connection from (`ip:port`). Trusting the first hop would give anyone a fresh limit per request.
  (If the front end replaced the header instead, the last hop would still be its own.) Behind
  another proxy (Front Door, API Management, Application Gateway) the last hop is that proxy, so
  all its users share one limit: turn on Easy Auth there.
- Under `func start` (AZURE_FUNCTIONS_ENVIRONMENT=Development) nothing stands in front of the host,
  so the headers are the client's own and are ignored: every caller is one, "this machine".
- The local server (`python -m shared.server`) is the edge itself: the socket's peer address,
  with every header ignored.

An address is a caller without its port; an IPv6 address counts by its /64 network, the block one
subscriber gets and can change addresses within at will. Callers are stored only as a hash.

**Counting across instances.** In storage, so every instance sees every other's jobs, under
`work/callers/{caller}/{day}/` (UTC day). Each request claims the next ticket `{k:06d}` there
(create-if-absent, so exactly one request gets each number, and numbers have no gaps), then
counts the tickets before its own that are still in flight:

- `{k}.job.{job_id}`: the ticket's job started (written before the orchestration is started);
  it counts until `outputs/{job}/manifest.json` exists or Durable says the job ended, and then
  `{k}.done` is written so the next count skips it without asking (a job Durable does not know
  counts for `START_GRACE_S`: its start is under way, or it failed);
- `{k}.void`: refused, or its request failed before a job started;
- a ticket with neither is a request deciding now: it counts (a request that died holding it
  stops counting after `START_GRACE_S`).

A request is let through only if fewer than the limit are in flight before its ticket, so two
requests at once from one caller cannot both take the last place: the later ticket sees the
earlier one. The limit is exact across instances; the cost of exactness is that a request may be
refused while an earlier one is still deciding (a false 429, never an extra job). Jobs count for
the day they were started and the next: a job still running 24 to 48 hours after it started no
longer counts (it is stuck). The one gap: for the few seconds around midnight UTC by which two
instances' clocks disagree, a request on the slow one still claims in yesterday's folder while
the other has moved on to today's, and the two may then take one place twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from shared.adapters.storage import OUTPUTS, WORK, BlobNotFound, Storage, StorageError
from shared.core.blobs import manifest_name
from shared.core.jobs import JobClient

RETRY_AFTER_S = 30  # what the 429 asks a client to wait: a job of a few images takes about that long
START_GRACE_S = 120  # a ticket undecided this long (or a job not started this long after) is a dead request's
MAX_CLAIM_ATTEMPTS = 400  # tickets tried in one request before it gives up (hundreds of requests at once)
ENDED = frozenset({"Completed", "Failed", "Terminated", "Canceled"})

Clock = Callable[[], float]


def caller_tickets_prefix(caller_key: str, day: str) -> str:
    """`work/callers/{caller}/{yyyymmdd}/`: one caller's tickets for one UTC day (see the module's docstring)."""
    return f"callers/{caller_key}/{day}/"


@dataclass(frozen=True)
class Caller:
    """One caller: `key` (a hash, used in blob names) and how they were recognised, for logs."""

    key: str
    kind: str  # principal | address | local | unknown

    @classmethod
    def of(cls, kind: str, identity: str) -> Caller:
        return cls(hashlib.sha256(f"varia-caller\x1f{kind}\x1f{identity}".encode()).hexdigest()[:32], kind)


LOCAL_CALLER = Caller.of("local", "this machine")  # func start, where nothing stands in front of the host
UNKNOWN_CALLER = Caller.of("unknown", "")  # a request no front end described: all such share one limit


def _address(value: str | None) -> str | None:
    """An address as a caller: without its port, an IPv6 address as its /64. None if it is not an address."""
    text = (value or "").strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    text = text.split("%", 1)[0]  # a zone index (fe80::1%eth0)
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def caller_at_edge(peer: str | None) -> Caller:
    """The caller of a server that clients reach directly (the local server): the socket's peer.

    No header is read: a client can write any X-Forwarded-For or X-MS-CLIENT-PRINCIPAL-ID it likes.
    """
    address = _address(peer)
    return Caller.of("address", address) if address else LOCAL_CALLER


def caller_behind_host(headers: Mapping[str, str], environ: Mapping[str, str]) -> Caller:
    """The caller of a request the Functions host passed on (see the module's docstring for the trust rules)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    if environ.get("AZURE_FUNCTIONS_ENVIRONMENT", "") == "Development":
        return LOCAL_CALLER  # func start: no front end, so every header here is the client's own
    if environ.get("WEBSITE_AUTH_ENABLED", "").strip().lower() == "true":
        # Easy Auth strips client-sent X-MS-CLIENT-PRINCIPAL-* headers and sets them for a signed-in caller.
        principal = lowered.get("x-ms-client-principal-id", "").strip()
        if principal:
            provider = lowered.get("x-ms-client-principal-idp", "").strip()
            return Caller.of("principal", f"{provider}/{principal}")
    # Azure's front end appends the address it saw; anything before it came with the request.
    hops = [hop for hop in lowered.get("x-forwarded-for", "").split(",") if hop.strip()]
    address = _address(hops[-1]) if hops else None
    return Caller.of("address", address) if address else UNKNOWN_CALLER


class TooManyJobs(Exception):
    """The caller has as many jobs in flight as the limit allows: the 429's message, with its numbers."""

    code: ClassVar[str] = "too_many_jobs"
    http_status: ClassVar[int] = 429

    def __init__(self, running: int | None, limit: int) -> None:
        self.running, self.limit, self.retry_after = running, limit, RETRY_AFTER_S
        jobs = "job" if limit == 1 else "jobs"
        if running is None:
            message = (
                f"You sent too many requests at once: this app runs at most {limit} {jobs} at a time for each caller. "
                f"Send one job, wait for it to finish, then send the next."
            )
        else:
            have = "job" if running == 1 else "jobs"
            message = (
                f"You already have {running} {have} running or starting, and this app runs at most {limit} {jobs} "
                f"at a time for each caller. Wait for one of your jobs to finish, then send this one again "
                f"(in about {RETRY_AFTER_S} seconds)."
            )
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class _Entry:
    """What a day folder says about one ticket: the jobs held on it, and whether it is void or done."""

    job_ids: frozenset[str]
    void: bool
    done: bool


def _read_folder(names: list[str], prefix: str) -> dict[int, _Entry]:
    """Tickets by number, from the names in one day folder (`{k}`, `{k}.job.{id}`, `{k}.void`, `{k}.done`)."""
    markers: dict[int, list[str]] = {}
    for name in names:
        number, _, marker = name.removeprefix(prefix).partition(".")
        if number.isdigit():
            markers.setdefault(int(number), []).append(marker)
    return {
        number: _Entry(
            frozenset(m.removeprefix("job.") for m in found if m.startswith("job.")), "void" in found, "done" in found
        )
        for number, found in markers.items()
    }


def _day(at: float) -> str:
    return time.strftime("%Y%m%d", time.gmtime(at))


@dataclass(frozen=True)
class Ticket:
    """One request's place in its caller's queue for the day; `hold` a job on it or `release` it."""

    storage: Storage
    caller: Caller
    day: str
    number: int
    at: float

    @property
    def name(self) -> str:
        return f"{caller_tickets_prefix(self.caller.key, self.day)}{self.number:06d}"

    def hold(self, job_id: str) -> None:
        """The job this ticket stands for: written before the orchestration is started."""
        self.storage.put(WORK, f"{self.name}.job.{job_id}", job_id.encode(), "text/plain")

    def release(self) -> None:
        """No job on this ticket (refused, or its request failed). Best effort: a dead ticket expires anyway."""
        with contextlib.suppress(StorageError):
            self.storage.put(WORK, f"{self.name}.void", b"", "text/plain")


def _claim(storage: Storage, caller: Caller, at: float) -> Ticket | None:
    """The next ticket in the caller's folder for today; None after MAX_CLAIM_ATTEMPTS lost races.

    Every request tries numbers upward from the highest it has seen, so the numbers have no gaps:
    whoever holds k knows that 0..k-1 are taken, and sees them when it counts.
    """
    day = _day(at)
    prefix = caller_tickets_prefix(caller.key, day)
    holder = json.dumps({"at": at})
    attempts = 0
    while attempts < MAX_CLAIM_ATTEMPTS:
        number = max(_read_folder(storage.list(WORK, prefix), prefix), default=-1) + 1
        for _ in range(8):  # each lost race means another request took that number: try the next
            attempts += 1
            if storage.claim(WORK, f"{prefix}{number:06d}", holder):
                return Ticket(storage, caller, day, number, at)
            number += 1
    return None


def _claimed_at(storage: Storage, name: str) -> float:
    try:
        return float(json.loads(storage.get(WORK, name))["at"])
    except (BlobNotFound, ValueError, KeyError, TypeError):
        return 0.0  # unreadable: long gone


async def _job_running(storage: Storage, client: JobClient, job_id: str) -> bool | None:
    """True while the job runs, False once it ended (manifest stored or Durable says so), None if no job has this id."""
    if await asyncio.to_thread(storage.info, OUTPUTS, manifest_name(job_id)) is not None:
        return False
    state = await client.status(job_id)
    return None if state is None else state.runtime_status not in ENDED


async def in_flight(storage: Storage, client: JobClient, ticket: Ticket, now: float) -> int:
    """Jobs (and requests still deciding) on the caller's tickets before `ticket`, yesterday's and today's.

    Writes what it learns (`.done` for a ticket whose jobs ended, `.void` for a dead request's) so
    the next count does not ask again. A job held on two tickets (an identical request) counts once.
    """
    earlier: list[tuple[str, _Entry]] = []
    for day in (_day(ticket.at - 86_400), ticket.day):
        prefix = caller_tickets_prefix(ticket.caller.key, day)
        folder = await asyncio.to_thread(storage.list, WORK, prefix)
        for number, entry in sorted(_read_folder(folder, prefix).items()):
            if day != ticket.day or number < ticket.number:
                earlier.append((f"{prefix}{number:06d}", entry))

    jobs: set[str] = set()
    deciding = 0
    for name, entry in earlier:
        if entry.void or entry.done:
            continue
        if not entry.job_ids:  # a request deciding now, or one that died deciding
            if now - await asyncio.to_thread(_claimed_at, storage, name) < START_GRACE_S:
                deciding += 1
            else:
                await asyncio.to_thread(storage.put, WORK, f"{name}.void", b"", "text/plain")
            continue
        running = False
        for job_id in sorted(entry.job_ids):
            if job_id in jobs:
                running = True
                continue
            state = await _job_running(storage, client, job_id)
            if state is None:  # being started now, or its start failed long ago
                state = now - await asyncio.to_thread(_claimed_at, storage, name) < START_GRACE_S
            if state:
                jobs.add(job_id)
                running = True
        if not running:
            await asyncio.to_thread(storage.put, WORK, f"{name}.done", b"", "text/plain")
    return len(jobs) + deciding


async def admit(storage: Storage, client: JobClient, caller: Caller, limit: int, clock: Clock = time.time) -> Ticket:
    """A ticket for one more job of `caller`, or TooManyJobs. StorageError passes through (nothing is held then).

    The caller then `hold`s the job on the ticket before starting it, or `release`s the ticket.
    """
    at = clock()
    ticket = await asyncio.to_thread(_claim, storage, caller, at)
    if ticket is None:
        raise TooManyJobs(None, limit)
    try:
        running = await in_flight(storage, client, ticket, clock())
    except BaseException:
        await asyncio.to_thread(ticket.release)
        raise
    if running >= limit:
        await asyncio.to_thread(ticket.release)
        raise TooManyJobs(running, limit)
    return ticket
