import asyncio
import logging
from urllib.parse import quote

import pytest

from bot.matrix.connection import Invite, LoginError, RoomEvent, TransientError
from bot.metrics import Metrics
from bot.pipeline import syncer as syncer_module
from bot.pipeline.backoff import Backoff
from bot.pipeline.syncer import MAX_COMMAND_CHARS, Syncer, SyncListener, strip_reply_fallback
from storage.rooms import RoomCursor
from tests.unit.fakes import (
    ALICE,
    BOB,
    BOT,
    OTHER_ROOM,
    ROOM,
    FakeSyncSource,
    Sleeps,
    batch,
    member_event,
    message,
    power_levels_event,
    timeline,
    until,
)

T0 = 1_700_000_000_000  # the bot's clock at its first sync
NEW_ROOM = "!new:example.org"


class Recorder(SyncListener):
    """What the sync loop told the runtime."""

    def __init__(self) -> None:
        self.command_rooms: list[str] = []  # each wake-up of the command lanes, by room
        self.power_levels: list[str] = []
        self.unreadable: list[str] = []

    @property
    def commands(self) -> int:
        return len(self.command_rooms)

    def may_join(self, inviter: str | None) -> bool:
        """Like `Settings.may_invite` for a bot on example.org with no other servers allowed."""
        return bool(inviter) and inviter.endswith(":example.org")

    def commands_waiting(self, room_id: str) -> None:
        self.command_rooms.append(room_id)

    def power_levels_changed(self, room_id: str) -> None:
        self.power_levels.append(room_id)

    async def undecryptable(self, pending) -> None:
        self.unreadable.append(pending.event_id)


def make_syncer(storage, source, recorder, backoff=None, metrics=None, **options) -> Syncer:
    return Syncer(source, storage, recorder, prefix="!", now_ms=options.pop("now_ms", lambda: T0),
                  backoff=backoff, metrics=metrics, **options)


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def source():
    return FakeSyncSource()


@pytest.fixture
async def synced(logged_in, source, recorder):
    """A syncer after its first sync ("s1"): ROOM read up to `$seen`, OTHER_ROOM up to `$o`."""
    syncer = make_syncer(logged_in, source, recorder)
    source.script.append(batch(
        "s1",
        timeline([message("$seen", "!ping", ts=T0 - 1000)]),
        timeline([message("$o", "!ping", ts=T0 - 500, room_id=OTHER_ROOM)], OTHER_ROOM),
    ))
    await syncer.sync_once()
    return syncer


async def inbox(storage) -> list[tuple[str, str, str]]:
    rows = await storage.db.fetchall("SELECT event_id, room_id, body FROM inbox ORDER BY seq")
    return [tuple(r) for r in rows]


async def queued_ids(storage) -> list[str]:
    return [event_id for event_id, _, _ in await inbox(storage)]


# -- first sync ---------------------------------------------------------------------------------


async def test_first_sync_answers_nothing_and_stores_token_and_cursors(logged_in, source,
                                                                       recorder):
    source.script.append(batch(
        "s1",
        timeline([message("$a", "!ping", ts=T0 - 10), message("$b", "!hilfe", ts=T0 - 5)]),
        timeline([message("$c", "!ping", ts=T0 - 1, room_id=OTHER_ROOM)], OTHER_ROOM),
        timeline([], NEW_ROOM),
    ))
    await make_syncer(logged_in, source, recorder).sync_once()
    assert source.sync_calls == [(None, 0)]
    assert await logged_in.inbox.count() == 0
    assert recorder.commands == 0
    session = await logged_in.session.get()
    assert (session.sync_token, session.first_synced_at) == ("s1", T0)
    assert await logged_in.rooms.cursor(ROOM) == RoomCursor(ROOM, "$b", T0 - 5)
    assert await logged_in.rooms.cursor(OTHER_ROOM) == RoomCursor(OTHER_ROOM, "$c", T0 - 1)
    assert await logged_in.rooms.cursor(NEW_ROOM) is None


async def test_later_syncs_continue_from_the_stored_token(synced, source, logged_in):
    source.script += [batch("s2"), batch("s3")]
    await synced.sync_once()
    await synced.sync_once(timeout_ms=0)
    assert source.sync_calls[1:] == [("s1", None), ("s2", 0)]
    assert (await logged_in.session.get()).sync_token == "s3"
    assert (await logged_in.session.get()).first_synced_at == T0


# -- which events are commands ------------------------------------------------------------------


