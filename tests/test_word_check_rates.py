"""The word check's rates over the two corpora: the classroom's goals, general's policy, and the README's figures."""

from __future__ import annotations

from collections import Counter

import pytest

from shared.core.safety import check_text
from tests.word_check_rates import Measurement, load, measure, readme_table

LANGUAGES_WITH_A_LEXICON = {"en", "fr", "es", "de", "it", "pt", "nl", "pl", "ru", "ar", "zh", "ja", "ko", "hi"}


@pytest.fixture(scope="module")
def measured() -> Measurement:
    m = measure()
    print("\n" + m.table())  # the rates, shown with pytest -s
    return m


@pytest.mark.parametrize("name", ["must_refuse.jsonl", "innocent.jsonl"])
def test_each_corpus_has_300_cases_in_8_languages_with_a_lexicon(name: str) -> None:
    cases = load(name)
    languages = Counter(c["language"] for c in cases)
    assert len(cases) >= 300
    assert len(set(languages) & LANGUAGES_WITH_A_LEXICON) >= 8
    assert all(languages[code] >= 10 for code in LANGUAGES_WITH_A_LEXICON), languages
    assert len({c["text"] for c in cases}) == len(cases), "a case is listed twice"


def test_the_must_refuse_corpus_tries_every_evasion() -> None:
    evasions = {c["evasion"] for c in load("must_refuse.jsonl")}
    expected = {"zero-width", "soft-hyphen", "spaced", "leet", "stretched", "homoglyph", "base64", "emoji"}
    assert expected <= evasions


def test_kids_refuses_at_least_95_percent_of_what_a_classroom_must_refuse(measured: Measurement) -> None:
    assert measured.kids_refused.share >= 0.95, measured.kids_refused


def test_kids_wrongly_refuses_at_most_3_percent_of_innocent_requests(measured: Measurement) -> None:
    assert measured.kids_wrongly_refused.share <= 0.03, measured.kids_wrongly_refused


def test_general_refuses_what_its_policy_covers_and_allows_the_rest(measured: Measurement) -> None:
    # general (safe for work): sexual content, gore and graphic violence, hate, self-harm are refused;
    # a sword, a glass of wine or a scary clown are not its business.
    assert measured.general_refused.share >= 0.95, measured.general_refused
    assert measured.general_wrongly_refused.share <= 0.03, measured.general_wrongly_refused
    assert measured.general_refused_kids_only.share <= 0.05, measured.general_refused_kids_only


def test_every_language_meets_the_classroom_goals(measured: Measurement) -> None:
    for code, (refused, wrong) in measured.by_language.items():
        assert refused.total == 0 or refused.share >= 0.9, (code, refused)
        assert wrong.total == 0 or wrong.share <= 0.1, (code, wrong)


def test_the_readme_shows_the_measured_rates(measured: Measurement) -> None:
    assert readme_table() == measured.table(), "run `python -m tests.word_check_rates` and review the README diff"


def test_an_innocent_request_in_an_unreadable_script_is_refused_for_kids_by_design() -> None:
    # Not in the innocent corpus: the classroom fails closed where no lexicon reads the text.
    verdict = check_text("ช้างในป่า", "kids")  # an elephant in the forest, in Thai
    assert not verdict.allowed and "cannot read" in verdict.reason
