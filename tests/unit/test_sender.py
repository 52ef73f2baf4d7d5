import logging

import pytest

from bot.matrix.connection import RefusedError, SendOutcome, SendResult, send_result_of_error
from bot.matrix.own_rooms import DIRECT_STATE_EVENT, DirectRooms, keyed_alias
from bot.metrics import Metrics
from bot.pipeline.sender import MAX_RATE_LIMIT_WAIT_S, Sender
from storage.outbox import OutgoingMessage
from tests.unit.fakes import (
    ALICE,
    BOB,
    BOT,
    OTHER_ROOM,
    ROOM,
    FakeHomeserver,
    FakeTransport,
    Sleeps,
    no_jitter_backoff,
)

SENT = SendResult(SendOutcome.SENT, event_id="$ok")
TRANSIENT = SendResult(SendOutcome.TRANSIENT)
REFUSED = SendResult(SendOutcome.REFUSED, errcode="M_FORBIDDEN")


def rate_limited(ms: int) -> SendResult:
    return SendResult(SendOutcome.RATE_LIMITED, retry_after_ms=ms, errcode="M_LIMIT_EXCEEDED")


def out(txn_id: str, room_id: str = ROOM) -> OutgoingMessage:
    return OutgoingMessage(txn_id, room_id, {"msgtype": "m.notice", "body": txn_id})


@pytest.fixture
async def outbox(storage):
    return storage.outbox


def make_sender(transport, outbox, sleeps):
    return Sender(transport, outbox, sleep=sleeps, backoff_factory=no_jitter_backoff)


async def test_sent_removes_the_row(outbox):
    await outbox.add([out("t1")], created_at=1)
    transport, sleeps = FakeTransport(), Sleeps()
    await make_sender(transport, outbox, sleeps).drain_room(ROOM)
    assert transport.sent == [(ROOM, "m.room.message", {"msgtype": "m.notice", "body": "t1"},
                               "t1")]
    assert await outbox.count() == 0
    assert sleeps.calls == []


async def test_rate_limited_waits_as_told_and_retries_with_the_same_txn_id(outbox):
    await outbox.add([out("t1"), out("t2")], created_at=1)
    transport = FakeTransport([rate_limited(1500), rate_limited(250)])
    sleeps = Sleeps()
    await make_sender(transport, outbox, sleeps).drain_room(ROOM)
    assert transport.txn_ids == ["t1", "t1", "t1", "t2"]
    assert sleeps.calls == [1.5, 0.25]
    assert await outbox.count() == 0


async def test_transient_failures_back_off_and_retry_with_the_same_txn_id(outbox, caplog):
    caplog.set_level(logging.WARNING)
    await outbox.add([out("t1"), out("t2")], created_at=1)
    transport = FakeTransport([TRANSIENT, TRANSIENT, TRANSIENT, SENT, TRANSIENT])
    sleeps = Sleeps()
    await make_sender(transport, outbox, sleeps).drain_room(ROOM)
    assert transport.txn_ids == ["t1", "t1", "t1", "t1", "t2", "t2"]
    # Growing delays, and a success resets the back-off for the next message.
    assert sleeps.calls == [0.5, 1.0, 2.0, 0.5]
    assert await outbox.count() == 0
    assert "retrying" in caplog.text


async def test_a_message_refused_for_good_is_set_aside_and_the_room_goes_on(storage, outbox,
                                                                           caplog):
    caplog.set_level(logging.ERROR)
    secret = OutgoingMessage("t1", ROOM, {"msgtype": "m.notice", "body": "Vertrauliches"})
    await outbox.add([secret, out("t2"), out("t3")], created_at=1)
    # 403: the bot is not in the room (any more); 413: too large. Neither is tried again.
    transport = FakeTransport([REFUSED, SendResult(SendOutcome.REFUSED, errcode="M_TOO_LARGE")])
    metrics = Metrics()
    sender = Sender(transport, outbox, sleep=Sleeps(), backoff_factory=no_jitter_backoff,
                    metrics=metrics, now_ms=lambda: 42)
    await sender.drain_room(ROOM)
    assert transport.txn_ids == ["t1", "t2", "t3"]  # each once, the queue went on
    assert await outbox.count() == 0 and await outbox.pending_rooms() == []
    # Kept for the operator, not deleted; logged by room, transaction id and error code.
    assert await outbox.failed() == [("t1", ROOM, "M_FORBIDDEN", 42),
                                     ("t2", ROOM, "M_TOO_LARGE", 42)]
    assert "M_FORBIDDEN" in caplog.text and "t1" in caplog.text and ROOM in caplog.text
    assert "Vertrauliches" not in caplog.text
    sample = metrics.registry.get_sample_value
    assert sample("nextbot_sends_refused_total", {"errcode": "M_FORBIDDEN"}) == 1
    assert sample("nextbot_sends_refused_total", {"errcode": "M_TOO_LARGE"}) == 1
    await metrics.refresh(storage, 0, 0)
    assert sample("nextbot_sends_refused_kept_messages", {}) == 2


