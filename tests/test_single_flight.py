"""Simultaneous jobs on one image pay for one caption: the first claims it, the others wait for the cache.

Twenty jobs reach the caption step at once with the same (uncached) image; the fake's Vision call
is held until all twenty are waiting, on a local folder and on Blob Storage (Azurite), where the
claim is a create-if-absent (If-None-Match: *).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shared.adapters.services import Services, build_services
from shared.config import Settings
from shared.core import steps
from shared.core.models import Caption, PreparedImage
from tests.conftest import Azurite
from tests.fake_ai import FakeAzureAI
from tests.images import scene_png
from tests.support import NoCredential, azure_env, offline_env, upload_request

JOBS = 20


@pytest.fixture(params=["local folder", "Azurite"])
def services(request: pytest.FixtureRequest, fake: FakeAzureAI, tmp_path: Path) -> Services:
    if request.param == "Azurite":
        azurite: Azurite = request.getfixturevalue("azurite")
        azurite.clear()
        env = azure_env(fake, azurite.connection_string)
    else:
        env = {**azure_env(fake), **offline_env(tmp_path)}
    return build_services(Settings.from_env(env), NoCredential)


def test_twenty_simultaneous_jobs_on_one_image_pay_one_caption(services: Services, fake: FakeAzureAI) -> None:
    png = scene_png(320, 240)
    prepared = []
    for k in range(JOBS):
        request = upload_request(services, png, prompt=f"as a watercolour, take {k}", n=1)
        result = steps.prepare(services, request)
        assert isinstance(result, PreparedImage)
        prepared.append(result)
    assert len({p.image.sha256 for p in prepared}) == 1  # one image, twenty jobs

    fake.hold("vision.analyze", 1)  # the first caption call stays in flight until every job is waiting
    with ThreadPoolExecutor(JOBS) as pool:
        futures = [pool.submit(steps.caption, services, p) for p in prepared]
        deadline = time.monotonic() + 20
        while fake.arrived("vision.analyze") < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # the other nineteen reach their claim and wait for the cache
        fake.release()
        captions = [f.result(timeout=60) for f in futures]

    assert fake.count("vision.analyze") == 1
    assert all(isinstance(c, Caption) for c in captions)
    texts = {c.text for c in captions if isinstance(c, Caption)}
    assert len(texts) == 1
    assert sum(1 for c in captions if isinstance(c, Caption) and not c.cached) == 1


def test_a_stale_claim_does_not_hold_the_next_job(services: Services, fake: FakeAzureAI) -> None:
    """A job that claimed a caption and never wrote it (it failed) delays no one after one call's time."""
    png = scene_png(300, 200)
    request = upload_request(services, png, n=1)
    prepared = steps.prepare(services, request)
    assert isinstance(prepared, PreparedImage)
    cache = f"captions/{prepared.image.sha256}-{services.providers.captioner.name}.json"
    stale = time.time() - services.settings.service_timeout_s - 60
    assert services.storage.claim("work", f"{cache}.claim", f"blob-{'0' * 32} {stale:.3f}")

    done = threading.Event()
    result: list[object] = []

    def run() -> None:
        result.append(steps.caption(services, prepared))
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(10), "the caption step waited on a stale claim"
    assert isinstance(result[0], Caption) and fake.count("vision.analyze") == 1
