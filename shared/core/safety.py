"""Safety profiles: the meta-prompts and the deterministic first layer that refuses before any paid call.

The first layer is data: one lexicon per language in shared/data/lexicon/<code>.json (terms by
profile, stems and explicit inflections, allow-listed innocent compounds, false friends, rules
that link or unlink words) and the emoji lists in shared/data/lexicon/emoji.json. The lexicons are
read, checked and folded on first use (`languages()`), not at import; a malformed file fails
then, naming its path (the tests load every file).

The text is normalized before matching (`readings`): NFKC, case fold, accents stripped, format
characters (zero-width, soft hyphen) and variation selectors removed, Cyrillic/Greek/Latin
look-alikes mapped within a mixed-script word, leetspeak ("bl00d", "k!ll", "@lcohol", "m4t3") or a
digit typed between letters left out ("kr3wi"),
letters stretched ("bloooood"), letters spaced out ("b l o o d", "b.l.o.o.d", "в к р о в и" read
"в крови" too, a one-letter word of some lexicon's markers staying a word; a Devanagari vowel sign
typed alone, "ख ू न", joined to its letters) and words broken by punctuation ("kn-ife") joined
(not an elided article: "d'Agatha" is "d agatha");
Hangul letters typed one by one become the syllables they spell ("ㅊ ㅗ ㅇ", "ㅊㅗㅇ": "총");
Chinese and Japanese characters typed apart are also read closed up ("自 杀", "は だ か にして"), and
Hangul syllables typed one by one ("알 몸"), beside the reading with the spaces ("내 총" is two words);
a dash or the kanji "一" between katakana is the long-vowel mark ("ヌ一ド");
a word with letters starred out ("p*rn", "s*icide", "b**ch") is the one-word term it fits, at
least two letters shown and no more stars than letters, in a language the text reads as, and a
word whose last letter is typed twice ("knifee", "beerr") is also read with it once, in the same way;
halfwidth katakana becomes katakana, its voicing marks composed ("ｼﾞｻﾂ": "ジサツ"). Obvious base64
chunks are decoded and checked too.

Each language's terms match at the start of a word (a term ending in "*" is a stem, a word ending
in "+" takes the language's `inflections`, a term starting with "*" is a compound head matched
inside a word, "{a|b}" spells alternatives, "@name" one of the lexicon's `classes` of words; any
other term is a whole word or phrase). Chinese and Japanese, written without spaces, match anywhere;
a Japanese term of three kana or more written in hiragana also matches in katakana ("じさつ", "ジサツ").
A lexicon may list terms in another script than its own (romanised Hindi, "khoon"): every term is
looked for in every text. A line that spells more than 64 phrases ("{jump+|leap+} {off|from} {the|a|}
{roof|bridge|...}" spells hundreds, the longest a hundred thousand) is not listed phrase by phrase but
kept as its words' alternatives, a `Phrase`, and matched as one pattern where a text has one of its
first words: it refuses (or allows) exactly the phrases it spells, and the lexicons load in a
fraction of the time and memory a list of every phrase took.

When no term is written right, a word of the text one misspelling from a long one-word term of the
language the text reads as (by its markers) is that term: one letter swapped for a like one ("l"/"r",
"о"/"а", "س"/"ص"), a doubled letter, a Devanagari sign left out ("revórver", "писталет",
"आत्महतया"). Not in the first three letters, nor for short terms: the lengths are those at which the
50,000 commonest words of each language have no innocent word so close to a term of the same language.

Words innocent alone can be refused together, and words risky alone made innocent by their
neighbours, so that a rule covers the next case and not only the last one:

- a `near` rule links lists of words: a violent verb in any inflection followed, within a few
  words and in the same clause, by a person or an animal ("clubbing a homeowner", "knifing each
  other"), unless a word such as "with" stands between them; a third list may follow
  ("ripping" ... "hiker" ... "apart"; "pushed" ... "man" ... "off a cliff");
- a `context` rule takes a risky word out when a neighbour shows its innocent sense: sport and
  play ("punching the ball", "beating the high score", "a killer backhand", "play-fighting"), a
  knife among the cutlery ("Messer, Gabel und Teller"), a toy or a costume ("a toy sword");
- `places` take out capitalised place names: a word before a place word ("Slaughter Beach"),
  after one ("Vallée de la Mort"), or with a place-name ending ("Killington", "Teufelsberg");
- a compound head ("*mes", "*messer") found inside a word counts only in a text of its language, or
  of none the markers tell: "keukenmes" and "Küchenmesser", not English "flames";
- an allow-listed phrase ("blood orange", "killer whale", "черепаха") is taken out before the
  terms are looked for, so the rest of the text is still checked. A false friend ("sang": French
  blood, English past of sing) is refused only when the text does not read as the language where
  it is innocent.

An emoji refused alone is innocent where an emoji of its innocent sense stands right beside it
(emoji.json's `innocent_beside`: a knife among vegetables "🔪🥕", "😂💀"); anywhere else it is refused.

Offline, the kids profile fails closed: a request in a script no lexicon covers (Thai, Hebrew,
Greek, ...) is refused with a message saying so, and so is a request in Latin or Cyrillic script that
reads as a language no lexicon covers: letters no lexicon writes (nor writes the accents of, "č",
"ő", "ј") in one word in four or more, or four words or more none of which is a word some lexicon
knows (a marker, a word of a term, rule or allow-listed phrase) nor has a letter telling one of
their languages (a lexicon's `telling_letters`: "ł", "ы"); capitalised names past the first word
count in neither.
`check_text(..., fail_closed=False)` leaves that decision to a moderation service.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import math
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
class Phrase:
    """A line that stands for more phrases than are worth listing one by one ("{jump+|leap+} {off|from}
    {the|a} {roof|bridge|balcony}" stands for hundreds): kept as the alternatives of each of its words,
    its slots, and matched as one pattern. It refuses (or allows) exactly the phrases the line spells."""

    slots: tuple[tuple[str, ...], ...]  # each slot's folded alternatives ("jump", "jumps", ..., "leapt")
    optional: tuple[bool, ...]  # slots an empty alternative lets be left out ("{a|the|}")
    stem: bool  # the last word may go on ("... {slash|cut}*")
    language: str
    profile: str

    def first_words(self) -> frozenset[str]:
        """The words a text of the phrase can start with."""
        words: set[str] = set()
        for slot, optional in zip(self.slots, self.optional, strict=True):
            words.update(form.split(" ", 1)[0] for form in slot)
            if not optional:
                break
        return frozenset(words)

    def pattern(self) -> str:
        """A regular expression for exactly the phrases, words separated by single spaces."""
        alts = [f"(?:{_alternation(set(slot))})" for slot in self.slots]
        last = max(k for k, optional in enumerate(self.optional) if not optional)
        parts = [
            (f"(?:{a} )?" if self.optional[k] else f"{a} ") if k < last else (a if k == last else f"(?: {a})?")
            for k, a in enumerate(alts)
        ]
        return "".join(parts) + ("" if self.stem else "(?![^ ])")


@dataclass(frozen=True)
class Near:
    """Lists whose words are innocent alone and refused together: a `first` term followed by a
    `then` term with at most `gap` words between ("attacking" ... "lady" in "attacking an old lady"),
    and by a `last` term as closely if the rule has one ("ripping" ... "hiker" ... "apart"); for
    languages written without spaces, `gap` counts characters. A word of `breaks` between them
    ("kicking leaves with the kids") unlinks them, and so does a comma or a full stop."""

    first: tuple[Term, ...]
    then: tuple[Term, ...]
    gap: int
    profile: str
    breaks: frozenset[str] = frozenset()
    last: tuple[Term, ...] = ()


@dataclass(frozen=True)
class Context:
    """A sense its neighbours make innocent: a `terms` word with a `context` word at most `gap` words
    away on `side` ("after", "before" or "either") is taken out before matching, like an allow-listed
    phrase: "punching the ball", "a killer backhand", "Messer, Gabel und Teller" (a table, not a weapon)."""

    terms: tuple[Term, ...]
    context: tuple[Term, ...]
    gap: int
    side: str


@dataclass(frozen=True)
class Places:
    """How place names are written, for the languages with capital letters: a capitalised word just
    before a capitalised place word ("Slaughter Beach", "Dead Horse Point"), or after one and its
    links ("Valley of Death", "Vallée de la Mort"), or a capitalised word with a place-name ending
    ("Killington", "Teufelsberg") is a name, taken out before matching."""

    words: frozenset[str] = frozenset()  # beach, valley, lake, ...
    links: frozenset[str] = frozenset()  # of, the, de, la, ...
    endings: tuple[str, ...] = ()  # -ton, -ville, -berg, ...


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
    phrases: tuple[Phrase, ...] = ()  # lines of the profiles' lists too many phrases long to list
    near: tuple[Near, ...] = ()  # a word of one list followed closely by a word of another
    contexts: tuple[Context, ...] = ()  # a risky word made innocent by its neighbours
    places: Places = Places()
    letters: frozenset[str] = frozenset()  # every letter its words are written with (lower case)
    # letters that show a text is in this language and not in one without a lexicon that shares its
    # script (Polish "ł", Turkish "ş", Russian "ы"): the lexicon may write its words without them
    telling: frozenset[str] = frozenset()


def _require(condition: bool, path: Path, message: str) -> None:
    if not condition:
        raise LexiconError(f"{path}: {message}")


def _strings(value: Any, path: Path, key: str) -> list[str]:
    _require(isinstance(value, list), path, f"'{key}' must be a list of strings")
    for item in value:
        _require(isinstance(item, str) and item.strip() != "", path, f"'{key}' has an empty or non-string entry")
    return list(value)


def _expanded(raw: str, path: Path) -> list[str]:
    """A term with alternatives in braces, "{hit|kick}s {him|her}", as every phrase it stands for
    (braces may nest: "{a {big|small} dog|a cat}")."""
    _require(raw.count("{") == raw.count("}"), path, f"'{raw}': unbalanced braces")
    return list(dict.fromkeys(_spelled(raw, raw, path)))


def _spelled(text: str, raw: str, path: Path) -> list[str]:
    start = text.find("{")
    if start < 0:
        _require("|" not in text and "}" not in text, path, f"'{raw}': '|' outside braces")
        return [text]
    depth, cuts = 0, [start]
    for k in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[k], 0)
        if depth == 1 and text[k] == "|":
            cuts.append(k)
        if depth == 0:
            break
    _require(depth == 0, path, f"'{raw}': unbalanced braces")
    cuts.append(k)
    options = [text[a + 1 : b] for a, b in itertools.pairwise(cuts)]
    _require(len(options) > 1, path, f"'{raw}': braces need two alternatives or more")
    _require("|" not in text[:start], path, f"'{raw}': '|' outside braces")
    rests = _spelled(text[k + 1 :], raw, path)
    return [text[:start] + o + rest for option in options for o in _spelled(option, raw, path) for rest in rests]


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


def _phrase_forms(body: str, suffixes: tuple[str, ...]) -> list[str]:
    """A phrase with each word that ends in "+" inflected: "club+ a {dog|cat}", "throw+ herself"."""
    options = [_inflected(w[:-1], suffixes) if len(w) > 1 and w.endswith("+") else [w] for w in body.split(" ")]
    return [" ".join(words) for words in itertools.product(*options)]


_PUNCTUATION = re.compile(r"[^\w\s*+]")


def _terms(
    raw: str, language: str, profile: str, path: Path, substring: bool, suffixes: tuple[str, ...] = ()
) -> list[Term]:
    """The entries one line of a lexicon stands for.

    "word" a whole word or phrase; "stem*" any word starting with it; "stem+" the stem with one of
    the language's `inflections` (in a phrase too: "throw+ herself"); a leading "*" ("*gewehr*")
    lets the term start inside a word, the head of a compound ("Jagdgewehr"); "{a|b}" alternatives.
    """
    out: list[Term] = []
    for text in _expanded(raw, path):
        inside = text.startswith("*") and len(text) > 1
        body = text[1:] if inside else text
        stem = body.endswith("*")
        body = body[:-1] if stem else body
        inflect = any(len(w) > 1 and w.endswith("+") for w in body.split(" "))
        _require(not ((stem or inflect or inside) and substring), path, f"'{raw}': a substring language has no stems")
        _require(not inflect or bool(suffixes), path, f"'{raw}': '+' needs the language's 'inflections'")
        for form in _phrase_forms(body, suffixes) if inflect else [body]:
            folded = _plain_phrase(form)
            _require(folded != "" and "*" not in folded and "+" not in folded, path, f"'{raw}' is empty after folding")
            out.append(Term(folded, stem, language, profile, inside=inside))
            if _hiragana_word(folded):
                out.append(Term(_katakana(folded), stem, language, profile, inside=inside))  # "ころす": "コロス"
            squeezed = plain(_PUNCTUATION.sub("", form)) if profile == "allow" else folded
            if squeezed != folded and squeezed:
                out.append(Term(squeezed, stem, language, profile, inside=inside))  # "bomb-proof": "bombproof"
    return out


# A line that spells more phrases than this is kept as a `Phrase`, not listed.
_LISTED_PHRASES = 64


def _top_level_words(raw: str) -> list[str]:
    """The line split at the spaces outside braces: "{take off|remove} her {bra|top}" has three."""
    words, depth, start = [], 0, 0
    for k, ch in enumerate(raw):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == " " and depth == 0:
            words.append(raw[start:k])
            start = k + 1
    return [w for w in [*words, raw[start:]] if w]


def _phrase(raw: str, language: str, profile: str, path: Path, suffixes: tuple[str, ...]) -> Phrase | None:
    """The line as a `Phrase` when it spells more than `_LISTED_PHRASES` phrases of several words;
    None to list it. Lines with stems or compound heads other than a last stem are listed, and so are
    allow-listed lines with punctuation."""
    _require(raw.count("{") == raw.count("}"), path, f"'{raw}': unbalanced braces")
    words = _top_level_words(raw)
    stem = raw.endswith("*")
    if len(words) < 2 or "*" in raw[:-1]:
        return None
    if profile == "allow" and _PUNCTUATION.search(re.sub(r"[{|}]", "", raw)):
        return None  # an allowed "dance-off" is also "danceoff", the line's punctuation dropped all at once
    if math.prod(_forms_at_most(word, path, suffixes) for word in words) <= _LISTED_PHRASES:
        return None  # short for sure: listed without folding its words twice
    slots: list[tuple[str, ...]] = []
    optional: list[bool] = []
    for k, word in enumerate(words):
        texts = _expanded(word[:-1] if stem and k == len(words) - 1 else word, path)
        said = [text for text in texts if plain(text)]
        forms = [t.text for text in said for t in _terms(text, language, profile, path, False, suffixes)]
        if not forms:
            return None
        slots.append(tuple(dict.fromkeys(forms)))
        optional.append(len(said) < len(texts))
    spelled = math.prod(len(slot) + left_out for slot, left_out in zip(slots, optional, strict=True))
    if all(optional[:-1] if stem else optional) or (stem and optional[-1]) or spelled <= _LISTED_PHRASES:
        return None
    return Phrase(tuple(slots), tuple(optional), stem, language, profile)


def _forms_at_most(word: str, path: Path, suffixes: tuple[str, ...]) -> int:
    """How many forms a word of a line spells at most, counted without folding: each alternative,
    and each "+" word in it with every ending, its last consonant doubled or its final e dropped."""
    per_plus = 1 + 2 * len(suffixes)
    return sum(
        per_plus ** sum(len(w) > 1 and w.endswith("+") for w in text.split(" ")) for text in _expanded(word, path)
    )


def _plain_phrase(text: str) -> str:
    """`plain` of a lexicon phrase, read word by word: one line of braces stands for up to a hundred
    thousand phrases made of a few dozen words, and each word is folded once. A word that starts with
    a mark belongs to the letter before it, so such a phrase is read whole."""
    words = text.split(" ")
    if not text.isascii() and any(w and unicodedata.category(w[0])[0] in "MC" for w in words):
        return plain(text)
    return " ".join(p for p in map(_plain_word, words) if p)


@lru_cache(maxsize=65536)
def _plain_word(word: str) -> str:
    return plain(word)


def _hiragana_word(text: str) -> bool:
    """Whether a term is a word of three kana or more written in hiragana, which people also write in
    katakana ("じさつ", "ジサツ", "ｼﾞｻﾂ"). Shorter ones are not twinned: "しね" is inside "シネマ"."""
    return len(text) >= 3 and all("\u3041" <= ch <= "\u3096" or ch in "\u3099\u309a\u30fc" for ch in text)


def _katakana(text: str) -> str:
    """Hiragana spelled in katakana (the two blocks are 0x60 apart)."""
    return "".join(chr(ord(ch) + 0x60) if "\u3041" <= ch <= "\u3096" else ch for ch in text)


def load_language(path: Path) -> Language:
    """Read and validate one lexicon file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LexiconError(f"{path}: not readable JSON ({exc})") from None
    _require(isinstance(data, dict), path, "must be a JSON object")
    known = {"about", "language", "name", "scripts", "match", "markers", "prefixes", "general", "kids", "allow"}
    known |= {"false_friends", "inflections", "near", "classes", "contexts", "places", "telling_letters"}
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
    terms: list[Term] = []
    phrases: list[Phrase] = []
    for profile in PROFILE_NAMES:
        for raw in _strings(data[profile], path, profile):
            phrase = None if substring else _phrase(raw, code, profile, path, suffixes)
            if phrase is None:
                terms += _terms(raw, code, profile, path, substring, suffixes)
            else:
                phrases.append(phrase)
    allow: list[Term] = []
    for raw in _strings(data.get("allow", []), path, "allow"):
        phrase = None if substring else _phrase(raw, code, "allow", path, suffixes)
        if phrase is None:
            allow += _terms(raw, code, "allow", path, substring, suffixes)
        else:
            phrases.append(phrase)
    friends = data.get("false_friends", {})
    _require(isinstance(friends, dict), path, "'false_friends' must map a term to the languages where it is innocent")
    guarded: dict[str, tuple[str, ...]] = {}
    for raw, languages in friends.items():
        innocent_in = tuple(_strings(languages, path, f"false_friends.{raw}"))
        forms = {t.text for t in _terms(raw, code, "friend", path, substring, suffixes)}
        _require(forms <= {t.text for t in terms}, path, f"false friend '{raw}' is not one of its terms")
        guarded.update(dict.fromkeys(forms, innocent_in))
    terms = [Term(t.text, t.stem, t.language, t.profile, guarded.get(t.text, ()), t.inside) for t in terms]
    read = _ListReader(code, path, substring, suffixes, _classes(data.get("classes", {}), path))
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
        phrases=tuple(phrases),
        near=_near_rules(data.get("near", []), read),
        contexts=_contexts(data.get("contexts", []), read),
        places=_places(data.get("places", {}), path),
        letters=frozenset(
            c for text in _texts(data) for c in unicodedata.normalize("NFC", text).lower() if c.isalpha()
        ),
        telling=_telling(data.get("telling_letters", ""), path),
    )