async def test_a_message_set_aside_is_not_sent_again_when_queued_again(outbox):
    await outbox.add([out("t1")], created_at=1)
    await make_sender(FakeTransport([REFUSED]), outbox, Sleeps()).drain_room(ROOM)
    await outbox.add([out("t1"), out("t2")], created_at=2)  # e.g. a command handled again
    transport = FakeTransport()
    await make_sender(transport, outbox, Sleeps()).drain_room(ROOM)
    assert transport.txn_ids == ["t2"]


async def test_messages_set_aside_are_forgotten_after_a_while(outbox):
    await outbox.add([out("t1"), out("t2")], created_at=1)
    await outbox.set_aside("t1", ROOM, "M_FORBIDDEN", at=100)
    assert await outbox.forget_failed_before(101) == 1
    assert await outbox.failed() == []
    assert (await outbox.next_for_room(ROOM)).txn_id == "t2"  # waiting ones stay


@pytest.mark.parametrize(("status", "errcode", "outcome"), [
    (403, "M_FORBIDDEN", SendOutcome.REFUSED),
    (413, "M_TOO_LARGE", SendOutcome.REFUSED),
    (413, None, SendOutcome.REFUSED),  # a proxy's own "too large" page
    (403, None, SendOutcome.REFUSED),
    (None, "M_FORBIDDEN", SendOutcome.REFUSED),
    (400, "M_UNKNOWN", SendOutcome.REFUSED),
    (429, "M_LIMIT_EXCEEDED", SendOutcome.RATE_LIMITED),
    (502, None, SendOutcome.TRANSIENT),
    (500, "M_UNKNOWN", SendOutcome.TRANSIENT),
    (None, None, SendOutcome.TRANSIENT),  # no answer at all
    (404, None, SendOutcome.TRANSIENT),  # not the homeserver's answer: a proxy's
    (401, "M_UNKNOWN_TOKEN", SendOutcome.TRANSIENT),  # nothing wrong with the message
])
def test_which_send_errors_are_refusals_for_good(status, errcode, outcome):
    result = send_result_of_error(status, errcode, 0)
    assert result.outcome is outcome
    if outcome is SendOutcome.REFUSED:
        assert result.errcode == errcode or f"HTTP {status}"


async def test_order_per_room_and_only_that_room(outbox):
    await outbox.add([out("a1"), out("b1", OTHER_ROOM), out("a2")], created_at=1)
    await outbox.add([out("a3")], created_at=2)
    transport = FakeTransport([TRANSIENT, SENT, rate_limited(10)])
    await make_sender(transport, outbox, Sleeps()).drain_room(ROOM)
    assert transport.txn_ids == ["a1", "a1", "a2", "a2", "a3"]
    assert await outbox.pending_rooms() == [OTHER_ROOM]
    assert (await outbox.next_for_room(OTHER_ROOM)).txn_id == "b1"


async def test_a_crashing_transport_keeps_the_row_for_the_next_drain(outbox):
    class Broken(FakeTransport):
        async def send(self, *args, **kwargs):
            raise ConnectionResetError("boom")

    await outbox.add([out("t1")], created_at=1)
    with pytest.raises(ConnectionResetError):
        await make_sender(Broken(), outbox, Sleeps()).drain_room(ROOM)
    assert (await outbox.next_for_room(ROOM)).txn_id == "t1"
    transport = FakeTransport()
    await make_sender(transport, outbox, Sleeps()).drain_room(ROOM)
    assert transport.txn_ids == ["t1"]


