"""The preprovision hook: models offered, quota left and access granted, checked before azd creates anything.

The hook runs as azd runs it (`sh infra/hooks/preprovision.sh`, which hands over to preflight.py) against a
fake `az` first on PATH. The fake answers `account show`, `cognitiveservices model list`, `usage list`,
`account list` and `account deployment list` with JSON in the shapes the Azure CLI prints (the Models -
List and Usages - List REST answers: `model.name`, `model.version`, `model.skus[].name`, `usageName`,
`deprecationDate`; `name.value`, `currentValue`, `limit`), and records every call. Nothing reaches the
network.

PowerShell is not installed on these machines (Debian does not package it), so preprovision.ps1 is run
only where `pwsh` exists; everywhere, a structural test checks that it hands over to the same
preflight.py, honours the same skip variable and values, and prints the same message when Python is
missing: the checks themselves live once, in preflight.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest
from pycep import BicepParser

REPO = Path(__file__).resolve().parent.parent
HOOKS = REPO / "infra" / "hooks"
HOOK_SH = HOOKS / "preprovision.sh"
HOOK_PS1 = HOOKS / "preprovision.ps1"

FAKE_AZ = r'''#!PYTHON
"""A fake Azure CLI: answers from the JSON state file named by FAKE_AZ_STATE, logs each call."""
import json, os, sys
args = sys.argv[1:]
state = json.load(open(os.environ["FAKE_AZ_STATE"]))
with open(os.environ["FAKE_AZ_STATE"] + ".calls", "a") as log:
    log.write(json.dumps(args) + "\n")
def option(name):
    return args[args.index(name) + 1] if name in args else None
def fail(text):
    sys.stderr.write(text + "\n")
    sys.exit(1)
command = " ".join(a for a in args if not a.startswith("-"))
if state.get("logged_out"):
    fail("ERROR: Please run 'az login' to setup account.")
if command.startswith("account show"):
    answer = {"id": option("--subscription") or "default", "state": "Enabled"}
elif command.startswith("cognitiveservices model list"):
    answer = state["models"].get(option("--location"), [])
elif command.startswith("cognitiveservices usage list"):
    answer = state["usages"].get(option("--location"), [])
elif command.startswith("cognitiveservices account deployment list"):
    answer = state.get("deployments", {}).get(option("--name"), [])
elif command.startswith("cognitiveservices account list"):
    if state.get("resource_group_missing"):
        fail("ERROR: (ResourceGroupNotFound) Resource group '%s' could not be found." % option("--resource-group"))
    answer = state.get("accounts", [])
else:
    fail("fake az: unexpected command " + " ".join(args))
print(json.dumps(answer))
'''

MAIN_REGION = "eastus2"
CHAT = ("gpt-5.4-mini", "2026-03-17")
IMAGE = ("gpt-image-2", "2026-04-21")


def offered(
    name: str, version: str, sku: str = "GlobalStandard", retires: str = "2027-10-21T00:00:00Z"
) -> dict[str, Any]:
    """One entry of `az cognitiveservices model list`, as the Models - List API returns it (kind, model.name,
    model.version, model.skus[] with name, usageName and deprecationDate, model.deprecation.inference)."""
    return {
        "kind": "OpenAI",
        "skuName": "S0",
        "model": {
            "format": "OpenAI",
            "name": name,
            "version": version,
            "isDefaultVersion": True,
            "lifecycleStatus": "GenerallyAvailable",
            "maxCapacity": 50,
            "capabilities": {"imageGenerations": "true"} if "image" in name else {"chatCompletion": "true"},
            "deprecation": {"inference": retires},
            "skus": [
                {
                    "name": sku,
                    "usageName": f"OpenAI.{sku}.{name}",
                    "capacity": {"default": 2, "maximum": 50},
                    "deprecationDate": retires,
                    "rateLimits": [{"count": 3, "key": "request", "renewalPeriod": 60}],
                }
            ],
            "systemData": {"createdBy": "Microsoft", "createdByType": "Application"},
        },
    }


def usage(name: str, used: float, limit: float) -> dict[str, Any]:
    """One entry of `az cognitiveservices usage list`."""
    return {
        "name": {"value": f"OpenAI.GlobalStandard.{name}", "localizedValue": f"Global Standard {name} quota"},
        "currentValue": used,
        "limit": limit,
        "unit": "Count",
        "nextResetTime": "",
        "quotaPeriod": None,
        "status": None,
    }


def region(*models: tuple[str, str]) -> list[dict[str, Any]]:
    return [offered(*model) for model in models]


def good_state() -> dict[str, Any]:
    """A subscription with both default models and their whole default quota free in the five image regions."""
    regions = ["eastus2", "polandcentral", "swedencentral", "uaenorth", "westus3"]
    return {
        "models": {name: region(CHAT, IMAGE, ("gpt-image-1.5", "2025-12-16")) for name in regions},
        "usages": {name: [usage("gpt-5.4-mini", 0, 150), usage("gpt-image-2", 0, 2)] for name in regions},
    }


class Hook:
    """Runs a preprovision hook with a fake az on PATH and reads back what it did."""

    def __init__(self, tmp_path: Path, shell: list[str], script: Path) -> None:
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.state_file = tmp_path / "az-state.json"
        self.shell, self.script = shell, script
        (self.bin / "python3").symlink_to(sys.executable)
        self.env = {
            "PATH": os.pathsep.join([str(self.bin), "/usr/bin", "/bin"]),
            "HOME": str(tmp_path),
            "FAKE_AZ_STATE": str(self.state_file),
            "AZURE_ENV_NAME": "varia-preflight-test",
            "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
            "AZURE_LOCATION": "westeurope",
            "AZURE_OPENAI_LOCATION": MAIN_REGION,
        }

    def install_az(self) -> None:
        az = self.bin / "az"
        az.write_text(FAKE_AZ.replace("PYTHON", sys.executable))
        az.chmod(0o755)

    def run(self, state: dict[str, Any] | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        self.state_file.write_text(json.dumps(good_state() if state is None else state))
        return subprocess.run(
            [*self.shell, str(self.script)],
            env={**self.env, **env},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )

    @property
    def calls(self) -> list[list[str]]:
        log = Path(str(self.state_file) + ".calls")
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


SHELLS = [pytest.param((["sh"], HOOK_SH), id="sh")]
if shutil.which("pwsh"):
    SHELLS.append(pytest.param((["pwsh", "-NoProfile", "-File"], HOOK_PS1), id="pwsh"))


@pytest.fixture(params=SHELLS)
def hook(request: pytest.FixtureRequest, tmp_path: Path) -> Hook:
    shell, script = request.param
    hook = Hook(tmp_path, shell, script)
    hook.install_az()
    assert shutil.which("az", path=hook.env["PATH"]) == str(hook.bin / "az"), "the fake az must come first"
    return hook


def test_a_region_with_the_models_and_their_quota_passes_with_one_line(hook: Hook) -> None:
    run = hook.run()
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert run.stdout.splitlines() == ["preflight: ok (eastus2: gpt-5.4-mini 30 of 150 free, gpt-image-2 2 of 2 free)"]
    asked = {(call[1], call[call.index("--location") + 1]) for call in hook.calls if "--location" in call}
    assert asked == {("model", MAIN_REGION), ("usage", MAIN_REGION)}
    # Every call names the subscription azd uses, whatever `az account show` would pick.
    assert all(call[-2:] == ["--subscription", hook.env["AZURE_SUBSCRIPTION_ID"]] for call in hook.calls)


def test_every_image_region_is_checked_for_the_image_model_only(hook: Hook) -> None:
    run = hook.run(AZURE_OPENAI_IMAGE_REGIONS="SwedenCentral, westus3,,eastus2,swedencentral")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == (
        "preflight: ok (eastus2: gpt-5.4-mini 30 of 150 free, gpt-image-2 2 of 2 free; "
        "swedencentral: gpt-image-2 2 of 2 free; westus3: gpt-image-2 2 of 2 free)"
    )


def test_a_region_without_enough_quota_is_refused_with_the_numbers_and_the_fixes(hook: Hook) -> None:
    state = good_state()
    state["usages"][MAIN_REGION] = [usage("gpt-5.4-mini", 0, 150), usage("gpt-image-2", 1, 2)]
    run = hook.run(state)
    assert run.returncode == 1
    assert run.stdout == ""
    assert (
        "preflight: [not-enough-quota] gpt-image-2 needs 2 units of OpenAI.GlobalStandard.gpt-image-2 in eastus2, "
        "but this subscription has 1 left there (limit 2, in use 1)." in run.stderr
    )
    assert "fix: a smaller capacity: azd env set AZURE_OPENAI_IMAGE_CAPACITY 1" in run.stderr
    assert "fix: another region: azd env set AZURE_OPENAI_LOCATION <region>" in run.stderr
    assert "Management > Quota" in run.stderr
    assert "To provision anyway: azd env set VARIA_SKIP_PREFLIGHT true" in run.stderr


def test_an_extra_image_region_without_quota_names_the_region_and_how_to_leave_it_out(hook: Hook) -> None:
    state = good_state()
    state["usages"]["swedencentral"] = [usage("gpt-image-2", 0, 0)]
    run = hook.run(state, AZURE_OPENAI_IMAGE_REGIONS="swedencentral,westus3")
    assert run.returncode == 1
    assert "[no-quota] gpt-image-2 needs 2 units of OpenAI.GlobalStandard.gpt-image-2 in swedencentral" in run.stderr
    assert "(limit 0, in use 0)" in run.stderr
    assert "fix: leave swedencentral out: azd env set AZURE_OPENAI_IMAGE_REGIONS" in run.stderr
    assert "smaller capacity" not in run.stderr  # nothing left to lower to
    assert "westus3" not in run.stderr


def test_capacity_overrides_are_what_is_checked(hook: Hook) -> None:
    state = good_state()
    state["usages"][MAIN_REGION] = [usage("gpt-5.4-mini", 100, 150), usage("gpt-image-2", 0, 6)]
    run = hook.run(state, AZURE_OPENAI_IMAGE_CAPACITY="5", AZURE_OPENAI_CHAT_CAPACITY="60")
    assert run.returncode == 1
    assert "gpt-5.4-mini needs 60 units" in run.stderr and "has 50 left there (limit 150, in use 100)" in run.stderr
    assert "azd env set AZURE_OPENAI_CHAT_CAPACITY 50" in run.stderr
    assert "gpt-image-2" not in run.stderr


def test_what_this_environment_already_holds_counts_as_its_own_on_a_second_provision(hook: Hook) -> None:
    """A second `azd provision`: the usage list counts the environment's own deployments as used."""
    state = good_state()
    state["usages"][MAIN_REGION] = [usage("gpt-5.4-mini", 30, 150), usage("gpt-image-2", 2, 2)]
    state["accounts"] = [{"name": "oai-varia-abc", "kind": "OpenAI", "location": "eastus2"}]
    state["deployments"] = {
        "oai-varia-abc": [
            {
                "name": "gpt-5.4-mini",
                "sku": {"name": "GlobalStandard", "capacity": 30},
                "properties": {"model": {"format": "OpenAI", "name": "gpt-5.4-mini", "version": "2026-03-17"}},
            },
            {
                "name": "gpt-image-2",
                "sku": {"name": "GlobalStandard", "capacity": 2},
                "properties": {"model": {"format": "OpenAI", "name": "gpt-image-2", "version": "2026-04-21"}},
            },
        ]
    }
    run = hook.run(state, AZURE_RESOURCE_GROUP="rg-varia-dev")
    assert run.returncode == 0, run.stderr
    assert [
        "cognitiveservices",
        "account",
        "deployment",
        "list",
        "--resource-group",
        "rg-varia-dev",
        "--name",
        "oai-varia-abc",
    ] == hook.calls[2][:8]
    # Raising the capacity asks only for the difference.
    state["usages"][MAIN_REGION] = [usage("gpt-5.4-mini", 30, 150), usage("gpt-image-2", 2, 3)]
    assert hook.run(state, AZURE_RESOURCE_GROUP="rg-varia-dev", AZURE_OPENAI_IMAGE_CAPACITY="3").returncode == 0
    assert hook.run(state, AZURE_RESOURCE_GROUP="rg-varia-dev", AZURE_OPENAI_IMAGE_CAPACITY="4").returncode == 1
    # A resource group that is gone (azd down) holds nothing.
    state["resource_group_missing"] = True
    run = hook.run(state, AZURE_RESOURCE_GROUP="rg-varia-dev")
    assert run.returncode == 1 and "[not-enough-quota]" in run.stderr