def _telling(value: Any, path: Path) -> frozenset[str]:
    _require(isinstance(value, str), path, "'telling_letters' must be a string of letters")
    letters = unicodedata.normalize("NFC", value).lower()
    _require(all(c.isalpha() for c in letters), path, "'telling_letters' must be letters only")
    return frozenset(letters)


def _texts(value: Any) -> Iterator[str]:
    """Every string of a lexicon's data but its prose (`about`), keys included (false friends)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key != "about":
                yield key
                yield from _texts(item)


def _classes(value: Any, path: Path) -> dict[str, list[str]]:
    """Named word lists ("person", "animal", "violent") a rule names as "@person"."""
    _require(isinstance(value, dict), path, "'classes' must map a name to a list of terms")
    for name in value:
        _require(re.fullmatch(r"[a-z_]+", name) is not None, path, f"class name '{name}' must be lower-case letters")
    return {name: _strings(raws, path, f"classes.{name}") for name, raws in value.items()}


_CLASS = re.compile(r"@([a-z_]+)")


def _one_of(raws: list[str]) -> str:
    return raws[0] if len(raws) == 1 else "{" + "|".join(raws) + "}"


@dataclass(frozen=True)
class _ListReader:
    """Reads the term lists of one lexicon's rules, with its classes spelled out."""

    code: str
    path: Path
    substring: bool
    suffixes: tuple[str, ...]
    classes: dict[str, list[str]]
    read: dict[tuple[str, str], list[Term]] = field(default_factory=dict)

    def raws(self, value: Any, where: str, depth: int = 0) -> list[str]:
        """The entries, a class named alone ("@people") replaced by its entries, and one named inside
        a phrase ("throw+ a rock at @animal") by its entries as alternatives."""
        _require(depth <= 3, self.path, f"'{where}': classes nest more than three deep")
        out: list[str] = []
        for raw in _strings(value, self.path, where):
            names = _CLASS.findall(raw)
            for name in names:
                _require(name in self.classes, self.path, f"'{where}': no class '{name}'")
            if raw.startswith("@") and raw[1:] in self.classes:
                out += self.raws(self.classes[raw[1:]], f"classes.{raw[1:]}", depth + 1)
            elif names:
                spelled = {n: _one_of(self.raws(self.classes[n], f"classes.{n}", depth + 1)) for n in names}
                parts = _CLASS.split(raw)  # text, class name, text, ...
                out.append("".join(spelled[part] if k % 2 else part for k, part in enumerate(parts)))
            else:
                out.append(raw)
        return out

    def terms(self, value: Any, where: str, profile: str) -> tuple[Term, ...]:
        found = (t for raw in self.raws(value, where) for t in self._line(raw, profile))
        return tuple(dict.fromkeys(found))

    def _line(self, raw: str, profile: str) -> list[Term]:
        """One line's terms, read once however many rules name its class."""
        key = (raw, profile)
        if key not in self.read:
            self.read[key] = _terms(raw, self.code, profile, self.path, self.substring, self.suffixes)
        return self.read[key]


