"""After a member's data is deleted (`!profil löschen`, an admin's `!profil entfernen`): what
the features tell others about it.

`storage.member_data` deletes every row in one transaction and returns an `Erasure`. A feature
whose data changed someone else's situation (a waiting list that moved up) declares a follow-up
on its router (`@router.after_erasure`); the command that deleted runs `follow_ups` and so names
no feature.
"""

from __future__ import annotations

from commands.framework import Context, Reply
from storage.member_data import Erasure


async def follow_ups(ctx: Context, erasure: Erasure) -> list[Reply]:
    """The replies of every feature's follow-up, in the features' order."""
    replies: list[Reply] = []
    for follow_up in ctx.services.registry.erasure_follow_ups:
        replies += await follow_up(ctx, erasure)
    return replies
