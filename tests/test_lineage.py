"""Iteration over real HTTP on the local server (offline): vary, remix and refine from {job_id, index}.

Each job starts from a variation of an earlier one, with no image sent: its manifest records the
parent and the action, vary and refine pay for no caption or compose call, subtle changes the
parent less than strong, the same request is the same job, and the cost is known before it starts.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageStat

from shared.adapters.services import Services, build_services
from shared.config import Settings
from shared.core.jobs import request_for_upload
from shared.core.lineage import TEMPLATES, check_action, check_output, chosen_parent, estimate, request_from_parent
from shared.core.models import Manifest, OutputOptions
from shared.local.cli import make_runtime
from shared.local.server import VariaServer
from tests.fake_ai import FakeAzureAI
from tests.images import scene_png
from tests.support import REPO, NoCredential, azure_env, multipart, offline_env


@pytest.fixture
def server(offline_server: VariaServer) -> VariaServer:
    return offline_server


def _call(server: VariaServer, method: str, path: str, body: bytes | None = None, **headers: str) -> Any:
    request = urllib.request.Request(server.url + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _post_json(server: VariaServer, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    status, _headers, data = _call(
        server, "POST", "/api/variations", json.dumps(payload).encode(), **{"Content-Type": "application/json"}
    )
    return status, json.loads(data)


def _finished(server: VariaServer, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = json.loads(_call(server, "GET", f"/api/variations/{job_id}")[2])
        if view["status"] != "running":
            return dict(view)
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def _image(server: VariaServer, url: str) -> Image.Image:
    return Image.open(io.BytesIO(_call(server, "GET", url)[2])).convert("RGB")


def _manifest(server: VariaServer, view: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(_call(server, "GET", view["manifest_url"])[2]))


def _change(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel (0-255), b resized to a's size."""
    return sum(ImageStat.Stat(ImageChops.difference(a, b.resize(a.size))).mean) / 3


@pytest.fixture
def drafts(server: VariaServer) -> dict[str, Any]:
    """A first job: two cheap drafts of a picture as a watercolour."""
    body, content_type = multipart({"prompt": "as a watercolour", "n": "2", "quality": "low"}, scene_png(480, 320))
    status, _headers, data = _call(server, "POST", "/api/variations", body, **{"Content-Type": content_type})
    assert status == 202, data
    return _finished(server, json.loads(data)["job_id"])


def test_vary_remix_and_refine_start_from_a_result_and_the_manifest_records_the_parent(
    server: VariaServer, drafts: dict[str, Any]
) -> None:
    assert drafts["status"] == "succeeded"
    parent = {"job_id": drafts["job_id"], "index": 1}
    chosen = _image(server, drafts["images"][1]["url"])
    changes = {}
    for action, extra in (
        ("vary", {"strength": "subtle"}),
        ("vary", {"strength": "strong"}),
        ("remix", {"prompt": "as pixel art"}),
        ("refine", {}),
    ):
        status, answer = _post_json(server, {"from": parent, "action": action, "n": 1, **extra})
        assert status == 202, answer
        view = _finished(server, answer["job_id"])
        assert view["status"] == "succeeded", view
        assert view["parent"] == parent and view["action"] == action
        manifest = _manifest(server, view)
        assert manifest["parent"] == parent and manifest["action"] == action
        assert manifest["request"]["source"]["name"] == f"{drafts['job_id']}/variation-1.png"
        changes[(action, extra.get("strength"))] = _change(chosen, _image(server, view["images"][0]["url"]))
    # Offline, a subtle variation changes the parent measurably less than a strong one.
    assert 0 < changes[("vary", "subtle")] < changes[("vary", "strong")], changes


def test_vary_and_refine_reuse_the_parents_prompt_and_refine_renders_at_high_quality(
    server: VariaServer, drafts: dict[str, Any]
) -> None:
    parent = {"job_id": drafts["job_id"], "index": 0}
    parent_manifest = _manifest(server, drafts)
    status, answer = _post_json(server, {"from": parent, "action": "refine", "n": 1})
    assert status == 202
    manifest = _manifest(server, _finished(server, answer["job_id"]))
    assert manifest["request"]["output"]["quality"] == "high"
    assert manifest["request"]["prompt"] == "as a watercolour"
    composed = manifest["composition"]["output_prompt"]
    assert composed.startswith(TEMPLATES[("refine", None)])
    assert parent_manifest["composition"]["output_prompt"][:60] in composed
    assert manifest["composition"]["provider"] == "lineage"
    assert manifest["caption"] == {**parent_manifest["caption"], "cached": True}