def _near_rules(value: Any, read: _ListReader) -> tuple[Near, ...]:
    path = read.path
    _require(isinstance(value, list), path, "'near' must be a list of rules")
    rules = []
    for k, rule in enumerate(value):
        where = f"near[{k}]"
        _require(isinstance(rule, dict), path, f"'{where}' must be an object")
        keys = {"about", "profile", "first", "then", "last", "gap", "breaks"}
        _require(set(rule) <= keys, path, f"'{where}': unknown keys")
        profile = rule.get("profile")
        _require(profile in PROFILE_NAMES, path, f"'{where}.profile' must be one of {PROFILE_NAMES}")
        gap = rule.get("gap")
        _require(isinstance(gap, int) and 0 <= gap <= 8, path, f"'{where}.gap' must be a whole number 0-8")
        lists = []
        for key in ("first", "then", "last"):
            _require(key in rule or key == "last", path, f"'{where}' is missing '{key}'")
            lists.append(read.terms(rule.get(key, []), f"{where}.{key}", profile))
        breaks = frozenset(plain(b) for b in _strings(rule.get("breaks", []), path, f"{where}.breaks"))
        rules.append(Near(lists[0], lists[1], gap, profile, breaks, lists[2]))
    return tuple(rules)


def _contexts(value: Any, read: _ListReader) -> tuple[Context, ...]:
    path = read.path
    _require(isinstance(value, list), path, "'contexts' must be a list of rules")
    rules = []
    for k, rule in enumerate(value):
        where = f"contexts[{k}]"
        _require(isinstance(rule, dict), path, f"'{where}' must be an object")
        _require(set(rule) <= {"about", "terms", "context", "side", "gap"}, path, f"'{where}': unknown keys")
        for key in ("terms", "context", "side", "gap"):
            _require(key in rule, path, f"'{where}' is missing '{key}'")
        _require(rule["side"] in ("after", "before", "either"), path, f"'{where}.side' must be after, before or either")
        gap = rule["gap"]
        _require(isinstance(gap, int) and 0 <= gap <= 8, path, f"'{where}.gap' must be a whole number 0-8")
        terms = read.terms(rule["terms"], f"{where}.terms", "allow")
        context = read.terms(rule["context"], f"{where}.context", "allow")
        rules.append(Context(terms, context, gap, rule["side"]))
    return tuple(rules)


def _places(value: Any, path: Path) -> Places:
    _require(isinstance(value, dict), path, "'places' must be an object")
    _require(set(value) <= {"about", "words", "links", "endings"}, path, "'places': unknown keys")
    words, links, endings = (
        [plain(w) for w in _strings(value.get(key, []), path, f"places.{key}")] for key in ("words", "links", "endings")
    )
    _require(all(" " not in w for w in words + links + endings), path, "'places' lists single words")
    return Places(frozenset(words), frozenset(links), tuple(endings))


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


