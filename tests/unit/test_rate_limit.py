"""The per-member command limit: the limiter alone, then as the command handler applies it."""

import pytest

from bot.matrix.connection import TransientError
from bot.matrix.permissions import Permissions
from bot.metrics import Metrics
from bot.pipeline.handling import CommandHandler, reply_txn_id
from bot.pipeline.rate_limit import MemberRateLimit, Verdict
from commands.framework import RetryLater
from storage.inbox import InboxMessage
from tests.unit.fakes import ALICE, BOB, BOSS, OTHER_ROOM, ROOM, make_services, set_language

WINDOW = 10_000
T0 = 1_700_000_000_000


def verdicts(limit: MemberRateLimit, member: str, times: list[int]) -> list[Verdict]:
    return [limit.check(member, t) for t in times]


def test_within_the_limit_everything_is_allowed():
    limit = MemberRateLimit(3, WINDOW)
    assert verdicts(limit, ALICE, [T0, T0 + 1, T0 + 2]) == [Verdict.ALLOW] * 3


def test_over_the_limit_one_slow_down_then_drops():
    limit = MemberRateLimit(3, WINDOW)
    got = verdicts(limit, ALICE, [T0 + i * 100 for i in range(7)])
    assert got == [Verdict.ALLOW] * 3 + [Verdict.SLOW_DOWN] + [Verdict.DROP] * 3


def test_thirty_commands_in_ten_seconds_with_the_default_limit():
    limit = MemberRateLimit(20, WINDOW)
    got = verdicts(limit, ALICE, [T0 + i * 333 for i in range(30)])
    assert got.count(Verdict.ALLOW) == 20
    assert got.count(Verdict.SLOW_DOWN) == 1
    assert got.count(Verdict.DROP) == 9
    assert got.index(Verdict.SLOW_DOWN) == 20


def test_other_members_are_not_affected():
    limit = MemberRateLimit(2, WINDOW)
    verdicts(limit, ALICE, [T0, T0 + 1, T0 + 2, T0 + 3])
    assert verdicts(limit, BOB, [T0 + 4, T0 + 5]) == [Verdict.ALLOW, Verdict.ALLOW]


def test_after_a_pause_the_member_is_served_again_and_may_be_told_again():
    limit = MemberRateLimit(2, WINDOW)
    assert verdicts(limit, ALICE, [T0, T0 + 1, T0 + 2, T0 + 3])[-2:] == [
        Verdict.SLOW_DOWN, Verdict.DROP]
    later = T0 + 3 + WINDOW
    assert verdicts(limit, ALICE, [later, later + 1, later + 2]) == [
        Verdict.ALLOW, Verdict.ALLOW, Verdict.SLOW_DOWN]


def test_a_member_who_keeps_flooding_stays_limited_until_a_pause():
    limit = MemberRateLimit(2, WINDOW)
    # One command a second is five times the allowed rate (2 per 10 s): never served again.
    got = verdicts(limit, ALICE, [T0 + i * 1000 for i in range(30)])
    assert got[:3] == [Verdict.ALLOW, Verdict.ALLOW, Verdict.SLOW_DOWN]
    assert set(got[3:]) == {Verdict.DROP}


def test_a_member_at_the_allowed_rate_is_always_served():
    limit = MemberRateLimit(2, WINDOW)
    got = verdicts(limit, ALICE, [T0 + i * 5001 for i in range(20)])
    assert set(got) == {Verdict.ALLOW}


def test_admins_are_exempt_and_zero_switches_the_limit_off():
    limit = MemberRateLimit(1, WINDOW, exempt=[BOSS])
    assert set(verdicts(limit, BOSS, [T0 + i for i in range(50)])) == {Verdict.ALLOW}
    off = MemberRateLimit(0, WINDOW)
    assert set(verdicts(off, ALICE, [T0 + i for i in range(50)])) == {Verdict.ALLOW}


def test_limited_members_are_counted_and_quiet_ones_forgotten():
    limit = MemberRateLimit(1, WINDOW)
    verdicts(limit, ALICE, [T0, T0 + 1])
    verdicts(limit, BOB, [T0, T0 + 1, T0 + 2])
    assert limit.limited_members(T0 + 10) == 2
    assert limit.limited_members(T0 + 2 + WINDOW) == 0
    limit.check("@carol:example.org", T0 + 3 * WINDOW)  # prunes the quiet ones
    assert set(limit._members) == {"@carol:example.org"}


# -- in the command handler ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


async def room_state(room_id):
    return ({"users": {}},
            {"type": "m.room.create", "sender": BOSS, "content": {"room_version": "10"}})


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def metrics():
    return Metrics()


@pytest.fixture
def handler(storage, clock, metrics):
    permissions = Permissions(room_state, admins=[BOSS], moderator_level=50)
    return CommandHandler(make_services(storage), permissions, "de", clock, lambda room: None,
                          rate_limit=MemberRateLimit(3, WINDOW, exempt=[BOSS]), metrics=metrics)