async def test_only_text_commands_with_the_prefix_are_queued(synced, source, logged_in,
                                                             recorder):
    t = T0 + 100
    events = [
        message("$cmd", "!ping", ts=t),
        message("$notice", "!ping", ts=t, msgtype="m.notice"),
        message("$emote", "!ping", ts=t, msgtype="m.emote"),
        message("$edit", "!ping", ts=t,
                **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$cmd"},
                   "m.new_content": {"msgtype": "m.text", "body": "!ping"}}),
        message("$own", "!ping", ts=t, sender=BOT),
        message("$int", 42, ts=t),
        message("$list", ["!ping"], ts=t),
        RoomEvent("$nobody", ROOM, ALICE, "m.room.message", t, {"msgtype": "m.text"}),
        RoomEvent("$topic", ROOM, ALICE, "m.room.topic", t, {"body": "!ping", "topic": "x"},
                  state_key=""),
        message("$chat", "hallo !ping", ts=t),
        message("$bang", "!", ts=t),
        message("$reply", "> <@bob:example.org> !status\n> zweite Zeile\n\n!hilfe sprache",
                ts=t, **{"m.relates_to": {"m.in_reply_to": {"event_id": "$x"}}}),
        message("$quote", "> <@bob:example.org> !ping\n\ndanke", ts=t),
        message("$spaces", "  !ping  ", ts=t),
        message("$long", "!x" + "y" * (MAX_COMMAND_CHARS + 50), ts=t),
    ]
    source.script.append(batch(
        "s2", timeline(events),
        timeline([message("$other", "!status", ts=t, room_id=OTHER_ROOM)], OTHER_ROOM),
    ))
    await synced.sync_once()
    queued = await inbox(logged_in)
    assert [e for e, _, _ in queued] == ["$cmd", "$reply", "$spaces", "$long", "$other"]
    bodies = {e: body for e, _, body in queued}
    assert bodies["$reply"] == "!hilfe sprache"
    assert bodies["$spaces"] == "!ping"
    assert len(bodies["$long"]) == MAX_COMMAND_CHARS
    assert {e: room for e, room, _ in queued}["$other"] == OTHER_ROOM
    assert sorted(recorder.command_rooms) == sorted([ROOM, OTHER_ROOM])  # each room woken once
    assert await logged_in.rooms.cursor(ROOM) == RoomCursor(ROOM, "$long", t)
    assert (await logged_in.session.get()).sync_token == "s2"


def in_thread(root: object) -> dict:
    """A threaded message's relation as Element sends it (the fallback to the thread's last)."""
    return {"m.relates_to": {"rel_type": "m.thread", "event_id": root, "is_falling_back": True,
                             "m.in_reply_to": {"event_id": "$last"}}}


async def thread_roots(storage) -> dict[str, str | None]:
    rows = await storage.db.fetchall("SELECT event_id, thread_root FROM inbox ORDER BY seq")
    return dict(rows)


async def test_a_command_in_a_thread_is_queued_with_the_threads_root(synced, source, logged_in):
    t = T0 + 100
    source.script.append(batch("s2", timeline([
        message("$threaded", "!hilfe", ts=t, **in_thread("$root")),
        message("$main", "!ping", ts=t),
        message("$reply", "!ping", ts=t, **{"m.relates_to": {"m.in_reply_to": {"event_id": "$x"}}}),
    ])))
    await synced.sync_once()
    assert await thread_roots(logged_in) == {"$threaded": "$root", "$main": None, "$reply": None}
    assert (await logged_in.inbox.next_for_room(ROOM)).thread_root == "$root"


@pytest.mark.parametrize("root", [42, None, ["$root"], {"id": "$root"}, "", "root-without-dollar",
                                  "$" + "r" * 300, "$r\ud800"])
async def test_a_thread_relation_without_a_usable_root_is_answered_in_the_main_timeline(
        synced, source, logged_in, root):
    source.script.append(batch("s2", timeline([
        message("$odd", "!ping", ts=T0 + 100, **in_thread(root)),
        message("$next", "!hilfe", ts=T0 + 101, **in_thread("$root")),
    ])))
    await synced.sync_once()
    assert await thread_roots(logged_in) == {"$odd": None, "$next": "$root"}
    assert (await logged_in.session.get()).sync_token == "s2"


async def test_a_decrypted_command_in_a_thread_keeps_its_root(synced, source, logged_in):
    source.script.append(batch("s2", timeline([encrypted("$enc", ts=T0 + 10)])))
    await synced.sync_once()
    # nio puts the relation (sent in the clear beside the ciphertext) back into the content.
    source.readable["$enc"] = message("$enc", "!ping", ts=T0 + 10, **in_thread("$root"))
    source.script.append(batch("s3"))
    await synced.sync_once()
    assert await thread_roots(logged_in) == {"$enc": "$root"}


async def test_a_batch_without_commands_does_not_wake_the_workers(synced, source, recorder,
                                                                  logged_in):
    source.script.append(batch("s2", timeline([message("$chat", "hallo", ts=T0 + 1)])))
    await synced.sync_once()
    assert recorder.commands == 0
    assert await logged_in.rooms.cursor(ROOM) == RoomCursor(ROOM, "$chat", T0 + 1)


