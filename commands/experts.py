"""The expert directory: opt-in profiles (`!profil`), search (`!experten`), topics (`!themen`).

Members own their data: nothing is stored before `!profil zustimmen`; `!profil löschen` deletes
everything the bot holds about the asker, not only the profile (`storage.member_data`: workshop
registrations, NExT-to-meet-you, …; records others rely on keep a pseudonym), `!profil export`
sends all of it as JSON in a direct message. Bot admins may remove the same for someone with
`!profil entfernen <nutzer-id>`; the removal is logged without content.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from urllib.parse import quote

from pydantic import Field, field_validator
from rapidfuzz import fuzz, process

from commands import erasure
from commands.config_fields import Section, problem
from commands.feature import Feature
from commands.framework import (
    Arg,
    Attachment,
    Context,
    Level,
    Reply,
    Router,
    UserError,
    keyword,
    lookup,
)
from commands.i18n import Text, escape_markdown
from storage import experts as experts_storage
from storage.expert_search import (
    COUNT_LIMIT,
    DEFAULT_SYNONYMS,
    ExpertSearch,
    SearchHit,
    SearchQuery,
    Synonyms,
    compiled_synonyms,
)
from storage.experts import (
    LEVELS,
    MAX_LANGUAGES,
    MAX_LENGTH,
    MAX_TOPICS,
    Profile,
    normalize_level,
    topic_key,
)
from storage.schema import Schema
from storage.text import STATES, clean_text, normalize_state

router = Router("experts")

PAGE_SIZE = 5
TOP_TOPICS = 20
MAX_QUERY_LENGTH = 300
MAX_TERMS = 10
SUGGESTIONS = 3
SUGGESTION_CUTOFF = 75.0
SUGGESTION_POOL = 2000  # typos are looked for among this many of the most common topics



class ExpertSettings(Section):
    # Groups of words that mean the same in `!experts` searches; a group may hold phrases.
    synonyms: list[list[str]] = Field(default_factory=lambda: [list(g) for g in DEFAULT_SYNONYMS])
    # Longest profile bio, in characters.
    bio_max_length: int = Field(default=500, ge=20, le=5000)

    @field_validator("synonyms")
    @classmethod
    def _groups_valid(cls, value: list[list[str]]) -> list[list[str]]:
        for group in value:
            words = [w.strip() for w in group if w.strip()]
            if len(words) < 2:
                raise problem("each synonym group needs at least two words")
            if not all(any(c.isalnum() for c in w) for w in words):
                raise problem("a synonym needs at least one letter or digit")
        return [[w.strip() for w in group if w.strip()] for group in value]


@dataclass(frozen=True)
class ExpertConfig:
    """The directory's settings (`[experts]` in the configuration)."""

    synonyms: list[list[str]] = field(default_factory=list)
    bio_max_length: int = 500

    @classmethod
    def default(cls) -> ExpertConfig:
        return cls([list(group) for group in DEFAULT_SYNONYMS], 500)

    def compiled_synonyms(self) -> Synonyms:
        return compiled_synonyms(tuple(tuple(group) for group in self.synonyms))


def config_of(ctx: Context) -> ExpertConfig:
    return ctx.services.configs.get("experts") or ExpertConfig.default()


# -- value words of `!profil themen` and field words of `!profil setzen` (compared folded:
# `hinzufügen` = `hinzufuegen` = `HINZUFÜGEN`) ------------------------------------------------

TOPIC_CHANGES = {
    "add": ("add", "hinzufuegen", "dazu", "plus"),
    "remove": ("remove", "entfernen", "loeschen", "minus"),
}
FIELDS = {
    "display_name": ("name", "displayname", "anzeigename"),
    "organisation": ("organisation", "organization", "org", "behoerde", "arbeitgeber"),
    "level": ("level", "ebene", "verwaltungsebene"),
    "municipality": ("municipality", "kommune", "gemeinde", "ort", "stadt"),
    "state": ("state", "bundesland"),
    "role": ("role", "rolle", "funktion", "position"),
    "bio": ("bio", "beschreibung", "about", "ueber", "uebermich"),
    "languages": ("languages", "language", "sprachen", "sprache"),
    "topics": ("topics", "themen"),
}
# How those words (and the search's page flag) are written in each language, for the hints
# in replies.
WORDS = {
    "de": {"add": "hinzufügen", "remove": "entfernen", "page": "--seite",
           "display_name": "name", "organisation": "organisation", "level": "ebene",
           "municipality": "kommune", "state": "bundesland", "role": "rolle", "bio": "bio",
           "languages": "sprachen", "topics": "themen"},
    "en": {"add": "add", "remove": "remove", "page": "--page",
           "display_name": "name", "organisation": "organisation", "level": "level",
           "municipality": "municipality", "state": "state", "role": "role", "bio": "bio",
           "languages": "languages", "topics": "topics"},
}
FILTERS = {"state": "state", "bundesland": "state", "level": "level", "ebene": "level",
           "org": "org", "organisation": "org", "organization": "org"}
