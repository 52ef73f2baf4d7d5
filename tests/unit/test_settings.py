import asyncio
import os
import sys
import types
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.cli import main
from bot.settings import ConfigError, Settings, load_settings, redacted

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
SECRET = "s3cr3t-Passw0rd"

GOOD = f"""
[matrix]
homeserver = "https://matrix.example.org"
user_id = "@nextbot:example.org"
password = "{SECRET}"
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in list(os.environ):
        if name.upper().startswith("NEXTBOT_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return info.value.problems


def test_example_config_loads():
    settings = load_settings(EXAMPLE)
    assert settings.matrix.homeserver == "https://matrix.example.org"
    assert settings.matrix.user_id == "@nextbot:example.org"
    assert settings.matrix.password is not None
    assert settings.matrix.password.get_secret_value() == "change-me"
    assert settings.bot.language == "de"


def test_defaults(tmp_path):
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.matrix.access_token is None
    assert settings.matrix.device_name == "NExT-Bot"
    assert settings.matrix.store_path == Path("./data/store")
    assert settings.bot.command_prefix == "!"
    assert settings.bot.language == "de"
    assert settings.bot.timezone == "Europe/Berlin"
    assert settings.tzinfo == ZoneInfo("Europe/Berlin")
    assert settings.bot.admins == []
    assert settings.bot.allowed_servers == []
    assert settings.bot.moderator_level == 50
    assert settings.storage.database == Path("./data/nextbot.db")
    assert settings.logging.level == "INFO"


def test_env_overrides_nested_key_and_keeps_the_rest(tmp_path, monkeypatch):
    path = write(tmp_path, GOOD + '\n[bot]\nlanguage = "de"\nmoderator_level = 40\n')
    monkeypatch.setenv("NEXTBOT_MATRIX__PASSWORD", "from-env")
    monkeypatch.setenv("NEXTBOT_BOT__ADMINS", '["@alice:example.org"]')
    monkeypatch.setenv("NEXTBOT_BOT__LANGUAGE", "en")
    settings = load_settings(path)
    assert settings.matrix.password.get_secret_value() == "from-env"
    # Keys the environment does not mention still come from the file.
    assert settings.matrix.homeserver == "https://matrix.example.org"
    assert settings.matrix.user_id == "@nextbot:example.org"
    assert settings.bot.moderator_level == 40
    assert settings.bot.language == "en"
    assert settings.bot.admins == ["@alice:example.org"]


def test_env_can_supply_a_missing_required_key(tmp_path, monkeypatch):
    path = write(
        tmp_path, '[matrix]\nhomeserver = "https://m.example.org"\nuser_id = "@b:example.org"\n'
    )
    monkeypatch.setenv("NEXTBOT_MATRIX__ACCESS_TOKEN", "tok")
    assert load_settings(path).matrix.access_token.get_secret_value() == "tok"


def test_env_only_without_file(tmp_path, monkeypatch):
    monkeypatch.setenv("NEXTBOT_MATRIX__HOMESERVER", "https://m.example.org")
    monkeypatch.setenv("NEXTBOT_MATRIX__USER_ID", "@b:example.org")
    monkeypatch.setenv("NEXTBOT_MATRIX__PASSWORD", "pw")
    settings = load_settings(tmp_path / "nope.toml")
    assert settings.matrix.user_id == "@b:example.org"


def test_env_wrong_type_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("NEXTBOT_BOT__MODERATOR_LEVEL", "high")
    assert problems_of(write(tmp_path, GOOD)) == [
        "bot.moderator_level: wrong type (expected an integer)"
    ]


def test_env_bad_json_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("NEXTBOT_BOT__ADMINS", '["@a:example.org"')
    assert problems_of(write(tmp_path, GOOD)) == [
        "bot: cannot parse environment variable NEXTBOT_BOT__* (lists must be JSON)"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[matrix]\nhomeserver = "https://m.example.org"\npassword = "x"\n',
            "matrix.user_id: missing",
        ),
        (
            GOOD + "[bot]\nmoderator_level = 'high'\n",
            "bot.moderator_level: wrong type (expected an integer)",
        ),
        (GOOD + "[bot]\nmoderator_level = 101\n", "bot.moderator_level: must be at most 100"),
        (GOOD + "[bot]\ncolour = 'blue'\n", "bot.colour: unknown key"),
        (GOOD + "[colours]\nred = 1\n", "colours: unknown key"),
        (GOOD + "[bot]\ntimezone = 'Europe/Berln'\n", "bot.timezone: bad time zone 'Europe/Berln'"),
        (
            GOOD.replace("@nextbot:example.org", "nextbot"),
            "matrix.user_id: bad user id 'nextbot' (expected @name:server)",
        ),
        (
            GOOD + "[bot]\nadmins = ['@a:example.org', 'bob']\n",
            "bot.admins[1]: bad user id 'bob' (expected @name:server)",
        ),
        (
            GOOD.replace("https://matrix.example.org", "matrix.example.org"),
            "matrix.homeserver: must be an http(s) URL",
        ),
        (
            GOOD.replace(f'password = "{SECRET}"', ""),
            "matrix.password: missing (set matrix.password or matrix.access_token)",
        ),
        (
            GOOD + "[bot]\ncommand_prefix = '! '\n",
            "bot.command_prefix: must not contain whitespace",
        ),
        (GOOD + "[bot]\nlanguage = 'fr'\n", "bot.language: must be 'de' or 'en'"),
        (GOOD + "[bot]\nadmins = '@a:example.org'\n", "bot.admins: wrong type (expected a list)"),
        ("bot = 5\n" + GOOD, "bot: wrong type (expected a table)"),
    ],
)
def test_each_problem_is_one_line(tmp_path, text, expected):
    assert problems_of(write(tmp_path, text)) == [expected]


def test_missing_matrix_section_names_each_required_key(tmp_path):
    assert problems_of(write(tmp_path, "[bot]\nlanguage = 'de'\n")) == [
        "matrix.homeserver: missing",
        "matrix.user_id: missing",
    ]


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    assert problems_of(path) == [f"config: file not found: {path}"]


def test_missing_file_with_partial_env_lists_env_problems(tmp_path, monkeypatch):
    path = tmp_path / "nope.toml"
    monkeypatch.setenv("NEXTBOT_MATRIX__PASSWORD", "pw")
    assert problems_of(path) == [
        f"config: file not found: {path}",
        "matrix.homeserver: missing",
        "matrix.user_id: missing",
    ]


def test_toml_syntax_error(tmp_path):
    problems = problems_of(write(tmp_path, "[matrix]\nhomeserver = \n"))
    assert len(problems) == 1
    assert problems[0].startswith("config: not valid TOML: ")
    assert "line 2" in problems[0]


def test_wrong_typed_password_is_not_echoed(tmp_path):
    path = write(tmp_path, GOOD.replace(f'"{SECRET}"', "987654321"))
    problems = problems_of(path)
    assert problems == ["matrix.password: wrong type (expected a string)"]
    assert "987654321" not in "\n".join(problems)


def test_secret_never_shown(tmp_path, capsys):
    settings = load_settings(write(tmp_path, GOOD))
    assert SECRET not in str(settings)
    assert SECRET not in repr(settings)
    assert SECRET not in str(redacted(settings))
    assert redacted(settings)["matrix"]["password"] == "***"
    assert redacted(settings)["matrix"]["access_token"] is None

    bad = write(tmp_path, GOOD + "[bot]\ntimezone = 'Mars/Base'\nfoo = 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(bad)
    assert SECRET not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__

    assert main(["check-config", "--config", str(bad)]) == 1
    out, err = capsys.readouterr()
    assert SECRET not in out + err


def test_may_invite(tmp_path):
    settings = load_settings(write(tmp_path, GOOD + "[bot]\nadmins = ['@boss:other.org']\n"))
    assert settings.may_invite("@x:example.org")
    assert settings.may_invite("@boss:other.org")
    assert not settings.may_invite("@x:other.org")
    settings = load_settings(write(tmp_path, GOOD + "[bot]\nallowed_servers = ['other.org']\n"))
    assert settings.may_invite("@x:other.org")
    assert not settings.may_invite("@x:example.org")


def test_check_config_reports_problems(tmp_path, capsys):
    path = write(tmp_path, GOOD + "[bot]\ncolour = 'blue'\ntimezone = 'Europe/Berln'\n")
    assert main(["check-config", "--config", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "bot.timezone: bad time zone 'Europe/Berln'",
        "bot.colour: unknown key",
    ]
    assert "Traceback" not in err


@pytest.mark.parametrize(("rule", "start"), [
    ("FREQ=MONTHLY;BYDAY=2TH", "12:00"),  # ordinal weekday, the configured start
    ("FREQ=MONTHLY;BYDAY=-1FR", "12:00"),  # counted from the end
    ("FREQ=MONTHLY;BYDAY=TH;BYSETPOS=2", "12:00"),
    ("RRULE:FREQ=MONTHLY;BYDAY=2TH;BYHOUR=12;BYMINUTE=0", "12:00"),  # the rule gives the time
    ("FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=9;BYMINUTE=30", "09:30"),
    ("DTSTART=20260108T170000;FREQ=WEEKLY;INTERVAL=2", "17:00"),
])
def test_meet_rules_as_calendars_export_them(tmp_path, rule, start):
    settings = load_settings(write(tmp_path, GOOD + f"[meet]\nrule = '{rule}'\n"))
    assert settings.meet.rule == rule and settings.meet.start_time == start


def test_the_example_config_with_a_time_in_the_rule(tmp_path):
    # config.example.toml writes start_time = "12:00": a rule at 12:00 agrees with it
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        'rule = "FREQ=MONTHLY;BYDAY=TH;BYSETPOS=2"',
        'rule = "FREQ=MONTHLY;BYDAY=2TH;BYHOUR=12;BYMINUTE=0"')
    assert load_settings(write(tmp_path, text)).meet.start_time == "12:00"
    problems = problems_of(write(tmp_path, text.replace('start_time = "12:00"',
                                                        'start_time = "13:00"')))
    assert problems == ["meet.start_time: The rule already gives the time "
                        "(BYHOUR=12;BYMINUTE=0: 12:00), but 13:00 is given too. Give the time "
                        "in one place."]


@pytest.mark.parametrize(("rule", "reason"), [
    ("FREQ=MONTHLY;BYDAY=2TH;FOO=1", "FOO is no part of an iCalendar rule; the parts are FREQ,"),
    ("FREQ=MONTHLY;BYDAY=XX", "In BYDAY, XX is no weekday"),
    ("FREQ=WEEKLY;BYDAY=2TH", "BYDAY=2TH counts weekdays within the month or the year and "
     "needs FREQ=MONTHLY or FREQ=YEARLY, not FREQ=WEEKLY"),
    ("FREQ=MONTHLY;BYDAY=2TH;BYHOUR=24", "In BYHOUR=24, 24 is not between 0 and 23"),
    ("FREQ=MONTHLY;BYDAY=2TH;BYHOUR=9,17", "BYHOUR=9,17: a rule gives one time of day only"),
    ("FREQ=MONTHLY;BYDAY=2TH;BYMINUTE=30", "BYMINUTE without BYHOUR"),
    ("FREQ=HOURLY", "FREQ=HOURLY would be more often than daily"),
    ("BYDAY=2TH", "It lacks FREQ="),
    ("FREQ=YEARLY;BYMONTH=4;BYMONTHDAY=31", "It falls on no day at all"),
])
def test_a_refused_meet_rule_names_the_reason(tmp_path, rule, reason):
    [line] = problems_of(write(tmp_path, GOOD + f"[meet]\nrule = '{rule}'\n"))
    assert line.startswith(f"meet.rule: bad rule '{rule}': ")
    assert reason in line


def test_check_config_missing_file(tmp_path, capsys):
    path = tmp_path / "nope.toml"
    assert main(["check-config", "--config", str(path)]) == 1
    assert capsys.readouterr().err.splitlines() == [f"config: file not found: {path}"]


def test_check_config_ok(tmp_path, capsys):
    path = write(tmp_path, GOOD)
    assert main(["check-config", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"config OK: {path}"
    assert err == ""


def _fake_runtime(monkeypatch, run_bot):
    module = types.ModuleType("bot.runtime")
    module.run_bot = run_bot
    monkeypatch.setitem(sys.modules, "bot.runtime", module)


def test_run_bad_config_does_not_start(tmp_path, capsys, monkeypatch):
    async def run_bot(settings: Settings) -> None:  # pragma: no cover - must not run
        raise AssertionError("started")

    _fake_runtime(monkeypatch, run_bot)
    assert main(["run", "--config", str(tmp_path / "nope.toml")]) == 1
    assert "config: file not found" in capsys.readouterr().err


def test_run_calls_run_bot(tmp_path, monkeypatch):
    seen = []

    async def run_bot(settings: Settings) -> None:
        seen.append(settings.matrix.user_id)
        await asyncio.sleep(0)

    _fake_runtime(monkeypatch, run_bot)
    assert main(["run", "--config", str(write(tmp_path, GOOD))]) == 0
    assert seen == ["@nextbot:example.org"]


def test_run_ctrl_c_exits_quietly(tmp_path, monkeypatch, capsys):
    async def run_bot(settings: Settings) -> None:
        raise KeyboardInterrupt

    _fake_runtime(monkeypatch, run_bot)
    assert main(["run", "--config", str(write(tmp_path, GOOD))]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_no_subcommand_prints_help(capsys):
    assert main([]) == 2
    assert "check-config" in capsys.readouterr().err
