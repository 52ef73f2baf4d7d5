"""Communities: long-lived rooms of the network, listed in its space, joined by command, with a
welcome for newcomers that each room's moderators word themselves.

Handlers act on Matrix only through `RoomAdmin` (implemented in `bot/matrix/room_admin.py`), so this
module stays free of nio and its tests run against a fake.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import Field, field_validator
from rapidfuzz import fuzz, process

from commands import room_settings
from commands.config_fields import Section, problem
from commands.feature import Feature
from commands.framework import (
    ActionRefused,
    Arg,
    Command,
    Context,
    Level,
    RoomAdmin,
    Router,
    Services,
    UserError,
    command_line,
    lookup,
    one_line,
    visible_lines,
)
from commands.i18n import Text
from storage import communities as communities_storage
from storage.communities import Community
from storage.schema import Schema

router = Router("communities")

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,39}$")
TITLE_MAX = 100
TOPIC_MAX = 300
DESCRIPTION_MAX = 2000


class CommunitySettings(Section):
    # The network's space for the communities: a room id or alias. Empty: the bot makes one
    # the first time a moderator creates or links a community.
    space: str = ""
    # Newcomers who join within this many seconds of each other get one combined welcome.
    welcome_delay_seconds: int = Field(default=30, ge=0, le=3600)
    # Nobody matching these user-id patterns is welcomed (`*` = anything): other bots, bridges.
    no_welcome: list[str] = Field(default_factory=lambda: ["@*bot:*", "@_*"])
    # Rooms the bot creates for communities are end-to-end encrypted (with matrix.encryption).
    encrypt_rooms: bool = True

    @field_validator("space")
    @classmethod
    def _space_valid(cls, value: str) -> str:
        value = value.strip()
        if value and (value[0] not in "!#" or ":" not in value):
            raise problem(f"bad space {value!r} (expected a room id !id:server or an alias "
                           "#name:server)")
        return value


@dataclass(frozen=True)
class CommunityConfig:
    """`[communities]`: the space to use (id or alias; created on first use when empty)."""

    space: str = ""


def _config(services: Services) -> CommunityConfig:
    return services.configs.get("communities") or CommunityConfig()


def _admin(ctx: Context) -> RoomAdmin:
    admin = ctx.services.room_admin
    if admin is None:
        raise UserError("communities.unavailable")
    return admin


def _now_ms(services: Services) -> int:
    return int(services.clock.now().timestamp() * 1000)


# -- field words of `!community setzen` (compared folded: `Beschreibung` = `beschreibung`) -------

FIELDS: dict[str, tuple[str, ...]] = {
    "title": ("title", "titel", "name"),
    "topic": ("topic", "thema"),
    "description": ("description", "beschreibung"),
}
FIELD_WORDS = {
    "de": {"title": "titel", "topic": "thema", "description": "beschreibung"},
    "en": {"title": "title", "topic": "topic", "description": "description"},
}


def _field_words(ctx: Context) -> dict[str, str]:
    return FIELD_WORDS.get(ctx.language, FIELD_WORDS["en"])


# -- members ------------------------------------------------------------------------------------


@router.command("communities", "gemeinschaften", aliases=["communitys"])
async def communities(ctx: Context) -> Text:
    found = await ctx.services.storage.communities.active()
    if not found:
        return ctx.t("communities.none", create=ctx.call("community.create", "ki-verwaltung",
                                                         "KI in der Verwaltung"))
    admin = _admin(ctx)
    counts = await asyncio.gather(*(admin.member_count(c.room_id) for c in found))
    lines = [ctx.t("communities.title", count=len(found))]
    for community, members in zip(found, counts, strict=True):
        lines.append(ctx.t("communities.line", title=Text.raw(community.title),
                           slug=Text.code(community.slug), members=members,
                           topic=Text.raw(community.topic or "–")))
    placeholder = ctx.services.catalog.template(ctx.language, "args.community")
    lines.append(ctx.t("communities.how", join=ctx.call("join", f"<{placeholder}>")))
    return Text.join(lines)


@router.command("join", "beitreten", args=[Arg("community")])
async def join(ctx: Context, community: str) -> Text:
    found = await _find(ctx, community)
    admin = _admin(ctx)
    if await admin.is_member(found.room_id, ctx.sender):
        return ctx.t("communities.already_member", title=Text.raw(found.title))
    try:
        await admin.invite(found.room_id, ctx.sender)
    except ActionRefused:
        raise UserError("communities.invite_failed", title=Text.raw(found.title)) from None
    space = await _known_space(ctx, admin)
    if space is not None and not await admin.is_member(space, ctx.sender):
        try:  # the space lists every community; being in it is a convenience, not a must
            await admin.invite(space, ctx.sender)
        except ActionRefused:
            pass
    return ctx.t("communities.invited", title=Text.raw(found.title))


async def _find(ctx: Context, text: str, typo_of: Command | None = None) -> Community:
    """The active community `text` names; else the closest slugs, or (for `!community <word>`,
    `typo_of` its command) the closest subcommands where the word looks like a mistyped one."""
    slug = text.strip().casefold()
    storage = ctx.services.storage.communities
    found = await storage.get(slug)
    if found is not None and found.archived_at is None:
        return found
    slugs = [c.slug for c in await storage.active()]
    close = process.extract(slug, slugs, scorer=fuzz.WRatio, limit=3, score_cutoff=70)
    if close:
        raise UserError("communities.unknown_suggest", slug=Text.code(text.strip()),
                        suggestions=Text.join((Text.code(m[0]) for m in close), ", "),
                        list=ctx.call("communities"))
    if typo_of is not None and typo_of.closest_subcommands(text):
        raise ctx.unknown_subcommand(text.strip(), of=typo_of)
    raise UserError("communities.unknown", slug=Text.code(text.strip()),
                    list=ctx.call("communities"))


# -- moderators ---------------------------------------------------------------------------------


@router.command("community", "community", aliases=["gemeinschaft"],
                args=[Arg("community", rest=True)])
async def community(ctx: Context, community: str) -> Text:
    """`!community <kurzname>`: one community; any other words are a subcommand mistyped."""
    word, _, more = community.strip().partition(" ")
    if more.strip():
        if ctx.command.closest_subcommands(word):
            raise ctx.unknown_subcommand(word)
        raise ctx.usage_error()
    return await _show(ctx, await _find(ctx, word, typo_of=ctx.command))


@router.subcommand("community", "create", "anlegen", aliases=["new", "neu", "erstellen"],
                   args=[Arg("community"), Arg("community_title", rest=True)],
                   level=Level.NETWORK_MODERATOR)
async def create_community(ctx: Context, community: str, community_title: str) -> Text:
    return await _create(ctx, _slug(community), community_title)


@router.subcommand("community", "link", "verknüpfen", aliases=["verbinden"],
                   args=[Arg("community"), Arg("community_room"),
                         Arg("community_title", rest=True, optional=True)],
                   level=Level.NETWORK_MODERATOR)
async def link_room(ctx: Context, community: str, community_room: str,
                    community_title: str = "") -> Text:
    return await _link(ctx, _slug(community), community_room, community_title)


@router.subcommand("community", "set", "setzen", aliases=["ändern"],
                   args=[Arg("community"), Arg("community_field", optional=True),
                         Arg("community_value", rest=True, optional=True)],
                   level=Level.NETWORK_MODERATOR)
async def set_field(ctx: Context, community: str, community_field: str = "",
                    community_value: str = "") -> Text:
    return await _set(ctx, await _find(ctx, community), community_field, community_value)


@router.subcommand("community", "archive", "archivieren", args=[Arg("community")],
                   level=Level.NETWORK_MODERATOR)
async def archive_community(ctx: Context, community: str) -> Text:
    return await _archive(ctx, await _find(ctx, community))


def _slug(text: str) -> str:
    slug = text.casefold()
    if not SLUG.match(slug):
        raise UserError("communities.bad_slug", slug=Text.code(text))
    return slug


async def _show(ctx: Context, found: Community) -> Text:
    members = await _admin(ctx).member_count(found.room_id)
    parts = [ctx.t("communities.detail", title=Text.raw(found.title), slug=Text.code(found.slug),
                   members=members, topic=Text.raw(found.topic or "–"))]
    if found.description:
        parts.append(Text.raw(found.description))
    parts.append(ctx.t("communities.how", join=ctx.call("join", found.slug)))
    return Text.join(parts, "\n\n")


async def _known_space(ctx: Context, admin: RoomAdmin) -> str | None:
    """The network's space if there is one yet: configured, or made by the bot earlier."""
    configured = _config(ctx.services).space
    if configured:
        space = await admin.find_room(configured)
        if space is None:
            raise UserError("communities.space_missing", space=Text.code(configured))
        return space
    return await ctx.services.storage.communities.space()


