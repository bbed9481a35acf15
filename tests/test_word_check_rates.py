"""The word check's rates over the corpora: the classroom's goals, general's policy, and the README's figures.

The goals are asserted over the pairs the lexicons were tuned on (GOALS) together; the untuned pair,
written without reading the lexicons, is measured and shown in the README but never tuned on.
"""

from __future__ import annotations

from collections import Counter

import pytest

from shared.core.safety import check_text, languages
from tests.word_check_rates import GOALS, PAIRS, UNTUNED, Measurement, Report, load, readme_table, report

# Measuring every pair checks about 9,000 requests in both profiles: minutes under coverage.
pytestmark = pytest.mark.timeout(1200)

LANGUAGES_WITH_A_LEXICON = {"en", "fr", "es", "de", "it", "pt", "nl", "pl", "ru", "ar", "zh", "ja", "ko", "hi"}
# cases in each file of the pair
SMALLEST = {
    "original": 300,
    "held-out": 150,
    "unseen": 80,
    "fresh": 80,
    "blind": 300,
    "sealed": 300,
    "untouched": 300,
    "unread": 300,
    "unheard": 380,
    "unsent": 400,
    "unasked": 400,
    "unprompted": 380,
}


@pytest.fixture(scope="module")
def measured() -> Report:
    r = report()
    print("\n" + r.table())  # the rates, shown with pytest -s
    return r


@pytest.fixture(scope="module")
def goals(measured: Report) -> Measurement:
    return measured.goals


@pytest.mark.parametrize("pair", list(PAIRS))
def test_each_corpus_has_enough_cases_in_8_languages_with_a_lexicon(pair: str) -> None:
    for name in PAIRS[pair]:
        cases = load(name)
        languages = Counter(c["language"] for c in cases)
        assert len(cases) >= SMALLEST[pair], name
        assert len(set(languages) & LANGUAGES_WITH_A_LEXICON) >= 8, name
        assert len({c["text"] for c in cases}) == len(cases), f"{name}: a case is listed twice"
        keys = {"text", "language", "category"} | ({"profile", "evasion"} if "must_refuse" in name else set())
        assert all(set(c) == keys for c in cases), name
        assert all(c.get("profile", "kids") in ("kids", "general") for c in cases), name
    if pair == "original":
        for name in PAIRS[pair]:
            languages = Counter(c["language"] for c in load(name))
            assert all(languages[code] >= 10 for code in LANGUAGES_WITH_A_LEXICON), languages


def test_no_case_is_in_two_corpora() -> None:
    # a case of a later pair that repeats an earlier one measures nothing new
    seen: dict[str, str] = {}
    for must, innocent in PAIRS.values():
        for name in (must, innocent):
            for c in load(name):
                key = c["text"].casefold()
                assert seen.setdefault(key, name) == name, (c["text"], seen[key], name)


# The later pairs' authors named some evasions their own way.
EVASION_ALIASES = {"spacing": "spaced", "leetspeak": "leet", "repeated": "stretched", "mixed-script": "homoglyph"}


@pytest.mark.parametrize("name", [must for must, _ in PAIRS.values()])
def test_the_must_refuse_corpora_try_the_evasions(name: str) -> None:
    evasions = {EVASION_ALIASES.get(c["evasion"], c["evasion"]) for c in load(name)}
    expected = {"zero-width", "spaced", "leet", "stretched", "homoglyph", "emoji"}
    if name == "must_refuse.jsonl":
        expected |= {"soft-hyphen", "base64"}
    assert expected <= evasions


def test_kids_refuses_at_least_95_percent_of_what_a_classroom_must_refuse(goals: Measurement) -> None:
    assert goals.kids_refused.share >= 0.95, goals.kids_refused


def test_kids_wrongly_refuses_at_most_3_percent_of_innocent_requests(goals: Measurement) -> None:
    assert goals.kids_wrongly_refused.share <= 0.03, goals.kids_wrongly_refused


def test_general_refuses_what_its_policy_covers_and_allows_the_rest(goals: Measurement) -> None:
    # general (safe for work): sexual content, gore and graphic violence, hate, self-harm are refused;
    # a sword, a glass of wine or a scary clown are not its business.
    assert goals.general_refused.share >= 0.95, goals.general_refused
    assert goals.general_wrongly_refused.share <= 0.03, goals.general_wrongly_refused
    assert goals.general_refused_kids_only.share <= 0.05, goals.general_refused_kids_only


@pytest.mark.parametrize("pair", GOALS)
def test_each_corpus_the_goals_cover_meets_them_on_its_own(measured: Report, pair: str) -> None:
    m = next(m for title, m in measured.columns.items() if title == pair)
    assert m.kids_refused.share >= 0.95 and m.kids_wrongly_refused.share <= 0.03, (pair, m.rows)


def test_every_language_with_a_lexicon_meets_the_classroom_goals(goals: Measurement) -> None:
    # A language without one is checked with the others' terms when it cannot be told apart from
    # them (Danish, Romanian); it counts in the totals, not here.
    for code, (refused, wrong) in goals.by_language.items():
        if code not in languages() and code != "emoji":
            continue
        assert refused.total == 0 or refused.share >= 0.9, (code, refused)
        assert wrong.total == 0 or wrong.share <= 0.1, (code, wrong)


def test_the_readme_shows_the_measured_rates_of_every_corpus(measured: Report) -> None:
    table = readme_table()
    assert table == measured.table(), "run `python -m tests.word_check_rates` and review the README diff"
    assert any(line.startswith(f"| {UNTUNED} (never tuned on) |") for line in table.splitlines())
    assert UNTUNED not in GOALS  # the honest estimate is shown, never asserted


def test_the_untuned_pair_is_measured_in_every_profile(measured: Report) -> None:
    # reported honestly, whatever it shows: only that it was measured over all its cases
    untuned = measured.columns[f"{UNTUNED} (never tuned on)"]
    must, innocent = (load(name) for name in PAIRS[UNTUNED])
    assert untuned.kids_refused.total == len(must) and untuned.kids_wrongly_refused.total == len(innocent)
    assert untuned.general_refused.total + untuned.general_refused_kids_only.total == len(must)


def test_an_innocent_request_in_an_unreadable_script_is_refused_for_kids_by_design() -> None:
    # Not in the innocent corpora: the classroom fails closed where no lexicon reads the text.
    verdict = check_text("ช้างในป่า", "kids")  # an elephant in the forest, in Thai
    assert not verdict.allowed and "cannot read" in verdict.reason
