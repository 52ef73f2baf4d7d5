"""Per-room settings that the room's moderators change themselves: `!config` (`!einstellungen`).

Every setting is declared once, on the router of the feature it belongs to
(`router.room_setting(Setting(...))`: the language and the welcome here, a feature's reminder
switch in that feature), its label in that feature's catalog (`settings.labels.<key>`); features
read them through `setting`, `is_on` and `rooms_switched_on`, so the operator's defaults
(`RoomDefaults`) and the moderators' choices combine the same way everywhere. Each change is
recorded (who, when, old and new value).
Like `commands/core.py` this is part of the core, not a feature: every feature may import it,
and it imports none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from commands.feature import Feature
from commands.framework import (
    Arg,
    Context,
    Level,
    Router,
    Services,
    UserError,
    keyword,
    lookup,
    visible_lines,
)
from commands.i18n import LANGUAGES, Text

router = Router("settings")

ON, OFF = "on", "off"
SWITCH_WORDS: dict[str, tuple[str, ...]] = {
    ON: ("on", "an", "ein", "ja", "yes", "true", "1"),
    OFF: ("off", "aus", "nein", "no", "false", "0"),
}
RESET_WORDS = ("standard", "default", "reset", "zuruecksetzen")
TEXT_MAX_LENGTH = 1000
HISTORY_SHOWN = 10


@dataclass(frozen=True)
class Setting:
    """One setting: `kind` is `language` (de|en), `switch` (on|off) or `text` (free text, or
    off where `may_be_off`). A text's `check` returns a catalog key when the text is unusable."""

    key: str  # stored, and the English name
    german: str  # the name in German rooms (both are always accepted)
    kind: str
    default_on: bool = False  # a switch's value where neither moderators nor the config set it
    may_be_off: bool = False
    check: Callable[[str], str | None] | None = None

    def name(self, language: str) -> str:
        return self.german if language == "de" else self.key


LANGUAGE = Setting("language", "sprache", "language")
router.room_setting(LANGUAGE, Setting("welcome", "willkommen", "text", may_be_off=True))


def definition(services: Services, key: str) -> Setting:
    found: Setting | None = services.registry.room_setting(key)
    if found is None:
        raise KeyError(f"no room setting {key!r}: is the feature that declares it in the list?")
    return found


@dataclass(frozen=True)
class RoomDefaults:
    """What the operator configured: the bot's language, and for each switch the rooms where it
    is on unless their moderators switch it off (`[announcements] rooms`, `[meet] rooms`)."""

    language: str = "de"
    switched_on: Mapping[str, frozenset[str]] = field(default_factory=dict)


def defaults_of(services: Services) -> RoomDefaults:
    return services.configs.get("room_settings") or RoomDefaults()


# -- reading, for every feature -------------------------------------------------------------------


async def setting(services: Services, room_id: str, key: str) -> str | None:
    """The value in effect: the moderators' choice, else the default (None for a text: the
    catalog's default text)."""
    declared = definition(services, key)
    stored = (await services.storage.rooms.settings(room_id)).get(key)
    if stored is not None:
        return stored
    defaults = defaults_of(services)
    if declared.kind == "language":
        return defaults.language
    if declared.kind == "switch":
        configured = room_id in defaults.switched_on.get(key, frozenset())
        return ON if declared.default_on or configured else OFF
    return None


async def language(services: Services, room_id: str) -> str:
    """The language of everything the bot posts in a room: its moderators' choice, else the
    bot's default."""
    return await setting(services, room_id, "language") or defaults_of(services).language


async def is_on(services: Services, room_id: str, key: str) -> bool:
    return await setting(services, room_id, key) == ON


async def rooms_switched_on(services: Services, key: str) -> list[str]:
    """Every room where a switch is on: configured ones not switched off, plus switched on."""
    rooms = services.storage.rooms
    configured = defaults_of(services).switched_on.get(key, frozenset())
    switched_off = set(await rooms.rooms_with_setting(key, OFF))
    switched_on = await rooms.rooms_with_setting(key, ON)
    return sorted((configured - switched_off) | set(switched_on))


async def change(services: Services, room_id: str, key: str, value: str | None,
                 changed_by: str) -> str | None:
    """The one way a setting changes: stored (None: back to the default) and recorded."""
    at = int(services.clock.now().timestamp() * 1000)
    return await services.storage.rooms.change_setting(room_id, key, value, changed_by=changed_by,
                                                       changed_at=at)


# -- the command ------------------------------------------------------------------------------


@router.command("config", "einstellungen", aliases=["settings", "konfiguration"])
async def config(ctx: Context) -> Text:
    """`!einstellungen`: this room's settings (a word after it that is no subcommand is
    answered with the closest ones)."""
    return await _show(ctx)


@router.subcommand("config", "set", "setzen", aliases=["ändern"],
                   args=[Arg("config_key", optional=True),
                         Arg("config_value", rest=True, optional=True)],
                   level=Level.ROOM_MODERATOR)
async def set_setting(ctx: Context, config_key: str | None = None,
                      config_value: str | None = None) -> Text:
    value = (config_value or "").strip()
    if not config_key or not value:
        raise UserError("settings.set_usage", example=_example(ctx), keys=_keys(ctx))
    return await _set(ctx, config_key, value)


