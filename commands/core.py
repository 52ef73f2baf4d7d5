"""The commands every deployment has: help, ping, the room's language, the bot's status."""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version

from commands import room_settings
from commands.feature import Feature
from commands.framework import Arg, Command, Context, Level, Router, UserError, usage
from commands.i18n import LANGUAGES, Text

router = Router("core")


@router.command("help", "hilfe", aliases=["?"], args=[Arg("command", optional=True, rest=True)])
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
            lines.append(ctx.t("help.line", usage=_usage(ctx, c), summary=_summary(ctx, c)))
            subs = [ctx.call(sub) for sub in c.subcommands if sub.required_level <= level]
            if subs:
                lines.append(ctx.t("help.subcommands", commands=Text.join(subs, ", ")))
        sections.append(Text.join(lines))
    help_name = ctx.command.display_name(lang)
    placeholder = services.catalog.template(lang, "args.command")
    more = Text.code(f"{services.prefix}{help_name} <{placeholder}>")
    sections.append(ctx.t("help.more", help=more))
    return Text.join(sections, "\n\n")


def _usage(ctx: Context, command: Command) -> Text:
    return usage(command, ctx.services.catalog, ctx.language, ctx.services.prefix)


def _summary(ctx: Context, command: Command) -> Text:
    return ctx.t(f"commands.{command.key}.summary")


def _help_for(ctx: Context, text: str, level: Level) -> Text:
    """`!hilfe werkstatt` or `!hilfe werkstatt neu`: usage, what it does, its names, who may
    use it, examples; for a command also its subcommands."""
    services, lang = ctx.services, ctx.language
    name, _, sub_word = text.partition(" ")
    found = services.registry.find(name)
    if found is None:
        closest = services.registry.closest(name)
        suggestions = Text.join(
            (Text.code(f"{services.prefix}{c.display_name(lang)}") for c in closest), ", "
        )
        raise UserError("help.unknown", command=name, suggestions=suggestions if closest else "–")
    if sub_word.strip():
        sub = found.subcommand(sub_word.split()[0])
        if sub is None:
            raise ctx.unknown_subcommand(sub_word.split()[0], of=found)
        found = sub
    prefix = f"{services.prefix}{found.parent.display_name(lang)} " if found.parent else (
        services.prefix)
    names = Text.join((Text.code(f"{prefix}{n}") for n in found.names()), ", ")
    needed = found.required_level
    parts = [
        ctx.t("help.detail", usage=_usage(ctx, found), summary=_summary(ctx, found),
              names=names, level=ctx.t(needed.key)),
        ctx.t("help.examples", examples=Text.join(
            ctx.t("help.example", example=Text.code(line.replace("!", services.prefix, 1)))
            for line in ctx.t(f"commands.{found.key}.examples").plain.splitlines()
        )),
    ]
    if found.subcommands:
        parts.append(ctx.t("help.subcommand_list", lines=Text.join(
            ctx.t("help.subcommand_line", usage=_usage(ctx, sub), summary=_summary(ctx, sub),
                  level=ctx.t(sub.required_level.key))
            for sub in found.subcommands)))
    if needed > level:
        parts.append(ctx.t("help.not_allowed", level=ctx.t(needed.key)))
    return Text.join(parts, "\n\n")


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


FEATURE = Feature("core", router)
