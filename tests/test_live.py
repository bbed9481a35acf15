"""Live tests against real Azure: skipped unless VARIA_LIVE_TESTS=1 and the Azure settings are present.

    VARIA_LIVE_TESTS=1 AZURE_OPENAI_ENDPOINT=... AZURE_VISION_ENDPOINT=... .venv/bin/python -m pytest -m live

They make real, billed calls (one caption, one composition, one low-quality image: about one cent)
and authenticate like the app: an API key if set, else DefaultAzureCredential (`az login`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.adapters.services import build_services
from shared.config import Settings
from tests.images import scene_png
from tests.support import run_job, upload_request

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        os.environ.get("VARIA_LIVE_TESTS") != "1" or not os.environ.get("AZURE_OPENAI_ENDPOINT"),
        reason="live Azure tests need VARIA_LIVE_TESTS=1 and AZURE_OPENAI_ENDPOINT (AZURE_VISION_ENDPOINT optional)",
    ),
]


def test_one_real_job_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "VARIA_STORAGE": "local", "VARIA_LOCAL_DIR": str(tmp_path), "VARIA_IMAGE_QUALITY": "low"}
    services = build_services(Settings.from_env(env))
    manifest = run_job(services, upload_request(services, scene_png(512, 384), "as a watercolour", n=1)).output
    assert manifest["status"] == "succeeded", manifest["message"]
    assert manifest["providers"]["image"] == "azure-openai-gpt-image"
    assert manifest["caption"]["text"] and manifest["composition"]["output_prompt"]
