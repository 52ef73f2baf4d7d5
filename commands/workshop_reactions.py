"""Signing up with one tap: a member's ✅ on the bot's post of a workshop, and its removal.

The bot's posts of a workshop (the answers to `!werkstatt neu` and `!werkstatt 12`) are recorded
when sent, and the bot puts the first ✅ on each itself (`storage.outbox`). The sync loop puts a
member's ✅ (an `m.reaction`, in the clear or decrypted) and every member's redaction into the
inbox like a command, under a body no typed command can have (`reaction_body`); the command
lanes answer it here, exactly once, with the rules of `!anmelden` and `!abmelden`. Whoever
reacted is answered by direct message, so the room stays calm. A member signs up and withdraws
only themselves: a redaction withdraws only the one whose ✅ it removes, and only when they
removed it themselves.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from commands.framework import Context, Reply, Request, Services, UserError, as_replies
from commands.meet import answer_met_reaction
from commands.workshops import _rsvp, _withdraw
from storage.meet import MET_KEYS
from storage.workshops import SIGN_UP_KEY

# A command begins with the prefix; these bodies begin with a control character no command has.
_MARK = "\x1e"
_REACTION = "reaction"
_REDACTION = "redaction"
_KEYS = (SIGN_UP_KEY, *MET_KEYS)  # ✅ signs up; 👍/👎 answer the question after a date
# How a client may dress a key: the emoji presentation selector, the skin tones.
_DRESSING = dict.fromkeys([0xFE0F, *range(0x1F3FB, 0x1F400)])


def reaction_body(event_type: str, content: dict[str, Any]) -> str | None:
    """The inbox body of a ✅, 👍 or 👎 (`m.reaction`) or of a redaction; None for any other
    event."""
    if event_type == "m.reaction":
        relates = content.get("m.relates_to")
        if not isinstance(relates, dict) or relates.get("rel_type") != "m.annotation":
            return None
        target, key = relates.get("event_id"), relates.get("key")
        if not isinstance(target, str) or not isinstance(key, str):
            return None
        key = key.translate(_DRESSING)
        if key not in _KEYS:  # another key: nothing to answer
            return None
        return f"{_MARK}{_REACTION} {target} {key}"
    if event_type == "m.room.redaction":
        redacts = content.get("redacts")
        return f"{_MARK}{_REDACTION} {redacts}" if isinstance(redacts, str) else None
    return None


def is_reaction_body(body: str) -> bool:
    return body.startswith(_MARK)


def is_unanswered_reaction(body: str) -> bool:
    """A 👍 or 👎: no message ever answers it, so it counts against no member's rate limit
    (a member who likes many messages is asked to slow down by nobody)."""
    return body.startswith(f"{_MARK}{_REACTION} ") and body.endswith(MET_KEYS)


async def answer_reaction(request: Request, services: Services) -> list[Reply]:
    """Sign up whoever put ✅ on a post of a workshop, or withdraw whoever took theirs away;
    anything else (a redaction of any other event, a ✅ on any other message) is passed over.
    A 👍 or 👎 is an answer to the question after a date (`commands.meet`)."""
    kind, _, target = request.body[len(_MARK):].partition(" ")
    target, _, key = target.partition(" ")  # without a key: a ✅ queued by an older version
    if kind == _REACTION and key in MET_KEYS:
        return await answer_met_reaction(request, services, target, key == MET_KEYS[0])
    command = services.registry.find_key("rsvp" if kind == _REACTION else "withdraw")
    if command is None:
        return []
    ctx = Context(request, services, command)
    repo = services.storage.workshops
    try:
        if kind == _REACTION:
            number = await repo.workshop_of_post(target)
            if number is None:
                return []
            answer = as_replies(await _rsvp(ctx, number))
            await repo.add_reaction(request.event_id, number, request.sender)
        else:
            number = await repo.take_reaction(target, request.sender)
            if number is None or await repo.registration(number, request.sender) is None:
                return []  # withdrawn already (`!abmelden`): nothing to say
            answer = as_replies(await _withdraw(ctx, number))
    except UserError as error:
        answer = [Reply(ctx.t(error.key, **error.values))]
    # The answer goes to the member alone; whoever moved up is told as after `!abmelden`.
    # The edits of the workshop's posts (`edit_of`) go into their rooms.
    return [reply if reply.direct or reply.edit_of else replace(reply, direct=True)
            for reply in answer]
