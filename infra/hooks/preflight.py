"""Varia's preprovision check: every model is offered, has quota and is open to the subscription.

azd runs it through infra/hooks/preprovision.sh (or .ps1 on Windows) with the azd environment's values in
the environment. It reads the same parameters azd is about to pass to infra/main.bicep (through
infra/main.parameters.json, so `azd env set` overrides count), then asks the Azure CLI, for every region
that gets a model deployment:

- `az cognitiveservices model list --location R`: is the model, at that version, offered there with the
  Global Standard SKU the templates deploy, and not retired?
- `az cognitiveservices usage list --location R`: has the subscription quota left there for the capacity
  the templates ask for (deployments this environment already holds are counted as its own)?
- limited access: gpt-image-1, -1-mini and -1.5 are deployable only once Microsoft has approved the
  subscription's registration form. No API says whether a subscription is approved; what a subscription
  without approval sees is the model missing from its model list or a quota limit of 0 for it, and ARM
  then refuses the deployment with SpecialFeatureOrQuotaIdRequired. Those two signs are reported as
  "needs the access form", with the form's link.

It prints one summary line when all is well, and every problem (what, where, the numbers, the fix) with
exit code 1 otherwise. Python 3.9+ standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone  # not datetime.UTC: the hook runs on the user's Python, 3.9 or later
from pathlib import Path
from typing import Any

SKIP_VARIABLE = "VARIA_SKIP_PREFLIGHT"
REPO = Path(__file__).resolve().parents[2]
PARAMETERS_FILE = REPO / "infra" / "main.parameters.json"

# The SKU of every model deployment in infra/modules/openai.bicep and openai-images.bicep.
DEPLOYMENT_SKU = "GlobalStandard"
# The account kind those modules create: the model list has one entry per kind.
ACCOUNT_KIND = "OpenAI"

# Models Microsoft deploys only after approving a registration form, with the form: the image
# generation how-to ("GPT-image-1 series models ... are available in limited access: Apply for
# GPT-image-1 access; Apply for GPT-image-1.5 access") and the models page ("For access to
# gpt-image-1 registration is required"). gpt-image-2 needs no form.
LIMITED_ACCESS_FORMS = {
    "gpt-image-1": "https://aka.ms/oai/gptimage1access",
    "gpt-image-1-mini": "https://aka.ms/oai/gptimage1access",
    "gpt-image-1.5": "https://aka.ms/oai/gptimage1.5access",
}
# A model that needs no form, for the "use another model" fix.
OPEN_IMAGE_MODEL = ("gpt-image-2", "2026-04-21")


@dataclass(frozen=True)
class Deployment:
    """One model deployment the templates will create: in which region, of what, with how much capacity."""

    region: str
    role: str  # "chat" or "image": which settings change it
    model: str
    version: str
    capacity: int


@dataclass
class Problem:
    """Something that would make the deployment fail: a code, what is wrong, and the fixes."""

    code: str
    message: str
    fixes: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"preflight: [{self.code}] {self.message}"]
        lines += [f"    fix: {fix}" for fix in self.fixes]
        return "\n".join(lines)


class AzError(Exception):
    """An az command failed; the message holds its stderr."""


Az = Callable[[list[str]], Any]


# --- the parameters azd will pass -------------------------------------------------------------


def parameter_sources() -> dict[str, tuple[str, str | None]]:
    """Each parameter of main.parameters.json as (environment variable, default or None)."""
    parameters = json.loads(PARAMETERS_FILE.read_text(encoding="utf-8"))["parameters"]
    sources = {}
    for name, entry in parameters.items():
        match = re.fullmatch(r"\$\{(\w+)(?:=(.*))?\}", str(entry.get("value", "")))
        if match:
            sources[name] = (match.group(1), match.group(2))
    return sources


def prompted_value(name: str, env: dict[str, str]) -> str | None:
    """A value azd asked for at its prompt and keeps in .azure/<env>/config.json (infra.parameters)."""
    environment = env.get("AZURE_ENV_NAME", "")
    config = REPO / ".azure" / environment / "config.json"
    if not environment or not config.is_file():
        return None
    try:
        value = json.loads(config.read_text(encoding="utf-8"))["infra"]["parameters"][name]
    except (KeyError, TypeError, ValueError):
        return None
    return str(value) if value not in (None, "") else None


def parameter(name: str, env: dict[str, str]) -> tuple[str | None, str]:
    """The value azd will pass for a parameter, and the variable that sets it."""
    variable, default = parameter_sources()[name]
    value = env.get(variable)
    if value:
        return value, variable
    return (default or prompted_value(name, env)), variable


def planned_deployments(env: dict[str, str]) -> tuple[list[Deployment], list[Problem], list[str]]:
    """The deployments main.bicep will make, problems with the settings themselves, and notes."""
    problems: list[Problem] = []
    notes: list[str] = []

    def value(name: str) -> str:
        found, _ = parameter(name, env)
        return (found or "").strip()

    def capacity(name: str) -> int:
        found, variable = parameter(name, env)
        try:
            number = int(str(found))
        except ValueError:
            number = 0
        if number < 1:
            problems.append(
                Problem("bad-setting", f"{variable}={found!r} is not a capacity.", [f"azd env set {variable} 1"])
            )
        return number

    main_region, region_variable = parameter("openAiLocation", env)
    main_region = (main_region or "").strip().lower()
    chat = (value("chatModelName"), value("chatModelVersion"), capacity("chatCapacity"))
    image = (value("imageModelName"), value("imageModelVersion"), capacity("imageCapacity"))
    extra = []
    for region in value("imageRegions").replace(" ", "").lower().split(","):
        if region and region != main_region and region not in extra:
            extra.append(region)

    deployments = []
    if main_region:
        deployments.append(Deployment(main_region, "chat", *chat))
        deployments.append(Deployment(main_region, "image", *image))
    else:
        notes.append(
            f"{region_variable} is not chosen yet: azd asks for it, offering only regions with quota for the default "
            f"models; the next 'azd provision' checks it."
        )
    deployments += [Deployment(region, "image", *image) for region in extra]
    return deployments, problems, notes


# --- the Azure CLI -----------------------------------------------------------------------------


def run_az(executable: str, subscription: str) -> Az:
    """A function that runs `az <args> --output json` (in the subscription azd uses) and parses the answer."""

    def az(args: list[str]) -> Any:
        command = [executable, *args, "--output", "json"]
        if subscription:
            command += ["--subscription", subscription]
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            raise AzError((done.stderr or done.stdout).strip())
        return json.loads(done.stdout or "null")

    return az


def is_login_error(text: str) -> bool:
    return bool(re.search(r"az login|not logged in|AADSTS|expired|interactive authentication", text, re.I))


def held_capacity(az: Az, resource_group: str) -> dict[tuple[str, str, str], int]:
    """Capacity this environment's own deployments already hold, by (region, SKU, model).

    On a second `azd provision` the usage list counts them as used: without this, the default (a
    deployment of the whole default quota) would look like no quota left.
    """
    held: dict[tuple[str, str, str], int] = {}
    if not resource_group:
        return held
    try:
        accounts = az(["cognitiveservices", "account", "list", "--resource-group", resource_group]) or []
    except AzError as error:
        if re.search(r"ResourceGroupNotFound|could not be found|was not found", str(error), re.I):
            return held
        raise
    for account in accounts:
        if account.get("kind") != ACCOUNT_KIND:
            continue
        region = str(account.get("location", "")).lower().replace(" ", "")
        deployments = (
            az(
                [
                    "cognitiveservices",
                    "account",
                    "deployment",
                    "list",
                    "--resource-group",
                    resource_group,
                    "--name",
                    account["name"],
                ]
            )
            or []
        )
        for deployment in deployments:
            sku = deployment.get("sku") or {}
            model = ((deployment.get("properties") or {}).get("model") or {}).get("name", "")
            key = (region, str(sku.get("name", "")), str(model))
            held[key] = held.get(key, 0) + int(sku.get("capacity") or 0)
    return held


# --- the checks --------------------------------------------------------------------------------


def region_fix(deployment: Deployment, env: dict[str, str]) -> str:
    """How to take the deployment to another region."""
    if deployment.role == "chat" or deployment.region == (parameter("openAiLocation", env)[0] or "").lower():
        return (
            "another region: azd env set AZURE_OPENAI_LOCATION <region> (eastus2, polandcentral, swedencentral, "
            "uaenorth or westus3)"
        )
    return f"leave {deployment.region} out: azd env set AZURE_OPENAI_IMAGE_REGIONS <the other regions, comma-separated>"


def model_fix(deployment: Deployment) -> str:
    if deployment.role == "chat":
        return (
            "another chat model: azd env set AZURE_OPENAI_CHAT_MODEL <model>; "
            "azd env set AZURE_OPENAI_CHAT_MODEL_VERSION <version>"
        )
    name, version = OPEN_IMAGE_MODEL
    return (
        f"a model that needs no form: azd env set AZURE_OPENAI_IMAGE_MODEL {name}; "
        f"azd env set AZURE_OPENAI_IMAGE_MODEL_VERSION {version}"
    )


def capacity_variable(deployment: Deployment) -> str:
    return "AZURE_OPENAI_CHAT_CAPACITY" if deployment.role == "chat" else "AZURE_OPENAI_IMAGE_CAPACITY"


def version_variable(deployment: Deployment) -> str:
    return "AZURE_OPENAI_CHAT_MODEL_VERSION" if deployment.role == "chat" else "AZURE_OPENAI_IMAGE_MODEL_VERSION"


def access_problem(deployment: Deployment, sign: str, env: dict[str, str]) -> Problem:
    form = LIMITED_ACCESS_FORMS[deployment.model]
    return Problem(
        "needs-access-form",
        f"{deployment.model} is a limited-access model: Microsoft deploys it only for subscriptions whose "
        f"registration form it approved, and in {deployment.region} this subscription {sign}, which is how a "
        f"subscription without that approval sees it (ARM would refuse the deployment with "
        f"SpecialFeatureOrQuotaIdRequired).",
        [
            f"apply with the form {form} (approval is per subscription), then run azd provision again",
            model_fix(deployment),
            region_fix(deployment, env),
        ],
    )


def retired(entry: dict[str, Any], sku: dict[str, Any], now: datetime) -> str | None:
    """The retirement date of an offered model version, if it has passed."""
    for date in (sku.get("deprecationDate"), ((entry.get("model") or {}).get("deprecation") or {}).get("inference")):
        if not date:
            continue
        try:
            when = datetime.fromisoformat(str(date).replace("Z", "+00:00"))
        except ValueError:
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)  # noqa: UP017
        if when <= now:
            return when.date().isoformat()
    return None


def check_offer(
    deployment: Deployment, models: list[dict[str, Any]], env: dict[str, str], now: datetime
) -> tuple[str | None, Problem | None]:
    """The usage name of the deployment's model in the region, or why it cannot be deployed there."""
    entries = [
        entry
        for entry in models
        if (entry.get("model") or {}).get("name") == deployment.model
        and entry.get("kind", ACCOUNT_KIND) == ACCOUNT_KIND
    ]
    where = f"az cognitiveservices model list --location {deployment.region}"
    if not entries:
        if deployment.model in LIMITED_ACCESS_FORMS:
            return None, access_problem(deployment, "is not offered it in its model list", env)
        return None, Problem(
            "model-not-offered",
            f"{deployment.model} is not offered in {deployment.region} to this subscription ({where}).",
            [region_fix(deployment, env), model_fix(deployment)],
        )
    versions = [entry for entry in entries if (entry.get("model") or {}).get("version") == deployment.version]
    if not versions:
        offered = sorted({str((entry.get("model") or {}).get("version")) for entry in entries})
        return None, Problem(
            "version-not-offered",
            f"{deployment.model} version {deployment.version} is not offered in {deployment.region}; "
            f"offered: {', '.join(offered)} ({where}).",
            [f"azd env set {version_variable(deployment)} {offered[-1]}", region_fix(deployment, env)],
        )
    for entry in versions:
        for sku in (entry.get("model") or {}).get("skus") or []:
            if sku.get("name") != DEPLOYMENT_SKU:
                continue
            date = retired(entry, sku, now)
            if date:
                return None, Problem(
                    "model-retired",
                    f"{deployment.model} {deployment.version} retired on {date} in {deployment.region}.",
                    [f"a newer version: azd env set {version_variable(deployment)} <version>", model_fix(deployment)],
                )
            return str(sku.get("usageName") or f"OpenAI.{DEPLOYMENT_SKU}.{deployment.model}"), None
    return None, Problem(
        "sku-not-offered",
        f"{deployment.model} {deployment.version} is offered in {deployment.region}, but not as a {DEPLOYMENT_SKU} "
        f"deployment, the only kind the templates make ({where}).",
        [region_fix(deployment, env), model_fix(deployment)],
    )