PAGE_FLAGS = ("--page", "--seite")


def _words(ctx: Context) -> dict[str, str]:
    return WORDS.get(ctx.language, WORDS["en"])


def _local_time(ctx: Context, moment: datetime | None) -> str:
    if moment is None:
        return "–"
    tz = ctx.services.clock.now().tzinfo
    return moment.astimezone(tz).strftime(ctx.services.catalog.template(ctx.language,
                                                                        "profile.time_format"))


def person_link(user_id: str, name: str | None) -> Text:
    """The person's name linking to matrix.to: a link, no mention, so nobody is pinged."""
    label = " ".join((name or "").split()) or user_id.removeprefix("@").split(":", 1)[0]
    url = "https://matrix.to/#/" + quote(user_id, safe="@:")
    return Text(f"[{escape_markdown(label)}]({url})", f"{label} ({url})")


# -- !profile -----------------------------------------------------------------------------------


@router.command("profile", "profil",
                args=[Arg("profile_subcommand", rest=True, optional=True)])
async def profile(ctx: Context, profile_subcommand: str | None = None) -> Text:
    """`!profil`: the asker's profile; any word after it is a subcommand mistyped."""
    if profile_subcommand is not None:
        raise ctx.unknown_subcommand(profile_subcommand.split()[0])
    return await _show(ctx)


@router.subcommand("profile", "show", "anzeigen", aliases=["zeigen"])
async def show(ctx: Context) -> Text:
    return await _show(ctx)


@router.subcommand("profile", "consent", "zustimmen", aliases=["zustimmung", "einwilligen"])
async def consent(ctx: Context) -> Text:
    at = ctx.services.clock.now()
    found, new = await ctx.services.storage.experts.give_consent(ctx.sender, at)
    if not new:
        return ctx.t("profile.consent_already", consent_at=_local_time(ctx, found.consent_at))
    words = _words(ctx)
    return ctx.t("profile.consent_given", consent_at=_local_time(ctx, found.consent_at),
                 set=ctx.call("profile.set", words["organisation"], "Stadt Musterstadt"),
                 topics=ctx.call("profile.topics", words["add"], "KI"))


@router.subcommand("profile", "set", "setzen", aliases=["setze", "ändern"],
                   args=[Arg("profile_field", optional=True),
                         Arg("profile_value", rest=True, optional=True)])
async def set_field(ctx: Context, profile_field: str | None = None,
                    profile_value: str | None = None) -> Text:
    return await _set(ctx, profile_field or "", (profile_value or "").strip())


@router.subcommand("profile", "topics", "themen", aliases=["topic", "thema"],
                   args=[Arg("topic_change", optional=True),
                         Arg("profile_topics", rest=True, optional=True)])
async def edit_topics(ctx: Context, topic_change: str | None = None,
                      profile_topics: str | None = None) -> Text:
    """`!profil themen hinzufügen|entfernen <themen>`: the choice word is a value of this
    subcommand (TOPIC_CHANGES), not a subcommand of its own."""
    return await _topics(ctx, topic_change or "", profile_topics or "")


@router.subcommand("profile", "export", "export", aliases=["exportieren"])
async def export(ctx: Context) -> Text | list[Reply]:
    return await _export(ctx)


@router.subcommand("profile", "delete", "löschen")
async def delete(ctx: Context) -> Text | list[Reply]:
    erased = await ctx.services.storage.member_data.delete(ctx.sender, ctx.services.clock.now())
    if not erased.found:
        return ctx.t("profile.nothing_stored")
    return [Reply(ctx.t("profile.deleted")), *await erasure.follow_ups(ctx, erased)]