@pytest.mark.parametrize(
    ("model", "version", "form"),
    [
        ("gpt-image-1.5", "2025-12-16", "https://aka.ms/oai/gptimage1.5access"),
        ("gpt-image-1-mini", "2025-10-06", "https://aka.ms/oai/gptimage1access"),
    ],
)
@pytest.mark.parametrize("sign", ["limit 0", "not listed"])
def test_a_limited_access_model_without_approval_is_refused_with_the_form(
    hook: Hook, model: str, version: str, form: str, sign: str
) -> None:
    state = good_state()
    if sign == "limit 0":
        state["models"][MAIN_REGION].append(offered(model, version))
        state["usages"][MAIN_REGION].append(usage(model, 0, 0))
    else:
        state["models"][MAIN_REGION] = [e for e in state["models"][MAIN_REGION] if e["model"]["name"] != model]
    run = hook.run(state, AZURE_OPENAI_IMAGE_MODEL=model, AZURE_OPENAI_IMAGE_MODEL_VERSION=version)
    assert run.returncode == 1
    assert f"preflight: [needs-access-form] {model} is a limited-access model" in run.stderr
    assert "in eastus2 this subscription" in run.stderr
    expected = f"has a quota limit of 0 for OpenAI.GlobalStandard.{model}" if sign == "limit 0" else "is not offered it"
    assert expected in run.stderr
    assert "SpecialFeatureOrQuotaIdRequired" in run.stderr
    assert f"fix: apply with the form {form}" in run.stderr
    assert (
        "fix: a model that needs no form: azd env set AZURE_OPENAI_IMAGE_MODEL gpt-image-2; "
        "azd env set AZURE_OPENAI_IMAGE_MODEL_VERSION 2026-04-21" in run.stderr
    )


