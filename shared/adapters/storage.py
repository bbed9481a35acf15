"""Blob I/O behind one small interface: Azure Blob Storage (Azurite locally) or a local folder.

Containers: `inputs` (watched by the blob trigger), `uploads` (HTTP uploads), `outputs`
(`{job}/variation-{k}.png` and `{job}/manifest.json`, written last) and `work` (normalized
sources `{job}/source` (JPEG, or PNG where transparent) and cached captions `captions/{sha256}.json`).

Storage faults a user or an operator must act on are raised as `StorageError`s, each with a
stable `code` and a message that says what to do: `StorageFull` (`storage_full`: a disk with
no space left), `StorageReadOnly` (`storage_read_only`: a read-only folder, or an identity
with no write role) and `StorageUnavailable` (`storage_unreachable`: Azurite or Azure did not
answer; it may work later, so Durable retries it).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from shared.core.models import BlobRef

INPUTS = "inputs"
UPLOADS = "uploads"
OUTPUTS = "outputs"
WORK = "work"
CONTAINERS = (INPUTS, UPLOADS, OUTPUTS, WORK)


class BlobNotFound(LookupError):
    """The blob does not exist (any more)."""


class StorageError(Exception):
    """A storage fault with a stable `code` and a message that says what to do next."""

    code: ClassVar[str] = "storage_error"
    http_status: ClassVar[int] = 503  # what an HTTP request that met it answers

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StorageFull(StorageError):
    """No space left: the local disk (ENOSPC, EDQUOT) or the storage account."""

    code = "storage_full"
    http_status = 507


class StorageReadOnly(StorageError):
    """Writing is refused: a read-only or unwritable folder, or a blob identity with no write role."""

    code = "storage_read_only"


class StorageUnavailable(StorageError, ConnectionError):
    """Storage could not be reached; the operation may succeed later (Durable retries it)."""

    code = "storage_unreachable"


@dataclass(frozen=True)
class Timeouts:
    """How long a blob client waits and how often it retries: seconds, and retries after the first try."""

    connect: float
    read: float
    retries: int
    backoff: float  # the SDK waits backoff + 2**n seconds before the n-th retry (2.5 s before the first)


# Request paths (the HTTP API) answer a person waiting: with Azurite or Azure down they answer
# within seconds. The SDK's own defaults (20 s connect, 60 s read, 3 retries from 15 s apart)
# kept a request waiting about 85 s; the activities keep them, since Durable waits for them.
REQUEST_TIMEOUTS = Timeouts(connect=3.0, read=10.0, retries=1, backoff=0.5)

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_READ_ONLY_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}


@dataclass(frozen=True)
class BlobInfo:
    etag: str
    size: int
    content_type: str
    metadata: dict[str, str] = field(default_factory=dict)


class Storage(Protocol):
    """What Varia needs from a blob store. Names are `container`, `name` as in Azure Blob."""

    description: str

    def put(
        self, container: str, name: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None
    ) -> BlobRef: ...

    def get(self, container: str, name: str) -> bytes: ...

    def info(self, container: str, name: str) -> BlobInfo | None: ...

    def list(self, container: str, prefix: str = "") -> list[str]: ...

    def url_hint(self, container: str, name: str) -> str: ...

    def claim(self, container: str, name: str, holder: str) -> bool:
        """Create the blob only if it does not exist: True for the one caller that created it."""
        ...

    def update(self, container: str, name: str, change: Callable[[bytes | None], bytes]) -> bytes:
        """Replace the blob with `change(current)` (None when there is none), atomically; returns what was written.

        Concurrent updates, from threads or from other processes and instances, never lose one
        another's change: `change` may be called again with the newer content, so it must not
        have side effects.
        """
        ...


def for_requests(storage: Storage) -> Storage:
    """The storage an HTTP request should use: the same store, with short timeouts where it has any."""
    short = getattr(storage, "for_requests", None)
    return short() if callable(short) else storage


def check_blob_name(name: str) -> str:
    """Refuse names that could escape a folder or that Azure Blob would refuse."""
    if not name or len(name) > 1024:
        raise ValueError("A blob name must have 1 to 1024 characters.")
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"Unsafe blob name {name[:80]!r}: no empty, '.' or '..' segments, no backslashes.")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError("A blob name must not contain control characters.")
    return name


class LocalStorage:
    """Containers as folders under `root`; metadata in a `.meta` sidecar folder. For the CLI and tests.

    Every file is written to a temporary file in its own folder, then renamed over the target, so
    a reader sees the old file or the new one, never a part; a write that fails removes its
    temporary file.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.description = f"local folder {self.root}"

    def _path(self, container: str, name: str) -> Path:
        check_blob_name(name)
        path = (self.root / container / name).resolve()
        if self.root / container not in path.parents:
            raise ValueError(f"Unsafe blob name {name[:80]!r}.")
        return path

    def _meta_path(self, container: str, name: str) -> Path:
        return self.root / ".meta" / container / (name + ".json")

    @contextlib.contextmanager
    def _writing(self, container: str, name: str) -> Iterator[None]:
        """Turn the OS's answers to a write into StorageFull or StorageReadOnly, naming the folder."""
        try:
            yield
        except OSError as exc:
            if exc.errno in _FULL_ERRNOS:
                raise StorageFull(
                    f"Varia could not save {container}/{name}: the disk holding {self.root} is full. "
                    f"Free some space on it (or set VARIA_LOCAL_DIR to a folder on another disk), then try again."
                ) from exc
            if exc.errno in _READ_ONLY_ERRNOS:
                raise StorageReadOnly(
                    f"Varia could not save {container}/{name}: {self.root} is read-only or not writable "
                    f"by this user ({exc.strerror}). Make {self.root} writable (or set VARIA_LOCAL_DIR to a "
                    f"writable folder), then try again."
                ) from exc
            raise

    def put(
        self, container: str, name: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None
    ) -> BlobRef:
        path = self._path(container, name)
        etag = hashlib.sha256(data).hexdigest()[:32]
        meta = json.dumps({"content_type": content_type, "metadata": metadata or {}, "etag": etag}).encode()
        with self._writing(container, name):
            _write_atomic(path, data)
            _write_atomic(self._meta_path(container, name), meta)
        return BlobRef(container=container, name=name, etag=etag, sha256=hashlib.sha256(data).hexdigest())

    def claim(self, container: str, name: str, holder: str) -> bool:
        path = self._path(container, name)
        with self._writing(container, name):
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written whole beside it, then linked into place: link() fails if the name exists, so
            # exactly one caller creates it, and no reader ever sees it empty.
            temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.claim")
            temp.write_bytes(holder.encode())
            try:
                os.link(temp, path)
            except FileExistsError:
                return False
            finally:
                temp.unlink(missing_ok=True)
        return True

    def update(self, container: str, name: str, change: Callable[[bytes | None], bytes]) -> bytes:
        path = self._path(container, name)
        lock_path = self.root / ".locks" / container / (name + ".lock")
        with self._writing(container, name):
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            with open(lock_path, "a+b") as lock, _file_locked(lock.fileno()):
                try:
                    current: bytes | None = path.read_bytes()
                except FileNotFoundError:
                    current = None
                data = change(current)
                self.put(container, name, data, "application/json")
        return data

    def get(self, container: str, name: str) -> bytes:
        try:
            return self._path(container, name).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"{container}/{name}") from None

    def info(self, container: str, name: str) -> BlobInfo | None:
        path = self._path(container, name)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        meta: dict[str, Any] = {}
        with contextlib.suppress(FileNotFoundError):  # written by older versions without a sidecar
            meta = json.loads(self._meta_path(container, name).read_bytes())
        etag = meta.get("etag") or hashlib.sha256(path.read_bytes()).hexdigest()[:32]
        return BlobInfo(etag, size, meta.get("content_type", ""), meta.get("metadata", {}))

    def list(self, container: str, prefix: str = "") -> list[str]:
        base = self.root / container
        # Walk only the folder the prefix names ("job/variation-" -> job/): not every job's files.
        start = base / prefix.rsplit("/", 1)[0] if "/" in prefix else base
        if not start.is_dir():
            return []
        names = (p.relative_to(base).as_posix() for p in start.rglob("*") if p.is_file())
        return sorted(n for n in names if n.startswith(prefix) and not n.split("/")[-1].startswith("."))

    def url_hint(self, container: str, name: str) -> str:
        return str(self._path(container, name))


