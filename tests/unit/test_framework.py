import logging

import pytest

from bot.matrix.render import to_html
from commands import core
from commands.framework import (
    Arg,
    ArgumentError,
    Command,
    Level,
    Registry,
    Request,
    Router,
    UserError,
    dispatch,
    parse_args,
    split_command,
    usage,
)
from commands.i18n import LANGUAGES, Catalog, Text
from tests.unit.fakes import ALICE, CATALOG, ROOM, make_services, request

SECRET_MESSAGE = "x-secret-marker-9f3"
SECRET_ARG = "geheim-argument-4711"

EXTRA = {
    "groups.testing": "Test",
    "args.number": "zahl",
    "args.text": "text",
    "commands.boom.summary": "Fällt um.",
    "commands.boom.examples": "!boom",
    "commands.oops.summary": "Nutzerfehler.",
    "commands.oops.examples": "!oops",
    "commands.double.summary": "Verdoppelt.",
    "commands.double.examples": "!double 2",
}
TEST_CATALOG = Catalog({
    lang: {**{k: CATALOG.template(lang, k) for k in CATALOG.keys(lang)}, **EXTRA}
    for lang in LANGUAGES
})

testing = Router("testing")


@testing.command("boom", "knall", args=[Arg("text", rest=True, optional=True)])
async def boom(ctx, text=None):
    raise RuntimeError(SECRET_MESSAGE)


@testing.command("oops", "hoppla")
async def oops(ctx):
    raise UserError("help.unknown", command="<b>**fett**</b>", suggestions="–")


@testing.command("double", "doppelt", args=[Arg("number", convert=int)])
async def double(ctx, number):
    return Text.raw(str(2 * number))


@pytest.fixture
def services(storage):
    s = make_services(storage, [core.router, testing])
    s.catalog = TEST_CATALOG
    return s


@pytest.fixture
def core_services(storage):
    return make_services(storage)


async def answer(req: Request, services) -> Text | None:
    """The text of the one reply a command gets (None for no reply)."""
    replies = await dispatch(req, services)
    assert len(replies) <= 1
    return replies[0].text if replies else None


def md(reply: Text) -> str:
    return to_html(reply.markdown)


# -- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "expected"), [
    ("!ping", ("ping", "")),
    ("  !hilfe   sprache  ", ("hilfe", "sprache")),
    ("!sprache en extra", ("sprache", "en extra")),
    ("!", None),
    ("! ping", None),
    ("ping", None),
    ("hallo !ping", None),
    ("?ping", None),
])
def test_split_command(body, expected):
    assert split_command(body, "!") == expected


def test_split_command_with_a_longer_prefix():
    assert split_command("bot: ping", "bot:") is None  # the name must follow directly
    assert split_command("bot:ping now", "bot:") == ("ping", "now")


def make_command(*args: Arg) -> Command:
    async def handler(ctx, **values):
        return None

    return Command("x", "x", (), handler, tuple(args), Level.MEMBER, "testing")


def test_parse_args():
    command = make_command(Arg("n", convert=int), Arg("lang", choices=("de", "en")),
                           Arg("rest", rest=True, optional=True))
    assert parse_args(command, "3 EN was  auch immer") == {"n": 3, "lang": "en",
                                                          "rest": "was  auch immer"}
    assert parse_args(command, "  3   de ") == {"n": 3, "lang": "de"}
    for bad in ("", "3", "drei de", "3 fr"):
        with pytest.raises(ArgumentError):
            parse_args(command, bad)


def test_parse_args_refuses_extra_words():
    command = make_command(Arg("a"), Arg("b", optional=True))
    assert parse_args(command, "eins") == {"a": "eins"}
    assert parse_args(command, "eins zwei") == {"a": "eins", "b": "zwei"}
    with pytest.raises(ArgumentError):
        parse_args(command, "eins zwei drei")