def test_an_approved_limited_access_model_passes(hook: Hook) -> None:
    state = good_state()
    state["usages"][MAIN_REGION].append(usage("gpt-image-1.5", 0, 2))
    run = hook.run(state, AZURE_OPENAI_IMAGE_MODEL="gpt-image-1.5", AZURE_OPENAI_IMAGE_MODEL_VERSION="2025-12-16")
    assert run.returncode == 0, run.stderr
    assert "gpt-image-1.5 2 of 2 free" in run.stdout


def test_a_model_not_offered_in_the_region_is_refused(hook: Hook) -> None:
    state = good_state()
    state["models"][MAIN_REGION] = region(IMAGE)
    run = hook.run(state)
    assert run.returncode == 1
    assert (
        "preflight: [model-not-offered] gpt-5.4-mini is not offered in eastus2 to this subscription "
        "(az cognitiveservices model list --location eastus2)." in run.stderr
    )
    assert "fix: another region: azd env set AZURE_OPENAI_LOCATION" in run.stderr
    assert "fix: another chat model: azd env set AZURE_OPENAI_CHAT_MODEL" in run.stderr


def test_a_version_or_sku_not_offered_or_a_retired_model_is_refused(hook: Hook) -> None:
    state = good_state()
    state["models"][MAIN_REGION] = region(CHAT, ("gpt-image-2", "2026-09-01"))
    run = hook.run(state)
    assert run.returncode == 1
    assert (
        "[version-not-offered] gpt-image-2 version 2026-04-21 is not offered in eastus2; offered: 2026-09-01"
        in run.stderr
    )
    assert "fix: azd env set AZURE_OPENAI_IMAGE_MODEL_VERSION 2026-09-01" in run.stderr

    state["models"][MAIN_REGION] = [offered(*CHAT), offered(*IMAGE, sku="Standard")]
    run = hook.run(state)
    assert run.returncode == 1
    assert "[sku-not-offered] gpt-image-2 2026-04-21 is offered in eastus2, but not as a GlobalStandard" in run.stderr

    state["models"][MAIN_REGION] = [offered(*CHAT, retires="2026-01-01T00:00:00Z"), offered(*IMAGE)]
    run = hook.run(state)
    assert run.returncode == 1
    assert "[model-retired] gpt-5.4-mini 2026-03-17 retired on 2026-01-01 in eastus2." in run.stderr


