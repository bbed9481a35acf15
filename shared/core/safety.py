"""Safety profiles: the meta-prompts and the deterministic first layer that refuses before any paid call.

The first layer is data: one lexicon per language in shared/data/lexicon/<code>.json (terms by
profile, stems and explicit inflections, allow-listed innocent compounds, false friends) and the
emoji lists in shared/data/lexicon/emoji.json. A malformed file fails at import, naming its path.

The text is normalized before matching (`readings`): NFKC, case fold, accents stripped, format
characters (zero-width, soft hyphen) and variation selectors removed, Cyrillic/Greek/Latin
look-alikes mapped within a mixed-script word, leetspeak ("bl00d", "k!ll", "@lcohol"), letters
stretched ("bloooood"), letters spaced out ("b l o o d", "b.l.o.o.d") and words broken by
punctuation ("kn-ife") joined. Obvious base64 chunks are decoded and checked too.

Each language's terms match at the start of a word (a term ending in "*" is a stem, one ending in
"+" takes the language's `inflections`, one starting with "*" is a compound head matched inside a
word, "{a|b}" spells alternatives; any other term is a whole word or phrase). A `near` rule
links two lists whose words are innocent alone: a violent verb followed, within a few words, by a
person or an animal ("attacking an old lady"), unless a word such as "with" stands between them.
Chinese and Japanese, written without spaces, match anywhere. An
allow-listed phrase ("blood orange", "killer whale", "черепаха") is taken out before the terms are
looked for, so the rest of the text is still checked. A false friend ("sang": French blood, English
past of sing) is refused only when the text does not read as the language where it is innocent.

Offline, the kids profile fails closed: a request in a script no lexicon covers (Thai, Hebrew,
Greek, ...) is refused with a message saying so. `check_text(..., fail_closed=False)` leaves that
decision to a moderation service.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

LEXICON_DIR = Path(__file__).resolve().parent.parent / "data" / "lexicon"
EMOJI_FILE = LEXICON_DIR / "emoji.json"


class LexiconError(ValueError):
    """A lexicon file that cannot be used: raised at import, with the file's path."""


# ---------------------------------------------------------------------------------------------
# Scripts
# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def script_of(ch: str) -> str:
    """The script of a letter ("Latin", "Cyrillic", "Han", "Thai", ...), "" for anything else."""
    if not unicodedata.category(ch).startswith("L"):
        return ""
    name = unicodedata.name(ch, "")
    first = name.split(" ", 1)[0]
    if first in ("CJK", "IDEOGRAPHIC"):
        return "Han"
    if first.startswith("KATAKANA") or first == "HALFWIDTH":
        return "Katakana"
    return first.capitalize() if first else "Unknown"


# ---------------------------------------------------------------------------------------------
# The lexicons
# ---------------------------------------------------------------------------------------------

PROFILE_NAMES = ("general", "kids")


@dataclass(frozen=True)
class Term:
    text: str  # folded
    stem: bool  # matches any word that starts with it; else a whole word or phrase
    language: str
    profile: str  # the profile whose list names it ("general" applies to kids too)
    innocent_in: tuple[str, ...] = ()  # languages where the same word is innocent (a false friend)
    inside: bool = False  # may start inside a word: the head of a compound ("*gewehr*")


@dataclass(frozen=True)
class Near:
    """Two lists whose words are innocent alone and refused together: a `first` term followed by a
    `then` term with at most `gap` words between ("attacking" ... "lady" in "attacking an old lady");
    for languages written without spaces, `gap` counts characters. A word of `breaks` between the
    two ("kicking leaves with the kids") unlinks them."""

    first: tuple[Term, ...]
    then: tuple[Term, ...]
    gap: int
    profile: str
    breaks: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    scripts: tuple[str, ...]
    substring: bool  # written without spaces: terms match anywhere
    markers: frozenset[str]  # common words that show a text is in this language
    prefixes: tuple[str, ...]  # clitics a word may start with (Arabic "al-", "wa-", "bi-", ...)
    terms: tuple[Term, ...]
    allow: tuple[Term, ...]
    path: Path = field(compare=False)
    near: tuple[Near, ...] = ()  # a word of one list followed closely by a word of another


