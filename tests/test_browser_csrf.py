"""Cross-site requests in headless Chromium: a page served from another origin tries every way a
browser lets it send a job to the local server without asking (a text/plain form carrying JSON, a
multipart form with a file, no-cors fetches, a JSON fetch), and no job starts: nothing is stored.

Runs tests/browser_csrf/cross_site.mjs (node --test, playwright-core). Without /usr/bin/chromium
the test is skipped, except in CI (CI=true), where a missing browser is a failure.
"""

from __future__ import annotations

import base64
import http.server
import logging
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.adapters.services import Services, build_services
from shared.adapters.storage import OUTPUTS, UPLOADS, WORK
from shared.config import Settings
from shared.local.cli import make_runtime
from shared.local.server import VariaServer
from tests.images import scene_png
from tests.support import CHROMIUM, REPO, offline_env, require_browser

SCRIPT = REPO / "tests" / "browser_csrf" / "cross_site.mjs"

ATTACK_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Free stickers</title></head><body>
<iframe name="plain-sink"></iframe><iframe name="multipart-sink"></iframe>
<form id="plain" method="POST" enctype="text/plain" action="__VARIA__/api/variations" target="plain-sink">
  <input name='{"prompt": "as pop art", "n": 4, "image": "__IMAGE__", "pad": "' value='"}'>
</form>
<form id="multipart" method="POST" enctype="multipart/form-data" action="__VARIA__/api/variations"
      target="multipart-sink">
  <input name="prompt" value="as neon"><input name="n" value="4"><input type="file" name="image" id="file">
</form>
<script>
const VARIA = '__VARIA__';
const IMAGE = '__IMAGE__';
const report = {};
const loaded = (name) => new Promise((resolve) => {
  document.querySelector(`iframe[name="${name}"]`).addEventListener('load', () => resolve('loaded'), { once: true });
});
async function attack() {
  const bytes = Uint8Array.from(atob(IMAGE), (c) => c.charCodeAt(0));
  const file = new File([bytes], 'photo.png', { type: 'image/png' });
  const files = new DataTransfer();
  files.items.add(file);
  document.getElementById('file').files = files.files;
  const plain = loaded('plain-sink');
  const multipart = loaded('multipart-sink');
  document.getElementById('plain').submit();
  document.getElementById('multipart').submit();

  const form = new FormData();
  form.append('image', file);
  form.append('prompt', 'as pixel art');
  form.append('n', '4');
  const opaque = (r) => r.type;
  report.noCorsForm = await fetch(`${VARIA}/api/variations`, { method: 'POST', mode: 'no-cors', body: form })
    .then(opaque, () => 'failed');
  const json = JSON.stringify({ image: IMAGE, prompt: 'as a sketch', n: 4 });
  report.noCorsText = await fetch(`${VARIA}/api/variations`, {
    method: 'POST', mode: 'no-cors', headers: { 'Content-Type': 'text/plain' }, body: json,
  }).then(opaque, () => 'failed');
  report.corsJson = await fetch(`${VARIA}/api/variations`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: json,
  }).then((r) => `answered ${r.status}`, () => 'blocked');  // the preflight gets no CORS headers
  report.plainForm = await plain;
  report.multipartForm = await multipart;
  document.documentElement.dataset.report = JSON.stringify(report);
  document.documentElement.dataset.done = 'true';
}
attack();
</script>
</body></html>
"""


@pytest.fixture
def services(tmp_path: Path) -> Services:
    return build_services(Settings.from_env(offline_env(tmp_path)))


@pytest.fixture
def varia(services: Services) -> Iterator[VariaServer]:
    server = VariaServer(services, make_runtime(services, retry_scale=0.001), port=0, poll_interval=None)
    server.start()
    yield server
    server.close()


@pytest.fixture
def attacker(varia: VariaServer) -> Iterator[str]:
    """Another origin: `localhost` on another port (another site than 127.0.0.1), serving the attacking page."""
    image = base64.b64encode(scene_png(96, 64)).decode()
    page = ATTACK_PAGE.replace("__VARIA__", varia.url).replace("__IMAGE__", image).encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_address[1]}/attack.html"
    server.shutdown()
    server.server_close()


def _stored(services: Services) -> list[str]:
    return [f"{c}/{n}" for c in (UPLOADS, WORK, OUTPUTS) for n in services.storage.list(c)]


def test_a_page_on_another_origin_cannot_start_a_job(
    services: Services, attacker: str, caplog: pytest.LogCaptureFixture
) -> None:
    require_browser()
    caplog.set_level(logging.WARNING, logger="varia.server")

    result = subprocess.run(
        ["node", "--test", "--test-reporter=spec", str(SCRIPT)],
        cwd=REPO,
        env={**os.environ, "EVIL_URL": attacker, "VARIA_CHROMIUM": str(CHROMIUM)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"the browser test failed:\n{result.stdout}\n{result.stderr}"

    assert _stored(services) == [], "a job was started from another origin"
    # The four requests a browser sends without a preflight reached the server and were refused there.
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Refused POST /api/variations")]
    assert len(refusals) == 4, refusals
    assert all(attacker.rsplit("/", 1)[0] in message for message in refusals), refusals
