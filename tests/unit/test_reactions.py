"""Reactions a feature declares on its router (`router.reaction`, `router.redaction`): what the
sync loop puts into the inbox, and who answers it (`commands/reactions.py`)."""

import pytest

from commands.feature import routers
from commands.features import FEATURES
from commands.framework import Registry, Reply, Router
from commands.i18n import Text
from commands.reactions import (
    answer_reaction,
    is_reaction_body,
    is_unanswered_reaction,
    reaction_body,
)
from tests.unit.fakes import make_services, request


def on(target: str, key: str) -> dict:
    return {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}}


def test_only_keys_a_feature_answers_go_into_the_inbox():
    keys = {"⭐"}
    assert reaction_body("m.reaction", on("$post", "⭐"), keys) == "\x1ereaction $post ⭐"
    assert reaction_body("m.reaction", on("$post", "⭐\ufe0f"), keys) is not None  # dressed
    assert reaction_body("m.reaction", on("$post", "🎉"), keys) is None
    assert reaction_body("m.reaction", on("$post", ""), keys | {""}) is None
    assert reaction_body("m.room.redaction", {"redacts": "$r"}, keys) == "\x1eredaction $r"
    assert reaction_body("m.room.message", {"body": "⭐"}, keys) is None
    assert is_reaction_body("\x1ereaction $post ⭐") and not is_reaction_body("!hilfe")


def test_the_bot_answers_the_keys_its_features_declare():
    registry = Registry(routers(FEATURES))
    assert {"✅", "👍", "👎"} <= registry.reaction_keys()
    assert is_unanswered_reaction("\x1ereaction $q 👍", registry)  # counted, never answered
    assert not is_unanswered_reaction("\x1ereaction $p ✅", registry)  # answered by DM
    assert not is_unanswered_reaction("\x1eredaction $p", registry)


def test_a_key_answered_by_two_features_is_refused():
    first, second = Router("first"), Router("second")

    async def handler(request, services, target, key):
        return []

    first.reaction("⭐")(handler)
    second.reaction("⭐")(handler)
    with pytest.raises(ValueError, match="answered twice"):
        Registry([first, second])


async def test_a_reaction_goes_to_its_feature_and_a_redaction_to_every_feature(storage):
    stars, notes = Router("stars"), Router("notes")
    seen = []

    @stars.reaction("⭐", answered=False)
    async def star(request, services, target, key):
        seen.append(("star", target, key))
        return [Reply(Text.raw("thanks"))]

    @stars.redaction
    async def unstar(request, services, redacted):
        seen.append(("unstar", redacted))
        return []

    @notes.redaction
    async def unnote(request, services, redacted):
        seen.append(("unnote", redacted))
        return []

    services = make_services(storage, [stars, notes])
    replies = await answer_reaction(request("\x1ereaction $post ⭐"), services)
    assert [r.text.plain for r in replies] == ["thanks"]
    assert await answer_reaction(request("\x1ereaction $post 🎉"), services) == []
    await answer_reaction(request("\x1eredaction $r"), services)
    assert seen == [("star", "$post", "⭐"), ("unstar", "$r"), ("unnote", "$r")]
    assert is_unanswered_reaction("\x1ereaction $post ⭐", services.registry)
