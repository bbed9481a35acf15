"""The reliability ledger: what the hostile-input and fault suites tried, and what they lost or paid twice.

The hostile-input and fault tests add to the ledger in whatever order they run. When a session
ran all of them, `verdict` (called from tests/conftest.py when the session ends) saves the ledger
to test-artifacts/reliability.json and fails the run if a job was lost or paid twice, or if the
README's Reliability table no longer shows these figures. `python -m tests.reliability` rewrites
that table from the saved ledger.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ARTIFACT = REPO / "test-artifacts" / "reliability.json"
README = REPO / "README.md"
START, END = "<!-- reliability:start -->", "<!-- reliability:end -->"


@dataclass
class Ledger:
    inputs: set[str] = field(default_factory=set)  # "http:<case>" and "blob:<case>"
    faults: set[str] = field(default_factory=set)  # fault kinds injected
    jobs: int = 0  # jobs that had to end with a manifest
    lost: list[str] = field(default_factory=list)  # jobs with no manifest, or whose input changed
    double_paid: list[str] = field(default_factory=list)  # jobs with more paid calls than delivered results

    def table(self) -> str:
        http = sum(1 for i in self.inputs if i.startswith("http:"))
        blob = sum(1 for i in self.inputs if i.startswith("blob:"))
        rows = [
            ("hostile inputs tried", f"{len(self.inputs)} ({http} through the HTTP API, {blob} through the blob path)"),
            ("fault kinds injected", f"{len(self.faults)}: {', '.join(sorted(self.faults))}"),
            ("jobs that had to end with a manifest", str(self.jobs)),
            ("jobs lost (no manifest, or input changed)", str(len(self.lost))),
            ("jobs paid twice", str(len(self.double_paid))),
        ]
        lines = ["| figure | value |", "|---|---|", *[f"| {name} | {value} |" for name, value in rows]]
        return "\n".join(lines)

    def save(self) -> None:
        ARTIFACT.parent.mkdir(exist_ok=True)
        data = asdict(self) | {"inputs": sorted(self.inputs), "faults": sorted(self.faults)}
        ARTIFACT.write_text(json.dumps(data, indent=2, ensure_ascii=False))

    @classmethod
    def load(cls) -> Ledger:
        data = json.loads(ARTIFACT.read_text())
        return cls(set(data["inputs"]), set(data["faults"]), data["jobs"], data["lost"], data["double_paid"])


LEDGER = Ledger()
MIN_FAULT_KINDS = 12


def is_complete(ledger: Ledger, expected_inputs: set[str]) -> bool:
    """The session tried every hostile input and enough kinds of fault for the figures to mean something."""
    return ledger.inputs == expected_inputs and len(ledger.faults) >= MIN_FAULT_KINDS


def verdict(ledger: Ledger, table_in_readme: str) -> str | None:
    """Why a complete run's ledger fails, or None when it passes."""
    if ledger.lost or ledger.double_paid:
        return f"jobs lost: {ledger.lost}; jobs paid twice: {ledger.double_paid}"
    if table_in_readme != ledger.table():
        return "the Reliability figures changed: run `python -m tests.reliability` and review the README diff"
    return None


def readme_table() -> str:
    text = README.read_text()
    return text.split(START, 1)[1].split(END, 1)[0].strip()


def update_readme(ledger: Ledger) -> None:
    text = README.read_text()
    head, rest = text.split(START, 1)
    _old, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{ledger.table()}\n{END}{tail}")


if __name__ == "__main__":
    update_readme(Ledger.load())
    print(f"README Reliability table updated from {ARTIFACT}", file=sys.stderr)
