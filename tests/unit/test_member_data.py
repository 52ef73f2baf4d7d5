"""Everything about one member, from one list: the list against the schema, deletion, export,
and the commands `!profil löschen`, `!profil export`, `!profil entfernen`."""

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from commands import core, experts, workshops
from commands.features import FEATURES
from commands.framework import Level, dispatch
from storage.communities import Community
from storage.core_schema import CORE
from storage.database import utc_ms
from storage.experts import Profile
from storage.inbox import InboxMessage
from storage.joins import Join
from storage.meet import Round, ScheduleOverride
from storage.member_data import PSEUDONYM_PREFIX, Action, user_id_columns
from storage.municipalities import Member
from storage.outbox import OutgoingMessage
from storage.undecrypted import Undecrypted
from storage.workshops import Workshop
from tests.unit.fakes import ALICE, BOB, BOSS, ROOM, make_services, request

CAROL = "@carol:example.org"
DAVE = "@dave:example.org"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)  # the fakes' FixedClock
MS = utc_ms(NOW)
BERLIN = ZoneInfo("Europe/Berlin")

# Every part's columns that can name a member, as the storage gathers them.
PARTS = [*(f.schema for f in FEATURES if f.schema is not None), CORE]
MEMBER_DATA = [entry for p in PARTS for entry in p.member_data]
NOT_MEMBER_DATA = {key: why for p in PARTS for key, why in p.not_member_data.items()}


# -- the list against the schema ----------------------------------------------------------------


async def schema(db) -> list[tuple[str, str]]:
    """(table, column) of every table a migration made; FTS5's own shadow tables left out."""
    tables = [r[1] for r in await db.fetchall("PRAGMA table_list")
              if r[0] == "main" and r[2] in ("table", "virtual")
              and not r[1].startswith("sqlite_")]
    return [(table, r[1]) for table in tables
            for r in await db.fetchall(f'PRAGMA table_xinfo("{table}")')]