_USER_ID = re.compile(r"^@[^\s:]+:[A-Za-z0-9.\-\[\]:]+$")


@router.subcommand("profile", "remove", "entfernen", args=[Arg("profile_member")],
                   level=Level.ADMIN)
async def remove(ctx: Context, profile_member: str) -> Text | list[Reply]:
    """A bot admin removes everything stored about someone; logged without content."""
    if not _USER_ID.match(profile_member):
        raise UserError("profile.remove_usage",
                        example=ctx.call("profile.remove", "@name:example.org"))
    storage, now = ctx.services.storage, ctx.services.clock.now()
    async with storage.db.transaction():
        # The moderation log keeps whose data an admin removed, and gets this removal.
        erased = await storage.member_data.delete(profile_member, now,
                                                  keep={"profile_removals.user_id"})
        if erased.found:
            await storage.experts.record_removal(profile_member, ctx.sender, now)
    if not erased.found:
        return ctx.t("profile.remove_none", user=Text.code(profile_member))
    return [Reply(ctx.t("profile.removed", user=Text.code(profile_member))),
            *await erasure.follow_ups(ctx, erased)]


async def _show(ctx: Context) -> Text:
    found = await ctx.services.storage.experts.get(ctx.sender)
    if found is None:
        return ctx.t("profile.none", consent=ctx.call("profile.consent"),
                     privacy=ctx.t("profile.privacy"))
    return _render_profile(ctx, found)


def _render_profile(ctx: Context, found: Profile) -> Text:
    catalog = ctx.services.catalog
    values = {
        "display_name": found.display_name, "organisation": found.organisation,
        "level": ctx.t(f"profile.levels.{found.level}") if found.level else None,
        "municipality": found.municipality, "state": found.state, "role": found.role,
        "topics": ", ".join(found.topics), "languages": ", ".join(found.languages),
        "bio": found.bio,
    }
    lines = Text.join(
        ctx.t("profile.line", field=ctx.t(f"profile.fields.{name}"),
              value=value if isinstance(value, Text) else Text.raw(value or "–"))
        for name, value in values.items()
    )
    placeholder = (catalog.template(ctx.language, "profile.field_word"),
                   catalog.template(ctx.language, "profile.value_word"))
    footer = ctx.t("profile.footer", consent_at=_local_time(ctx, found.consent_at),
                   set=ctx.call("profile.set", f"<{placeholder[0]}>", f"<{placeholder[1]}>"),
                   delete=ctx.call("profile.delete"), export=ctx.call("profile.export"))
    # Blank lines around the list: a line right after it would continue its last item.
    return Text.join([ctx.t("profile.title"), lines, footer], "\n\n")


async def _consented(ctx: Context) -> Profile:
    """The asker's profile; without consent the answer is the consent request."""
    found = await ctx.services.storage.experts.get(ctx.sender)
    if found is None:
        raise UserError("profile.consent_needed", privacy=ctx.t("profile.privacy"),
                        consent=ctx.call("profile.consent"))
    return found


async def _export(ctx: Context) -> Text | list[Reply]:
    records = await ctx.services.storage.member_data.export(ctx.sender)
    if not records:
        return ctx.t("profile.nothing_stored")
    [found] = records.pop("profiles.user_id", [None])
    removals = records.pop("profile_removals.user_id", [])
    data = {
        "user_id": ctx.sender,
        "exported_at": ctx.services.clock.now().isoformat(),
        "profile": found,
        "removals_by_admins": [{"removed_at": r["removed_at"]} for r in removals],
        # every other row that names the member, as "table.column": [rows]; times in UTC
        "records": records,
    }
    payload = json.dumps(data, ensure_ascii=False, indent=2).encode()
    filename = ctx.services.catalog.template(ctx.language, "profile.export_filename")
    return [
        Reply(ctx.t("profile.export_caption"),
              attachment=Attachment(filename, "application/json", payload), direct=True),
        Reply(ctx.t("profile.export_sent")),
    ]


# -- setting fields -----------------------------------------------------------------------------


