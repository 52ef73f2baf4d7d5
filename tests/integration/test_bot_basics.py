"""What a member sees: German by default, notices in reply, safe HTML, levels, errors, typos."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from bot.matrix.render import ALLOWED_ATTRIBUTES, ALLOWED_TAGS
from commands.framework import Router
from commands.i18n import Catalog, Text
from tests.integration.conftest import MakeMember
from tests.integration.harness import BotAccount, Member, replies_to

pytestmark = pytest.mark.synapse

CATALOG = Catalog.load()


def german(key: str) -> str:
    return CATALOG.template("de", key)


def assert_bot_reply(reply: dict, command_event_id: str) -> dict:
    """The shape every reply has: a notice, in reply to the command, that pings nobody."""
    content = reply["content"]
    assert content["msgtype"] == "m.notice"
    assert content["m.relates_to"]["m.in_reply_to"]["event_id"] == command_event_id
    assert content["m.mentions"] == {}
    assert content["format"] == "org.matrix.custom.html"
    return content


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def assert_safe_html(html: str) -> None:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    for tag, attrs in parser.tags:
        assert tag in ALLOWED_TAGS, f"tag <{tag}> in {html!r}"
        for name, value in attrs:
            assert name in ALLOWED_ATTRIBUTES.get(tag, set()), f"<{tag} {name}> in {html!r}"
            assert not name.startswith("on")
            if name == "href":
                assert (value or "").split(":", 1)[0] in {"https", "http", "mailto", "matrix"}
    lowered = html.lower()
    for raw in ("<script", "<img", "<iframe", "<svg", "<a "):
        assert raw not in lowered, f"{raw} in {html!r}"  # escaped text (&lt;img) is fine


# -- 2. help, German by default, as a notice in reply ------------------------------------------


async def test_help_is_answered_in_german_as_notice_in_reply(
    bot_account: BotAccount, member: Member, room: str
) -> None:
    event_id = await member.send(room, "!hilfe")
    messages = await member.wait_for_messages(room, bot_account.user_id, 1)
    [reply] = replies_to(messages, event_id)
    content = assert_bot_reply(reply, event_id)
    assert "das kann ich für dich tun" in content["body"]
    assert "<strong>" in content["formatted_body"]
    assert "<script" not in content["formatted_body"]


async def test_english_help_command_is_answered_in_german_by_default(
    bot_account: BotAccount, member: Member, room: str
) -> None:
    event_id = await member.send(room, "!help")
    messages = await member.wait_for_replies(room, bot_account.user_id, [event_id])
    [reply] = replies_to(messages, event_id)
    content = assert_bot_reply(reply, event_id)
    assert "das kann ich für dich tun" in content["body"]
    assert "!sprache" in content["body"]  # German command names in the German help
    assert "here is what I can do" not in content["body"]
    assert_safe_html(content["formatted_body"])
    await member.settle(0.5)
    assert len(member.messages_from(room, bot_account.user_id)) == 1


# (command text, whether the reply quotes it): the usage and "unknown command" replies name
# only the first word, the help for an unknown command name quotes its one-word argument.
HOSTILE = [
    ("!hilfe <script>alert(1)</script> @room", True),  # !hilfe reads a subcommand too
    ("!xyz<img src=x onerror=alert(1)>", False),
    ("!hilfe <script>alert(1)</script>", True),
    ("!hilfe <img/src=x/onerror=alert(1)>", True),
    ("!hilfe [klick](javascript:alert(1))", True),
    ("!hilfe @room", True),
    ('!<b>fett</b> <a href="javascript:alert(1)">x</a>', False),
    ("!`code` **fett** <details open ontoggle=alert(1)>", False),
    ("!hilfe x\n<script>alert(1)</script>", True),
]


async def test_hostile_command_text_never_becomes_markup_or_a_mention(
    bot_account: BotAccount, member: Member, room: str
) -> None:
    bodies = [body for body, _ in HOSTILE]
    event_ids = await member.send_many(room, bodies)
    messages = await member.wait_for_replies(room, bot_account.user_id, event_ids)
    for (body, quoted), event_id in zip(HOSTILE, event_ids, strict=True):
        found = replies_to(messages, event_id)
        assert len(found) == 1, f"{body!r}: {len(found)} replies"
        content = assert_bot_reply(found[0], event_id)
        html = content["formatted_body"]
        assert_safe_html(html)
        assert "<script" not in html and "<img" not in html and "<b>fett" not in html
        if not quoted:
            assert "onerror" not in html and "ontoggle" not in html and "alert" not in html
    # What is quoted is shown literally, escaped: the member sees what they typed.
    echoed = replies_to(messages, event_ids[3])[0]["content"]
    assert "&lt;img/src=x/onerror=alert(1)&gt;" in echoed["formatted_body"]
    assert "<img/src=x/onerror=alert(1)>" in echoed["body"]
    room_ping = replies_to(messages, event_ids[5])[0]["content"]
    assert "@room" in room_ping["body"] and room_ping["m.mentions"] == {}


# -- 10. a typo gets a suggestion ------------------------------------------------------------


async def test_unknown_command_suggests_the_closest(
    bot_account: BotAccount, member: Member, room: str
) -> None:
    reply = await member.ask(room, bot_account.user_id, "!hlfe")
    content = reply["content"]
    assert "Meintest du" in content["body"]
    assert "Den Befehl !hlfe kenne ich nicht" in content["body"]
    assert "Meintest du !hilfe?" in content["body"]
    assert "<code>!hilfe</code>" in content["formatted_body"]


async def test_unknown_command_without_similar_one_points_to_help(
    bot_account: BotAccount, member: Member, room: str
) -> None:
    reply = await member.ask(room, bot_account.user_id, "!qqqqqqqq")
    body = reply["content"]["body"]
    assert "Meintest du" not in body
    assert body == CATALOG.text("de", "errors.unknown", command=Text.code("!qqqqqqqq"),
                                help=Text.code("!hilfe")).plain


# -- 7. a failing handler ----------------------------------------------------------------------

SECRET = "geheimes-detail-4711"


def failing_router() -> Router:
    router = Router("tests")

    @router.command("boom", "kaputt")
    async def boom(ctx) -> Text:
        raise RuntimeError(f"database password {SECRET} for {ctx.sender}")

    return router


async def test_failing_handler_gets_error_reply_and_next_command_is_served(
    bot_account: BotAccount, member: Member
) -> None:
    bot_account.routers = [failing_router()]
    await bot_account.start()
    await bot_account.wait_synced()
    room_id = await member.create_room(invite=[bot_account.user_id])
    assert await member.wait_joined(room_id, bot_account.user_id)

    failed = await member.send(room_id, "!kaputt")
    pinged = await member.send(room_id, "!ping")
    messages = await member.wait_for_replies(room_id, bot_account.user_id, [failed, pinged])
    [error] = replies_to(messages, failed)
    content = assert_bot_reply(error, failed)
    assert content["body"] == german("errors.internal")
    assert SECRET not in content["body"] and SECRET not in content["formatted_body"]
    assert "RuntimeError" not in content["body"] and "Traceback" not in content["body"]
    [pong] = replies_to(messages, pinged)
    assert pong["content"]["body"] == german("ping.pong")
    # And again: one failure does not poison the room's lane.
    again = await member.ask(room_id, bot_account.user_id, "!kaputt")
    assert again["content"]["body"] == german("errors.internal")
    assert (await member.ask(room_id, bot_account.user_id, "!ping"))["content"]["body"] == (
        german("ping.pong"))
    await member.settle(0.5)
    assert len(member.messages_from(room_id, bot_account.user_id)) == 4


# -- 8. moderator-only commands and the room's language ------------------------------------------


async def test_language_is_for_moderators_and_switches_the_replies(
    bot_account: BotAccount, member: Member, room: str, make_member: MakeMember
) -> None:
    bot = bot_account.user_id
    creator = member
    other = await make_member("other")
    await creator.invite(room, other.user_id)
    await other.join(room)

    state = await creator.client.room_get_state_event(room, "m.room.create")
    assert state.content.get("room_version") == "12"
    levels = await creator.client.room_get_state_event(room, "m.room.power_levels")
    assert creator.user_id not in levels.content.get("users", {})  # v12: creators stand above

    # Power level 0: refused, in German, naming the role.
    refused = (await other.ask(room, bot, "!sprache en"))["content"]
    assert refused["body"] == (
        "Den Befehl !sprache dürfen nur Personen mit der Rolle Raum-Moderation ausführen.")
    assert "<strong>Raum-Moderation</strong>" in refused["formatted_body"]
    assert "das kann ich" in (await other.ask(room, bot, "!hilfe"))["content"]["body"]

    # The creator (not in m.room.power_levels at all) may.
    changed = (await creator.ask(room, bot, "!sprache en"))["content"]
    assert changed["body"] == "Got it: in this room I will answer in English from now on."
    english = (await other.ask(room, bot, "!help"))["content"]["body"]
    assert "here is what I can do" in english
    assert "!help [command]" in english and "!hilfe" not in english
    assert "!language" not in english  # a member's help lists only what they may run
    assert (await other.ask(room, bot, "!hilfe"))["content"]["body"] == english
    creators_help = (await creator.ask(room, bot, "!hilfe"))["content"]["body"]
    assert "!language <de|en>" in creators_help and "!sprache" not in creators_help

    # Back to German by the creator; then a member promoted to 50 may switch it.
    assert "Deutsch" in (await creator.ask(room, bot, "!language de"))["content"]["body"]
    await creator.set_power_level(room, other.user_id, 50)
    promoted = (await other.ask(room, bot, "!sprache en"))["content"]
    assert promoted["body"] == "Got it: in this room I will answer in English from now on."
    assert "here is what I can do" in (await other.ask(room, bot, "!help"))["content"]["body"]

    # Demoted again: refused again (the bot saw the power levels change), now in English.
    await creator.set_power_level(room, other.user_id, 0)
    again = (await other.ask(room, bot, "!sprache de"))["content"]
    assert again["body"] == "Only people with the role room moderator may use !sprache."
    await other.settle(0.5)
    bot_messages = other.messages_from(room, bot)
    assert len(bot_messages) == 10
