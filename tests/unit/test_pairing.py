"""The pairing algorithm: properties over many random inputs (Hypothesis), determinism, speed;
and the pair rooms: the bot writes only into rooms it made itself."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.matrix.connection import TransientError
from bot.matrix.own_rooms import keyed_alias
from bot.matrix.pairing_rooms import PairingRooms
from commands import core, meet
from commands.features import open_storage
from commands.framework import Services
from commands.pairing import PERFECT, Group, Participant, pair, score
from storage.meet import GroupRow
from tests.unit.fakes import BOT, FakeHomeserver, make_services

ORGS = ["Stadt Ulm", "Stadt Wiesbaden", "Land Hessen", "BMI", "Kreis Kassel", None]
LEVELS = ["kommune", "land", "bund", None]
STATES = ["Hessen", "Bayern", "Berlin", None]
TOPICS = ["ki", "ozg", "smart city", "open data", "chatbots", "cloud"]


@st.composite
def people(draw, min_size: int = 0, max_size: int = 40) -> list[Participant]:
    count = draw(st.integers(min_size, max_size))
    return [Participant(f"@p{i}:example.org", draw(st.sampled_from(ORGS)),
                        draw(st.sampled_from(LEVELS)), draw(st.sampled_from(STATES)),
                        frozenset(draw(st.lists(st.sampled_from(TOPICS), max_size=3))))
            for i in range(count)]


def partners_of(groups: list[Group]) -> dict[str, set[str]]:
    partners: dict[str, set[str]] = {}
    for group in groups:
        for member in group.members:
            partners.setdefault(member, set()).update(m for m in group.members if m != member)
    return partners


def history(participants: list[Participant], rounds: int) -> dict[str, set[str]]:
    """Who met whom in `rounds` earlier rounds, each paired by the algorithm itself."""
    recent: dict[str, set[str]] = {}
    for number in range(rounds):
        groups = pair(participants, recent, f"earlier-{number}")
        for member, partners in partners_of(groups).items():
            recent.setdefault(member, set()).update(partners)
    return recent


@settings(max_examples=100, deadline=None, database=None)
@given(people(), st.text(max_size=8))
def test_everyone_is_in_exactly_one_group_and_at_most_one_trio(participants, seed):
    groups = pair(participants, {}, seed)
    members = [m for g in groups for m in g.members]
    if len(participants) < 2:
        assert groups == []
        return
    assert Counter(members) == Counter(p.user_id for p in participants)
    sizes = Counter(len(g.members) for g in groups)
    assert set(sizes) <= {2, 3}
    assert sizes[3] == len(participants) % 2  # a trio exactly when the count is odd


@settings(max_examples=50, deadline=None, database=None)
@given(people(min_size=2), st.text(max_size=8), st.randoms(use_true_random=False))
def test_the_same_input_and_seed_give_the_same_groups_in_any_input_order(participants, seed,
                                                                         rng):
    recent = history(participants, 1)
    shuffled = list(participants)
    rng.shuffle(shuffled)
    assert pair(shuffled, recent, seed) == pair(participants, recent, seed)


@settings(max_examples=60, deadline=None, database=None)
@given(st.data(), st.integers(1, 3))
def test_nobody_meets_a_recent_partner_again_when_that_is_avoidable(data, rounds):
    # With at most 2 recent partners per round each, 8·rounds+4 people always leave enough
    # others for a pairing without any repeat.
    participants = data.draw(people(min_size=8 * rounds + 4, max_size=60))
    recent = history(participants, rounds)
    for group in pair(participants, recent, data.draw(st.text(max_size=8))):
        for member in group.members:
            assert not recent.get(member, set()) & set(group.members), group


@settings(max_examples=80, deadline=None, database=None)
@given(people(min_size=2, max_size=50), st.text(max_size=8))
def test_partners_come_from_different_organisations_whenever_possible(participants, seed):
    organisations = Counter(p.organisation for p in participants if p.organisation)
    if organisations and max(organisations.values()) > len(participants) // 2:
        return  # one organisation is more than half: some of its people must meet each other
    by_id = {p.user_id: p for p in participants}
    for group in pair(participants, {}, seed):
        if len(group.members) == 2:
            a, b = (by_id[m] for m in group.members)
            assert a.organisation is None or a.organisation != b.organisation, group


def test_a_different_organisation_outweighs_level_and_state_and_a_repeat_outweighs_all():
    me = Participant("@me:x", "Stadt Ulm", "kommune", "Bayern")
    same_org_elsewhere = Participant("@a:x", "Stadt Ulm", "bund", "Berlin")
    other_org_same_rest = Participant("@b:x", "Stadt Neu-Ulm", "kommune", "Bayern")
    assert score(me, other_org_same_rest, {}) > score(me, same_org_elsewhere, {})
    recent = {"@me:x": {"@b:x"}}
    assert score(me, other_org_same_rest, recent) < score(me, same_org_elsewhere, {})
    assert score(me, Participant("@c:x"), {}) == PERFECT  # unknown counts as different


def test_shared_topics_are_reported_and_make_pairs_more_likely():
    rng = random.Random(3)
    participants = [Participant(f"@p{i}:x", f"org{i}", None, None,
                                frozenset(f"t{rng.randrange(30)}" for _ in range(2)))
                    for i in range(400)]
    groups = pair(participants, {}, "topics")
    by_id = {p.user_id: p for p in participants}
    for group in groups:
        common = set.intersection(*(set(by_id[m].topics) for m in group.members))
        if len(group.members) == 2:
            assert set(group.shared_topics) == common
    sharing = sum(bool(g.shared_topics) for g in groups)
    shuffled = list(participants)
    rng.shuffle(shuffled)
    by_chance = sum(bool(a.topics & b.topics) for a, b in zip(shuffled[::2], shuffled[1::2],
                                                                strict=True))
    assert sharing > 2 * by_chance, (sharing, by_chance)


def test_different_seeds_give_different_pairings():
    participants = [Participant(f"@p{i}:x") for i in range(40)]
    results = {tuple(g.members for g in pair(participants, {}, f"seed-{n}")) for n in range(5)}
    assert len(results) > 1


def test_two_thousand_participants_are_all_paired_without_repeats():
    # The time it takes is measured in bench/pairing.py, not asserted here.
    rng = random.Random(7)
    participants = [
        Participant(f"@p{i}:example.org", f"org{rng.randrange(400)}",
                    rng.choice(["kommune", "land", "bund"]), f"state{rng.randrange(16)}",
                    frozenset(f"t{rng.randrange(80)}" for _ in range(3)))
        for i in range(2000)]
    recent = history(participants, 3)
    groups = pair(participants, recent, "bench")
    assert sorted(m for g in groups for m in g.members) == sorted(p.user_id for p in participants)
    assert all(len(g.members) == 2 for g in groups)
    assert not any(b in recent.get(a, ()) for g in groups for a in g.members for b in g.members)


# -- a pair's room is the bot's own (bot/matrix/pairing_rooms.py, bot/matrix/own_rooms.py) --

SQUATTER = "@mallory:example.org"
PAIR = ("@alice:example.org", "@bob:example.org")


class MeetClock:
    def now(self) -> datetime:
        return datetime(2026, 3, 9, 12, 0, tzinfo=ZoneInfo("Europe/Berlin"))


async def paired(storage) -> tuple[Services, GroupRow]:
    """A round of one pair, stored (3 days before the meeting of 12 March 2026)."""
    services = make_services(storage, [core.router, meet.router])
    services.clock = MeetClock()
    services.configs["meet"] = meet.MeetConfig.create(link="https://meet.example.org/next")
    for person in PAIR:
        await storage.meet.join(person, 0)
    assert await meet.pair_due_round(services) is not None
    [group] = await storage.meet.groups(without_room=True)
    return services, group


async def alias_of(storage, group: GroupRow) -> str:
    """The local part of the group room's alias, as if a member had found it out."""
    return keyed_alias(await storage.rooms.alias_key(), "meet", group.key)


