import logging

import pytest

from bot.matrix import SendOutcome, SendResult
from bot.sender import MAX_RATE_LIMIT_WAIT_S, Sender
from storage.outbox import OutgoingMessage
from tests.unit.fakes import OTHER_ROOM, ROOM, FakeTransport, Sleeps, no_jitter_backoff

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


async def test_refused_drops_the_row_and_goes_on(outbox, caplog):
    caplog.set_level(logging.ERROR)
    await outbox.add([out("t1"), out("t2")], created_at=1)
    transport = FakeTransport([REFUSED])
    await make_sender(transport, outbox, Sleeps()).drain_room(ROOM)
    assert transport.txn_ids == ["t1", "t2"]
    assert await outbox.count() == 0
    assert "M_FORBIDDEN" in caplog.text and "t1" in caplog.text


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