def _require(condition: bool, path: Path, message: str) -> None:
    if not condition:
        raise LexiconError(f"{path}: {message}")


def _strings(value: Any, path: Path, key: str) -> list[str]:
    _require(isinstance(value, list), path, f"'{key}' must be a list of strings")
    for item in value:
        _require(isinstance(item, str) and item.strip() != "", path, f"'{key}' has an empty or non-string entry")
    return list(value)


def _expanded(raw: str, path: Path) -> list[str]:
    """A term with alternatives in braces, "{hit|kick}s {him|her}", as every phrase it stands for."""
    _require(raw.count("{") == raw.count("}"), path, f"'{raw}': unbalanced braces")
    m = re.search(r"\{([^{}]*)\}", raw)
    if m is None:
        _require("|" not in raw and "{" not in raw, path, f"'{raw}': '|' outside braces")
        return [raw]
    options = m.group(1).split("|")
    _require(len(options) > 1, path, f"'{raw}': braces need two alternatives or more")
    return [x for o in options for x in _expanded(raw[: m.start()] + o + raw[m.end() :], path)]


def _inflected(body: str, suffixes: tuple[str, ...]) -> list[str]:
    """A stem with each of its language's endings; for Latin letters, also with the last consonant
    doubled ("stab" -> "stabbed") or the final e dropped ("strangle" -> "strangling") before a vowel."""
    forms = [body + s for s in ("", *suffixes)]
    last = body[-1:]
    if last.isascii() and last.isalpha():
        for s in suffixes:
            if s[:1] in "aeiouy" and s:
                if last not in "aeiouywx":
                    forms.append(body + last + s)
                if last == "e":
                    forms.append(body[:-1] + s)
    return forms


def _terms(
    raw: str, language: str, profile: str, path: Path, substring: bool, suffixes: tuple[str, ...] = ()
) -> list[Term]:
    """The entries one line of a lexicon stands for.

    "word" a whole word or phrase; "stem*" any word starting with it; "stem+" the stem with one of
    the language's `inflections`; a leading "*" ("*gewehr*") lets the term start inside a word, the
    head of a compound ("Jagdgewehr"); "{a|b}" alternatives.
    """
    out: list[Term] = []
    for text in _expanded(raw, path):
        inside = text.startswith("*") and len(text) > 1
        body = text[1:] if inside else text
        stem = body.endswith("*")
        inflect = body.endswith("+")
        body = body[:-1] if stem or inflect else body
        _require(not ((stem or inflect or inside) and substring), path, f"'{raw}': a substring language has no stems")
        _require(not inflect or bool(suffixes), path, f"'{raw}': '+' needs the language's 'inflections'")
        for form in _inflected(body, suffixes) if inflect else [body]:
            folded = plain(form)
            _require(folded != "" and "*" not in folded and "+" not in folded, path, f"'{raw}' is empty after folding")
            out.append(Term(folded, stem, language, profile, inside=inside))
            squeezed = plain(re.sub(r"[^\w\s*+]", "", form))
            if profile == "allow" and squeezed != folded and squeezed:
                out.append(Term(squeezed, stem, language, profile, inside=inside))  # "bomb-proof": "bombproof"
    return out


