"""VARIA_ENFORCED_PROFILE: one safety profile for every job, whatever a request asks.

Held on every path a job can start from: the HTTP handlers and the local server (a request naming
another profile gets 409 `profile_enforced`; one naming none runs under the enforced profile), a
blob dropped with `profile` metadata (it runs under the enforced profile, and its manifest records
what was asked and what applied), and the CLI (exit 2). The page is tested in Chromium by
tests/test_browser_enforced.py.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.storage.blob import BlobServiceClient

from shared.adapters.services import Services, build_services
from shared.adapters.storage import INPUTS, OUTPUTS, UPLOADS, BlobStorage
from shared.config import ConfigError, Settings
from shared.core.codes import CODES, HTTP_STATUS
from shared.core.jobs import ProfileEnforced, check_options, request_from_blob
from shared.functions.blob_trigger import handle_blob
from shared.functions.http_api import get_variation, post_variation
from shared.functions.web_ui import page_config
from shared.local.cli import make_runtime
from shared.local.runtime import LocalRuntime
from shared.local.server import VariaServer
from tests.conftest import Azurite
from tests.fake_ai import FakeAzureAI
from tests.images import scene_png
from tests.support import REPO, NoCredential, azure_env, multipart, offline_env, post_form

# A request the classroom must refuse: a job that runs under `kids` refuses it before any paid call.
UNSAFE_FOR_KIDS = "with a bloody sword and a gun"


def enforced_services(tmp_path: Path, profile: str = "kids", **extra: str) -> Services:
    return build_services(Settings.from_env(offline_env(tmp_path, VARIA_ENFORCED_PROFILE=profile, **extra)))


# --- the setting --------------------------------------------------------------------------------


def test_the_setting_is_empty_by_default_and_then_every_job_chooses(tmp_path: Path) -> None:
    settings = Settings.from_env(offline_env(tmp_path, VARIA_DEFAULT_PROFILE="kids"))
    assert settings.enforced_profile == ""
    assert check_options(settings, "general", None, None)[0] == "general"
    assert check_options(settings, None, None, None)[0] == "kids"


@pytest.mark.parametrize("value", ["kids", " KIDS ", "Kids"])
def test_the_setting_takes_a_profile_and_overrules_the_default_profile(tmp_path: Path, value: str) -> None:
    settings = Settings.from_env(offline_env(tmp_path, VARIA_ENFORCED_PROFILE=value, VARIA_DEFAULT_PROFILE="general"))
    assert settings.enforced_profile == "kids"
    assert settings.default_profile == "kids", "a job naming no profile gets the enforced one, not the default"


@pytest.mark.parametrize("value", ["adults", "child", "general,kids"])
def test_an_unknown_profile_in_the_setting_is_refused_at_start_up(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(offline_env(tmp_path, VARIA_ENFORCED_PROFILE=value))
    message = str(refused.value)
    assert "VARIA_ENFORCED_PROFILE" in message and repr(value) in message
    assert "'general'" in message and "'kids'" in message, message


def test_check_options_refuses_another_profile_or_applies_the_enforced_one(tmp_path: Path) -> None:
    settings = Settings.from_env(offline_env(tmp_path, VARIA_ENFORCED_PROFILE="kids"))
    with pytest.raises(ProfileEnforced) as refused:
        check_options(settings, "general", None, None)
    assert refused.value.code == "profile_enforced"
    assert check_options(settings, "kids", None, None)[0] == "kids"
    assert check_options(settings, "general", None, None, refuse_other_profile=False)[0] == "kids"


def test_the_code_is_in_the_table_with_its_http_status() -> None:
    assert HTTP_STATUS["profile_enforced"] == 409
    assert CODES["profile_enforced"].who == "user"
    assert "VARIA_ENFORCED_PROFILE" in CODES["profile_enforced"].meaning


def test_the_page_config_says_which_profile_is_enforced(tmp_path: Path) -> None:
    free = page_config(Settings.from_env(offline_env(tmp_path, VARIA_DEFAULT_PROFILE="kids")))
    assert free["enforced_profile"] is None and free["default_profile"] == "kids"
    locked = page_config(Settings.from_env(offline_env(tmp_path, VARIA_ENFORCED_PROFILE="kids")))
    assert locked["enforced_profile"] == "kids" and locked["default_profile"] == "kids"
    codes = locked["codes"]
    assert isinstance(codes, dict) and "profile_enforced" in codes


# --- the HTTP handlers --------------------------------------------------------------------------


@pytest.fixture
def kids_services(tmp_path: Path) -> Services:
    return enforced_services(tmp_path, "kids")


@pytest.fixture
def runtime(kids_services: Services) -> Iterator[LocalRuntime]:
    rt = make_runtime(kids_services, retry_scale=0.001)
    yield rt
    rt.shutdown()


def _call(coroutine: Any) -> tuple[int, Any]:
    response = asyncio.run(coroutine)
    return response.status_code, json.loads(response.get_body())


def _finished_view(runtime: LocalRuntime, services: Services, job_id: str) -> dict[str, Any]:
    instance = runtime.get(job_id)
    assert instance is not None and instance.done.wait(30), job_id
    status, view = _call(get_variation(job_id, runtime, services))
    assert status == 200
    return dict(view)


def _manifest(services: Services, job_id: str) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(services.storage.get(OUTPUTS, f"{job_id}/manifest.json"))
    return manifest


def test_a_form_asking_for_another_profile_is_refused_and_nothing_is_stored(
    runtime: LocalRuntime, kids_services: Services
) -> None:
    request = post_form({"prompt": UNSAFE_FOR_KIDS, "profile": "general", "n": "1"}, scene_png())
    status, body = _call(post_variation(request, runtime, kids_services))

    assert status == 409 and body["code"] == "profile_enforced"
    assert "classroom (kids) profile is enforced by this app's settings" in body["error"]
    assert "VARIA_ENFORCED_PROFILE=kids" in body["error"] and "without a profile" in body["error"]
    assert body["fields"] == [{"field": "profile", "problem": body["error"]}]
    assert list(kids_services.storage.list(UPLOADS, "")) == [], "a refused request stores nothing"
    assert runtime._instances == {}, "and starts no job"


def test_json_asking_for_another_profile_is_refused_too(runtime: LocalRuntime, kids_services: Services) -> None:
    body = json.dumps({"image": base64.b64encode(scene_png()).decode(), "prompt": "as pop art", "profile": "general"})
    request = func.HttpRequest(
        "POST", "/api/variations", headers={"Content-Type": "application/json"}, body=body.encode()
    )
    status, answer = _call(post_variation(request, runtime, kids_services))
    assert status == 409 and answer["code"] == "profile_enforced"


def test_other_bad_fields_are_named_beside_the_enforced_profile(runtime: LocalRuntime, kids_services: Services) -> None:
    request = post_form({"prompt": "as pop art", "profile": "general", "n": "40"}, scene_png())
    status, body = _call(post_variation(request, runtime, kids_services))
    assert status == 409 and body["code"] == "profile_enforced"
    assert {f["field"] for f in body["fields"]} == {"profile", "n"}


def test_a_request_naming_no_profile_runs_under_the_enforced_one_and_the_status_says_so(
    runtime: LocalRuntime, kids_services: Services
) -> None:
    request = post_form({"prompt": "as a watercolour", "n": "1"}, scene_png())
    status, body = _call(post_variation(request, runtime, kids_services))
    assert status == 202 and body["profile"] == "kids" and body["profile_enforced"] is True

    view = _finished_view(runtime, kids_services, body["job_id"])
    assert view["status"] == "succeeded"
    assert (view["profile"], view["profile_enforced"], view["requested_profile"]) == ("kids", True, None)
    manifest = _manifest(kids_services, body["job_id"])
    assert manifest["request"]["profile"] == "kids" and manifest["request"]["profile_enforced"] is True
    assert manifest["composition"]["profile"] == "kids", "the composer worked under the kids profile"


def test_a_request_naming_the_enforced_profile_is_accepted(runtime: LocalRuntime, kids_services: Services) -> None:
    request = post_form({"prompt": "as a sketch", "profile": "kids", "n": "1"}, scene_png())
    status, body = _call(post_variation(request, runtime, kids_services))
    assert status == 202
    view = _finished_view(runtime, kids_services, body["job_id"])
    assert (view["profile"], view["profile_enforced"], view["requested_profile"]) == ("kids", True, "kids")


def test_what_the_classroom_must_refuse_is_refused_when_the_request_names_no_profile(
    runtime: LocalRuntime, kids_services: Services
) -> None:
    request = post_form({"prompt": UNSAFE_FOR_KIDS, "n": "1"}, scene_png())
    status, body = _call(post_variation(request, runtime, kids_services))
    assert status == 202
    view = _finished_view(runtime, kids_services, body["job_id"])
    assert view["status"] == "refused" and view["profile"] == "kids" and view["profile_enforced"] is True
    assert view["images"] == [] or all(image["url"] is None for image in view["images"])


def test_without_the_setting_a_request_chooses_and_the_status_says_nothing_was_enforced(
    offline_services: Services,
) -> None:
    rt = make_runtime(offline_services, retry_scale=0.001)
    try:
        request = post_form({"prompt": "as a watercolour", "profile": "kids", "n": "1"}, scene_png())
        status, body = _call(post_variation(request, rt, offline_services))
        assert status == 202 and body["profile"] == "kids" and body["profile_enforced"] is False
        view = _finished_view(rt, offline_services, body["job_id"])
        assert (view["profile"], view["profile_enforced"], view["requested_profile"]) == ("kids", False, "kids")
    finally:
        rt.shutdown()


# --- the local server ---------------------------------------------------------------------------


@pytest.fixture
def server(kids_services: Services) -> Iterator[VariaServer]:
    srv = VariaServer(kids_services, make_runtime(kids_services, retry_scale=0.001), port=0, poll_interval=None)
    srv.start()
    yield srv
    srv.close()


def _request(server: VariaServer, method: str, path: str, body: bytes | None = None, **headers: str) -> Any:
    host, port = server.httpd.server_address[:2]
    conn = http.client.HTTPConnection(str(host), int(port), timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_the_local_server_refuses_another_profile_and_runs_the_rest_under_the_enforced_one(
    server: VariaServer, kids_services: Services
) -> None:
    body, content_type = multipart({"prompt": "as pop art", "profile": "general", "n": "1"}, scene_png())
    status, answer = _request(server, "POST", "/api/variations", body, **{"Content-Type": content_type})
    assert status == 409 and answer["code"] == "profile_enforced"

    body, content_type = multipart({"prompt": "as pop art", "n": "1"}, scene_png())
    status, answer = _request(server, "POST", "/api/variations", body, **{"Content-Type": content_type})
    assert status == 202 and answer["profile"] == "kids" and answer["profile_enforced"] is True
    instance = server.runtime.get(answer["job_id"])
    assert instance is not None and instance.done.wait(30)
    status, view = _request(server, "GET", answer["status_url"])
    assert status == 200 and view["status"] == "succeeded"
    assert view["profile"] == "kids" and view["profile_enforced"] is True

    status, config = _request(server, "GET", "/api/ui/config.json")
    assert status == 200 and config["enforced_profile"] == "kids"


# --- a blob drop --------------------------------------------------------------------------------


def test_blob_metadata_cannot_change_the_enforced_profile(tmp_path: Path) -> None:
    settings = Settings.from_env(offline_env(tmp_path, VARIA_ENFORCED_PROFILE="kids"))
    request = request_from_blob(INPUTS, "cat.png", '"0x1"', {"profile": "general", "prompt": "as pop art"}, settings)
    assert (request.profile, request.profile_enforced, request.requested_profile) == ("kids", True, "general")


@pytest.fixture
def enforced_azure_services(fake: FakeAzureAI, azurite: Azurite) -> Services:
    azurite.clear()
    env = azure_env(fake, azurite.connection_string, VARIA_ENFORCED_PROFILE="kids")
    services = build_services(Settings.from_env(env), NoCredential)
    assert isinstance(services.storage, BlobStorage)
    return services


def _drop_and_run(azurite: Azurite, services: Services, name: str, metadata: dict[str, str]) -> dict[str, Any]:
    """Upload a blob to Azurite's `inputs`, deliver its event once, run its job to the end; its manifest."""
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = blobs.get_container_client(INPUTS)
    if not container.exists():
        container.create_container()
    etag = blobs.get_blob_client(INPUTS, name).upload_blob(scene_png(), overwrite=True, metadata=metadata)["etag"]
    runtime = make_runtime(services, retry_scale=0.001)
    try:
        job_id = asyncio.run(handle_blob(INPUTS, name, etag, None, runtime, services))
        assert job_id is not None
        instance = runtime.get(job_id)
        assert instance is not None and instance.done.wait(30)
    finally:
        runtime.shutdown()
    return _manifest(services, job_id)