def test_usage_line():
    language = core_command("language")
    assert usage(language, CATALOG, "de", "!") == Text.code("!sprache <de|en>")
    help_ = core_command("help")
    assert usage(help_, CATALOG, "en", "?") == Text.code("?help [command]")


def core_command(name: str) -> Command:
    return next(c for c in core.router.commands if c.name == name)


# -- registry -----------------------------------------------------------------------------------


def test_registry_finds_every_name_case_insensitively():
    registry = Registry([core.router])
    for name in ("help", "HILFE", "?", "Sprache", "language"):
        assert registry.find(name) is not None, name
    assert registry.find("hilfe") is registry.find("?")
    assert registry.find("nope") is None
    assert [c.name for c in registry.all()] == ["help", "ping", "language", "status"]


@pytest.mark.parametrize("clash", ["ping", "PING", "hilfe", "?"])
def test_duplicate_command_names_across_routers_raise(clash):
    other = Router("other")

    @other.command("other", clash)
    async def handler(ctx):
        return None

    with pytest.raises(ValueError, match="declared twice"):
        Registry([core.router, other])


def test_same_router_twice_raises():
    with pytest.raises(ValueError):
        Registry([core.router, core.router])


# -- dispatch -----------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["hallo", "ping!", "!", "  ", "> !ping"])
async def test_not_a_command_gives_none(services, body):
    assert await answer(request(body), services) is None


async def test_ping(services):
    reply = await answer(request("!ping"), services)
    assert reply.plain == "Pong! Ich bin da."


async def test_unknown_command_suggests_close_names(services):
    reply = await answer(request("!pnig"), services)
    assert "Meintest du" in reply.plain
    assert "!ping" in reply.plain
    assert "!hilfe" in reply.plain
    reply = await answer(request("!hlep", language="en"), services)
    assert "Did you mean" in reply.plain and "!help" in reply.plain


async def test_unknown_command_without_anything_close(services):
    reply = await answer(request("!xyzzyq"), services)
    assert "Meintest" not in reply.plain
    assert reply.plain == "Den Befehl !xyzzyq kenne ich nicht. Alle Befehle zeigt !hilfe."


async def test_unknown_command_name_cannot_inject_markup(services):
    reply = await answer(request("!x\n\n[click](https://evil.example)"), services)
    assert "<a " not in md(reply)


async def test_level_refused_names_the_level(services):
    asked = []

    async def level():
        asked.append(True)
        return Level.MEMBER

    reply = await answer(Request("$e", ROOM, ALICE, "!sprache en", "de", level), services)
    assert asked
    assert reply.plain == ("Den Befehl !sprache dürfen nur Personen mit der Rolle Raum-Moderation "
                           "ausführen.")
    assert "<strong>Raum-Moderation</strong>" in md(reply)
    assert await services.storage.rooms.language(ROOM) is None

    reply = await answer(request("!status", Level.ROOM_MODERATOR, "en"), services)
    assert reply.plain == "Only people with the role bot administrator may use !status."


async def test_the_level_is_looked_up_only_for_restricted_commands(services):
    asked = []

    async def level():
        asked.append(True)
        return Level.MEMBER

    await answer(Request("$e", ROOM, ALICE, "!ping", "de", level), services)
    await answer(Request("$e", ROOM, ALICE, "!nope", "de", level), services)
    assert asked == []


async def test_moderator_may_change_the_language(services):
    reply = await answer(request("!sprache EN", Level.ROOM_MODERATOR), services)
    assert await services.storage.rooms.language(ROOM) == "en"
    assert reply.plain == "Got it: in this room I will answer in English from now on."


@pytest.mark.parametrize("body", ["!sprache fr", "!sprache", "!sprache de en"])
async def test_wrong_arguments_answer_with_the_usage_line(services, body):
    reply = await answer(request(body, Level.ADMIN), services)
    assert reply.plain == ("So funktioniert der Befehl: !sprache <de|en>\n"
                           "Mehr dazu: !hilfe sprache")
    assert "<code>!sprache &lt;de|en&gt;</code>" in md(reply)
    assert await services.storage.rooms.language(ROOM) is None


