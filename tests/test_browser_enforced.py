"""The page's profile in headless Chromium: tests/browser_enforced/enforced.test.mjs (node --test, playwright-core).

Two local servers with offline providers: one with VARIA_ENFORCED_PROFILE=kids (the page hides the
profile choice, says the classroom profile is on, and every job it sends runs under kids), one with
VARIA_DEFAULT_PROFILE=kids and nothing enforced (a draft left in localStorage never overrides the
server's default). Skipped without /usr/bin/chromium, except in CI (CI=true), like tests/test_browser.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from shared.adapters.services import build_services
from shared.config import Settings
from shared.local.cli import make_runtime
from shared.local.server import VariaServer
from tests.images import scene_png
from tests.support import CHROMIUM, REPO, offline_env, require_browser

SCRIPT = REPO / "tests" / "browser_enforced" / "enforced.test.mjs"


def _server(tmp_path: Path, **settings: str) -> VariaServer:
    services = build_services(Settings.from_env(offline_env(tmp_path, **settings)))
    server = VariaServer(services, make_runtime(services, retry_scale=0.001), port=0, poll_interval=None)
    server.start()
    return server


def test_the_page_holds_the_enforced_profile_and_the_server_default_in_headless_chromium(tmp_path: Path) -> None:
    require_browser()

    image = tmp_path / "scene.png"
    image.write_bytes(scene_png(640, 400))
    enforced = _server(tmp_path / "enforced", VARIA_ENFORCED_PROFILE="kids")
    kids_default = _server(tmp_path / "default", VARIA_DEFAULT_PROFILE="kids")
    env = {
        **os.environ,
        "VARIA_ENFORCED_URL": enforced.url,
        "VARIA_KIDS_DEFAULT_URL": kids_default.url,
        "VARIA_IMAGE": str(image),
        "VARIA_CHROMIUM": str(CHROMIUM),
    }
    try:
        result = subprocess.run(
            ["node", "--test", "--test-reporter=spec", str(SCRIPT)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=150,
        )
    finally:
        enforced.close()
        kids_default.close()

    assert result.returncode == 0, f"the browser tests failed:\n{result.stdout}\n{result.stderr}"
    assert "ℹ pass 2" in result.stdout and "ℹ fail 0" in result.stdout, result.stdout

    # What the page sent ran under kids, and its manifest says the profile was enforced.
    manifests = list((tmp_path / "enforced" / "store" / "outputs").glob("*/manifest.json"))
    assert len(manifests) == 1
    request = json.loads(manifests[0].read_text())["request"]
    assert (request["profile"], request["profile_enforced"]) == ("kids", True)