async def send(storage, handler, clock, count, sender=ALICE, room_id=ROOM, prefix="$a"):
    """`count` pings from `sender`, 100 ms apart, each handled as the lanes would."""
    ids = []
    for i in range(count):
        event_id = f"{prefix}{i}"
        await storage.inbox.add([InboxMessage(event_id, room_id, sender, "!ping", clock.now)],
                                received_at=clock.now)
        await handler.drain_room(room_id)
        ids.append(event_id)
        clock.now += 100
    return ids


async def outbox_bodies(storage, room_id=ROOM):
    bodies = []
    while (message := await storage.outbox.next_for_room(room_id)) is not None:
        relates = message.content.get("m.relates_to", {})
        bodies.append((relates.get("m.in_reply_to", {}).get("event_id"),
                       message.content["body"]))
        await storage.outbox.remove(message.txn_id)
    return bodies


def sample(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels) or 0


async def test_a_flood_gets_one_slow_down_and_every_command_is_handled_once(
        storage, handler, clock, metrics):
    ids = await send(storage, handler, clock, 6)
    replies = await outbox_bodies(storage)
    assert [event for event, _ in replies] == ids[:4]  # three answers, one "slow down"
    assert [body for _, body in replies[:3]] == ["Pong! Ich bin da."] * 3
    assert replies[3][1].startswith("Langsam bitte")
    for event_id in ids:  # the dropped ones too: never taken up again
        assert await storage.inbox.is_handled(event_id)
    assert await storage.inbox.count() == 0
    assert sample(metrics, "nextbot_commands_rate_limited_total", action="answered") == 1
    assert sample(metrics, "nextbot_commands_rate_limited_total", action="dropped") == 2


async def test_the_slow_down_uses_the_reply_id_of_the_command_and_the_room_language(
        storage, handler, clock):
    await set_language(storage, OTHER_ROOM, "en")
    ids = await send(storage, handler, clock, 4, room_id=OTHER_ROOM)
    message = None
    while (next_message := await storage.outbox.next_for_room(OTHER_ROOM)) is not None:
        message = next_message
        await storage.outbox.remove(message.txn_id)
    assert message.txn_id == reply_txn_id(ids[3], 0)
    assert message.content["body"].startswith("Please slow down")
    assert message.content["msgtype"] == "m.notice"


async def test_others_and_admins_are_served_while_a_member_is_limited(storage, handler, clock):
    await send(storage, handler, clock, 5)
    await outbox_bodies(storage)
    bob = await send(storage, handler, clock, 3, sender=BOB, prefix="$b")
    boss = await send(storage, handler, clock, 10, sender=BOSS, prefix="$boss")
    replies = await outbox_bodies(storage)
    assert [event for event, _ in replies] == bob + boss
    assert {body for _, body in replies} == {"Pong! Ich bin da."}


async def test_commands_are_counted_by_name_and_outcome(storage, handler, clock, metrics):
    handler._services.on_command = metrics.command_done
    for body in ("!ping", "!ping", "!gibtsnicht"):
        await storage.inbox.add([InboxMessage(f"${body}{clock.now}", ROOM, BOSS, body,
                                              clock.now)], received_at=clock.now)
        await handler.drain_room(ROOM)
        clock.now += 1
    assert sample(metrics, "nextbot_commands_handled_total", command="ping", outcome="ok") == 2
    assert sample(metrics, "nextbot_commands_handled_total", command="unknown",
                  outcome="unknown") == 1
    text = metrics.registry.get_sample_value  # the typed name never becomes a label
    assert text("nextbot_commands_handled_total", {"command": "gibtsnicht",
                                                   "outcome": "unknown"}) is None


async def test_a_stopping_handler_takes_no_more_commands(storage, handler, clock):
    await storage.inbox.add([InboxMessage("$x", ROOM, ALICE, "!ping", clock.now)],
                            received_at=clock.now)
    handler.stop_taking()
    await handler.drain_room(ROOM)
    await handler.wait_idle()
    assert await storage.inbox.count() == 1  # kept for the next start
    assert await storage.outbox.count() == 0


async def test_a_command_retried_after_a_transient_error_counts_once(storage, clock):
    calls = []

    async def flaky_room_state(room_id):
        calls.append(room_id)
        if len(calls) == 1:
            raise TransientError("homeserver away")
        return await room_state(room_id)

    handler = CommandHandler(make_services(storage), Permissions(flaky_room_state, admins=[],
                                                                 moderator_level=50),
                             "de", clock, lambda room: None,
                             rate_limit=MemberRateLimit(1, WINDOW))
    await storage.inbox.add([InboxMessage("$lang", ROOM, ALICE, "!sprache en", clock.now)],
                            received_at=clock.now)
    with pytest.raises(RetryLater):
        await handler.drain_room(ROOM)
    await handler.drain_room(ROOM)  # as the lane does, a little later
    replies = await outbox_bodies(storage)
    assert [event for event, _ in replies] == ["$lang"]
    assert not replies[0][1].startswith("Langsam")  # answered, not asked to slow down