async def test_a_non_limited_timeline_does_not_page(synced, source, logged_in):
    source.script.append(batch("s2", timeline([message("$c", "!ping", ts=T0 + 1)],
                                              prev_batch="p1")))
    await synced.sync_once()
    assert source.page_calls == []
    assert await queued_ids(logged_in) == ["$c"]


@pytest.mark.parametrize(("body", "expected"), [
    ("!ping", "!ping"),
    ("> <@a:b> zitat\n\n!ping", "\n!ping"),
    ("> a\n>b\n!ping", "!ping"),
    (">kein Zitat\n!ping", ">kein Zitat\n!ping"),
    ("> nur Zitat", ""),
])
def test_strip_reply_fallback(body, expected):
    assert strip_reply_fallback(body) == expected


# -- gaps ---------------------------------------------------------------------------------------


async def test_a_limited_timeline_is_filled_back_to_the_cursor(synced, source, logged_in):
    source.script.append(batch("s2", timeline([message("$c1", "!ping", ts=T0 + 10)])))
    await synced.sync_once()
    source.script.append(batch(
        "s3", timeline([message("$c5", "!ping", ts=T0 + 50)], limited=True, prev_batch="p1")))
    source.pages[(ROOM, "p1")] = ([message("$c4", "!hilfe", ts=T0 + 40),
                                   message("$chat", "hallo", ts=T0 + 35)], "p2")
    source.pages[(ROOM, "p2")] = ([message("$c3", "!status", ts=T0 + 30),
                                   message("$c1", "!ping", ts=T0 + 10),
                                   message("$c0", "!alt", ts=T0 + 5)], "p3")
    await synced.sync_once()
    assert source.page_calls == [(ROOM, "p1"), (ROOM, "p2")]
    assert await queued_ids(logged_in) == ["$c1", "$c3", "$c4", "$c5"]
    assert await logged_in.rooms.cursor(ROOM) == RoomCursor(ROOM, "$c5", T0 + 50)


async def test_gap_filling_stops_at_the_bots_own_join(synced, source, logged_in):
    source.script.append(batch("s2", timeline(
        [message("$after2", "!ping", ts=T0 + 60, room_id=NEW_ROOM)], NEW_ROOM, limited=True,
        prev_batch="p1")))
    source.pages[(NEW_ROOM, "p1")] = ([
        message("$after1", "!hilfe", ts=T0 + 50, room_id=NEW_ROOM),
        member_event("$join", BOT, "join", ts=T0 + 40, room_id=NEW_ROOM, previous="invite"),
        message("$before", "!ping", ts=T0 + 30, room_id=NEW_ROOM),
    ], "p2")
    await synced.sync_once()
    assert source.page_calls == [(NEW_ROOM, "p1")]
    assert await queued_ids(logged_in) == ["$after1", "$after2"]


async def test_gap_filling_stops_at_events_older_than_the_first_sync(synced, source,
                                                                      logged_in):
    source.script.append(batch("s2", timeline(
        [message("$now", "!ping", ts=T0 + 60, room_id=NEW_ROOM)], NEW_ROOM, limited=True,
        prev_batch="p1")))
    source.pages[(NEW_ROOM, "p1")] = ([
        message("$new", "!ping", ts=T0 + 10, room_id=NEW_ROOM),
        message("$old", "!ping", ts=T0 - 10, room_id=NEW_ROOM),
        message("$older", "!ping", ts=T0 - 20, room_id=NEW_ROOM),
    ], "p2")
    await synced.sync_once()
    assert source.page_calls == [(NEW_ROOM, "p1")]
    assert await queued_ids(logged_in) == ["$new", "$now"]


async def test_gap_filling_stops_when_history_ends(synced, source, logged_in):
    source.script.append(batch("s2", timeline(
        [message("$now", "!ping", ts=T0 + 60, room_id=NEW_ROOM)], NEW_ROOM, limited=True,
        prev_batch="p1")))
    source.pages[(NEW_ROOM, "p1")] = ([message("$new", "!ping", ts=T0 + 10,
                                               room_id=NEW_ROOM)], None)
    await synced.sync_once()
    assert await queued_ids(logged_in) == ["$new", "$now"]


