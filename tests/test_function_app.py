"""Function metadata: what the Functions host indexes from function_app.py, in Azure and in Development."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from typing import Any

import pytest

from shared.functions.bindings import BLOB_FUNCTION_NAME, POLLING_FUNCTION_NAME
from tests.support import REPO


def _index(monkeypatch: pytest.MonkeyPatch, environment: str) -> dict[str, list[dict[str, Any]]]:
    monkeypatch.setenv("AZURE_FUNCTIONS_ENVIRONMENT", environment)
    sys.modules.pop("function_app", None)
    module = importlib.import_module("function_app")
    sys.modules.pop("function_app", None)
    return {f.get_function_name(): json.loads(f.get_function_json())["bindings"] for f in module.app.get_functions()}


def _binding(bindings: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(b for b in bindings if b["type"] == kind)


def test_production_functions_and_bindings(monkeypatch: pytest.MonkeyPatch) -> None:
    functions = _index(monkeypatch, "Production")
    assert set(functions) == {
        "orchestrate_job", "prepare", "caption", "compose", "reserve", "generate", "persist",
        "start_variation", "variation_status", "cancel_variation", "variation_image", BLOB_FUNCTION_NAME,
        "web_ui_index", "web_ui_file",
    }  # fmt: skip
    assert _binding(functions["orchestrate_job"], "orchestrationTrigger")["name"] == "context"
    for activity in ("prepare", "caption", "compose", "reserve", "generate", "persist"):
        assert _binding(functions[activity], "activityTrigger")["name"] == "payload"

    blob = _binding(functions[BLOB_FUNCTION_NAME], "blobTrigger")
    assert blob["path"] == "inputs/{name}" and blob["source"] == "EventGrid"
    assert blob["connection"] == "AzureWebJobsStorage"
    assert _binding(functions[BLOB_FUNCTION_NAME], "durableClient")

    post = _binding(functions["start_variation"], "httpTrigger")
    assert post["route"] == "variations" and post["methods"] == ["POST"] and post["authLevel"] == "FUNCTION"
    assert _binding(functions["start_variation"], "durableClient")
    assert _binding(functions["variation_status"], "httpTrigger")["route"] == "variations/{job_id}"
    for name in ("start_variation", "variation_status", "variation_image"):
        assert _binding(functions[name], "httpTrigger")["authLevel"] == "FUNCTION"

    # The page's static files are anonymous (a browser cannot attach a key to <link> or <script>);
    # they carry no data, and the API they call keeps its keys.
    page, asset = _binding(functions["web_ui_index"], "httpTrigger"), _binding(functions["web_ui_file"], "httpTrigger")
    assert page["route"] == "ui" and asset["route"] == "ui/{file}"
    assert page["methods"] == asset["methods"] == ["GET"]
    assert page["authLevel"] == asset["authLevel"] == "ANONYMOUS"


def test_development_adds_polling_trigger_and_anonymous_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    functions = _index(monkeypatch, "Development")
    polling = _binding(functions[POLLING_FUNCTION_NAME], "blobTrigger")
    assert polling["path"] == "inputs/{name}" and polling["source"] == "LogsAndContainerScan"
    assert _binding(functions["start_variation"], "httpTrigger")["authLevel"] == "ANONYMOUS"


def test_importing_the_app_reads_no_settings_and_builds_no_client(monkeypatch: pytest.MonkeyPatch) -> None:
    # A broken setting must not break indexing: settings are read on first use, not at import.
    monkeypatch.setenv("VARIA_MAX_VARIATIONS", "not a number")
    functions = _index(monkeypatch, "Production")
    assert "orchestrate_job" in functions


def test_indexing_the_app_loads_no_heavy_library() -> None:
    # Cold start: pydantic, Pillow, OpenAI and Vision load in the invocations that need them. The
    # blob SDK (and azure-identity, which the binding imports) must load: the worker indexes the
    # blob trigger's `BlobClient` annotation.
    probe = (
        "import sys, function_app; "
        "heavy = [m for m in ('pydantic', 'PIL', 'openai', 'azure.ai.vision.imageanalysis', "
        "'shared.core.models', 'shared.core.steps') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