async def _space(ctx: Context, admin: RoomAdmin) -> str:
    """The network's space, made now when there is none yet (on first use)."""
    space = await _known_space(ctx, admin)
    if space is None:
        catalog, language = ctx.services.catalog, ctx.language
        space = await admin.create_room(
            name=catalog.text(language, "communities.space_name").plain,
            topic=catalog.text(language, "communities.space_topic").plain,
            moderators=[], space=True)
        await ctx.services.storage.communities.set_space(space)
    return space


async def _create(ctx: Context, slug: str, title_text: str) -> Text:
    title = one_line(title_text)
    if not title:
        raise ctx.usage_error()
    if len(title) > TITLE_MAX:
        raise UserError("communities.too_long", field=_field_words(ctx)["title"],
                        limit=TITLE_MAX)
    storage = ctx.services.storage.communities
    existing = await storage.get(slug)
    if existing is not None and existing.archived_at is None:
        raise UserError("communities.exists", slug=Text.code(slug))
    admin = _admin(ctx)
    space = await _space(ctx, admin)
    topic = ctx.t("communities.default_topic", title=title).plain
    room_id = await admin.create_room(name=title, topic=topic, moderators=[ctx.sender])
    # Remembered before anything else can fail: a retried command finds the slug taken, and
    # `!community link` with the same room repairs a missing space entry.
    await storage.add(Community(slug, title, topic, "", room_id, ctx.sender,
                                _now_ms(ctx.services)))
    await admin.add_to_space(space, room_id)
    await admin.invite(room_id, ctx.sender)
    return ctx.t("communities.created", title=Text.raw(title), slug=Text.code(slug),
                 join=ctx.call("join", slug))


