"""The deploy package: what `azd deploy` zips and uploads, built here by the `.funcignore` rules.

azd reads `.funcignore` with gitignore syntax (azure-dev PR #5383) and, when the file exists,
applies no default exclusions of its own beyond `local.settings.json` and `.azure/`. The tests
build the package from a checkout as a developer has it after `make test`, `make serve`, Azurite
and `azd up`, check exactly what goes in, and load the app from the unpacked package alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from pathspec import GitIgnoreSpec

REPO = Path(__file__).resolve().parent.parent

# What Azure needs: the app, the host settings, and what the remote build installs.
PACKAGE_TOP_LEVEL = {"function_app.py", "host.json", "requirements.txt", "constraints.txt", "activities", "shared"}
# Local only: the in-process runtime, the local server, the CLI, the demo image, and the shims
# that keep `python -m shared.cli` and `python -m shared.server` working.
LOCAL_TOOLS = ("shared/local/", "shared/cli.py", "shared/server.py")

# Files a working checkout holds beside the tracked ones. None of them may ship; each .gitignore
# pattern must match at least one of them (see test_every_gitignore_pattern_has_a_sample).
LOCAL_FILES = [
    ".env",
    ".env.local",
    "local.settings.json",
    ".azure/varia-dev/.env",
    ".azure/config.json",
    ".azurite/__azurite_db_blob__.json",
    "__azurite_db_blob__.json",
    "__azurite_db_blob_extent__.json",
    "__azurite_db_queue__.json",
    "__blobstorage__/0a1b2c",
    "__queuestorage__/3d4e5f",
    ".venv/bin/python",
    ".venv/lib/python3.11/site-packages/openai/__init__.py",
    ".venv-infra/bin/checkov",
    ".venv-worker/bin/python",
    ".python_packages/lib/site-packages/PIL/__init__.py",
    "node_modules/azurite/package.json",
    "node_modules/.installed",
    "__pycache__/function_app.cpython-311.pyc",
    "shared/__pycache__/config.cpython-313.pyc",
    "activities/__pycache__/caption.cpython-311.pyc",
    "shared/adapters/providers/offline.pyc",
    ".pytest_cache/v/cache/lastfailed",
    ".mypy_cache/3.11/cache.db",
    ".ruff_cache/CACHEDIR.TAG",
    ".coverage",
    ".coverage.worker-1",
    ".varia/jobs/j-1/manifest.json",
    "varia-output/j-1/variation-1.png",
    "test-artifacts/browser/page.png",
    ".vscode/settings.json",
    ".DS_Store",
    "shared/.DS_Store",
]


def tracked_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return [name for name in listed.decode().split("\0") if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's tracked files plus the local files a developer's checkout has."""
    root = tmp_path_factory.mktemp("checkout")
    for name in tracked_files():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    for name in LOCAL_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("local\n")
    return root


def package(root: Path) -> list[str]:
    """The files azd would zip from root: every file .funcignore does not exclude, and not azd's own two."""
    spec = GitIgnoreSpec.from_lines((root / ".funcignore").read_text().splitlines())
    files = []
    for directory, subdirectories, names in os.walk(root):
        relative = Path(directory).relative_to(root)
        # An excluded directory is not entered: nothing under it can come back (gitignore rules).
        subdirectories[:] = [
            d
            for d in subdirectories
            if not (relative == Path(".") and d == ".azure") and not spec.match_file(f"{(relative / d).as_posix()}/")
        ]
        for name in names:
            path = (relative / name).as_posix()
            if path != "local.settings.json" and not spec.match_file(path):
                files.append(path)
    return sorted(files)


@pytest.fixture(scope="module")
def packaged(checkout: Path) -> list[str]:
    return package(checkout)


def test_the_package_holds_exactly_the_app(packaged: list[str]) -> None:
    assert {name.split("/")[0] for name in packaged} == PACKAGE_TOP_LEVEL
    expected = sorted(
        name
        for name in tracked_files()
        if name.split("/")[0] in PACKAGE_TOP_LEVEL and not name.startswith(LOCAL_TOOLS) and not name.endswith(".pyc")
    )
    assert packaged == expected


def test_local_tools_stay_out_and_nothing_deployed_imports_them(packaged: list[str]) -> None:
    assert not [name for name in packaged if name.startswith(LOCAL_TOOLS)]
    deployed = [name for name in packaged if name.endswith(".py")]
    for name in deployed:
        text = (REPO / name).read_text()
        assert "shared.local" not in text, f"{name} imports a local tool, which is not deployed"


def test_no_local_file_ships(packaged: list[str]) -> None:
    assert not set(LOCAL_FILES) & set(packaged)


def test_what_gitignore_keeps_out_of_the_repository_stays_out_of_the_package(
    checkout: Path, packaged: list[str]
) -> None:
    gitignore = GitIgnoreSpec.from_lines((REPO / ".gitignore").read_text().splitlines())
    ignored = {name for name in LOCAL_FILES if gitignore.match_file(name)}
    assert ignored, "the samples should exercise .gitignore"
    assert not ignored & set(packaged)


def test_every_gitignore_pattern_has_a_sample() -> None:
    """A pattern added to .gitignore needs a sample here, so the test above covers it."""
    for line in (REPO / ".gitignore").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            spec = GitIgnoreSpec.from_lines([line])
            assert any(spec.match_file(name) for name in LOCAL_FILES), f"add a sample of {line!r} to LOCAL_FILES"


def test_the_unpacked_package_loads_every_function(checkout: Path, packaged: list[str], tmp_path: Path) -> None:
    """Zipped and unpacked as the platform does, the package alone imports and indexes the app."""
    archive = tmp_path / "package.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for name in packaged:
            zipped.write(checkout / name, name)
    site = tmp_path / "wwwroot"
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(site)

    script = (
        "import function_app\n"
        "print(function_app.__file__)\n"
        "print(' '.join(sorted(f.get_function_name() for f in function_app.app.get_functions())))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VARIA_") and k != "PYTHONPATH"}

    def functions_loaded_in(directory: Path) -> tuple[str, list[str]]:
        run = subprocess.run(
            [sys.executable, "-c", script], cwd=directory, env=env, capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 0, run.stderr
        file, names = run.stdout.splitlines()
        return file, names.split()

    file, functions = functions_loaded_in(site)
    assert Path(file).parent == site
    assert functions == functions_loaded_in(REPO)[1]
    # The remote build resolves requirements.txt's `-c constraints.txt` next to it.
    assert "-c constraints.txt" in (site / "requirements.txt").read_text()