def load_language(path: Path) -> Language:
    """Read and validate one lexicon file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LexiconError(f"{path}: not readable JSON ({exc})") from None
    _require(isinstance(data, dict), path, "must be a JSON object")
    known = {"about", "language", "name", "scripts", "match", "markers", "prefixes", "general", "kids", "allow"}
    known |= {"false_friends", "inflections", "near"}
    unknown = set(data) - known
    _require(not unknown, path, f"unknown keys {sorted(unknown)}")
    for key in ("language", "name", "scripts", "match", "general", "kids"):
        _require(key in data, path, f"missing '{key}'")
    code = data["language"]
    _require(isinstance(code, str) and code == path.stem, path, f"'language' must be '{path.stem}', the file's name")
    _require(data["match"] in ("word", "substring"), path, "'match' must be 'word' or 'substring'")
    substring = data["match"] == "substring"
    scripts = _strings(data["scripts"], path, "scripts")
    suffixes = tuple(plain(x) for x in _strings(data.get("inflections", []), path, "inflections"))
    terms = [
        term
        for profile in PROFILE_NAMES
        for raw in _strings(data[profile], path, profile)
        for term in _terms(raw, code, profile, path, substring, suffixes)
    ]
    allow = [
        term
        for raw in _strings(data.get("allow", []), path, "allow")
        for term in _terms(raw, code, "allow", path, substring, suffixes)
    ]
    friends = data.get("false_friends", {})
    _require(isinstance(friends, dict), path, "'false_friends' must map a term to the languages where it is innocent")
    guarded: dict[str, tuple[str, ...]] = {}
    for raw, languages in friends.items():
        innocent_in = tuple(_strings(languages, path, f"false_friends.{raw}"))
        forms = {t.text for t in _terms(raw, code, "friend", path, substring, suffixes)}
        _require(forms <= {t.text for t in terms}, path, f"false friend '{raw}' is not one of its terms")
        guarded.update(dict.fromkeys(forms, innocent_in))
    terms = [Term(t.text, t.stem, t.language, t.profile, guarded.get(t.text, ()), t.inside) for t in terms]
    near = _near_rules(data.get("near", []), code, path, substring, suffixes)
    return Language(
        code=code,
        name=str(data["name"]),
        scripts=tuple(scripts),
        substring=substring,
        markers=frozenset(plain(m) for m in _strings(data.get("markers", []), path, "markers")),
        prefixes=tuple(plain(p) for p in _strings(data.get("prefixes", []), path, "prefixes")),
        terms=tuple(terms),
        allow=tuple(allow),
        path=path,
        near=near,
    )


def _near_rules(value: Any, code: str, path: Path, substring: bool, suffixes: tuple[str, ...]) -> tuple[Near, ...]:
    _require(isinstance(value, list), path, "'near' must be a list of rules")
    rules = []
    for k, rule in enumerate(value):
        where = f"near[{k}]"
        _require(isinstance(rule, dict), path, f"'{where}' must be an object")
        _require(set(rule) <= {"about", "profile", "first", "then", "gap", "breaks"}, path, f"'{where}': unknown keys")
        profile = rule.get("profile")
        _require(profile in PROFILE_NAMES, path, f"'{where}.profile' must be one of {PROFILE_NAMES}")
        gap = rule.get("gap")
        _require(isinstance(gap, int) and 0 <= gap <= 8, path, f"'{where}.gap' must be a whole number 0-8")
        lists = []
        for key in ("first", "then"):
            _require(key in rule, path, f"'{where}' is missing '{key}'")
            raws = _strings(rule[key], path, f"{where}.{key}")
            lists.append(tuple(t for raw in raws for t in _terms(raw, code, profile, path, substring, suffixes)))
        breaks = frozenset(plain(b) for b in _strings(rule.get("breaks", []), path, f"{where}.breaks"))
        rules.append(Near(lists[0], lists[1], gap, profile, breaks))
    return tuple(rules)


def load_emoji(path: Path) -> dict[str, tuple[str, ...]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LexiconError(f"{path}: not readable JSON ({exc})") from None
    _require(isinstance(data, dict), path, "must be a JSON object")
    emoji: dict[str, tuple[str, ...]] = {}
    for profile in PROFILE_NAMES:
        _require(profile in data, path, f"missing '{profile}'")
        entries = tuple(_bare_emoji(e) for e in _strings(data[profile], path, profile))
        _require(all(entries), path, f"'{profile}' has an entry that is only modifiers")
        emoji[profile] = entries
    return emoji


def load_languages(folder: Path) -> dict[str, Language]:
    languages = {p.stem: load_language(p) for p in sorted(folder.glob("*.json")) if p != EMOJI_FILE}
    if not languages:
        raise LexiconError(f"{folder}: no lexicon files")
    return languages


# ---------------------------------------------------------------------------------------------
# Normalization
# ---------------------------------------------------------------------------------------------

# Letters that look alike in Latin, Cyrillic and Greek: a word mixing scripts is read in the script
# most of its letters are in, and a Cyrillic or Greek word made only of look-alikes is also read as Latin.
_TO_LATIN = {
    **dict(zip("аеорсухкмтвніјѕԁɡ", "aeopcyxkmtbhijsdg", strict=True)),
    **dict(zip("αβεικνοπρτυχ", "abeiknonptux", strict=True)),
}
_TO_CYRILLIC = dict(zip("aeopcyxkmtbh", "аеорсухкмтвн", strict=True))
# Letters NFKD leaves whole that people type without their stroke.
_PLAIN = str.maketrans(
    {"ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ı": "i", "æ": "ae", "œ": "oe", "ß": "ss"}
    | dict(zip("ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘǫʀꜱᴛᴜᴠᴡʏᴢ", "abcdefghijklmnopqrstuvwyz", strict=True))  # small capitals
)
# Arabic: hamza carriers and ta marbuta folded, so spelling variants meet.
_ARABIC = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ى": "ي", "ة": "ه", "ؤ": "و", "ئ": "ي", "ـ": None})
# Symbols and digits used as letters, read two ways (1, ! and | as i, then as l).
_LEET = {"0": "o", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g", "@": "a", "$": "s", "€": "e", "+": "t"}
_LEET_I = {**_LEET, "1": "i", "!": "i", "|": "l"}
_LEET_L = {**_LEET, "1": "l", "!": "l", "|": "i"}
_STRIP_MARKS_AFTER = {"Latin", "Greek", "Cyrillic", "Arabic", ""}
_TRAILING = ".,;:?!)]}'\"»”’…"
# Single letters that are words on their own: "add a k n i f e" joins to "aknife" and also "a knife".
_ONE_LETTER_WORDS = {"a", "i", "y", "o", "e", "u", "à"}

Char = tuple[str, int]  # a folded character and the index of the character it came from


def _dropped(c: str) -> bool:
    o = ord(c)
    return (
        unicodedata.category(c) == "Cf"
        or 0xFE00 <= o <= 0xFE0F
        or 0xE0100 <= o <= 0xE01EF
        or 0x1F3FB <= o <= 0x1F3FF  # skin tones
    )


def _fold_chars(text: str) -> list[Char]:
    out: list[Char] = []
    for i, c in enumerate(text):
        if _dropped(c):
            continue
        if unicodedata.category(c) in ("Mn", "Me"):
            if c == "\u0306" and out and out[-1][0] == "и":
                out[-1] = ("й", out[-1][1])
            elif out and script_of(out[-1][0]) not in _STRIP_MARKS_AFTER:
                out.append((c, i))  # Devanagari signs, kana voicing marks: part of the letter
            continue
        for ch in unicodedata.normalize("NFKC", c).casefold():
            script = script_of(ch)
            if script in ("Latin", "Greek", "Cyrillic") and ch != "й":
                for d in unicodedata.normalize("NFD", ch):
                    if not unicodedata.combining(d):
                        out.extend((e, i) for e in d.translate(_PLAIN))
            elif script == "Arabic" or 0x064B <= ord(ch) <= 0x065F or ch == "\u0670":
                if not unicodedata.combining(ch):
                    out.extend((e, i) for e in ch.translate(_ARABIC))
            else:
                out.append((ch, i))
    return out


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or unicodedata.category(ch)[0] == "M"


def fold(text: str) -> str:
    """Lower-case, accent-free, compatibility-normalized text: words separated by single spaces."""
    chars = _fold_chars(unicodedata.normalize("NFC", text))
    return " ".join("".join(ch if _is_word_char(ch) or ch in "'-" else " " for ch, _ in chars).split())


Word = list[Char]


def plain(text: str) -> str:
    """The plain reading of a text: folded words of letters and digits, separated by single spaces."""
    tokens = _tokens(_fold_chars(unicodedata.normalize("NFC", text)))
    return " ".join("".join(ch for ch, _ in w) for t in tokens for w in _plain(t))


def _tokens(chars: list[Char]) -> list[Word]:
    tokens: list[Word] = [[]]
    for ch, i in chars:
        if ch.isspace():
            if tokens[-1]:
                tokens.append([])
        else:
            tokens[-1].append((ch, i))
    return [t for t in tokens if t]


def _plain(token: Word) -> list[Word]:
    words: list[Word] = [[]]
    for ch, i in token:
        if _is_word_char(ch):
            words[-1].append((ch, i))
        elif words[-1]:
            words.append([])
    return [w for w in words if w]


def _squeezed(token: Word) -> list[Word]:
    word = [(ch, i) for ch, i in token if _is_word_char(ch)]
    return [word] if word else []


def _leet(token: Word, table: dict[str, str]) -> list[Word]:
    has_letter = any(ch.isalpha() for ch, _ in token)
    if not has_letter or not any(ch in table for ch, _ in token):
        return _squeezed(token)
    end = len(token)
    while end > 0 and token[end - 1][0] in _TRAILING:
        end -= 1
    word = [(table.get(ch, ch), i) for ch, i in token[:end]]
    return _squeezed(word)


def _majority_script(word: Word) -> Word:
    scripts = [script_of(ch) for ch, _ in word]
    latin = scripts.count("Latin")
    other = scripts.count("Cyrillic") + scripts.count("Greek")
    if latin and other:
        if latin >= other:
            return [(_TO_LATIN.get(ch, ch), i) for ch, i in word]
        return [(_TO_CYRILLIC.get(ch, ch), i) for ch, i in word]
    return word


def _as_latin(word: Word) -> Word:
    if all(ch in _TO_LATIN or ch.isdigit() for ch, _ in word):
        return [(_TO_LATIN.get(ch, ch), i) for ch, i in word]
    return word


_RUN = re.compile(r"(\w)\1{2,}")


def _destretched(word: Word, keep: int) -> Word:
    out: Word = []
    run = 0
    for k, (ch, i) in enumerate(word):
        run = run + 1 if k and word[k - 1][0] == ch else 1
        if run <= keep or not _stretched_at(word, k):
            out.append((ch, i))
    return out


def _stretched_at(word: Word, k: int) -> bool:
    """Whether position k is inside a run of three or more of the same letter."""
    ch = word[k][0]
    lo = k
    while lo > 0 and word[lo - 1][0] == ch:
        lo -= 1
    hi = k
    while hi + 1 < len(word) and word[hi + 1][0] == ch:
        hi += 1
    return hi - lo >= 2


def _joined(words: list[Word], split_first: bool) -> list[Word]:
    """Runs of three or more one-letter words ("b l o o d") become one word."""
    out: list[Word] = []
    k = 0
    while k < len(words):
        end = k
        while end < len(words) and len(words[end]) == 1 and words[end][0][0].isalpha():
            end += 1
        if end - k >= 3:
            run = words[k:end]
            if split_first and run[0][0][0] in _ONE_LETTER_WORDS and end - k >= 4:
                out.append(run[0])
                run = run[1:]
            out.append([c for w in run for c in w])
            k = end
        else:
            out.append(words[k])
            k += 1
    return out


@dataclass(frozen=True)
class Reading:
    """One way of reading the text: words separated by single spaces, each character's source index."""

    text: str
    index: tuple[int, ...]  # -1 for the spaces between words


