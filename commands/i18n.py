"""Message catalogs (German and English) and `Text`, a reply fragment that is safe by construction.

Every user-facing sentence lives in `commands/locales/<lang>/<feature>.toml` (one file per feature,
merged on load). A template is Markdown; values
filled into it are escaped in the Markdown version and kept raw in the plain version, so text
that came from a member can never turn into markup, links or HTML.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from babel import Locale

LOCALES_DIR = Path(__file__).parent / "locales"
LANGUAGES = ("de", "en")
DEFAULT_LANGUAGE = "de"

_MARKDOWN_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character


# Explicit bidi embeddings, overrides and isolates: one left open in an echoed value reverses the
# rest of the bot's line in clients, so a member could make the bot seem to say something else.
# Right-to-left text needs none of them (the Unicode bidi algorithm orders it).
_BIDI_CONTROLS = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))


def locale_of(language: str) -> str:
    """The Babel locale for dates and durations in `language` (German for any other)."""
    return language if language in LANGUAGES else DEFAULT_LANGUAGE


def without_bidi_controls(value: str) -> str:
    return value.translate(_BIDI_CONTROLS)


def escape_markdown(value: str) -> str:
    """Backslash-escape ASCII punctuation: CommonMark then renders it literally."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", value)


@dataclass(frozen=True)
class Text:
    """The same message as Markdown (for `formatted_body`) and as plain text (for `body`)."""

    markdown: str
    plain: str

    @classmethod
    def raw(cls, value: str) -> Text:
        """Untrusted text, shown literally."""
        value = without_bidi_controls(value)
        return cls(escape_markdown(value), value)

    @classmethod
    def code(cls, value: str) -> Text:
        """Untrusted text as an inline code span (CommonMark shows its content literally)."""
        # A line break could end the span's paragraph.
        value = " ".join(without_bidi_controls(value).splitlines())
        longest = max((len(run) for run in re.findall(r"`+", value)), default=0)
        fence = "`" * (longest + 1)
        padded = f" {value} " if value.startswith("`") or value.endswith("`") else value
        return cls(f"{fence}{padded}{fence}", value)

    @classmethod
    def mention(cls, user_id: str) -> Text:
        """A person's Matrix id linking to them (a pill); pings only if in the reply's
        mentions."""
        url = "https://matrix.to/#/" + quote(user_id, safe="@:")
        return cls(f"[{escape_markdown(user_id)}]({url})", user_id)

    @classmethod
    def join(cls, parts: Iterable[Text], separator: str = "\n") -> Text:
        parts = list(parts)
        markdown = separator.join(p.markdown for p in parts)
        return cls(markdown, separator.join(p.plain for p in parts))

    def __add__(self, other: Text) -> Text:
        return Text(self.markdown + other.markdown, self.plain + other.plain)


class _Values(Mapping[str, Any]):
    """Template values as seen by str.format_map: escaped for Markdown, raw for plain."""

    def __init__(self, values: Mapping[str, Any], markdown: bool) -> None:
        self._values = values
        self._markdown = markdown

    def __getitem__(self, key: str) -> Any:
        value = self._values[key]
        if isinstance(value, Text):
            return value.markdown if self._markdown else value.plain
        if isinstance(value, int | float):
            return value
        value = without_bidi_controls(str(value))
        return escape_markdown(value) if self._markdown else value

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


class Catalog:
    def __init__(self, messages: dict[str, dict[str, str]]) -> None:
        self._messages = messages

    @classmethod
    def load(cls, directory: Path = LOCALES_DIR) -> Catalog:
        messages: dict[str, dict[str, str]] = {}
        for lang in LANGUAGES:
            merged: dict[str, str] = {}
            for path in sorted((directory / lang).glob("*.toml")):
                with open(path, "rb") as f:
                    for key, value in _flatten(tomllib.load(f)):
                        if key in merged:
                            raise ValueError(f"message {key!r} defined twice ({lang}/{path.name})")
                        merged[key] = value
            messages[lang] = merged
        return cls(messages)

    def languages(self) -> tuple[str, ...]:
        return tuple(self._messages)

    def keys(self, language: str) -> set[str]:
        return set(self._messages[language])

    def has(self, language: str, key: str) -> bool:
        return key in self._messages.get(language, {})

    def template(self, language: str, key: str) -> str:
        for lang in (language, DEFAULT_LANGUAGE):
            template = self._messages.get(lang, {}).get(key)
            if template is not None:
                return template
        raise KeyError(f"no message {key!r} in any catalog")

    def text(self, language: str, key: str, /, **values: Any) -> Text:
        """Message `key` filled with `values`. A message written as a table of plural forms
        (`one`, `other`, by the language's plural rules) takes the form for `values["count"]`."""
        template = self.template(language, self._form(language, key, values))
        return Text(
            template.format_map(_Values(values, markdown=True)),
            _plain(template).format_map(_Values(values, markdown=False)),
        )

    def _form(self, language: str, key: str, values: Mapping[str, Any]) -> str:
        if self.has(language, key) or self.has(DEFAULT_LANGUAGE, key) or "count" not in values:
            return key  # a plain message (or none: `template` says so)
        form = f"{key}.{_plural_category(language, values['count'])}"
        return form if self.has(language, form) or self.has(DEFAULT_LANGUAGE, form) \
            else f"{key}.other"


def _plural_category(language: str, count: int) -> str:
    return _locale(locale_of(language)).plural_form(count)


@cache
def _locale(name: str) -> Locale:
    return Locale.parse(name)


def _plain(template: str) -> str:
    """The plain-text twin of a Markdown template: emphasis markers and code ticks dropped."""
    return re.sub(r"\*\*|`", "", template)


def _flatten(tree: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, str]]:
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", str(value)
