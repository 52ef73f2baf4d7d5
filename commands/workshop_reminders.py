"""The scheduler's source of workshop reminders (see `commands.schedule`): for each planned
workshop and each offset of `[workshops] reminders` one post into the workshop's room (else
into each room of `[workshops] rooms`), mentioning the registered members; into the thread of
the bot's post of the workshop there, if it has one."""

from __future__ import annotations

from datetime import datetime

from babel.dates import format_timedelta

from commands import room_settings
from commands.dates import offset_label
from commands.framework import Reply, Services
from commands.i18n import Text, locale_of
from commands.schedule import Occurrence, reminder_horizon, reminders_within
from commands.workshop_view import View, config_of
from storage.workshops import REGISTERED, Counts


class WorkshopReminders:
    """One occurrence per planned workshop, reminder offset and target room, keyed
    `workshop:<number>:<start>:<offset>:<room>` and due `before(start, offset)` (whole days on
    the wall clock: a day before 18:00 is 18:00, also across a clock change). The post
    mentions the registered members, so they are notified; those on the waiting list are not.
    """

    name = "workshops"

    def __init__(self, services: Services) -> None:
        self.services = services

    async def occurrences(self, start: datetime, end: datetime) -> list[Occurrence]:
        config = config_of(self.services)
        if not config.reminders:
            return []
        latest = reminder_horizon(end, config.reminders)
        found: list[Occurrence] = []
        for w in await self.services.storage.workshops.starting_between(start, latest):
            rooms = [room for room in ([w.room_id] if w.room_id else config.rooms)
                     if await room_settings.is_on(self.services, room, "workshop_reminders")]
            local_start = w.starts_at.astimezone(config.timezone)
            for offset, due in reminders_within(local_start, config.reminders, start, end):
                if w.created_at is not None and due < w.created_at:
                    continue  # it did not exist yet when this reminder was due
                # The start is part of the key: a workshop moved after a reminder went out
                # gets its reminders again, for the new time.
                key = f"workshop:{w.number}:{local_start:%Y%m%dT%H%M}:{offset_label(offset)}"
                found += [Occurrence(f"{key}:{room}", self.name, due, room, str(w.number))
                          for room in rooms]
        return sorted(found, key=lambda o: (o.due, o.key))

    async def render(self, occurrence: Occurrence, late: bool) -> Reply | None:
        storage = self.services.storage
        try:
            number = int(occurrence.subject or occurrence.key.split(":")[1])
        except (IndexError, ValueError):
            return None
        w = await storage.workshops.get(number)
        now = self.services.clock.now()
        if w is None or w.cancelled or w.starts_at <= now:
            return None
        if not await room_settings.is_on(self.services, occurrence.room_id, "workshop_reminders"):
            return None  # the room's moderators switched reminders off after it was planned
        language = await room_settings.language(self.services, occurrence.room_id)
        view = View(self.services, language)
        locale = locale_of(language)
        relative = format_timedelta(w.starts_at - now, add_direction=True, locale=locale)
        registrations = await storage.workshops.registrations(number)
        registered = [r.user_id for r in registrations if r.status == REGISTERED]
        counts = Counts(len(registered), len(registrations) - len(registered))
        header = view.t("reminder", name=view.name(w), relative=relative)
        if late:
            header = header + Text(" ", " ") + view.t("reminder_late")
        parts = [header, view.summary(w)]
        if w.description:
            parts.append(Text.raw(w.description))
        if registered:
            parts.append(view.t("reminder_registered", count=len(registered),
                                people=Text.join((Text.mention(u) for u in registered), ", ")))
        full = w.capacity is not None and counts.registered >= w.capacity
        parts.append(view.t("reminder_full" if full else "reminder_rsvp",
                            rsvp=view.call("rsvp", str(number)),
                            ics=view.call_number_first("ics", str(number))))
        # Into the thread of the bot's post of it in this room, so the main timeline stays calm.
        thread = await storage.workshops.thread_of_posts(number, occurrence.room_id)
        return Reply(Text.join(parts, "\n\n"), mentions=tuple(registered), in_thread_of=thread)