def load_emoji_beside(path: Path) -> dict[str, frozenset[str]]:
    """The emoji file's `innocent_beside`: an emoji refused alone, and the emoji that show its
    innocent sense when one stands right before or after it (🔪 among 🥕🥒, 😂💀)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    beside = data.get("innocent_beside", {})
    _require(isinstance(beside, dict), path, "'innocent_beside' must be an object")
    out: dict[str, frozenset[str]] = {}
    for key, value in beside.items():
        _require(
            isinstance(value, str) and value != "", path, f"'innocent_beside' of '{key}' must be a string of emoji"
        )
        bare = _bare_emoji(key)
        _require(len(bare) == 1, path, f"'innocent_beside': '{key}' must be one emoji")
        out[bare] = frozenset(_bare_emoji(value)) - {" "}
    return out


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


@lru_cache(maxsize=8192)
def _char_fold(c: str) -> str | None:
    """What one character folds to: None for a format character or a variation selector (dropped)
    and for a combining mark (what becomes of it depends on the letter before it), else its letters."""
    if _dropped(c) or unicodedata.category(c) in ("Mn", "Me"):
        return None
    out: list[str] = []
    for ch in unicodedata.normalize("NFKC", c).casefold():
        script = script_of(ch)
        if script in ("Latin", "Greek", "Cyrillic") and ch != "й":
            for d in unicodedata.normalize("NFD", ch):
                if not unicodedata.combining(d):
                    out.append(d.translate(_PLAIN))
        elif script == "Arabic" or 0x064B <= ord(ch) <= 0x065F or ch == "\u0670":
            if not unicodedata.combining(ch):
                out.append(ch.translate(_ARABIC))
        else:
            out.append(ch)
    return "".join(out)


def _fold_chars(text: str) -> list[Char]:
    out: list[Char] = []
    for i, c in enumerate(text):
        folded = _char_fold(c)
        if folded is not None:
            out.extend((e, i) for e in folded)
        elif not _dropped(c):  # a combining mark
            if c == "\u0306" and out and out[-1][0] == "и":
                out[-1] = ("й", out[-1][1])
            elif out and script_of(_last_letter(out)) not in _STRIP_MARKS_AFTER:
                out.append((c, i))  # Devanagari signs, kana voicing marks: part of the letter
        if out and out[-1][0] in _KANA_VOICING and len(out) > 1:
            out[-2:] = _composed(out[-2], out[-1])
    return out


# The kana voicing marks, combining or as halfwidth katakana writes them ("ｼﾞ" is "シ" and "ﾞ").
_KANA_VOICING = {"\u3099", "\u309a", "\u309b", "\u309c"}


def _composed(letter: Char, mark: Char) -> list[Char]:
    """A kana and the voicing mark after it as the one letter they make ("シ" + "ﾞ": "ジ"), when they make one."""
    combining = {"\u309b": "\u3099", "\u309c": "\u309a"}.get(mark[0], mark[0])
    one = unicodedata.normalize("NFC", letter[0] + combining)
    return [(one, letter[1])] if len(one) == 1 else [letter, mark]


def _last_letter(out: list[Char]) -> str:
    """The last character folded so far, looking past spaces: a vowel sign typed alone between
    spaces ("ख ू न") belongs to the letters around it, and is kept for `_glued_marks` to join."""
    for ch, _ in reversed(out):
        if not ch.isspace():
            return ch
    return ""


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or unicodedata.category(ch)[0] == "M"


def fold(text: str) -> str:
    """Lower-case, accent-free, compatibility-normalized text: words separated by single spaces."""
    chars = _fold_chars(unicodedata.normalize("NFC", text))
    return " ".join("".join(ch if _is_word_char(ch) or ch in "'-" else " " for ch, _ in chars).split())


Word = list[Char]
_ASCII_WORD = re.compile(r"[a-z0-9]+")


def plain(text: str) -> str:
    """The plain reading of a text: folded words of letters and digits, separated by single spaces."""
    if text.isascii():
        return " ".join(_ASCII_WORD.findall(text.lower()))
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


# An elided article or pronoun before an apostrophe: French "d'", "l'", "qu'", Italian "un'", ...
_ELISION = re.compile(r"[^\W\d_]{1,2}['’]")


def _squeezed(token: Word) -> list[Word]:
    """The token's letters and digits as one word ("kn-ife": "knife"), an elided article aside: "d'Agatha"
    is "d" and "agatha", not "dagatha"."""
    elided = _ELISION.match("".join(ch for ch, _ in token))
    if elided is not None and elided.end() < len(token):
        return _squeezed(token[: elided.end() - 1]) + _squeezed(token[elided.end() :])
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


def _digit_dropped(token: Word) -> list[Word]:
    """The word without a digit typed between two of its letters ("kr3wi": "krwi")."""
    out: list[Word] = []
    for word in _squeezed(token):
        kept = [
            (ch, i)
            for k, (ch, i) in enumerate(word)
            if not (ch.isdigit() and 0 < k < len(word) - 1 and word[k - 1][0].isalpha() and word[k + 1][0].isalpha())
        ]
        out += [kept] if kept else []
    return out


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


@cache
def _one_letter_words() -> frozenset[str]:
    """Letters that are words on their own: a few Latin ones, and every lexicon's one-letter markers
    (Russian "в", Polish "w", ...), so that "в к р о в и" is also read "в крови"."""
    markers = {m for lang in languages().values() for m in lang.markers if len(m) == 1}
    return frozenset(_ONE_LETTER_WORDS | markers)


def _glued_marks(tokens: list[Word]) -> list[Word]:
    """A token of combining marks alone, a vowel sign typed between spaces ("ख ू न"), joins the token
    before it and, when the token after it is a single letter, that one too: "खून"."""
    out: list[Word] = []
    k = 0
    while k < len(tokens):
        token = tokens[k]
        if out and all(unicodedata.category(ch).startswith("M") for ch, _ in token):
            out[-1] = out[-1] + token
            after = tokens[k + 1] if k + 1 < len(tokens) else []
            if sum(not unicodedata.category(ch).startswith("M") for ch, _ in after) == 1 and after[0][0].isalpha():
                out[-1] = out[-1] + after
                k += 1
        else:
            out.append(token)
        k += 1
    return out


def _joined(words: list[Word], split_first: bool) -> list[Word]:
    """Runs of three or more one-letter words ("b l o o d") become one word; with `split_first`, a
    first letter that is a word on its own stays one ("add a k n i f e": "a knife")."""
    one_letter_words = _one_letter_words()
    out: list[Word] = []
    k = 0
    while k < len(words):
        end = k
        while end < len(words) and len(words[end]) == 1 and _spaced_letter(words[end][0][0]):
            end += 1
        if end - k >= 3:
            run = words[k:end]
            if split_first and run[0][0][0] in one_letter_words and end - k >= 4:
                out.append(run[0])
                run = run[1:]
            out.append([c for w in run for c in w])
            k = end
        else:
            out.append(words[k])
            k += 1
    return out


def _spaced_letter(ch: str) -> bool:
    """A letter that is not a word alone, so a run of them typed apart is one: not a character of a
    script written without spaces nor a Hangul syllable, which `_closed_up` reads both ways."""
    return ch.isalpha() and script_of(ch) not in _unspaced_scripts() and not _hangul_syllable(ch)


# Hangul letters as Unicode folds the ones typed apart ("ㅊ ㅗ ㅇ"): leading consonants, vowels, and the
# final consonants a leading one stands for at the end of a syllable (NFKC makes "ㅇ" a leading "ᄋ").
_LEADING = "ᄀᄁᄂᄃᄄᄅᄆᄇᄈᄉᄊᄋᄌᄍᄎᄏᄐᄑᄒ"
_FINAL = "ᆨᆩᆪᆫᆬᆭᆮᆯᆰᆱᆲᆳᆴᆵᆶᆷᆸᆹᆺᆻᆼᆽᆾᆿᇀᇁᇂ"
_FINAL_OF = dict(zip("ᄀᄁᄂᄃᄅᄆᄇᄉᄊᄋᄌᄎᄏᄐᄑᄒ", "ᆨᆩᆫᆮᆯᆷᆸᆺᆻᆼᆽᆾᆿᇀᇁᇂ", strict=True))


def _vowel(ch: str) -> bool:
    return 0x1161 <= ord(ch) <= 0x1175


def _typed_apart(ch: str) -> bool:
    """A Hangul letter typed on its own (compatibility jamo), not in a syllable."""
    return len(ch) == 1 and 0x3131 <= ord(ch) <= 0x318E


def _hangul_syllables(word: Word) -> Word:
    """Hangul letters typed one by one ("ㅊ ㅗ ㅇ", joined by `_joined`, or "ㅊㅗㅇ") as the syllables
    they spell ("총"): a consonant and a vowel make a syllable, and a consonant after them that no
    vowel follows ends it."""
    if not any(0x1100 <= ord(ch) <= 0x11FF for ch, _ in word):
        return word
    out: Word = []
    k = 0
    while k < len(word):
        ch, i = word[k]
        if ch not in _LEADING or k + 1 == len(word) or not _vowel(word[k + 1][0]):
            out.append(word[k])
            k += 1
            continue
        final = 0
        nxt = word[k + 2][0] if k + 2 < len(word) else ""
        vowel_after = k + 3 < len(word) and _vowel(word[k + 3][0])
        if nxt and (nxt in _FINAL or (nxt in _FINAL_OF and not vowel_after)):
            final = _FINAL.index(_FINAL_OF.get(nxt, nxt)) + 1
        syllable = 0xAC00 + (_LEADING.index(ch) * 21 + ord(word[k + 1][0]) - 0x1161) * 28 + final
        out.append((chr(syllable), i))
        k += 3 if final else 2
    return out


@dataclass(frozen=True)
class Reading:
    """One way of reading the text: words separated by single spaces, each character's source index."""

    text: str
    index: tuple[int, ...]  # -1 for the spaces between words
    closed: tuple[int, ...] = ()  # where a space was taken out (`_closed_up`): before text[k]

    def spans_closed(self, start: int, end: int) -> bool:
        """Whether text[start:end] runs across a space taken out. A term that does not is in the
        reading with the spaces too, whose allow-lists and context rules decide it."""
        return not self.closed or any(start < k < end for k in self.closed)


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
    nfc = _LONG_VOWEL_LOOK_ALIKE.sub("ー", unicodedata.normalize("NFC", text))
    tokens = _glued_marks(_tokens(_fold_chars(nfc)))
    word_lists: list[list[Word]] = []
    for split in (_plain, _squeezed, _digit_dropped, lambda t: _leet(t, _LEET_I), lambda t: _leet(t, _LEET_L)):
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
            r = _reading([_hangul_syllables(w) for w in _joined(words, split_first)])
            seen.setdefault(r.text, r)
    for r in list(seen.values()):
        closed = _closed_up(r)
        if closed is not None:
            seen.setdefault(closed.text, closed)
    return list(seen.values())


