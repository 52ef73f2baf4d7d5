import asyncio

import pytest

from bot.matrix.connection import RefusedError
from bot.matrix.permissions import (
    NetworkRooms,
    NotCached,
    Permissions,
    power_level,
    room_creators,
)
from commands.framework import Level
from tests.unit.fakes import ALICE, BOB, BOSS, OTHER_ROOM, ROOM

CAROL = "@carol:example.org"


def create(version: str | None = "10", sender: str = ALICE, **content) -> dict:
    if version is not None:
        content["room_version"] = version
    return {"type": "m.room.create", "state_key": "", "sender": sender, "content": content}


def levels(users: dict | None = None, **rest) -> dict:
    return {"users": users or {}, **rest}


def level(user_id: str, power_levels: dict | None, create_event: dict | None = None,
          moderator_level: int = 50, admins=()) -> Level:
    """The level in a room with this state, as the bot reads it."""
    async def state(room_id):
        return power_levels, create_event

    return asyncio.run(Permissions(state, admins, moderator_level).level(ROOM, user_id))


@pytest.mark.parametrize(("pl", "expected"), [
    (0, Level.MEMBER), (49, Level.MEMBER), (50, Level.ROOM_MODERATOR), (100, Level.ROOM_MODERATOR),
    ("50", Level.ROOM_MODERATOR), ("viel", Level.MEMBER), (None, Level.MEMBER),
])
def test_power_level_thresholds(pl, expected):
    assert level(BOB, levels({BOB: pl}), create()) is expected


def test_custom_moderator_level():
    pls = levels({BOB: 30, CAROL: 20})
    assert level(BOB, pls, create(), moderator_level=30) is Level.ROOM_MODERATOR
    assert level(CAROL, pls, create(), moderator_level=30) is Level.MEMBER
    assert level(CAROL, pls, create(), moderator_level=0) is Level.ROOM_MODERATOR


def test_users_default_applies_to_unlisted_users():
    assert level(CAROL, levels({BOB: 0}, users_default=50), create()) is Level.ROOM_MODERATOR
    assert level(BOB, levels({BOB: 0}, users_default=50), create()) is Level.MEMBER
    assert level(CAROL, levels({BOB: 100}), create()) is Level.MEMBER


def test_admins_are_admins_everywhere():
    assert level(BOSS, levels({BOSS: 0}), create(), admins=[BOSS]) is Level.ADMIN
    assert level(BOSS, None, None, admins=[BOSS]) is Level.ADMIN


@pytest.mark.parametrize("version", ["12", "org.matrix.hydra.11"])
def test_v12_creators_are_moderators_even_with_power_level_zero(version):
    create_event = create(version, ALICE, additional_creators=[BOB, 7])
    pls = levels({ALICE: 0, BOB: 0, CAROL: 0}, users_default=0)
    assert room_creators(create_event) == {ALICE, BOB}
    assert power_level(ALICE, pls, create_event) is None  # unlimited
    assert level(ALICE, pls, create_event) is Level.ROOM_MODERATOR
    assert level(BOB, pls, create_event) is Level.ROOM_MODERATOR
    assert level(CAROL, pls, create_event) is Level.MEMBER
    assert level(ALICE, pls, create_event, moderator_level=100) is Level.ROOM_MODERATOR


@pytest.mark.parametrize("version", ["1", "10", "11", None])
def test_creators_of_older_rooms_have_no_special_power(version):
    create_event = create(version, ALICE, additional_creators=[BOB])
    pls = levels({ALICE: 0, BOB: 0})
    assert room_creators(create_event) == set()
    assert level(ALICE, pls, create_event) is Level.MEMBER
    assert level(BOB, pls, create_event) is Level.MEMBER


def test_without_power_levels_the_creator_has_100():
    assert power_level(ALICE, None, create("10", ALICE)) == 100
    assert power_level(BOB, None, create("10", ALICE)) == 0
    assert level(ALICE, None, create("10", ALICE)) is Level.ROOM_MODERATOR
    assert level(BOB, None, create("10", ALICE)) is Level.MEMBER
    assert level(BOB, None, None) is Level.MEMBER


class FakeState:
    def __init__(self) -> None:
        self.state = {ROOM: (levels({BOB: 50}), create()), OTHER_ROOM: (levels(), create())}
        self.calls: list[str] = []

    async def __call__(self, room_id: str):
        self.calls.append(room_id)
        return self.state[room_id]


async def test_permissions_cache_per_room_and_forget_refetches():
    state = FakeState()
    permissions = Permissions(state, admins=[BOSS], moderator_level=50)
    assert await permissions.level(ROOM, BOB) is Level.ROOM_MODERATOR
    assert await permissions.level(ROOM, CAROL) is Level.MEMBER
    assert await permissions.level(OTHER_ROOM, BOB) is Level.MEMBER
    assert state.calls == [ROOM, OTHER_ROOM]

    state.state[ROOM] = (levels({BOB: 0}), create())
    assert await permissions.level(ROOM, BOB) is Level.ROOM_MODERATOR  # still cached
    permissions.forget(ROOM)
    permissions.forget("!unknown:example.org")  # harmless
    assert await permissions.level(ROOM, BOB) is Level.MEMBER
    assert state.calls == [ROOM, OTHER_ROOM, ROOM]