def test_an_empty_usage_list_does_not_block(hook: Hook) -> None:
    """Some subscriptions list no usages before they hold a resource (azure-dev #8537): nothing to compare."""
    state = good_state()
    state["usages"][MAIN_REGION] = []
    run = hook.run(state)
    assert run.returncode == 0, run.stderr
    assert "gpt-image-2 (quota not reported)" in run.stdout


def test_a_region_azd_has_not_asked_for_yet_is_left_to_its_prompt(hook: Hook) -> None:
    env = {key: value for key, value in hook.env.items() if key != "AZURE_OPENAI_LOCATION"}
    hook.env = env
    run = hook.run(AZURE_OPENAI_IMAGE_REGIONS="westus3")
    assert run.returncode == 0, run.stderr
    assert "AZURE_OPENAI_LOCATION is not chosen yet: azd asks for it" in run.stdout
    assert "westus3: gpt-image-2 2 of 2 free" in run.stdout


def test_a_missing_az_is_named_with_the_fix_and_the_skip(tmp_path: Path) -> None:
    hook = Hook(tmp_path, ["sh"], HOOK_SH)
    assert shutil.which("az", path=hook.env["PATH"]) is None
    run = hook.run()
    assert run.returncode == 1
    assert "preflight: [az-missing] the Azure CLI (az) is needed" in run.stderr
    assert "https://aka.ms/installazurecli" in run.stderr and "'az login'" in run.stderr
    assert "azd env set VARIA_SKIP_PREFLIGHT true" in run.stderr