async def test_a_huge_gap_is_read_only_up_to_the_page_limit(synced, source, logged_in,
                                                            monkeypatch, caplog):
    monkeypatch.setattr(syncer_module, "MAX_GAP_PAGES", 3)
    source.script.append(batch("s2", timeline([message("$now", "!ping", ts=T0 + 100)],
                                              limited=True, prev_batch="p0")))
    for i in range(10):
        source.pages[(ROOM, f"p{i}")] = ([message(f"$g{i}", "!ping", ts=T0 + 90 - i)],
                                         f"p{i + 1}")
    with caplog.at_level(logging.WARNING, logger="bot.pipeline.syncer"):
        await synced.sync_once()
    assert len(source.page_calls) == 3
    assert await queued_ids(logged_in) == ["$g2", "$g1", "$g0", "$now"]
    assert "gap of more than 3 pages" in caplog.text


# -- joins --------------------------------------------------------------------------------------


async def test_commands_before_the_bots_own_join_are_dropped(synced, source, logged_in):
    source.script.append(batch("s2", timeline([
        message("$before", "!ping", ts=T0 + 1, room_id=NEW_ROOM),
        member_event("$join", BOT, "join", ts=T0 + 2, room_id=NEW_ROOM),
        member_event("$alice", ALICE, "join", ts=T0 + 3, room_id=NEW_ROOM),
        message("$after", "!ping", ts=T0 + 4, room_id=NEW_ROOM),
    ], NEW_ROOM)))
    await synced.sync_once()
    assert await queued_ids(logged_in) == ["$after"]


async def test_a_profile_change_of_the_bot_is_no_join(synced, source, logged_in):
    source.script.append(batch("s2", timeline([
        message("$before", "!ping", ts=T0 + 1),
        member_event("$rename", BOT, "join", ts=T0 + 2, previous="join"),
        member_event("$leave", BOT, "leave", ts=T0 + 3, previous="join"),
        message("$after", "!ping", ts=T0 + 4),
    ])))
    await synced.sync_once()
    assert await queued_ids(logged_in) == ["$before", "$after"]


async def test_an_old_own_join_in_the_state_block_does_not_drop_the_gap(synced, source,
                                                                         logged_in):
    old_join = member_event("$join", BOT, "join", ts=T0 - 100_000, previous="invite")
    source.script.append(batch("s2", timeline(
        [message("$c3", "!ping", ts=T0 + 30)], limited=True, prev_batch="p1", state=[old_join])))
    source.pages[(ROOM, "p1")] = ([message("$c2", "!hilfe", ts=T0 + 20),
                                   message("$c1", "!ping", ts=T0 + 10),
                                   message("$seen", "!ping", ts=T0 - 1000)], "p2")
    await synced.sync_once()
    assert await queued_ids(logged_in) == ["$c1", "$c2", "$c3"]


async def test_members_joins_are_recorded_once_for_their_welcome(synced, source, logged_in):
    woken = []
    synced._listener.joins_recorded = lambda: woken.append(True)
    joins = timeline([
        member_event("$bob", BOB, "join", ts=T0 + 1, previous="invite"),
        member_event("$rename", ALICE, "join", ts=T0 + 2, previous="join"),
        member_event("$bot", BOT, "join", ts=T0 + 3, room_id=ROOM, previous="join"),
        member_event("$left", ALICE, "leave", ts=T0 + 4, previous="join"),
        member_event("$carol", "@carol:example.org", "join", ts=T0 + 5),
    ])
    source.script += [batch("s2", joins), batch("s3", joins)]
    await synced.sync_once()
    waiting = await logged_in.joins.waiting()
    assert [(j.event_id, j.user_id, j.joined_at) for j in waiting] == [
        ("$bob", BOB, T0 + 1), ("$carol", "@carol:example.org", T0 + 5)]
    assert woken == [True]
    await synced.sync_once()  # the same events again: nothing new, nobody woken
    assert len(await logged_in.joins.waiting()) == 2
    assert woken == [True]


# -- redelivery, power levels, invites -----------------------------------------------------------


async def test_a_redelivered_batch_queues_nothing_new(synced, source, logged_in, recorder):
    again = batch("s2", timeline([message("$c1", "!ping", ts=T0 + 1),
                                  message("$c2", "!hilfe", ts=T0 + 2)]))
    source.script += [again, again]
    await synced.sync_once()
    assert await queued_ids(logged_in) == ["$c1", "$c2"]
    assert recorder.commands == 1
    first = await logged_in.inbox.next_for_room(ROOM)
    await logged_in.inbox.mark_handled(first, handled_at=T0 + 5)

    await synced.sync_once()
    assert await queued_ids(logged_in) == ["$c2"]
    assert recorder.commands == 1


async def test_a_power_levels_change_is_reported(synced, source, recorder):
    source.script.append(batch(
        "s2",
        timeline([message("$c", "hallo", ts=T0 + 1),
                  power_levels_event("$pl", ts=T0 + 2)]),
        timeline([member_event("$m", BOB, "join", ts=T0 + 1, room_id=OTHER_ROOM),
                  RoomEvent("$odd", OTHER_ROOM, BOB, "m.room.power_levels", T0 + 2, {},
                            state_key="x")], OTHER_ROOM),
        timeline([power_levels_event("$stale", ts=T0 - 5, room_id=NEW_ROOM)], NEW_ROOM),
    ))
    await synced.sync_once()
    assert recorder.power_levels == [ROOM]


