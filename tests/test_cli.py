"""The README's demo: the CLI on the sample image, offline, in a fresh process."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageChops, ImageStat

from shared.local.cli import SAMPLE_IMAGE
from tests.support import REPO


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "VARIA_", "AzureWebJobs"))}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_demo_runs_offline_and_writes_n_distinct_variations(tmp_path: Path) -> None:
    result = _run("vary", "--out", str(tmp_path / "out"), "--n", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    manifest_path = Path(result.stdout.strip().splitlines()[-1].removeprefix("manifest: "))
    manifest = json.loads(manifest_path.read_text())

    assert manifest["status"] == "succeeded"
    assert set(manifest["providers"].values()) == {"offline"}
    nothing = {"attempted": 0, "delivered": 0}
    assert manifest["paid_calls"] == {"caption": nothing, "compose": nothing, "image": nothing, "moderation": nothing}
    source = Image.open(SAMPLE_IMAGE).convert("RGB")
    images = [manifest_path.parent / f"variation-{k}.png" for k in range(3)]
    assert all(p.is_file() for p in images)
    for path in images:
        out = Image.open(path).convert("RGB")
        assert out.size == source.size
        assert max(ImageStat.Stat(ImageChops.difference(out, source)).mean) > 5, path
    # progress went to stderr, stage by stage, counting stored images up to n before saving
    assert re.search(r"captioning.*generating 0/3.*generating 3/3.*saving", result.stderr, re.S), result.stderr


def test_second_identical_run_reuses_the_job(tmp_path: Path) -> None:
    first = _run("vary", "--out", str(tmp_path / "out"), "--n", "1", cwd=tmp_path)
    second = _run("vary", "--out", str(tmp_path / "out"), "--n", "1", cwd=tmp_path)
    assert first.returncode == second.returncode == 0
    assert "ran before" in second.stdout
    assert first.stdout.splitlines()[-1] == second.stdout.splitlines()[-1]


def test_cli_reports_bad_options_clearly(tmp_path: Path) -> None:
    result = _run("vary", "--out", str(tmp_path), "--n", "40", cwd=tmp_path)
    assert result.returncode == 2 and "out of range" in result.stderr


def test_cli_refuses_for_kids_and_exits_3(tmp_path: Path) -> None:
    result = _run(
        "vary", str(SAMPLE_IMAGE), "with a bloody sword", "--profile", "kids", "--out", str(tmp_path), cwd=tmp_path
    )
    assert result.returncode == 3
    assert "status: refused" in result.stdout


def test_non_image_ends_in_a_failed_manifest(tmp_path: Path) -> None:
    fake_photo = tmp_path / "photo.jpg"
    fake_photo.write_text("not really a photo")
    result = _run("vary", str(fake_photo), "as sepia", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 1
    assert "status: failed" in result.stdout and "Not an image" in result.stdout
    assert fake_photo.read_text() == "not really a photo"
    assert Image.open(io.BytesIO(SAMPLE_IMAGE.read_bytes())).size == (768, 512)