async def test_admins_need_no_room_state():
    state = FakeState()
    permissions = Permissions(state, admins=[BOSS], moderator_level=50)
    assert await permissions.level(ROOM, BOSS) is Level.ADMIN
    assert state.calls == []


async def test_a_failed_fetch_is_not_cached():
    calls = []

    async def flaky(room_id):
        calls.append(room_id)
        if len(calls) == 1:
            raise ConnectionError("down")
        return levels({BOB: 100}), create()

    permissions = Permissions(flaky, admins=[], moderator_level=50)
    with pytest.raises(ConnectionError):
        await permissions.level(ROOM, BOB)
    assert await permissions.level(ROOM, BOB) is Level.ROOM_MODERATOR


# -- the three scopes: room, network, direct chats -------------------------------------------

SPACE = "!space:example.org"
NETWORK_ROOM = "!team:example.org"
DIRECT = "!dm-carol:example.org"


def network_permissions(state: FakeState, moderators=(), rooms=(SPACE, NETWORK_ROOM),
                        direct=(DIRECT,)) -> Permissions:
    async def network_rooms(cached_only=False):
        return list(rooms)

    async def is_direct_room(room_id):
        return room_id in direct

    return Permissions(state, admins=[BOSS], moderator_level=50, network_moderators=moderators,
                       network_rooms=network_rooms, is_direct_room=is_direct_room)


async def test_power_in_a_room_of_ones_own_is_no_network_role():
    state = FakeState()
    state.state["!mine:example.org"] = (levels({CAROL: 100}), create("12", CAROL))
    state.state[SPACE] = (levels({BOB: 50}), create())
    state.state[NETWORK_ROOM] = (levels(), create())
    permissions = network_permissions(state)
    assert await permissions.level("!mine:example.org", CAROL) is Level.ROOM_MODERATOR
    assert await permissions.level(ROOM, CAROL) is Level.MEMBER
    # Power in the network's space (or a configured network room) moderates the network.
    assert await permissions.level(OTHER_ROOM, BOB) is Level.NETWORK_MODERATOR
    state.state[NETWORK_ROOM] = (levels({CAROL: 50}), create())
    permissions.forget(NETWORK_ROOM)
    assert await permissions.level(OTHER_ROOM, CAROL) is Level.NETWORK_MODERATOR


async def test_configured_network_moderators_and_admins():
    state = FakeState()
    permissions = network_permissions(state, moderators=[CAROL], rooms=())
    assert await permissions.level(OTHER_ROOM, CAROL) is Level.NETWORK_MODERATOR
    assert await permissions.level(OTHER_ROOM, BOSS) is Level.ADMIN
    assert state.calls == []  # neither needs any room's state


async def test_the_bots_direct_chat_gives_the_member_no_power():
    state = FakeState()
    # The invitee of a `trusted_private_chat` holds power 100 in it.
    state.state[DIRECT] = (levels({CAROL: 100}), create("10", "@nextbot:example.org"))
    permissions = network_permissions(state, rooms=())
    assert await permissions.level(DIRECT, CAROL) is Level.MEMBER
    assert await permissions.level(DIRECT, BOSS) is Level.ADMIN


async def test_a_network_room_the_bot_cannot_read_grants_nothing():
    state = FakeState()

    async def fetch(room_id):
        if room_id == SPACE:
            raise RefusedError("room state: M_FORBIDDEN")
        return await state(room_id)

    state.state[NETWORK_ROOM] = (levels(), create())
    permissions = network_permissions(fetch)
    assert await permissions.level(ROOM, BOB) is Level.ROOM_MODERATOR
    assert await permissions.level(ROOM, CAROL) is Level.MEMBER


async def test_network_rooms_resolve_aliases_once_and_include_the_remembered_space():
    resolved: list[str] = []
    space: list[str | None] = [None]

    async def resolve(alias):
        resolved.append(alias)
        return {"#team:example.org": NETWORK_ROOM}.get(alias)

    async def remembered():
        return space[0]

    rooms = NetworkRooms(["#team:example.org", "", "!x:example.org", "#gone:example.org"],
                         resolve, [remembered])
    assert await rooms.ids() == [NETWORK_ROOM, "!x:example.org"]
    space[0] = SPACE
    assert await rooms.ids() == [NETWORK_ROOM, "!x:example.org", SPACE]
    assert resolved == ["#team:example.org", "#gone:example.org", "#gone:example.org"]


async def test_a_level_from_cached_state_only_or_not_cached():
    state = FakeState()
    state.state[SPACE] = (levels({CAROL: 50}), create())
    state.state[NETWORK_ROOM] = (levels(), create())
    permissions = network_permissions(state)
    with pytest.raises(NotCached):
        await permissions.level(ROOM, BOB, cached_only=True)
    assert state.calls == []
    assert await permissions.level(ROOM, BOB) is Level.ROOM_MODERATOR
    calls = list(state.calls)
    assert await permissions.level(ROOM, BOB, cached_only=True) is Level.ROOM_MODERATOR
    assert await permissions.level(OTHER_ROOM, CAROL, cached_only=True) is (
        Level.NETWORK_MODERATOR)  # the network rooms' state is cached already
    assert state.calls == calls
    rooms = NetworkRooms(["#team:example.org"], resolve_alias=None)
    with pytest.raises(NotCached):
        await rooms.ids(cached_only=True)