async def test_invites_from_allowed_users_are_joined_others_rejected(logged_in, source,
                                                                     recorder):
    invites = [Invite("!in1:example.org", ALICE), Invite("!in2:evil.org", "@x:evil.org"),
               Invite("!in3:example.org", None)]
    source.script += [batch("s1", invites=invites),
                      batch("s2", invites=[Invite("!in4:example.org", BOB)])]
    syncer = make_syncer(logged_in, source, recorder)
    await syncer.sync_once()
    assert source.joined == ["!in1:example.org"]
    assert source.rejected == ["!in2:evil.org", "!in3:example.org"]
    await syncer.sync_once()
    assert source.joined == ["!in1:example.org", "!in4:example.org"]


# -- errors -------------------------------------------------------------------------------------


async def test_run_backs_off_on_transient_errors(synced, source, logged_in, recorder):
    sleeps = Sleeps()
    syncer = make_syncer(logged_in, source, recorder,
                         Backoff(base=0.5, cap=30.0, rng=lambda: 1.0, sleep=sleeps))
    source.script += [TransientError("HTTP 502"), TransientError("HTTP 502"),
                      batch("s2", timeline([message("$c", "!ping", ts=T0 + 1)])),
                      TransientError("timeout")]
    with pytest.raises(asyncio.CancelledError):  # the fake ends the loop when its script ends
        await syncer.run()
    assert sleeps.calls == [0.5, 1.0, 0.5]  # reset by the successful batch
    assert source.sync_calls[1:] == [("s1", None)] * 3 + [("s2", None)] * 2
    assert (await logged_in.session.get()).sync_token == "s2"


async def test_a_failed_sync_commits_nothing(synced, source, logged_in, recorder):
    sleeps = Sleeps()
    backoff = Backoff(base=0.5, cap=30.0, rng=lambda: 1.0, sleep=sleeps)
    syncer = make_syncer(logged_in, source, recorder, backoff=backoff)
    source.script += [TransientError("HTTP 502")] * 3
    with pytest.raises(asyncio.CancelledError):
        await syncer.run()
    assert sleeps.calls == [0.5, 1.0, 2.0]
    assert (await logged_in.session.get()).sync_token == "s1"
    assert await logged_in.inbox.count() == 0


async def test_a_batch_failing_half_way_commits_nothing(synced, source, logged_in, recorder,
                                                        caplog):
    broken = batch(
        "s2",
        timeline([message("$c", "!ping", ts=T0 + 1)]),
        timeline([message("$d", "!ping", ts=T0 + 2, room_id=OTHER_ROOM)], OTHER_ROOM,
                 limited=True, prev_batch="p1"),
        invites=[Invite("!in:example.org", ALICE)],
    )
    source.pages[(OTHER_ROOM, "p1")] = TransientError("HTTP 504")
    source.script.append(broken)
    with pytest.raises(TransientError):
        await synced.sync_once()
    assert await logged_in.inbox.count() == 0
    assert (await logged_in.session.get()).sync_token == "s1"
    assert await logged_in.rooms.cursor(ROOM) == RoomCursor(ROOM, "$seen", T0 - 1000)
    assert recorder.commands == 0

    # In the loop: logged, backed off, and the same batch is asked for again.
    sleeps = Sleeps()
    syncer = make_syncer(logged_in, source, recorder, Backoff(rng=lambda: 1.0, sleep=sleeps))
    source.pages[(OTHER_ROOM, "p1")] = ValueError("bad page")
    source.script.append(broken)
    with caplog.at_level(logging.ERROR, logger="bot.pipeline.syncer"), \
            pytest.raises(asyncio.CancelledError):
        await syncer.run()
    assert len(sleeps.calls) == 1
    assert "could not be processed" in caplog.text
    assert source.sync_calls[-2:] == [("s1", None), ("s1", None)]
    assert await logged_in.inbox.count() == 0


async def test_a_lost_login_ends_the_loop(synced, source, logged_in, recorder):
    sleeps = Sleeps()
    syncer = make_syncer(logged_in, source, recorder, Backoff(sleep=sleeps))
    source.script.append(LoginError("M_UNKNOWN_TOKEN"))
    with pytest.raises(LoginError):
        await syncer.run()
    assert sleeps.calls == []


