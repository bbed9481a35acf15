"""No stored object carries EXIF or GPS: uploads are stripped before they are stored.

A photo with a GPS position (EXIF GPS IFD, XMP, a comment) goes in through the HTTP API and the
CLI, on a local folder and on Blob Storage (Azurite); then every stored object (uploads/, work/,
outputs/, the local sidecars and runtime records) is read back and searched, with Pillow and
byte by byte, for EXIF, the "Exif" marker and the GPS values.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import azure.functions as func
import pytest
from PIL import Image, ImageChops, ImageStat, PngImagePlugin

from shared.adapters.services import Services, build_services
from shared.adapters.storage import UPLOADS
from shared.config import Settings
from shared.core.images import normalize, sniff, strip_metadata
from shared.core.jobs import request_for_upload
from shared.functions.http_api import post_variation
from shared.local.cli import make_runtime
from tests.conftest import Azurite
from tests.images import GPS_IFD, ORIENTATION, scene
from tests.support import REPO, NoCredential, offline_env, post_form

DATUM = "VARIA-TEST-GPS-DATUM"  # GPSMapDatum: a string that can only come from the photo's GPS IFD
LATITUDE = (48, 51, 29)
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><exif:GPSLatitude>48,51.4931N</exif:GPSLatitude></x:xmpmeta>'


def gps_exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif.get_ifd(GPS_IFD).update({1: "N", 2: LATITUDE, 3: "E", 4: (2, 17, 40), 18: DATUM})
    return exif


def photo(fmt: str = "JPEG", orientation: int = 6, **options: object) -> bytes:
    """A picture as a phone or an editor saves it: EXIF with orientation and GPS, XMP, and more."""
    out = io.BytesIO()
    img = scene(240, 160)
    if fmt == "JPEG":
        img.save(out, "JPEG", exif=gps_exif(orientation), xmp=XMP, comment=DATUM.encode(), quality=90, **options)
    elif fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", XMP.decode())
        info.add_text("Comment", DATUM)
        img.save(out, "PNG", exif=gps_exif(orientation), pnginfo=info, **options)
    elif fmt == "WEBP":
        img.save(out, "WEBP", exif=gps_exif(orientation), xmp=XMP, **options)
    else:
        img.save(out, fmt, exif=gps_exif(orientation), **options)
    return out.getvalue()


def leaks(data: bytes) -> list[str]:
    """What in `data` could locate the photo: EXIF by Pillow, the Exif marker, the GPS values."""
    found = []
    latitude_le = b"".join(struct.pack("<LL", v, 1) for v in LATITUDE)
    latitude_be = b"".join(struct.pack(">LL", v, 1) for v in LATITUDE)
    for label, needle in [("Exif marker", b"Exif"), ("GPS datum", DATUM.encode()), ("XMP GPS", b"GPSLatitude")]:
        if needle in data:
            found.append(label)
    if latitude_le in data or latitude_be in data:
        found.append("GPS latitude")
    if sniff(data):
        with Image.open(io.BytesIO(data)) as img:
            if img.getexif():
                found.append("EXIF (Pillow)")
            found += [f"info[{key}]" for key in ("exif", "xmp", "XML:com.adobe.xmp", "icc_profile") if key in img.info]
    return found


def test_the_test_photos_do_carry_gps() -> None:
    for fmt in ("JPEG", "PNG", "WEBP"):
        assert {"GPS datum", "GPS latitude"} <= set(leaks(photo(fmt))), fmt
    assert "EXIF (Pillow)" in leaks(photo("TIFF"))  # Pillow's TIFF writer keeps the EXIF, not its GPS IFD


@pytest.mark.parametrize(
    ("fmt", "orientation", "options"),
    [
        ("JPEG", 1, {}),
        ("JPEG", 6, {}),
        ("JPEG", 1, {"progressive": True}),
        ("PNG", 1, {}),
        ("PNG", 8, {}),
        ("WEBP", 1, {}),
        ("WEBP", 1, {"lossless": True}),
        ("TIFF", 3, {}),
    ],
)
def test_stripping_removes_every_trace_and_keeps_the_look(fmt: str, orientation: int, options: dict) -> None:
    original = photo(fmt, orientation, **options)
    stripped = strip_metadata(original)
    assert leaks(stripped.data) == []
    # The same picture, the right way up: what prepare makes of it is what it made of the original.
    before, after = normalize(original), normalize(stripped.data)
    assert (after.width, after.height) == (before.width, before.height)
    with Image.open(io.BytesIO(before.data)) as a, Image.open(io.BytesIO(after.data)) as b:
        difference = max(ImageStat.Stat(ImageChops.difference(a, b)).extrema, key=lambda e: e[1])[1]
    lossless = (fmt in ("JPEG", "PNG") and orientation == 1) or options.get("lossless")
    assert difference == 0 if lossless else difference < 40
    if fmt in ("JPEG", "PNG") and orientation == 1:
        assert not stripped.reencoded  # segments and chunks dropped, pixels untouched


def test_a_jpeg_loses_what_trails_it() -> None:
    motion_photo = photo("JPEG", 1) + b"\x00\x00\x00\x18ftypmp42" + DATUM.encode() * 4
    assert leaks(strip_metadata(motion_photo).data) == []


def test_identical_uploads_are_one_job_and_the_id_hashes_what_is_stored(offline_services: Services) -> None:
    original = photo("JPEG", 6)
    first, second = (
        request_for_upload(
            offline_services.storage, original, "jpg", prompt="as sepia", profile="general", n=1, mode="edit",
            origin="http",
        )
        for _ in range(2)
    )  # fmt: skip
    assert first.job_id == second.job_id
    stored = offline_services.storage.get(UPLOADS, first.source.name)
    assert first.source.sha256 == hashlib.sha256(stored).hexdigest() and leaks(stored) == []
    assert offline_services.storage.list(UPLOADS) == [first.source.name]


# --- End to end: every stored object, after a job from the HTTP API and from the CLI -----------


def all_local_objects(root: Path) -> dict[str, bytes]:
    """Every file under the storage folder: containers, metadata sidecars, runtime records."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def all_blobs(azurite: Azurite) -> dict[str, bytes]:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    found = {}
    for container in service.list_containers():
        client = service.get_container_client(container.name)
        for blob in client.list_blobs(include=["metadata"]):
            found[f"{container.name}/{blob.name}"] = client.download_blob(blob.name).readall()
            found[f"{container.name}/{blob.name} (metadata)"] = json.dumps(blob.metadata or {}).encode()
    return found


