"""The word check measured both ways, over twelve pairs of corpora in tests/corpora.

Each pair is a file of requests a classroom must refuse (`profile` is the mildest profile that
must refuse it: "general", both profiles; "kids", the classroom only) and a file of innocent
requests no profile should refuse (none in a language no lexicon reads: the classroom refuses
those by design, see test_word_check_rates.py):

- original (must_refuse.jsonl, innocent.jsonl): written together with the lexicons;
- held-out, unseen, fresh (heldout_*, unseen_*, fresh_*.jsonl): each written after a widening,
  measured, then tuned on in the next one;
- blind, sealed, untouched, unread, unheard, unsent, unasked (*.jsonl of those names): each written
  by someone who had read neither the lexicons nor the other corpora, measured untuned, then tuned
  on in the next widening (the fourth to the tenth), which the next pair measured;
- unprompted (unprompted_*.jsonl): written the same way during the tenth widening and never tuned
  on: the honest estimate for new text.

The README's word-check section gives each pair's untuned figures and what each widening added.
tests/test_word_check_rates.py asserts the goals over the tuned pairs (GOALS) together and that
the README's table shows every figure; `python -m tests.word_check_rates` rewrites that table.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from shared.core.safety import check_text

REPO = Path(__file__).resolve().parent.parent
CORPORA = REPO / "tests" / "corpora"
README = REPO / "README.md"
START, END = "<!-- word-check-rates:start -->", "<!-- word-check-rates:end -->"

# name -> (must-refuse file, innocent file)
PAIRS = {
    "original": ("must_refuse.jsonl", "innocent.jsonl"),
    "held-out": ("heldout_must_refuse.jsonl", "heldout_innocent.jsonl"),
    "unseen": ("unseen_must_refuse.jsonl", "unseen_innocent.jsonl"),
    "fresh": ("fresh_must_refuse.jsonl", "fresh_innocent.jsonl"),
    "blind": ("blind_must_refuse.jsonl", "blind_innocent.jsonl"),
    "sealed": ("sealed_must_refuse.jsonl", "sealed_innocent.jsonl"),
    "untouched": ("untouched_must_refuse.jsonl", "untouched_innocent.jsonl"),
    "unread": ("unread_must_refuse.jsonl", "unread_innocent.jsonl"),
    "unheard": ("unheard_must_refuse.jsonl", "unheard_innocent.jsonl"),
    "unsent": ("unsent_must_refuse.jsonl", "unsent_innocent.jsonl"),
    "unasked": ("unasked_must_refuse.jsonl", "unasked_innocent.jsonl"),
    "unprompted": ("unprompted_must_refuse.jsonl", "unprompted_innocent.jsonl"),
}
UNTUNED = "unprompted"  # measured and shown, never tuned on
# the goals are asserted over the others together
GOALS = tuple(pair for pair in PAIRS if pair != UNTUNED)


def load(name: str) -> list[dict[str, str]]:
    lines = (CORPORA / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@dataclass(frozen=True)
class Rate:
    hits: int
    total: int

    def __str__(self) -> str:
        return f"{self.hits}/{self.total} ({100 * self.hits / self.total:.1f}%)" if self.total else "–"

    @property
    def share(self) -> float:
        return self.hits / self.total if self.total else 0.0


@cache
def _allowed(text: str, profile: str) -> bool:
    """The verdict, kept: the union of the goals' pairs measures the same cases again."""
    return check_text(text, profile).allowed


def _refused(cases: list[dict[str, str]], profile: str) -> Rate:
    """How many of the cases the profile's word check refuses."""
    return Rate(sum(not _allowed(c["text"], profile) for c in cases), len(cases))


@dataclass(frozen=True)
class Measurement:
    kids_refused: Rate  # of every must-refuse request
    kids_wrongly_refused: Rate  # of the innocent requests
    general_refused: Rate  # of the must-refuse requests general's policy covers
    general_refused_kids_only: Rate  # of the requests only the classroom refuses (its policy allows them)
    general_wrongly_refused: Rate
    by_language: dict[str, tuple[Rate, Rate]]  # kids: refused of must-refuse, wrongly refused of innocent
    languages: int

    @property
    def rows(self) -> list[tuple[str, Rate]]:
        return [
            ("kids: must-refuse requests refused (goal ≥ 95%)", self.kids_refused),
            ("kids: innocent requests wrongly refused (goal ≤ 3%)", self.kids_wrongly_refused),
            ("general: must-refuse requests its policy covers, refused", self.general_refused),
            ("general: innocent requests wrongly refused", self.general_wrongly_refused),
            ("general: classroom-only requests refused (its policy allows them)", self.general_refused_kids_only),
        ]


def _measure(must: list[dict[str, str]], innocent: list[dict[str, str]]) -> Measurement:
    grouped: dict[str, tuple[list[dict[str, str]], list[dict[str, str]]]] = defaultdict(lambda: ([], []))
    for c in must:
        grouped[c["language"]][0].append(c)
    for c in innocent:
        grouped[c["language"]][1].append(c)
    order = sorted(grouped, key=lambda code: (-len(grouped[code][0]) - len(grouped[code][1]), code))
    by_language = {code: (_refused(grouped[code][0], "kids"), _refused(grouped[code][1], "kids")) for code in order}
    general = [c for c in must if c["profile"] == "general"]
    kids_only = [c for c in must if c["profile"] == "kids"]
    return Measurement(
        kids_refused=_refused(must, "kids"),
        kids_wrongly_refused=_refused(innocent, "kids"),
        general_refused=_refused(general, "general"),
        general_refused_kids_only=_refused(kids_only, "general"),
        general_wrongly_refused=_refused(innocent, "general"),
        by_language=by_language,
        languages=len({c["language"] for c in must + innocent}),
    )


def measure(names: tuple[str, ...] = GOALS) -> Measurement:
    """The rates over the union of the named corpus pairs."""
    must = [c for n in names for c in load(PAIRS[n][0])]
    innocent = [c for n in names for c in load(PAIRS[n][1])]
    return _measure(must, innocent)


@dataclass(frozen=True)
class Report:
    """Every corpus pair on its own, the union the goals are asserted over, and that union by language."""

    columns: dict[str, Measurement]  # row title -> measurement
    goals: Measurement

    def table(self) -> str:
        """A row per corpus pair (and the union of the goals'), a column per rate."""
        lines = [
            "| corpus pair | " + " | ".join(label for label, _ in self.goals.rows) + " |",
            "|---|" + "---|" * len(self.goals.rows),
        ]
        for title, m in self.columns.items():
            lines.append(f"| {title} | " + " | ".join(str(rate) for _, rate in m.rows) + " |")
        lines += ["", "| language (the goals' pairs) | kids: refused | kids: wrongly refused |", "|---|---|---|"]
        for code, (refused, wrong) in self.goals.by_language.items():
            lines.append(f"| {code} | {refused} | {wrong} |")
        return "\n".join(lines)


def report() -> Report:
    goals = measure(GOALS)
    columns = {name: measure((name,)) for name in GOALS}
    columns["all of the above (the goals)"] = goals
    columns[f"{UNTUNED} (never tuned on)"] = measure((UNTUNED,))
    return Report(columns, goals)


def readme_table() -> str:
    return README.read_text(encoding="utf-8").split(START, 1)[1].split(END, 1)[0].strip()


def update_readme(measured: Report) -> None:
    text = README.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    README.write_text(f"{head}{START}\n{measured.table()}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    update_readme(report())
    sys.stdout.write(readme_table() + "\n")
