"""Reference pictures: a style to borrow or a subject to put in the scene, through the API, the CLI and blob drops.

They are prepared and captioned like the source (each caption a paid call, word-checked with the
source's), reach GPT-image edits as more input images (with high input fidelity for a subject),
and offline recolour the result toward a style reference's palette.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from PIL import Image, ImageStat

from shared.adapters.services import Services, build_services
from shared.adapters.storage import INPUTS, OUTPUTS
from shared.config import Settings
from shared.core.jobs import ReferenceInvalid, request_for_upload
from shared.functions.blob_trigger import handle_blob
from shared.functions.http_api import post_variation
from shared.local.cli import make_runtime
from tests.fake_ai import FakeAzureAI
from tests.images import scene_png
from tests.support import NoCredential, RuntimeJobClient, azure_env, offline_env, run_job

REPO = Path(__file__).resolve().parent.parent


def solid(color: tuple[int, int, int], size: tuple[int, int] = (160, 120)) -> bytes:
    """A picture with some texture in one colour family (a palette to borrow)."""
    img = Image.new("RGB", size, color)
    for x in range(0, size[0], 8):
        img.paste(tuple(max(0, c - 40) for c in color), (x, 0, x + 4, size[1]))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


RED = solid((220, 40, 30))


def _mean_rgb(services: Services, manifest: dict[str, Any]) -> list[float]:
    means = []
    for v in manifest["variations"]:
        image = Image.open(io.BytesIO(services.storage.get(OUTPUTS, v["image"]["name"]))).convert("RGB")
        means.append(ImageStat.Stat(image).mean)
    return [sum(m[c] for m in means) / len(means) for c in range(3)]


def _request(services: Services, references: list[tuple[bytes, str]], **options: Any) -> Any:
    return request_for_upload(
        services.storage, scene_png(320, 240), "png", prompt="as a watercolour", profile="general",
        n=options.pop("n", 2), mode=options.pop("mode", "edit"), origin="cli", references=references, **options,
    )  # fmt: skip


def test_offline_a_style_reference_lends_the_result_its_palette(offline_services: Services) -> None:
    plain = run_job(offline_services, _request(offline_services, [])).output
    styled_request = _request(offline_services, [(RED, "style")])
    styled = run_job(offline_services, styled_request).output
    assert plain["status"] == styled["status"] == "succeeded", styled["message"]
    assert styled_request.job_id != plain["job_id"]  # a reference makes it another job

    red, green, blue = _mean_rgb(offline_services, styled)
    plain_red, plain_green, _ = _mean_rgb(offline_services, plain)
    assert red - green > 100 and red - green > (plain_red - plain_green) + 60  # toward the reference's reds
    # The manifest says what went with the job, as sent and as prepared, and what the references show.
    assert [r["role"] for r in styled["request"]["references"]] == ["style"]
    assert styled["source"]["references"][0]["image"]["name"] == f"{styled['job_id']}/reference-1"
    assert len(styled["caption"]["references"]) == 1


def test_references_reach_the_image_service_as_more_input_images_and_are_paid_for(
    fake: FakeAzureAI, tmp_path: Path
) -> None:
    services = build_services(Settings.from_env({**azure_env(fake), **offline_env(tmp_path)}), NoCredential)
    request = _request(services, [(RED, "style"), (solid((30, 60, 200)), "subject")], n=1)
    manifest = run_job(services, request).output
    assert manifest["status"] == "succeeded", manifest["message"]

    (edit,) = [c for c in fake.calls if c.route == "images.edit"]
    assert len(edit.files["image[]"]) == 3  # the picture, then the two references in order
    assert edit.form["input_fidelity"] == "high"  # a subject: keep its features
    # Each reference was captioned (a paid call each), and the composer read what each one is for.
    assert fake.count("vision.analyze") == 3
    assert manifest["paid_calls"]["caption"] == {"attempted": 3, "delivered": 3, "rejected": 0}
    (chat,) = [c for c in fake.calls if c.route == "chat"]
    sent = json.dumps(chat.json)
    assert "Reference image 1 (borrow its style)" in sent and "Reference image 2 (put what it shows" in sent
    prices = services.settings.prices_usd
    expected = 3 * prices["caption"] + prices["compose"] + prices["image"]
    assert manifest["estimated_cost_usd"] == pytest.approx(expected)


def test_a_style_reference_alone_sends_no_input_fidelity(fake: FakeAzureAI, tmp_path: Path) -> None:
    services = build_services(Settings.from_env({**azure_env(fake), **offline_env(tmp_path)}), NoCredential)
    manifest = run_job(services, _request(services, [(RED, "style")], n=1)).output
    assert manifest["status"] == "succeeded", manifest["message"]
    (edit,) = [c for c in fake.calls if c.route == "images.edit"]
    assert "input_fidelity" not in edit.form and len(edit.files["image[]"]) == 2


def _post(services: Services, request: func.HttpRequest) -> tuple[int, dict[str, Any]]:
    runtime = make_runtime(services, retry_scale=0.001)
    try:
        answer = asyncio.run(post_variation(request, runtime, services))
        body = json.loads(answer.get_body())
        if answer.status_code == 202:
            runtime.get(body["job_id"]).done.wait(30)  # type: ignore[union-attr]
    finally:
        runtime.shutdown()
    return answer.status_code, body


def _json_request(payload: dict[str, Any]) -> func.HttpRequest:
    body = json.dumps(
        {"image": base64.b64encode(scene_png(320, 240)).decode(), "prompt": "as a watercolour", **payload}
    )
    return func.HttpRequest("POST", "/api/variations", headers={"Content-Type": "application/json"}, body=body.encode())


def test_the_api_takes_references_as_form_files_or_json(offline_services: Services) -> None:
    boundary = "varia-boundary"

    def part(name: str, value: bytes, filename: str | None = None) -> bytes:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        return f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"

    body = (
        b"".join(
            [
                part("prompt", b"as a watercolour"),
                part("n", b"1"),
                part("image", scene_png(320, 240), "p.png"),
                part("reference", RED, "red.png"),
                part("reference_role", b"style"),
            ]
        )
        + f"--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(len(body))}
    status, form_answer = _post(
        offline_services, func.HttpRequest("POST", "/api/variations", headers=headers, body=body)
    )
    assert status == 202, form_answer
    references = [{"image": base64.b64encode(RED).decode(), "role": "style"}]
    status, json_answer = _post(offline_services, _json_request({"references": references, "n": 1}))
    assert status == 202 and json_answer["job_id"] == form_answer["job_id"]  # the same job either way
    manifest = json.loads(offline_services.storage.get(OUTPUTS, f"{form_answer['job_id']}/manifest.json"))
    assert manifest["status"] == "succeeded" and [r["role"] for r in manifest["request"]["references"]] == ["style"]


@pytest.mark.parametrize(
    ("references", "mode", "says"),
    [
        ([{"image": "aGVsbG8=", "role": "style"}], "edit", "Reference 1: Not an image"),
        ([{"image": base64.b64encode(RED).decode(), "role": "palette"}], "edit", "use 'style'"),
        ([{"image": base64.b64encode(RED).decode()}] * 5, "edit", "send at most 4"),
        ([{"image": base64.b64encode(RED).decode()}], "generate", "send mode=edit"),
    ],
    ids=["not-an-image", "unknown-role", "five", "with-generate"],
)
def test_a_reference_that_cannot_work_is_refused_before_anything_starts(
    offline_services: Services, references: list[dict[str, str]], mode: str, says: str
) -> None:
    status, body = _post(offline_services, _json_request({"references": references, "mode": mode}))
    assert (status, body["code"]) == (400, "reference_invalid")
    assert says in body["error"] and body["fields"][0]["field"] == "references"
    assert offline_services.storage.list(OUTPUTS, "") == []
    decoded = [(base64.b64decode(r["image"]), r.get("role", "style")) for r in references]
    with pytest.raises(ReferenceInvalid):
        _request(offline_services, decoded, mode=mode)


def test_a_blob_drop_names_its_references_and_reference_blobs_start_no_job(offline_services: Services) -> None:
    client = RuntimeJobClient(offline_services)

    def drop(name: str, data: bytes, metadata: dict[str, str]) -> str | None:
        ref = offline_services.storage.put(INPUTS, name, data, "image/png", metadata)
        return asyncio.run(handle_blob(INPUTS, name, ref.etag, metadata, client, offline_services))

    try:
        assert drop("references/red.png", RED, {}) is None
        metadata = {"prompt": "as pop art", "references": "references/red.png:style"}
        job_id = drop("garden.png", scene_png(320, 240), metadata)
        assert job_id is not None
        client.wait()
    finally:
        client.runtime.shutdown()
    manifest = json.loads(offline_services.storage.get(OUTPUTS, f"{job_id}/manifest.json"))
    assert manifest["status"] == "succeeded", manifest["message"]
    assert manifest["request"]["references"][0]["image"]["name"] == "references/red.png"


def test_the_cli_takes_references(tmp_path: Path) -> None:
    picture, reference = tmp_path / "garden.png", tmp_path / "red.png"
    picture.write_bytes(scene_png(320, 240))
    reference.write_bytes(RED)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "vary", str(picture), "as a watercolour", "--n", "1",
         "--reference", f"{reference}:style", "--out", str(out), "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout[result.stdout.index("\n{\n") :])  # --json: the manifest last
    assert [r["role"] for r in manifest["request"]["references"]] == ["style"]