async def test_conversion_error_answers_with_usage_in_english(services):
    reply = await answer(request("!double zwei", language="en"), services)
    assert reply.plain == "How to use it: !double <zahl>\nMore: !help double"
    assert (await answer(request("!doppelt 21"), services)).plain == "42"


async def test_extra_words_for_a_command_without_arguments(services):
    reply = await answer(request("!ping jetzt"), services)
    assert reply.plain.startswith("So funktioniert der Befehl: !ping\n")


async def test_user_error_answers_with_its_catalog_text(services):
    reply = await answer(request("!oops"), services)
    assert reply.plain == ("Einen Befehl „<b>**fett**</b>“ gibt es nicht. "
                           "Ähnliche Befehle: –")
    assert "<b>" not in md(reply) and "<strong>" not in md(reply)


async def test_handler_exception_answers_internal_and_logs_no_secrets(services, caplog):
    caplog.set_level(logging.DEBUG)
    reply = await answer(request(f"!knall {SECRET_ARG}"), services)
    assert reply == CATALOG.text("de", "errors.internal")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "boom" in errors[0].getMessage() and "RuntimeError" in errors[0].getMessage()
    assert errors[0].exc_info is None
    for record in caplog.records:
        logged = record.getMessage() + (record.exc_text or "")
        assert SECRET_ARG not in logged
        assert SECRET_MESSAGE not in logged
    assert SECRET_ARG not in caplog.text and SECRET_MESSAGE not in caplog.text
    assert any("outcome=error" in r.getMessage() for r in caplog.records)


async def test_outcome_is_logged_without_the_body(services, caplog):
    caplog.set_level(logging.INFO)
    await answer(request(f"!sprache {SECRET_ARG}", Level.ADMIN), services)
    await answer(request(f"!unbekannt {SECRET_ARG}"), services)
    assert "outcome=usage" in caplog.text and "outcome=unknown" in caplog.text
    assert SECRET_ARG not in caplog.text


# -- help ---------------------------------------------------------------------------------------


async def test_help_for_a_member_lists_only_member_commands(core_services):
    reply = await answer(request("!hilfe"), core_services)
    text = reply.plain
    assert text.startswith("NExT-Bot – das kann ich für dich tun:")
    assert "!hilfe [befehl]" in text and "!ping" in text
    assert "Prüft, ob der Bot antwortet." in text
    assert "!sprache" not in text and "!status" not in text
    assert text.endswith("Mehr zu einem Befehl: !hilfe <befehl>")


async def test_help_for_a_moderator_and_an_admin(core_services):
    moderator = (await answer(request("!hilfe", Level.ROOM_MODERATOR), core_services)).plain
    assert "!sprache <de|en>" in moderator and "!status" not in moderator
    admin = (await answer(request("!?", Level.ADMIN), core_services)).plain
    for name in ("!hilfe", "!ping", "!sprache", "!status"):
        assert name in admin


async def test_help_in_english(core_services):
    reply = await answer(request("!help", Level.ADMIN, language="en"), core_services)
    text = reply.plain
    assert text.startswith("NExT bot – here is what I can do for you:")
    assert "!help [command]" in text and "!language <de|en>" in text and "!status" in text
    assert "Lists the commands you can use" in text
    assert "!hilfe" not in text and "!sprache" not in text
    assert "<strong>General</strong>" in md(reply)


async def test_help_for_one_command_shows_usage_and_examples(core_services):
    reply = await answer(request("!hilfe sprache"), core_services)
    text = reply.plain
    assert text.startswith("!sprache <de|en>\n\nStellt die Sprache")
    assert "Aufrufbar als: !language, !sprache" in text
    assert "Beispiele:\n- !sprache de\n- !sprache en" in text
    assert "Hinweis: Dafür brauchst du die Rolle Raum-Moderation." in text  # asked by a member
    moderator = (await answer(request("!hilfe !sprache", Level.ROOM_MODERATOR), core_services))
    assert "Hinweis" not in moderator.plain