async def test_a_very_long_outage_does_not_end_the_loop(synced, source, logged_in, recorder):
    sleeps = Sleeps()
    backoff = Backoff(rng=lambda: 1.0, sleep=sleeps)
    backoff.failures = 1100  # ~9 hours of failures at the 30 s cap
    syncer = make_syncer(logged_in, source, recorder, backoff)
    source.script.append(TransientError("HTTP 502"))
    with pytest.raises(asyncio.CancelledError):
        await syncer.run()
    assert sleeps.calls == [30.0]


# -- events that cannot be stored or read ---------------------------------------------------------

LONE = "\ud800"  # valid JSON (`"\ud800"`), but no UTF-8 holds it


def set_aside(metrics: Metrics, reason: str) -> float:
    return metrics.registry.get_sample_value("nextbot_events_set_aside_total",
                                             {"reason": reason}) or 0


async def test_one_unstorable_event_does_not_stop_the_loop(synced, source, logged_in,
                                                           recorder, caplog):
    """Through `run()`: before, the batch's commit failed and the loop asked for it forever."""
    sleeps, metrics = Sleeps(), Metrics()
    syncer = make_syncer(logged_in, source, recorder, Backoff(sleep=sleeps), metrics)
    source.script.append(batch("s2", timeline([
        message("$bad", "!ping", ts=T0 + 1, sender=f"@mallory{LONE}:example.org"),
        message("$ok", "!ping", ts=T0 + 2),
    ])))
    with caplog.at_level(logging.WARNING, logger="bot.pipeline.syncer"), \
            pytest.raises(asyncio.CancelledError):  # the script ran out after "s2"
        await syncer.run()
    assert sleeps.calls == []  # nothing failed, nothing was retried
    assert [since for since, _ in source.sync_calls][-2:] == ["s1", "s2"]
    assert (await logged_in.session.get()).sync_token == "s2"
    assert await queued_ids(logged_in) == ["$ok"]
    assert recorder.command_rooms == [ROOM]
    assert await logged_in.rooms.cursor(ROOM) == RoomCursor(ROOM, "$ok", T0 + 2)
    assert set_aside(metrics, "unstorable") == 1
    assert "'$bad'" in caplog.text and "set aside" in caplog.text


async def test_a_lone_surrogate_in_a_command_becomes_a_replacement_character(
        synced, source, logged_in, caplog):
    source.script.append(batch("s2", timeline([
        message("$cmd", f"!ping geheim{LONE}", ts=T0 + 1),
        message("$reply", f"> <@x:example.org> zitat{LONE}\n\n!hilfe{LONE}", ts=T0 + 2),
        message("$chat", f"hallo{LONE}", ts=T0 + 3),
        message("$pair", "!ping \U0001f600", ts=T0 + 4),  # a real pair is left alone
    ])))
    with caplog.at_level(logging.DEBUG, logger="bot.pipeline.syncer"):
        await synced.sync_once()
    assert await inbox(logged_in) == [("$cmd", ROOM, "!ping geheim\ufffd"),
                                      ("$reply", ROOM, "!hilfe\ufffd"),
                                      ("$pair", ROOM, "!ping \U0001f600")]
    assert (await logged_in.session.get()).sync_token == "s2"
    assert await logged_in.rooms.cursor(ROOM) == RoomCursor(ROOM, "$pair", T0 + 4)
    assert "geheim" not in caplog.text


