"""Features plug in through one declaration each (commands/feature.py, bot/features.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.features import FEATURES
from bot.runtime import feature_configs
from bot.settings import load_settings
from commands.feature import Feature, check, routers
from commands.framework import Arg, Registry, Router
from commands.i18n import Text
from commands.meet import MeetConfig
from commands.room_settings import RoomDefaults
from storage import Storage
from storage.member_data import Action, MemberColumn
from storage.schema import Migration, Schema
from tests.unit.fakes import make_services, request
from tests.unit.test_framework import answer

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

CONFIG = """
[matrix]
homeserver = "https://matrix.example.org"
user_id = "@nextbot:example.org"
password = "geheim-genug"

[bot]
language = "en"

[meet]
rooms = ["!meet:example.org"]

[announcements]
rooms = ["!news:example.org"]
"""


def settings(tmp_path: Path):
    path = tmp_path / "config.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return load_settings(path)


def test_each_feature_brings_its_own_section_of_the_configuration(tmp_path):
    loaded = settings(tmp_path)
    assert loaded.meet.rooms == ["!meet:example.org"]  # [meet], declared by commands/meet.py
    assert loaded.announcements.rooms == ["!news:example.org"]
    assert {key for f in FEATURES if f.section for key in [f.section[0]]} == {
        "communities", "experts", "workshops", "meet", "announcements"}


def test_each_feature_is_configured_from_its_own_section(tmp_path):
    configs = feature_configs(settings(tmp_path), FEATURES)
    assert isinstance(configs["meet"], MeetConfig)
    assert set(configs) == {"communities", "experts", "workshops", "meet", "room_settings"}
    # Rooms a feature's configuration switches a room setting on in, merged for every feature.
    assert configs["room_settings"] == RoomDefaults("en", {
        "meet_reminders": frozenset({"!meet:example.org"}),
        "announcements": frozenset({"!news:example.org"})})


def test_the_runtime_gets_every_feature_from_the_list(storage):
    names = [feature.name for feature in FEATURES]
    assert names == ["core", "room_settings", "communities", "experts", "workshops", "meet",
                     "municipalities"]
    services = make_services(storage, routers(FEATURES))
    sources = [source for f in FEATURES if f.sources for source in f.sources(services)]
    assert sorted(source.name for source in sources) == [
        "meet", "meet-followups", "municipalities", "workshops"]
    setups = {f.name: [setup.__module__ for setup in f.setups] for f in FEATURES}
    assert setups["communities"] == ["bot.matrix.room_admin", "bot.pipeline.welcomer"]
    assert setups["meet"] == ["bot.matrix.pairing_rooms"]
    assert setups["municipalities"] == ["bot.importers.feed"]


async def test_a_new_feature_is_one_declaration_and_one_line_in_the_list(storage):
    """The throwaway example of issue 19: one command, one subcommand, nothing else touched."""
    router = Router("core")

    @router.command("greet", "gruss")
    async def greet(ctx):
        return Text.raw("Hallo!")

    @router.subcommand("greet", "loud", "laut", args=[Arg("name")])
    async def loud(ctx, name):
        return Text.raw(f"HALLO, {name.upper()}!")

    feature = Feature("greetings", router)
    services = make_services(storage, routers([*FEATURES, feature]))
    assert (await answer(request("!gruss"), services)).plain == "Hallo!"
    assert (await answer(request("!gruss laut Ada"), services)).plain == "HALLO, ADA!"
    assert Registry(routers([*FEATURES, feature])).find("greet") is not None


async def test_a_new_feature_brings_its_tables_repository_and_member_data(tmp_path):
    """A feature with a table: its steps, its repository (`storage.kudos`) and the column that
    names a member come with its declaration; the core's storage names none of it."""

    class KudosRepository:
        def __init__(self, db):
            self.db = db

        async def give(self, user_id: str) -> None:
            await self.db.execute("INSERT INTO kudos (user_id) VALUES (?)", (user_id,))

    schema = Schema("kudos", (Migration(1, "kudos", "CREATE TABLE kudos (user_id TEXT)"),),
                    repositories={"kudos": KudosRepository},
                    member_data=(MemberColumn("kudos", "user_id", Action.DELETE, "kudos"),))
    feature = Feature("kudos", Router("kudos"), schema=schema)
    features = [*FEATURES, feature]
    storage = await Storage.open(tmp_path / "bot.db",
                                 [f.schema for f in features if f.schema is not None])
    try:
        await storage.kudos.give("@ada:example.org")
        assert await storage.member_data.export("@ada:example.org") == {
            "kudos.user_id": [{"user_id": "@ada:example.org"}]}
        erased = await storage.member_data.delete("@ada:example.org", NOW)
        assert erased.rows["kudos.user_id"] == 1
    finally:
        await storage.close()


def test_a_feature_comes_after_the_features_it_needs():
    check([Feature("experts"), Feature("meet", needs=("experts",))])
    with pytest.raises(ValueError, match="'meet' needs experts"):
        check([Feature("meet", needs=("experts",)), Feature("experts")])
    with pytest.raises(ValueError, match="listed twice"):
        check([Feature("experts"), Feature("experts")])
    with pytest.raises(ValueError, match="give it the feature's name"):
        check([Feature("experts", schema=Schema("profiles", ()))])
    check(FEATURES)  # the bot's own list


def test_the_command_line_offers_the_tools_each_feature_declares():
    from bot.cli import build_parser
    from bot.features import FILE_TOOLS

    assert [(t.verb, t.what) for t in FILE_TOOLS] == [
        ("import", "experts"), ("export", "experts"), ("import", "workshops"),
        ("import", "municipalities")]
    parser = build_parser()
    for tool in FILE_TOOLS:
        args = parser.parse_args([tool.verb, tool.what, "data.csv"])
        assert args.tool is tool and str(args.file) == "data.csv"
    assert parser.parse_args(["import", "municipalities", "x.csv", "--silent"]).silent
