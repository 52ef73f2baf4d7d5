"""A member's reaction (an emoji on a message) and its redaction, answered like a command.

A feature declares the reaction keys it answers on its router (`router.reaction("✅")`) and
what looks at redactions (`router.redaction`). The sync loop puts a member's reaction with one
of those keys (in the clear or decrypted), and every member's redaction, into the inbox under
a body no typed command can have (`reaction_body`); the command lanes answer it, exactly once,
through `answer_reaction`. The handler looks whether the reacted-to event is one of its own
(the bot's post of a workshop …) and passes over anything else.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from commands.framework import Registry, Reply, Request, Services

# A command begins with the prefix; these bodies begin with a control character no command has.
_MARK = "\x1e"
_REACTION = "reaction"
_REDACTION = "redaction"
# How a client may dress a key: the emoji presentation selector, the skin tones.
_DRESSING = dict.fromkeys([0xFE0F, *range(0x1F3FB, 0x1F400)])


def reaction_body(event_type: str, content: dict[str, Any], keys: Collection[str]) -> str | None:
    """The inbox body of a reaction (`m.reaction`) with one of `keys`, or of a redaction; None
    for any other event."""
    if event_type == "m.reaction":
        relates = content.get("m.relates_to")
        if not isinstance(relates, dict) or relates.get("rel_type") != "m.annotation":
            return None
        target, key = relates.get("event_id"), relates.get("key")
        if not isinstance(target, str) or not isinstance(key, str):
            return None
        key = key.translate(_DRESSING)
        if not key or key not in keys:  # a key no feature answers: nothing to answer
            return None
        return f"{_MARK}{_REACTION} {target} {key}"
    if event_type == "m.room.redaction":
        redacts = content.get("redacts")
        return f"{_MARK}{_REDACTION} {redacts}" if isinstance(redacts, str) else None
    return None


def is_reaction_body(body: str) -> bool:
    return body.startswith(_MARK)


def _parts(body: str) -> tuple[str, str, str]:
    """An inbox body of `reaction_body` as (kind, event id, key; "" for a redaction)."""
    kind, _, rest = body[len(_MARK):].partition(" ")
    target, _, key = rest.partition(" ")
    return kind, target, key


def is_unanswered_reaction(body: str, registry: Registry) -> bool:
    """A reaction nothing is ever said to (👍 on the question after a date): it counts against
    no member's rate limit (a member who likes many messages is asked to slow down by nobody)."""
    if not is_reaction_body(body):
        return False
    kind, _, key = _parts(body)
    found = registry.reaction(key) if kind == _REACTION else None
    return found is not None and not found.answered


async def answer_reaction(request: Request, services: Services) -> list[Reply]:
    """The replies of the feature that answers this reaction's key, or of every feature that
    looks at redactions."""
    kind, target, key = _parts(request.body)
    if kind == _REACTION:
        found = services.registry.reaction(key)
        return await found.handler(request, services, target, key) if found is not None else []
    replies: list[Reply] = []
    for handler in services.registry.redactions:
        replies += await handler(request, services, target)
    return replies
