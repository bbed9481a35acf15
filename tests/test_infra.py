"""Checks of the Azure templates that run on a machine without Azure or the Bicep CLI.

Every .bicep file is parsed with pycep-parser; checkov scans infra/ once per session (from its own
venv, .venv-infra, because its dependencies clash with the app's); the parsed templates are then
held to the security properties the README promises and to the code: the app settings Bicep
writes are exactly the settings shared/config.py reads, and the postdeploy hook subscribes the
blob trigger function that function_app.py really registers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, cast

import pytest
from pycep import BicepParser

from shared.adapters.storage import CONTAINERS, INPUTS, UPLOADS, WORK
from shared.ai_models import IMAGE_MODELS
from shared.config import SETTINGS, ConfigError, Settings, activity_concurrency

REPO = Path(__file__).resolve().parent.parent
INFRA = REPO / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
CHECKOV = REPO / ".venv-infra" / "bin" / "checkov"
HOOK_SH = INFRA / "hooks" / "postdeploy.sh"
HOOK_PS1 = INFRA / "hooks" / "postdeploy.ps1"

# Built-in role ids (FACTS.md, "Role ids for Bicep"), each with the resource type it must be granted on.
ROLE_SCOPES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Microsoft.Storage/storageAccounts",  # Storage Blob Data Owner
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Microsoft.Storage/storageAccounts",  # Storage Queue Data Contributor
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Microsoft.Storage/storageAccounts",  # Storage Table Data Contributor
    "3913510d-42f4-4e42-8a64-420c390055eb": "Microsoft.Insights/components",  # Monitoring Metrics Publisher
    "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd": "Microsoft.CognitiveServices/accounts",  # Cognitive Services OpenAI User
    "a97b65f3-24c7-4388-baec-2e87135dc908": "Microsoft.CognitiveServices/accounts",  # Cognitive Services User
}
OPENAI_USER = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"
COGNITIVE_SERVICES_USER = "a97b65f3-24c7-4388-baec-2e87135dc908"

# Settings the Functions host reads (not Varia's code); allowed in addition to the code's settings.
HOST_SETTING_PREFIXES = (
    "AzureWebJobsStorage__",
    "APPLICATIONINSIGHTS_",
    "FUNCTIONS_",
    "AzureWebJobsFeatureFlags",
    "AzureFunctionsJobHost__",  # host.json overrides
    "PYTHON_ENABLE_OPENTELEMETRY",  # the Python worker's OpenTelemetry (shared/telemetry.py)
    "DURABLE_TASK_SCHEDULER_CONNECTION_STRING",  # the Durable extension's azureManaged provider (dts mode)
)

# Settings main.bicep pins to a value other than the code's default, and why it may.
PINNED_FOR_AZURE = {
    # 'auto' would fall back to the offline providers if an endpoint went missing; in Azure a
    # missing endpoint must fail at start-up instead.
    "VARIA_CAPTION_PROVIDER": "vision",
    "VARIA_COMPOSE_PROVIDER": "chat",
    "VARIA_IMAGE_PROVIDER": "gpt-image",
    "VARIA_MODERATION_PROVIDER": "content-safety",
}

Template = dict[str, Any]


# --- reading the parsed templates ------------------------------------------------------------


@pytest.fixture(scope="module")
def templates() -> dict[str, Template]:
    """Every template under infra/, parsed once, by path relative to infra/ ('modules/storage.bicep')."""
    parser = BicepParser()
    return {path.relative_to(INFRA).as_posix(): cast(Template, parser.parse(file_path=path)) for path in BICEP_FILES}


@pytest.fixture(scope="module")
def main(templates: dict[str, Template]) -> Template:
    return templates["main.bicep"]


def resources_of(template: Template, resource_type: str) -> dict[str, dict[str, Any]]:
    """The resources of one type (existing references excluded), by symbolic name, as their bodies."""
    found = {}
    for symbol, resource in template["resources"].items():
        if resource["type"] == resource_type and not resource["existing"]:
            config = resource["config"]
            found[symbol] = config["config"] if "loop_type" in config else config
    return found


def only(template: Template, resource_type: str) -> dict[str, Any]:
    found = resources_of(template, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.values()))


def resolve(template: Template, value: Any) -> Any:
    """A literal as is; the name of a variable or parameter as its value (parameters: their default).

    pycep writes identifiers and string literals alike, so a string that names a variable or a
    parameter is taken as the reference it almost always is.
    """
    if isinstance(value, str):
        if value in template["variables"]:
            return resolve(template, template["variables"][value]["value"])
        if value in template["parameters"]:
            parameter = template["parameters"][value]
            # Without a default azd asks, and its prompt offers the metadata's default first.
            azd_default = azd_metadata(parameter).get("default")
            return resolve(template, parameter["default"] if parameter.get("default") is not None else azd_default)
    return value


def azd_metadata(parameter: dict[str, Any]) -> dict[str, Any]:
    """The `azd` object of a parameter's @metadata decorator ({} without one)."""
    for decorator in parameter.get("decorators", []):
        if decorator["type"] == "metadata":
            return cast(dict[str, Any], decorator["argument"].get("azd", {}))
    return {}


def evaluate(template: Template, value: Any, **parameters: Any) -> Any:
    """The value of a small Bicep expression, with `parameters` binding names (parameters, lambda
    variables, or module and resource symbols as the dicts their properties would be).

    Literals, objects and arrays, '${name}' interpolation, parameters and variables, + - * /, ==,
    !=, &&, `c ? a : b`, `a.b` and `a[i]`, string(), min(), max(), length(), concat(), union(),
    split(), replace(), toLower(), empty(), filter() and for-expressions: what the templates use to
    size quota and to switch the optional modes.
    """
    if isinstance(value, str):
        if value in parameters:
            return parameters[value]
        if "${" in value:
            return re.sub(r"\$\{(\w+)\}", lambda m: str(evaluate(template, m.group(1), **parameters)), value)
        resolved = resolve(template, value)
        return resolved if resolved == value else evaluate(template, resolved, **parameters)
    if isinstance(value, list):
        return [evaluate(template, item, **parameters) for item in value]
    if isinstance(value, dict) and "loop_type" in value:
        detail = value["loop_type"]["detail"]
        items = evaluate(template, detail["array_name"], **parameters)
        assert value["condition"] is None, "a filtered for-expression: extend evaluate()"
        return [
            evaluate(
                template,
                value["config"],
                **{**parameters, detail["item_name"]: item, detail.get("index_name") or "_": i},
            )
            for i, item in enumerate(items)
        ]
    if isinstance(value, dict) and "operator" in value:
        operator = value["operator"]
        if operator["type"] == "property_accessor":
            operands = operator["operands"]
            found = evaluate(template, operands["operand_1"], **parameters)
            for name in accessor_path(operands["operand_2"]):
                found = found[name]
            return found
        if operator["type"] == "conditional":
            operands = operator["operands"]
            branch = "true_value" if evaluate(template, operands["condition"], **parameters) else "false_value"
            return evaluate(template, operands[branch], **parameters)
        left, right = (evaluate(template, v, **parameters) for v in operator["operands"].values())
        operations = {
            "add": lambda: left + right,
            "multiply": lambda: left * right,
            "divide": lambda: left // right,
            "equals": lambda: left == right,
            "not_equals": lambda: left != right,
            "and": lambda: left and right,
            "index_accessor": lambda: left[right],
        }
        return operations[operator["type"]]()
    if isinstance(value, dict) and "function" in value:
        function = value["function"]
        if function["type"] == "filter":
            arguments = function["parameters"]
            name = arguments["input_element"]
            items = evaluate(template, arguments["input_array"], **parameters)
            return [item for item in items if evaluate(template, arguments["expression"], **{**parameters, name: item})]
        args = [evaluate(template, v, **parameters) for v in function["parameters"].values()]
        functions = {
            # string() of an array or object is its JSON (compact, as ARM writes it).
            "string": lambda: args[0] if isinstance(args[0], str) else json.dumps(args[0], separators=(",", ":")),
            "min": lambda: min(args),
            "max": lambda: max(args),
            "length": lambda: len(args[0]),
            "concat": lambda: [item for arg in args for item in arg],
            # union() of arrays keeps each value once, in first-seen order.
            "union": lambda: list(dict.fromkeys(json.dumps(item) for arg in args for item in arg)),
            "split": lambda: args[0].split(args[1]),
            "replace": lambda: args[0].replace(args[1], args[2]),
            "to_lower": lambda: args[0].lower(),
            "empty": lambda: not args[0],
        }
        result = functions[function["type"]]()
        return [json.loads(item) for item in result] if function["type"] == "union" else result
    if isinstance(value, dict):
        return {key: evaluate(template, item, **parameters) for key, item in value.items()}
    return value


