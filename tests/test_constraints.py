"""What gets installed is pinned: constraints.txt, applied by requirements.txt, on every Python we run."""

from __future__ import annotations

import sys

import pytest

from tests.pins import REQUIREMENTS, direct_requirements, installed_mismatches, pins


def test_requirements_apply_the_constraints() -> None:
    assert "-c constraints.txt" in REQUIREMENTS.read_text().splitlines()


@pytest.mark.parametrize("python", ["3.11", "3.12", "3.13"])
def test_every_requirement_is_pinned_within_its_range(python: str) -> None:
    pinned = pins(python)
    for requirement in direct_requirements(python):
        name = requirement.name.lower()
        assert name in pinned, f"{name} has no pin for Python {python}: regenerate constraints.txt"
        assert requirement.specifier.contains(pinned[name]), f"{name}=={pinned[name]} is outside {requirement}"
    assert pinned["azure-functions"].startswith("1." if python < "3.13" else "2.")


def test_this_environment_has_exactly_the_pinned_versions() -> None:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert installed_mismatches(python) == {}
