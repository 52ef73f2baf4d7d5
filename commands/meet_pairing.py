"""NExT-to-meet-you's pairing rounds: who is paired for the next date once its pairing time
has come (`pair_due_round`; the algorithm is `commands.pairing`), and what a group's room is
called and the first post in it (`room_name`, `introduction`). The bot's `PairingRooms` calls
these and makes the rooms."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from commands import pairing
from commands.framework import Reply, Services
from commands.i18n import Text
from commands.links import link
from commands.meet_schedule import (
    Meeting,
    View,
    config_of,
    current_schedule,
    meeting_on,
    meetings_between,
)
from commands.schedule import before
from storage.database import utc_ms
from storage.experts import Profile, topic_key
from storage.meet import GroupRow, Round
from storage.text import fold

STATE_EVENT = "org.nextnetz.pairing"  # in each pairing room: which group it belongs to


def participant_of(user_id: str, profile: Profile | None) -> pairing.Participant:
    """What pairing compares, from a directory profile (only a consented one exists)."""
    if profile is None or profile.consent_at is None:
        return pairing.Participant(user_id)
    org = fold(profile.organisation).strip() if profile.organisation else None
    return pairing.Participant(user_id, org or None, profile.level, profile.state,
                               frozenset(topic_key(t) for t in profile.topics if topic_key(t)))


def round_seed(seed: str, meeting: Meeting) -> str:
    return f"{seed}:{meeting.key}"


async def due_meeting(services: Services, now: datetime) -> Meeting | None:
    """The next meeting whose pairing time has come and that has no round yet."""
    config = config_of(services)
    if not config.pairing:
        return None
    for meeting in await meetings_between(services, now, now + config.pairing_lead
                                          + timedelta(days=2)):
        if before(meeting.starts_at.astimezone(config.timezone), config.pairing_lead) > now:
            return None  # the nearest date is not yet due, the later ones even less
        if await services.storage.meet.round(meeting.key) is None:
            return meeting
    return None


async def pair_due_round(services: Services) -> Meeting | None:
    """Pair everyone taking part for the next date, if its pairing time has come: the round
    and its groups are stored in one transaction, once. Returns the meeting paired for."""
    now = services.clock.now()
    meeting = await due_meeting(services, now)
    if meeting is None:
        return None
    config = config_of(services)
    storage = services.storage
    user_ids = await storage.meet.active(utc_ms(now))
    profiles = await storage.experts.get_many(user_ids)
    people = [participant_of(u, profiles.get(u)) for u in user_ids]
    recent = await storage.meet.recent_partners(config.avoid_repeat_rounds)
    groups = pairing.pair(people, recent, round_seed(config.seed, meeting))
    added = await storage.meet.add_round(
        Round(meeting.key, utc_ms(meeting.starts_at), utc_ms(now), len(people)),
        [g.members for g in groups], keep_members_of=config.avoid_repeat_rounds + 1)
    return meeting if added else None

async def introduction(services: Services, group: GroupRow, language: str) -> tuple[
        str, Reply]:
    """The room's name and the first post in a group's room: who they are, their
    organisations, shared topics, the date and the link."""
    view = View(services, language)
    profiles = await services.storage.experts.get_many(group.members)
    meeting = await meeting_on(services, group.round)
    schedule = await current_schedule(services)
    people = []
    for user_id in group.members:
        profile = profiles.get(user_id)
        if profile is None or profile.consent_at is None:
            people.append(view.t("intro_person_unknown", person=Text.mention(user_id)))
            continue
        details = [d for d in (profile.organisation, profile.role, _level(view, profile.level),
                               profile.municipality or profile.state) if d]
        people.append(view.t("intro_person", person=Text.mention(user_id),
                             name=profile.display_name or user_id,
                             details=", ".join(details) or "–"))
    parts = [view.t("intro_pair" if len(group.members) == 2 else "intro_trio"),
             Text.join(people)]
    shared = _shared_topics([profiles.get(u) for u in group.members])
    if shared:
        parts.append(view.t("intro_topics", topics=", ".join(shared)))
    else:
        parts.append(view.t("intro_no_topics"))
    if meeting is not None:
        parts.append(view.t("intro_when", when=view.when(meeting)))
    if schedule.link:
        parts.append(view.t("intro_link", link=link(schedule.link)))
    parts.append(view.t("intro_outro"))
    return room_name(services, group.round, language), Reply(Text.join(parts, "\n\n"),
                                                            mentions=group.members)


def room_name(services: Services, round_date: str, language: str) -> str:
    return services.catalog.template(language, "meet.room_name").format(
        date=date.fromisoformat(round_date).strftime("%d.%m.%Y"))


def _level(view: View, level: str | None) -> str | None:
    if not level:
        return None
    key = f"profile.levels.{level}"
    catalog = view.services.catalog
    return catalog.template(view.language, key) if catalog.has(view.language, key) else level


def _shared_topics(profiles: list[Profile | None]) -> list[str]:
    """Topics at least two of them share, as the first of them spelled it."""
    spelled: dict[str, str] = {}
    counts: dict[str, int] = {}
    for profile in profiles:
        if profile is None or profile.consent_at is None:
            continue
        for topic in dict.fromkeys(profile.topics):
            key = topic_key(topic)
            if key:
                spelled.setdefault(key, topic)
                counts[key] = counts.get(key, 0) + 1
    return sorted((spelled[k] for k, n in counts.items() if n >= 2), key=str.casefold)