def check_quota(
    deployment: Deployment, usage_name: str, usages: list[dict[str, Any]], needed: int, env: dict[str, str]
) -> tuple[str, Problem | None]:
    """A summary of the quota, or the problem with it. `needed` counts the other deployments of this usage too."""
    if not usages:
        # Some subscriptions get an empty usage list until they hold a resource (azure-dev #8537): no numbers
        # to check, so do not block.
        return f"{deployment.model} (quota not reported)", None
    entry = next((usage for usage in usages if (usage.get("name") or {}).get("value") == usage_name), None)
    limit = float((entry or {}).get("limit") or 0)
    used = float((entry or {}).get("currentValue") or 0)
    if limit <= 0 and deployment.model in LIMITED_ACCESS_FORMS:
        return "", access_problem(deployment, f"has a quota limit of 0 for {usage_name}", env)
    free = int(limit - used)
    if free >= needed:
        return f"{deployment.model} {needed} of {free} free", None
    fixes = []
    if free >= 1:
        fixes.append(f"a smaller capacity: azd env set {capacity_variable(deployment)} {free}")
    fixes += [
        region_fix(deployment, env),
        f"more quota: request it in the Azure AI Foundry portal (Management > Quota) for {usage_name} in "
        f"{deployment.region}, or free some by deleting other deployments of {deployment.model} there",
    ]
    return "", Problem(
        "no-quota" if limit <= 0 else "not-enough-quota",
        f"{deployment.model} needs {needed} units of {usage_name} in {deployment.region}, but this subscription "
        f"has {max(free, 0)} left there (limit {limit:g}, in use {used:g}).",
        fixes,
    )