@contextlib.contextmanager
def _file_locked(fd: int) -> Iterator[None]:
    """An exclusive lock on an open file, waited for: between threads (each opens its own file) and processes."""
    if sys.platform == "win32":  # pragma: no cover - Windows
        import msvcrt
        import time

        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                break
            except OSError:
                time.sleep(0.005)
        try:
            yield
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "wb") as out:
            out.write(data)
        os.replace(tmp, path)  # atomic on POSIX and Windows: readers see the old file or the new one
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _endpoint(url: str) -> str:
    """The service address without its query string (a SAS token must not reach messages or logs)."""
    return url.split("?", 1)[0].rstrip("/")


UPDATE_TRIES = 50  # optimistic writes of one small blob before giving up (each loses only to another's write)

# Blob answers that mean "no space" or "you may not write here" (Azure Blob Storage error codes).
_BLOB_READ_ONLY_CODES = {"AuthorizationPermissionMismatch", "AuthorizationFailure", "InsufficientAccountPermissions"}
_BLOB_FULL_CODES = {"InsufficientAccountResources", "AccountStorageQuotaExceeded"}


class BlobStorage:
    """Azure Blob Storage through azure-storage-blob. Creates the containers it needs on first use.

    `timeouts` None keeps the SDK's defaults (for the activities, which Durable waits for);
    `for_requests()` is the same store with `REQUEST_TIMEOUTS`, for the HTTP request paths.
    """

    def __init__(
        self,
        service: Any,  # azure.storage.blob.BlobServiceClient, imported lazily
        *,
        timeouts: Timeouts | None = None,
        client_factory: Callable[[Timeouts], Any] | None = None,
    ) -> None:
        self._service = service
        self._ready: set[str] = set()
        self._lock = threading.Lock()
        self._client_factory = client_factory
        self._for_requests: BlobStorage | None = None
        self.timeouts = timeouts
        self.endpoint = _endpoint(service.url)
        self.description = f"Azure Blob Storage {self.endpoint}"

    @classmethod
    def from_settings(
        cls, connection_string: str, blob_uri: str, credential: Any = None, timeouts: Timeouts | None = None
    ) -> BlobStorage:
        def client(limits: Timeouts | None) -> Any:
            from azure.storage.blob import BlobServiceClient, ExponentialRetry

            options: dict[str, Any] = {}
            if limits is not None:
                options = {
                    "connection_timeout": limits.connect,
                    "read_timeout": limits.read,
                    "retry_policy": ExponentialRetry(
                        initial_backoff=limits.backoff,  # type: ignore[arg-type]  # seconds, a float works
                        increment_base=2,
                        retry_total=limits.retries,
                        random_jitter_range=0,
                    ),
                }
            if connection_string:
                return BlobServiceClient.from_connection_string(connection_string, **options)
            return BlobServiceClient(account_url=blob_uri, credential=credential, **options)

        return cls(client(timeouts), timeouts=timeouts, client_factory=client)

    def for_requests(self) -> BlobStorage:
        """This store with short timeouts and one retry, so a person waiting gets an answer in seconds."""
        if self._client_factory is None or self.timeouts == REQUEST_TIMEOUTS:
            return self
        with self._lock:
            if self._for_requests is None:
                short = BlobStorage(
                    self._client_factory(REQUEST_TIMEOUTS),
                    timeouts=REQUEST_TIMEOUTS,
                    client_factory=self._client_factory,
                )
                short._ready = self._ready  # the containers one client created exist for the other too
                self._for_requests = short
        return self._for_requests

    @contextlib.contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """Turn the SDK's exceptions into BlobNotFound or a StorageError saying what to do."""
        from azure.core.exceptions import (
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )

        try:
            yield
        except ResourceNotFoundError:
            raise BlobNotFound(what) from None
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise StorageUnavailable(
                f"Blob storage at {self.endpoint} did not answer ({type(exc).__name__}) while reading or "
                f"writing {what}. Locally, start Azurite (`npx azurite --location .azurite`); otherwise check "
                f"AzureWebJobsStorage and the network; then try again."
            ) from exc
        except HttpResponseError as exc:
            code, status = str(getattr(exc, "error_code", None) or ""), exc.status_code or 0
            if status == 507 or code in _BLOB_FULL_CODES:
                raise StorageFull(
                    f"Blob storage at {self.endpoint} has no space for {what} ({code or status}). "
                    f"Free space in the storage account or raise its quota, then try again."
                ) from exc
            if (status == 403 and code in _BLOB_READ_ONLY_CODES) or (
                status == 409 and code.startswith("BlobImmutable")
            ):
                raise StorageReadOnly(
                    f"Blob storage at {self.endpoint} refused to write {what} ({code}). Give Varia's identity "
                    f"the 'Storage Blob Data Owner' or 'Contributor' role on the account (or lift the "
                    f"immutability policy), or check AzureWebJobsStorage; then try again."
                ) from exc
            if status >= 500:
                raise StorageUnavailable(
                    f"Blob storage at {self.endpoint} answered HTTP {status} ({code or 'no code'}) for {what}. "
                    f"It may be busy: try again in a minute; if it persists, check the storage account's health."
                ) from exc
            raise

    def _container(self, container: str) -> Any:
        from azure.core.exceptions import ResourceExistsError

        client = self._service.get_container_client(container)
        if container not in self._ready:
            with self._lock:
                try:
                    client.create_container()
                except ResourceExistsError:
                    pass
                self._ready.add(container)
        return client

    def put(
        self, container: str, name: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None
    ) -> BlobRef:
        from azure.storage.blob import ContentSettings

        check_blob_name(name)
        with self._calling(f"{container}/{name}"):
            self._container(container)
            result = self._service.get_blob_client(container, name).upload_blob(
                data,
                overwrite=True,
                metadata=metadata,
                content_settings=ContentSettings(content_type=content_type),
            )
        return BlobRef(container=container, name=name, etag=result["etag"], sha256=hashlib.sha256(data).hexdigest())

    def claim(self, container: str, name: str, holder: str) -> bool:
        from azure.core.exceptions import ResourceExistsError

        check_blob_name(name)
        try:
            with self._calling(f"{container}/{name}"):
                self._container(container)
                # overwrite=False sends If-None-Match: *: Blob Storage creates it for one caller only.
                self._service.get_blob_client(container, name).upload_blob(holder.encode(), overwrite=False)
        except ResourceExistsError:
            return False
        return True

    def update(self, container: str, name: str, change: Callable[[bytes | None], bytes]) -> bytes:
        """Read with its ETag, write with If-Match (If-None-Match: * when new); on a conflict, read again."""
        import random
        import time

        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
        from azure.storage.blob import ContentSettings

        check_blob_name(name)
        for tries in range(1, UPDATE_TRIES + 1):
            with self._calling(f"{container}/{name}"):
                self._container(container)
                blob = self._service.get_blob_client(container, name)
                try:
                    download = blob.download_blob()
                    current: bytes | None = bytes(download.readall())
                    etag: str | None = download.properties.etag
                except ResourceNotFoundError:
                    current, etag = None, None
                data = change(current)
                settings = ContentSettings(content_type="application/json")
                try:
                    if etag is None:
                        blob.upload_blob(data, overwrite=False, content_settings=settings)
                    else:
                        blob.upload_blob(
                            data,
                            overwrite=True,
                            etag=etag,
                            match_condition=MatchConditions.IfNotModified,
                            content_settings=settings,
                        )
                    return data
                except (ResourceModifiedError, ResourceExistsError):
                    time.sleep(random.uniform(0, 0.01 * tries))  # noqa: S311  # jitter, not a secret: another writer won
        raise StorageUnavailable(
            f"Blob storage at {self.endpoint}: {container}/{name} changed under every one of {UPDATE_TRIES} "
            f"updates. Many instances are writing it at once; try again in a minute."
        )

    def get(self, container: str, name: str) -> bytes:
        with self._calling(f"{container}/{name}"):
            return bytes(self._service.get_blob_client(container, name).download_blob().readall())

    def info(self, container: str, name: str) -> BlobInfo | None:
        try:
            with self._calling(f"{container}/{name}"):
                props = self._service.get_blob_client(container, name).get_blob_properties()
        except BlobNotFound:
            return None
        return BlobInfo(props.etag, props.size, props.content_settings.content_type or "", dict(props.metadata or {}))

    def list(self, container: str, prefix: str = "") -> list[str]:
        try:
            with self._calling(f"{container}/{prefix}*"):
                return sorted(b.name for b in self._service.get_container_client(container).list_blobs(prefix))
        except BlobNotFound:
            return []

    def url_hint(self, container: str, name: str) -> str:
        return f"{self.endpoint}/{container}/{name}"

    def blob_client(self, container: str, name: str) -> Any:
        """The SDK's client for one blob (leases, metadata), its container created first."""
        self._container(container)
        return self._service.get_blob_client(container, name)