def pairing(services, homeserver) -> PairingRooms:
    return PairingRooms(services, homeserver, BOT, "de", on_queued=lambda room: None)


async def introductions(storage) -> list[str]:
    rows = await storage.db.fetchall("SELECT room_id FROM outbox")
    return [row[0] for row in rows]


async def test_a_pair_room_alias_cannot_be_worked_out_from_the_pair(storage):
    _, group = await paired(storage)
    alias = await alias_of(storage, group)
    assert alias.startswith("next-meet-")
    old_alias = "next-meet-" + hashlib.sha256(f"{BOT}|{group.key}".encode()).hexdigest()[:20]
    assert alias != old_alias  # the old one: bot id and group key alone
    other_bot = await open_storage(":memory:")
    try:
        assert keyed_alias(await other_bot.rooms.alias_key(), "meet", group.key) != alias
    finally:
        await other_bot.close()


class Squatted(FakeHomeserver):
    """Every alias the bot uses is already held by `squat` (its maker found the alias out)."""

    squat = ""

    def _claim(self, alias: str) -> None:
        self.aliases.setdefault(alias, self.squat)

    async def create_room(self, *, alias=None, **kwargs) -> str:
        if alias is not None:
            self._claim(f"#{alias}:example.org")
        return await super().create_room(alias=alias, **kwargs)

    async def resolve_alias(self, alias: str) -> str | None:
        self._claim(alias)
        return await super().resolve_alias(alias)