def _reading(words: list[Word]) -> Reading:
    text: list[str] = []
    index: list[int] = []
    for w in words:
        if text:
            text.append(" ")
            index.append(-1)
        for ch, i in w:
            text.append(ch)
            index.append(i)
    return Reading("".join(text), tuple(index))


def readings(text: str) -> list[Reading]:
    """Every reading of the text the word check looks at, the plain one first. Indexes are into NFC(text)."""
    tokens = _tokens(_fold_chars(unicodedata.normalize("NFC", text)))
    word_lists: list[list[Word]] = []
    for split in (_plain, _squeezed, lambda t: _leet(t, _LEET_I), lambda t: _leet(t, _LEET_L)):
        word_lists.append([w for t in tokens for w in split(t)])
    more: list[list[Word]] = []
    for words in word_lists:
        mixed = [_majority_script(w) for w in words]
        more.append(mixed)
        more.append([_as_latin(w) for w in mixed])
    stretched: list[list[Word]] = []
    for words in more:
        stretched.append(words)
        if any(_RUN.search("".join(ch for ch, _ in w)) for w in words):
            stretched.append([_destretched(w, 1) for w in words])
            stretched.append([_destretched(w, 2) for w in words])
    seen: dict[str, Reading] = {}
    for words in stretched:
        for split_first in (False, True):
            r = _reading(_joined(words, split_first))
            seen.setdefault(r.text, r)
    return list(seen.values())