async def test_help_for_one_command_in_english_with_another_prefix(storage):
    services = make_services(storage, prefix="?")
    reply = await answer(request("?help language", Level.ROOM_MODERATOR, "en"), services)
    assert "Examples:\n- ?language de\n- ?language en" in reply.plain
    assert reply.plain.startswith("?language <de|en>")


async def test_help_for_an_unknown_command(core_services):
    reply = await answer(request("!hilfe spracha"), core_services)
    assert reply.plain == "Einen Befehl „spracha“ gibt es nicht. Ähnliche Befehle: !sprache"
    reply = await answer(request("!hilfe qqqqqq"), core_services)
    assert reply.plain.endswith("Ähnliche Befehle: –")


async def test_status_for_an_admin(core_services):
    await core_services.storage.outbox.add([], created_at=1)
    reply = await answer(request("!status", Level.ADMIN), core_services)
    assert reply.plain.startswith("Status\n- Version: ")
    assert "- Offene Befehle: 0" in reply.plain and "- Bekannte Befehle: 4" in reply.plain


async def test_help_shows_each_person_the_subcommands_of_their_role(storage):
    from commands import communities, municipalities

    services = make_services(storage, [core.router, communities.router, municipalities.router])
    member = (await answer(request("!hilfe"), services)).plain
    assert "!community <" in member
    assert "!community anlegen" not in member and "!kommune neu" not in member
    room_moderator = (await answer(request("!hilfe", Level.ROOM_MODERATOR), services)).plain
    assert "!sprache" in room_moderator and "!community anlegen" not in room_moderator
    network = (await answer(request("!hilfe", Level.NETWORK_MODERATOR), services)).plain
    assert ("  - !community anlegen, !community verknüpfen, "
            "!community setzen, !community archivieren") in network
    assert "  - !kommune neu\n" in network and "!kommune entfernen" not in network
    admin = (await answer(request("!hilfe", Level.ADMIN), services)).plain
    assert "  - !kommune neu, !kommune entfernen" in admin
    detail = (await answer(request("!hilfe kommune"), services)).plain
    assert "Unterbefehle:\n- !kommune neu [name land=…] – " in detail
    assert "(Netzwerk-Moderation)\n- !kommune entfernen [name] – " in detail
    assert detail.endswith("(Bot-Administration)")


# -- subcommands, declared like commands ----------------------------------------------------------


SUBCOMMAND_TEXTS = {
    "commands.thing.paint.summary": "Malt ein Ding an.",
    "commands.thing.paint.examples": "!ding malen rot",
    "commands.thing.count.summary": "Zählt.", "commands.thing.count.examples": "!ding zählen 3",
    "commands.thing.summary": "Ein Ding.", "commands.thing.examples": "!ding",
    "args.colour": "farbe", "args.number": "zahl", "args.thing_name": "name"}


@pytest.fixture
def subcommand_texts(monkeypatch):
    template = CATALOG.template
    monkeypatch.setattr(CATALOG, "template", lambda lang, key: SUBCOMMAND_TEXTS.get(key)
                        or template(lang, key))


def subcommand_services(storage):
    things = Router("core")

    @things.command("thing", "ding", args=[Arg("thing_name", optional=True)])
    async def thing(ctx, thing_name=None):
        if thing_name is not None:
            raise ctx.unknown_subcommand(thing_name)
        return Text.raw("a thing")

    @things.subcommand("thing", "paint", "malen", aliases=["anmalen"],
                       args=[Arg("colour")], level=Level.ROOM_MODERATOR)
    async def paint(ctx, colour):
        return Text.raw(f"painted {colour} by {ctx.command.key}")

    @things.subcommand("thing", "count", "zählen", args=[Arg("number", convert=int)])
    async def count(ctx, number):
        return Text.raw(str(number))

    return make_services(storage, [core.router, things])


