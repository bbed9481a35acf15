"""Region edits end to end: a mask through the API, the CLI and a blob drop; every pixel outside it kept.

With the left half of the picture masked, the right half of each delivered image must equal the
prepared source, and the left half must differ: offline (the stylizer restyles the whole picture)
and through the real OpenAI SDK against the fake, whose masked edits are soft as GPT-image's are
(it changes pixels outside the mask too), so only Varia's composite-back can keep them.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from PIL import Image, ImageChops, ImageStat

from shared.adapters.services import Services, build_services
from shared.adapters.storage import INPUTS, OUTPUTS, WORK
from shared.config import Settings
from shared.core.blobs import source_name
from shared.core.jobs import MaskInvalid, request_for_upload
from shared.functions.blob_trigger import handle_blob
from shared.functions.http_api import get_variation, post_variation
from shared.local.cli import make_runtime
from tests.fake_ai import FakeAzureAI
from tests.images import scene_png
from tests.support import NoCredential, RuntimeJobClient, azure_env, offline_env, run_job

SIZE = (480, 320)
REPO = Path(__file__).resolve().parent.parent


def left_half_mask(size: tuple[int, int] = (120, 80)) -> bytes:
    """Transparent (change) on the left half, opaque (keep) on the right; any size: it is scaled."""
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))
    out = io.BytesIO()
    mask.save(out, format="PNG")
    return out.getvalue()


def _mean_difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean) / 3


def assert_kept_right_changed_left(services: Services, manifest: dict[str, Any]) -> None:
    """Each delivered image: the right half is the prepared source's (MAD <= 2), the left half is not."""
    job_id = manifest["job_id"]
    source = Image.open(io.BytesIO(services.storage.get(WORK, source_name(job_id)))).convert("RGB")
    width, height = source.size
    right, left = (width // 2, 0, width, height), (0, 0, width // 2 - 20, height)
    delivered = [v for v in manifest["variations"] if v["status"] == "succeeded"]
    assert delivered, manifest["message"]
    for variation in delivered:
        image = Image.open(io.BytesIO(services.storage.get(OUTPUTS, variation["image"]["name"]))).convert("RGB")
        assert image.size == source.size
        assert _mean_difference(image.crop(right), source.crop(right)) <= 2
        assert _mean_difference(image.crop(left), source.crop(left)) > 10
    assert manifest["source"]["mask"]["name"] == f"{job_id}/mask.png"  # the mask as applied, and its share
    assert manifest["source"]["mask_share"] == pytest.approx(0.5, abs=0.01)
    assert manifest["request"]["mask"] is not None  # the mask as given


def _masked_request(services: Services, n: int = 2, **options: Any) -> Any:
    return request_for_upload(
        services.storage, scene_png(*SIZE), "png", prompt="as a watercolour", profile="general", n=n,
        mode=options.pop("mode", "edit"), origin="cli", mask=options.pop("mask", left_half_mask()), **options,
    )  # fmt: skip


def test_offline_the_style_goes_inside_the_mask_only(offline_services: Services) -> None:
    manifest = run_job(offline_services, _masked_request(offline_services)).output
    assert manifest["status"] == "succeeded", manifest["message"]
    assert_kept_right_changed_left(offline_services, manifest)


def test_a_soft_masked_edit_from_the_service_keeps_every_pixel_outside_the_mask(
    fake: FakeAzureAI, tmp_path: Path
) -> None:
    services = build_services(Settings.from_env({**azure_env(fake), **offline_env(tmp_path)}), NoCredential)
    request = _masked_request(services, n=1)
    manifest = run_job(services, request).output
    assert manifest["status"] == "succeeded", manifest["message"]

    (edit,) = [c for c in fake.calls if c.route == "images.edit"]
    sent_image = Image.open(io.BytesIO(edit.files["image"][0]))
    sent_mask = Image.open(io.BytesIO(edit.files["mask"][0]))
    assert (sent_mask.format, sent_mask.mode, sent_mask.size) == ("PNG", "RGBA", sent_image.size)
    # The service changed the kept half too (soft masks) ...
    source = Image.open(io.BytesIO(services.storage.get(WORK, source_name(request.job_id)))).convert("RGB")
    drawn_by_service = _fake_edit_output(fake, sent_image, sent_mask, source.size)
    width, height = source.size
    right = (width // 2, 0, width, height)
    assert _mean_difference(drawn_by_service.crop(right), source.crop(right)) > 20
    # ... and what Varia delivered kept it exactly.
    assert_kept_right_changed_left(services, manifest)


def _fake_edit_output(fake: FakeAzureAI, image: Image.Image, mask: Image.Image, size: tuple[int, int]) -> Image.Image:
    """What the fake drew for that edit, at the source's size (as Varia scales it)."""
    from tests.fake_ai import _soft_masked

    return _soft_masked(image.convert("RGB"), mask.convert("RGBA")).resize(size)


def test_the_api_takes_a_mask_as_a_form_file_or_as_base64_json(offline_services: Services) -> None:
    runtime = make_runtime(offline_services, retry_scale=0.001)
    try:
        boundary = uuid.uuid4().hex
        parts = [
            (f'--{boundary}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nas a watercolour\r\n').encode(),
            (f'--{boundary}\r\nContent-Disposition: form-data; name="n"\r\n\r\n1\r\n').encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="p.png"\r\n\r\n'.encode()
            + scene_png(*SIZE)
            + b"\r\n",
            f'--{boundary}\r\nContent-Disposition: form-data; name="mask"; filename="m.png"\r\n\r\n'.encode()
            + left_half_mask()
            + b"\r\n",
        ]
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(len(body))}
        form = func.HttpRequest("POST", "/api/variations", headers=headers, body=body)
        answer = asyncio.run(post_variation(form, runtime, offline_services))
        assert answer.status_code == 202, answer.get_body()
        form_job = json.loads(answer.get_body())["job_id"]

        payload = {
            "image": base64.b64encode(scene_png(*SIZE)).decode(),
            "mask": "data:image/png;base64," + base64.b64encode(left_half_mask()).decode(),
            "prompt": "as a watercolour",
            "n": 1,
        }
        as_json = func.HttpRequest(
            "POST", "/api/variations", headers={"Content-Type": "application/json"}, body=json.dumps(payload).encode()
        )
        answer = asyncio.run(post_variation(as_json, runtime, offline_services))
        assert answer.status_code == 202, answer.get_body()
        json_job = json.loads(answer.get_body())["job_id"]
        assert json_job == form_job  # the same picture, mask and options: the same job

        runtime.get(form_job).done.wait(30)  # type: ignore[union-attr]
        view = json.loads(asyncio.run(get_variation(form_job, runtime, offline_services)).get_body())
        assert view["status"] == "succeeded"
        manifest = json.loads(offline_services.storage.get(OUTPUTS, f"{form_job}/manifest.json"))
        assert_kept_right_changed_left(offline_services, manifest)
    finally:
        runtime.shutdown()


@pytest.mark.parametrize(
    ("mask", "mode", "says"),
    [
        (b"not a png at all", "edit", "The mask is not an image"),
        (None, "edit", "no transparent pixels"),  # an opaque PNG
        ("jpeg", "edit", "The mask is a JPEG image"),
        ("left", "generate", "send mode=edit with it"),
    ],
    ids=["not-an-image", "opaque", "jpeg", "with-generate"],
)
def test_a_mask_that_cannot_work_is_refused_before_anything_is_stored(
    offline_services: Services, mask: Any, mode: str, says: str
) -> None:
    if mask is None:
        out = io.BytesIO()
        Image.new("RGBA", (40, 40), (0, 0, 0, 255)).save(out, format="PNG")
        mask = out.getvalue()
    elif mask == "jpeg":
        out = io.BytesIO()
        Image.new("RGB", (40, 40)).save(out, format="JPEG")
        mask = out.getvalue()
    elif mask == "left":
        mask = left_half_mask()
    payload = {"image": base64.b64encode(scene_png()).decode(), "mask": base64.b64encode(mask).decode()}
    payload |= {"prompt": "as a watercolour", "mode": mode}
    request = func.HttpRequest(
        "POST", "/api/variations", headers={"Content-Type": "application/json"}, body=json.dumps(payload).encode()
    )
    runtime = make_runtime(offline_services, retry_scale=0.001)
    try:
        answer = asyncio.run(post_variation(request, runtime, offline_services))
    finally:
        runtime.shutdown()
    body = json.loads(answer.get_body())
    assert (answer.status_code, body["code"]) == (400, "mask_invalid")
    assert says in body["error"] and body["fields"][0]["field"] == "mask"
    assert offline_services.storage.list(OUTPUTS, "") == []  # no job started
    with pytest.raises(MaskInvalid):
        _masked_request(offline_services, mask=mask, mode=mode)


def test_a_masked_job_is_another_job_than_the_same_picture_without_a_mask(offline_services: Services) -> None:
    with_mask = _masked_request(offline_services)
    without = request_for_upload(
        offline_services.storage, scene_png(*SIZE), "png", prompt="as a watercolour", profile="general", n=2,
        mode="edit", origin="cli",
    )  # fmt: skip
    assert with_mask.job_id != without.job_id and without.mask is None


def _drop(services: Services, name: str, data: bytes, metadata: dict[str, str]) -> dict[str, Any] | None:
    """Drop a blob, deliver its event, run the job to the end: its manifest (None: no job)."""
    ref = services.storage.put(INPUTS, name, data, "image/png", metadata)
    client = RuntimeJobClient(services)
    try:
        job_id = asyncio.run(handle_blob(INPUTS, name, ref.etag, metadata, client, services))
        client.wait()
    finally:
        client.runtime.shutdown()
    if job_id is None:
        return None
    manifest: dict[str, Any] = json.loads(services.storage.get(OUTPUTS, f"{job_id}/manifest.json"))
    return manifest


def test_a_blob_drop_names_its_mask_in_metadata_and_masks_start_no_job(offline_services: Services) -> None:
    assert _drop(offline_services, "masks/left.png", left_half_mask(), {}) is None  # a mask, not a picture
    manifest = _drop(
        offline_services, "garden.png", scene_png(*SIZE), {"prompt": "as pop art", "mask": "masks/left.png"}
    )
    assert manifest is not None and manifest["status"] == "succeeded", manifest
    assert_kept_right_changed_left(offline_services, manifest)

    missing = _drop(offline_services, "pond.png", scene_png(*SIZE), {"prompt": "as pop art", "mask": "masks/gone.png"})
    assert missing is not None
    assert (missing["status"], missing["code"]) == ("failed", "mask_invalid")
    assert "masks/gone.png no longer exists" in missing["message"]
    assert offline_services.storage.info(INPUTS, "pond.png") is not None  # the input stays


def test_the_cli_takes_a_mask(tmp_path: Path) -> None:
    picture, mask = tmp_path / "garden.png", tmp_path / "left.png"
    picture.write_bytes(scene_png(*SIZE))
    mask.write_bytes(left_half_mask())
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "vary", str(picture), "as a watercolour", "--n", "1",
         "--mask", str(mask), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    services = build_services(Settings.from_env({"VARIA_STORAGE": "local", "VARIA_LOCAL_DIR": str(out)}), NoCredential)
    manifest_path = Path(result.stdout.strip().splitlines()[-1].removeprefix("manifest: "))
    assert_kept_right_changed_left(services, json.loads(manifest_path.read_text()))