# A dash or the kanji "一" typed for the katakana long-vowel mark between two katakana ("ヌ一ド", "ヌ-ド").
_LONG_VOWEL_LOOK_ALIKE = re.compile(r"(?<=[\u30a1-\u30fa\uff66-\uff9d])[一\-－—―‐−](?=[\u30a1-\u30fa\uff66-\uff9d])")


def _closed_up(r: Reading) -> Reading | None:
    """The reading without the spaces typed between characters of a script written without spaces
    ("は だ か にして": "はだかにして"; "裸 体") or between Hangul syllables typed one by one ("알 몸 으로":
    "알몸 으로"); None when it has none. Kept beside the reading with them: "내 총" is two words, and a
    term found in it counts only across a space taken out ("이 옷 진짜 죽인다" is read with its words)."""
    text = r.text
    gone = [k for k in range(1, len(text) - 1) if text[k] == " " and _space_closes(text, k)]
    if not gone:
        return None
    keep = set(range(len(text))) - set(gone)
    return Reading(
        "".join(text[k] for k in sorted(keep)),
        tuple(r.index[k] for k in sorted(keep)),
        tuple(k - n for n, k in enumerate(gone)),  # where each space was, in the closed-up text
    )


def _space_closes(text: str, k: int) -> bool:
    """Whether the space at text[k] stands between two characters of a script written without spaces,
    or between two Hangul syllables that are each a word."""
    before, after = text[k - 1], text[k + 1]
    unspaced = _unspaced_scripts()
    if script_of(before) in unspaced and script_of(after) in unspaced:
        return True
    return _lone_syllable(text, k - 1) and _lone_syllable(text, k + 1)


@cache
def _unspaced_scripts() -> frozenset[str]:
    """The scripts of the languages written without spaces (Chinese and Japanese: Han, kana)."""
    return frozenset(s for lang in languages().values() if lang.substring for s in lang.scripts)


def _hangul_syllable(ch: str) -> bool:
    return "\uac00" <= ch <= "\ud7a3"


def _lone_syllable(text: str, k: int) -> bool:
    """Whether text[k] is a Hangul syllable that is a word on its own."""
    alone = (k == 0 or text[k - 1] == " ") and (k == len(text) - 1 or text[k + 1] == " ")
    return alone and _hangul_syllable(text[k])


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
    near: tuple[_NearMatcher, ...] = ()
    phrases: dict[str, tuple[_PhrasePattern, ...]] = field(default_factory=dict)  # by the word they start with


class _PhrasePattern:
    """A phrase and its regular expression, compiled the first time a text has one of its first words."""

    def __init__(self, phrase: Phrase) -> None:
        self.phrase = phrase
        self._pattern: re.Pattern[str] | None = None

    def match(self, text: str, at: int) -> re.Match[str] | None:
        if self._pattern is None:
            self._pattern = re.compile(self.phrase.pattern())
        return self._pattern.match(text, at)


@dataclass(frozen=True)
class _NearMatcher:
    lists: tuple[_Matcher, ...]  # first, then (and last)
    gap: int
    breaks: frozenset[str]


def _alternation(texts: set[str]) -> str:
    """A regular expression for exactly these texts, written as a trie ("dead(?: (?:end|sea))?"):
    tens of thousands of terms compile in a fraction of the time a flat alternation takes, and a
    longer text is tried before its prefix."""
    trie: dict[str, Any] = {}
    for text in texts:
        node = trie
        for ch in text:
            node = node.setdefault(ch, {})
        node[""] = {}
    return _trie_pattern(trie)


def _trie_pattern(node: dict[str, Any]) -> str:
    branches = [re.escape(ch) + _trie_pattern(child) for ch, child in sorted(node.items()) if ch]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    return f"(?:{body})?" if "" in node else body


def _start(language: Language) -> str:
    if language.substring:
        return ""
    prefixes = _alternation(set(language.prefixes))
    return r"(?<![^ ])" + (f"(?:{prefixes})?" if prefixes else "")


def _matcher(language: Language, profile: str) -> _Matcher:
    wanted = ("general",) if profile == "general" else ("general", "kids")
    near = tuple(
        _NearMatcher(tuple(_terms_matcher(language, list(x)) for x in lists if x), rule.gap, rule.breaks)
        for rule in language.near
        if rule.profile in wanted
        for lists in [(rule.first, rule.then, rule.last)]
    )
    m = _terms_matcher(language, [t for t in language.terms if t.profile in wanted])
    phrases: dict[str, list[_PhrasePattern]] = {}
    for phrase in language.phrases:
        if phrase.profile in wanted:
            for word in phrase.first_words():
                phrases.setdefault(word, []).append(_phrase_pattern(phrase))
    return _Matcher(m.language, m.patterns, m.table, m.lengths, near, {w: tuple(p) for w, p in phrases.items()})


@cache
def _phrase_pattern(phrase: Phrase) -> _PhrasePattern:
    return _PhrasePattern(phrase)


def _phrase_hits(m: _Matcher, text: str) -> Iterator[_Hit]:
    """The matcher's phrases in the text, tried where a word they can start with starts (after the
    language's clitic too)."""
    if not m.phrases:
        return
    at = 0
    for word in text.split(" "):
        starts = [(at, word)]
        starts += [(at + len(p), word[len(p) :]) for p in m.language.prefixes if word.startswith(p)]
        for start, first in starts:
            for compiled in m.phrases.get(first, ()):
                found = compiled.match(text, start)
                if found is not None:
                    phrase = compiled.phrase
                    yield _Hit(Term(found.group(), phrase.stem, phrase.language, phrase.profile), start, found.end())
        at += len(word) + 1


_CANDIDATE_LETTERS = 4


@lru_cache(maxsize=1024)
def _candidates(start: str, texts: frozenset[str]) -> re.Pattern[str]:
    """Where one of the texts may start: their first few letters, which compile fast (the matcher's
    table then says which texts do). A list shared by several rules and both profiles compiles once."""
    return re.compile(start + f"(?P<t>{_alternation({t[:_CANDIDATE_LETTERS] for t in texts})})")


def _terms_matcher(language: Language, terms: list[Term]) -> _Matcher:
    table: dict[str, list[Term]] = {}
    for t in terms:
        table.setdefault(t.text, []).append(t)
    patterns = []
    at_start = frozenset(t.text for t in terms if not t.inside)
    if at_start:
        patterns.append((_candidates(_start(language), at_start), False))
    inside = frozenset(t.text for t in terms if t.inside)
    if inside:
        patterns.append((_candidates("", inside), True))
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
    """Every term of the matcher in the text: the pattern finds where one may start, the table says
    which terms do (after the word's clitic, if the language has them: "وال" + "كلب")."""
    for pattern, inside in m.patterns:
        pos = 0
        while True:
            found = pattern.search(text, pos)
            if found is None:
                break
            starts = {found.start("t")}
            if not inside:
                starts.update(found.start() + len(p) for p in m.language.prefixes if text.startswith(p, found.start()))
            for at in sorted(starts):
                for length in m.lengths:
                    if at + length > len(text):
                        continue
                    for term in m.table.get(text[at : at + length], ()):
                        end = at + length
                        whole = m.language.substring or term.stem or end == len(text) or text[end] == " "
                        if whole and term.inside == inside:
                            yield _Hit(term, at, end)
            pos = found.start() + 1


def _apart(text: str, start: int, end: int, substring: bool) -> int:
    """How many words (characters, in a language without spaces) stand between two positions."""
    between = text[start:end]
    return len(between.replace(" ", "")) if substring else len(between.split())


