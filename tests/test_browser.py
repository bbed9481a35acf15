"""The web page in headless Chromium: runs tests/browser/*.test.mjs (node --test, playwright-core) on the local server.

The server runs in this process on a free port with offline providers, and each activity is
slowed down a little so that the page has stages to show (offline jobs otherwise finish in well
under a second); one job's images take 15 s, for the polling test and for the test that starts a
second job while a first is running (tests/browser/states.test.mjs). Without /usr/bin/chromium the
test is skipped, except in CI (CI=true), where `.ci/run` installs it and a missing browser is a
failure.
"""

from __future__ import annotations

import functools
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.services import build_services
from shared.config import Settings
from shared.core.orchestrator import orchestrate_job
from shared.core.steps import STEPS
from shared.local.runtime import LocalRuntime
from shared.local.server import VariaServer
from tests.images import scene_png
from tests.support import CHROMIUM, REPO, offline_env, require_browser

BROWSER_TESTS = REPO / "tests" / "browser"
ARTIFACTS = REPO / "test-artifacts"
# Each stage outlasts the page's first polls after a stage change (500 ms, then 650 ms), so it shows every stage.
STEP_DELAY_S = 0.8
VARIATIONS = 2
# A job whose prompt holds SLOW_MARK draws its images for SLOW_GENERATE_S: polling.test.mjs counts the page's
# status requests over that long stage.
SLOW_MARK = "painted slowly"
SLOW_GENERATE_S = 15.0


def _slowed(activity: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def run(payload: Any) -> Any:
        time.sleep(STEP_DELAY_S)
        # A generate step's input (persist's, the job's record, has its stage too).
        drawing = isinstance(payload, dict) and "composition" in payload and "stage" not in payload
        if drawing and SLOW_MARK in str(payload.get("request", {}).get("prompt", "")):
            time.sleep(SLOW_GENERATE_S - STEP_DELAY_S)
        return activity(payload)

    return run


# node runs every file of tests/browser in turn: about four minutes on two cores, more while other work runs.
# The test's own limit is node's (600 s below), not the suite's default 300 s.
@pytest.mark.timeout(660)
def test_the_page_does_the_whole_job_in_headless_chromium(tmp_path: Path) -> None:
    require_browser()

    # Every page here is the same caller (127.0.0.1), and node runs the test files side by side on a machine with
    # more cores: their jobs together may pass the per-caller limit, which tests/test_caller_limit.py covers.
    services = build_services(Settings.from_env(offline_env(tmp_path, VARIA_MAX_JOBS_PER_CALLER="0")))
    activities = {name: _slowed(functools.partial(step, services)) for name, step in STEPS.items()}
    runtime = LocalRuntime(orchestrate_job, activities, retry_scale=0.001)
    server = VariaServer(services, runtime, port=0, poll_interval=None)
    server.start()
    image, broken = tmp_path / "scene.png", tmp_path / "broken.png"
    image.write_bytes(scene_png(720, 480))
    broken.write_bytes(image.read_bytes()[:1500])
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "gallery.png").unlink(missing_ok=True)
    env = {
        **os.environ,
        "VARIA_URL": server.url,
        "VARIA_IMAGE": str(image),
        "VARIA_BROKEN_IMAGE": str(broken),
        "VARIA_ARTIFACTS": str(ARTIFACTS),
        "VARIA_N": str(VARIATIONS),
        "VARIA_CHROMIUM": str(CHROMIUM),
        "VARIA_SLOW_PROMPT": f"as a soft watercolour, {SLOW_MARK}",
        "VARIA_SLOW_SECONDS": str(SLOW_GENERATE_S),
    }
    scripts = sorted(str(p) for p in BROWSER_TESTS.glob("*.test.mjs"))
    try:
        result = subprocess.run(
            ["node", "--test", "--test-reporter=spec", *scripts],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,  # node runs the files one after another on a 2-core machine
        )
    finally:
        server.close()

    assert result.returncode == 0, f"the browser tests failed:\n{result.stdout}\n{result.stderr}"
    assert "# fail 0" in result.stdout or "ℹ fail 0" in result.stdout, result.stdout
    assert (ARTIFACTS / "gallery.png").stat().st_size > 5_000, "the gallery screenshot was not saved"