def test_a_signed_out_az_is_named_with_the_fix_and_the_skip(hook: Hook) -> None:
    run = hook.run({"logged_out": True, "models": {}, "usages": {}})
    assert run.returncode == 1
    assert "preflight: [az-not-logged-in] the Azure CLI could not answer. It said:" in run.stderr
    assert "    ERROR: Please run 'az login' to setup account." in run.stderr
    assert "fix: sign in with 'az login'" in run.stderr
    assert "azd env set VARIA_SKIP_PREFLIGHT true" in run.stderr
    assert len(hook.calls) == 1


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes"])
def test_the_skip_variable_skips_every_check(tmp_path: Path, value: str) -> None:
    hook = Hook(tmp_path, ["sh"], HOOK_SH)  # no az at all
    run = hook.run(VARIA_SKIP_PREFLIGHT=value)
    assert run.returncode == 0
    assert run.stdout.startswith("preflight: skipped (VARIA_SKIP_PREFLIGHT is set)")


def test_a_bad_capacity_setting_is_named(hook: Hook) -> None:
    run = hook.run(AZURE_OPENAI_IMAGE_CAPACITY="two")
    assert run.returncode == 1
    assert "[bad-setting] AZURE_OPENAI_IMAGE_CAPACITY='two' is not a capacity." in run.stderr


def test_a_missing_python_is_named_with_the_skip(tmp_path: Path) -> None:
    hook = Hook(tmp_path, ["/bin/sh"], HOOK_SH)
    (hook.bin / "python3").unlink()
    hook.env["PATH"] = str(hook.bin)  # no python3, no python
    run = hook.run()
    assert run.returncode == 1
    assert "preflight: [python-missing]" in run.stderr
    assert "azd env set VARIA_SKIP_PREFLIGHT true" in run.stderr


# --- wiring ------------------------------------------------------------------------------------


def quoted_messages(text: str) -> set[str]:
    """The messages a wrapper prints: its 'preflight: ...' and '    fix: ...' strings."""
    return {message for message in re.findall(r"[\"']((?:preflight:|    fix:)[^\"']*)[\"']", text)}


def test_the_powershell_hook_does_what_the_shell_hook_does() -> None:
    """Without pwsh here, compare the two wrappers: same script, same skip variable and values, same messages."""
    sh, ps1 = HOOK_SH.read_text(), HOOK_PS1.read_text()
    for text in (sh, ps1):
        assert "preflight.py" in text
        assert "VARIA_SKIP_PREFLIGHT" in text
    assert re.search(r"1 \| true \| yes\)", sh)
    assert "@('1', 'true', 'yes')" in ps1 and "ToLowerInvariant()" in ps1
    sh_messages = {
        message.replace("python3 on PATH)", "python3 on PATH, or the py launcher)") for message in quoted_messages(sh)
    }
    assert sh_messages == quoted_messages(ps1) != set()
    # Both refuse a Python older than preflight.py supports, and pass its exit code on.
    assert sh.count("sys.version_info < (3, 9)") == ps1.count("sys.version_info < (3, 9)") == 1
    assert "exec " in sh and "exit $LASTEXITCODE" in ps1


