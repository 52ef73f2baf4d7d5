"""The member register's other sources: the operators' CSV import and the published feed."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from bot.cli import main
from bot.importers.csv_reading import ImportFileError
from bot.importers.feed import MASS_ADD_MIN, FeedUnreachable, Fetched, MemberFeed, parse_feed
from bot.importers.municipalities import import_members, run_cli
from bot.settings import ConfigError, load_settings
from storage.municipalities import Member
from tests.unit.fakes import config, no_jitter_backoff

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
HEADER = "name,kind,state,ags,joined_on,website\n"
URL = "https://next.example.org/mitglieder.csv"


def csv_feed(*rows: str, etag: str | None = None, last_modified: str | None = None) -> Fetched:
    return Fetched((HEADER + "\n".join(rows) + "\n").encode(), "text/csv; charset=utf-8", etag,
                   last_modified)


def towns(count: int, start: int = 0) -> list[str]:
    return [f"Gemeinde {i},Gemeinde,Hessen,,," for i in range(start, start + count)]


class FakeFeed:
    """Answers each fetch with the next scripted item (a Fetched, None for 304, or an error)."""

    def __init__(self, *script: Fetched | Exception | None) -> None:
        self.script = list(script)
        self.calls: list[tuple[str, str | None, str | None]] = []

    async def __call__(self, url: str, etag: str | None,
                       last_modified: str | None) -> Fetched | None:
        self.calls.append((url, etag, last_modified))
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


def make_feed(storage, fake: FakeFeed, joined: list[str]) -> MemberFeed:
    async def on_joined() -> None:
        joined.append("joined")

    return MemberFeed(storage, URL, timedelta(minutes=15), on_joined=on_joined, fetch=fake,
                      now=lambda: NOW)


async def announced(storage) -> list[str]:
    return [m.name for m in await storage.municipalities.to_announce(0, 2**62)]


# -- parsing ------------------------------------------------------------------------------------


def test_a_feed_in_csv_or_json():
    members = parse_feed(csv_feed("Wiesbaden,Stadt,Hessen,06414000,2026-11-01,"), NOW)
    assert members == [Member(name="Wiesbaden", state="Hessen", kind="stadt", ags="06414000",
                              joined_on=datetime(2026, 11, 1).date())]
    body = json.dumps([{"name": "Wiesbaden", "state": "HE", "ags": 6414000, "id": 7},
                       {"name": "Ulm", "state": "Baden-Württemberg", "kind": None}]).encode()
    members = parse_feed(Fetched(body, "application/json", None, None), NOW)
    assert [(m.name, m.state, m.ags) for m in members] == [
        ("Wiesbaden", "Hessen", "06414000"), ("Ulm", "Baden-Württemberg", None)]


@pytest.mark.parametrize("body", [
    b"<html>502 Bad Gateway</html>", b"\xff\xfe garbage", b'{"members": []}', b"[1, 2",
    (HEADER + "Wiesbaden,Stadt,Hessen,0641400,,\n").encode(),  # a bad AGS: the whole feed
])
def test_a_malformed_feed_is_refused_without_its_content(body):
    with pytest.raises(ImportFileError) as caught:
        parse_feed(Fetched(body, "text/plain", None, None), NOW)
    assert "0641400" not in str(caught.value) and "Wiesbaden" not in str(caught.value)


def test_a_member_listed_twice_in_a_feed_counts_once():
    members = parse_feed(csv_feed("Kassel,,Hessen,,,", "kassel,,HE,,,"), NOW)
    assert [m.name for m in members] == ["Kassel"]


# -- polling ------------------------------------------------------------------------------------


async def test_the_first_poll_seeds_later_ones_announce_what_is_new(storage):
    joined: list[str] = []
    modified = "Wed, 25 Nov 2026 08:00:00 GMT"
    fake = FakeFeed(csv_feed(*towns(3), etag='"v1"', last_modified=modified), None,
                    csv_feed(*towns(4), etag='"v2"'))
    feed = make_feed(storage, fake, joined)
    assert await feed.poll() == "seeded"
    assert await storage.municipalities.count() == 3
    assert await announced(storage) == [] and joined == []
    assert await feed.poll() == "unchanged"
    assert fake.calls[1] == (URL, '"v1"', modified)  # a conditional request
    assert await feed.poll() == "added"
    assert await announced(storage) == ["Gemeinde 3"] and joined == ["joined"]
    [new] = [m for m in await storage.municipalities.latest(10) if m.name == "Gemeinde 3"]
    assert new.source == "feed"


async def test_a_restart_does_not_seed_again(storage):
    joined: list[str] = []
    await make_feed(storage, FakeFeed(csv_feed(*towns(3))), joined).poll()
    again = make_feed(storage, FakeFeed(csv_feed(*towns(4))), joined)  # a new process
    assert await again.poll() == "added"
    assert await announced(storage) == ["Gemeinde 3"]


@pytest.mark.parametrize("bad, outcome", [
    (csv_feed(), "empty"),
    (Fetched(b"", "text/csv", None, None), "malformed"),
    (Fetched(b"<html>oops</html>", "text/html", None, None), "malformed"),
    (csv_feed(*towns(4)[:1]), "shrunk"),
    (csv_feed(*towns(4), *towns(MASS_ADD_MIN + 1, 100)), "too_many"),
    (FeedUnreachable("HTTP 502"), "unreachable"),
])
async def test_a_bad_poll_changes_nothing_and_logs_no_content(storage, caplog, bad, outcome):
    joined: list[str] = []
    feed = make_feed(storage, FakeFeed(csv_feed(*towns(4), etag='"v1"'), bad,
                                       csv_feed(*towns(5))), joined)
    await feed.poll()
    caplog.set_level(logging.INFO)
    assert await feed.poll() == outcome
    assert await storage.municipalities.count() == 4 and joined == []
    assert "Gemeinde" not in caplog.text and "oops" not in caplog.text
    assert caplog.records and all(r.levelno == logging.WARNING for r in caplog.records)
    # The next good poll works from the last good one (its validators and size).
    assert await feed.poll() == "added" and await announced(storage) == ["Gemeinde 4"]


async def test_a_feed_never_removes_and_never_brings_back_a_removed_member(storage):
    joined: list[str] = []
    feed = make_feed(storage, FakeFeed(csv_feed(*towns(4)), csv_feed(*towns(3)),
                                       csv_feed(*towns(4))), joined)
    await feed.poll()
    [gone] = [m for m in await storage.municipalities.latest(10) if m.name == "Gemeinde 3"]
    await storage.municipalities.remove(gone.id, 1)
    assert await feed.poll() == "unchanged"  # three of four listed: nobody removed
    assert await storage.municipalities.count() == 3
    assert await feed.poll() == "unchanged"  # the removed one is listed again: not re-added
    assert await storage.municipalities.count() == 3 and joined == []


async def test_an_unreachable_feed_is_retried_with_backoff_capped_at_the_interval(storage):
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 4:
            raise asyncio.CancelledError  # stop the loop

    fake = FakeFeed(FeedUnreachable("x"), FeedUnreachable("x"), csv_feed(*towns(2)),
                    FeedUnreachable("x"))

    async def on_joined() -> None:
        pass

    feed = MemberFeed(storage, URL, timedelta(minutes=1), on_joined=on_joined, fetch=fake,
                      now=lambda: NOW, backoff=no_jitter_backoff(base=30.0, cap=60.0),
                      sleep=sleep)
    with pytest.raises(asyncio.CancelledError):
        await feed.run()
    assert sleeps == [30.0, 60.0, 60.0, 30.0]


# -- the import ---------------------------------------------------------------------------------


def write(tmp_path, *rows: str, header: str = HEADER):
    path = tmp_path / "mitglieder.csv"
    path.write_text(header + "\n".join(rows) + "\n", encoding="utf-8")
    return path


async def test_importing_into_an_empty_register_seeds_later_imports_announce(storage, tmp_path):
    first = await import_members(storage, write(tmp_path, *towns(3)), now=NOW)
    assert (first.created, first.announced) == (3, False)
    second = await import_members(storage, write(tmp_path, *towns(5)), now=NOW)
    assert (second.created, second.existing, second.announced) == (2, 3, True)
    assert await announced(storage) == ["Gemeinde 3", "Gemeinde 4"]
    third = await import_members(storage, write(tmp_path, *towns(6)), now=NOW, silent=True)
    assert (third.created, third.announced) == (1, False)
    assert await announced(storage) == ["Gemeinde 3", "Gemeinde 4"]


async def test_bad_rows_are_reported_by_line_and_nothing_is_written(storage, tmp_path):
    path = write(tmp_path,
                 "Wiesbaden,Stadt,Hessen,06414000,01.10.2026,www.wiesbaden.de",
                 "München,Stadt,Hessen,09162000,,",
                 ",Gemeinde,Atlantis,,2030-01-01,",
                 "Landeshauptstadt Wiesbaden,Stadt,Hessen,06414000,,",
                 "Ulm,Raumstation,BW,,gestern,ftp://ulm")
    out, err = io.StringIO(), io.StringIO()
    assert await run_cli(storage, path, now=NOW, out=out, err=err) == 1
    problems = err.getvalue()
    for expected in ("line 3: ags: '09162000' belongs to Bayern, not to Hessen",
                     "line 4: name: missing", "line 4: state: 'Atlantis' is none",
                     "line 4: joined_on: 2030-01-01 is in the future",
                     "line 5: the same member as on line 2", "line 6: kind:",
                     "line 6: joined_on:", "line 6: website:", "nothing written"):
        assert expected in problems, expected
    assert await storage.municipalities.count() == 0
    assert await run_cli(storage, path, now=NOW, skip_invalid=True, out=out, err=err) == 0
    assert await storage.municipalities.count() == 1


def test_the_command_line_imports_and_checks_the_settings(tmp_path, capsys):
    path = write(tmp_path, *towns(2))
    assert main(["import", "municipalities", str(path), "--dry-run", "-c",
                 str(config(tmp_path))]) == 0
    assert "dry run" in capsys.readouterr().out
    assert main(["import", "municipalities", str(path), "-c", str(config(tmp_path))]) == 0
    assert "created 2" in capsys.readouterr().out


def test_announcement_settings_are_validated(tmp_path):
    settings = load_settings(config(tmp_path, """
