"""The worker's Python (3.13, as in Azure) got exactly the versions constraints.txt pins."""

from __future__ import annotations

from tests.pins import installed_mismatches


def test_the_deployed_python_has_exactly_the_pinned_versions() -> None:
    assert installed_mismatches("3.13") == {}