def _linked(rule: _NearMatcher, language: Language, text: str, stops: frozenset[int], a: _Hit, b: _Hit) -> bool:
    """Whether b follows a closely enough, in the same clause, with none of the rule's breaks between."""
    if b.start < a.end or any(a.end <= p < b.start for p in stops):
        return False
    padded = f" {text[a.end : b.start].strip()} "
    close = _apart(text, a.end, b.start, language.substring) <= rule.gap
    return close and not any(f" {w} " in padded for w in rule.breaks)


def _near_hits(m: _Matcher, text: str, stops: frozenset[int] = frozenset()) -> Iterator[_Hit]:
    """A `first` term followed by a `then` term (and a `last` one) with at most `gap` words
    (characters) between each, in the same clause (no comma or full stop of the user's between, `stops`)."""
    for rule in m.near:
        chains = [[a] for a in _hits(rule.lists[0], text)]
        for following in rule.lists[1:]:
            if not chains:
                break
            hits = list(_hits(following, text))
            chains = [
                chain + [b] for chain in chains for b in hits if _linked(rule, m.language, text, stops, chain[-1], b)
            ]
        for chain in chains:
            term = Term(" … ".join(h.term.text for h in chain), False, chain[0].term.language, chain[0].term.profile)
            yield _Hit(term, chain[0].start, chain[-1].end)


@dataclass(frozen=True)
class _ContextMatcher:
    terms: _Matcher
    context: _Matcher
    gap: int
    side: str


def _blanked(text: str, spans: list[tuple[int, int]]) -> str:
    """The text with the spans' letters replaced by '_' (the words stay words, so gaps keep their count)."""
    if not spans:
        return text
    chars = list(text)
    for start, end in spans:
        for k in range(start, end):
            if chars[k] != " ":
                chars[k] = "_"
    return "".join(chars)


def _word_span(text: str, hit: _Hit, substring: bool) -> tuple[int, int]:
    if substring:
        return hit.start, hit.end
    start = text.rfind(" ", 0, hit.start) + 1
    end = text.find(" ", hit.end)
    return start, len(text) if end < 0 else end


def _in_context(c: _ContextMatcher, text: str, said: str) -> list[tuple[int, int]]:
    """The words of a context rule's `terms` that have one of its `context` words close enough (in
    what the user said: an allow-listed "punching bag" is context too)."""
    terms = list(_hits(c.terms, text))
    if not terms:
        return []
    around = list(_hits(c.context, said))
    substring = c.terms.language.substring
    spans = []
    for t in terms:
        for a in around:
            after = a.start >= t.end and _apart(text, t.end, a.start, substring) <= c.gap
            before = a.end <= t.start and _apart(text, a.end, t.start, substring) <= c.gap
            if (after and c.side != "before") or (before and c.side != "after"):
                spans.append(_word_span(text, t, substring))
                break
    return spans


def _without_contexts(text: str, said: str, contexts: tuple[_ContextMatcher, ...]) -> str:
    return _blanked(text, [span for c in contexts for span in _in_context(c, text, said)])


def _without_place_names(text: str, reading: Reading, original: str, places: Places) -> tuple[str, dict[int, int]]:
    """The text with capitalised place names taken out (see `Places`), and the capitalised words with
    a place-name ending (where each starts -> where its ending starts): a term that stops before the
    ending ("Killing|ton", "Teufel|sberg") is part of a name, one that runs into it ("Brutal") is not.
    Only where the user writes lower-case letters too, so that capitals say something."""
    if not any(c.islower() for c in original):
        return text, {}
    words = [(m.start(), m.end()) for m in re.finditer(r"[^ ]+", reading.text)]
    said = [reading.text[a:b] for a, b in words]
    capital = [original[reading.index[a]].isupper() for a, _ in words]
    spans = []
    endings = {}
    stop_before = places.links | places.words
    for k, w in enumerate(said):
        if not capital[k]:
            continue
        for e in places.endings:
            if w.endswith(e) and len(w) >= len(e) + 3:
                endings[words[k][0]] = words[k][1] - len(e)
        if w not in places.words:
            continue
        j = k - 1  # up to two capitalised words before it ("Dead Horse Point"), through a possessive "s"
        while j >= 0 and said[j] == "s" and not capital[j]:
            j -= 1
        while j >= 0 and k - j <= 3 and capital[j] and said[j] not in stop_before:
            spans.append(words[j])
            j -= 1
        j, named = k + 1, 0  # up to two capitalised words after it and its links ("Valley of the Dead")
        while j < len(words) and named < 2:
            if said[j] in places.links:
                j += 1
            elif capital[j]:
                spans.append(words[j])
                named, j = named + 1, j + 1
            else:
                break
    return _blanked(text, spans), endings


_STOPS = frozenset(",;.!?:，。；！？：")


def _clause_stops(reading: Reading, original: str) -> frozenset[int]:
    """The spaces of a reading where the user wrote a comma or a full stop between the two words."""
    text, index = reading.text, reading.index
    return frozenset(
        p
        for p in range(1, len(text) - 1)
        if text[p] == " " and any(c in _STOPS for c in original[index[p - 1] + 1 : index[p + 1]])
    )


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


@cache
def languages() -> dict[str, Language]:
    """Every lexicon, read, checked and folded on first use rather than at import (folding costs time)."""
    return load_languages(LEXICON_DIR)


@cache
def emoji_lists() -> dict[str, tuple[str, ...]]:
    return load_emoji(EMOJI_FILE)


@cache
def emoji_beside() -> dict[str, frozenset[str]]:
    return load_emoji_beside(EMOJI_FILE)


@cache
def readable_scripts() -> frozenset[str]:
    """The scripts some lexicon reads."""
    return frozenset(s for lang in languages().values() for s in lang.scripts)


_LANGUAGE_ORDER = ("en", "fr", "es", "de", "it", "pt", "nl", "pl", "ru", "ar", "zh", "ja", "ko", "hi")


@cache
def readable_languages() -> tuple[str, ...]:
    """The languages offered when a text is in a script no lexicon reads."""
    langs = languages()
    return tuple(langs[c].name for c in sorted(langs, key=lambda c: (_LANGUAGE_ORDER + (c,)).index(c)))


@cache
def _terms_of(profile: str) -> tuple[str, ...]:
    return tuple(t.text for lang in languages().values() for t in lang.terms if t.profile == profile)


@dataclass(frozen=True)
class SafetyProfile:
    name: str
    meta_prompt: str
    prompt_suffix: str  # appended to every output prompt, e.g. the classroom's look
    landscape: bool  # ask the image model for the widest size it offers
    fail_closed: bool = False  # offline, refuse text in a script no lexicon reads

    @property
    def disallowed(self) -> tuple[str, ...]:
        """The folded terms the profile's word check lists and refuses on their own (general's, and kids'
        own); the lines kept as phrases are each language's `phrases`."""
        return _terms_of("general") + (_terms_of("kids") if self.name == "kids" else ())