def check(env: dict[str, str], az: Az, now: datetime) -> tuple[list[Problem], list[str]]:
    """Every problem with the planned deployments, and a summary per region."""
    deployments, problems, notes = planned_deployments(env)
    if problems:
        return problems, notes
    held = held_capacity(az, env.get("AZURE_RESOURCE_GROUP", ""))
    summaries = list(notes)
    for region in dict.fromkeys(deployment.region for deployment in deployments):
        here = [deployment for deployment in deployments if deployment.region == region]
        models = az(["cognitiveservices", "model", "list", "--location", region]) or []
        usages = az(["cognitiveservices", "usage", "list", "--location", region]) or []
        offered: list[tuple[Deployment, str]] = []
        for deployment in here:
            usage_name, problem = check_offer(deployment, models, env, now)
            if usage_name is None:
                problems.append(problem or Problem("model-not-offered", f"{deployment.model}: no usage name"))
            else:
                offered.append((deployment, usage_name))
        parts = []
        for deployment, usage_name in offered:
            # Deployments sharing a usage draw on the same quota; what this environment holds already counts.
            wanted = sum(other.capacity for other, name in offered if name == usage_name)
            needed = max(0, wanted - held.get((region, DEPLOYMENT_SKU, deployment.model), 0))
            summary, problem = check_quota(deployment, usage_name, usages, needed, env)
            if problem:
                problems.append(problem)
            else:
                parts.append(summary)
        if parts:
            summaries.append(f"{region}: {', '.join(parts)}")
    return problems, summaries