async def _set(ctx: Context, field_word: str, raw: str) -> Text:
    found = await _consented(ctx)
    name = lookup(FIELDS, field_word) if field_word else None
    if name is None:
        raise UserError("profile.unknown_field" if field_word else "profile.which_field",
                        field=field_word, fields=_field_list(ctx),
                        example=ctx.call("profile.set", _words(ctx)["state"], "Hessen"))
    label = ctx.t(f"profile.fields.{name}")
    if not raw:
        raise UserError("profile.value_needed", field=label,
                        example=ctx.call("profile.set", field_word, "-"))
    clear = raw == "-"
    updated = _with_value(ctx, found, name, raw, label, clear)
    updated = replace(updated, updated_at=ctx.services.clock.now())
    await ctx.services.storage.experts.save(updated)
    if clear:
        return ctx.t("profile.cleared", field=label)
    return ctx.t("profile.saved", field=label, value=_shown(ctx, updated, name))


def _field_list(ctx: Context) -> Text:
    words = _words(ctx)
    return Text.join((Text.code(words[name]) for name in FIELDS), ", ")


def _shown(ctx: Context, found: Profile, name: str) -> Text:
    if name == "level":
        return ctx.t(f"profile.levels.{found.level}")
    if name in ("topics", "languages"):
        return Text.raw(", ".join(getattr(found, name)))
    return Text.raw(getattr(found, name) or "–")


def _check_length(ctx: Context, label: Text, value: str, limit: int) -> None:
    if len(value) > limit:
        raise UserError("profile.too_long", field=label, max=limit, length=len(value))


def _with_value(ctx: Context, found: Profile, name: str, raw: str, label: Text,
                clear: bool) -> Profile:
    if name in ("topics", "languages"):
        items = [] if clear else _items(raw)
        if name == "topics":
            return replace(found, topics=_checked_topics(ctx, items))
        if len(items) > MAX_LANGUAGES:
            raise UserError("profile.too_many", field=label, max=MAX_LANGUAGES)
        for item in items:
            _check_length(ctx, label, item, MAX_LENGTH["language"])
        return replace(found, languages=list(dict.fromkeys(items)))
    if clear:
        return replace(found, **{name: None})
    value = clean_text(raw)
    if name == "state":
        state = normalize_state(value)
        if state is None:
            raise UserError("profile.bad_state", value=value, states=_state_list())
        return replace(found, state=state)
    if name == "level":
        level = normalize_level(value)
        if level is None:
            raise UserError("profile.bad_level", value=value, levels=_level_list(ctx))
        return replace(found, level=level)
    limit = config_of(ctx).bio_max_length if name == "bio" else MAX_LENGTH[name]
    _check_length(ctx, label, value, limit)
    return replace(found, **{name: value})


def _items(raw: str) -> list[str]:
    """A comma- or semicolon-separated list; empty entries dropped."""
    return [item for item in (clean_text(part) for part in re.split(r"[,;]", raw)) if item]


def _checked_topics(ctx: Context, topics: list[str]) -> list[str]:
    label = ctx.t("profile.fields.topics")
    unique: dict[str, str] = {}
    for topic in topics:
        _check_length(ctx, label, topic, MAX_LENGTH["topic"])
        key = topic_key(topic)
        if not key:
            raise UserError("profile.bad_topic", topic=topic)
        unique.setdefault(key, topic)
    if len(unique) > MAX_TOPICS:
        raise UserError("profile.too_many", field=label, max=MAX_TOPICS)
    return list(unique.values())


def _state_list() -> str:
    return ", ".join(name for name, _, _ in STATES)


def _level_list(ctx: Context) -> Text:
    return Text.join((ctx.t("profile.level_choice", word=Text.code(level),
                            meaning=ctx.t(f"profile.levels.{level}")) for level in LEVELS), ", ")


async def _topics(ctx: Context, change_word: str, raw: str) -> Text:
    found = await _consented(ctx)
    words = _words(ctx)
    op = lookup(TOPIC_CHANGES, change_word) if change_word else None
    items = _items(raw)
    if op is None or not items:
        raise UserError("profile.topics_usage",
                        add=ctx.call("profile.topics", words["add"], "KI, OZG"),
                        remove=ctx.call("profile.topics", words["remove"], "OZG"),
                        topics=Text.raw(", ".join(found.topics) or "–"))
    have = {topic_key(t): t for t in found.topics}
    if op == "add":
        topics = _checked_topics(ctx, [*found.topics, *items])
    else:
        missing = [item for item in items if topic_key(item) not in have]
        if missing:
            raise UserError("profile.topic_missing", topic=", ".join(missing),
                            topics=Text.raw(", ".join(found.topics) or "–"))
        drop = {topic_key(item) for item in items}
        topics = [t for t in found.topics if topic_key(t) not in drop]
    if topics == found.topics:
        return ctx.t("profile.topics_unchanged", topics=Text.raw(", ".join(topics) or "–"))
    await ctx.services.storage.experts.save(
        replace(found, topics=topics, updated_at=ctx.services.clock.now()))
    return ctx.t("profile.topics_saved", topics=Text.raw(", ".join(topics) or "–"))


