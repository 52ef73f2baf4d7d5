"""Text as members and operators type it, compared the same way everywhere: folded (case,
accents and umlauts), cut into words, cleaned to one visible line; the 16 states by any of
their spellings. Shared by the expert search, the workshops, meetings and municipalities.
"""

from __future__ import annotations

import re
import unicodedata

# Words that say nothing on their own in a search ("KI in der Verwaltung").
STOPWORDS = frozenset({
    "und", "oder", "nicht", "der", "die", "das", "den", "dem", "des", "ein", "eine", "einer",
    "in", "im", "fuer", "von", "vom", "mit", "zu", "zur", "zum", "auf", "an", "am", "bei",
    "and", "or", "not", "near", "the", "of", "for", "to", "with", "a", "on",
})

# The 16 states: canonical (German) name, ISO 3166-2 code, other accepted spellings.
STATES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Baden-Württemberg", "bw", ()),
    ("Bayern", "by", ("Bavaria",)),
    ("Berlin", "be", ()),
    ("Brandenburg", "bb", ()),
    ("Bremen", "hb", ()),
    ("Hamburg", "hh", ()),
    ("Hessen", "he", ("Hesse",)),
    ("Mecklenburg-Vorpommern", "mv", ("Meck-Pomm",)),
    ("Niedersachsen", "ni", ("Lower Saxony",)),
    ("Nordrhein-Westfalen", "nw", ("NRW", "North Rhine-Westphalia")),
    ("Rheinland-Pfalz", "rp", ("RLP", "Rhineland-Palatinate")),
    ("Saarland", "sl", ()),
    ("Sachsen", "sn", ("Saxony",)),
    ("Sachsen-Anhalt", "st", ("Saxony-Anhalt",)),
    ("Schleswig-Holstein", "sh", ()),
    ("Thüringen", "th", ("Thuringia",)),
)


# -- folding ------------------------------------------------------------------------------------

_UMLAUTS = (("ä", "ae"), ("ö", "oe"), ("ü", "ue"))  # ß and ẞ: casefold() makes them "ss"
# Letters that NFKD does not split into a base letter and a mark.
_LETTERS = str.maketrans({"ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ı": "i", "æ": "ae",
                          "œ": "oe", "þ": "th", "ð": "d"})
_TOKEN = re.compile(r"[^\W_]+")
# Combining marks as left by NFKD of accented Latin letters (é → e + U+0301).
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def fold(text: str) -> str:
    """Case- and accent-free German spelling: `Müller` → `mueller`, `Straße` → `strasse`."""
    if text.isascii():  # the common case, and fast
        return text.lower()
    text = unicodedata.normalize("NFC", text).casefold()
    for umlaut, spelled in _UMLAUTS:
        text = text.replace(umlaut, spelled)
    if text.isascii():
        return text
    return _COMBINING.sub("", unicodedata.normalize("NFKD", text)).translate(_LETTERS)


def tokens(text: str) -> list[str]:
    """The folded alphanumeric words of `text`: nothing else ever reaches the search index."""
    return _TOKEN.findall(fold(text))


def compact(text: str) -> str:
    """The folded words run together: `N.R.W.`, `nrw` and `NRW` are the same."""
    return "".join(tokens(text))


def clean_text(value: str) -> str:
    """One line of visible text: control and format characters dropped, spaces collapsed."""
    if value.isprintable():  # nothing to drop (no Cc, Cf, Zl, Zp): the common case, fast
        return " ".join(value.split())
    value = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c
                    for c in value if unicodedata.category(c) != "Cf")
    return " ".join(value.split())


# -- the states ---------------------------------------------------------------------------------

_STATE_BY_KEY: dict[str, str] = {}
for _name, _code, _aliases in STATES:
    for _spelling in (_name, _code, *_aliases):
        _STATE_BY_KEY[compact(_spelling)] = _name


def normalize_state(text: str) -> str | None:
    """The canonical name of a state (`nrw`, `Thueringen`, `bw` …), None if it is none of the 16."""
    return _STATE_BY_KEY.get(compact(text))
