"""Reading a moderator's workshop line: the workshop number, and `key=value` details.

    !werkstatt neu 03.12.2026 10:00-12:00 KI in der Verwaltung ort=Rathaus Wiesbaden plätze=20
    !werkstatt ändern 12 plätze=30 link=https://meet.example.org/ki

The line is: date, time range, title, then `key=value` pairs (German or English keys, values
may hold spaces and need no quotes). The date and time are read by `commands.dates`; this
module cuts the line into its head and fields and checks each value. A problem is a
`UserError` that shows the moderator an example.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from commands.dates import (
    MAX_SPAN,
    MAX_YEARS_AHEAD,
    When,
    WhenError,
    parse_duration,
    parse_when_value,
)
from commands.framework import UserError, keyword, lookup, one_line
from commands.i18n import Text
from commands.links import normalize_link
from commands.workshop_view import View

MAX_CAPACITY = 10_000
MAX_LENGTH = {"title": 200, "community": 80, "location": 200, "url": 500, "description": 2000,
              "reason": 300}

# The keys of the line, every spelling read (compared folded: `plätze` = `plaetze`).
FIELDS = {
    "title": ("title", "titel", "thema", "name"),
    "when": ("when", "wann", "termin"),
    "date": ("date", "datum", "day", "tag"),
    "time": ("time", "zeit", "uhrzeit"),
    "start": ("start", "beginn", "begin", "von", "from", "ab"),
    "end": ("end", "ende", "bis", "until", "to"),
    "duration": ("duration", "dauer", "laenge", "length"),
    "location": ("location", "ort", "place", "wo", "where", "adresse", "address", "raum",
                 "venue"),
    "url": ("url", "link", "video", "videolink", "meeting", "online", "web"),
    "capacity": ("capacity", "places", "seats", "spots", "plaetze", "platze", "platz",
                 "kapazitaet", "max", "teilnehmerzahl", "limit"),
    "community": ("community", "gemeinschaft", "gruppe", "group"),
    "description": ("description", "beschreibung", "text", "about", "details", "info",
                    "infos"),
}
TIME_FIELDS = ("when", "date", "time", "start", "end", "duration")
# Values of `plätze=` that mean no limit.
UNLIMITED = ("unbegrenzt", "unlimited", "none", "keine", "kein", "offen", "open", "0")


_NUMBER = re.compile(r"^(?:#|nr\.?|no\.?|nummer)?\s*(\d{1,9})\.?$", re.IGNORECASE)


def parse_number(text: str) -> int | None:
    """`12`, `#12`, `Nr. 12`, `Nr.12` → 12; None for anything else."""
    found = _NUMBER.match(text.strip())
    return int(found.group(1)) if found and int(found.group(1)) > 0 else None


# -- the key=value line -------------------------------------------------------------------------

_QUOTES = '"„“”'
_KEY = re.compile(r"(?:(?<=[\s|])|^)([^\W\d_][^\W_]*(?:-[^\W_]+)*)\s*=\s*")


def unquote(value: str) -> str:
    value = value.strip().strip("|").strip()
    if len(value) >= 2 and value[0] in _QUOTES and value[-1] in _QUOTES:
        value = value[1:-1]
    return value.strip()


@dataclass(frozen=True)
class Spec:
    """A moderator's line: the text before the first key, and each `key=value` in order."""

    head: str
    fields: list[tuple[str, str, str]]  # (field, key as typed, value)


class UnknownKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def split_fields(text: str) -> Spec:
    """`03.12. 10-12 Titel ort=Rathaus Wiesbaden | plätze=20` → head and fields. A value runs
    to the next key; a key inside quotes is none. An unknown key raises UnknownKeyError."""
    cuts: list[tuple[int, int, str]] = []
    quotes, counted_to = 0, 0  # quotes before `counted_to`: counted once, not once per key
    for found in _KEY.finditer(text):
        quotes += sum(text.count(q, counted_to, found.start()) for q in _QUOTES)
        counted_to = found.start()
        if quotes % 2:
            continue  # inside quotes
        cuts.append((found.start(), found.end(), found.group(1)))
    head = text[:cuts[0][0]] if cuts else text
    fields: list[tuple[str, str, str]] = []
    for index, (_, value_start, key) in enumerate(cuts):
        value_end = cuts[index + 1][0] if index + 1 < len(cuts) else len(text)
        name = lookup(FIELDS, key)
        if name is None:
            raise UnknownKeyError(key)
        fields.append((name, key, unquote(text[value_start:value_end])))
    return Spec(unquote(head) if head.strip().strip("|").strip() else "", fields)