def _bare_emoji(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFC", text) if not _dropped(c))


# ---------------------------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Matcher:
    language: Language
    patterns: tuple[tuple[re.Pattern[str], bool], ...]  # candidate positions of the terms, and whether inside words
    table: dict[str, tuple[Term, ...]]  # folded term -> its entries
    lengths: tuple[int, ...]  # the lengths of the terms, longest first
    near: tuple[tuple[_Matcher, _Matcher, int, frozenset[str]], ...] = ()


def _alternation(texts: set[str]) -> str:
    return "|".join(re.escape(t) for t in sorted(texts, key=lambda t: (-len(t), t)))


def _start(language: Language) -> str:
    if language.substring:
        return ""
    prefixes = _alternation(set(language.prefixes))
    return r"(?<![^ ])" + (f"(?:{prefixes})?" if prefixes else "")


def _matcher(language: Language, profile: str) -> _Matcher:
    wanted = ("general",) if profile == "general" else ("general", "kids")
    near = tuple(
        (_terms_matcher(language, list(rule.first)), _terms_matcher(language, list(rule.then)), rule.gap, rule.breaks)
        for rule in language.near
        if rule.profile in wanted
    )
    m = _terms_matcher(language, [t for t in language.terms if t.profile in wanted])
    return _Matcher(m.language, m.patterns, m.table, m.lengths, near)


def _terms_matcher(language: Language, terms: list[Term]) -> _Matcher:
    table: dict[str, list[Term]] = {}
    for t in terms:
        table.setdefault(t.text, []).append(t)
    patterns = []
    at_start = {t.text for t in terms if not t.inside}
    if at_start:
        patterns.append((re.compile(_start(language) + f"(?P<t>{_alternation(at_start)})"), False))
    inside = {t.text for t in terms if t.inside}
    if inside:
        patterns.append((re.compile(f"(?P<t>{_alternation(inside)})"), True))
    lengths = tuple(sorted({len(k) for k in table}, reverse=True))
    return _Matcher(language, tuple(patterns), {k: tuple(v) for k, v in table.items()}, lengths)


@dataclass(frozen=True)
class _Hit:
    term: Term
    start: int  # in the reading
    end: int


def _masked(reading: str, allow: re.Pattern[str] | None) -> str:
    if allow is None:
        return reading
    return allow.sub(lambda m: m.group(0)[: m.start("a") - m.start()] + "_" * len(m.group("a")), reading)


def _hits(m: _Matcher, text: str) -> Iterator[_Hit]:
    for pattern, inside in m.patterns:
        pos = 0
        while True:
            found = pattern.search(text, pos)
            if found is None:
                break
            at = found.start("t")
            for length in m.lengths:
                if at + length > len(text):
                    continue
                for term in m.table.get(text[at : at + length], ()):
                    end = at + length
                    whole = m.language.substring or term.stem or end == len(text) or text[end] == " "
                    if whole and term.inside == inside:
                        yield _Hit(term, at, end)
            pos = found.start() + 1


def _near_hits(m: _Matcher, text: str) -> Iterator[_Hit]:
    """A `first` term followed by a `then` term with at most `gap` words (characters) between."""
    for first, then, gap, breaks in m.near:
        firsts = list(_hits(first, text))
        if not firsts:
            continue
        thens = list(_hits(then, text))
        for a in firsts:
            for b in thens:
                if b.start < a.end:
                    continue
                between = text[a.end : b.start]
                apart = len(between.replace(" ", "")) if m.language.substring else len(between.split())
                padded = f" {between.strip()} "
                if apart <= gap and not any(f" {b} " in padded for b in breaks):
                    term = Term(f"{a.term.text} … {b.term.text}", False, a.term.language, a.term.profile)
                    yield _Hit(term, a.start, b.end)


# ---------------------------------------------------------------------------------------------
# Profiles and the check
# ---------------------------------------------------------------------------------------------

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

LANGUAGES: dict[str, Language] = load_languages(LEXICON_DIR)
EMOJI: dict[str, tuple[str, ...]] = load_emoji(EMOJI_FILE)
# The scripts some lexicon reads, and the languages offered when a text is in another one.
READABLE_SCRIPTS = frozenset(s for lang in LANGUAGES.values() for s in lang.scripts)
_LANGUAGE_ORDER = ("en", "fr", "es", "de", "it", "pt", "nl", "pl", "ru", "ar", "zh", "ja", "ko", "hi")
READABLE_LANGUAGES = tuple(
    LANGUAGES[c].name for c in sorted(LANGUAGES, key=lambda c: (_LANGUAGE_ORDER + (c,)).index(c))
)


def _terms_of(profile: str) -> tuple[str, ...]:
    return tuple(t.text for lang in LANGUAGES.values() for t in lang.terms if t.profile == profile)


SAFE_FOR_WORK_TERMS: tuple[str, ...] = _terms_of("general")
CHILD_UNSUITABLE_TERMS: tuple[str, ...] = _terms_of("kids")


@dataclass(frozen=True)
class SafetyProfile:
    name: str
    meta_prompt: str
    disallowed: tuple[str, ...]
    prompt_suffix: str  # appended to every output prompt, e.g. the classroom's look
    landscape: bool  # ask the image model for the widest size it offers
    fail_closed: bool = False  # offline, refuse text in a script no lexicon reads


PROFILES: dict[str, SafetyProfile] = {
    "general": SafetyProfile("general", GENERAL_META_PROMPT, SAFE_FOR_WORK_TERMS, "", False),
    "kids": SafetyProfile(
        "kids",
        KIDS_META_PROMPT,
        SAFE_FOR_WORK_TERMS + CHILD_UNSUITABLE_TERMS,
        " Child-friendly, bright and colourful, landscape composition.",
        True,
        fail_closed=True,
    ),
}


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str
    term: str | None = None


@dataclass(frozen=True)
class _Compiled:
    matchers: tuple[_Matcher, ...]
    allow: re.Pattern[str] | None  # word-start allow-list phrases, all languages
    allow_anywhere: re.Pattern[str] | None  # allow-list of the languages without spaces
    emoji: tuple[str, ...]


def _allow_pattern(entries: list[Term], anywhere: bool) -> re.Pattern[str] | None:
    if not entries:
        return None
    start = "" if anywhere else r"(?<![^ ])"
    parts = []
    for inside in (False, True):
        stems = {e.text for e in entries if e.stem and e.inside == inside}
        whole = {e.text for e in entries if not e.stem and e.inside == inside}
        at = "" if inside else start
        if stems:
            parts.append(at + f"(?:{_alternation(stems)})")
        if whole:
            parts.append(at + f"(?:{_alternation(whole)})" + ("" if anywhere else r"(?![^ ])"))
    return re.compile("(?P<a>" + "|".join(parts) + ")")


@cache
def _compiled(profile: str) -> _Compiled:
    matchers = tuple(_matcher(lang, profile) for lang in LANGUAGES.values())
    spaced = [a for lang in LANGUAGES.values() if not lang.substring for a in lang.allow]
    unspaced = [a for lang in LANGUAGES.values() if lang.substring for a in lang.allow]
    wanted = ("general",) if profile == "general" else ("general", "kids")
    emoji = tuple(e for p in wanted for e in EMOJI[p])
    return _Compiled(matchers, _allow_pattern(spaced, False), _allow_pattern(unspaced, True), emoji)


def _marker_counts(text: str) -> dict[str, int]:
    words = text.split()
    return {code: sum(w in lang.markers for w in words) for code, lang in LANGUAGES.items()}


def _applies(term: Term, counts: dict[str, int]) -> bool:
    """A false friend is refused unless the text reads as a language where the word is innocent."""
    if not term.innocent_in:
        return True
    return max(counts.get(code, 0) for code in term.innocent_in) <= counts.get(term.language, 0)


def _quote(original: str, reading: Reading, start: int, end: int, whole_words: bool) -> str:
    """The user's own word(s) behind a match: the original text, not the folded term."""
    indexes = [i for i in reading.index[start:end] if i >= 0]
    lo, hi = min(indexes), max(indexes) + 1
    if whole_words:
        while (
            lo > 0 and not original[lo - 1].isspace() and (_is_word_char(original[lo - 1]) or _hidden(original[lo - 1]))
        ):
            lo -= 1
        while (
            hi < len(original)
            and not original[hi].isspace()
            and (_is_word_char(original[hi]) or _hidden(original[hi]) or original[hi] in "@$!|€+'")
        ):
            hi += 1
    quoted = original[lo:hi].strip(_TRAILING + " ")
    return "".join(c for c in quoted if not _dropped(c)) or original[lo:hi]


def _hidden(c: str) -> bool:
    return _dropped(c) or c in "@$|€+-._*"


def _find(text: str, profile: str) -> tuple[Term, str] | None:
    """The first term (or emoji) the text names under the profile, with the user's words for it."""
    original = unicodedata.normalize("NFC", text)
    compiled = _compiled(profile)
    bare = _bare_emoji(original)
    for emoji in compiled.emoji:
        if emoji in bare:
            return Term(emoji, False, "emoji", profile), emoji
    all_readings = readings(text)
    counts = _marker_counts(all_readings[0].text) if all_readings else {}
    for reading in all_readings:
        masked = _masked(reading.text, compiled.allow)
        masked = _masked(masked, compiled.allow_anywhere)
        # a term named on its own is quoted before a pair of words that starts at the same place
        found = [
            (hit.start, near, -(hit.end - hit.start), k, hit, matcher.language.substring)
            for k, matcher in enumerate(compiled.matchers)
            for near, hits in ((False, _hits(matcher, masked)), (True, _near_hits(matcher, masked)))
            for hit in hits
            if _applies(hit.term, counts)
        ]
        if found:
            *_, hit, substring = min(found, key=lambda f: f[:4])
            return hit.term, _quote(original, reading, hit.start, hit.end, not substring)
    return None


_BASE64 = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{6,}={0,2}(?![A-Za-z0-9+/=_-])")


def _decoded_chunks(text: str) -> Iterator[tuple[str, str]]:
    """Long tokens that decode from base64 to readable text: (token, decoded)."""
    for m in _BASE64.finditer(text):
        token = m.group(0)
        body = token.rstrip("=")
        if len(body) % 4 == 1:
            continue
        padded = body + "=" * (-len(body) % 4)
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                decoded = decode(padded.encode("ascii")).decode("utf-8")
            except (binascii.Error, ValueError):
                continue
            letters = sum(c.isalpha() for c in decoded)
            if decoded.isprintable() and letters >= 3 and letters + decoded.count(" ") >= 0.6 * len(decoded):
                yield token, decoded
                break


def _unreadable_script(text: str) -> str | None:
    """The first script in the text that no lexicon reads (words of two letters or more)."""
    for reading in readings(text)[:1]:
        for word in reading.text.split():
            scripts = {script_of(ch) for ch in word} - {""}
            unknown = sorted(s for s in scripts if s not in READABLE_SCRIPTS)
            if unknown and sum(script_of(ch) in unknown for ch in word) >= 2:
                return unknown[0]
    return None


def _languages_phrase() -> str:
    names = READABLE_LANGUAGES
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def check_text(text: str, profile: str, *, what: str = "request", fail_closed: bool | None = None) -> Verdict:
    """Refuse text that names something the profile does not allow. Deterministic and free.

    `fail_closed` (default: the profile's, true for kids) refuses text in a script no lexicon reads;
    pass False where a moderation service reads it instead.
    """
    spec = get_profile(profile)
    audience = "children" if spec.name == "kids" else "a general audience"
    found = _find(text, spec.name)
    if found is None:
        for token, decoded in _decoded_chunks(unicodedata.normalize("NFC", text)):
            inner = _find(decoded, spec.name)
            if inner is not None:
                term, said = inner
                return Verdict(
                    False,
                    f"The {what} mentions '{said}' (written in base64 as '{token[:24]}'), "
                    f"which is not allowed for {audience}.",
                    term.text,
                )
    if found is not None:
        term, said = found
        return Verdict(False, f"The {what} mentions '{said}', which is not allowed for {audience}.", term.text)
    if spec.fail_closed if fail_closed is None else fail_closed:
        script = _unreadable_script(text)
        if script is not None:
            return Verdict(
                False,
                f"The {what} is written in {script} script, which Varia's offline word check cannot read. "
                f"Write it in {_languages_phrase()}, or ask the teacher.",
                None,
            )
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