def accessor_path(value: Any) -> list[str]:
    """`a.b.c` as ['a', 'b', 'c'] (pycep nests property accessors); [] for anything else."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict) and value.get("operator", {}).get("type") == "property_accessor":
        operands = value["operator"]["operands"]
        return accessor_path(operands["operand_1"]) + accessor_path(operands["operand_2"])
    return []


def allowed_values(template: Template, parameter: str) -> set[Any]:
    decorators = template["parameters"][parameter]["decorators"]
    return {value for decorator in decorators if decorator["type"] == "allowed" for value in decorator["argument"]}


def module_call(main: Template, path: str) -> dict[str, Any]:
    calls = [module for module in main["modules"].values() if module["detail"]["path"] == path]
    assert len(calls) == 1, f"main.bicep should call {path} once"
    config: dict[str, Any] = calls[0]["config"]
    return config


# --- parsing and checkov ---------------------------------------------------------------------


def test_infra_has_the_expected_templates() -> None:
    names = {path.relative_to(INFRA).as_posix() for path in BICEP_FILES}
    assert "main.bicep" in names
    modules = (
        "storage",
        "functionapp",
        "openai",
        "openai-images",
        "vision",
        "contentsafety",
        "rbac",
        "network",
        "durabletask",
    )
    assert {f"modules/{name}.bicep" for name in modules} <= names


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda path: path.relative_to(INFRA).as_posix())
def test_bicep_parses(path: Path) -> None:
    # pycep raises on anything outside its grammar; checkov then silently skips the file.
    BicepParser().parse(file_path=path)


@pytest.fixture(scope="module")
def checkov_report() -> dict[str, Any]:
    """checkov over infra/ as it is: the default deployment (no virtual network)."""
    return run_checkov(REPO)


def run_checkov(root: Path) -> dict[str, Any]:
    """checkov's JSON report of root/infra."""
    if not CHECKOV.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(
                f"{CHECKOV} is missing: CI must create .venv-infra (pip install -r infra/requirements-checks.txt)"
            )
        pytest.skip(
            f"{CHECKOV} is missing: python3 -m venv .venv-infra && "
            ".venv-infra/bin/pip install -r infra/requirements-checks.txt"
        )
    # Offline and deterministic: no download of Prisma Cloud policies, no update check on PyPI.
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"}
    run = subprocess.run(
        [str(CHECKOV), "-d", "infra", "--framework", "bicep", "--skip-download", "--output", "json", "--compact"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.stdout.strip(), f"checkov printed nothing (exit {run.returncode}):\n{run.stderr[-3000:]}"
    report: dict[str, Any] = json.loads(run.stdout)
    return report


def test_checkov_scans_every_template(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["summary"]
    # A file checkov cannot parse is left out of the scan, and "0 failed" then proves nothing.
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= 20


def test_checkov_finds_no_failed_check(checkov_report: dict[str, Any]) -> None:
    failed = [
        f"{check['check_id']} {check['check_name']} ({check['resource']}, {check['file_path']})"
        for check in checkov_report["results"].get("failed_checks", [])
    ]
    assert failed == [], "checkov failed checks:\n" + "\n".join(failed)


def test_every_checkov_skip_is_used_and_explained(checkov_report: dict[str, Any]) -> None:
    declared = set()
    for path in BICEP_FILES:
        for check_id, reason in re.findall(r"//\s*checkov:skip=(CKV2?_[A-Z]+_\d+):(.*)", path.read_text()):
            assert len(reason.strip()) >= 30, f"{path.name}: the skip of {check_id} needs a reason a reviewer can judge"
            declared.add((f"/{path.relative_to(INFRA).as_posix()}", check_id))
    used = {(check["file_path"], check["check_id"]) for check in checkov_report["results"].get("skipped_checks", [])}
    # A skip that no longer matches a check hides nothing today but would hide a regression later.
    assert declared == used


# --- security properties ---------------------------------------------------------------------


def test_storage_is_keyless_private_and_tls12(templates: dict[str, Template]) -> None:
    storage = templates["modules/storage.bicep"]
    properties = only(storage, "Microsoft.Storage/storageAccounts")["properties"]
    assert properties["allowSharedKeyAccess"] is False
    assert properties["allowBlobPublicAccess"] is False
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["supportsHttpsTrafficOnly"] is True
    assert only(storage, "Microsoft.Storage/storageAccounts/blobServices/containers")["properties"] == {
        "publicAccess": "None"
    }
    retention = only(storage, "Microsoft.Storage/storageAccounts/blobServices")["properties"]
    assert retention["deleteRetentionPolicy"]["enabled"] is True
    assert retention["containerDeleteRetentionPolicy"]["enabled"] is True


def test_no_template_reads_or_outputs_a_key() -> None:
    for path in BICEP_FILES:
        text = path.read_text()
        assert not re.search(r"\blist\w*\(|listKeys|listkeys", text), f"{path.name} reads keys: stay keyless"
        assert not re.search(r"^\s*AzureWebJobsStorage\s*:", text, re.M), f"{path.name}: no connection string"


@pytest.mark.parametrize(
    ("module", "kind"),
    [
        ("modules/openai.bicep", "OpenAI"),
        ("modules/vision.bicep", "ComputerVision"),
        ("modules/contentsafety.bicep", "ContentSafety"),
    ],
)
def test_ai_accounts_refuse_keys_and_have_a_subdomain(templates: dict[str, Template], module: str, kind: str) -> None:
    account = only(templates[module], "Microsoft.CognitiveServices/accounts")
    assert account["kind"] == kind
    assert account["sku"]["name"] == "S0"
    assert account["properties"]["disableLocalAuth"] is True
    # Entra ID tokens are only accepted on a custom subdomain endpoint.
    assert account["properties"]["customSubDomainName"] == account["name"] == "name"


def test_monitoring_refuses_keys(templates: dict[str, Template]) -> None:
    monitoring = templates["modules/monitoring.bicep"]
    assert only(monitoring, "Microsoft.Insights/components")["properties"]["DisableLocalAuth"] is True
    workspace = only(monitoring, "Microsoft.OperationalInsights/workspaces")
    assert workspace["properties"]["features"]["disableLocalAuth"] is True


def test_function_app_is_flex_python_with_its_identity_https_only_and_no_ftp(templates: dict[str, Template]) -> None:
    module = templates["modules/functionapp.bicep"]
    plan = only(module, "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    assert plan["properties"]["reserved"] is True  # Linux
    app = only(module, "Microsoft.Web/sites")
    assert app["kind"] == "functionapp,linux"
    assert app["identity"]["type"] == "UserAssigned"
    properties = app["properties"]
    assert properties["httpsOnly"] is True
    assert properties["siteConfig"]["minTlsVersion"] == "1.2"
    config = properties["functionAppConfig"]
    assert config["runtime"]["name"] == "python"
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    policies = resources_of(module, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert sorted((policy["name"], policy["properties"]["allow"]) for policy in policies.values()) == [
        ("ftp", False),
        ("scm", False),
    ]


# Properties Flex Consumption refuses in siteConfig (ARM error 51021 on newer clusters; FACTS.md).
FLEX_REJECTED_SITE_CONFIG = {
    "ftpsState",
    "linuxFxVersion",
    "alwaysOn",
    "use32BitWorkerProcess",
    "netFrameworkVersion",
    "functionAppScaleLimit",
    "preWarmedInstanceCount",
    "functionsRuntimeScaleMonitoringEnabled",
}
# App settings Flex Consumption refuses: the runtime comes from functionAppConfig.runtime.
FLEX_REJECTED_APP_SETTINGS = {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION"}


def all_keys(value: Any) -> set[str]:
    """Every property name in a parsed Bicep value, at any depth."""
    if isinstance(value, dict):
        return set(value) | {key for item in value.values() for key in all_keys(item)}
    if isinstance(value, list):
        return {key for item in value for key in all_keys(item)}
    return set()


def test_no_template_sets_a_site_property_flex_consumption_rejects(templates: dict[str, Template]) -> None:
    sites = 0
    for path, template in templates.items():
        for resource in resources_of(template, "Microsoft.Web/sites").values():
            sites += 1
            site_config = resource["properties"].get("siteConfig", {})
            assert not all_keys(site_config) & FLEX_REJECTED_SITE_CONFIG, path
        # The same keys set later through a config resource would fail the same way.
        for resource in resources_of(template, "Microsoft.Web/sites/config").values():
            assert not all_keys(resource) & FLEX_REJECTED_SITE_CONFIG, path
    assert sites == 1
    settings = templates["modules/functionapp.bicep"]["variables"]["hostSettings"]["value"]
    assert not set(settings) & FLEX_REJECTED_APP_SETTINGS


def test_python_version_is_the_newest_flex_runs_and_the_requirements_install_on_every_allowed_one(
    main: Template, templates: dict[str, Template]
) -> None:
    from packaging.requirements import Requirement

    module = templates["modules/functionapp.bicep"]
    allowed = {"3.11", "3.12", "3.13"}
    assert allowed_values(main, "pythonVersion") == allowed == allowed_values(module, "pythonVersion")
    # 3.13 is what the host-contract suite runs on Azure's own worker (tests/worker).
    assert main["parameters"]["pythonVersion"]["default"] == "3.13"
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert min(allowed) == requires.removeprefix(">=")

    # Exactly one azure-functions line applies on each version Azure may run.
    lines = [line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    requirements = [Requirement(line) for line in lines if line and not line.startswith("-")]
    for version in sorted(allowed):
        environment = {"python_version": version, "python_full_version": f"{version}.0"}
        applying = [
            r for r in requirements if r.name == "azure-functions" and (not r.marker or r.marker.evaluate(environment))
        ]
        assert len(applying) == 1, (version, applying)


def test_maximum_instance_count_deploys_in_every_region(main: Template, templates: dict[str, Template]) -> None:
    """1-1000 is the documented range; below 40 only where the change has rolled out."""
    for template in (main, templates["modules/functionapp.bicep"]):
        decorators = {d["type"]: d["argument"] for d in template["parameters"]["maximumInstanceCount"]["decorators"]}
        assert (decorators["min_value"], decorators["max_value"]) == (1, 1000)
    assert main["parameters"]["maximumInstanceCount"]["default"] == 40


def test_host_storage_is_identity_based_with_all_three_services(templates: dict[str, Template]) -> None:
    settings = templates["modules/functionapp.bicep"]["variables"]["hostSettings"]["value"]
    # Durable Functions needs queues and tables as well as blobs.
    for service in ("blob", "queue", "table"):
        assert accessor_path(settings[f"AzureWebJobsStorage__{service}ServiceUri"]) == [
            "storage",
            "properties",
            "primaryEndpoints",
            service,
        ]
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert "ClientId=${identityClientId};Authorization=AAD" == settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]


def test_role_assignments_grant_the_six_roles_on_the_right_resources(templates: dict[str, Template]) -> None:
    rbac = templates["modules/rbac.bicep"]
    roles = resolve(rbac, "roles")
    assignments = resources_of(rbac, "Microsoft.Authorization/roleAssignments")
    assert len(assignments) == len(ROLE_SCOPES) + 1  # Cognitive Services User twice: Vision and Content Safety
    granted: dict[str, tuple[str, str]] = {}
    user_on: set[str] = set()
    for symbol, assignment in assignments.items():
        role_key = accessor_path(
            assignment["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        )
        role_id = roles[role_key[-1]]
        scope = rbac["resources"][assignment["scope"]]
        assert assignment["properties"]["principalId"] == "principalId", symbol
        assert accessor_path(assignment["name"]["function"]["parameters"]["base_string"]) == [assignment["scope"], "id"]
        granted[role_id] = (scope["type"], scope["config"]["name"])
        if role_id == COGNITIVE_SERVICES_USER:
            user_on.add(scope["config"]["name"])
    assert {role: scope_type for role, (scope_type, _) in granted.items()} == ROLE_SCOPES
    # The two Cognitive Services roles land on their own accounts, not crosswise.
    assert granted[OPENAI_USER][1] == "openAiAccountName"
    assert user_on == {"visionAccountName", "contentSafetyAccountName"}


def test_main_grants_the_roles_to_the_app_identity_and_optionally_to_the_user(main: Template) -> None:
    calls = [module for module in main["modules"].values() if module["detail"]["path"] == "modules/rbac.bicep"]
    by_type = {call["config"].get("config", call["config"])["params"]["principalType"]: call for call in calls}
    # The user's kind comes from a parameter: azd may run as a service principal in a pipeline.
    assert set(by_type) == {"ServicePrincipal", "principalType"}
    app_params = by_type["ServicePrincipal"]["config"]["params"]
    assert accessor_path(app_params["principalId"]) == ["identity", "outputs", "principalId"]
    assert accessor_path(app_params["openAiAccountName"]) == ["openAi", "outputs", "name"]
    assert accessor_path(app_params["visionAccountName"]) == ["vision", "outputs", "name"]
    assert accessor_path(app_params["contentSafetyAccountName"]) == ["contentSafety", "outputs", "name"]
    user_params = by_type["principalType"]["config"].get("config", by_type["principalType"]["config"])["params"]
    assert accessor_path(user_params["contentSafetyAccountName"]) == ["contentSafety", "outputs", "name"]
    user_call = by_type["principalType"]["config"]
    assert "grantUserAccess" in json.dumps(user_call["condition"]), "the user's roles sit behind a parameter"


# --- app settings and storage layout agree with the code -------------------------------------


def test_app_settings_are_exactly_the_settings_the_code_reads(main: Template, templates: dict[str, Template]) -> None:
    written = set(main["variables"]["appSettings"]["value"])
    read = {spec.name for spec in SETTINGS if not spec.local_only}
    local_only = {spec.name for spec in SETTINGS if spec.local_only}
    assert sorted(read - written) == [], "settings the code reads but Bicep does not write"
    stale = {name for name in written - read if name.startswith(("VARIA_", "AZURE_"))}
    assert sorted(stale) == [], "settings Bicep writes but the code no longer reads"
    assert written == read

    host = set(templates["modules/functionapp.bicep"]["variables"]["hostSettings"]["value"])
    assert all(name.startswith(HOST_SETTING_PREFIXES) for name in host), sorted(host)
    # API keys and local folders never go to Azure.
    assert not (written | host) & local_only


def test_function_app_writes_both_setting_sets_and_main_passes_the_code_settings(
    main: Template, templates: dict[str, Template]
) -> None:
    app = only(templates["modules/functionapp.bicep"], "Microsoft.Web/sites")
    loop = app["properties"]["siteConfig"]["appSettings"]["loop_type"]["detail"]["object_name"]
    assert "'union'" in loop and "'hostSettings'" in loop and "'appSettings'" in loop
    call = module_call(main, "modules/functionapp.bicep")["params"]
    assert call["appSettings"] == "appSettings"
    # The SDKs (AZURE_CLIENT_ID) and the host (AzureWebJobsStorage__clientId) use the app's own identity.
    identity_client_id = ["identity", "outputs", "clientId"]
    assert accessor_path(call["identityClientId"]) == identity_client_id
    assert accessor_path(main["variables"]["appSettings"]["value"]["AZURE_CLIENT_ID"]) == identity_client_id
    assert accessor_path(call["identityId"]) == ["identity", "outputs", "id"]


def test_app_setting_values_pass_the_codes_validation(main: Template, templates: dict[str, Template]) -> None:
    """The settings as deployed (endpoints filled in) make a valid Settings that uses Azure everywhere."""
    values = main["variables"]["appSettings"]["value"]
    env = {}
    for name, value in values.items():
        path = accessor_path(value)
        if name == "VARIA_IMAGE_DEPLOYMENTS":
            env[name] = deployed_image_deployments(main, templates, image_regions="", capacity=2)
        elif name.endswith("_ENDPOINT"):
            assert path[1:] == ["outputs", "endpoint"], name
            env[name] = f"https://{path[0].lower()}-example.cognitiveservices.azure.com/"
        elif path[1:2] == ["outputs"]:  # the identity's client id, the deployment names
            env[name] = f"deployed-{path[-1]}"
        else:
            env[name] = str(evaluate(main, value))
    env["AzureWebJobsStorage__blobServiceUri"] = "https://stexample.blob.core.windows.net/"
    try:
        settings = Settings.from_env(env)
    except ConfigError as exc:
        pytest.fail(f"the app settings written by main.bicep are refused by shared/config.py: {exc}")
    assert (settings.caption_provider, settings.compose_provider, settings.image_provider) == (
        "vision",
        "chat",
        "gpt-image",
    )
    assert settings.moderation_provider == "content-safety"
    assert settings.storage == "blob"


def test_literal_app_settings_and_deployment_names_default_to_the_codes_defaults(main: Template) -> None:
    values = main["variables"]["appSettings"]["value"]
    for spec in SETTINGS:
        if spec.local_only or not isinstance(values[spec.name], str):
            continue
        expected = PINNED_FOR_AZURE.get(spec.name, spec.default)
        assert str(resolve(main, values[spec.name])) == expected, spec.name
    defaults = {spec.name: spec.default for spec in SETTINGS}
    parameters = main["parameters"]
    assert parameters["chatDeploymentName"]["default"] == defaults["AZURE_OPENAI_CHAT_DEPLOYMENT"]
    assert parameters["imageDeploymentName"]["default"] == defaults["AZURE_OPENAI_IMAGE_DEPLOYMENT"]
    # The models the app is told about are the models the templates deploy.
    assert parameters["chatModelName"]["default"] == defaults["AZURE_OPENAI_CHAT_MODEL"]
    assert parameters["imageModelName"]["default"] == defaults["AZURE_OPENAI_IMAGE_MODEL"]


# Deployable today without an access form and not retiring within six months (README, "Models").
DEFAULT_MODELS = {
    ("chatModelName", "chatModelVersion"): ("gpt-5.4-mini", "2026-03-17"),
    ("imageModelName", "imageModelVersion"): ("gpt-image-2", "2026-04-21"),
}


def test_default_models_are_current_and_the_app_is_told_which_model_each_deployment_runs(
    main: Template, templates: dict[str, Template]
) -> None:
    parameters = main["parameters"]
    for (name, version), expected in DEFAULT_MODELS.items():
        assert (parameters[name]["default"], parameters[version]["default"]) == expected
    # Only models the app knows the sizes of; gpt-image-1 (Preview, retired) is not offered.
    allowed = allowed_values(main, "imageModelName")
    assert allowed == {"gpt-image-2", "gpt-image-1.5", "gpt-image-1-mini"} and allowed <= set(IMAGE_MODELS)
    # The app settings carry the model parameters (not the deployment names, which are the user's choice).
    settings = main["variables"]["appSettings"]["value"]
    assert settings["AZURE_OPENAI_CHAT_MODEL"] == "chatModelName"
    assert settings["AZURE_OPENAI_IMAGE_MODEL"] == "imageModelName"
    assert main["outputs"]["AZURE_OPENAI_IMAGE_MODEL"]["value"] == "imageModelName"
    assert main["outputs"]["AZURE_OPENAI_CHAT_MODEL"]["value"] == "chatModelName"
    # Both deployments are Global Standard: the GPT-image models are served only that way.
    openai = templates["modules/openai.bicep"]
    deployments = resources_of(openai, "Microsoft.CognitiveServices/accounts/deployments")
    assert {d["sku"]["name"] for d in deployments.values()} == {"GlobalStandard"}
    assert {d["properties"]["model"]["name"] for d in deployments.values()} == {"chatModelName", "imageModelName"}
    call = module_call(main, "modules/openai.bicep")["params"]
    assert (call["imageModelName"], call["imageModelVersion"]) == ("imageModelName", "imageModelVersion")


def test_containers_and_lifecycle_match_the_storage_layout(main: Template, templates: dict[str, Template]) -> None:
    app_containers = resolve(main, "appContainerNames")
    assert [resolve(main, name) for name in app_containers] == list(CONTAINERS)
    storage_call = module_call(main, "modules/storage.bicep")["params"]
    assert storage_call["containerNames"]["function"]["parameters"] == {
        "arg_1": "appContainerNames",
        "arg_2": ["deploymentContainerName"],
    }
    assert set(resolve(main, "expiringContainerNames")) == {UPLOADS, WORK}
    assert main["parameters"]["intermediateRetentionDays"]["default"] == 7

    rule = only(templates["modules/storage.bicep"], "Microsoft.Storage/storageAccounts/managementPolicies")
    definition = rule["properties"]["policy"]["rules"][0]["definition"]
    assert definition["filters"]["prefixMatch"]["config"] == "${containerName}/"
    assert definition["actions"]["baseBlob"]["delete"] == {"daysAfterModificationGreaterThan": "retentionDays"}


def test_model_deployments_have_their_own_capacity_and_regions_that_serve_them(main: Template) -> None:
    call = module_call(main, "modules/openai.bicep")["params"]
    assert call["chatCapacity"] == "chatCapacity" and call["imageCapacity"] == "imageCapacity"
    assert allowed_values(main, "openAiLocation") == {
        "eastus2",
        "polandcentral",
        "swedencentral",
        "uaenorth",
        "westus3",
    }
    assert allowed_values(main, "visionLocation") == {
        "eastus",
        "westus",
        "francecentral",
        "northeurope",
        "westeurope",
        "southeastasia",
        "eastasia",
        "koreacentral",
    }


def test_content_safety_is_keyless_in_a_region_that_serves_every_check_the_app_uses(
    main: Template, templates: dict[str, Template]
) -> None:
    """Content harms (text, image) and Prompt Shields: the regions of Microsoft's "Region availability" table."""
    account = only(templates["modules/contentsafety.bicep"], "Microsoft.CognitiveServices/accounts")
    assert account["properties"]["disableLocalAuth"] is True
    # As the other AI accounts: public unless VNet mode closes it (test_vnet_mode_*).
    assert account["properties"]["publicNetworkAccess"] == "publicNetworkAccess"
    assert templates["modules/contentsafety.bicep"]["parameters"]["publicNetworkAccess"]["default"] == "Enabled"
    call = module_call(main, "modules/contentsafety.bicep")["params"]
    assert call["location"] == "contentSafetyLocation"
    regions = allowed_values(main, "contentSafetyLocation")
    assert {"eastus", "westeurope", "swedencentral", "japaneast", "australiaeast", "uaenorth"} <= regions
    assert len(regions) == 28
    assert main["parameters"]["contentSafetyLocation"]["default"] in regions
    values = main["variables"]["appSettings"]["value"]
    assert accessor_path(values["AZURE_CONTENT_SAFETY_ENDPOINT"]) == ["contentSafety", "outputs", "endpoint"]
    assert values["VARIA_MODERATION_PROVIDER"] == "content-safety"
    assert "AZURE_CONTENT_SAFETY_API_KEY" not in values  # keyless in Azure
    assert accessor_path(main["outputs"]["AZURE_CONTENT_SAFETY_ENDPOINT"]["value"]) == [
        "contentSafety",
        "outputs",
        "endpoint",
    ]


# --- azd: azure.yaml, parameters, outputs and the postdeploy hook ----------------------------


def read_simple_yaml(path: Path) -> dict[str, Any]:
    """Nested `key: value` mappings, enough for azure.yaml (no lists, no flow style)."""
    root: dict[str, Any] = {}
    stack: list[tuple[int, dict[str, Any]]] = [(-1, root)]
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        key, separator, value = line.strip().partition(":")
        assert separator and not key.startswith("-"), f"{path.name}: unsupported line {line!r}"
        while indent <= stack[-1][0]:
            stack.pop()
        if value.strip():
            stack[-1][1][key] = value.strip()
        else:
            child: dict[str, Any] = {}
            stack[-1][1][key] = child
            stack.append((indent, child))
    return root


def test_azure_yaml_deploys_the_repo_root_to_the_tagged_app_and_runs_the_hooks(
    main: Template, templates: dict[str, Template]
) -> None:
    azure_yaml = read_simple_yaml(REPO / "azure.yaml")
    services = azure_yaml["services"]
    assert list(services) == [resolve(main, "serviceName")], "azd finds the app by its azd-service-name tag"
    assert services["api"] == {"project": ".", "language": "python", "host": "function"}
    assert module_call(main, "modules/functionapp.bicep")["params"]["serviceName"] == "serviceName"
    tags = only(templates["modules/functionapp.bicep"], "Microsoft.Web/sites")["tags"]
    # pycep keeps the quotes of a quoted key.
    assert tags["function"]["parameters"]["arg_2"] == {"'azd-service-name'": "serviceName"}

    hooks = azure_yaml["hooks"]["postdeploy"]
    assert hooks["posix"]["run"] == "./infra/hooks/postdeploy.sh"
    assert hooks["windows"]["run"] == "./infra/hooks/postdeploy.ps1"
    assert (REPO / hooks["posix"]["run"]).is_file() and (REPO / hooks["windows"]["run"]).is_file()


def test_parameters_file_matches_main_bicep(main: Template) -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = main["parameters"]
    assert set(parameters) <= set(declared), "parameters.json sets parameters main.bicep does not declare"
    required = {name for name, parameter in declared.items() if "default" not in parameter}
    assert required <= set(parameters), "main.bicep parameters without a default must come from azd"
    for name, entry in parameters.items():
        match = re.fullmatch(r"\$\{(\w+)(?:=(.*))?\}", entry["value"])
        assert match, f"{name}: use azd's ${{VAR}} or ${{VAR=default}}"
        if match.group(2) is not None:
            default = declared[name]["default"]
            expected = str(default).lower() if isinstance(default, bool) else str(default)
            assert match.group(2) == expected, f"{name}: two different defaults"


def hook_variables() -> set[str]:
    """The environment variables the shell hook requires (its `need` list)."""
    text = HOOK_SH.read_text()
    loop = re.search(r"for name in (.*?); do", text, re.S)
    assert loop, "postdeploy.sh should check its variables in a `for name in ...; do need` loop"
    return set(loop.group(1).replace("\\", " ").split())


# Set by azd itself in every hook's environment, not by main.bicep's outputs.
AZD_VARIABLES = {"AZURE_SUBSCRIPTION_ID"}


def test_hooks_read_only_names_main_bicep_outputs(main: Template) -> None:
    variables = hook_variables()
    assert AZD_VARIABLES <= variables
    assert variables - AZD_VARIABLES <= set(main["outputs"]), "the hook needs values that azd provision does not output"
    assert variables == set(re.findall(r"'([A-Z_]+)'", HOOK_PS1.read_text().split("foreach")[0]))


def test_outputs_hold_no_secret(main: Template) -> None:
    for name, output in main["outputs"].items():
        assert not re.search(r"KEY|SECRET|PASSWORD|CONNECTION_STRING", name), name
        assert output["decorators"] == [] or all(d["type"] != "secure" for d in output["decorators"])


def event_grid_blob_triggers() -> dict[str, str]:
    """Function name -> blob path of the app's Event Grid blob triggers, as the host will index them."""
    import function_app

    found = {}
    for function in function_app.app.get_functions():
        for binding in function.get_bindings():
            spec = binding.get_dict_repr()
            if spec.get("type") == "blobTrigger" and spec.get("source") == "EventGrid":
                found[function.get_function_name()] = spec["path"]
    return found


def test_blob_trigger_names_in_bicep_are_the_apps(main: Template) -> None:
    function_name = resolve(main, main["outputs"]["BLOB_TRIGGER_FUNCTION_NAME"]["value"])
    container = resolve(main, main["outputs"]["BLOB_TRIGGER_CONTAINER_NAME"]["value"])
    assert event_grid_blob_triggers() == {function_name: f"{container}/{{name}}"}
    assert container == INPUTS


SUBSCRIPTION = "00000000-0000-0000-0000-00000000c0de"
FAKE_KEY = "fake-blobs-key-3f9a"


def fake_az(tmp_path: Path, keys: list[dict[str, Any]] | None = None, create: dict[str, Any] | None = None) -> Path:
    """An `az` on PATH that logs its arguments and answers from a script.

    `keys` are the answers to successive `functionapp keys list` calls (the last one repeats),
    `create` the answer to the event subscription; each is {"exit", "stdout", "stderr"}.
    """
    log = tmp_path / "az.log"
    answers = tmp_path / "az-answers.json"
    answers.write_text(
        json.dumps(
            {
                "keys": keys or [{"exit": 0, "stdout": FAKE_KEY + "\n"}],
                "create": create or {"exit": 0},
            }
        )
    )
    script = tmp_path / "bin" / "az"
    script.parent.mkdir()
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"log, answers = {str(log)!r}, {str(answers)!r}\n"
        "with open(log, 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "script = json.load(open(answers))\n"
        "if sys.argv[1:4] == ['functionapp', 'keys', 'list']:\n"
        "    calls = sum(1 for line in open(log) if '\"keys\"' in line)\n"
        "    answer = script['keys'][min(calls, len(script['keys'])) - 1]\n"
        "else:\n"
        "    answer = script['create']\n"
        "    endpoint = sys.argv[sys.argv.index('--endpoint') + 1]\n"
        "    answer['stderr'] = answer.get('stderr', '').replace('{endpoint}', endpoint)\n"
        "sys.stdout.write(answer.get('stdout', ''))\n"
        "sys.stderr.write(answer.get('stderr', ''))\n"
        "sys.exit(answer.get('exit', 0))\n"
    )
    script.chmod(0o755)
    return log


def hook_outputs(main: Template) -> dict[str, str]:
    """The hook's environment as azd gives it after a provision."""
    outputs = {
        "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
        "BLOB_TRIGGER_FUNCTION_NAME": resolve(main, main["outputs"]["BLOB_TRIGGER_FUNCTION_NAME"]["value"]),
        "BLOB_TRIGGER_CONTAINER_NAME": resolve(main, main["outputs"]["BLOB_TRIGGER_CONTAINER_NAME"]["value"]),
        "AZURE_FUNCTION_APP_NAME": "func-varia-test",
        "AZURE_FUNCTION_APP_URL": "https://func-varia-test.azurewebsites.net",
        "AZURE_RESOURCE_GROUP": "rg-test",
        "AZURE_STORAGE_SYSTEM_TOPIC_NAME": "evgt-varia-test",
        "AZURE_STORAGE_DEADLETTER_CONTAINER_ID": (
            f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-test/providers/Microsoft.Storage/storageAccounts/"
            "stvariatest/blobServices/default/containers/eventgrid-deadletter"
        ),
    }
    assert set(outputs) == hook_variables()
    return outputs


def run_hook(main: Template, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    env = {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "POSTDEPLOY_RETRY_SECONDS": "0",
        **hook_outputs(main),
    }
    run = subprocess.run(["sh", str(HOOK_SH)], env=env, capture_output=True, text=True, timeout=60)
    log = tmp_path / "az.log"
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    assert FAKE_KEY not in run.stdout + run.stderr, "the hook must never print the system key"
    return run, calls


def options_of(call: list[str]) -> dict[str, str]:
    command_words = 3 if call[0] == "functionapp" else 4
    return dict(zip(call[command_words::2], call[command_words + 1 :: 2], strict=True))


def test_postdeploy_hook_subscribes_the_blob_trigger_to_the_inputs_container(main: Template, tmp_path: Path) -> None:
    fake_az(tmp_path)
    run, calls = run_hook(main, tmp_path)
    assert run.returncode == 0, run.stderr

    assert [call[:3] for call in calls] == [
        ["functionapp", "keys", "list"],
        ["eventgrid", "system-topic", "event-subscription"],
    ]
    # Every call names azd's subscription, whatever `az account show` would say.
    assert all(options_of(call)["--subscription"] == SUBSCRIPTION for call in calls)
    create = calls[-1]
    assert create[3] == "create"
    options = options_of(create)
    assert options["--endpoint"] == (
        "https://func-varia-test.azurewebsites.net/runtime/webhooks/blobs"
        f"?functionName=Host.Functions.start_job_from_blob&code={FAKE_KEY}"
    )
    assert options["--endpoint-type"] == "webhook"
    assert options["--included-event-types"] == "Microsoft.Storage.BlobCreated"
    # The trailing slash keeps a container named e.g. 'inputs-old' out of the filter.
    assert options["--subject-begins-with"] == "/blobServices/default/containers/inputs/"
    assert options["--system-topic-name"] == "evgt-varia-test"
    # Undeliverable events end in the dead-letter container, within Event Grid's allowed ranges.
    assert options["--deadletter-endpoint"] == hook_outputs(main)["AZURE_STORAGE_DEADLETTER_CONTAINER_ID"]
    assert 1 <= int(options["--max-delivery-attempts"]) <= 30
    assert 1 <= int(options["--event-ttl"]) <= 1440


def test_the_dead_letter_container_exists_and_is_what_the_hook_gets(
    main: Template, templates: dict[str, Template]
) -> None:
    storage = templates["modules/storage.bicep"]
    call = module_call(main, "modules/storage.bicep")["params"]
    name = resolve(main, call["deadLetterContainerName"])
    assert name == "eventgrid-deadletter"
    loop = storage["resources"]["containers"]["config"]
    # The containers loop runs over the app's containers plus the dead-letter one.
    assert "deadLetterContainerName" in json.dumps(loop["loop_type"])
    output = json.dumps(storage["outputs"]["deadLetterContainerId"]["value"])
    assert "/blobServices/default/containers/" in output and "deadLetterContainerName" in output
    assert accessor_path(main["outputs"]["AZURE_STORAGE_DEADLETTER_CONTAINER_ID"]["value"]) == [
        "storage",
        "outputs",
        "deadLetterContainerId",
    ]
    # Not expiring: a dead-lettered event is the only trace of a blob no job was started for.
    assert name not in [resolve(main, n) for n in resolve(main, "expiringContainerNames")]


def test_postdeploy_hook_shows_azs_error_at_once_with_what_to_do(main: Template, tmp_path: Path) -> None:
    error = (
        "ERROR: (AuthorizationFailed) The client 'dev@contoso.com' with object id '1234' does not have authorization "
        "to perform action 'Microsoft.Web/sites/host/listkeys/action' over scope '/subscriptions/...'\n"
    )
    fake_az(tmp_path, keys=[{"exit": 1, "stderr": error}])
    run, calls = run_hook(main, tmp_path)
    assert run.returncode == 1
    assert len(calls) == 1, "an authorization error is not worth waiting for"
    assert "waiting" not in run.stdout
    assert "(AuthorizationFailed) The client 'dev@contoso.com'" in run.stderr
    assert "Contributor" in run.stderr and "rg-test" in run.stderr


def test_postdeploy_hook_names_a_subscription_az_cannot_see(main: Template, tmp_path: Path) -> None:
    error = f"ERROR: Subscription '{SUBSCRIPTION}' not found. Check the spelling and casing and try again.\n"
    fake_az(tmp_path, keys=[{"exit": 1, "stderr": error}])
    run, calls = run_hook(main, tmp_path)
    assert run.returncode == 1 and len(calls) == 1
    assert error.strip() in run.stderr
    assert "az account list" in run.stderr and SUBSCRIPTION in run.stderr


def test_postdeploy_hook_waits_while_the_host_starts(main: Template, tmp_path: Path) -> None:
    starting = {"exit": 1, "stderr": "ERROR: Encountered an error (ServiceUnavailable) from host runtime.\n"}
    empty = {"exit": 0, "stdout": "\n"}
    fake_az(tmp_path, keys=[starting, empty, {"exit": 0, "stdout": FAKE_KEY + "\n"}])
    run, calls = run_hook(main, tmp_path)
    assert run.returncode == 0, run.stderr
    assert [call[:3] for call in calls].count(["functionapp", "keys", "list"]) == 3
    assert "the host is still starting (1/12)" in run.stdout
    assert "the host has not created it yet (2/12)" in run.stdout
    assert calls[-1][:4] == ["eventgrid", "system-topic", "event-subscription", "create"]


def test_postdeploy_hook_gives_up_on_a_missing_key_with_the_last_answer(main: Template, tmp_path: Path) -> None:
    fake_az(tmp_path, keys=[{"exit": 0, "stdout": ""}])
    run, calls = run_hook(main, tmp_path)
    assert run.returncode == 1
    assert len(calls) == 12
    assert "has no blobs_extension system key (the host has not created it yet)" in run.stderr
    assert "az functionapp function list" in run.stderr


def test_postdeploy_hook_shows_a_failed_subscription_without_the_key(main: Template, tmp_path: Path) -> None:
    # az quotes the endpoint, key included, when Event Grid's validation handshake fails.
    error = (
        "ERROR: Webhook validation handshake failed for {endpoint}. Http POST request failed with response code 401.\n"
    )
    fake_az(tmp_path, create={"exit": 1, "stderr": error})
    run, calls = run_hook(main, tmp_path)
    assert run.returncode == 1
    assert (
        "Webhook validation handshake failed for https://func-varia-test.azurewebsites.net/runtime/webhooks/"
        in run.stderr
    )
    assert "code=***" in run.stderr
    assert "start_job_from_blob" in run.stderr and "az functionapp function list" in run.stderr


def test_postdeploy_hook_explains_a_missing_output(tmp_path: Path) -> None:
    fake_az(tmp_path)
    env = {"PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.run(["sh", str(HOOK_SH)], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "AZURE_SUBSCRIPTION_ID is not set" in run.stderr and "azd" in run.stderr
    assert not (tmp_path / "az.log").exists()


def powershell_az_calls() -> list[str]:
    """The az commands postdeploy.ps1 runs, each joined onto one line (backtick continuations)."""
    text = re.sub(r"`\r?\n\s*", " ", HOOK_PS1.read_text())
    return [line.strip() for line in text.splitlines() if re.match(r"\s*(\$\w+ = )?(Invoke-Az|az) ", line)]


def test_powershell_hook_makes_the_same_subscription() -> None:
    calls = powershell_az_calls()
    # az itself runs in one place, Invoke-Az, which keeps its stderr for the message.
    assert calls[0] == "az @args 2>$azErrorPath"
    calls = calls[1:]
    assert len(calls) == 2
    # Every az call goes through Invoke-Az (stderr kept for the message) and names the subscription.
    assert all("Invoke-Az " in call and "--subscription $env:AZURE_SUBSCRIPTION_ID" in call for call in calls)
    keys, create = calls
    assert '--query "systemKeys.blobs_extension"' in keys
    assert "Host.Functions.$functionName" in HOOK_PS1.read_text()
    assert '"/blobServices/default/containers/$container/"' in HOOK_PS1.read_text()
    for option in (
        "--included-event-types Microsoft.Storage.BlobCreated",
        "--endpoint-type webhook",
        "--max-delivery-attempts $maxDeliveryAttempts",
        "--event-ttl $eventTtlMinutes",
        "--deadletter-endpoint $env:AZURE_STORAGE_DEADLETTER_CONTAINER_ID",
    ):
        assert option in create, option
    # The same limits in both hooks.
    sh, ps1 = HOOK_SH.read_text(), HOOK_PS1.read_text()
    limits = (("max_delivery_attempts", "maxDeliveryAttempts"), ("event_ttl_minutes", "eventTtlMinutes"))
    for sh_name, ps1_name in limits:
        assert re.findall(rf"^{sh_name}=(\d+)$", sh, re.M) == re.findall(rf"^\${ps1_name} = (\d+)$", ps1, re.M) != []


def test_image_quota_settings_follow_the_deployment_capacity(main: Template) -> None:
    """3 requests per minute per capacity unit; activity concurrency as the code sizes it locally,
    from the quota of every image deployment together."""
    rpm = main["variables"]["appSettings"]["value"]["VARIA_IMAGE_REQUESTS_PER_MINUTE"]
    concurrency = module_call(main, "modules/functionapp.bicep")["params"]["maxConcurrentActivityFunctions"]
    for regions, count in (("", 1), ("swedencentral", 2), ("eastus2,swedencentral,westus3,uaenorth,polandcentral", 5)):
        for capacity in range(1, 40):
            assert evaluate(main, rpm, imageCapacity=capacity, imageRegions=regions) == str(capacity * 3)
            expected = activity_concurrency(capacity * 3 * count)
            assert evaluate(main, concurrency, imageCapacity=capacity, imageRegions=regions) == expected, (
                regions,
                capacity,
            )


# --- several image regions: one account and one GPT-image deployment each --------------------

IMAGE_REGIONS = {"eastus2", "polandcentral", "swedencentral", "uaenorth", "westus3"}
MAIN_IMAGE_ENDPOINT = "https://oai-varia-main.openai.azure.com/"


def image_accounts(main: Template, templates: dict[str, Template], image_regions: str) -> list[dict[str, Any]]:
    """The regional image accounts main.bicep makes for `imageRegions` (the main region's excluded),
    as ARM would see them: name, location and properties, with the endpoint Azure gives a subdomain."""
    module = templates["modules/openai-images.bicep"]
    call = module_call(main, "modules/openai-images.bicep")["params"]
    bound = {"imageRegions": image_regions, "resourceToken": "tok"}
    regions = evaluate(main, call["regions"], **bound)
    assert set(regions) <= allowed_values(module, "regions"), "ARM would refuse a region the module does not allow"
    body = resources_of(module, "Microsoft.CognitiveServices/accounts")["accounts"]
    accounts = []
    for region in regions:
        account = evaluate(module, body, region=region, namePrefix=evaluate(main, call["namePrefix"], **bound))
        subdomain = account["properties"]["customSubDomainName"]
        account["id"] = f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/{subdomain}"
        account["properties"]["endpoint"] = f"https://{subdomain}.openai.azure.com/"
        accounts.append(account)
    return accounts


def deployed_image_deployments(
    main: Template, templates: dict[str, Template], image_regions: str, capacity: int
) -> str:
    """VARIA_IMAGE_DEPLOYMENTS as main.bicep writes it after a deployment with these parameters."""
    module = templates["modules/openai-images.bicep"]
    call = module_call(main, "modules/openai-images.bicep")["params"]
    accounts = image_accounts(main, templates, image_regions)
    deployment_name = evaluate(main, call["deploymentName"])
    body = resources_of(module, "Microsoft.CognitiveServices/accounts/deployments")["imageDeployments"]
    deployments = [{"name": evaluate(module, body["name"], deploymentName=deployment_name)} for _ in accounts]
    regions = [account["location"] for account in accounts]
    outputs = evaluate(
        module,
        module["outputs"]["deployments"]["value"],
        regions=regions,
        accounts=accounts,
        imageDeployments=deployments,
        capacity=evaluate(main, call["capacity"], imageCapacity=capacity),
    )
    setting = main["variables"]["appSettings"]["value"]["VARIA_IMAGE_DEPLOYMENTS"]
    main_account = {"outputs": {"endpoint": MAIN_IMAGE_ENDPOINT, "imageDeploymentName": deployment_name}}
    written = evaluate(
        main,
        setting,
        imageRegions=image_regions,
        imageCapacity=capacity,
        openAi=main_account,
        imageRegionAccounts={"outputs": {"deployments": outputs}},
    )
    assert isinstance(written, str)
    return written


def test_image_regions_default_to_the_main_region_alone(main: Template, templates: dict[str, Template]) -> None:
    """The default deploy makes one image account, the main one, and lists its one deployment."""
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["imageRegions"]["value"] == "${AZURE_OPENAI_IMAGE_REGIONS=}"
    assert main["parameters"]["imageRegions"]["default"] == ""
    assert image_accounts(main, templates, "") == []
    # The main account (modules/openai.bicep, one account, called once) holds the one image deployment.
    assert len(resources_of(templates["modules/openai.bicep"], "Microsoft.CognitiveServices/accounts")) == 1
    assert not module_call(main, "modules/openai.bicep").get("loop_type")
    listed = json.loads(deployed_image_deployments(main, templates, "", capacity=2))
    assert listed == [{"endpoint": MAIN_IMAGE_ENDPOINT, "deployment": "gpt-image-2", "rpm": 6}]
    # Listing the main region alone changes nothing.
    assert image_accounts(main, templates, "eastus2") == []


def test_image_regions_are_cleaned_and_each_made_once(main: Template, templates: dict[str, Template]) -> None:
    accounts = image_accounts(main, templates, " swedencentral, WestUS3,,eastus2,swedencentral ")
    assert [account["location"] for account in accounts] == ["swedencentral", "westus3"]
    names = [account["name"] for account in accounts]
    assert names == ["oai-varia-tok-swedencentral", "oai-varia-tok-westus3"]
    # Globally unique subdomains within the 64 characters allowed, whatever the region.
    longest = image_accounts(main, templates, ",".join(sorted(IMAGE_REGIONS)))
    assert all(len(account["name"]) <= 64 for account in longest) and len(longest) == 4


def test_image_regions_are_the_regions_that_serve_gpt_image(main: Template, templates: dict[str, Template]) -> None:
    module = templates["modules/openai-images.bicep"]
    assert allowed_values(module, "regions") == allowed_values(main, "openAiLocation") == IMAGE_REGIONS


@pytest.mark.parametrize(
    "regions",
    ["", "swedencentral", "westus3,swedencentral", "eastus2,polandcentral,swedencentral,uaenorth,westus3"],
)
@pytest.mark.parametrize("capacity", [1, 2, 5])
def test_image_deployments_setting_lists_every_region_with_its_rpm(
    main: Template, templates: dict[str, Template], regions: str, capacity: int
) -> None:
    """The app gets every image deployment, the main region's first, each at capacity x 3 rpm,
    and shared/config.py accepts the list as it is written."""
    accounts = image_accounts(main, templates, regions)
    written = deployed_image_deployments(main, templates, regions, capacity)
    expected = [{"endpoint": MAIN_IMAGE_ENDPOINT, "deployment": "gpt-image-2", "rpm": capacity * 3}] + [
        {"endpoint": account["properties"]["endpoint"], "deployment": "gpt-image-2", "rpm": capacity * 3}
        for account in accounts
    ]
    assert json.loads(written) == expected
    extra = {region for region in regions.split(",") if region} - {"eastus2"}
    assert {account["location"] for account in accounts} == extra

    settings = Settings.from_env(
        {
            "AZURE_OPENAI_ENDPOINT": MAIN_IMAGE_ENDPOINT,
            "VARIA_IMAGE_PROVIDER": "gpt-image",
            "VARIA_IMAGE_DEPLOYMENTS": written,
        }
    )
    assert len(settings.image_deployments) == 1 + len(extra)
    assert {d.rpm for d in settings.image_deployments} == {capacity * 3}
    assert all(not d.api_key for d in settings.image_deployments)  # keyless


def test_regional_image_accounts_are_configured_as_the_main_account(templates: dict[str, Template]) -> None:
    """Keyless, with a custom subdomain, the same network rules: only the name and region differ."""
    main_account = only(templates["modules/openai.bicep"], "Microsoft.CognitiveServices/accounts")
    regional = resources_of(templates["modules/openai-images.bicep"], "Microsoft.CognitiveServices/accounts")
    assert list(regional) == ["accounts"]
    account = regional["accounts"]
    assert account["properties"]["disableLocalAuth"] is True
    assert account["properties"]["customSubDomainName"] == account["name"] == "${namePrefix}-${region}"
    assert account["location"] == "region"
    same = {key: value for key, value in account.items() if key not in ("name", "location")}
    assert same["properties"].pop("customSubDomainName") == account["name"]
    expected = {key: value for key, value in main_account.items() if key not in ("name", "location")}
    expected["properties"] = {k: v for k, v in expected["properties"].items() if k != "customSubDomainName"}
    assert same == expected

    deployment = only(templates["modules/openai-images.bicep"], "Microsoft.CognitiveServices/accounts/deployments")
    main_deployment = resources_of(
        templates["modules/openai.bicep"], "Microsoft.CognitiveServices/accounts/deployments"
    )["imageDeployment"]
    assert deployment["sku"] == {"name": "GlobalStandard", "capacity": "capacity"}
    assert main_deployment["sku"]["name"] == "GlobalStandard"
    assert deployment["properties"]["model"] == {"format": "OpenAI", "name": "modelName", "version": "modelVersion"}


def test_every_regional_account_grants_the_app_the_openai_user_role(
    main: Template, templates: dict[str, Template]
) -> None:
    module = templates["modules/openai-images.bicep"]
    accounts_loop = module["resources"]["accounts"]["config"]["loop_type"]["detail"]["array_name"]
    assignments = {
        symbol: resource["config"]
        for symbol, resource in module["resources"].items()
        if resource["type"] == "Microsoft.Authorization/roleAssignments"
    }
    assert set(assignments) == {"appOpenAiUser", "userOpenAiUser"}
    for symbol, loop in assignments.items():
        # One assignment per account: the same loop, each on its own account.
        assert loop["loop_type"]["detail"]["array_name"] == accounts_loop == "regions", symbol
        body = loop["config"]
        index = loop["loop_type"]["detail"]["index_name"]
        scope = body["scope"]["operator"]
        assert scope["type"] == "index_accessor" and scope["operands"] == {"operand_1": "accounts", "operand_2": index}
        role = body["properties"]["roleDefinitionId"]["function"]["parameters"]
        assert role["resource_type"] == "Microsoft.Authorization/roleDefinitions"
        assert resolve(module, role["resource_name_1"]) == OPENAI_USER
        # Names unique per account, principal and role, as rbac.bicep's.
        name = body["name"]["function"]["parameters"]
        base = name["base_string"]["operator"]
        assert base["type"] == "property_accessor" and base["operands"]["operand_2"] == "id"
        assert base["operands"]["operand_1"]["operator"] == scope
        assert name["extra_string_1"] == body["properties"]["principalId"]

    app = assignments["appOpenAiUser"]
    assert app["condition"] is None, "the app needs the role on every account, always"
    assert app["config"]["properties"]["principalId"] == "appPrincipalId"
    assert app["config"]["properties"]["principalType"] == "ServicePrincipal"
    call = module_call(main, "modules/openai-images.bicep")["params"]
    assert accessor_path(call["appPrincipalId"]) == ["identity", "outputs", "principalId"]
    # The user's role follows grantUserAccess, as the main account's (rbac.bicep's userRoles).
    assert "userPrincipalId" in json.dumps(assignments["userOpenAiUser"]["condition"])
    assert "grantUserAccess" in json.dumps(call["userPrincipalId"])
    assert call["userPrincipalType"] == "principalType"


def test_image_regions_follow_the_main_image_deployment(main: Template) -> None:
    """Each regional deployment runs the model, version, name and capacity of the main one."""
    call = module_call(main, "modules/openai-images.bicep")["params"]
    main_call = module_call(main, "modules/openai.bicep")["params"]
    assert (call["modelName"], call["modelVersion"], call["deploymentName"], call["capacity"]) == (
        main_call["imageModelName"],
        main_call["imageModelVersion"],
        main_call["imageDeploymentName"],
        main_call["imageCapacity"],
    )
    assert accessor_path(
        main["outputs"]["VARIA_IMAGE_DEPLOYMENTS"]["value"]["function"]["parameters"]["value_to_convert"]
    ) == ["imageDeployments"]


# --- VNet mode (vnetEnabled): private endpoints for storage and every AI account ------------

# The checks public mode skips, each with a reason starting "Public mode only": VNet mode must pass them.
PUBLIC_MODE_ONLY_SKIP = re.compile(r"^\s*//\s*checkov:skip=(CKV2?_[A-Z]+_\d+):Public mode only \(vnetEnabled false\)")
# Module parameters main.bicep sets from vnetEnabled, with their value in each mode (public, VNet).
# `vnetEnabled ? 'Disabled' : 'Enabled'`: the VNet branch of a condition on the mode.
VNET_CONDITION = re.compile(r"\bvnetEnabled \? ('[^']*') : '[^']*'")
NETWORK_PARAMETERS = {"publicNetworkAccess": ("Enabled", "Disabled"), "networkDefaultAction": ("Allow", "Deny")}
AI_MODULES = (
    "modules/openai.bicep",
    "modules/openai-images.bicep",
    "modules/vision.bicep",
    "modules/contentsafety.bicep",
)
DURABLE_TASK_DATA_CONTRIBUTOR = "0ad04412-c4d5-4796-b79c-f76d14c8d402"


def call_params(main: Template, path: str) -> dict[str, Any]:
    """The params main.bicep passes to a module, whether the call has a condition or not."""
    call = module_call(main, path)
    params: dict[str, Any] = call.get("config", call)["params"]
    return params


def test_optional_modes_are_off_by_default_and_set_from_azd(main: Template) -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["vnetEnabled"]["value"] == "${VNET_ENABLED=false}"
    assert parameters["durableBackend"]["value"] == "${DURABLE_BACKEND=storage}"
    assert parameters["durableTaskSchedulerSku"]["value"] == "${DURABLE_TASK_SCHEDULER_SKU=Consumption}"
    assert main["parameters"]["vnetEnabled"]["default"] is False
    assert main["parameters"]["durableBackend"]["default"] == "storage"
    assert allowed_values(main, "durableBackend") == {"storage", "dts"}
    assert allowed_values(main, "durableTaskSchedulerSku") == {"Consumption", "Dedicated"}
    assert main["outputs"]["VNET_ENABLED"]["value"] == "vnetEnabled"
    assert main["outputs"]["DURABLE_BACKEND"]["value"] == "durableBackend"


def test_the_network_exists_only_in_vnet_mode_and_the_app_joins_it(
    main: Template, templates: dict[str, Template]
) -> None:
    assert module_call(main, "modules/network.bicep")["condition"] == "vnetEnabled"
    call = call_params(main, "modules/functionapp.bicep")
    network = {"outputs": {"appSubnetId": "/subnets/app"}}
    assert evaluate(main, call["virtualNetworkSubnetId"], vnetEnabled=False, network=network) == ""
    assert evaluate(main, call["virtualNetworkSubnetId"], vnetEnabled=True, network=network) == "/subnets/app"
    # The private endpoints and their DNS records exist before the host first starts.
    app_call = module_call(main, "modules/functionapp.bicep")
    assert {"appRoles", "network"} <= set(app_call["dependsOn"])

    # Flex Consumption takes the subnet as the site's virtualNetworkSubnetId; none without one.
    module = templates["modules/functionapp.bicep"]
    site = only(module, "Microsoft.Web/sites")["properties"]
    assert evaluate(module, site["virtualNetworkSubnetId"], virtualNetworkSubnetId="") is None
    assert evaluate(module, site["virtualNetworkSubnetId"], virtualNetworkSubnetId="/subnets/app") == "/subnets/app"
    assert module["parameters"]["virtualNetworkSubnetId"]["default"] == ""

    subnets = {
        s["name"]: s["properties"]
        for s in only(templates["modules/network.bicep"], "Microsoft.Network/virtualNetworks")["properties"]["subnets"]
    }
    assert [d["properties"]["serviceName"] for d in subnets["app"]["delegations"]] == ["Microsoft.App/environments"]
    assert subnets["private-endpoints"]["privateEndpointNetworkPolicies"] == "Disabled"
    assert "delegations" not in subnets["private-endpoints"]
    # The app's telemetry and the scheduler are public endpoints: its subnet keeps outbound access.
    assert subnets["app"]["defaultOutboundAccess"] is True


@pytest.mark.parametrize("vnet_enabled", [False, True])
def test_storage_and_every_ai_account_close_their_public_endpoint_only_in_vnet_mode(
    main: Template, templates: dict[str, Template], vnet_enabled: bool
) -> None:
    expected = {name: values[vnet_enabled] for name, values in NETWORK_PARAMETERS.items()}
    storage_call = call_params(main, "modules/storage.bicep")
    for name, value in expected.items():
        assert evaluate(main, storage_call[name], vnetEnabled=vnet_enabled) == value, name
    storage = only(templates["modules/storage.bicep"], "Microsoft.Storage/storageAccounts")["properties"]
    assert storage["publicNetworkAccess"] == "publicNetworkAccess"
    # Event Grid's system topic reads the blob events of a Deny account as a trusted service.
    assert storage["networkAcls"] == {"bypass": "AzureServices", "defaultAction": "networkDefaultAction"}

    for path in AI_MODULES:
        module = templates[path]
        value = evaluate(main, call_params(main, path)["publicNetworkAccess"], vnetEnabled=vnet_enabled)
        assert value == expected["publicNetworkAccess"], path
        account = next(iter(resources_of(module, "Microsoft.CognitiveServices/accounts").values()))["properties"]
        assert account["publicNetworkAccess"] == "publicNetworkAccess", path
        acls = evaluate({"variables": {}, **module}, account["networkAcls"], publicNetworkAccess=value)
        assert acls == {"defaultAction": expected["networkDefaultAction"]}, path
    # The modules' defaults are public mode, the one checkov scans as infra/ is.
    for path in (*AI_MODULES, "modules/storage.bicep"):
        for name, (public, _) in NETWORK_PARAMETERS.items():
            if name in templates[path]["parameters"]:
                assert templates[path]["parameters"][name]["default"] == public, (path, name)


def test_private_endpoints_cover_storage_and_every_ai_account_each_in_its_zone(
    main: Template, templates: dict[str, Template]
) -> None:
    images = templates["modules/openai-images.bicep"]
    regions = ["swedencentral", "westus3"]
    accounts = [{"name": f"oai-{r}", "id": f"/accounts/oai-{r}"} for r in regions]
    regional = evaluate(images, images["outputs"]["privateEndpoints"]["value"], regions=regions, accounts=accounts)
    bound = {
        "storage": {"outputs": {"name": "stx", "id": "/storageAccounts/stx"}},
        "openAi": {"outputs": {"name": "oai", "id": "/accounts/oai"}},
        "vision": {"outputs": {"name": "cv", "id": "/accounts/cv"}},
        "contentSafety": {"outputs": {"name": "cs", "id": "/accounts/cs"}},
        "imageRegionAccounts": {"outputs": {"privateEndpoints": regional}},
    }
    endpoints = evaluate(main, call_params(main, "modules/network.bicep")["endpoints"], **bound)
    targets = sorted((e["resourceId"], e["groupId"], e["zone"]) for e in endpoints)
    assert targets == sorted(
        [
            ("/storageAccounts/stx", "blob", "blob"),
            ("/storageAccounts/stx", "queue", "queue"),
            ("/storageAccounts/stx", "table", "table"),
            ("/accounts/oai", "account", "openai"),
            ("/accounts/oai-swedencentral", "account", "openai"),
            ("/accounts/oai-westus3", "account", "openai"),
            ("/accounts/cv", "account", "cognitiveservices"),
            ("/accounts/cs", "account", "cognitiveservices"),
        ]
    )
    assert len({e["name"] for e in endpoints}) == len(endpoints), "private endpoint names must differ"

    network = templates["modules/network.bicep"]
    zones = resolve(network, "zones")
    assert zones["openai"] == "privatelink.openai.azure.com"
    assert zones["cognitiveservices"] == "privatelink.cognitiveservices.azure.com"
    for service in ("blob", "queue", "table"):
        assert zones[service] == f"privatelink.{service}.${{environment().suffixes.storage}}"
    assert {e["zone"] for e in endpoints} == set(zones) == set(resolve(network, "zoneKeys"))
    # Every zone is linked to the network, and each endpoint registers in its own zone.
    link = resources_of(network, "Microsoft.Network/privateDnsZones/virtualNetworkLinks")["dnsZoneLinks"]
    assert link["properties"]["registrationEnabled"] is False
    assert accessor_path(link["properties"]["virtualNetwork"]["id"]) == ["vnet", "id"]
    assert network["resources"]["dnsZoneLinks"]["config"]["loop_type"]["detail"]["array_name"] == "zoneKeys"
    group = resources_of(network, "Microsoft.Network/privateEndpoints/privateDnsZoneGroups")["zoneGroups"]
    zone_id = group["properties"]["privateDnsZoneConfigs"][0]["properties"]["privateDnsZoneId"]["function"]
    assert zone_id["parameters"]["resource_type"] == "Microsoft.Network/privateDnsZones"
    zone_name = zone_id["parameters"]["resource_name_1"]["operator"]
    assert zone_name["type"] == "index_accessor" and zone_name["operands"]["operand_1"] == "zones"
    assert accessor_path(zone_name["operands"]["operand_2"]) == ["endpoint", "zone"]
    endpoint = resources_of(network, "Microsoft.Network/privateEndpoints")["privateEndpoints"]
    connection = endpoint["properties"]["privateLinkServiceConnections"][0]["properties"]
    assert accessor_path(connection["privateLinkServiceId"]) == ["endpoint", "resourceId"]
    assert [accessor_path(g) for g in connection["groupIds"]] == [["endpoint", "groupId"]]


@pytest.fixture(scope="module")
def checkov_vnet_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """checkov over a copy of infra/ as VNet mode deploys it.

    checkov reads a parameter's default but evaluates no condition, so the copy gets VNet mode's
    values as the defaults of the module parameters main.bicep sets from vnetEnabled, main.bicep's
    `vnetEnabled ? a : b` become a, and the copy loses the skips that only public mode needs: the
    checks they hide must pass. (Left as a condition, the value checkov gives a module parameter
    depends on the order the directory lists its files in: a fresh clone failed where this one passed.)
    """
    root = tmp_path_factory.mktemp("vnet")
    for path in BICEP_FILES:
        target = root / "infra" / path.relative_to(INFRA)
        target.parent.mkdir(parents=True, exist_ok=True)
        lines = [line for line in path.read_text().splitlines(keepends=True) if not PUBLIC_MODE_ONLY_SKIP.match(line)]
        text = "".join(lines)
        for name, (public, private) in NETWORK_PARAMETERS.items():
            text = text.replace(f"param {name} string = '{public}'", f"param {name} string = '{private}'")
        text = text.replace("param vnetEnabled bool = false", "param vnetEnabled bool = true")
        text = VNET_CONDITION.sub(r"\1", text)
        target.write_text(text)
    return run_checkov(root)


def public_mode_only_skips() -> set[tuple[str, str]]:
    """(file, check id) of every skip that only public mode needs."""
    found = set()
    for path in BICEP_FILES:
        for line in path.read_text().splitlines():
            match = PUBLIC_MODE_ONLY_SKIP.match(line)
            if match:
                found.add((f"/{path.relative_to(INFRA).as_posix()}", match.group(1)))
    return found


def test_checkov_passes_in_vnet_mode_the_checks_public_mode_skips(checkov_vnet_report: dict[str, Any]) -> None:
    assert checkov_vnet_report["summary"]["parsing_errors"] == 0
    results = checkov_vnet_report["results"]
    failed = [
        f"{check['check_id']} {check['check_name']} ({check['resource']}, {check['file_path']})"
        for check in results.get("failed_checks", [])
    ]
    assert failed == [], "checkov failed checks in VNet mode:\n" + "\n".join(failed)
    skips = public_mode_only_skips()
    # Storage's public access and default action, and every AI account's public access.
    assert {check for _, check in skips} == {"CKV_AZURE_59", "CKV_AZURE_35", "CKV_AZURE_134"}
    assert {f for f, _ in skips} == {"/modules/storage.bicep", *(f"/{path}" for path in AI_MODULES)}
    passed = {(check["file_path"], check["check_id"]) for check in results.get("passed_checks", [])}
    assert skips <= passed
    skipped = {(check["file_path"], check["check_id"]) for check in results.get("skipped_checks", [])}
    assert not skips & skipped


def test_the_vnet_variant_checkov_scans_is_what_main_deploys(main: Template, templates: dict[str, Template]) -> None:
    """The defaults the VNet scan swaps in are the values main.bicep passes when vnetEnabled is true."""
    for path in (*AI_MODULES, "modules/storage.bicep"):
        params = call_params(main, path)
        for name, (public, private) in NETWORK_PARAMETERS.items():
            if name in templates[path]["parameters"]:
                assert f"param {name} string = '{public}'" in (INFRA / path).read_text(), (path, name)
                assert evaluate(main, params[name], vnetEnabled=True) == private, (path, name)


# --- Durable Task Scheduler backend (durableBackend 'dts') -----------------------------------

DTS_SETTINGS = {
    "AzureFunctionsJobHost__extensions__durableTask__storageProvider__type",
    "AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName",
    "AzureFunctionsJobHost__extensions__durableTask__hubName",
    "DURABLE_TASK_SCHEDULER_CONNECTION_STRING",
}


def test_the_scheduler_exists_only_in_dts_mode(main: Template, templates: dict[str, Template]) -> None:
    call = module_call(main, "modules/durabletask.bicep")
    for backend, made in (("storage", False), ("dts", True)):
        assert evaluate(main, call["condition"], durableBackend=backend) is made
    module = templates["modules/durabletask.bicep"]
    scheduler = module["resources"]["scheduler"]
    assert (scheduler["type"], scheduler["api_version"]) == ("Microsoft.DurableTask/schedulers", "2025-11-01")
    properties = scheduler["config"]["properties"]
    # An empty allow list refuses every caller; the role decides who gets in.
    assert properties["ipAllowlist"] == ["0.0.0.0/0"]
    for sku in ("Consumption", "Dedicated"):
        assert evaluate(module, properties["sku"], skuName=sku)["name"] == sku
    assert evaluate(module, properties["sku"], skuName="Dedicated")["capacity"] == 1
    assert "capacity" not in evaluate(module, properties["sku"], skuName="Consumption")
    assert allowed_values(module, "skuName") == allowed_values(main, "durableTaskSchedulerSku")
    hub = only(module, "Microsoft.DurableTask/schedulers/taskHubs")
    assert module["resources"]["taskHub"]["api_version"] == "2025-11-01"
    assert hub["name"] == "taskHubName" and hub["parent"] == "scheduler"
    # The task hub is the one host.json names.
    host = json.loads((REPO / "host.json").read_text())
    assert call["config"]["params"]["taskHubName"] == "durableTaskHubName"
    assert resolve(main, "durableTaskHubName") == host["extensions"]["durableTask"]["hubName"]


def test_the_app_identity_gets_durable_task_data_contributor_on_the_scheduler(
    main: Template, templates: dict[str, Template]
) -> None:
    module = templates["modules/durabletask.bicep"]
    assert resolve(module, "durableTaskDataContributorRole") == DURABLE_TASK_DATA_CONTRIBUTOR
    assignments = resources_of(module, "Microsoft.Authorization/roleAssignments")
    assert set(assignments) == {"appDataContributor", "userDataContributor"}
    for symbol, assignment in assignments.items():
        assignment = assignment.get("config", assignment)  # the user's has a condition
        assert assignment["scope"] == "scheduler", symbol
        role = assignment["properties"]["roleDefinitionId"]["function"]["parameters"]
        assert role["resource_type"] == "Microsoft.Authorization/roleDefinitions"
        assert resolve(module, role["resource_name_1"]) == DURABLE_TASK_DATA_CONTRIBUTOR
    assert assignments["appDataContributor"].get("condition") is None, (
        "the app needs the role whenever there is a scheduler"
    )
    app = assignments["appDataContributor"]["properties"]
    assert (app["principalId"], app["principalType"]) == ("appPrincipalId", "ServicePrincipal")
    params = module_call(main, "modules/durabletask.bicep")["config"]["params"]
    assert accessor_path(params["appPrincipalId"]) == ["identity", "outputs", "principalId"]
    assert "grantUserAccess" in json.dumps(params["userPrincipalId"])
    assert "userPrincipalId" in json.dumps(module["resources"]["userDataContributor"]["config"]["condition"])


@pytest.mark.parametrize("backend", ["storage", "dts"])
def test_the_app_settings_switch_the_durable_provider_only_in_dts_mode(
    main: Template, templates: dict[str, Template], backend: str
) -> None:
    endpoint = "https://dts-varia-tok.eastus.durabletask.io"
    call = call_params(main, "modules/functionapp.bicep")
    bound = {
        "durableBackend": backend,
        "durableTaskScheduler": {"outputs": {"endpoint": endpoint, "taskHubName": "VariaHub"}},
    }
    passed_endpoint = evaluate(main, call["durableTaskSchedulerEndpoint"], **bound)
    passed_hub = evaluate(main, call["durableTaskHubName"], **bound)
    module = templates["modules/functionapp.bicep"]
    settings = evaluate(
        module,
        module["variables"]["durableTaskSchedulerSettings"]["value"],
        durableTaskSchedulerEndpoint=passed_endpoint,
        durableTaskHubName=passed_hub,
        identityClientId="client-id",
    )
    if backend == "storage":
        assert (passed_endpoint, settings) == ("", {}), "host.json's default provider: Azure Storage"
        return
    assert set(settings) == DTS_SETTINGS
    assert settings["AzureFunctionsJobHost__extensions__durableTask__storageProvider__type"] == "azureManaged"
    name = settings["AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName"]
    assert name == "DURABLE_TASK_SCHEDULER_CONNECTION_STRING"
    # Keyless: the identity's client id, no secret.
    assert settings[name] == f"Endpoint={endpoint};Authentication=ManagedIdentity;ClientID=client-id"
    assert settings["AzureFunctionsJobHost__extensions__durableTask__hubName"] == "VariaHub"
    # host.json stays the Azure Storage file for both modes; only the app settings differ.
    host = json.loads((REPO / "host.json").read_text())
    assert "storageProvider" not in host["extensions"]["durableTask"]
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"  # azureManaged: bundle 4.32.0 and later
    site = only(module, "Microsoft.Web/sites")
    loop = site["properties"]["siteConfig"]["appSettings"]["loop_type"]["detail"]["object_name"]
    assert "'durableTaskSchedulerSettings'" in loop


# --- diagnostic settings: the AI accounts and blob storage log to the workspace --------------


@pytest.mark.parametrize(
    ("module", "scope", "metric"),
    [
        ("modules/openai.bicep", "account", "AllMetrics"),
        ("modules/openai-images.bicep", "accounts", "AllMetrics"),
        ("modules/vision.bicep", "account", "AllMetrics"),
        ("modules/contentsafety.bicep", "account", "AllMetrics"),
        ("modules/storage.bicep", "blobService", "Transaction"),
    ],
)
def test_diagnostic_settings_send_every_log_to_the_workspace(
    main: Template, templates: dict[str, Template], module: str, scope: str, metric: str
) -> None:
    template = templates[module]
    setting = only(template, "Microsoft.Insights/diagnosticSettings")
    target = setting["scope"]
    if isinstance(target, dict):  # one setting per regional account: accounts[i]
        assert target["operator"]["type"] == "index_accessor"
        target = target["operator"]["operands"]["operand_1"]
    assert target == scope
    properties = setting["properties"]
    assert properties["workspaceId"] == "logAnalyticsWorkspaceId"
    assert properties["logs"] == [{"categoryGroup": "allLogs", "enabled": True}]
    assert properties["metrics"] == [{"category": metric, "enabled": True}]
    assert accessor_path(call_params(main, module)["logAnalyticsWorkspaceId"]) == [
        "monitoring",
        "outputs",
        "logAnalyticsId",
    ]
    monitoring = templates["modules/monitoring.bicep"]
    assert accessor_path(monitoring["outputs"]["logAnalyticsId"]["value"]) == ["logAnalytics", "id"]
