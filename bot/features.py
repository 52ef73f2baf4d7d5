"""The features the bot runs, in the order `!hilfe` lists them: adding one is one line here.

Each is its module's `FEATURE` (commands/), with its setup on the Matrix side where it has one
(`commands/feature.py` says what a feature hands the runtime).
"""

from __future__ import annotations

from bot.importers import feed
from bot.matrix import pairing_rooms, room_admin
from bot.pipeline import welcomer
from commands import communities, core, experts, meet, municipalities, room_settings, workshops
from commands.feature import Feature

FEATURES: list[Feature] = [
    core.FEATURE,
    room_settings.FEATURE,
    communities.FEATURE.with_setup(room_admin.setup, welcomer.setup),
    experts.FEATURE,
    workshops.FEATURE,
    meet.FEATURE.with_setup(pairing_rooms.setup),
    municipalities.FEATURE.with_setup(feed.setup),
]
