"""The features (`commands/features.py`) with what they need on the Matrix side, and the
operator's tools on the command line, by name.

A feature without a Matrix side or a tool needs nothing here. Each setup is called once at
start with the running bot's `FeatureContext` and may return a background task.
"""

from __future__ import annotations

from bot.importers import experts, feed, municipalities, workshops
from bot.importers.file_tool import FileTool
from bot.matrix import pairing_rooms, room_admin
from bot.pipeline import upgrades, welcomer
from commands import features
from commands.feature import Feature, Setup

SETUPS: dict[str, tuple[Setup, ...]] = {
    "core": (upgrades.setup,),
    "communities": (room_admin.setup, welcomer.setup),
    "meet": (pairing_rooms.setup,),
    "municipalities": (feed.setup,),
}

FEATURES: list[Feature] = [feature.with_setup(*SETUPS.get(feature.name, ()))
                           for feature in features.FEATURES]

# The operator's tools on the command line (`nextbot import workshops FILE.csv`), by feature.
TOOLS: dict[str, tuple[FileTool, ...]] = {
    "experts": (experts.IMPORT, experts.EXPORT),
    "workshops": (workshops.IMPORT,),
    "municipalities": (municipalities.IMPORT,),
}

FILE_TOOLS: list[FileTool] = [tool for feature in FEATURES for tool in TOOLS.get(feature.name, ())]