def test_azure_yaml_runs_the_hooks_before_provisioning() -> None:
    text = (REPO / "azure.yaml").read_text()
    block = text.split("  preprovision:\n", 1)[1].split("\n  postdeploy:", 1)[0]
    assert "shell: sh\n      run: ./infra/hooks/preprovision.sh\n      continueOnError: false" in block
    assert "shell: pwsh\n      run: ./infra/hooks/preprovision.ps1\n      continueOnError: false" in block
    assert os.access(HOOK_SH, os.X_OK)


def load_preflight() -> Any:
    """infra/hooks/preflight.py as a module (it is a script, not a package)."""
    sys.path.insert(0, str(HOOKS))
    try:
        import preflight
    finally:
        sys.path.remove(str(HOOKS))
    return preflight


def parsed(path: Path) -> dict[str, Any]:
    return cast(dict[str, Any], BicepParser().parse(file_path=path))


def test_the_region_prompt_filters_on_the_default_models_and_capacities() -> None:
    """azd's location prompt for the OpenAI region lists only regions with quota for the default deployments."""
    main = parsed(REPO / "infra" / "main.bicep")["parameters"]
    region = main["openAiLocation"]
    metadata = next(d["argument"]["azd"] for d in region["decorators"] if d["type"] == "metadata")
    allowed = next(d["argument"] for d in region["decorators"] if d["type"] == "allowed")
    assert metadata["type"] == "location" and metadata["default"] in allowed
    assert metadata["usageName"] == [
        f"OpenAI.GlobalStandard.{main['chatModelName']['default']},{main['chatCapacity']['default']}",
        f"OpenAI.GlobalStandard.{main['imageModelName']['default']},{main['imageCapacity']['default']}",
    ]
    # azd asks only for a parameter with no value: no default in main.bicep nor in main.parameters.json.
    assert region.get("default") is None
    parameters = json.loads((REPO / "infra" / "main.parameters.json").read_text())["parameters"]
    assert parameters["openAiLocation"]["value"] == "${AZURE_OPENAI_LOCATION}"


def test_preflight_checks_the_sku_and_account_kind_the_templates_deploy() -> None:
    preflight = load_preflight()
    for module in ("openai.bicep", "openai-images.bicep"):
        template = parsed(REPO / "infra" / "modules" / module)
        for resource in template["resources"].values():
            config = resource["config"].get("config", resource["config"])
            if resource["type"] == "Microsoft.CognitiveServices/accounts/deployments":
                assert config["sku"]["name"] == preflight.DEPLOYMENT_SKU, module
            if resource["type"] == "Microsoft.CognitiveServices/accounts":
                assert config["kind"] == preflight.ACCOUNT_KIND, module
    # It reads the parameters it checks from main.parameters.json, under the names main.bicep declares.
    sources = preflight.parameter_sources()
    for name in (
        "openAiLocation",
        "chatModelName",
        "chatModelVersion",
        "chatCapacity",
        "imageModelName",
        "imageModelVersion",
        "imageCapacity",
        "imageRegions",
    ):
        assert name in sources


def test_a_region_chosen_at_azds_prompt_is_read_from_the_environments_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """azd keeps a prompted parameter under infra.parameters in .azure/<env>/config.json, not as a variable."""
    preflight = load_preflight()
    monkeypatch.setattr(preflight, "REPO", tmp_path)
    config = tmp_path / ".azure" / "dev" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"infra": {"parameters": {"openAiLocation": "swedencentral"}}}))
    deployments, problems, notes = preflight.planned_deployments({"AZURE_ENV_NAME": "dev"})
    assert problems == notes == []
    assert {deployment.region for deployment in deployments} == {"swedencentral"}
    # A value set with `azd env set` wins over the prompt's.
    deployments, _, _ = preflight.planned_deployments({"AZURE_ENV_NAME": "dev", "AZURE_OPENAI_LOCATION": "westus3"})
    assert {deployment.region for deployment in deployments} == {"westus3"}