@router.subcommand("config", "history", "verlauf")
async def history(ctx: Context) -> Text:
    return await _history(ctx)


def _settings(ctx: Context) -> list[Setting]:
    return ctx.services.registry.room_settings()


def _keys(ctx: Context) -> Text:
    return Text.join((Text.code(s.name(ctx.language)) for s in _settings(ctx)), ", ")


def _example(ctx: Context) -> Text:
    return ctx.call("config.set", LANGUAGE.name(ctx.language), "en")


def _find(ctx: Context, text: str) -> Setting | None:
    word = keyword(text)
    return next((s for s in _settings(ctx) if word in (keyword(s.key), keyword(s.german))),
                None)


async def _show(ctx: Context) -> Text:
    lines = [ctx.t("settings.title")]
    stored = await ctx.services.storage.rooms.settings(ctx.room_id)
    for declared in _settings(ctx):
        value = await setting(ctx.services, ctx.room_id, declared.key)
        shown = _describe(ctx, declared, value)
        if declared.key not in stored and declared.kind == "switch":
            shown = shown + Text(" ", " ") + ctx.t("settings.default_marker")
        lines.append(ctx.t("settings.line", label=ctx.t(f"settings.labels.{declared.key}"),
                           setting=Text.code(declared.name(ctx.language)), value=shown))
    lines.append(ctx.t("settings.how", set=ctx.call("config.set", "…"),
                       history=ctx.call("config.history")))
    return Text.join(lines)


def _describe(ctx: Context, definition: Setting, value: str | None) -> Text:
    if definition.kind == "language":
        return ctx.t(f"languages.{value}") if value in LANGUAGES else Text.raw(str(value))
    if definition.kind == "switch" or value == OFF:
        return ctx.t(f"settings.values.{value}")
    if value is None:
        return ctx.t("settings.values.default_text")
    return Text.raw(_preview(value))


def _preview(text: str, limit: int = 80) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


async def _set(ctx: Context, key_word: str, text: str) -> Text:
    definition = _find(ctx, key_word)
    if definition is None:
        raise UserError("settings.unknown_key", setting=Text.code(key_word), keys=_keys(ctx))
    value = _parse(ctx, definition, text)
    await change(ctx.services, ctx.room_id, definition.key, value, ctx.sender)
    # Confirm a language change in the new language: the room reads that one from now on.
    language = value if definition.key == "language" and value else ctx.language
    catalog = ctx.services.catalog
    effective = await setting(ctx.services, ctx.room_id, definition.key)
    return catalog.text(language, "settings.changed",
                        setting=Text.code(definition.name(language)),
                        value=_describe(_in(ctx, language), definition, effective))


def _in(ctx: Context, language: str) -> Context:
    """The same context, speaking `language`."""
    return replace(ctx, request=replace(ctx.request, language=language))


def _parse(ctx: Context, definition: Setting, text: str) -> str | None:
    name = Text.code(definition.name(ctx.language))
    if keyword(text) in RESET_WORDS:
        return None
    if definition.kind == "language":
        if text.casefold() not in LANGUAGES:
            raise UserError("settings.bad_language", setting=name,
                            allowed=Text.join((Text.code(lang) for lang in LANGUAGES), ", "))
        return text.casefold()
    if definition.kind == "switch":
        value = lookup(SWITCH_WORDS, text)
        if value is None:
            raise UserError("settings.bad_switch", setting=name)
        return value
    if definition.may_be_off and lookup({OFF: SWITCH_WORDS[OFF]}, text) is not None:
        return OFF
    cleaned = visible_lines(text)
    if not cleaned:
        raise UserError("settings.bad_text", setting=name)
    if len(cleaned) > TEXT_MAX_LENGTH:
        raise UserError("settings.too_long", setting=name, limit=TEXT_MAX_LENGTH)
    problem = definition.check(cleaned) if definition.check else None
    if problem is not None:
        raise UserError(problem, setting=name)
    return cleaned


async def _history(ctx: Context) -> Text:
    changes = await ctx.services.storage.rooms.setting_changes(ctx.room_id, HISTORY_SHOWN)
    if not changes:
        return ctx.t("settings.no_history")
    tz = ctx.services.clock.now().tzinfo  # the bot's zone
    lines = [ctx.t("settings.history_title")]
    for c in changes:
        definition = ctx.services.registry.room_setting(c.key)
        if definition is None:
            continue  # a setting this version no longer has
        when = datetime.fromtimestamp(c.changed_at / 1000, tz)
        lines.append(ctx.t("settings.history_line", when=when.strftime("%d.%m.%Y %H:%M"),
                           who=Text.raw(c.changed_by),
                           setting=Text.code(definition.name(ctx.language)),
                           old=_history_value(ctx, definition, c.old_value),
                           new=_history_value(ctx, definition, c.new_value)))
    return Text.join(lines)


def _history_value(ctx: Context, definition: Setting, value: str | None) -> Text:
    if value is None:
        return ctx.t("settings.values.default")
    return _describe(ctx, definition, value)


FEATURE = Feature("room_settings", router)
