"""Every parser of what members type and of import files runs in linear time: no regular
expression (or loop) backtracks over a long run of spaces, digits or letters.

A member's command body can be up to ~60 KB (Matrix refuses events over 64 KiB); the event loop
must never spend seconds on one. The inputs are built the way such blow-ups are found: a prefix
that gets a pattern going, a short "pump" repeated to 60 KB, and a suffix that makes the match
fail at the very end. The bound (one second for 60 KB) is generous on purpose: a linear parser
needs milliseconds, a quadratic one seconds, a cubic one hours; it is a trip wire, not a
benchmark. A run over the bound is cut off (SIGALRM interrupts a running regex).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.importers import workshops as import_workshops
from bot.importers.csv_reading import ImportFileError
from commands import (
    core,
    dates,
    experts,
    meet,
    meet_rule,
    municipalities,
    workshop_spec,
    workshops,
)
from commands.dates import parse_offset
from commands.framework import Level, UserError, dispatch
from tests.unit.fakes import make_services, request

SIZE = 60_000
BOUND_SECONDS = 1.0
BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 3, 1, 9, tzinfo=UTC)

# The characters the grammars react to: separators, digits, the letters of weekdays, months,
# units and keywords, quotes, the CSV delimiters.
ALPHABET = " \t\n.,:;-–/|=\"„“0123456789aeimnrtuhdxyTZ+#"
PREFIXES = ["", "1.1.", "1.1. 10", "03.12.2026 10:00", "10", "10:00 -", "2026-01-01",
            "2026-01-01T10:00", "Mo ", "Do., 3. Dez", "3. Dezember", "#", "nr.", "1,5",
            "2h", "a=", "titel=", "ort=\"", "FREQ=MONTHLY;BYDAY=", "state:", "\"",
            "title,starts_at,ends_at\nA,"]
# Failures the parsers may answer with; anything else is a bug of its own.
REFUSALS = (ValueError, UserError, ImportFileError)


def _csv(text: str) -> Any:
    return import_workshops.check_workshop_rows(
        "title,starts_at,ends_at,location\n" + text, timezone=BERLIN, now=NOW)


PARSERS: dict[str, Callable[[str], Any]] = {
    "dates.parse_head": dates.parse_head,
    "dates.parse_when_value": dates.parse_when_value,
    "dates.parse_when_value(date)": lambda s: dates.parse_when_value(s, date_only=True),
    "dates.parse_duration": dates.parse_duration,
    "workshop_spec.parse_number": workshop_spec.parse_number,
    "workshop_spec.split_fields": workshop_spec.split_fields,
    "meet_rule.parse_start_time": meet_rule.parse_start_time,
    "meet_rule.parse_rule": meet_rule.parse_rule,
    "meet.typed_day": lambda s: meet._typed_day(s, date(2026, 3, 1)),
    "import_workshops.parse_time": lambda s: import_workshops.parse_time(s, BERLIN),
    "import_workshops.check_workshop_rows": _csv,
    "municipalities.split_fields": municipalities.split_fields,
    "municipalities.parse_date": municipalities.parse_date,
    "experts.parse_query": experts.parse_query,
    "storage.parse_offset": parse_offset,
}


@contextmanager
def cut_off_after(seconds: float) -> Iterator[None]:
    def expire(*_: Any) -> None:
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def pumped(prefix: str, pump: str, suffix: str) -> str:
    return prefix + pump * (SIZE // len(pump)) + suffix


def run_within_bound(parser: Callable[[str], Any], text: str) -> float:
    started = time.perf_counter()
    try:
        with cut_off_after(BOUND_SECONDS):
            try:
                parser(text)
            except REFUSALS:
                pass
    except TimeoutError:
        pytest.fail(f"{len(text)} characters took more than {BOUND_SECONDS} s")
    return time.perf_counter() - started


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(max_examples=20, deadline=None, database=None)
@given(prefix=st.one_of(st.sampled_from(PREFIXES), st.text(ALPHABET, max_size=12)),
       pump=st.text(ALPHABET, min_size=1, max_size=4),
       suffix=st.one_of(st.just("x"), st.text(ALPHABET, max_size=4)))
@example(prefix="1.1.", pump=" ", suffix="x")  # the reported one: quadratic
@example(prefix="", pump=" ", suffix="x")  # cubic in the whole-value pattern
@example(prefix="1", pump=" ", suffix="x")
@example(prefix="a=", pump="a= \"", suffix="")  # many keys: quotes counted per key
@example(prefix="03.12.2026 10:00", pump=" ", suffix="x")
def test_every_parser_finishes_60_kb_quickly(name, prefix, pump, suffix):
    run_within_bound(PARSERS[name], pumped(prefix, pump, suffix))


async def test_the_reported_workshop_line_is_answered_quickly(storage):
    services = make_services(storage, routers=[core.router, workshops.router])
    body = "!werkstatt neu 1.1." + " " * 9_900 + "x"
    started = time.perf_counter()
    with cut_off_after(BOUND_SECONDS):
        replies = await dispatch(request(body, Level.ADMIN), services)
    assert len(replies) == 1 and time.perf_counter() - started < BOUND_SECONDS
