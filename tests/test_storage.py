"""Both storage back ends keep the same contract; names cannot escape their folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.adapters.storage import BlobStorage, LocalStorage, Storage
from tests.conftest import Azurite


@pytest.fixture(params=["local", "blob"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path)
    azurite: Azurite = request.getfixturevalue("azurite")
    azurite.clear()
    return BlobStorage.from_settings(azurite.connection_string, "")


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