[announcements]
rooms = ["!ankuendigungen:example.org"]
feed_url = "https://next.example.org/mitglieder.json"
poll_minutes = 30
"""))
    assert settings.announcements.rooms == ["!ankuendigungen:example.org"]
    assert settings.announcements.poll_minutes == 30
    with pytest.raises(ConfigError) as caught:
        load_settings(config(tmp_path, """
[announcements]
rooms = ["#ankuendigungen:example.org"]
feed_url = "ftp://next.example.org/x"
poll_minutes = 0
"""))
    problems = "\n".join(caught.value.problems)
    assert "announcements.rooms[0]: bad room id" in problems
    assert "announcements.feed_url: must be an http(s) URL" in problems
    assert "announcements.poll_minutes" in problems


async def test_fetch_sends_conditional_requests_and_reports_failures_without_content():
    from aiohttp import web

    from bot.importers.feed import fetch

    seen: list[dict[str, str]] = []
    status = {"code": 200}

    async def handle(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        if status["code"] != 200:
            return web.Response(status=status["code"], text="geheim")
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304)
        return web.Response(text=HEADER + "Kassel,,Hessen,,,\n", content_type="text/csv",
                            headers={"ETag": '"v1"', "Last-Modified": "Wed, 25 Nov 2026 "
                                                                       "08:00:00 GMT"})

    app = web.Application()
    app.router.add_get("/feed", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/feed"
    try:
        fetched = await fetch(url, None, None)
        assert fetched is not None and fetched.etag == '"v1"'
        assert fetched.last_modified == "Wed, 25 Nov 2026 08:00:00 GMT"
        assert [m.name for m in parse_feed(fetched, NOW)] == ["Kassel"]
        assert await fetch(url, '"v1"', fetched.last_modified) is None
        assert seen[1]["If-None-Match"] == '"v1"'
        assert seen[1]["If-Modified-Since"] == "Wed, 25 Nov 2026 08:00:00 GMT"
        status["code"] = 503
        with pytest.raises(FeedUnreachable, match="HTTP 503") as caught:
            await fetch(url, None, None)
        assert "geheim" not in str(caught.value)
    finally:
        await runner.cleanup()
    with pytest.raises(FeedUnreachable):  # nobody listens any more
        await fetch(url, None, None)
