"""The reliability verdict: what fails a complete run, and the table it checks against the README.

The figures themselves are measured by the hostile-input and fault suites and judged when the
session ends (tests/conftest.py), whatever order the tests ran in.
"""

from __future__ import annotations

from tests.reliability import MIN_FAULT_KINDS, Ledger, is_complete, verdict


def _ledger(**changes: object) -> Ledger:
    ledger = Ledger(inputs={"http:a", "blob:a"}, faults={f"f{i}" for i in range(MIN_FAULT_KINDS)}, jobs=14)
    for name, value in changes.items():
        setattr(ledger, name, value)
    return ledger


def test_a_run_that_lost_nothing_and_matches_the_readme_passes() -> None:
    ledger = _ledger()
    assert verdict(ledger, ledger.table()) is None


def test_a_lost_job_fails_the_run() -> None:
    ledger = _ledger(lost=["fault:503"])
    assert verdict(ledger, ledger.table()) == "jobs lost: ['fault:503']; jobs paid twice: []"


def test_a_job_paid_twice_fails_the_run() -> None:
    ledger = _ledger(double_paid=["fault:timeout"])
    assert verdict(ledger, ledger.table()) == "jobs lost: []; jobs paid twice: ['fault:timeout']"


def test_figures_that_differ_from_the_readme_fail_the_run() -> None:
    old = _ledger().table()
    assert verdict(_ledger(jobs=15), old) is not None
    assert "| jobs that had to end with a manifest | 15 |" in _ledger(jobs=15).table()


def test_only_a_session_that_tried_everything_is_judged() -> None:
    expected = {"http:a", "blob:a"}
    assert is_complete(_ledger(), expected)
    assert not is_complete(_ledger(inputs={"http:a"}), expected)
    assert not is_complete(_ledger(faults={"503"}), expected)
