"""The scheduler's sources for NExT-to-meet-you (see `commands.schedule`): `MeetReminders`
posts before each date into every room where `meet_reminders` is on, and `MeetFollowUps` asks
each pair's room after a date whether they met."""

from __future__ import annotations

from datetime import datetime, timedelta

from babel.dates import format_timedelta

from commands import room_settings
from commands.dates import offset_label
from commands.framework import Reply, Services
from commands.i18n import Text, locale_of
from commands.links import link
from commands.meet_schedule import (
    Meeting,
    View,
    config_of,
    current_schedule,
    meeting_on,
    meetings_between,
)
from commands.schedule import Occurrence, reminder_horizon, reminders_within
from storage.database import utc_ms
from storage.meet import FOLLOW_UP

ASK_AFTER = timedelta(hours=1)  # after a date's end, its groups are asked whether they met
ASK_GRACE = timedelta(days=3)  # … and still asked that late after a downtime


class MeetReminders:
    """The scheduler's source of reminders: for each date and each offset of `[meet]
    reminders`, one post into every room where `meet_reminders` is on (the configured rooms
    unless switched off there, and rooms whose moderators switched it on). Keyed
    `meet:<date>:<start>:<offset>:<room>`: a moved date is reminded again for its new time."""

    name = "meet"

    def __init__(self, services: Services) -> None:
        self.services = services

    async def occurrences(self, start: datetime, end: datetime) -> list[Occurrence]:
        config = config_of(self.services)
        if not config.reminders:
            return []
        rooms = await room_settings.rooms_switched_on(self.services, "meet_reminders")
        if not rooms:
            return []
        latest = reminder_horizon(end, config.reminders)
        found: list[Occurrence] = []
        for meeting in await meetings_between(self.services, start, latest):
            local = meeting.starts_at.astimezone(config.timezone)
            for offset, due in reminders_within(local, config.reminders, start, end):
                key = f"meet:{meeting.key}:{local:%Y%m%dT%H%M%S}:{offset_label(offset)}"
                found += [Occurrence(f"{key}:{room}", self.name, due, room, meeting.key)
                          for room in rooms]
        return sorted(found, key=lambda o: (o.due, o.key))

    async def render(self, occurrence: Occurrence, late: bool) -> Reply | None:
        meeting = await meeting_on(self.services, occurrence.subject)
        now = self.services.clock.now()
        tz = config_of(self.services).timezone
        if meeting is None or meeting.starts_at <= now:
            return None
        if f"{meeting.starts_at.astimezone(tz):%Y%m%dT%H%M%S}" != occurrence.key.split(":")[2]:
            return None  # moved since: the new time has reminders of its own
        if not await room_settings.is_on(self.services, occurrence.room_id, "meet_reminders"):
            return None
        language = await room_settings.language(self.services, occurrence.room_id)
        view = View(self.services, language)
        schedule = await current_schedule(self.services)
        relative = format_timedelta(meeting.starts_at - now, add_direction=True,
                                    locale=locale_of(view.language))
        header = view.t("reminder", relative=relative)
        if late:
            header = header + Text(" ", " ") + view.t("reminder_late")
        parts = [header, view.t("reminder_when", when=view.when(meeting))]
        if schedule.link:
            parts.append(view.t("reminder_link", link=link(schedule.link)))
        parts.append(view.t("reminder_pairing", join=view.call("meet.join")))
        return Reply(Text.join(parts, "\n\n"))


class MeetFollowUps:
    """The scheduler's source of the question after a date: one post into each group's room,
    `ASK_AFTER` the date's end, keyed `meet-ask:<group>`."""

    name = "meet-followups"

    def __init__(self, services: Services) -> None:
        self.services = services

    async def occurrences(self, start: datetime, end: datetime) -> list[Occurrence]:
        # Rounds are stored with their start at pairing time; the date may have moved since.
        earliest, latest = start - timedelta(days=35), end + timedelta(days=35)
        found = []
        meetings: dict[str, Meeting | None] = {}  # one look-up per round, not per group
        for key, room_id, _ in await self.services.storage.meet.groups_with_rooms_between(
                utc_ms(earliest), utc_ms(latest)):
            round_date = key.rsplit(":", 1)[0]
            if round_date not in meetings:
                meetings[round_date] = await meeting_on(self.services, round_date)
            meeting = meetings[round_date]
            if meeting is None:
                continue
            due = meeting.ends_at + ASK_AFTER
            if start <= due < end:
                found.append(Occurrence(f"meet-ask:{key}", self.name, due, room_id, key,
                                        grace=ASK_GRACE))
        return found

    async def render(self, occurrence: Occurrence, late: bool) -> Reply | None:
        language = await room_settings.language(self.services, occurrence.room_id)
        view = View(self.services, language)
        # The bot puts 👍 and 👎 on it when sent (`storage.outbox`): one tap answers.
        return Reply(view.t("ask", yes=view.call("met", view.word("yes")),
                            no=view.call("met", view.word("no"))),
                     record_as=(FOLLOW_UP, occurrence.subject))