# -- the line as a moderator's change, with answers to what is wrong ----------------------------


def read_spec(view: View, text: str, keys: Iterable[str]) -> Spec:
    """The line cut into head and fields; an unknown key answered with the `keys` allowed."""
    try:
        return split_fields(text)
    except UnknownKeyError as error:
        raise UserError("workshops.unknown_key", detail=Text.code(f"{error.key}="),
                        keys=key_list(view, keys)) from None


def key_list(view: View, names: Iterable[str]) -> Text:
    """`ort=, link=, plätze=`: the keys in the view's language."""
    return Text.join((Text.code(f"{view.words[name]}=") for name in names), ", ")


def when_error(error: WhenError, example: Text) -> UserError:
    return UserError(f"workshops.when.{error.key}", value=error.value, example=example,
                     days=MAX_SPAN.days, years=MAX_YEARS_AHEAD)


@dataclass
class Changes:
    values: dict[str, Any] = field(default_factory=dict)  # field → new value (None: clear)
    when: When = field(default_factory=When)
    duration: timedelta | None = None
    times_given: bool = False


def read_changes(view: View, fields: list[tuple[str, str, str]], example: Text) -> Changes:
    """The fields' values checked: the time fields merged into one `When`, the others
    converted (`plätze=20` → 20, `-` → None to clear)."""
    changes = Changes()
    for name, key, raw in fields:
        value = one_line(raw)
        if not value:
            raise UserError("workshops.empty_value", detail=Text.code(f"{key}="), example=example)
        if name in TIME_FIELDS:
            changes.times_given = True
            try:
                if name == "duration":
                    changes.duration = parse_duration(value)
                    continue
                parsed = parse_when_value(value, date_only=name == "date")
            except WhenError as error:
                if error.key == "bad_value":
                    raise UserError("workshops.bad_value", detail=Text.code(f"{key}="),
                                    value=value, example=example) from None
                raise when_error(error, example) from None
            _check_shape(name, key, parsed, value, example)
            if name == "end":  # `ende=16:00` or `ende=04.12. 16:00`: the end's parts
                parsed = When(end_day=parsed.start_day, end_time=parsed.start_time)
            changes.when = changes.when.merged(parsed)
            continue
        changes.values[name] = checked_value(view, name, key, value)
    return changes


def _check_shape(name: str, key: str, parsed: When, value: str, example: Text) -> None:
    has_range = parsed.end_time is not None or parsed.end_day is not None
    wrong = ((name == "date" and (parsed.start_day is None or parsed.start_time is not None))
             or (name == "time" and (parsed.start_time is None or parsed.start_day is not None))
             or (name in ("start", "end") and has_range))
    if wrong:
        raise UserError("workshops.bad_value", detail=Text.code(f"{key}="), value=value,
                        example=example)


def checked_value(view: View, name: str, key: str, value: str) -> Any:
    """One field's value as stored: None for `-` (clears it), a number of places, a link."""
    if value == "-":
        if name == "title":
            raise UserError("workshops.cannot_clear", detail=Text.code(f"{key}="))
        return None
    if name == "capacity":
        if keyword(value) in UNLIMITED:
            return None
        try:
            capacity = int(value.replace(".", "").replace(" ", ""))
        except ValueError:
            capacity = 0
        if not 1 <= capacity <= MAX_CAPACITY:
            raise UserError("workshops.bad_capacity", value=value, max=MAX_CAPACITY)
        return capacity
    if name == "url":
        url = normalize_link(value)
        if url is None:
            raise UserError("workshops.bad_url", value=value)
        value = url
    if len(value) > MAX_LENGTH[name]:
        raise UserError("workshops.too_long", field=view.t(f"labels.{name}"),
                        max=MAX_LENGTH[name], length=len(value))
    return value