def main(env: dict[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    skip = f"azd env set {SKIP_VARIABLE} true"
    if env.get(SKIP_VARIABLE, "").strip().lower() in {"1", "true", "yes"}:
        print(f"preflight: skipped ({SKIP_VARIABLE} is set): models, quota and access were not checked.")
        return 0
    executable = shutil.which("az", path=env.get("PATH"))
    if not executable:
        print(
            "preflight: [az-missing] the Azure CLI (az) is needed to check models and quota before provisioning.\n"
            "    fix: install it (https://aka.ms/installazurecli), run 'az login', then azd provision again\n"
            f"    fix: or provision without the check: {skip}",
            file=sys.stderr,
        )
        return 1
    az = run_az(executable, env.get("AZURE_SUBSCRIPTION_ID", ""))
    try:
        az(["account", "show"])
        problems, summaries = check(env, az, datetime.now(timezone.utc))  # noqa: UP017
    except AzError as error:
        code, fix = (
            ("az-not-logged-in", "sign in with 'az login' (the account azd uses), then azd provision again")
            if is_login_error(str(error))
            else ("az-failed", "fix the cause above, then azd provision again")
        )
        print(f"preflight: [{code}] the Azure CLI could not answer. It said:", file=sys.stderr)
        print("\n".join(f"    {line}" for line in str(error).splitlines()), file=sys.stderr)
        print(f"    fix: {fix}\n    fix: or provision without the check: {skip}", file=sys.stderr)
        return 1
    if problems:
        for problem in problems:
            print(problem.render(), file=sys.stderr)
        print(f"preflight: nothing was created. To provision anyway: {skip}", file=sys.stderr)
        return 1
    print(f"preflight: ok ({'; '.join(summaries)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
