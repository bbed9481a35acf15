"""Both storage back ends keep the same contract; names cannot escape their folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.adapters.storage import BlobStorage, LocalStorage, Storage
from tests.conftest import Azurite


def test_put_get_info_list(storage: Storage) -> None:
    ref = storage.put("outputs", "job/variation-0.png", b"\x89PNG data", "image/png", {"provider": "offline"})
    assert ref.container == "outputs" and ref.etag and ref.sha256
    assert storage.get("outputs", "job/variation-0.png") == b"\x89PNG data"
    info = storage.info("outputs", "job/variation-0.png")
    assert info is not None and info.size == 9 and info.content_type == "image/png"
    assert info.metadata == {"provider": "offline"}
    assert storage.info("outputs", "job/missing.png") is None
    storage.put("outputs", "job/manifest.json", b"{}", "application/json")
    assert storage.list("outputs", "job/") == ["job/manifest.json", "job/variation-0.png"]


@pytest.mark.parametrize("name", ["../escape.png", "a/../../b", "/abs.png", "a\\b.png", "bad\x00name", "", "x" * 1025])
def test_unsafe_names_are_refused(tmp_path: Path, name: str) -> None:
    storage = LocalStorage(tmp_path / "root")
    with pytest.raises(ValueError):
        storage.put("inputs", name, b"data", "text/plain")
    assert not (tmp_path / "escape.png").exists()


def _add_one(raw: bytes | None) -> bytes:
    return str(int(raw or b"0") + 1).encode()


def test_concurrent_updates_never_lose_a_change(storage: Storage) -> None:
    """Read-modify-write from many threads at once: every increment lands (If-Match on Blob, a file lock locally)."""
    import threading

    def worker() -> None:
        for _ in range(10):
            storage.update("work", "quota/counter.json", _add_one)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert storage.get("work", "quota/counter.json") == b"80"
    assert storage.update("work", "quota/counter.json", _add_one) == b"81"
    assert "quota/counter.json" in storage.list("work", "quota/")  # the lock beside it is not a blob


_PROCESS_ADDER = """
import sys
from shared.adapters.storage import LocalStorage, BlobStorage
root, connection = sys.argv[1], sys.argv[2]
storage = BlobStorage.from_settings(connection, "") if connection else LocalStorage(root)
for _ in range(25):
    storage.update("work", "quota/counter.json", lambda raw: str(int(raw or b"0") + 1).encode())
"""


@pytest.mark.parametrize("kind", ["local", "blob"])
def test_updates_from_several_processes_never_lose_a_change(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Instances of the app are processes: three of them updating one blob at once lose nothing."""
    import subprocess
    import sys

    storage: Storage = LocalStorage(tmp_path)
    connection = ""
    if kind == "blob":
        azurite: Azurite = request.getfixturevalue("azurite")
        azurite.clear()
        connection = azurite.connection_string
        storage = BlobStorage.from_settings(connection, "")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS_ADDER, str(tmp_path), connection], cwd=Path(__file__).parent.parent
        )
        for _ in range(3)
    ]
    assert all(p.wait(120) == 0 for p in procs)
    assert storage.get("work", "quota/counter.json") == b"75"