# -- !experts -----------------------------------------------------------------------------------

_QUERY_PART = re.compile(
    r'(?P<key>[^\W\d_]+):(?:"(?P<quoted>[^"]*)"?|(?P<value>[^\s"]*))'
    r'|"(?P<phrase>[^"]*)"?'
    r'|(?P<word>[^\s"]+)'
)


@dataclass(frozen=True)
class ParsedQuery:
    query: SearchQuery
    page: int
    text: str  # the search words without filters and page, for suggestions


def parse_query(text: str, synonyms: Synonyms | None = None) -> ParsedQuery:
    """`KI state:Hessen org:"Stadt Wiesbaden" --page 2` → search words, filters, page.

    Raises UserError with a message for the member when the query cannot be used.
    """
    if len(text) > MAX_QUERY_LENGTH:
        raise UserError("experts.too_long", max=MAX_QUERY_LENGTH)
    terms: list[str] = []
    filters: dict[str, str] = {}
    page = 1
    page_next = False
    for match in _QUERY_PART.finditer(text):
        key, word = match.group("key"), match.group("word")
        if page_next:
            page_next = False
            page = _page(match.group(0))
            continue
        if key is not None and keyword(key) in FILTERS:
            value = match.group("quoted") if match.group("quoted") is not None \
                else match.group("value")
            value = clean_text(value or "")
            if not value:
                raise UserError("experts.empty_filter", filter=Text.code(f"{key}:"))
            filters[FILTERS[keyword(key)]] = value
        elif key is not None:
            terms.append(match.group(0))
        elif match.group("phrase") is not None:
            terms.append(match.group("phrase"))
        elif word is not None and word.casefold() in PAGE_FLAGS:
            page_next = True
        elif word is not None and word.casefold().split("=", 1)[0] in PAGE_FLAGS \
                and "=" in word:
            page = _page(word.split("=", 1)[1])
        else:
            terms.append(word)
    if page_next:
        raise UserError("experts.bad_page")
    terms = [t for t in terms if any(c.isalnum() for c in t)]
    if len(terms) > MAX_TERMS:
        raise UserError("experts.too_many_terms", max=MAX_TERMS)
    state = level = None
    if "state" in filters:
        state = normalize_state(filters["state"])
        if state is None:
            raise UserError("experts.bad_state", value=filters["state"], states=_state_list())
    if "level" in filters:
        level = normalize_level(filters["level"])
        if level is None:
            raise UserError("experts.bad_level", value=filters["level"],
                            levels=", ".join(LEVELS))
    organisation = filters.get("org")
    if organisation is not None and not any(c.isalnum() for c in organisation):
        raise UserError("experts.empty_filter", filter=Text.code("org:"))
    query = SearchQuery(tuple(terms), state, level, organisation, synonyms)
    return ParsedQuery(query, page, " ".join(terms))


def _page(text: str) -> int:
    try:
        page = int(text)
    except ValueError:
        raise UserError("experts.bad_page") from None
    if not 1 <= page <= 10_000:
        raise UserError("experts.bad_page")
    return page


@router.command("experts", "experten", aliases=["expert", "experte"],
                args=[Arg("search", rest=True, optional=True)])