async def test_events_that_cannot_be_stored_are_set_aside_the_rest_commits(
        logged_in, source, recorder, caplog):
    metrics = Metrics()
    syncer = make_syncer(logged_in, source, recorder, metrics=metrics)
    source.script.append(batch("s1"))
    await syncer.sync_once()
    woken = []
    syncer._listener.joins_recorded = lambda: woken.append(True)
    source.script.append(batch(
        "s2",
        timeline([
            message("$c1", "!ping", ts=T0 + 1),
            message(f"$id{LONE}", "!ping", ts=T0 + 2),
            message("$far", "!ping", ts=2**64),  # beyond SQLite's 64-bit integers
            member_event(f"$j{LONE}", BOB, "join", ts=T0 + 3),
            member_event("$mallory", f"@mallory{LONE}:example.org", "join", ts=T0 + 4),
            member_event("$carol", "@carol:example.org", "join", ts=T0 + 5),
            RoomEvent(f"$enc{LONE}", ROOM, ALICE, "m.room.encrypted", T0 + 6,
                      {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgA"}),
            RoomEvent("$enc", ROOM, ALICE, "m.room.encrypted", T0 + 7,
                      {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": f"Aw{LONE}"}),
            message("$c2", "!hilfe", ts=T0 + 8),
            message(f"$last{LONE}", "hallo", ts=T0 + 9),  # the cursor stays on "$c2"
        ]),
        timeline([message("$room", "!ping", ts=T0 + 1, room_id=f"!x{LONE}:example.org")],
                 f"!x{LONE}:example.org"),
        timeline([message("$o1", "!ping", ts=T0 + 1, room_id=OTHER_ROOM)], OTHER_ROOM),
    ))
    with caplog.at_level(logging.WARNING, logger="bot.pipeline.syncer"):
        await syncer.sync_once()
    assert (await logged_in.session.get()).sync_token == "s2"
    assert await queued_ids(logged_in) == ["$c1", "$c2", "$o1"]
    assert [j.event_id for j in await logged_in.joins.waiting()] == ["$carol"]
    assert woken == [True]
    # The ciphertext itself is stored as JSON, escaped: kept to be decrypted later.
    assert [u.event_id for u in await logged_in.undecrypted.all()] == ["$enc"]
    assert await logged_in.rooms.cursor(ROOM) == RoomCursor(ROOM, "$c2", T0 + 8)
    assert await logged_in.rooms.cursor(OTHER_ROOM) == RoomCursor(OTHER_ROOM, "$o1", T0 + 1)
    assert set_aside(metrics, "unstorable") == 7
    assert caplog.text.count("set aside") == 7
    assert "'$id\\ud800'" in caplog.text  # by its id, escaped for the log


async def test_an_event_that_cannot_be_read_is_set_aside(logged_in, source, recorder, caplog):
    metrics = Metrics()
    syncer = make_syncer(logged_in, source, recorder, metrics=metrics)
    source.script += [batch("s1"), batch("s2", timeline([
        RoomEvent("$odd-prev", ROOM, BOB, "m.room.member", T0 + 1, {"membership": "join"},
                  state_key=BOB, unsigned={"prev_content": "join"}),
        # No parser makes this shape; it stands for whatever reading an event could trip on.
        RoomEvent("$odd", ROOM, ALICE, "m.room.member", T0 + 2, {"membership": "join"},
                  state_key=ALICE, unsigned=["not", "an", "object"]),
        message("$ok", "!ping", ts=T0 + 3),
    ]))]
    await syncer.sync_once()
    with caplog.at_level(logging.WARNING, logger="bot.pipeline.syncer"):
        await syncer.sync_once()
    assert await queued_ids(logged_in) == ["$ok"]
    # A previous membership of no known shape: taken as a new join, like none at all.
    assert [j.event_id for j in await logged_in.joins.waiting()] == ["$odd-prev"]
    assert set_aside(metrics, "malformed") == 1
    assert "'$odd'" in caplog.text and "AttributeError" in caplog.text
    assert (await logged_in.session.get()).sync_token == "s2"


async def test_a_decrypted_command_with_a_lone_surrogate_is_answered(synced, source, logged_in):
    source.script.append(batch("s2", timeline([encrypted("$enc", ts=T0 + 10)])))
    await synced.sync_once()
    source.readable["$enc"] = message("$enc", f"!ping{LONE}", ts=T0 + 10)  # the key came
    source.script.append(batch("s3", timeline([message("$ok", "!hilfe", ts=T0 + 11)])))
    await synced.sync_once()
    assert await inbox(logged_in) == [("$enc", ROOM, "!ping\ufffd"), ("$ok", ROOM, "!hilfe")]
    assert await logged_in.undecrypted.all() == []
    assert (await logged_in.session.get()).sync_token == "s3"


async def test_the_first_sync_passes_history_that_cannot_be_stored(logged_in, source, recorder):
    source.script.append(batch(
        "s1",
        timeline([message("$a", "!ping", ts=T0 - 10), message(f"$b{LONE}", "x", ts=T0 - 5)]),
        timeline([message("$c", "!ping", ts=T0 - 1, room_id=f"!x{LONE}:example.org")],
                 f"!x{LONE}:example.org"),
        timeline([message("$d", "!ping", ts=T0 - 1, room_id=OTHER_ROOM)], OTHER_ROOM),
    ))
    await make_syncer(logged_in, source, recorder).sync_once()
    assert (await logged_in.session.get()).sync_token == "s1"
    assert await logged_in.rooms.cursor(ROOM) == RoomCursor(ROOM, "$a", T0 - 10)
    assert await logged_in.rooms.cursor(OTHER_ROOM) == RoomCursor(OTHER_ROOM, "$d", T0 - 1)


class UrlSyncSource(FakeSyncSource):
    """Joins like nio: the room id goes into a URL path, quoted as UTF-8."""

    async def join(self, room_id: str) -> bool:
        quote(room_id)
        return await super().join(room_id)


async def test_an_invite_to_a_room_id_that_cannot_be_stored_is_set_aside(logged_in, recorder):
    source = UrlSyncSource()
    metrics = Metrics()
    source.script.append(batch("s1", invites=[Invite(f"!x{LONE}:example.org", ALICE),
                                              Invite("!in:example.org", ALICE)]))
    await make_syncer(logged_in, source, recorder, metrics=metrics).sync_once()
    assert source.joined == ["!in:example.org"]
    assert (await logged_in.session.get()).sync_token == "s1"
    assert set_aside(metrics, "unstorable") == 1


# -- encrypted events that could not be read -------------------------------------------------------


def encrypted(event_id: str, *, ts: int, sender: str = ALICE) -> RoomEvent:
    content = {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgA…", "session_id": "s",
               "sender_key": "k", "device_id": "D"}
    return RoomEvent(event_id, ROOM, sender, "m.room.encrypted", ts, content)


async def test_an_unreadable_command_is_answered_once_its_key_arrives(synced, source, logged_in):
    source.script.append(batch("s2", timeline([encrypted("$enc", ts=T0 + 10)])))
    await synced.sync_once()
    assert await queued_ids(logged_in) == []
    assert [p.event_id for p in await logged_in.undecrypted.all()] == ["$enc"]

    source.readable["$enc"] = message("$enc", "!ping", ts=T0 + 10)  # the room key came
    source.script.append(batch("s3"))
    await synced.sync_once()
    assert await queued_ids(logged_in) == ["$enc"]
    assert await logged_in.undecrypted.all() == []


async def test_still_unreadable_after_the_grace_period_is_explained(logged_in, source, recorder):
    from bot.pipeline.syncer import UNDECRYPTABLE_GRACE_MS

    clock = {"now": T0}
    explained = recorder.unreadable
    syncer = make_syncer(logged_in, source, recorder, now_ms=lambda: clock["now"])
    source.script += [batch("s1"), batch("s2", timeline([encrypted("$enc", ts=T0 + 10)])),
                      batch("s3")]
    await syncer.sync_once()
    await syncer.sync_once()
    await syncer.sync_once()
    assert explained == []  # not yet: the key may still come
    clock["now"] = T0 + UNDECRYPTABLE_GRACE_MS + 1
    source.script.append(batch("s4"))
    await syncer.sync_once()
    assert explained == ["$enc"]


# -- replies before the next sync ----------------------------------------------------------------


async def test_the_next_sync_waits_until_the_batch_is_answered(logged_in, source, recorder):
    answered = asyncio.Event()
    asked: list[list[str]] = []

    async def until_answered(rooms: list[str]) -> None:
        asked.append(rooms)
        await answered.wait()

    recorder.until_answered = until_answered
    syncer = make_syncer(logged_in, source, recorder, answer_first_max_s=5)
    source.script += [
        batch("s1"),
        batch("s2", timeline([message("$p", "!ping", ts=T0 + 1)]),
              timeline([message("$q", "!ping", ts=T0 + 2, room_id=OTHER_ROOM)], OTHER_ROOM)),
        batch("s3"),
    ]
    await syncer.sync_once()
    running = asyncio.create_task(syncer.run())
    await until(lambda: asked == [[ROOM, OTHER_ROOM]])
    await asyncio.sleep(0.005)
    assert [since for since, _ in source.sync_calls] == [None, "s1"]  # not yet "s2"
    assert recorder.command_rooms == [ROOM, OTHER_ROOM]  # woken before the wait
    answered.set()
    await until(lambda: running.done())  # the script ran out after "s3"
    assert [since for since, _ in source.sync_calls] == [None, "s1", "s2", "s3"]


async def test_a_slow_answer_holds_the_next_sync_back_only_briefly(logged_in, source, recorder):
    async def never(rooms: list[str]) -> None:
        await asyncio.Event().wait()

    recorder.until_answered = never
    syncer = make_syncer(logged_in, source, recorder, answer_first_max_s=0.01)
    source.script += [batch("s1"), batch("s2", timeline([message("$p", "!ping", ts=T0 + 1)])),
                      batch("s3")]
    await syncer.sync_once()
    await asyncio.wait_for(syncer.sync_once(), 1)
    await syncer.sync_once()
    assert [since for since, _ in source.sync_calls] == [None, "s1", "s2"]
    assert await queued_ids(logged_in) == ["$p"]


async def test_after_the_replies_the_loop_leaves_the_server_a_moment_to_deliver_them(
        logged_in, source, recorder):
    async def at_once(rooms: list[str]) -> None:
        return None

    recorder.until_answered = at_once
    syncer = make_syncer(logged_in, source, recorder, delivery_pause_s=0.05)
    source.script += [batch("s1"), batch("s2", timeline([message("$p", "!ping", ts=T0 + 1)])),
                      batch("s3"), batch("s4")]
    loop = asyncio.get_running_loop()
    await syncer.sync_once()
    began = loop.time()
    await syncer.sync_once()  # a command: answered at once, then the pause
    assert loop.time() - began >= 0.05
    began = loop.time()
    await syncer.sync_once()  # nothing to answer: no pause
    assert loop.time() - began < 0.05
