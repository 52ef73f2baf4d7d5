"""The member list the network publishes (`[announcements] feed_url`), polled for new members.

Every `poll_minutes` the feed is fetched with a conditional request (If-None-Match with the
last ETag, If-Modified-Since with the last Last-Modified): an unchanged list costs a 304. The
list is CSV with the import's header (`bot/importers/municipalities.py`) or JSON (a list of
objects with the same fields).

- The first good poll of a feed address only seeds the register: nothing is announced.
- Later polls register the members the register does not have yet, to be announced; the bot
  announces them together, one digest post per room.
- A feed that is unreachable, malformed (any bad row), empty, or suddenly much shorter than
  the last good one (less than half) changes nothing; so does one that would add more than
  `MASS_ADD_MIN` members or half the register at once (an import is the way for that). Each
  such poll logs one line without the feed's content. Unreachable feeds are retried sooner,
  with back-off (`bot/pipeline/backoff.py`), never more often than the interval otherwise.
- A feed never removes members; an admin does (`!kommune entfernen`), and a removed member the
  feed still lists is not added again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import aiohttp

from bot.feature_context import FeatureContext
from bot.importers.csv_reading import ImportFileError, decode
from bot.importers.municipalities import check_member_rows, csv_rows, json_rows
from bot.pipeline.backoff import Backoff
from commands.municipalities import SOURCE_NAME
from storage import Storage
from storage.municipalities import FeedState, Member, MemberIndex

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)
MAX_BYTES = 10 * 1024 * 1024
MASS_ADD_MIN = 25  # more new members than this (and than half the register) at once: refused
SOURCE = "feed"


class FeedUnreachable(Exception):
    """The feed could not be fetched; the message says why, never with content."""


@dataclass(frozen=True)
class Fetched:
    body: bytes
    content_type: str
    etag: str | None
    last_modified: str | None


Fetch = Callable[[str, str | None, str | None], Awaitable[Fetched | None]]


async def fetch(url: str, etag: str | None, last_modified: str | None) -> Fetched | None:
    """GET the feed, conditionally; None when it is unchanged (304). FeedUnreachable if the
    server cannot be reached or answers with an error."""
    headers = {"Accept": "text/csv, application/json;q=0.9, */*;q=0.5",
               "User-Agent": "NExT-Bot member feed"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
            async with session.get(url, headers=headers) as response:
                if response.status == 304:
                    return None
                if response.status != 200:
                    raise FeedUnreachable(f"HTTP {response.status}")
                body = await response.content.read(MAX_BYTES + 1)
                if len(body) > MAX_BYTES:
                    raise FeedUnreachable(f"larger than {MAX_BYTES // (1024 * 1024)} MB")
                return Fetched(body, response.headers.get("Content-Type", ""),
                               response.headers.get("ETag"),
                               response.headers.get("Last-Modified"))
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise FeedUnreachable(type(exc).__name__) from None


def parse_feed(fetched: Fetched, now: datetime) -> list[Member]:
    """The members of a feed; ImportFileError (without the feed's content) if it is unusable
    or any row is bad. A member listed twice counts once."""
    try:
        text = decode(fetched.body, "feed")
    except ImportFileError:
        raise ImportFileError(["not UTF-8"]) from None
    is_json = "json" in fetched.content_type.lower() or text.lstrip()[:1] in ("[", "{")
    if is_json:
        rows = json_rows(text)
    else:
        try:
            rows = list(csv_rows(text, "feed"))
        except ImportFileError:
            raise ImportFileError(["neither JSON nor CSV with the header "
                                   "name,kind,state,ags,joined_on,website"]) from None
    members, problems = check_member_rows(rows, today=now.date(),
                                          duplicates_are_problems=False)
    if problems:
        lines = sorted({p.line for p in problems})
        shown = ", ".join(map(str, lines[:10])) + (" …" if len(lines) > 10 else "")
        raise ImportFileError([f"{len(lines)} bad rows ({'lines' if not is_json else 'items'} "
                               f"{shown})"])
    return members


class MemberFeed:
    """Polls one feed address: `await feed.poll()` once, or `await feed.run()` for good."""

    def __init__(self, storage: Storage, url: str, interval: timedelta, *,
                 on_joined: Callable[[], Awaitable[None]],
                 fetch: Fetch = fetch,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 backoff: Backoff | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._storage = storage
        self.url = url
        self._interval = interval.total_seconds()
        self._on_joined = on_joined
        self._fetch = fetch
        self._now = now
        self._backoff = backoff or Backoff(base=30.0, cap=self._interval)
        self._sleep = sleep

    async def run(self) -> None:
        while True:
            try:
                outcome = await self.poll()
            except Exception as exc:  # a bug must not end the bot: log, try again later
                log.error("member feed: poll failed: %s", type(exc).__name__)
                outcome = "error"
            if outcome == "unreachable":
                delay = min(self._backoff.next_delay(), self._interval)
            else:
                self._backoff.reset()
                delay = self._interval
            await self._sleep(delay)

    async def poll(self) -> str:
        """One poll; what happened: `seeded`, `added`, `unchanged`, `unreachable`,
        `malformed`, `empty`, `shrunk` or `too_many` (the last five change nothing)."""
        repo = self._storage.municipalities
        state = await repo.feed_state(self.url)
        try:
            fetched = await self._fetch(self.url, state.etag if state else None,
                                        state.last_modified if state else None)
        except FeedUnreachable as exc:
            log.warning("member feed unreachable (%s); nothing changed", exc)
            return "unreachable"
        if fetched is None:
            return "unchanged"
        now = self._now()
        try:
            members = parse_feed(fetched, now)
        except ImportFileError as exc:
            log.warning("member feed malformed (%s); nothing changed", "; ".join(exc.problems))
            return "malformed"
        if not members:
            log.warning("member feed is empty; nothing changed")
            return "empty"
        if state is not None and len(members) < state.rows / 2:
            log.warning("member feed shrank from %d to %d members; nothing changed (it never "
                        "removes members)", state.rows, len(members))
            return "shrunk"
        seeding = state is None or state.seeded_at is None
        now_ms = int(now.timestamp() * 1000)
        async with self._storage.db.transaction():
            stored = await repo.identities()
            known = MemberIndex(stored)
            new = [m for m in members if known.find(m) is None]
            current = sum(1 for m in stored if m.removed_at is None)
            if not seeding and len(new) > max(MASS_ADD_MIN, current // 2):
                log.warning("member feed would add %d members at once; nothing changed (if that "
                            "is right, import the list with 'nextbot import municipalities')",
                            len(new))
                return "too_many"
            added, _ = await repo.add_new([
                replace(m, source=SOURCE, added_by=SOURCE, registered_at=now_ms,
                        announce=not seeding) for m in new])
            await repo.set_feed_state(FeedState(
                self.url, fetched.etag, fetched.last_modified, len(members),
                state.seeded_at if state and state.seeded_at else now_ms))
        if seeding:
            log.info("member feed seeded the register: %d members, none announced", len(added))
            return "seeded"
        if added:
            log.info("member feed: %d new members, to be announced", len(added))
            await self._on_joined()
            return "added"
        return "unchanged"


def setup(context: FeatureContext) -> Awaitable[None] | None:
    """The member register's feed: polled in the background where one is configured."""
    announcements = context.settings.announcements
    if not announcements.feed_url:
        return None
    feed = MemberFeed(context.storage, announcements.feed_url,
                      timedelta(minutes=announcements.poll_minutes),
                      on_joined=lambda: context.schedule_changed(SOURCE_NAME))
    return feed.run()
