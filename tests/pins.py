"""constraints.txt, read: the exact versions CI and Azure's remote build install."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent
CONSTRAINTS = REPO / "constraints.txt"
REQUIREMENTS = REPO / "requirements.txt"


def _lines(path: Path) -> list[str]:
    return [line.split(" #")[0].strip() for line in path.read_text().splitlines() if line.strip()[:1] not in ("", "#")]


def pins(python_version: str) -> dict[str, str]:
    """Package name -> pinned version, for an interpreter of `python_version` ("3.11", "3.13")."""
    env = {"python_version": python_version, "python_full_version": f"{python_version}.0"}
    found: dict[str, str] = {}
    for line in _lines(CONSTRAINTS):
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            (version,) = (spec.version for spec in req.specifier)
            found[req.name.lower()] = version
    return found


def direct_requirements(python_version: str) -> list[Requirement]:
    env = {"python_version": python_version, "python_full_version": f"{python_version}.0"}
    reqs = [Requirement(line) for line in _lines(REQUIREMENTS) if not line.startswith("-")]
    return [r for r in reqs if r.marker is None or r.marker.evaluate(env)]


def installed_mismatches(python_version: str) -> dict[str, tuple[str, str | None]]:
    """Pinned packages whose installed version differs here: name -> (pinned, installed)."""
    wrong: dict[str, tuple[str, str | None]] = {}
    for name, version in pins(python_version).items():
        try:
            have: str | None = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            have = None
        if have != version:
            wrong[name] = (version, have)
    return wrong
