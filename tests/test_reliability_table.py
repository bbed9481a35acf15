"""The README's Reliability table is the one this test run measured; a regression fails here.

Runs after test_faults.py and test_hostile_inputs.py (pytest collects files by name). After a
change to either suite, regenerate the table with `python -m tests.reliability`.
"""

from __future__ import annotations

import pytest

from tests.hostile import CASES
from tests.reliability import LEDGER, readme_table

MIN_FAULT_KINDS = 12


def test_readme_reliability_table_matches_this_run() -> None:
    expected_inputs = {f"http:{c.name}" for c in CASES if c.http} | {f"blob:{c.name}" for c in CASES if c.blob}
    if LEDGER.inputs != expected_inputs or len(LEDGER.faults) < MIN_FAULT_KINDS:
        pytest.skip("run the whole test suite to measure the reliability figures")
    LEDGER.save()
    assert LEDGER.lost == [] and LEDGER.double_paid == []
    assert len(LEDGER.inputs) >= 80 and len(LEDGER.faults) >= MIN_FAULT_KINDS
    assert readme_table() == LEDGER.table(), "figures changed: run `python -m tests.reliability` and review the diff"
