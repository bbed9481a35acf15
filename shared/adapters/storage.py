"""Blob I/O behind one small interface: Azure Blob Storage (Azurite locally) or a local folder.

Containers: `inputs` (watched by the blob trigger), `uploads` (HTTP uploads), `outputs`
(`{job}/variation-{k}.png` and `{job}/manifest.json`, written last) and `work` (normalized
sources `{job}/source.png` and cached captions `captions/{sha256}.json`).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from shared.core.models import BlobRef

INPUTS = "inputs"
UPLOADS = "uploads"
OUTPUTS = "outputs"
WORK = "work"
CONTAINERS = (INPUTS, UPLOADS, OUTPUTS, WORK)


class BlobNotFound(LookupError):
    """The blob does not exist (any more)."""


class StorageUnavailable(ConnectionError):
    """Storage could not be reached; the operation may succeed later (Durable retries it)."""


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
    """Containers as folders under `root`; metadata in a `.meta` sidecar folder. For the CLI and tests."""

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

    def put(
        self, container: str, name: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None
    ) -> BlobRef:
        path = self._path(container, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # readers never see a half-written file
        meta_path = self._meta_path(container, name)
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        etag = hashlib.sha256(data).hexdigest()[:32]
        meta_path.write_text(json.dumps({"content_type": content_type, "metadata": metadata or {}, "etag": etag}))
        return BlobRef(container=container, name=name, etag=etag, sha256=hashlib.sha256(data).hexdigest())

    def get(self, container: str, name: str) -> bytes:
        try:
            return self._path(container, name).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"{container}/{name}") from None

    def info(self, container: str, name: str) -> BlobInfo | None:
        path = self._path(container, name)
        if not path.is_file():
            return None
        meta: dict[str, Any] = {}
        meta_path = self._meta_path(container, name)
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
        etag = meta.get("etag") or hashlib.sha256(path.read_bytes()).hexdigest()[:32]
        return BlobInfo(etag, path.stat().st_size, meta.get("content_type", ""), meta.get("metadata", {}))

    def list(self, container: str, prefix: str = "") -> list[str]:
        base = self.root / container
        if not base.is_dir():
            return []
        names = (p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())
        return sorted(n for n in names if n.startswith(prefix) and not n.split("/")[-1].startswith("."))

    def url_hint(self, container: str, name: str) -> str:
        return str(self._path(container, name))


class BlobStorage:
    """Azure Blob Storage through azure-storage-blob. Creates the containers it needs on first use."""

    def __init__(self, service: Any) -> None:  # azure.storage.blob.BlobServiceClient, imported lazily
        self._service = service
        self._ready: set[str] = set()
        self._lock = threading.Lock()
        self.description = f"Azure Blob Storage {service.url}"

    @classmethod
    def from_settings(cls, connection_string: str, blob_uri: str, credential: Any = None) -> BlobStorage:
        from azure.storage.blob import BlobServiceClient

        if connection_string:
            return cls(BlobServiceClient.from_connection_string(connection_string))
        return cls(BlobServiceClient(account_url=blob_uri, credential=credential))

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
        from azure.core.exceptions import ServiceRequestError
        from azure.storage.blob import ContentSettings

        check_blob_name(name)
        try:
            self._container(container)
            result = self._service.get_blob_client(container, name).upload_blob(
                data,
                overwrite=True,
                metadata=metadata,
                content_settings=ContentSettings(content_type=content_type),
            )
        except ServiceRequestError as exc:
            raise StorageUnavailable(f"Blob storage is unreachable: {exc}") from exc
        return BlobRef(container=container, name=name, etag=result["etag"], sha256=hashlib.sha256(data).hexdigest())

    def get(self, container: str, name: str) -> bytes:
        from azure.core.exceptions import ResourceNotFoundError, ServiceRequestError

        try:
            return bytes(self._service.get_blob_client(container, name).download_blob().readall())
        except ResourceNotFoundError:
            raise BlobNotFound(f"{container}/{name}") from None
        except ServiceRequestError as exc:
            raise StorageUnavailable(f"Blob storage is unreachable: {exc}") from exc

    def info(self, container: str, name: str) -> BlobInfo | None:
        from azure.core.exceptions import ResourceNotFoundError, ServiceRequestError

        try:
            props = self._service.get_blob_client(container, name).get_blob_properties()
        except ResourceNotFoundError:
            return None
        except ServiceRequestError as exc:
            raise StorageUnavailable(f"Blob storage is unreachable: {exc}") from exc
        return BlobInfo(props.etag, props.size, props.content_settings.content_type or "", dict(props.metadata or {}))

    def list(self, container: str, prefix: str = "") -> list[str]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return sorted(b.name for b in self._service.get_container_client(container).list_blobs(prefix))
        except ResourceNotFoundError:
            return []

    def url_hint(self, container: str, name: str) -> str:
        return f"{self._service.url.rstrip('/')}/{container}/{name}"