async def test_a_subcommand_is_found_by_any_of_its_names_and_checks_its_own_level(
        storage, subcommand_texts):
    services = subcommand_services(storage)
    assert (await answer(request("!ding malen rot", Level.ROOM_MODERATOR), services)).plain == (
        "painted rot by thing.paint")
    assert (await answer(request("!thing ANMALEN rot", Level.ROOM_MODERATOR),
                         services)).plain == "painted rot by thing.paint"
    assert (await answer(request("!ding zaehlen 3"), services)).plain == "3"
    refused = (await answer(request("!ding malen rot"), services)).plain
    assert refused == ("Den Befehl !ding malen dürfen nur Personen mit der Rolle "
                       "Raum-Moderation ausführen.")
    usage_answer = (await answer(request("!ding zählen drei"), services)).plain
    assert usage_answer.startswith("So funktioniert der Befehl: !ding zählen <")
    assert "Mehr dazu: !hilfe ding zählen" in usage_answer


async def test_an_unknown_subcommand_is_answered_with_the_closest(storage, subcommand_texts):
    services = subcommand_services(storage)
    assert (await answer(request("!ding maln"), services)).plain == (
        "maln kenne ich hier nicht. Meintest du !ding malen? Mehr zeigt !hilfe ding.")
    assert (await answer(request("!thing xyz", language="en"), services)).plain == (
        "I don't know xyz with !thing. !help thing shows what works.")


async def test_help_for_a_subcommand_and_the_subcommands_a_person_may_use(storage,
                                                                          subcommand_texts):
    services = subcommand_services(storage)
    member = (await answer(request("!hilfe"), services)).plain
    assert "- !ding [name] – Ein Ding.\n  - !ding zählen" in member
    assert "!ding malen" not in member
    moderator = (await answer(request("!hilfe", Level.ROOM_MODERATOR), services)).plain
    assert "  - !ding malen, !ding zählen" in moderator
    detail = (await answer(request("!hilfe ding malen"), services)).plain
    assert detail.startswith("!ding malen <farbe>\n\nMalt ein Ding an.")
    assert "Aufrufbar als: !ding paint, !ding malen, !ding anmalen" in detail
    assert "Hinweis: Dafür brauchst du die Rolle Raum-Moderation." in detail
    whole = (await answer(request("!hilfe ding"), services)).plain
    assert ("Unterbefehle:\n- !ding malen <farbe> – Malt ein Ding an. (Raum-Moderation)\n"
            "- !ding zählen <zahl> – Zählt. (Mitglied)") in whole
    assert (await answer(request("!hilfe ding anmahlen"), services)).plain.startswith(
        "anmahlen kenne ich hier nicht. Meintest du !ding malen")


def test_a_subcommand_word_declared_twice_is_refused():
    router = Router("core")

    @router.command("thing", "ding")
    async def thing(ctx):
        return None

    @router.subcommand("thing", "paint", "malen")
    async def paint(ctx):
        return None

    with pytest.raises(ValueError, match="declared twice"):
        @router.subcommand("thing", "draw", "Malen")
        async def draw(ctx):
            return None


async def test_a_word_after_a_command_that_takes_none_but_has_subcommands_is_a_typo(storage):
    router = Router("core")

    @router.command("box", "kiste")
    async def box(ctx):
        return Text.raw("box")

    @router.subcommand("box", "open", "öffnen")
    async def open_box(ctx):
        return Text.raw("open")

    services = make_services(storage, [core.router, router])
    assert (await answer(request("!kiste öffnn"), services)).plain == (
        "öffnn kenne ich hier nicht. Meintest du !kiste öffnen? Mehr zeigt !hilfe kiste.")