@pytest.mark.azurite
def test_a_blob_asking_for_general_runs_under_the_enforced_kids_profile(
    enforced_azure_services: Services, fake: FakeAzureAI, azurite: Azurite
) -> None:
    metadata = {"prompt": urllib.parse.quote("as a watercolour"), "profile": "general", "n": "1"}
    manifest = _drop_and_run(azurite, enforced_azure_services, "class/drawing.png", metadata)

    assert manifest["status"] == "succeeded"
    request = manifest["request"]
    assert (request["profile"], request["profile_enforced"], request["requested_profile"]) == ("kids", True, "general")
    assert manifest["composition"]["profile"] == "kids"
    # The kids profile's meta-prompt went to the composer, and the kids' 16:9 size to the image model.
    chat = next(c for c in fake.calls if c.route == "chat")
    assert "child" in json.dumps(chat.json).lower()
    sizes = {c.size for c in fake.calls if c.route.startswith("images.")}
    assert sizes == {"1536x864"}, sizes


@pytest.mark.azurite
def test_a_blob_asking_for_general_with_what_a_classroom_refuses_is_refused_before_any_image(
    enforced_azure_services: Services, fake: FakeAzureAI, azurite: Azurite
) -> None:
    metadata = {"prompt": urllib.parse.quote(UNSAFE_FOR_KIDS), "profile": "general", "n": "1"}
    manifest = _drop_and_run(azurite, enforced_azure_services, "class/knight.png", metadata)

    assert manifest["status"] == "refused" and manifest["request"]["profile"] == "kids"
    assert manifest["request"]["requested_profile"] == "general"
    assert fake.count("images.edit") + fake.count("images.generate") == 0


# --- the CLI ------------------------------------------------------------------------------------


def _cli(*args: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "VARIA_", "AzureWebJobs"))}
    env.update(settings, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_cli_refuses_another_profile_with_exit_2_and_says_what_to_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _cli("vary", "--out", str(out), "--profile", "general", "--n", "1", cwd=tmp_path,
                  VARIA_ENFORCED_PROFILE="kids")  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error (profile_enforced): The classroom (kids) profile is enforced")
    assert "VARIA_ENFORCED_PROFILE=kids" in result.stderr and "without --profile" in result.stderr
    assert not (out / "outputs").exists(), "no job ran"


def test_the_cli_runs_under_the_enforced_profile_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _cli("vary", "--out", str(out), "--n", "1", cwd=tmp_path, VARIA_ENFORCED_PROFILE="kids")
    assert result.returncode == 0, result.stderr
    assert "(profile kids, enforced by VARIA_ENFORCED_PROFILE, n=1" in result.stdout
    manifest = json.loads(Path(result.stdout.strip().splitlines()[-1].removeprefix("manifest: ")).read_text())
    assert manifest["request"]["profile"] == "kids" and manifest["request"]["profile_enforced"] is True