async def experts(ctx: Context, search: str | None = None) -> Text:
    config = config_of(ctx)
    text = (search or "").strip()
    parsed = parse_query(text, config.compiled_synonyms()) if text else None
    query = parsed.query if parsed else None
    if query is None or not (query.terms or query.state or query.level or query.organisation):
        raise UserError("experts.empty",
                        example=ctx.call(None, "KI", "state:Hessen"),
                        example_org=ctx.call(None, "OZG", 'org:"Stadt Wiesbaden"'),
                        topics=ctx.call("topics"))
    page = parsed.page
    total, hits = await ctx.services.storage.expert_search.search(query, PAGE_SIZE,
                                                            (page - 1) * PAGE_SIZE)
    shown = Text.code(_without_page(text))
    if total == 0:
        return await _no_hits(ctx, parsed, shown)
    many = total > COUNT_LIMIT  # counting stopped there
    pages = (total + PAGE_SIZE - 1) // PAGE_SIZE
    if not hits:
        if many:
            raise UserError("experts.no_page_many", page=page)
        raise UserError("experts.no_page", page=page, pages=pages, total=total)
    first = (page - 1) * PAGE_SIZE + 1
    header = ctx.t("experts.header_many" if many else "experts.header",
                   total=COUNT_LIMIT if many else total, count=total, query=shown, first=first,
                   last=first + len(hits) - 1)
    # Paragraph, numbered list (starting at `first`), paragraph: blank lines keep them apart.
    parts = [header, Text.join(_hit_line(ctx, first + i, hit, bool(query.terms))
                               for i, hit in enumerate(hits))]
    more = ctx.call(None, _without_page(text), _words(ctx)["page"], str(page + 1))
    if many and len(hits) == PAGE_SIZE:
        parts.append(ctx.t("experts.more_many", page=page, next=more))
    elif page < pages:
        parts.append(ctx.t("experts.more", page=page, pages=pages, next=more))
    return Text.join(parts, "\n\n")


_PAGE_PART = re.compile(r"(?i)(?:^|\s)--(?:page|seite)(?:=|\s+)\S*")


def _without_page(text: str) -> str:
    return " ".join(_PAGE_PART.sub(" ", text).split())


def _hit_line(ctx: Context, number: int, hit: SearchHit, searched_text: bool) -> Text:
    details = [Text.raw(part) for part in (hit.organisation, hit.state) if part]
    topics = hit.matched_topics if searched_text else hit.topics[:5]
    if topics:
        details.append(ctx.t("experts.hit_topics", topics=", ".join(topics)))
    return ctx.t("experts.hit", number=number, person=person_link(hit.user_id, hit.display_name),
                 details=Text.join(details, " · ") if details else Text.raw("–"))


async def _no_hits(ctx: Context, parsed: ParsedQuery, shown: Text) -> Text:
    suggestions = await closest_topics(ctx, parsed.text) if parsed.text else []
    if suggestions:
        return ctx.t("experts.none_suggest", query=shown, suggestions=Text.join(
            (ctx.call(None, topic) for topic in suggestions), ", "))
    return ctx.t("experts.none", query=shown, topics=ctx.call("topics"))


async def closest_topics(ctx: Context, text: str, limit: int = SUGGESTIONS) -> list[str]:
    """Up to `limit` of the SUGGESTION_POOL most common topics that look like `text`."""
    labels = [t.topic for t in await ctx.services.storage.experts.top_topics(SUGGESTION_POOL)]
    keys = [topic_key(label) for label in labels]
    found = process.extract(topic_key(text), keys, scorer=fuzz.WRatio, limit=limit,
                            score_cutoff=SUGGESTION_CUTOFF)
    return [labels[index] for _, _, index in found]


# -- !topics ------------------------------------------------------------------------------------


@router.command("topics", "themen")
async def topics(ctx: Context) -> Text:
    experts_ = ctx.services.storage.experts
    top = await experts_.top_topics(TOP_TOPICS)
    if not top:
        return ctx.t("topics.none", add=ctx.call("profile.topics", _words(ctx)["add"], "KI"))
    return Text.join([
        ctx.t("topics.header", count=len(top), profiles=await experts_.count()),
        Text.join(ctx.t("topics.line", topic=t.topic, profiles=t.profiles) for t in top),
        ctx.t("topics.search", example=ctx.call("experts", top[0].topic)),
    ], "\n\n")


FEATURE = Feature(
    "experts", router,
    schema=Schema("experts", experts_storage.MIGRATIONS,
                  repositories={"experts": experts_storage.ExpertRepository,
                                "expert_search": ExpertSearch},
                  member_data=experts_storage.MEMBER_DATA),
    section=("experts", ExpertSettings),
    configure=lambda settings: ExpertConfig(settings.experts.synonyms,
                                            settings.experts.bio_max_length))
