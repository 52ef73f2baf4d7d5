"""Every feature of the bot, in the order `!hilfe` lists them: adding one is its import and one
line in the list.

Each is its module's `FEATURE` (see `commands/feature.py`); the settings (`bot/settings.py`),
the runtime (`bot/runtime.py`) and the Matrix side (`bot/features.py`) go through this list.
"""

from __future__ import annotations

from pathlib import Path

from commands import (  # one line each
    communities,
    core,
    experts,
    meet,
    municipalities,
    room_settings,
    workshops,
)
from commands.feature import Feature, check
from storage import Storage

FEATURES: list[Feature] = [
    core.FEATURE,
    room_settings.FEATURE,
    communities.FEATURE,
    experts.FEATURE,
    workshops.FEATURE,
    meet.FEATURE,
    municipalities.FEATURE,
]
check(FEATURES)


async def open_storage(path: str | Path) -> Storage:
    """The database with the core's part and every feature's, migrated."""
    return await Storage.open(path, [f.schema for f in FEATURES if f.schema is not None])
