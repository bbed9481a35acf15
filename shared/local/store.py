"""Where the local runtime keeps its orchestrations, and the lock that gives one process a storage.

Each orchestration is one record in the `work` container, rewritten whenever its history grows:
`orchestrations/{instance id}/{generation}.json` holds the instance (input, runtime status,
custom status, output), its Durable history and the work it has scheduled but not seen finish.
`{generation}.done` is written once the instance has finished, so one listing tells the finished
from the unfinished without reading every record. A replaced instance (a new start of a finished
id) is the next generation.

One process at a time owns a storage: a local folder through an advisory lock on its `.lock`
file (`fcntl.flock`, which the kernel releases when the process ends, even under SIGKILL); Blob
Storage through a 15 s lease on `work/orchestrations.lock`, renewed while the process lives.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import sys
import threading
import time
from collections import defaultdict
from typing import Any

from shared.adapters.storage import WORK, BlobStorage, LocalStorage, Storage
from shared.core.blobs import ORCHESTRATIONS_LOCK, ORCHESTRATIONS_PREFIX, orchestration_record_name

PREFIX = ORCHESTRATIONS_PREFIX
LOCK_BLOB = ORCHESTRATIONS_LOCK
LEASE_SECONDS = 15  # the shortest lease Blob Storage grants: a killed owner frees it soonest

log = logging.getLogger("varia.runtime")


class StorageInUse(RuntimeError):
    """Another process owns this storage. The message names it and says what to do."""

    code = "storage_in_use"


class InstanceStore:
    """Orchestration records in a `Storage` (a local folder or Blob Storage)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    @staticmethod
    def _name(instance_id: str, generation: int, suffix: str) -> str:
        return orchestration_record_name(instance_id, generation, suffix)

    def save(self, record: dict[str, Any]) -> None:
        """Write the record whole; a reader sees the previous version or this one, never a mix."""
        body = json.dumps(record, separators=(",", ":")).encode("utf-8")
        name = self._name(record["instance_id"], record["generation"], "json")
        self.storage.put(WORK, name, body, "application/json")

    def mark_finished(self, instance_id: str, generation: int) -> None:
        self.storage.put(WORK, self._name(instance_id, generation, "done"), b"", "text/plain")

    def _generations(self, prefix: str) -> dict[str, dict[int, set[str]]]:
        """instance id -> generation -> the suffixes stored ({"json"} or {"json", "done"})."""
        found: dict[str, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
        for name in self.storage.list(WORK, prefix):
            parts = name[len(PREFIX) :].split("/")
            if len(parts) != 2 or "." not in parts[1]:
                continue
            number, suffix = parts[1].split(".", 1)
            if number.isdigit():
                found[parts[0]][int(number)].add(suffix)
        return found

    def load(self, instance_id: str) -> dict[str, Any] | None:
        """The latest record of an instance, or None if it never ran here."""
        generations = self._generations(f"{PREFIX}{instance_id}/").get(instance_id)
        if not generations:
            return None
        latest = max(g for g, suffixes in generations.items() if "json" in suffixes)
        return self._read(instance_id, latest)

    def unfinished(self) -> list[dict[str, Any]]:
        """The records of every instance whose latest generation has not finished."""
        records = []
        for instance_id, generations in sorted(self._generations(PREFIX).items()):
            latest = max(generations)
            if generations[latest] == {"json"}:
                record = self._read(instance_id, latest)
                if record is not None:
                    records.append(record)
        return records

    def _read(self, instance_id: str, generation: int) -> dict[str, Any] | None:
        try:
            record: dict[str, Any] = json.loads(self.storage.get(WORK, self._name(instance_id, generation, "json")))
        except ValueError:  # not JSON: written by something else; leave it alone
            log.warning("The orchestration record of %s is not readable; it is not resumed", instance_id)
            return None
        return record


# ---- the owner lock ------------------------------------------------------------------------------


def _holder(command: str) -> dict[str, str]:
    return {
        "pid": str(os.getpid()),
        "host": socket.gethostname(),
        "command": command,
        "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _describe(holder: dict[str, str]) -> str:
    pid, host, command, since = (holder.get(k, "?") for k in ("pid", "host", "command", "since"))
    where = "" if host == socket.gethostname() else f" on {host}"
    return f"`{command}` (pid {pid}{where}, since {since})"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by another user
    return True


class StorageLock:
    """Held while this process owns the storage; `release()` (or the process ending) frees it."""

    def release(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class FolderLock(StorageLock):
    """An advisory `flock` on `{folder}/.lock`, which also names its holder for the next process."""

    def __init__(self, storage: LocalStorage, command: str, elsewhere: str) -> None:
        storage.root.mkdir(parents=True, exist_ok=True)
        self.path = storage.root / ".lock"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(fd)
        except OSError:
            try:
                holder = json.loads(os.read(fd, 4096) or b"{}")
            except (ValueError, OSError):  # Windows refuses to read a locked byte
                holder = {}
            os.close(fd)
            raise StorageInUse(
                f"Another Varia process, {_describe(holder)}, is using the folder {storage.root}. "
                f"Stop it (Ctrl-C in its terminal) or {elsewhere}."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_holder(command)).encode())
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.ftruncate(fd, 0)
            _unlock(fd)
            os.close(fd)


def _lock(fd: int) -> None:
    """Lock the file without waiting; OSError when another process holds it (flock, or msvcrt on Windows)."""
    if sys.platform == "win32":
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


class BlobLease(StorageLock):
    """A 15 s lease on `work/orchestrations.lock`, renewed every 5 s; its metadata names the holder.

    A holder killed without releasing keeps the lease at most 15 s: a process on the same machine
    waits that long when the holder's pid is gone, any other holder is reported.
    """

    def __init__(self, storage: BlobStorage, command: str, elsewhere: str) -> None:
        from azure.core.exceptions import HttpResponseError, ResourceExistsError

        blob = storage.blob_client(WORK, LOCK_BLOB)
        try:
            blob.upload_blob(b"", overwrite=False)
        except ResourceExistsError:
            pass
        deadline: float | None = None
        while True:
            try:
                self._lease = blob.acquire_lease(lease_duration=LEASE_SECONDS)
                break
            except HttpResponseError as exc:
                if exc.status_code != 409:
                    raise
            holder = dict(blob.get_blob_properties().metadata or {})
            stale = holder.get("host") == socket.gethostname() and not _pid_alive(int(holder.get("pid") or 0))
            if not stale:
                raise StorageInUse(
                    f"Another Varia process, {_describe(holder)}, is using {storage.description}. "
                    f"Stop it (Ctrl-C in its terminal) or {elsewhere}."
                )
            if deadline is None:
                deadline = time.monotonic() + LEASE_SECONDS + 5
                print(
                    f"  waiting up to {LEASE_SECONDS} s for the lease of a stopped Varia process "
                    f"(pid {holder.get('pid')}) on {storage.description} to expire",
                    file=sys.stderr,
                    flush=True,
                )
            elif time.monotonic() > deadline:
                raise StorageInUse(
                    f"The lease on {storage.description} is still held after {LEASE_SECONDS} s. "
                    "Try again in a minute, or break it with `az storage blob lease break` "
                    f"on {WORK}/{LOCK_BLOB}."
                )
            time.sleep(1)
        blob.set_blob_metadata(_holder(command), lease=self._lease)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="storage-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_SECONDS / 3):
            try:
                self._lease.renew()
            except Exception:  # noqa: BLE001 - logged; the next renewal tries again while the lease lasts
                log.exception("Renewing the lease on %s/%s failed", WORK, LOCK_BLOB)

    def release(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(timeout=5)
            try:
                self._lease.release()
            except Exception:  # noqa: BLE001 - it expires by itself within LEASE_SECONDS
                log.warning("Releasing the lease on %s/%s failed; it expires by itself", WORK, LOCK_BLOB)


def lock_storage(storage: Storage, command: str, elsewhere: str) -> StorageLock:
    """Own `storage` for this process, or raise StorageInUse naming the owner.

    `command` names this process for the next one; `elsewhere` says how to use another storage
    (e.g. "run it with --out another-folder").
    """
    if isinstance(storage, LocalStorage):
        return FolderLock(storage, command, elsewhere)
    if isinstance(storage, BlobStorage):
        return BlobLease(storage, command, elsewhere)
    raise TypeError(f"No lock for {type(storage).__name__}")