def undecided(columns: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The columns named like a user id that neither MEMBER_DATA nor NOT_MEMBER_DATA decides."""
    covered = {(e.table, e.column) for e in MEMBER_DATA} | set(NOT_MEMBER_DATA)
    return [c for c in user_id_columns(columns) if c not in covered]


async def test_every_column_that_names_a_member_is_covered(storage):
    assert list(storage.member_data.columns) == MEMBER_DATA  # what export and deletion go by
    columns = await schema(storage.db)
    assert undecided(columns) == []
    # Nothing listed is stale: each entry names a column of the migrated schema.
    for table, column in [(e.table, e.column) for e in MEMBER_DATA] + list(NOT_MEMBER_DATA):
        assert (table, column) in columns, (table, column)
    # The convention finds the known ones, so it would find a new one.
    assert {("workshop_registrations", "user_id"), ("room_setting_changes", "changed_by"),
            ("undecrypted", "sender"), ("bot_session", "user_id")} <= set(
        user_id_columns(columns))


@pytest.mark.parametrize("column", ["user_id", "invited_by", "recipient", "sender", "member",
                                    "owner_mxid", "author"])
async def test_a_new_column_that_holds_a_user_id_fails_until_it_is_covered(storage, column):
    await storage.db.execute(f"CREATE TABLE later_feature (id INTEGER PRIMARY KEY, {column} TEXT)")
    assert undecided(await schema(storage.db)) == [("later_feature", column)]


def test_entries_are_unique_and_explain_themselves():
    keys = [e.key for e in MEMBER_DATA]
    assert len(keys) == len(set(keys))
    assert all(e.why for e in MEMBER_DATA) and all(NOT_MEMBER_DATA.values())


# -- a member who did everything, and another ---------------------------------------------------


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


async def workshop(storage, title: str, start: datetime, created_by: str = BOSS,
                   capacity: int | None = 1) -> int:
    added = await storage.workshops.add(
        Workshop(title=title, starts_at=start, ends_at=start + timedelta(hours=2),
                 created_by=created_by, capacity=capacity, room_id=ROOM), NOW)
    return added.number


async def everything_of(storage, user: str, n: int) -> None:
    """`user` leaves a trace in every table MEMBER_DATA lists (n tells the users' rows apart)."""
    await storage.experts.save(Profile(user, display_name=f"Name{n}", topics=["KI", f"T{n}"],
                                       consent_at=NOW, updated_at=NOW))
    await storage.experts.record_removal(user, BOSS, NOW)
    await storage.experts.record_removal(DAVE, user, NOW)  # as an admin, removed Dave
    added = await storage.workshops.add(
        Workshop(title=f"Von {n}", starts_at=berlin(2024, 7, 1, 10),
                 ends_at=berlin(2024, 7, 1, 12), created_by=user), NOW)
    await storage.workshops.add_reaction(f"$check{n}", added.number, user)  # a ✅ sign-up
    await storage.meet.join(user, MS)
    await storage.meet.set_exception(f"2024-06-0{n}", None, user, MS)
    for value in ("en", "de"):  # twice: the history must still show one person twice
        await storage.rooms.change_setting(f"!r{n}:example.org", "language", value,
                                           changed_by=user, changed_at=MS)
    await storage.communities.add(Community(f"c{n}", f"C{n}", "", "", f"!c{n}:example.org",
                                            user, MS))
    await storage.municipalities.add(Member(f"Stadt{n}", "Hessen", source="moderator",
                                            added_by=user, registered_at=MS))
    await storage.rooms.set_direct_room(user, f"!dm{n}:example.org")
    await storage.undecrypted.set_notified(ROOM, user, MS)
    await storage.undecrypted.add([Undecrypted(f"$enc{n}", ROOM, user, {"ciphertext": "x"},
                                               MS, MS)])
    await storage.joins.add([Join(f"$join{n}", ROOM, user, MS)])
    # a command waiting for its answer, and one answered (its body must not stay)
    await storage.inbox.add([InboxMessage(f"$wait{n}", ROOM, user, "!treffen", MS),
                             InboxMessage(f"$done{n}", ROOM, user, f"!profil setzen bio {n}",
                                          MS)], MS)
    await storage.db.execute("INSERT INTO handled_events (event_id, room_id, handled_at) "
                             "VALUES (?, ?, ?)", (f"$done{n}", ROOM, MS))
    # a direct message not sent yet; a reminder naming the member that the homeserver refused
    await storage.outbox.add([
        OutgoingMessage(f"dm{n}", user, {"body": "Du bist nachgerückt"}),
        OutgoingMessage(f"refused{n}", ROOM, {"body": f"Morgen: {user}"}),
        OutgoingMessage(f"pending{n}", ROOM, {"body": f"Gleich: {user}"}),
    ], MS)
    await storage.db.execute("UPDATE outbox SET failed_at = ? WHERE txn_id = ?",
                             (MS, f"refused{n}"))


@pytest.fixture
async def both(storage):
    """Alice and Bob each did everything; the waiting lists and pairs involve them together."""
    await everything_of(storage, ALICE, 1)
    await everything_of(storage, BOB, 2)
    # one row only, Alice's: the latest change of the rhythm
    await storage.meet.set_override(ScheduleOverride(rule="FREQ=WEEKLY"), ALICE, MS)
    soon = await workshop(storage, "Bald", berlin(2024, 6, 3, 10))
    await storage.workshops.register(soon, ALICE, NOW)
    await storage.workshops.register(soon, BOB, NOW)  # waits behind Alice
    over = await workshop(storage, "Vorbei", berlin(2024, 4, 3, 10))
    await storage.workshops.register(over, ALICE, NOW)
    await storage.workshops.register(over, CAROL, NOW)  # waited; it is over now
    # A round to come, its rooms not made yet; and an older one with its room.
    await storage.meet.add_round(Round("2024-04-11", MS - 10**9, MS - 10**9, 4),
                                 [(ALICE, DAVE), (BOB, CAROL)], keep_members_of=5)
    await storage.meet.set_room("2024-04-11:1", "!pair:example.org")
    await storage.meet.add_round(Round("2024-05-09", MS + 10**9, MS, 4),
                                 [(ALICE, CAROL), (BOB, DAVE)], keep_members_of=5)
    return storage


async def rows_naming(db, user: str) -> dict[tuple[str, str], int]:
    """Per (table, column), the rows whose value contains `user`: every table, FTS5's shadow
    tables included, blobs too."""
    found: dict[tuple[str, str], int] = {}
    tables = [r[0] for r in await db.fetchall("SELECT name FROM sqlite_master WHERE type = "
                                              "'table'")]
    for table in tables:
        for row in await db.fetchall(f'SELECT * FROM "{table}"'):
            for column in row.keys():
                cell = row[column]
                text = cell.decode("latin-1") if isinstance(cell, bytes) else str(cell)
                if user in text:
                    found[(table, column)] = found.get((table, column), 0) + 1
    return found


# What may name a member after the deletion: their command still waiting for its answer, and a
# message to a room that goes out in a moment (see storage/member_data.py).
STAYS = {("inbox", "sender"): 1, ("outbox", "content"): 1}


async def test_delete_leaves_nothing_that_names_the_member_and_nobody_else_is_touched(both):
    storage = both
    bob_before = await rows_naming(storage.db, BOB)
    assert len(bob_before) > 15

    erasure = await storage.member_data.delete(ALICE, NOW)

    # Every entry of the list had something of Alice's to delete or pseudonymise.
    assert [key for key, rows in erasure.rows.items() if not rows] == []
    assert set(erasure.rows) == {e.key for e in MEMBER_DATA}
    assert await rows_naming(storage.db, ALICE) == STAYS
    assert await rows_naming(storage.db, BOB) == bob_before  # Bob's rows all still there
    assert await storage.experts.get(ALICE) is None
    assert await storage.experts.get(BOB) is not None
    assert await storage.rooms.direct_room(ALICE) is None
    assert await storage.rooms.direct_room(BOB) == "!dm2:example.org"
    # The other member's answered command keeps nothing either: only the waiting one stays.
    assert [r[0] for r in await storage.db.fetchall(
        "SELECT event_id FROM inbox ORDER BY seq")] == ["$wait1", "$wait2", "$done2"]
    assert [m.txn_id for m in [await storage.outbox.next_for_room(ALICE)] if m] == []
    assert (await storage.outbox.next_for_room(BOB)).txn_id == "dm2"


async def test_records_that_stay_keep_one_pseudonym_per_member(both):
    storage = both
    await storage.member_data.delete(ALICE, NOW)
    history = await storage.rooms.setting_changes("!r1:example.org")
    [who] = {change.changed_by for change in history}
    assert len(history) == 2 and who.startswith(PSEUDONYM_PREFIX) and ALICE not in who
    assert who == await storage.member_data.pseudonym(ALICE)
    assert who != await storage.member_data.pseudonym(BOB)
    assert {c.changed_by for c in await storage.rooms.setting_changes("!r2:example.org")} == {
        BOB}
    for entry in (e for e in MEMBER_DATA if e.action is Action.PSEUDONYMISE):
        values = {r[0] for r in await storage.db.fetchall(
            f"SELECT {entry.column} FROM {entry.table}")}
        assert who in values, entry.key


async def test_delete_moves_the_waiting_list_up_and_ends_the_pairing(both):
    storage = both
    erasure = await storage.member_data.delete(ALICE, NOW)
    # Bob moves up into Alice's place; nobody moves up into a workshop that is over.
    soon, over = 3, 4
    moved_up = erasure.follow_up["workshop_registrations.user_id"]
    assert [(r.workshop, r.user_id) for r in moved_up] == [(soon, BOB)]
    assert [(r.user_id, r.status) for r in await storage.workshops.registrations(soon)] == [
        (BOB, "registered")]
    assert [(r.user_id, r.status) for r in await storage.workshops.registrations(over)] == [
        (CAROL, "waiting")]
    assert ALICE not in await storage.meet.active(MS)
    groups = {g.key: g.members for g in await storage.meet.groups()}
    # Carol would be left alone in a pair whose room is not made yet: no room of her own.
    assert groups == {"2024-04-11:1": (DAVE,), "2024-04-11:2": (BOB, CAROL),
                      "2024-05-09:1": (), "2024-05-09:2": (BOB, DAVE)}


async def test_delete_is_one_transaction(both, monkeypatch):
    storage = both
    before = await rows_naming(storage.db, ALICE)

    async def broken(condition: str, user_id: str) -> int:
        raise RuntimeError("disk full")

    # The outbox's rows come last: every other part's are deleted by then.
    monkeypatch.setattr(storage.outbox, "_drop", broken)
    with pytest.raises(RuntimeError):
        await storage.member_data.delete(ALICE, NOW)
    assert await rows_naming(storage.db, ALICE) == before


async def test_export_holds_every_listed_row_about_the_member_and_no_one_else(both):
    storage = both
    found = await storage.member_data.export(ALICE)
    assert set(found) == {e.key for e in MEMBER_DATA}
    text = json.dumps(found, ensure_ascii=False)
    for other in (BOB, CAROL, DAVE):
        assert other not in text
    assert found["profiles.user_id"][0]["topics"] == ["KI", "T1"]
    assert found["workshop_registrations.user_id"][0]["registered_at"] == NOW.isoformat()
    # the answered command; the one waiting for its answer (as the running one) is no record
    assert [r["body"] for r in found["inbox.sender"]] == ["!profil setzen bio 1"]
    [direct] = found["outbox.room_id"]
    assert (direct["txn_id"], direct["content"], direct["created_at"]) == (
        "dm1", '{"body": "Du bist nachgerückt"}', NOW.isoformat())
    assert "file_data" not in direct
    [refused] = found["outbox.content"]  # whose other names it may hold: not its text
    assert refused["txn_id"] == "refused1" and "content" not in refused
    assert await storage.member_data.export(CAROL) != {}
    assert await storage.member_data.export("@nobody:example.org") == {}


# -- the commands -------------------------------------------------------------------------------


@pytest.fixture
def services(storage):
    return make_services(storage, [core.router, experts.router, workshops.router])


async def ask(services, body, sender=ALICE, level=Level.MEMBER):
    return await dispatch(request(body, level=level, sender=sender), services)


async def test_a_member_without_a_profile_deletes_their_registrations(services, storage):
    number = await workshop(storage, "KI", berlin(2024, 6, 3, 10))
    await storage.workshops.register(number, ALICE, NOW)
    await storage.workshops.register(number, BOB, NOW)
    await storage.meet.join(ALICE, MS)

    answer, told = await ask(services, "!profil löschen")
    assert "ist gelöscht" in answer.text.plain and "Werkstätten" in answer.text.plain
    assert (told.direct, told.recipient) == (True, BOB)
    assert "Platz frei geworden" in told.text.plain and "!abmelden 1" in told.text.plain
    assert await storage.workshops.registration(number, ALICE) is None
    assert await storage.meet.active(MS) == []
    [answer] = await ask(services, "!profil löschen")
    assert "nichts gespeichert" in answer.text.plain


async def test_export_without_a_profile_holds_the_rest(services, storage):
    number = await workshop(storage, "KI", berlin(2024, 6, 3, 10))
    await storage.workshops.register(number, ALICE, NOW)
    direct, _ = await ask(services, "!profil export")
    data = json.loads(direct.attachment.data)
    assert data["profile"] is None and data["removals_by_admins"] == []
    assert [(r["workshop"], r["status"]) for r in
            data["records"]["workshop_registrations.user_id"]] == [(number, "registered")]


async def test_export_of_everything(services, both):
    direct, _ = await ask(services, "!profil export")
    data = json.loads(direct.attachment.data)
    assert data["profile"]["display_name"] == "Name1"
    assert data["removals_by_admins"] == [{"removed_at": NOW.isoformat()}]
    assert set(data["records"]) == {e.key for e in MEMBER_DATA} - {
        "profiles.user_id", "profile_removals.user_id"}


async def test_an_admins_removal_removes_the_same_and_is_logged(services, both):
    storage = both
    [refused] = await ask(services, f"!profil entfernen {ALICE}", sender=BOB)
    assert "Bot-Administration" in refused.text.plain

    answer, told = await ask(services, f"!profil entfernen {ALICE}", sender=BOSS,
                             level=Level.ADMIN)
    assert "ist entfernt" in answer.text.plain
    assert (told.direct, told.recipient) == (True, BOB)
    # The log of removals keeps whose data was removed, by whom; nothing else names Alice.
    assert await rows_naming(storage.db, ALICE) == {**STAYS, ("profile_removals", "user_id"): 2}
    assert [(r.user_id, r.removed_by) for r in await storage.experts.removals(ALICE)] == [
        (ALICE, BOSS), (ALICE, BOSS)]
    [again] = await ask(services, f"!profil entfernen {ALICE}", sender=BOSS, level=Level.ADMIN)
    assert "nichts gespeichert" in again.text.plain
    assert len(await storage.experts.removals(ALICE)) == 2