async def _link(ctx: Context, slug: str, room_text: str, title_text: str) -> Text:
    admin = _admin(ctx)
    room_id = await admin.find_room(room_text)
    if room_id is None:
        raise UserError("communities.room_unknown", room=Text.code(room_text))
    storage = ctx.services.storage.communities
    existing = await storage.get(slug)
    if existing is not None and existing.archived_at is None and existing.room_id != room_id:
        raise UserError("communities.exists", slug=Text.code(slug))
    other = await storage.by_room(room_id)
    if other is not None and other.slug != slug:
        raise UserError("communities.room_taken", slug=Text.code(other.slug))
    title = one_line(title_text) or (existing.title if existing else slug)
    if len(title) > TITLE_MAX:
        raise UserError("communities.too_long", field=_field_words(ctx)["title"],
                        limit=TITLE_MAX)
    if not await admin.join(room_id):
        raise UserError("communities.cannot_join", room=Text.code(room_text))
    space = await _space(ctx, admin)
    # Linking the same room again is harmless: it repairs a missing space entry.
    await storage.add(Community(slug, title, existing.topic if existing else "",
                                existing.description if existing else "", room_id, ctx.sender,
                                _now_ms(ctx.services)))
    await admin.add_to_space(space, room_id)
    return ctx.t("communities.linked", title=Text.raw(title), slug=Text.code(slug))


async def _archive(ctx: Context, found: Community) -> Text:
    admin = _admin(ctx)
    await ctx.services.storage.communities.archive(found.slug, _now_ms(ctx.services))
    space = await _known_space(ctx, admin)
    if space is not None:
        await admin.remove_from_space(space, found.room_id)
    return ctx.t("communities.archived", title=Text.raw(found.title), slug=Text.code(found.slug))


async def _set(ctx: Context, found: Community, field_text: str, value_text: str) -> Text:
    field_name = lookup(FIELDS, field_text) if field_text else None
    words = _field_words(ctx)
    if field_name is None:
        raise UserError("communities.set_usage",
                        example=ctx.call(None, found.slug, words["topic"], "…"),
                        fields=Text.join((Text.code(words[f]) for f in FIELDS), ", "))
    value = visible_lines(value_text) if field_name == "description" else one_line(value_text)
    limit = {"title": TITLE_MAX, "topic": TOPIC_MAX, "description": DESCRIPTION_MAX}[field_name]
    if not value and field_name == "title":
        raise ctx.usage_error()
    if len(value) > limit:
        raise UserError("communities.too_long", field=words[field_name], limit=limit)
    await ctx.services.storage.communities.update(found.slug, **{field_name: value})
    if field_name == "topic":
        await _admin(ctx).set_topic(found.room_id, value)
    return ctx.t("communities.updated", slug=Text.code(found.slug),
                 field=Text.code(words[field_name]))


# -- welcomes -----------------------------------------------------------------------------------


async def welcome(services: Services, room_id: str, user_ids: Sequence[str],
                  language: str) -> Text | None:
    """The greeting for newcomers in a room, or None where nobody is greeted: the room's
    welcome is off, or it is no community room and its moderators set no welcome text."""
    text = await room_settings.setting(services, room_id, "welcome")
    if text == room_settings.OFF:
        return None
    found = await services.storage.communities.by_room(room_id)
    if text is None and found is None:
        return None
    catalog = services.catalog
    if text is not None:
        body = Text.raw(text)
    else:
        assert found is not None
        body = catalog.text(language, "communities.welcome_default",
                            title=Text.raw(found.title),
                            topic=Text.raw(found.topic or found.title),
                            help=command_line(services, language, "help"))
    names = Text.join((Text.mention(user) for user in user_ids), ", ")
    return catalog.text(language, "communities.welcome", names=names) + Text("\n\n", "\n\n") + body


def is_ignored(user_id: str, patterns: Sequence[str]) -> bool:
    """Whether a user id matches one of the `[communities] no_welcome` patterns (other bots,
    bridges); `*` stands for any characters."""
    return any(_glob(pattern).fullmatch(user_id) for pattern in patterns)


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.IGNORECASE)


FEATURE = Feature(
    "communities", router,
    schema=Schema("communities", communities_storage.MIGRATIONS,
                  repositories={"communities": communities_storage.CommunityRepository},
                  member_data=communities_storage.MEMBER_DATA,
                  move_room=communities_storage.move_room),
    section=("communities", CommunitySettings),
    configure=lambda settings: CommunityConfig(settings.communities.space))
