"""What a feature hands the runtime, in one declaration: `FEATURE` at the end of its module.

The features are listed once, in `commands/features.py`; the runtime (`bot/runtime.py`) and the
settings (`bot/settings.py`) go through that list and name no feature.
A feature gives, each optional:
- `router`: its commands and subcommands, the reactions it answers and its room settings;
- `schema`: its part of the database (`storage/schema.py`), named like the feature: its tables'
  steps, its repositories (reached as `storage.<name>`), its columns that can name a member,
  what moves with an upgraded room, the kinds of the bot's messages it records once sent;
- `section`: its section of the configuration file, `(key, model)`, e.g. `("meet",
  MeetSettings)` for `[meet]`; `bot/settings.py` adds every feature's section to the settings;
- `configure(settings)`: its configuration, read from its own section of the settings; handlers
  find it in `services.configs[name]`;
- `switched_on(settings)`: the rooms where the operator's configuration switches one of the room
  settings on (`[meet] rooms` for `meet_reminders`), until the room's moderators switch it off;
- `sources(services)`: what it tells the scheduler (reminders, announcements);
- `needs`: the features whose data it reads (meet pairs by the experts' profiles): the list of
  features must hold them, and before it (`check`);
- `setups`: what it needs on the Matrix side, added by its name in `bot/features.py` (a feature
  module here never imports `bot/`): each is called once at start with the running bot's
  `FeatureContext` and may return a background task to run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from commands.config_fields import Section
from commands.framework import Router, Services
from commands.schedule import OccurrenceSource
from storage.schema import Schema

Setup = Callable[[Any], Awaitable[None] | None]


@dataclass(frozen=True)
class Feature:
    name: str  # its key in `services.configs`
    router: Router | None = None
    schema: Schema | None = None
    section: tuple[str, type[Section]] | None = None
    configure: Callable[[Any], object] | None = None
    switched_on: Callable[[Any], Mapping[str, frozenset[str]]] | None = None
    sources: Callable[[Services], Sequence[OccurrenceSource]] | None = None
    needs: tuple[str, ...] = ()
    setups: tuple[Setup, ...] = ()

    def with_setup(self, *setups: Setup) -> Feature:
        return replace(self, setups=(*self.setups, *setups))


def check(features: Sequence[Feature]) -> None:
    """Each feature once, after the features it needs, its part of the database under its own
    name: else a ValueError that says which."""
    seen: list[str] = []
    for feature in features:
        if feature.name in seen:
            raise ValueError(f"the feature {feature.name!r} is listed twice")
        if feature.schema is not None and feature.schema.name != feature.name:
            raise ValueError(f"the feature {feature.name!r} calls its part of the database "
                             f"{feature.schema.name!r}: give it the feature's name")
        missing = [name for name in feature.needs if name not in seen]
        if missing:
            raise ValueError(f"the feature {feature.name!r} needs {', '.join(missing)}: list "
                             "it before, or take this one out")
        seen.append(feature.name)


def routers(features: Sequence[Feature]) -> list[Router]:
    """The features' routers, in the features' order (the order `!hilfe` lists them)."""
    return [feature.router for feature in features if feature.router is not None]
