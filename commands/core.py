"""The commands every deployment has: help, ping, the room's language, the bot's status."""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version

from commands import room_settings
from commands.framework import Arg, Command, Context, Level, Router, UserError, usage
from commands.i18n import LANGUAGES, Text

router = Router("core")


@router.command("help", "hilfe", aliases=["?"], args=[Arg("command", optional=True)])
async def help_command(ctx: Context, command: str | None = None) -> Text:
    services, lang = ctx.services, ctx.language
    level = await ctx.level()
    if command is not None:
        return _help_for(ctx, command.removeprefix(services.prefix), level)
    sections = [ctx.t("help.intro")]
    for router_ in services.registry.routers:
        allowed = [c for c in router_.commands if c.level <= level]
        if not allowed:
            continue
        lines = [ctx.t("help.group", title=ctx.t(f"groups.{router_.group}"))]
        for c in allowed:
            lines.append(ctx.t("help.line", usage=usage(c, services.catalog, lang, services.prefix),
                               summary=ctx.t(f"commands.{c.name}.summary")))
            lines.extend(_action_lines(ctx, c, up_to=level))
        sections.append(Text.join(lines))
    help_name = ctx.command.display_name(lang)
    placeholder = services.catalog.template(lang, "args.command")
    more = Text.code(f"{services.prefix}{help_name} <{placeholder}>")
    sections.append(ctx.t("help.more", help=more))
    return Text.join(sections, "\n\n")


def _help_for(ctx: Context, name: str, level: Level) -> Text:
    services, lang = ctx.services, ctx.language
    found = services.registry.find(name)
    if found is None:
        closest = services.registry.closest(name)
        suggestions = Text.join(
            (Text.code(f"{services.prefix}{c.display_name(lang)}") for c in closest), ", "
        )
        raise UserError("help.unknown", command=name, suggestions=suggestions if closest else "–")
    names = Text.join((Text.code(f"{services.prefix}{n}") for n in found.names()), ", ")
    parts = [
        ctx.t("help.detail", usage=usage(found, services.catalog, lang, services.prefix),
              summary=ctx.t(f"commands.{found.name}.summary"), names=names,
              level=ctx.t(found.level.key)),
        ctx.t("help.examples", examples=Text.join(
            ctx.t("help.example", example=Text.code(line.replace("!", services.prefix, 1)))
            for line in ctx.t(f"commands.{found.name}.examples").plain.splitlines()
        )),
    ]
    restricted = _action_lines(ctx, found, up_to=Level.ADMIN)
    if restricted:
        parts.append(ctx.t("help.actions", actions=Text.join(restricted)))
    if found.level > level:
        parts.append(ctx.t("help.not_allowed", level=ctx.t(found.level.key)))
    return Text.join(parts, "\n\n")


def _action_lines(ctx: Context, command: Command, *, up_to: Level) -> list[Text]:
    """One line per level above the command's own, up to `up_to`, naming its actions, e.g.
    `  - Netzwerk-Moderation: !community anlegen, !community archivieren`."""
    by_level: dict[Level, list[Text]] = {}
    for action in command.action_levels:
        needed = command.action_level(action)
        if command.level < needed <= up_to:
            by_level.setdefault(needed, []).append(
                ctx.call(command.name, command.action_word(action, ctx.language)))
    return [ctx.t("help.action_line", level=ctx.t(needed.key), commands=Text.join(calls, ", "))
            for needed, calls in sorted(by_level.items())]


@router.command("ping", "ping")
async def ping(ctx: Context) -> Text:
    return ctx.t("ping.pong")


@router.command("language", "sprache", args=[Arg("language", choices=LANGUAGES)],
                level=Level.ROOM_MODERATOR)
async def language(ctx: Context, language: str) -> Text:
    await room_settings.change(ctx.services, ctx.room_id, "language", language, ctx.sender)
    # Confirm in the new language: that is the language the room will see from now on.
    return ctx.services.catalog.text(language, "language.changed",
                                     language=ctx.services.catalog.text(language,
                                                                        f"languages.{language}"))


@router.command("status", "status", level=Level.ADMIN)
async def status(ctx: Context) -> Text:
    storage = ctx.services.storage
    uptime = int(time.monotonic() - ctx.services.started_at)
    return ctx.t(
        "status.summary",
        version=_version(),
        uptime=f"{uptime // 3600}:{uptime // 60 % 60:02d}:{uptime % 60:02d}",
        inbox=await storage.inbox.count(),
        outbox=await storage.outbox.count(),
        commands=len(ctx.services.registry.all()),
    )


def _version() -> str:
    try:
        return version("nextbot")
    except PackageNotFoundError:
        return "dev"