def test_the_same_parent_action_and_options_are_the_same_job(server: VariaServer, drafts: dict[str, Any]) -> None:
    ask = {"from": {"job_id": drafts["job_id"], "index": 0}, "action": "vary", "strength": "strong", "n": 1}
    first_status, first = _post_json(server, ask)
    second_status, second = _post_json(server, ask)
    assert first_status == second_status == 202
    assert first["job_id"] == second["job_id"] and second["created"] is False
    _, other = _post_json(server, {**ask, "strength": "subtle"})
    _, forced = _post_json(server, {**ask, "force": True})
    assert len({first["job_id"], other["job_id"], forced["job_id"]}) == 3


def test_a_form_takes_the_same_fields(server: VariaServer, drafts: dict[str, Any]) -> None:
    fields = {"from_job_id": drafts["job_id"], "from_index": "1", "action": "vary", "strength": "subtle", "n": "1"}
    boundary = "varia-lineage"
    body = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in fields.items()
        )
        + f"--{boundary}--\r\n".encode()
    )
    status, _headers, data = _call(
        server, "POST", "/api/variations", body, **{"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert status == 202, data
    view = _finished(server, json.loads(data)["job_id"])
    assert view["parent"] == {"job_id": drafts["job_id"], "index": 1} and view["strength"] == "subtle"


@pytest.mark.parametrize(
    ("ask", "says"),
    [
        ({"action": "vary", "index": 7}, "no variation 7"),
        ({"action": "paint"}, "not an action"),
        ({"action": "vary", "strength": "wild"}, "not a strength"),
        ({"action": "remix"}, "new prompt"),
        ({"action": "refine", "strength": "strong"}, "goes with action=vary"),
    ],
)
def test_a_parent_that_cannot_be_used_is_refused_with_what_to_send(
    server: VariaServer, drafts: dict[str, Any], ask: dict[str, Any], says: str
) -> None:
    index = ask.pop("index", 0)
    status, answer = _post_json(server, {"from": {"job_id": drafts["job_id"], "index": index}, **ask})
    assert status == 400 and answer["code"] == "parent_invalid" and says in answer["error"], answer


def test_an_unknown_parent_job_is_refused(server: VariaServer) -> None:
    status, answer = _post_json(server, {"from": {"job_id": "http-" + "a" * 32, "index": 0}, "action": "vary"})
    assert status == 400 and answer["code"] == "parent_invalid" and "no finished result" in answer["error"]


def test_the_estimate_comes_before_the_job_and_matches_the_paid_calls(
    server: VariaServer, offline_services: Services, drafts: dict[str, Any]
) -> None:
    """Offline nothing is paid: the estimate says so, and a dry run starts nothing."""
    parent = {"job_id": drafts["job_id"], "index": 0}
    status, dry = _post_json(server, {"from": parent, "action": "refine", "n": 2, "dry_run": True})
    assert status == 200 and dry["dry_run"] is True
    assert dry["estimate"]["paid_calls"] == {"caption": 0, "compose": 0, "image": 0, "moderation": 0}
    assert dry["estimate"]["usd"] == 0 and dry["estimate"]["quality"] == "high"
    assert offline_services.storage.list("outputs", "http-") == offline_services.storage.list(
        "outputs", drafts["job_id"]
    )
    status, started = _post_json(server, {"from": parent, "action": "refine", "n": 2})
    assert status == 202 and started["estimate"] == dry["estimate"]


def test_images_are_named_for_saving_and_jpeg_is_delivered_as_asked(
    server: VariaServer, drafts: dict[str, Any]
) -> None:
    image = drafts["images"][0]
    status, headers, _body = _call(server, "GET", image["url"])
    assert status == 200 and headers["Content-Disposition"] == f'inline; filename="{image["filename"]}"'
    assert image["filename"].startswith("varia-as-a-watercolour-") and image["filename"].endswith("-1.png")
    _status, headers, _body = _call(server, "GET", image["download_url"])
    assert headers["Content-Disposition"].startswith("attachment;")

    ask = {"from": {"job_id": drafts["job_id"], "index": 0}, "action": "refine", "n": 1}
    status, answer = _post_json(server, {**ask, "format": "jpeg", "compression": 70, "aspect": "square"})
    assert status == 202, answer
    view = _finished(server, answer["job_id"])
    status, headers, body = _call(server, "GET", view["images"][0]["url"])
    assert headers["Content-Type"] == "image/jpeg" and body[:3] == b"\xff\xd8\xff"
    assert view["images"][0]["filename"].endswith(".jpg")
    assert view["output"]["format"] == "jpeg" and view["output"]["compression"] == 70


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"format": "gif"}, "format='gif' is not an option"),
        ({"compression": 80}, "compression applies to JPEG"),
        ({"format": "jpeg", "background": "transparent"}, "cannot be transparent"),
        ({"size": "1000x1000"}, "not a size the image model takes"),
        ({"aspect": "tall"}, "aspect='tall' is not an option"),
        ({"quality": "best"}, "quality='best' is not an option; use one of: low, medium, high, auto[.]"),
        ({"format": "jpeg", "compression": "101"}, "compression='101' is not a whole number from 0 to 100"),
        ({"format": "jpeg", "compression": True}, "compression='True' is not a whole number"),  # not 1
        ({"format": "jpeg", "compression": 70.0}, "compression='70.0' is not a whole number"),
        ({"size": "big"}, "size='big' is not a size the image model takes"),
    ],
)
def test_output_options_that_cannot_be_used_say_what_to_send(
    offline_services: Services, values: dict[str, Any], says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        check_output(offline_services.settings, values)


def test_output_options_default_to_the_old_job_ids(offline_services: Services) -> None:
    assert check_output(offline_services.settings, {}) == OutputOptions()
    assert OutputOptions().job_id_part() == ""
    assert check_output(offline_services.settings, {"format": "JPG", "compression": "70"}).compression == 70


def test_offline_the_headline_says_what_the_painter_could_not_do(server: VariaServer) -> None:
    body, content_type = multipart({"prompt": "as a watercolour, add a red kite in the sky", "n": "1"}, scene_png())
    status, _headers, data = _call(server, "POST", "/api/variations", body, **{"Content-Type": content_type})
    assert status == 202, data
    view = _finished(server, json.loads(data)["job_id"])
    assert view["status"] == "succeeded" and view["partial"] is False
    assert view["code"] == "offline_limited" and 'cannot add "red kite' in view["message"], view
    body, content_type = multipart({"prompt": "as a watercolour", "n": "1"}, scene_png())
    status, _headers, data = _call(server, "POST", "/api/variations", body, **{"Content-Type": content_type})
    assert _finished(server, json.loads(data)["job_id"])["code"] is None


def test_each_image_leaves_a_preview_the_api_serves(server: VariaServer, offline_services: Services) -> None:
    """The offline painter hands a coarse preview first; it is stored where the status API links it."""
    body, content_type = multipart({"prompt": "as pixel art", "n": "2"}, scene_png())
    status, _headers, data = _call(server, "POST", "/api/variations", body, **{"Content-Type": content_type})
    job_id = json.loads(data)["job_id"]
    _finished(server, job_id)
    assert offline_services.storage.list("work", f"{job_id}/preview-") == [
        f"{job_id}/preview-0.png",
        f"{job_id}/preview-1.png",
    ]
    status, headers, preview = _call(server, "GET", f"/api/variations/{job_id}/images/preview-1")
    assert status == 200 and headers["Cache-Control"] == "no-store" and preview.startswith(b"\x89PNG")
    final = _image(server, f"/api/variations/{job_id}/images/1")
    assert (
        Image.open(io.BytesIO(preview)).size == final.size
        and _change(final, Image.open(io.BytesIO(preview)).convert("RGB")) > 0
    )


def test_the_cli_takes_a_result_further(tmp_path: Path) -> None:
    """`vary --from JOB:K --action vary --strength strong`, remix with a prompt, a dry run, a wrong index."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "VARIA_", "AzureWebJobs"))}
    env["PYTHONPATH"] = str(REPO)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "shared.cli", "vary", "--out", str(tmp_path / "out"), *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    def manifest_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
        assert result.returncode == 0, result.stderr
        return dict(json.loads(Path(result.stdout.strip().splitlines()[-1].removeprefix("manifest: ")).read_text()))

    first = manifest_of(cli("--n", "2"))
    strong = manifest_of(cli("--from", f"{first['job_id']}:1", "--action", "vary", "--strength", "strong", "--n", "1"))
    assert strong["parent"] == {"job_id": first["job_id"], "index": 1} and strong["action"] == "vary"
    assert strong["request"]["strength"] == "strong"
    remix = manifest_of(cli("--from", f"{first['job_id']}:0", "as pixel art", "--action", "remix", "--n", "1"))
    assert remix["action"] == "remix" and remix["request"]["prompt"] == "as pixel art"
    dry = cli("--from", f"{first['job_id']}:0", "--action", "refine", "--dry-run")
    assert dry.returncode == 0 and "estimate: at most $0.0000" in dry.stdout and "manifest:" not in dry.stdout
    wrong = cli("--from", f"{first['job_id']}:7")
    assert wrong.returncode == 2 and "has no variation 7" in wrong.stderr


def test_against_the_fake_vary_sends_the_parent_with_its_fidelity_refine_its_quality_and_previews_come_first(
    fake: FakeAzureAI, tmp_path: Path
) -> None:
    """Through the real SDKs: the parent image goes to the edit, input_fidelity follows the strength, refine
    asks for high quality, the one-image requests stream a preview before the image, and the cost estimate
    given before each job is its paid calls × the prices."""
    env = {**azure_env(fake, VARIA_PREVIEW_IMAGES="2"), **offline_env(tmp_path)}
    services = build_services(Settings.from_env(env), NoCredential)
    runtime = make_runtime(services, retry_scale=0.001)
    paid = {"caption": True, "compose": True, "image": True, "moderation": False}
    try:
        first = request_for_upload(
            services.storage, scene_png(480, 320), "png", prompt="as a watercolour", profile="general", n=2,
            mode="edit", origin="cli",
        )  # fmt: skip
        drafts = Manifest.model_validate(runtime.run(first.job_id, first.model_dump(mode="json")).output)
        assert drafts.status == "succeeded"
        assert drafts.estimated_cost_usd == estimate(first, services.settings, paid)["usd"]
        parent, manifest = chosen_parent(services.storage, first.job_id, 1)
        parent_png = services.storage.get("outputs", f"{first.job_id}/variation-1.png")
        for action, strength, fidelity, quality in (
            ("vary", "subtle", "high", "low"),
            ("vary", "strong", "low", "low"),
            ("refine", None, "high", "high"),
        ):
            fake.calls.clear()
            checked_action, checked_strength = check_action(action, strength)
            request = request_from_parent(
                parent, manifest, action=checked_action, strength=checked_strength, prompt=None, profile="general",
                n=1, output=OutputOptions(), origin="cli",
            )  # fmt: skip
            expected = estimate(request, services.settings, paid)
            done = Manifest.model_validate(runtime.run(request.job_id, request.model_dump(mode="json")).output)
            assert done.status == "succeeded", done.message
            assert [c.route for c in fake.calls] == ["images.edit"]  # no caption, no compose: the parent's
            (edit,) = fake.calls
            sent = Image.open(io.BytesIO(edit.files["image"][0])).convert("RGB")
            assert _change(Image.open(io.BytesIO(parent_png)).convert("RGB"), sent) < 3  # the parent, re-encoded
            assert (edit.input_fidelity, edit.quality) == (fidelity, quality)
            assert edit.stream and edit.events[0].endswith("partial_image") and edit.events[-1].endswith("completed")
            assert done.paid_calls.image.billed == expected["paid_calls"]["image"] == 1
            assert (
                done.estimated_cost_usd
                == expected["usd"]
                == services.settings.prices_usd["image.high" if quality == "high" else "image"]
            )
    finally:
        runtime.shutdown()


def test_a_dry_run_needs_no_picture_and_counts_what_the_options_ask(fake: FakeAzureAI, tmp_path: Path) -> None:
    """The page's cost line before a picture is chosen: JSON or a form without an image, nothing stored."""
    env = {**azure_env(fake), **offline_env(tmp_path)}
    services = build_services(Settings.from_env(env), NoCredential)
    server = VariaServer(services, make_runtime(services, retry_scale=0.001), port=0)
    server.start()
    try:
        status, dry = _post_json(server, {"prompt": "as a watercolour", "n": 3, "quality": "high", "dry_run": True})
        assert status == 200 and dry["dry_run"] is True
        prices = services.settings.prices_usd
        assert dry["estimate"]["paid_calls"] == {"caption": 1, "compose": 1, "image": 3, "moderation": 0}
        assert dry["estimate"]["usd"] == round(prices["caption"] + prices["compose"] + 3 * prices["image.high"], 6)
        _, with_references = _post_json(server, {"n": 1, "references": 2, "dry_run": "true"})
        assert with_references["estimate"]["paid_calls"]["caption"] == 3  # the picture and each reference
        boundary = "varia-estimate"
        body = (
            b"".join(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                for k, v in {"n": "2", "dry_run": "1"}.items()
            )
            + f"--{boundary}--\r\n".encode()
        )
        status, _headers, data = _call(
            server, "POST", "/api/variations", body, **{"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        assert status == 200 and json.loads(data)["estimate"]["paid_calls"]["image"] == 2
        assert services.storage.list("uploads") == []
        status, refused = _post_json(server, {"prompt": "as a watercolour"})  # not a dry run: the picture is needed
        assert status == 400 and refused["fields"][0]["field"] == "image"
    finally:
        server.close()


def test_the_page_offers_an_exact_size_only_where_the_model_takes_one(fake: FakeAzureAI, tmp_path: Path) -> None:
    from shared.functions.web_ui import page_config

    offline = Settings.from_env(offline_env(tmp_path))
    flexible = Settings.from_env({**azure_env(fake, AZURE_OPENAI_IMAGE_MODEL="gpt-image-2"), **offline_env(tmp_path)})
    fixed = Settings.from_env({**azure_env(fake, AZURE_OPENAI_IMAGE_MODEL="gpt-image-1.5"), **offline_env(tmp_path)})
    assert [page_config(s)["custom_sizes"] for s in (offline, flexible, fixed)] == [True, True, False]
    with pytest.raises(ValueError, match="takes three sizes only"):
        check_output(fixed, {"size": "1536x864"})
