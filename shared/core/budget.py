"""The spend budget: every paid call gets at most MAX_ATTEMPTS billed attempts in all, and each is recorded.

The SDKs make one attempt per call (their own retries are off), and Varia decides whether to try
again. Each attempt is counted in storage *before* it is made, under the job and the call
(`caption`, `compose`, `image-{k}`), so a Durable retry, a second round of generations or an
activity run again after a crash all see the attempts already spent: a call is never billed a
third time, whoever asks. The manifest's `paid_calls` and its cost estimate are read from here.

A 429 (`quota_exhausted`) is not billed: the service turned the call away before doing any work.
It is recorded (`rejected`) but leaves the budget as it was, so a job whose request met a busy
window twice still gets its image; a call turned away MAX_REJECTED times stops there, so a
deployment that stays full ends the job rather than holding it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from shared.adapters.storage import WORK, BlobNotFound, Storage
from shared.core.blobs import attempts_name, attempts_prefix

MAX_ATTEMPTS = 2  # billed attempts of one paid call
MAX_REJECTED = 3  # ... and attempts turned away by a 429 on top of them
UNBILLED = frozenset({"quota_exhausted"})  # the codes of answers Azure does not bill


@dataclass
class CallRecord:
    attempted: int = 0  # every attempt made (or being made), billed or not
    delivered: bool = False
    last_code: str | None = None  # why the last attempt did not deliver
    last_message: str | None = None
    rejected: int = 0  # of the attempts, those a 429 turned away (not billed)

    @property
    def billed(self) -> int:
        """Attempts that may have been billed: all but those a 429 turned away (an attempt under way counts)."""
        return self.attempted - self.rejected

    @property
    def has_room(self) -> bool:
        """Whether another attempt is within the budget."""
        return self.billed < MAX_ATTEMPTS and self.rejected < MAX_REJECTED


def read(storage: Storage, job_id: str, call: str) -> CallRecord:
    try:
        return CallRecord(**json.loads(storage.get(WORK, attempts_name(job_id, call))))
    except BlobNotFound:
        return CallRecord()


def _write(storage: Storage, job_id: str, call: str, record: CallRecord) -> None:
    storage.put(WORK, attempts_name(job_id, call), json.dumps(asdict(record)).encode(), "application/json")


def take(storage: Storage, job_id: str, call: str) -> CallRecord | None:
    """Count one more attempt of `call` and return its record, or None when the budget is spent."""
    record = read(storage, job_id, call)
    if not record.has_room:
        return None
    record.attempted += 1
    _write(storage, job_id, call, record)
    return record


def settle(storage: Storage, job_id: str, call: str, record: CallRecord, *, code: str | None, message: str) -> None:
    """Record how the attempt ended: delivered (code None) or why not (an unbilled 429 leaves the budget as it was)."""
    record.delivered = code is None
    if code in UNBILLED:
        record.rejected += 1
    record.last_code, record.last_message = code, (None if code is None else message)
    _write(storage, job_id, call, record)


def tally(storage: Storage, job_id: str) -> dict[str, CallRecord]:
    """Every paid call of the job, by call name."""
    prefix = attempts_prefix(job_id)
    calls = {}
    for name in storage.list(WORK, prefix):
        call = name.removeprefix(prefix).removesuffix(".json")
        calls[call] = read(storage, job_id, call)
    return calls


def spent_message(record: CallRecord, what: str) -> str:
    """Why a call that used its whole budget did not deliver."""
    reason = record.last_message or f"the {what} did not answer"
    if record.rejected >= MAX_REJECTED:
        return (
            f"{reason} The {what} turned Varia away at its rate limit {record.rejected} times (HTTP 429, not "
            "billed), its limit for one call, and Varia stopped there."
        )
    turned_away = f", {record.rejected} of them turned away by a 429 and not billed" if record.rejected else ""
    return (
        f"{reason} Varia made {record.attempted} attempts{turned_away}, its limit for a paid call, and stopped there."
    )