async def test_a_file_is_uploaded_then_sent_with_its_url(outbox):
    transport, sleeps = FakeTransport(), Sleeps()
    transport.upload_failures = 1  # the first upload fails: retried after a back-off
    content = {"msgtype": "m.file", "body": "Deine Daten", "filename": "profil.json",
               "info": {"mimetype": "application/json", "size": 2}}
    await outbox.add([OutgoingMessage("f1", ROOM, content, file_data=b"{}")], created_at=0)
    await make_sender(transport, outbox, sleeps).drain_room(ROOM)
    assert transport.uploads == [(b"{}", "application/json", "profil.json")]
    [(_, _, sent, txn_id)] = transport.sent
    assert sent["url"] == "mxc://test/1" and txn_id == "f1"
    assert len(sleeps.calls) == 1
    assert await outbox.count() == 0


async def test_a_wild_retry_after_is_waited_out_only_up_to_the_cap(outbox):
    await outbox.add([out("t1")], created_at=1)
    transport = FakeTransport([rate_limited(10 * 24 * 3600 * 1000)])
    sleeps = Sleeps()
    await make_sender(transport, outbox, sleeps).drain_room(ROOM)
    assert sleeps.calls == [MAX_RATE_LIMIT_WAIT_S]
    assert transport.txn_ids == ["t1", "t1"]
    assert await outbox.count() == 0


# -- direct messages: queued for the member, the room found or made when sent ------------------


def direct_sender(storage, homeserver: FakeHomeserver) -> Sender:
    return Sender(homeserver, storage.outbox, sleep=Sleeps(), backoff_factory=no_jitter_backoff,
                  direct_rooms=DirectRooms(storage.rooms, homeserver, BOT).room_for)


async def test_direct_messages_go_to_one_room_made_for_the_member_and_marked(storage):
    homeserver = FakeHomeserver()
    await storage.outbox.add([out("d1", ALICE), out("d2", ALICE)], created_at=1)
    await direct_sender(storage, homeserver).drain_room(ALICE)
    [room] = homeserver.made_by_bot()
    assert homeserver.rooms[room]["invited"] == {ALICE}
    assert {"type": DIRECT_STATE_EVENT, "state_key": "", "sender": BOT,
            "content": {"member": ALICE}} in homeserver.rooms[room]["state"]
    assert [(r, txn) for r, _, _, txn in homeserver.sent] == [(room, "d1"), (room, "d2")]
    assert await storage.rooms.direct_room(ALICE) == room
    alias = keyed_alias(await storage.rooms.alias_key(), "dm", ALICE)
    assert homeserver.aliases == {f"#{alias}:example.org": room}


async def test_a_direct_room_alias_held_by_someone_else_is_left_alone(storage):
    homeserver = FakeHomeserver()
    alias = keyed_alias(await storage.rooms.alias_key(), "dm", ALICE)
    squat = homeserver.make_room(BOB, alias=alias, state=[
        {"type": DIRECT_STATE_EVENT, "state_key": "", "content": {"member": ALICE}}])
    homeserver.rooms[squat]["joined"].add(BOT)
    await storage.outbox.add([out("d1", ALICE)], created_at=1)
    await direct_sender(storage, homeserver).drain_room(ALICE)
    [room] = homeserver.made_by_bot()
    assert room != squat and homeserver.sent_to(squat) == []
    assert [r for r, _, _, _ in homeserver.sent] == [room]


async def test_a_member_no_room_can_be_made_with_is_set_aside(storage):
    class NoSuchUser(FakeHomeserver):
        async def create_direct_room(self, user_id, **kwargs) -> str:
            raise RefusedError("create room: M_NOT_FOUND", "M_NOT_FOUND")

    await storage.outbox.add([out("d1", "@gone:example.org"), out("d2", "@gone:example.org")],
                             created_at=1)
    await direct_sender(storage, NoSuchUser()).drain_room("@gone:example.org")
    assert [(txn, errcode) for txn, _, errcode, _ in await storage.outbox.failed()] == [
        ("d1", "M_NOT_FOUND"), ("d2", "M_NOT_FOUND")]


async def test_a_send_into_a_room_the_bot_was_removed_from_is_set_aside(storage):
    homeserver = FakeHomeserver()
    room = homeserver.make_room(BOB)  # the bot was in it, then kicked
    await storage.outbox.add([out("k1", room), out("k2", room)], created_at=1)
    await make_sender(homeserver, storage.outbox, Sleeps()).drain_room(room)
    assert [txn for txn, *_ in await storage.outbox.failed()] == ["k1", "k2"]
