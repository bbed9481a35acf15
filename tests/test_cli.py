"""The README's demo: the CLI on the sample image, offline, in a fresh process."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageStat

from shared.local import cli
from shared.local.cli import SAMPLE_IMAGE, PollSchedule
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
    nothing = {"attempted": 0, "delivered": 0, "rejected": 0}
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


# ---- polling: fast after a change, then backing off ------------------------------------------------


def test_poll_schedule_grows_to_ten_seconds_and_starts_again_at_each_new_stage() -> None:
    schedule = PollSchedule()
    delays = [schedule.next_delay("generating") for _ in range(9)]
    assert delays == pytest.approx([1.0, 1.5, 2.25, 3.375, 5.0625, 7.59375, 10.0, 10.0, 10.0])
    assert schedule.next_delay("saving") == 1.0  # a new stage: look again soon
    assert schedule.next_delay("saving") == 1.5
    for _ in range(10_000):  # hours in one stage: still ten seconds, no overflow
        schedule.next_delay("saving")
    assert schedule.next_delay("saving") == 10.0


def test_poll_schedule_honours_a_retry_after_up_to_a_minute() -> None:
    schedule = PollSchedule()
    assert schedule.next_delay("generating", retry_after=4.0) == 4.0
    assert schedule.next_delay("generating", retry_after=0.5) == 1.5  # shorter than the schedule: the schedule
    assert schedule.next_delay("generating", retry_after=3600.0) == 60.0


class _FakeClock:
    """Time that passes only when the follower waits; the job's stages arrive at set times."""

    def __init__(self, progress: Any, stages: list[tuple[float, str]], end: float) -> None:
        self.now, self.progress, self.stages, self.end = 0.0, progress, list(stages), end

    def wait(self, seconds: float) -> bool:
        self.now += seconds
        while self.stages and self.stages[0][0] <= self.now:
            _at, stage = self.stages.pop(0)
            self.progress.on_status("Running", {"stage": stage, "done": 0, "total": 4})
        return self.now >= self.end


def test_cli_backs_off_while_a_slow_job_generates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two minutes of generating cost 16 listings of the stored images, not one a second or more."""
    progress = cli._Progress(storage=None, job_id="job", stream=io.StringIO())  # type: ignore[arg-type]
    clock = _FakeClock(
        progress, [(0.0, "preparing"), (1.0, "captioning"), (2.0, "generating"), (122.0, "saving")], 123.0
    )
    looks: list[float] = []

    def counted(storage: Any, job_id: str) -> int:
        looks.append(clock.now)
        return 0

    monkeypatch.setattr(cli, "delivered_so_far", counted)
    progress.follow(None, wait=clock.wait)  # type: ignore[arg-type]

    assert 10 <= len(looks) <= 20, looks
    gaps = [round(b - a, 3) for a, b in zip(looks, looks[1:], strict=False)]
    assert gaps[:4] == [1.0, 1.5, 2.25, 3.375], gaps  # from 1 s after the stage changed, growing
    assert max(gaps) == 10.0 and all(g <= 10.0 for g in gaps), gaps
