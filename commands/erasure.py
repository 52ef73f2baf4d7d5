"""After a member's data is deleted (`!profil löschen`, an admin's `!profil entfernen`): what
the features tell others about it.

`storage.member_data` deletes every row in one transaction and returns an `Erasure`. A feature
whose data changed someone else's situation (a waiting list that moved up) registers a
follow-up here with `@after_erasure`; the command that deleted runs `follow_ups` and so names
no feature. A follow-up is registered when its feature's module is imported, as its commands
are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from commands.framework import Context, Reply
from storage.member_data import Erasure

FollowUp = Callable[[Context, Erasure], Awaitable[list[Reply]]]

_FOLLOW_UPS: list[FollowUp] = []


def after_erasure(follow_up: FollowUp) -> FollowUp:
    """Decorator: `follow_up` runs after each deletion of a member's data."""
    if follow_up not in _FOLLOW_UPS:
        _FOLLOW_UPS.append(follow_up)
    return follow_up


async def follow_ups(ctx: Context, erasure: Erasure) -> list[Reply]:
    """The replies of every registered follow-up, in the order they were registered."""
    replies: list[Reply] = []
    for follow_up in _FOLLOW_UPS:
        replies += await follow_up(ctx, erasure)
    return replies