PROFILES: dict[str, SafetyProfile] = {
    "general": SafetyProfile("general", GENERAL_META_PROMPT, "", False),
    "kids": SafetyProfile(
        "kids",
        KIDS_META_PROMPT,
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
    contexts: tuple[_ContextMatcher, ...]  # every language's: a risky word made innocent by its neighbours
    places: Places  # every language's place-name words, links and endings
    misspelt: _Misspellings  # the long one-word terms, for a word one misspelling away


def _allow_pattern(entries: list[Term], anywhere: bool, phrases: tuple[Phrase, ...] = ()) -> re.Pattern[str] | None:
    """One pattern for an allow-list and its lines kept as phrases. At one place a stem goes before a
    whole term, and a phrase before a listed term."""
    if not entries and not phrases:
        return None
    start = "" if anywhere else r"(?<![^ ])"
    parts = []
    for inside in (False, True):
        for stem in (True, False):
            options = [f"(?:{p.pattern()})" for p in phrases if p.stem == stem and not inside]
            listed = {e.text for e in entries if e.stem == stem and e.inside == inside}
            if listed:
                options.append(_alternation(listed))
            if options:
                end = "" if stem or anywhere else r"(?![^ ])"
                parts.append(("" if inside else start) + f"(?:{'|'.join(options)})" + end)
    return re.compile("(?P<a>" + "|".join(parts) + ")")


@cache
def _compiled(profile: str) -> _Compiled:
    langs = languages().values()
    matchers = tuple(_matcher(lang, profile) for lang in langs)
    wanted = ("general",) if profile == "general" else ("general", "kids")
    emoji = tuple(e for p in wanted for e in emoji_lists()[p])
    allow, anywhere = _allow_patterns()
    misspelt = _misspellings([t for m in matchers if not m.language.substring for ts in m.table.values() for t in ts])
    return _Compiled(matchers, allow, anywhere, emoji, _context_matchers(), _all_places(), misspelt)


@cache
def _allow_patterns() -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
    """The allow-lists of every language, the same for both profiles: those written with spaces,
    matched from a word's start, and those without, matched anywhere."""
    langs = languages().values()
    spaced = [a for lang in langs if not lang.substring for a in lang.allow]
    unspaced = [a for lang in langs if lang.substring for a in lang.allow]
    phrases = tuple(p for lang in langs for p in lang.phrases if p.profile == "allow")
    return _allow_pattern(spaced, False, phrases), _allow_pattern(unspaced, True)


@cache
def _context_matchers() -> tuple[_ContextMatcher, ...]:
    return tuple(
        _ContextMatcher(_terms_matcher(lang, list(c.terms)), _terms_matcher(lang, list(c.context)), c.gap, c.side)
        for lang in languages().values()
        for c in lang.contexts
    )


@cache
def _all_places() -> Places:
    langs = languages().values()
    return Places(
        frozenset(w for lang in langs for w in lang.places.words),
        frozenset(w for lang in langs for w in lang.places.links),
        tuple(sorted({e for lang in langs for e in lang.places.endings})),
    )


def _marker_counts(text: str) -> dict[str, int]:
    words = text.split()
    return {code: sum(w in lang.markers for w in words) for code, lang in languages().items()}


def _compounds(hit: _Hit, text: str, counts: dict[str, int]) -> bool:
    """A term found inside a word, the head of a compound ("Küchenmesser"), counts in a text of its own
    language or of none the markers tell: other languages build no such compounds ("flames" is not
    the Dutch "mes")."""
    inside_word = hit.start > 0 and text[hit.start - 1] != " "
    return not (hit.term.inside and inside_word) or _may_read_as(hit.term.language, counts)


def _may_read_as(code: str, counts: dict[str, int]) -> bool:
    """Whether the text reads as the language, or as none the markers tell."""
    return _reads_as(code, counts) or not any(counts.values())


def _applies(term: Term, counts: dict[str, int]) -> bool:
    """A false friend is refused unless the text reads as a language where the word is innocent."""
    if not term.innocent_in:
        return True
    return max(counts.get(code, 0) for code in term.innocent_in) <= counts.get(term.language, 0)


def _quote(original: str, reading: Reading, start: int, end: int, whole_words: bool) -> str:
    """The user's own word(s) behind a match: the original text, not the folded term."""
    indexes = [i for i in reading.index[start:end] if i >= 0]
    lo, hi = min(indexes), max(indexes) + 1
    if _typed_apart(original[lo]):  # a syllable of letters typed apart: quote them all ("ㅊ ㅗ ㅇ")
        while hi < len(original) and (
            _typed_apart(original[hi]) or (original[hi] == " " and _typed_apart(original[hi + 1 : hi + 2]))
        ):
            hi += 1
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


def _innocent_emoji(emoji: str, bare: str) -> bool:
    """Whether every place the emoji stands has, right before or after it (spaces skipped), an emoji
    of its `innocent_beside` list: "🔪🥕🥒", "😂😂💀", but not "🔪 in his back"."""
    innocent = emoji_beside().get(emoji)
    if innocent is None:
        return False
    squeezed = bare.replace(" ", "")
    at = squeezed.find(emoji)
    while at >= 0:
        before = squeezed[at - 1] if at > 0 else ""
        after = squeezed[at + 1] if at + 1 < len(squeezed) else ""
        if before not in innocent and after not in innocent:
            return False
        at = squeezed.find(emoji, at + 1)
    return True


def _find(text: str, profile: str) -> tuple[Term, str] | None:
    """The first term (or emoji) the text names under the profile, with the user's words for it."""
    original = unicodedata.normalize("NFC", text)
    compiled = _compiled(profile)
    bare = _bare_emoji(original)
    for emoji in compiled.emoji:
        if emoji in bare and not _innocent_emoji(emoji, bare):
            return Term(emoji, False, "emoji", profile), emoji
    all_readings = readings(text)
    counts = _marker_counts(all_readings[0].text) if all_readings else {}
    looked_at: list[tuple[Reading, str]] = []
    for reading in all_readings:
        masked = _masked(reading.text, compiled.allow)
        masked = _masked(masked, compiled.allow_anywhere)
        masked, named = _without_place_names(masked, reading, original, compiled.places)
        masked = _without_contexts(masked, reading.text, compiled.contexts)
        looked_at.append((reading, masked))
        stops = _clause_stops(reading, original)
        # a term named on its own is quoted before a pair of words that starts at the same place
        found = [
            (hit.start, near, -(hit.end - hit.start), k, hit, matcher.language.substring)
            for k, matcher in enumerate(compiled.matchers)
            for near, hits in (
                (False, itertools.chain(_hits(matcher, masked), _phrase_hits(matcher, masked))),
                (True, _near_hits(matcher, masked, stops)),
            )
            for hit in hits
            if _applies(hit.term, counts)
            and hit.end > named.get(hit.start, -1)
            and _compounds(hit, masked, counts)
            and reading.spans_closed(hit.start, hit.end)
        ]
        if found:
            *_, hit, substring = min(found, key=lambda f: f[:4])
            return hit.term, _quote(original, reading, hit.start, hit.end, not substring)
    for reading, masked in looked_at:  # only when no term is written right
        misspelt = _misspelt_hit(compiled.misspelt, masked, counts) or _doubled_end_hit(profile, masked, counts)
        if misspelt is not None and reading.spans_closed(misspelt.start, misspelt.end):
            return misspelt.term, _quote(original, reading, misspelt.start, misspelt.end, True)
    return _starred_hit(original, profile, counts)


# ---------------------------------------------------------------------------------------------
# Letters starred out
# ---------------------------------------------------------------------------------------------

# A word with letters starred out ("p*rn", "s*icide", "b**ch"): letters, then stars and letters.
_STARRED = re.compile(r"(?<![\w*])[^\W\d_]+(?:\*+[^\W\d_]+)+(?![\w*])")


@dataclass(frozen=True)
class _Starrable:
    """The one-word terms of the languages written with spaces, by first letter: whole words by length."""

    words: dict[tuple[str, int], tuple[Term, ...]]
    stems: dict[str, tuple[Term, ...]]


@cache
def _starrable(profile: str) -> _Starrable:
    words: dict[tuple[str, int], list[Term]] = {}
    stems: dict[str, list[Term]] = {}
    for m in _compiled(profile).matchers:
        if m.language.substring:
            continue
        for text, terms in m.table.items():
            if " " in text or len(text) < 3:
                continue
            for t in terms:
                if t.stem:
                    stems.setdefault(text[0], []).append(t)
                else:
                    words.setdefault((text[0], len(text)), []).append(t)
    return _Starrable({k: tuple(v) for k, v in words.items()}, {k: tuple(v) for k, v in stems.items()})


def _fits(starred: str, text: str) -> bool:
    return all(s == "*" or s == c for s, c in zip(starred, text, strict=False))


def _starred_hit(original: str, profile: str, counts: dict[str, int]) -> tuple[Term, str] | None:
    """A word with letters starred out that fits one term of a language the text reads as (or of any,
    when it reads as none): at least two letters shown, and no more stars than letters."""
    table = _starrable(profile)
    for m in _STARRED.finditer(original):
        starred = "*".join(plain(part) for part in m.group(0).split("*"))
        if " " in starred or starred.count("*") * 2 > len(starred):
            continue
        found = [t for t in table.words.get((starred[0], len(starred)), ()) if _fits(starred, t.text)]
        found += [
            t
            for t in table.stems.get(starred[0], ())
            if len(t.text) <= len(starred) and "*" not in starred[len(t.text) :] and _fits(starred, t.text)
        ]
        for term in found:
            if _may_read_as(term.language, counts) and _applies(term, counts):
                return term, m.group(0)
    return None


# ---------------------------------------------------------------------------------------------
# Misspellings
# ---------------------------------------------------------------------------------------------

# Letters people write for one another: a word one of these away from a long term is the term
# ("писталет", "revórver", "आत्महतया"). Latin d and t are not among them: "recordada" (remembered)
# and "recortada" (sawn-off), "ausgeweitet" (widened) and "ausgeweidet" (disembowelled).
_ALIKE_CLASSES = ("lr", "bv", "ckq", "sz", "gj", "iy", "оа", "еи", "дт", "сз", "سص", "تط", "دض", "زذظ", "िी", "ुू", "शषस")
_ALIKE: dict[str, frozenset[str]] = {
    a: frozenset(b for c in _ALIKE_CLASSES if a in c for b in c if b != a) for a in "".join(_ALIKE_CLASSES)
}
_DEVANAGARI_SIGNS = "\u094d\u093c\u0902\u0901"  # virama, nukta, anusvara, candrabindu: often left out
_VIRAMA = "\u094d"
# How long a term must be, by script, for a misspelling of it to count: with these lengths, the 50,000
# commonest words of each language have no innocent word one misspelling from a term of the same
# language (Arabic words are short: at four letters, "صلاح" and "سلاح" are one letter apart).
_MISSPELT_MIN = {"Latin": 8, "Cyrillic": 7, "Arabic": 5, "Devanagari": 6}
_MISSPELT_KEEP = 3  # the first letters stay as written: "palestra" (gym) is not "balestra" (crossbow)


@dataclass(frozen=True)
class _Misspellings:
    """The one-word terms long enough to be recognised misspelt: whole words and stems, by text."""

    words: dict[str, tuple[Term, ...]]
    stems: dict[str, tuple[Term, ...]]
    stem_lengths: tuple[int, ...]


def _misspellings(terms: list[Term]) -> _Misspellings:
    """The terms of the languages written with spaces that a misspelling of may be recognised."""
    words: dict[str, list[Term]] = {}
    stems: dict[str, list[Term]] = {}
    for t in terms:
        least = _MISSPELT_MIN.get(script_of(t.text[0]))
        if least is not None and " " not in t.text and not t.inside and len(t.text) >= least:
            (stems if t.stem else words).setdefault(t.text, []).append(t)
    return _Misspellings(
        {k: tuple(v) for k, v in words.items()},
        {k: tuple(v) for k, v in stems.items()},
        tuple(sorted({len(k) for k in stems})),
    )


def _misspelt_forms(word: str) -> set[str]:
    """What the word may be a misspelling of: one letter swapped for a like one (`_ALIKE`), a doubled
    letter written once or a letter doubled, a Devanagari sign left out or added; never in the first
    `_MISSPELT_KEEP` letters."""
    forms: set[str] = set()
    for k in range(_MISSPELT_KEEP, len(word)):
        ch = word[k]
        forms.update(word[:k] + other + word[k + 1 :] for other in _ALIKE.get(ch, ()))
        if ch == word[k - 1] or ch in _DEVANAGARI_SIGNS:
            forms.add(word[:k] + word[k + 1 :])
        if script_of(ch) in ("Latin", "Cyrillic"):
            forms.add(word[:k] + ch + word[k:])
        if "\u0915" <= ch <= "\u0939":  # a Devanagari consonant: a conjunct written without its virama
            forms.add(word[: k + 1] + _VIRAMA + word[k + 1 :])
    forms.discard(word)
    return forms


def _reads_as(code: str, counts: dict[str, int]) -> bool:
    """Whether the text reads as the language (it has as many of its markers as of any language's):
    a word one letter from a term of another language is more likely a word of the text's own."""
    return counts.get(code, 0) > 0 and counts[code] == max(counts.values())


def _misspelt_hit(m: _Misspellings, text: str, counts: dict[str, int]) -> _Hit | None:
    """The first word of the text one misspelling from a long term of the language the text reads as."""
    start = 0
    for word in text.split(" "):
        at, start = start, start + len(word) + 1
        least = _MISSPELT_MIN.get(script_of(word[0])) if word else None  # two spaces make an empty word
        if least is None or len(word) < least:
            continue
        for form in sorted(_misspelt_forms(word)):
            found = list(m.words.get(form, ())) + [t for n in m.stem_lengths for t in m.stems.get(form[:n], ())]
            for term in found:
                if _reads_as(term.language, counts) and _applies(term, counts):
                    return _Hit(term, at, at + len(word))
    return None


def _doubled_end_hit(profile: str, text: str, counts: dict[str, int]) -> _Hit | None:
    """The first word whose last letter, doubled, is a one-word term of the language the text reads as
    with the letter once ("knifee", "beerr"); in another language's text it stays a word ("Bett")."""
    table = _starrable(profile)
    start = 0
    for word in text.split(" "):
        at, start = start, start + len(word) + 1
        if len(word) < 4 or word[-1] != word[-2] or not word[-1].isalpha():
            continue
        once = word[:-1]
        found = [t for t in table.words.get((once[0], len(once)), ()) if t.text == once]
        found += [t for t in table.stems.get(once[0], ()) if once.startswith(t.text)]
        for term in found:
            if _reads_as(term.language, counts) and _applies(term, counts):
                return _Hit(term, at, at + len(word))
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
            unknown = sorted(s for s in scripts if s not in readable_scripts())
            if unknown and sum(script_of(ch) in unknown for ch in word) >= 2:
                return unknown[0]
    return None


# Scripts shared by read and unread languages: a text in them may be in a language no lexicon covers.
_SHARED_SCRIPTS = ("Latin", "Cyrillic")
_UNREAD_LETTER_SHARE = 4  # at least one word in this many has a letter no lexicon uses ("ư", "ő", "ј")
_UNREAD_WORDS = 4  # this many words, none of them known to any lexicon, are a language none reads


@cache
def _telling_letters() -> frozenset[str]:
    """Letters that show a text is in one of the lexicons' languages, not in a language written with
    the same script that none covers: each lexicon's `telling_letters` (Polish "ł", Russian "ы")."""
    return frozenset(c for lang in languages().values() for c in lang.telling)


@cache
def _lexicon_letters() -> frozenset[str]:
    """Every letter some lexicon writes its words with."""
    return frozenset(c for lang in languages().values() for c in lang.letters)


@cache
def _lexicon_marks() -> frozenset[str]:
    """Every accent some lexicon writes a letter with (acute, ogonek, horn, ...)."""
    return frozenset(m for c in _lexicon_letters() for m in unicodedata.normalize("NFD", c)[1:])


@lru_cache(maxsize=4096)
def _read_letter(c: str) -> bool:
    """Whether the lexicons write this letter, or its bare letter and accents ("ś": "s" and the acute of
    "é"), so that a lexicon written without some accents still reads its language's letters."""
    if c in _lexicon_letters():
        return True
    parts = unicodedata.normalize("NFD", c)
    base, marks = parts[0], parts[1:]
    return marks != "" and base in _lexicon_letters() and all(m in _lexicon_marks() for m in marks)


@cache
def _known_words() -> tuple[frozenset[str], tuple[str, ...]]:
    """The folded words the lexicons know (markers, and the words of terms, allow-listed phrases,
    rules and place names), and their stems of four letters or more."""
    words: set[str] = set()
    stems: set[str] = set()
    for lang in languages().values():
        words |= lang.markers | lang.places.words | lang.places.links
        rules = [t for n in lang.near for t in n.first + n.then + n.last]
        rules += [t for c in lang.contexts for t in c.terms + c.context]
        for t in [*lang.terms, *lang.allow, *rules]:
            words.update(t.text.split())
            if t.stem and " " not in t.text and len(t.text) >= 4:
                stems.add(t.text)
        words.update(w for phrase in lang.phrases for slot in phrase.slots for form in slot for w in form.split())
    return frozenset(words), tuple(sorted(stems))


def _known(word: str) -> bool:
    words, stems = _known_words()
    return word in words or any(word.startswith(s) for s in stems)


def _unread_language(text: str) -> str | None:
    """Why a text in Latin or Cyrillic script reads as a language no lexicon covers, or None: letters
    no lexicon uses in one word in `_UNREAD_LETTER_SHARE` or more (Vietnamese "ư", "ơ", "ạ"; capitalised
    words past the first, names, do not count), or `_UNREAD_WORDS` words or more none of which is a
    word some lexicon knows nor has a letter telling one of their languages (capitalised words past the
    first, names, do not count either: "храм Василия Блаженного зимой" is two words and two names)."""
    original = [w.strip(_TRAILING + "\"'«»“”„()[]") for w in unicodedata.normalize("NFC", text).split()]
    original = [w for w in original if any(c.isalpha() for c in w)]
    if not original or any(script_of(c) not in _SHARED_SCRIPTS for w in original for c in w if c.isalpha()):
        return None
    unread = [
        w
        for k, w in enumerate(original)
        if (k == 0 or not w[0].isupper()) and any(c.isalpha() and not _read_letter(c) for c in w.lower())
    ]
    if unread and len(unread) * _UNREAD_LETTER_SHARE >= len(original):
        shown = sorted({c for w in unread for c in w.lower() if c.isalpha() and not _read_letter(c)})[:3]
        return "letters no lexicon uses (" + ", ".join(f"'{c}'" for c in shown) + ")"
    if any(c in _telling_letters() for w in original for c in w.lower()):
        return None
    names = {plain(w) for k, w in enumerate(original) if k > 0 and w[0].isupper()}
    read = readings(text)
    words = [w for w in (read[0].text.split() if read else []) if w not in names]
    if len(words) >= _UNREAD_WORDS and not any(_known(w) for w in words):
        return "no word any lexicon knows"
    return None


def _languages_phrase() -> str:
    names = readable_languages()
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
        why = _unread_language(text)
        if why is not None:
            return Verdict(
                False,
                f"The {what} seems to be in a language Varia's offline word check cannot read ({why}). "
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