def assert_nothing_locates_the_photo(objects: dict[str, bytes]) -> None:
    assert any(name.startswith(("uploads/", "uploads\\")) for name in objects), sorted(objects)
    assert any("variation-0.png" in name for name in objects), sorted(objects)
    found = {name: leaks(data) for name, data in objects.items()}
    assert {name: what for name, what in found.items() if what} == {}


def run_http_job(services: Services, image: bytes) -> None:
    runtime = make_runtime(services, retry_scale=0.001)
    try:
        response: func.HttpResponse = asyncio.run(
            post_variation(post_form({"prompt": "as a watercolour", "n": "1"}, image), runtime, services)
        )
        assert response.status_code == 202, response.get_body()
        job_id = json.loads(response.get_body())["job_id"]
        instance = runtime.get(job_id)
        assert instance is not None and instance.done.wait(60)
        assert instance.output["status"] == "succeeded"
    finally:
        runtime.shutdown()


def run_cli_job(image: bytes, tmp_path: Path, env: dict[str, str], *args: str) -> None:
    path = tmp_path / "holiday.jpg"
    path.write_bytes(image)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "VARIA_", "AzureWebJobs"))}
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "vary", str(path), "as a watercolour", "--n", "1", *args],
        cwd=tmp_path, env={**clean, "PYTHONPATH": str(REPO), **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert path.read_bytes() == image  # the user's file is left as it was


def test_http_upload_on_a_local_folder_stores_no_gps(tmp_path: Path) -> None:
    services = build_services(Settings.from_env(offline_env(tmp_path)), NoCredential)
    run_http_job(services, photo("JPEG", 6))
    assert_nothing_locates_the_photo(all_local_objects(tmp_path / "store"))


def test_cli_on_a_local_folder_stores_no_gps(tmp_path: Path) -> None:
    run_cli_job(photo("JPEG", 6), tmp_path, {}, "--out", str(tmp_path / "out"))
    assert_nothing_locates_the_photo(all_local_objects(tmp_path / "out"))


@pytest.fixture
def clean_azurite(azurite: Azurite) -> Iterator[Azurite]:
    azurite.clear()
    yield azurite
    azurite.clear()


@pytest.mark.azurite
def test_http_upload_on_blob_storage_stores_no_gps(clean_azurite: Azurite) -> None:
    settings = Settings.from_env({"AzureWebJobsStorage": clean_azurite.connection_string})
    run_http_job(build_services(settings, NoCredential), photo("JPEG", 6))
    assert_nothing_locates_the_photo(all_blobs(clean_azurite))


@pytest.mark.azurite
def test_cli_on_blob_storage_stores_no_gps(clean_azurite: Azurite, tmp_path: Path) -> None:
    run_cli_job(photo("JPEG", 6), tmp_path, {"AzureWebJobsStorage": clean_azurite.connection_string})
    assert_nothing_locates_the_photo(all_blobs(clean_azurite))
