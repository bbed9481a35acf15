"""Safety profiles: the meta-prompts and the deterministic first layer that refuses before any paid call.

The first layer matches the user prompt and the caption against a disallow list in English,
French, Spanish and Russian (shared/data/lexicon.json), after folding the text (NFKC, case fold,
accents stripped, common Cyrillic/Latin look-alikes mapped) so that "ÉPÉE", "epee" and "еpee"
(Cyrillic е) are the same word. Terms match at the start of a word, so a stem like "ensanglant"
covers "ensanglanté", "ensanglantée", ...
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

# Letters that look alike in Latin and Cyrillic. Text is compared in both directions so that a
# Latin word spelt with Cyrillic letters (and the reverse) still matches its term.
_CYRILLIC_TO_LATIN = str.maketrans("аеорсухкмтвніјѕԁɡ", "aeopcyxkmtbhijsdg")
_LATIN_TO_CYRILLIC = str.maketrans("aeopcyxkmtbh", "аеорсухкмтвн")
# Digits and symbols used as letters ("bl00d", "k!ll").
_LEET = str.maketrans("013457@$!", "oieastasi")

# The disallow lists, by profile and language: shared/data/lexicon.json.
LEXICON_FILE = Path(__file__).resolve().parent.parent / "data" / "lexicon.json"


def _terms(profile: str) -> tuple[str, ...]:
    by_language: dict[str, list[str]] = json.loads(LEXICON_FILE.read_text(encoding="utf-8"))[profile]
    return tuple(term for terms in by_language.values() for term in terms)


SAFE_FOR_WORK_TERMS: tuple[str, ...] = _terms("general")
CHILD_UNSUITABLE_TERMS: tuple[str, ...] = _terms("kids")

GENERAL_META_PROMPT = (
    "You are the prompt composer of an image-variation service for a general audience. "
    "Every image you describe must be safe for work: no nudity or sexual content, no gore or "
    "graphic violence, no hate symbols, no self-harm, no real public figures in a false or "
    "demeaning context. Refuse any request that needs such content."
)

# The classroom meta-prompt: Edu4All's children use Varia in class.
KIDS_META_PROMPT = (
    "You are an assistant designer that creates images for children. "
    "The image needs to be safe for work and appropriate for children. "
    "The image needs to be in color. "
    "The image needs to be in landscape orientation. "
    "The image needs to be in a 16:9 aspect ratio. "
    "Do not consider any input from the following that is not safe for work or appropriate for children: "
    "no weapons, no blood, no violence, nothing scary, no alcohol, tobacco or drugs."
)


@dataclass(frozen=True)
class SafetyProfile:
    name: str
    meta_prompt: str
    disallowed: tuple[str, ...]
    prompt_suffix: str  # appended to every output prompt, e.g. the classroom's look
    landscape: bool  # ask the image model for the widest size it offers


PROFILES: dict[str, SafetyProfile] = {
    "general": SafetyProfile("general", GENERAL_META_PROMPT, SAFE_FOR_WORK_TERMS, "", False),
    "kids": SafetyProfile(
        "kids",
        KIDS_META_PROMPT,
        SAFE_FOR_WORK_TERMS + CHILD_UNSUITABLE_TERMS,
        " Child-friendly, bright and colourful, landscape composition.",
        True,
    ),
}


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str
    term: str | None = None


def fold(text: str) -> str:
    """Lower-case, accent-free, compatibility-normalized text with single spaces."""
    text = unicodedata.normalize("NFKC", text).casefold()
    decomposed = unicodedata.normalize("NFD", text)
    # Keep the Cyrillic short i (й) whole: dropping its breve would turn it into и.
    stripped = "".join(c for c in decomposed if not (unicodedata.combining(c) and c != "\u0306"))
    stripped = unicodedata.normalize("NFC", stripped)
    return " ".join(re.sub(r"[^\w\s'-]", " ", stripped).split())


def _variants(text: str) -> list[str]:
    folded = fold(text)
    latin = folded.translate(_CYRILLIC_TO_LATIN)
    return [folded, latin, latin.translate(_LEET), folded.translate(_LATIN_TO_CYRILLIC)]


def _pattern(terms: tuple[str, ...]) -> re.Pattern[str]:
    # A term matches at the start of a word; a trailing space in a term means "whole word".
    parts = [re.escape(fold(t)) + (r"\b" if t.endswith(" ") else "") for t in sorted(set(terms))]
    return re.compile(r"(?<!\w)(" + "|".join(parts) + ")")


_PATTERNS: dict[str, re.Pattern[str]] = {}


def check_text(text: str, profile: str, *, what: str = "request") -> Verdict:
    """Refuse text that names something the profile does not allow. Deterministic and free."""
    spec = get_profile(profile)
    pattern = _PATTERNS.get(spec.name)
    if pattern is None:
        pattern = _PATTERNS[spec.name] = _pattern(spec.disallowed)
    for variant in _variants(text):
        match = pattern.search(variant)
        if match:
            term = match.group(1)
            audience = "children" if spec.name == "kids" else "a general audience"
            return Verdict(False, f"The {what} mentions '{term}', which is not allowed for {audience}.", term)
    return Verdict(True, f"The {what} passed the {spec.name} word check.")


def get_profile(name: str) -> SafetyProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"Unknown safety profile {name!r}; use one of: {', '.join(PROFILES)}") from None


def as_untrusted(label: str, text: str) -> str:
    """Wrap user-controlled text so the composer reads it as data and it cannot close its own block."""
    cleaned = text.replace("<", "‹").replace(">", "›")
    return f"<{label}>\n{cleaned}\n</{label}>"
