import pytest

from bot.permissions import Permissions, level_of, power_level, room_creators
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
    return level_of(user_id, admins=admins, moderator_level=moderator_level,
                    power_levels=power_levels, create_event=create_event)


@pytest.mark.parametrize(("pl", "expected"), [
    (0, Level.MEMBER), (49, Level.MEMBER), (50, Level.MODERATOR), (100, Level.MODERATOR),
    ("50", Level.MODERATOR), ("viel", Level.MEMBER), (None, Level.MEMBER),
])
def test_power_level_thresholds(pl, expected):
    assert level(BOB, levels({BOB: pl}), create()) is expected


def test_custom_moderator_level():
    pls = levels({BOB: 30, CAROL: 20})
    assert level(BOB, pls, create(), moderator_level=30) is Level.MODERATOR
    assert level(CAROL, pls, create(), moderator_level=30) is Level.MEMBER
    assert level(CAROL, pls, create(), moderator_level=0) is Level.MODERATOR


def test_users_default_applies_to_unlisted_users():
    assert level(CAROL, levels({BOB: 0}, users_default=50), create()) is Level.MODERATOR
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
    assert level(ALICE, pls, create_event) is Level.MODERATOR
    assert level(BOB, pls, create_event) is Level.MODERATOR
    assert level(CAROL, pls, create_event) is Level.MEMBER
    assert level(ALICE, pls, create_event, moderator_level=100) is Level.MODERATOR


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
    assert level(ALICE, None, create("10", ALICE)) is Level.MODERATOR
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
    assert await permissions.level(ROOM, BOB) is Level.MODERATOR
    assert await permissions.level(ROOM, CAROL) is Level.MEMBER
    assert await permissions.level(OTHER_ROOM, BOB) is Level.MEMBER
    assert state.calls == [ROOM, OTHER_ROOM]

    state.state[ROOM] = (levels({BOB: 0}), create())
    assert await permissions.level(ROOM, BOB) is Level.MODERATOR  # still cached
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
    assert await permissions.level(ROOM, BOB) is Level.MODERATOR
