"""Texts moderators write with named placeholders, e.g. a room's join announcement:
`{name} ({bundesland}) ist jetzt dabei! Wir sind {anzahl}.`

`Placeholders` declares which names a kind of text knows (each in German and English), checks a
moderator's text before it is stored (a room setting's `check`), and fills it in. Everything in
the text is shown literally: neither the moderator's text nor the values become markup.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

from commands.i18n import Text

_FORMATTER = string.Formatter()


@dataclass(frozen=True)
class Placeholders:
    """The placeholders a text may use: canonical name → accepted spellings (canonical first).
    `messages` is the catalog prefix of the check's answers (`bad_braces`,
    `unknown_placeholder`, `missing_placeholder`)."""

    names: Mapping[str, tuple[str, ...]]
    required: tuple[str, ...]
    messages: str

    def canonical(self, spelling: str) -> str | None:
        word = spelling.strip().casefold()
        return next((name for name, spellings in self.names.items() if word in spellings), None)

    def check(self, text: str) -> str | None:
        """None when `text` is usable; else the catalog key saying why not."""
        try:
            fields = [(field, spec, conversion)
                      for _, field, spec, conversion in _FORMATTER.parse(text)
                      if field is not None]
        except ValueError:  # a lone `{` or `}`
            return f"{self.messages}.bad_braces"
        used = set()
        for field, spec, conversion in fields:
            name = self.canonical(field)
            if name is None or spec or conversion:
                return f"{self.messages}.unknown_placeholder"
            used.add(name)
        if any(name not in used for name in self.required):
            return f"{self.messages}.missing_placeholder"
        return None

    def fill(self, text: str, values: Mapping[str, str | int]) -> Text:
        """The text with each placeholder replaced by its value, all shown literally. Assumes
        `check(text)` passed; a placeholder without a value stays as typed."""
        result = Text("", "")
        for literal, field, _, _ in _FORMATTER.parse(text):
            if literal:
                result += Text.raw(literal)
            if field is None:
                continue
            name = self.canonical(field)
            value = values.get(name) if name is not None else None
            result += Text.raw(str(value) if value is not None else "{" + field + "}")
        return result


# A room's join announcement (the room setting `announcement`, commands/municipalities.py).
JOIN_ANNOUNCEMENT = Placeholders(
    names={"name": ("name",), "state": ("state", "land", "bundesland"),
           "kind": ("kind", "art"), "total": ("total", "anzahl", "mitglieder", "members")},
    required=("name",),
    messages="municipalities.template",
)
