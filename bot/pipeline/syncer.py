"""The sync loop: the one way events come in.

Each batch's commands go into the inbox in the same transaction as the new sync token and the
rooms' read cursors, so a crash loses none and a redelivered event is recognised. A timeline the
server cut short (`limited`) is filled by paging back to where the bot last read. History from
before the bot's first start, or from before it joined a room, is never treated as a command.

An event that cannot be read or stored (JSON allows a lone surrogate such as `"\ud800"`, which
SQLite cannot take, and in an encrypted room the sender alone decides the decrypted text) is set
aside: logged by its id, counted, and left out, so that it never holds up the rest of its batch.
A command's text is the exception: its broken characters become U+FFFD and it is answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Protocol

from bot.matrix.connection import (
    Invite,
    LoginError,
    RoomEvent,
    RoomTimeline,
    SyncBatch,
    TransientError,
)
from bot.metrics import Metrics
from bot.pipeline.backoff import Backoff
from bot.pipeline.upgrades import tombstone_of
from commands.reactions import reaction_body
from storage import Storage
from storage.database import storable, storable_record, storable_text
from storage.inbox import InboxMessage
from storage.joins import Join
from storage.rooms import RoomCursor
from storage.undecrypted import Undecrypted
from storage.upgrades import RoomUpgrade

log = logging.getLogger(__name__)

MAX_GAP_PAGES = 50  # 50 pages of 100 events: a gap larger than that is logged, not read
MAX_COMMAND_CHARS = 10_000
MAX_EVENT_ID_BYTES = 255  # the spec's limit: a longer thread root is no event's id
# An encrypted event still unreadable after this long gets its sender one explanation.
UNDECRYPTABLE_GRACE_MS = 5 * 60 * 1000
# For latency only: how long the loop lets a batch's commands be answered before it asks for
# more, and how long it then leaves the homeserver to deliver the replies (see
# `_let_answers_go_first`).
ANSWER_FIRST_MAX_S = 0.25
DELIVERY_PAUSE_S = 0.01


@dataclass(frozen=True)
class _Records:
    """What a batch stores of one event: how far its room is read, and what it brings."""

    cursor: RoomCursor
    command: InboxMessage | None = None
    join: Join | None = None
    undecrypted: Undecrypted | None = None

    def storable(self) -> bool:
        return all(storable_record(record) for record in
                   (self.cursor, self.command, self.join, self.undecrypted) if record is not None)


class SyncSource(Protocol):
    user_id: str

    async def sync(self, since: str | None, timeout_ms: int | None = None) -> SyncBatch: ...
    async def messages_before(self, room_id: str, token: str,
                              limit: int = ...) -> tuple[list[RoomEvent], str | None]: ...
    async def join(self, room_id: str) -> bool: ...
    async def reject(self, room_id: str) -> bool: ...
    async def decrypt(self, event: RoomEvent) -> RoomEvent | None: ...


class SyncListener:
    """What the runtime does with what a sync brought: the one way out of the sync loop (toward
    the command lanes, the permissions, the features' tasks). Each method does nothing by
    default; `bot/runtime.py` gives the bot's."""

    def may_join(self, inviter: str | None) -> bool:
        """Whether to accept an invite from this user."""
        return False

    def commands_waiting(self, room_id: str) -> None:
        """The batch stored new commands for this room."""

    def power_levels_changed(self, room_id: str) -> None:
        """The room's power levels changed (or may have): forget what was read of them."""

    def joins_recorded(self) -> None:
        """The batch recorded members' joins (for welcomes)."""

    async def undecryptable(self, pending: Undecrypted) -> None:
        """An encrypted message stayed unreadable past the grace period."""

    # For latency only: until these rooms' commands are answered and their replies sent (see
    # `Syncer._let_answers_go_first`); None: the loop does not wait.
    until_answered: Callable[[list[str]], Awaitable[None]] | None = None


class Syncer:
    def __init__(
        self,
        source: SyncSource,
        storage: Storage,
        listener: SyncListener,
        *,
        prefix: str,
        now_ms: Callable[[], int],
        answer_first_max_s: float = ANSWER_FIRST_MAX_S,
        delivery_pause_s: float = DELIVERY_PAUSE_S,
        backoff: Backoff | None = None,
        metrics: Metrics | None = None,
        reaction_keys: Collection[str] = (),
    ) -> None:
        self._metrics = metrics or Metrics()
        self._reaction_keys = frozenset(reaction_keys)  # the keys some feature answers
        self._source = source
        self._storage = storage
        self._upgrades = storage.upgrades
        self._prefix = prefix
        self._listener = listener
        self._answer_first_max_s = answer_first_max_s
        self._delivery_pause_s = delivery_pause_s
        self._now_ms = now_ms
        self._backoff = backoff or Backoff()
        self._first_synced_at = 0
        self._since: str | None = None
        self._nothing_undecrypted = False  # known only after the first look

    async def run(self) -> None:
        """Sync until cancelled. Errors of the homeserver are waited out, never raised."""
        while True:
            try:
                await self.sync_once()
            except LoginError:
                raise
            except TransientError as exc:
                self._metrics.sync_failed()
                delay = await self._backoff.wait()
                log.warning("sync failed (%s); retried after %.1f s", exc, delay)
            except Exception:
                self._metrics.sync_failed()
                delay = await self._backoff.wait()
                log.exception("sync batch could not be processed; retried after %.1f s", delay)
            else:
                self._backoff.reset()

    async def sync_once(self, timeout_ms: int | None = None) -> None:
        if self._since is None:  # read once; afterwards this loop is the only writer
            session = await self._storage.session.get()
            self._since = session.sync_token if session else None
            self._first_synced_at = (session.first_synced_at if session else None) or 0
        since = self._since
        kwargs = {} if timeout_ms is None else {"timeout_ms": timeout_ms}
        if since is None:
            started = self._now_ms()  # before the joins: commands sent meanwhile count
            batch = await self._source.sync(None, timeout_ms=0)
            await self._handle_invites(batch.invites)
            await self._commit_first(batch, started)
            return
        batch = await self._source.sync(since, **kwargs)
        await self._handle_invites(batch.invites)
        now = self._now_ms()
        commands, resolved, unreadable = await self._retry_undecrypted(now)
        encrypted: list[Undecrypted] = []
        joins: list[Join] = []
        tombstones: list[RoomUpgrade] = []  # followed by bot/pipeline/upgrades.py
        cursors: list[RoomCursor] = []
        for room in self._storable_rooms(batch.rooms):
            events = await self._new_events(room)
            if any(e.type == "m.room.power_levels" and e.state_key == ""
                   for e in [*room.state, *events]):
                self._listener.power_levels_changed(room.room_id)
            tombstones += [t for e in [*room.state, *events] if (t := tombstone_of(e, now))]
            cursor: RoomCursor | None = None
            for event in events:
                records = self._records(event, now)
                if records is None:
                    continue
                cursor = records.cursor
                if records.undecrypted is not None:
                    encrypted.append(records.undecrypted)
                if records.command is not None:
                    commands.append(records.command)
                if records.join is not None:
                    joins.append(records.join)
            if cursor is not None:
                cursors.append(cursor)
        async with self._storage.db.transaction():
            # Filled at the COMMIT, which the insert goes along with: one hand-off for all.
            added = await self._storage.inbox.add_on_commit(commands, received_at=now)
            joined = await self._storage.joins.add(joins)
            await self._upgrades.record(tombstones)
            await self._storage.undecrypted.add(encrypted)
            if encrypted:
                self._nothing_undecrypted = False
            for event_id in resolved:
                await self._storage.undecrypted.remove(event_id)
            for cursor in cursors:
                await self._storage.rooms.set_cursor(cursor)
            await self._storage.session.set_sync_token(batch.next_batch)
        self._since = batch.next_batch
        self._metrics.synced(max((c.last_ts for c in cursors), default=None))
        for pending in unreadable:
            await self._listener.undecryptable(pending)
        if joined:
            self._listener.joins_recorded()
        if added:
            log.debug("queued %d new command(s)", len(added))
            rooms = list(dict.fromkeys(c.room_id for c in added))
            for room_id in rooms:
                self._listener.commands_waiting(room_id)
            await self._let_answers_go_first(rooms)

    async def _let_answers_go_first(self, rooms: list[str]) -> None:
        """Wait, briefly, until these rooms' commands are answered and the replies delivered.
        This exists for latency only (the round trip a member sees), not for correctness.

        Asked for at once, the next sync (which would bring back little but the bot's own replies)
        reaches the homeserver while it is still taking the replies in and handing them to the
        rooms' members, and is served alongside: on a busy single-process server every reply
        reached the members a few milliseconds later. So the loop waits until the replies are
        sent, then a moment more for their delivery. Bounded, so a slow command never holds up
        the other rooms."""
        until_answered = self._listener.until_answered
        if until_answered is None:
            await asyncio.sleep(0)  # at least let the woken lanes start
            return
        try:
            async with asyncio.timeout(self._answer_first_max_s):
                await until_answered(rooms)
        except TimeoutError:
            return
        await asyncio.sleep(self._delivery_pause_s)

    async def _retry_undecrypted(
        self, now: int
    ) -> tuple[list[InboxMessage], list[str], list[Undecrypted]]:
        """Encrypted events kept from earlier syncs: commands among those now readable, the ids
        resolved, and those unreadable for longer than the grace period."""
        commands: list[InboxMessage] = []
        resolved: list[str] = []
        unreadable: list[Undecrypted] = []
        if self._nothing_undecrypted:  # the common case: no query on every sync
            return commands, resolved, unreadable
        kept = await self._storage.undecrypted.all()
        self._nothing_undecrypted = not kept
        for pending in kept:
            event = RoomEvent(pending.event_id, pending.room_id, pending.sender,
                              "m.room.encrypted", pending.origin_ts, pending.content)
            decrypted = await self._source.decrypt(event)
            if decrypted is not None:
                resolved.append(pending.event_id)  # also when set aside: it will not change
                records = self._records(decrypted, now)
                if records is not None and records.command is not None:
                    commands.append(records.command)
            elif now - pending.received_at > UNDECRYPTABLE_GRACE_MS:
                unreadable.append(pending)
        return commands, resolved, unreadable

    async def _commit_first(self, batch: SyncBatch, now: int) -> None:
        """The very first sync: remember where each room stands, answer nothing from before."""
        async with self._storage.db.transaction():
            for room in self._storable_rooms(batch.rooms):
                cursors = (RoomCursor(room.room_id, e.event_id, e.origin_ts)
                           for e in reversed(room.events))
                last = next((c for c in cursors if storable_record(c)), None)
                if last is not None:  # history: an event that cannot be stored is just passed
                    await self._storage.rooms.set_cursor(last)
            await self._storage.session.set_first_synced_at(now)
            await self._storage.session.set_sync_token(batch.next_batch)
        self._since, self._first_synced_at = batch.next_batch, now
        self._metrics.synced()
        log.info("first sync done: %d room(s); their history is not answered", len(batch.rooms))

    async def _new_events(self, room: RoomTimeline) -> list[RoomEvent]:
        events = room.events
        if room.limited and room.prev_batch:
            events = await self._fill_gap(room) + events
        events = self._after_own_join(events)
        return [e for e in events if e.origin_ts >= self._first_synced_at]

    async def _fill_gap(self, room: RoomTimeline) -> list[RoomEvent]:
        """Page back from the sync's `prev_batch` to the last event the bot read in this room."""
        cursor = await self._storage.rooms.cursor(room.room_id)
        older: list[RoomEvent] = []  # newest first while collecting
        token: str | None = room.prev_batch
        pages = 0
        while token and pages < MAX_GAP_PAGES:
            page, token = await self._source.messages_before(room.room_id, token)
            pages += 1
            for event in page:
                if cursor and event.event_id == cursor.last_event_id:
                    return older[::-1]
                if event.origin_ts < self._first_synced_at:
                    return older[::-1]
                older.append(event)
                if self._is_own_join(event):
                    return older[::-1]
        if token:
            log.warning("room %s: gap of more than %d pages; older events not read",
                        room.room_id, MAX_GAP_PAGES)
        return older[::-1]

    def _records(self, event: RoomEvent, now: int) -> _Records | None:
        """What the batch stores of this event; None when it is set aside (logged by its id,
        counted), so that it holds up nothing else."""
        try:
            undecrypted = None
            if event.type == "m.room.encrypted" and event.sender != self._source.user_id:
                undecrypted = Undecrypted(event.event_id, event.room_id, event.sender,
                                          event.content, event.origin_ts, now)
            records = _Records(RoomCursor(event.room_id, event.event_id, event.origin_ts),
                               self._as_command(event), self._as_join(event), undecrypted)
        except Exception as exc:  # reading fields only: the event's shape is at fault
            self._set_aside(event, "malformed", type(exc).__name__)
            return None
        if not records.storable():
            self._set_aside(event, "unstorable", "a value SQLite cannot hold")
            return None
        return records

    def _set_aside(self, event: RoomEvent, reason: str, why: str) -> None:
        # repr: an id may itself hold what a log file cannot (a lone surrogate, a line break).
        log.warning("event %r in room %r set aside, %s: %s", event.event_id, event.room_id,
                    reason, why)
        self._metrics.event_set_aside(reason)

    def _storable_rooms(self, rooms: list[RoomTimeline]) -> list[RoomTimeline]:
        """The rooms whose id can be stored (and looked up): any other one is set aside whole."""
        kept = [room for room in rooms if storable(room.room_id)]
        for room in rooms:
            if not storable(room.room_id):
                for event in room.events:
                    self._set_aside(event, "unstorable", "the room id")
        return kept

    def _is_own_join(self, event: RoomEvent) -> bool:
        if event.type != "m.room.member" or event.state_key != self._source.user_id:
            return False
        if event.content.get("membership") != "join":
            return False
        return _previous_membership(event) != "join"  # a display name change is no join

    def _after_own_join(self, events: list[RoomEvent]) -> list[RoomEvent]:
        """Everything before the bot's own join is history it must not answer."""
        for index in range(len(events) - 1, -1, -1):
            if self._is_own_join(events[index]):
                return events[index + 1:]
        return events

    def _as_join(self, event: RoomEvent) -> Join | None:
        """A member's own join (not the bot's, not a profile change), for the welcome."""
        if (event.type != "m.room.member" or event.state_key != event.sender
                or event.sender == self._source.user_id
                or event.content.get("membership") != "join"):
            return None
        if _previous_membership(event) == "join":
            return None  # a display name or avatar change
        return Join(event.event_id, event.room_id, event.sender, event.origin_ts)

    def _as_command(self, event: RoomEvent) -> InboxMessage | None:
        if event.sender == self._source.user_id:
            return None
        # A member's reaction that a feature answers (✅ on a post of a workshop …), or a
        # redaction: answered like a command.
        reaction = reaction_body(event.type, event.content, self._reaction_keys)
        if reaction is not None:
            return InboxMessage(event.event_id, event.room_id, event.sender, reaction,
                                event.origin_ts)
        if event.type != "m.room.message":
            return None
        content = event.content
        if content.get("msgtype") != "m.text":  # notices come from bots: never answer them
            return None
        relates = content.get("m.relates_to")
        if isinstance(relates, dict) and relates.get("rel_type") == "m.replace":
            return None  # an edit: the original was already seen
        body = content.get("body")
        if not isinstance(body, str):
            return None
        body = strip_reply_fallback(storable_text(body)).strip()
        if not body.startswith(self._prefix) or len(body) <= len(self._prefix):
            return None
        return InboxMessage(event.event_id, event.room_id, event.sender,
                            body[:MAX_COMMAND_CHARS], event.origin_ts,
                            thread_root=thread_root(relates))

    async def _handle_invites(self, invites: list[Invite]) -> None:
        for invite in invites:
            if not storable(invite.room_id):  # neither URL nor database can take it
                log.warning("invite to %r set aside: the room id cannot be stored", invite.room_id)
                self._metrics.event_set_aside("unstorable")
            elif self._listener.may_join(invite.inviter):
                joined = await self._source.join(invite.room_id)
                log.info("invited to %s by an allowed user: %s", invite.room_id,
                         "joined" if joined else "join failed")
            else:
                await self._source.reject(invite.room_id)
                log.info("invite to %s from a server not allowed: rejected", invite.room_id)


def _previous_membership(event: RoomEvent) -> object:
    """The membership before this member event, from `unsigned.prev_content` (any shape)."""
    previous = event.unsigned.get("prev_content")
    return previous.get("membership") if isinstance(previous, dict) else None


def thread_root(relates: object) -> str | None:
    """The root of the thread an event's `m.relates_to` puts it in; None for the main timeline,
    and for a relation that is no usable event id (any shape: the sender chose it)."""
    if not isinstance(relates, dict) or relates.get("rel_type") != "m.thread":
        return None
    root = relates.get("event_id")
    if (not isinstance(root, str) or not root.startswith("$") or not storable(root)
            or len(root.encode()) > MAX_EVENT_ID_BYTES):
        return None
    return root


def strip_reply_fallback(body: str) -> str:
    """Drop the quoted `> ` lines older clients put before a reply's own text."""
    if not body.startswith("> "):
        return body
    lines = body.split("\n")
    index = 0
    while index < len(lines) and lines[index].startswith(">"):
        index += 1
    return "\n".join(lines[index:])
