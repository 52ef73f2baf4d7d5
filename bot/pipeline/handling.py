"""Answering the inbox: one command at a time per room, and what it causes committed with it.

A command's changes, every message it causes (its replies, direct messages to anyone) and its
"handled" mark are one transaction, so a retry after any failure (a 502, a crash, a locked
database) finds all of it or none: nothing lost, nothing done twice. The messages go out under
transaction ids derived from the command's event id, so each is sent once. A direct message
waits under the member's user id; the sender finds or makes the room when it sends.

No network call happens inside that transaction: the database is the whole bot's, and the
homeserver may take seconds. A command that needs it (a member's level read from the room
state, a room made or a member invited through `services.room_admin`) asks for the call, which
ends that run of the command (its transaction rolls back); the call is made outside any
transaction, and the command runs again from the start with the answer at hand
(`HomeserverCalls`: each call is made once per command, however often the command runs).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from bot.matrix.connection import TransientError
from bot.matrix.permissions import NotCached, Permissions
from bot.matrix.render import file_message, page_labels, paginate, replacement
from bot.metrics import Metrics
from bot.pipeline.rate_limit import MemberRateLimit, Verdict
from commands.framework import Level, Reply, Request, RetryLater, Services, dispatch
from commands.reactions import answer_reaction, is_reaction_body, is_unanswered_reaction
from storage.inbox import InboxMessage
from storage.outbox import OutgoingMessage
from storage.undecrypted import Undecrypted

log = logging.getLogger(__name__)

NOTICE_AGAIN_AFTER_MS = 24 * 3600 * 1000  # "I could not decrypt" at most once a day per person
# Runs of one command before it counts as stuck: each run that needs the homeserver makes every
# call it asks for, so only a command making ever new calls one after another comes near this.
MAX_RUNS = 50


def reply_txn_id(event_id: str, page: int) -> str:
    """Stable per command and page: a resend after a crash reuses it, so the server dedupes."""
    digest = hashlib.sha256(event_id.encode()).hexdigest()[:32]
    return f"reply-{digest}-{page}"


def edit_txn_id(event_id: str, version: int) -> str:
    """Stable per message and version: each version of an edit is sent once."""
    digest = hashlib.sha256(event_id.encode()).hexdigest()[:32]
    return f"edit-{digest}-{version}"


class NeedsHomeserver(RetryLater):
    """A homeserver call asked for inside a command's transaction: this run ends (rolled back),
    the call is made outside, and the command runs again. A `RetryLater`, so that
    `commands.framework.dispatch` passes it on instead of answering it as an error."""


class _HandlerFailed(Exception):
    """The handler raised: its run is rolled back."""


class HomeserverCalls:
    """The homeserver calls of one command, each made once however often the command runs.

    A call is known by its name, its arguments and how many identical calls came before it in the
    same run. The first run that asks for a call ends there; the call is made (`make_wanted`) and
    its answer, or the error it raised, kept; later runs get that at once."""

    def __init__(self) -> None:
        self._answers: dict[tuple[str, ...], tuple[bool, Any]] = {}
        self._wanted: dict[tuple[str, ...], Callable[[], Awaitable[Any]]] = {}
        self._asked: Counter[tuple[str, ...]] = Counter()

    def new_run(self) -> None:
        self._asked.clear()
        self._wanted.clear()

    async def call(self, what: str, fn: Callable[..., Awaitable[Any]], /, *args: Any,
                   **kwargs: Any) -> Any:
        call = (what, repr(args), repr(sorted(kwargs.items())))
        key = (*call, str(self._asked[call]))
        self._asked[call] += 1
        if key in self._answers:
            answered, answer = self._answers[key]
            if answered:
                return answer
            raise answer
        self._wanted[key] = functools.partial(fn, *args, **kwargs)
        raise NeedsHomeserver(what)

    async def make_wanted(self) -> None:
        """Make the calls the last run asked for, side by side (none waited for another: each
        ended the run, or ran beside the one that did). Unreachable: RetryLater."""
        wanted, self._wanted = self._wanted, {}
        results = await asyncio.gather(*(make() for make in wanted.values()),
                                       return_exceptions=True)
        unreachable: RetryLater | None = None
        for key, result in zip(wanted, results, strict=True):
            if isinstance(result, RetryLater):
                unreachable = unreachable or result  # asked again when the command is retried
            elif isinstance(result, Exception):
                self._answers[key] = (False, result)  # a refusal: the command answers it
            elif isinstance(result, BaseException):
                raise result
            else:
                self._answers[key] = (True, result)
        if unreachable is not None:
            raise unreachable


class _RecordedRoomAdmin:
    """`services.room_admin` for one command: each call goes through its `HomeserverCalls`."""

    def __init__(self, admin: Any, calls: HomeserverCalls) -> None:
        self._admin = admin
        self._calls = calls

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._admin, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self._calls.call(f"room_admin.{name}", method, *args, **kwargs)

        return call


class _Run:
    """One run of a command: the services it gets, and what waits for its commit (the
    scheduler told of changed schedules, the outcome counted), dropped if it rolls back."""

    def __init__(self, services: Services, calls: HomeserverCalls) -> None:
        self._services = services
        self.outcome: tuple[str, str] | None = None  # (command, outcome), as dispatch tells it
        self.schedules_changed: list[str] = []
        admin = services.room_admin
        self.services = dataclasses.replace(
            services,
            room_admin=None if admin is None else _RecordedRoomAdmin(admin, calls),
            schedule_changed=None if services.schedule_changed is None
            else self._schedule_changed,
            on_command=self._on_command)

    async def _schedule_changed(self, source_name: str) -> None:
        self.schedules_changed.append(source_name)

    def _on_command(self, command: str, outcome: str) -> None:
        self.outcome = (command, outcome)

    @property
    def failed(self) -> bool:
        """The handler raised (answered with "internal error"): none of its writes is kept."""
        return self.outcome is not None and self.outcome[1] == "error"

    async def committed(self) -> None:
        if self.outcome is not None and self._services.on_command is not None:
            self._services.on_command(*self.outcome)
        notify = self._services.schedule_changed
        for source_name in dict.fromkeys(self.schedules_changed):
            assert notify is not None
            try:
                await notify(source_name)
            except Exception:  # the command is done; the scheduler plans again at its next start
                log.exception("planning %s after a command failed", source_name)


class CommandHandler:
    def __init__(
        self,
        services: Services,
        permissions: Permissions,
        default_language: str,
        now_ms: Callable[[], int],
        on_reply: Callable[[str], None],
        rate_limit: MemberRateLimit | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._services = services
        self._permissions = permissions
        self._default_language = default_language
        self._now_ms = now_ms
        self._on_reply = on_reply
        self._rate_limit = rate_limit or MemberRateLimit(0, 1)
        self._metrics = metrics or Metrics()
        self._stopping = False
        self._handling = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._counted: set[str] = set()  # commands waiting for a retry, counted by the limit
        # The homeserver calls of commands not handled yet, kept across their retries.
        self._calls: dict[str, HomeserverCalls] = {}

    def stop_taking(self) -> None:
        """Take no more commands from the inbox (they stay there for the next start)."""
        self._stopping = True

    async def wait_idle(self) -> None:
        """Until no command is being handled."""
        await self._idle.wait()

    async def drain_room(self, room_id: str) -> None:
        inbox = self._services.storage.inbox
        while not self._stopping and (message := await inbox.next_for_room(room_id)) is not None:
            if self._stopping:
                return
            self._handling += 1
            self._idle.clear()
            try:
                await self.handle(message)
            finally:
                self._handling -= 1
                if self._handling == 0:
                    self._idle.set()

    async def handle(self, message: InboxMessage) -> None:
        storage = self._services.storage
        language = await storage.rooms.language(message.room_id) or self._default_language
        if message.event_id in self._counted:  # a retry is not another command
            self._counted.discard(message.event_id)
            verdict = Verdict.ALLOW
        elif is_unanswered_reaction(message.body, self._services.registry):
            verdict = Verdict.ALLOW
        else:
            verdict = self._rate_limit.check(message.sender, self._now_ms())
        if verdict is not Verdict.ALLOW:
            await self._hold_back(message, language, verdict)
            return
        try:
            await self._answer(message, language)
        except Exception:
            self._counted.add(message.event_id)  # the lane retries it: not another command
            raise

    async def _answer(self, message: InboxMessage, language: str) -> None:
        """Run the command until a run needs nothing more from the homeserver; commit that run's
        changes with its messages and the "handled" mark (or, when the handler raised, only its
        "internal error" answer). Unreachable homeserver: RetryLater, the command stays."""
        calls = self._calls.setdefault(message.event_id, HomeserverCalls())
        storage = self._services.storage
        for _ in range(MAX_RUNS):
            calls.new_run()
            run = _Run(self._services, calls)
            outgoing: list[OutgoingMessage] = []
            try:
                async with storage.db.transaction():
                    outgoing = await self._run(message, language, run, calls)
                    if run.failed:
                        raise _HandlerFailed  # rolled back: a half-done change is no change
                    await self._queue(message, outgoing)
            except NeedsHomeserver:
                await calls.make_wanted()  # outside any transaction
                continue
            except _HandlerFailed:
                await self._finish(message, outgoing)  # its "internal error" answer alone
            else:
                self._woken(outgoing)
            del self._calls[message.event_id]
            await run.committed()
            return
        # A command that never stops asking must not hold up its room: answered as a failure.
        log.error("command %s in %s asked the homeserver %d times; given up", message.event_id,
                  message.room_id, MAX_RUNS)
        del self._calls[message.event_id]
        failed = self._services.catalog.text(language, "errors.internal")
        await self._finish(message, self._messages(message, [Reply(failed)], language))

    async def _run(self, message: InboxMessage, language: str, run: _Run,
                   calls: HomeserverCalls) -> list[OutgoingMessage]:
        """One run of the command: the messages it causes (inside its transaction)."""

        async def read_level() -> Level:
            try:
                return await self._permissions.level(message.room_id, message.sender)
            except TransientError as exc:
                raise RetryLater from exc  # the command stays in the inbox

        async def level() -> Level:
            try:  # mostly known already: then this run need not end for it
                return await self._permissions.level(message.room_id, message.sender,
                                                     cached_only=True)
            except NotCached:
                found: Level = await calls.call("level", read_level)
                return found

        request = Request(message.event_id, message.room_id, message.sender, message.body,
                          language, level)
        if is_reaction_body(message.body):  # a reaction or a redaction, not a command
            return self._messages(message, await answer_reaction(request, run.services),
                                  language)
        return self._messages(message, await dispatch(request, run.services), language)

    def _messages(self, message: InboxMessage, replies: list[Reply],
                  language: str) -> list[OutgoingMessage]:
        outgoing: list[OutgoingMessage] = []
        for reply in replies:
            if reply.edit_of is not None and reply.recipient is not None:
                edited, version = reply.edit_of
                outgoing.append(OutgoingMessage(edit_txn_id(edited, version), reply.recipient,
                                                replacement(reply.text, edited)))
                continue
            address, reply_to, thread = message.room_id, message.event_id, message.thread_root
            if reply.direct:
                # To the member: the sender finds (or makes) the room. A reply relation (or a
                # thread) cannot point into another room.
                address, reply_to, thread = reply.recipient or message.sender, None, None
            for content, file_data in self._contents(reply, language, reply_to, thread):
                outgoing.append(OutgoingMessage(reply_txn_id(message.event_id, len(outgoing)),
                                                address, content, file_data=file_data,
                                                record_as=reply.record_as))
        return outgoing

    async def _hold_back(self, message: InboxMessage, language: str, verdict: Verdict) -> None:
        """A member over the limit: one "slow down" in reply, then silence; handled either way."""
        outgoing: list[OutgoingMessage] = []
        if verdict is Verdict.SLOW_DOWN:
            log.info("room=%s outcome=rate_limited: a member is asked to slow down",
                     message.room_id)
            text = self._services.catalog.text(language, "errors.slow_down")
            outgoing = [OutgoingMessage(reply_txn_id(message.event_id, page), message.room_id,
                                        content)
                        for page, (content, _) in enumerate(
                            self._contents(Reply(text), language, message.event_id,
                                           message.thread_root))]
        self._metrics.rate_limited(answered=bool(outgoing))
        await self._finish(message, outgoing)

    async def _finish(self, message: InboxMessage, outgoing: list[OutgoingMessage]) -> None:
        """Queue the replies and mark the command handled: one transaction, so exactly once."""
        async with self._services.storage.db.transaction():
            await self._queue(message, outgoing)
        self._woken(outgoing)

    async def _queue(self, message: InboxMessage, outgoing: list[OutgoingMessage]) -> None:
        """Inside the command's transaction."""
        storage = self._services.storage
        now = self._now_ms()
        await storage.outbox.add(outgoing, created_at=now)
        await storage.inbox.mark_handled(message, handled_at=now)

    def _woken(self, outgoing: list[OutgoingMessage]) -> None:
        for address in dict.fromkeys(m.room_id for m in outgoing):
            self._on_reply(address)

    async def explain_undecryptable(self, pending: Undecrypted) -> None:
        """Tell the sender once (a day, per room) that the bot could not read their message."""
        storage = self._services.storage
        now = self._now_ms()
        told = await storage.undecrypted.notified_at(pending.room_id, pending.sender)
        outgoing: list[OutgoingMessage] = []
        if told is None or now - told > NOTICE_AGAIN_AFTER_MS:
            language = await storage.rooms.language(pending.room_id) or self._default_language
            text = self._services.catalog.text(language, "errors.undecryptable")
            outgoing = [OutgoingMessage(f"undecryptable-{reply_txn_id(pending.event_id, page)}",
                                        pending.room_id, content)
                        for page, (content, _) in enumerate(
                            self._contents(Reply(text), language, pending.event_id))]
        async with storage.db.transaction():
            await storage.undecrypted.remove(pending.event_id)
            if outgoing:
                await storage.outbox.add(outgoing, created_at=now)
                await storage.undecrypted.set_notified(pending.room_id, pending.sender, now)
        if outgoing:
            self._on_reply(pending.room_id)

    def _contents(self, reply: Reply, language: str, reply_to: str | None,
                  thread_root: str | None = None) -> list[tuple[dict[str, Any], bytes | None]]:
        if reply.attachment is not None:
            file = reply.attachment
            content = file_message(reply.text, file.filename, file.mimetype, len(file.data),
                                   reply_to, thread_root)
            return [(content, file.data)]

        label = page_labels(self._services.catalog, language)
        return [(content, None)
                for content in paginate(reply.text, label, reply_to, mentions=reply.mentions,
                                        thread_root=thread_root)]