def marker(group: GroupRow) -> dict:
    return {"type": meet.STATE_EVENT, "state_key": "", "content": {"group": group.key}}


async def test_a_room_squatting_the_alias_gets_nothing_and_the_pair_gets_its_own(storage):
    services, group = await paired(storage)
    homeserver = Squatted()
    # A member made a room under the alias, marked it as the pair's and let the bot in.
    homeserver.squat = squat = homeserver.make_room(SQUATTER, state=[marker(group)])
    homeserver.rooms[squat]["joined"].add(BOT)
    assert await pairing(services, homeserver).tick() == 1
    [own] = homeserver.made_by_bot()
    [group] = await storage.meet.groups()
    assert group.room_id == own != squat
    assert sorted(homeserver.rooms[own]["invited"]) == sorted(PAIR)
    assert await introductions(storage) == [own]  # nothing queued for the squatter's room


async def test_after_a_crash_an_alias_leading_elsewhere_is_not_taken_for_the_pair_room(storage):
    services, group = await paired(storage)
    await storage.meet.mark_room_requested(group.key, 1)  # an attempt before died
    [group] = await storage.meet.groups(without_room=True)
    homeserver = Squatted()
    # Each is refused: a member's room; a room the bot made for another group; a room the bot
    # made for this group but whose mark a member (with power there) has overwritten.
    rooms = [homeserver.make_room(SQUATTER, state=[marker(group)]),
             homeserver.make_room(BOT, state=[{**marker(group), "content": {"group": "other"}}]),
             homeserver.make_room(BOT, state=[marker(group)])]
    homeserver.put_state(rooms[2], SQUATTER, meet.STATE_EVENT, {"group": group.key})
    for room_id in rooms:
        homeserver.rooms[room_id]["joined"].add(BOT)
        homeserver.aliases.clear()
        homeserver.squat = room_id
        assert await pairing(services, homeserver).room_for(group) not in rooms
    assert len(homeserver.made_by_bot()) == 2 + 3


async def test_a_pair_room_whose_answer_was_lost_is_found_again_by_its_alias(storage):
    services, group = await paired(storage)
    homeserver = FakeHomeserver()
    homeserver.lose_creations = 1
    with pytest.raises(TransientError):
        await pairing(services, homeserver).tick()
    assert await pairing(services, homeserver).tick() == 1  # as after a restart
    [own] = homeserver.made_by_bot()
    [group] = await storage.meet.groups()
    assert group.room_id == own
    assert await introductions(storage) == [own]
