"""`nextbot import experts` / `export experts`: checking, all-or-nothing, round trip, CLI."""

import csv
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.cli import main
from bot.importers.csv_reading import ImportFileError
from bot.importers.experts import (
    COLUMNS,
    FORMULA_STARTS,
    ExportError,
    export_experts,
    import_experts,
    neutralised,
    parse_experts,
    plain,
)
from storage import Storage
from storage.experts import Profile
from tests.unit.fakes import config

HEADER = ",".join(COLUMNS)
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
EARLIER = datetime(2024, 1, 1, tzinfo=UTC)

GOOD = f"""{HEADER}
@anna:example.org,Anna Schmidt,Stadt Köln,KI; OZG;ki,Kommune,Köln,NRW,CDO,"Macht KI, seit 2019."
@bert:example.org,Bert Meier,,,,,,,
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in list(os.environ):
        if name.upper().startswith("NEXTBOT_"):
            monkeypatch.delenv(name)


def csv_file(tmp_path: Path, text: str, name: str = "experts.csv", bom: bool = False) -> Path:
    path = tmp_path / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def problems_of(text: str, **kwargs) -> list[str]:
    return [str(p) for p in parse_experts(text, **kwargs).problems]


def fields(p: Profile) -> tuple:
    """Everything but updated_at (an import updates that)."""
    return (p.user_id, p.display_name, p.organisation, p.topics, p.level, p.municipality,
            p.state, p.role, p.bio, p.languages, p.consent_at)


async def all_of(storage: Storage) -> list[Profile]:
    return [p async for p in storage.experts.all_profiles()]


# -- importing --------------------------------------------------------------------------------


async def test_a_good_file_is_imported_normalized(storage, tmp_path):
    result = await import_experts(storage, csv_file(tmp_path, GOOD), now=NOW)

    assert (result.created, result.updated, result.unchanged, result.skipped) == (2, 0, 0, 0)
    assert result.summary() == "created 2, updated 0, unchanged 0, skipped 0"
    anna = await storage.experts.get("@anna:example.org")
    assert anna is not None
    assert anna.display_name == "Anna Schmidt"
    assert anna.topics == ["KI", "OZG"]  # split at ';', cleaned, the duplicate dropped
    assert anna.level == "kommune"
    assert anna.state == "Nordrhein-Westfalen"
    assert anna.bio == "Macht KI, seit 2019."
    assert anna.consent_at == NOW  # the operator asserts consent: the import time
    bert = await storage.experts.get("@bert:example.org")
    assert bert is not None
    assert (bert.organisation, bert.topics, bert.level, bert.state) == (None, [], None, None)


async def test_a_second_import_updates_and_keeps_consent_and_languages(storage, tmp_path):
    await storage.experts.save(Profile("@anna:example.org", display_name="A", languages=["de"],
                                       consent_at=EARLIER))
    result = await import_experts(storage, csv_file(tmp_path, GOOD), now=NOW)
    assert (result.created, result.updated) == (1, 1)

    changed = GOOD.replace("Anna Schmidt", "Anna Schmidt-Meier")
    result = await import_experts(storage, csv_file(tmp_path, changed), now=NOW)
    assert (result.created, result.updated, result.unchanged) == (0, 1, 1)  # Bert: the same
    anna = await storage.experts.get("@anna:example.org")
    assert anna is not None
    assert anna.display_name == "Anna Schmidt-Meier"
    assert anna.consent_at == EARLIER  # the member's own consent stays on record
    assert anna.languages == ["de"]  # not a column: kept
    assert await storage.experts.count() == 2


async def test_a_re_import_writes_only_the_rows_that_change(storage, tmp_path, monkeypatch):
    await import_experts(storage, csv_file(tmp_path, GOOD), now=EARLIER)
    await storage.experts.save(Profile("@carl:example.org", display_name="Carl",
                                       languages=["de"], consent_at=EARLIER,
                                       updated_at=EARLIER))

    async def whole_directory(*args, **kwargs):
        raise AssertionError("the whole directory was read")
        yield

    # Only the file's own profiles are read.
    monkeypatch.setattr(storage.experts, "all_profiles", whole_directory)
    first = await storage.experts.get_many(["@anna:example.org", "@bert:example.org"])
    later = datetime(2030, 1, 1, tzinfo=UTC)
    monkeypatch.setattr("storage.experts._now", lambda: later)  # what updated_at becomes
    changes = "SELECT total_changes()"
    before = (await storage.db.fetchone(changes))[0]
    result = await import_experts(storage, csv_file(tmp_path, GOOD), now=NOW)
    assert result.summary() == "created 0, updated 0, unchanged 2, skipped 0"
    assert (await storage.db.fetchone(changes))[0] == before  # nothing written

    # Carl's row is what he has: his languages (no column) are kept, so he is unchanged.
    text = (GOOD.replace("Bert Meier", "Bert Meyer")
            + "@carl:example.org,Carl,,,,,,,\n@dora:example.org,Dora,,,,,,,\n")
    dry = await import_experts(storage, csv_file(tmp_path, text), now=NOW, dry_run=True)
    result = await import_experts(storage, csv_file(tmp_path, text), now=NOW)
    assert result.summary() == "created 1, updated 1, unchanged 2, skipped 0"
    assert dry.summary().endswith(": " + result.summary())
    profiles = await storage.experts.get_many(
        ["@anna:example.org", "@bert:example.org", "@carl:example.org"])
    assert profiles["@anna:example.org"] == first["@anna:example.org"]  # untouched
    assert profiles["@carl:example.org"].updated_at == EARLIER
    assert profiles["@bert:example.org"].display_name == "Bert Meyer"
    assert profiles["@bert:example.org"].updated_at == later

    text = "matrix_id,name\n@carl:example.org,Carl\n@anna:example.org,Anna S.\n"
    result = await import_experts(storage, csv_file(tmp_path, text), now=NOW)
    assert result.summary() == "created 0, updated 1, unchanged 1, skipped 0"
    anna = await storage.experts.get("@anna:example.org")
    assert anna is not None
    assert (anna.display_name, anna.topics, anna.consent_at) == ("Anna S.", ["KI", "OZG"],
                                                                 EARLIER)


async def test_an_absent_column_keeps_the_field_an_empty_cell_clears_it(storage, tmp_path):
    await storage.experts.save(Profile("@anna:example.org", display_name="A", bio="Bio",
                                       role="CDO", consent_at=EARLIER))
    text = "name,matrix_id,role\nAnna,@anna:example.org,\n"  # any column order
    await import_experts(storage, csv_file(tmp_path, text), now=NOW)
    anna = await storage.experts.get("@anna:example.org")
    assert anna is not None
    assert (anna.display_name, anna.bio, anna.role) == ("Anna", "Bio", None)


async def test_a_name_may_be_empty_only_for_an_existing_profile(storage, tmp_path):
    await storage.experts.save(Profile("@anna:example.org", consent_at=EARLIER))
    text = f"{HEADER}\n@anna:example.org,,,,,,,,\n@neu:example.org,,,,,,,,\n"
    result = await import_experts(storage, csv_file(tmp_path, text), skip_invalid=True)
    assert [str(p) for p in result.problems] == [
        "line 3: name: missing (required for a new profile)"]
    assert (result.created, result.updated, result.unchanged, result.skipped) == (0, 0, 1, 1)


@pytest.mark.parametrize(("row", "problem"), [
    ("alice,Alice,,,,,,,", "matrix_id: 'alice' is not a Matrix user id (expected @name:server)"),
    ("@alice,Alice,,,,,,,", "matrix_id: '@alice' is not a Matrix user id (expected @name:server)"),
    (",Alice,,,,,,,", "matrix_id: missing"),
    ("@alice:example.org,,,,,,,,", "name: missing (required for a new profile)"),
    ("@alice:example.org,   ,,,,,,,", "name: missing (required for a new profile)"),
    ("@alice:example.org," + "x" * 81 + ",,,,,,,", "name: too long (81 characters, at most 80)"),
    ("@alice:example.org,A," + "o" * 121 + ",,,,,,",
     "organisation: too long (121 characters, at most 120)"),
    ("@alice:example.org,A,,,,,,," + "b" * 501, "bio: too long (501 characters, at most 500)"),
    ("@alice:example.org,A,,,Kreisebene,,,,",
     "level: 'Kreisebene' is not a level (kommune, land, bund, other)"),
    ("@alice:example.org,A,,,,,Hesen,,", "state: 'Hesen' is not a German state"),
    ('@alice:example.org,A,,"KI, OZG",,,,,',
     "topics: 'KI, OZG' contains ','; separate topics with ';'"),
    ("@alice:example.org,A,,KI;--,,,,,", "topics: '--' has no letter or digit"),
    ("@alice:example.org,A,,KI;" + "t" * 61 + ",,,,,",
     "topics: '" + "t" * 61 + "' is too long (61 characters, at most 60)"),
    ("@alice:example.org,A,," + ";".join(f"T{i}" for i in range(21)) + ",,,,,",
     "topics: 21 topics, at most 20"),
    ("@alice:example.org,A,,,,,", "7 fields, the header has 9"),
    ("@alice:example.org,A,,,,,,,,", "10 fields, the header has 9"),
])
def test_each_bad_row_is_reported_with_its_line_and_reason(row, problem):
    # line 2 is good and spans two lines (a quoted line break): the bad row is on line 4.
    text = f'{HEADER}\n@ok:example.org,Ok,,,,,,,"zwei\nZeilen"\n{row}\n'
    assert problems_of(text) == [f"line 4: {problem}"]


def test_a_duplicate_matrix_id_names_the_first_line():
    text = f"{HEADER}\n@a:example.org,A,,,,,,,\n@b:example.org,B,,,,,,,\n@a:example.org,A2,,,,,,,\n"
    parsed = parse_experts(text)
    assert [str(p) for p in parsed.problems] == [
        "line 4: matrix_id: '@a:example.org' is already on line 2"]
    assert [p.display_name for p in parsed.profiles] == ["A", "B"]


def test_every_problem_of_a_row_is_reported_and_blank_rows_are_ignored():
    text = f"{HEADER}\n\n,,,,,,,,\nbob,,,,land-ish,,Hesen,,\n"
    assert problems_of(text) == [
        "line 4: matrix_id: 'bob' is not a Matrix user id (expected @name:server)",
        "line 4: name: missing (required for a new profile)",
        "line 4: level: 'land-ish' is not a level (kommune, land, bund, other)",
        "line 4: state: 'Hesen' is not a German state",
    ]
    assert parse_experts(text).rows == 1


def test_the_bio_limit_comes_from_the_settings():
    text = f"{HEADER}\n@a:example.org,A,,,,,,,{'b' * 30}\n"
    assert problems_of(text, bio_max_length=20) == [
        "line 2: bio: too long (30 characters, at most 20)"]


def test_text_is_cleaned_like_members_input():
    text = f'{HEADER}\n@a:example.org,"  Anna \t Schmidt ",,,,,,,"Zeile 1\nZeile 2\u200b"\n'
    (profile,) = parse_experts(text).profiles
    assert (profile.display_name, profile.bio) == ("Anna Schmidt", "Zeile 1 Zeile 2")


async def test_by_default_nothing_is_written_if_any_row_is_bad(storage, tmp_path):
    text = GOOD + "@carl:example.org,Carl,,,,,Hesen,,\n"
    result = await import_experts(storage, csv_file(tmp_path, text))
    assert not result.written
    assert [str(p) for p in result.problems] == ["line 4: state: 'Hesen' is not a German state"]
    assert (result.created, result.updated, result.skipped, result.bad_rows) == (0, 0, 3, 1)
    assert await storage.experts.count() == 0


async def test_skip_invalid_writes_the_good_rows(storage, tmp_path):
    text = GOOD + "@carl:example.org,Carl,,,,,Hesen,,\n"
    result = await import_experts(storage, csv_file(tmp_path, text), skip_invalid=True)
    assert result.written
    assert result.summary() == "created 2, updated 0, unchanged 0, skipped 1"
    assert [p.user_id for p in await all_of(storage)] == ["@anna:example.org",
                                                          "@bert:example.org"]


async def test_a_dry_run_writes_nothing(storage, tmp_path):
    await storage.experts.save(Profile("@anna:example.org", display_name="A", consent_at=EARLIER))
    result = await import_experts(storage, csv_file(tmp_path, GOOD), dry_run=True)
    assert not result.written
    assert not result.problems
    assert result.summary() == ("dry run, nothing written; importing the good rows would give: "
                                "created 1, updated 1, unchanged 0, skipped 0")
    assert [fields(p) for p in await all_of(storage)] == [
        fields(Profile("@anna:example.org", display_name="A", consent_at=EARLIER))]


async def test_a_byte_order_mark_is_accepted(storage, tmp_path):
    result = await import_experts(storage, csv_file(tmp_path, GOOD, bom=True))
    assert (result.created, result.problems) == (2, [])


async def test_a_semicolon_separated_file_is_read(storage, tmp_path):
    text = 'matrix_id;name;topics;state\r\n@a:example.org;Anna;"KI;OZG";Bayern\r\n'
    result = await import_experts(storage, csv_file(tmp_path, text))
    assert (result.created, result.problems) == (1, [])
    anna = await storage.experts.get("@a:example.org")
    assert anna is not None
    assert (anna.topics, anna.state) == (["KI", "OZG"], "Bayern")


@pytest.mark.parametrize(("header", "problem"), [
    ("matrix_id,organisation", "line 1: header: missing required column 'name'"),
    ("matrix_id,name,organization", "line 1: header: unknown column 'organization' "
     "(the columns are: " + ", ".join(COLUMNS) + ")"),
    ("matrix_id,name,bio,bio", "line 1: header: column 'bio' appears twice"),
    ("@a:example.org,Anna", "line 1: header: unknown column '@a:example.org' "
     "(the columns are: " + ", ".join(COLUMNS) + ")"),
])
async def test_a_bad_header_rejects_the_whole_file(storage, tmp_path, header, problem):
    path = csv_file(tmp_path, f"{header}\n@a:example.org,Anna,x\n")
    with pytest.raises(ImportFileError) as info:
        await import_experts(storage, path, skip_invalid=True)
    assert f"{path}: {problem}" in info.value.problems
    assert await storage.experts.count() == 0


@pytest.mark.parametrize(("data", "problem"), [
    (b"", "the file is empty (expected the header " + HEADER + ")"),
    (HEADER.encode() + b"\n@a:example.org,M\xfcller,,,,,,,\n", "line 2: not UTF-8"),
    (HEADER.encode() + b'\n@a:example.org,"A,,,,,,,\nB\n', "line 2: broken CSV"),
])
async def test_an_unusable_file_is_reported(storage, tmp_path, data, problem):
    path = tmp_path / "bad.csv"
    path.write_bytes(data)
    with pytest.raises(ImportFileError) as info:
        await import_experts(storage, path)
    assert info.value.problems[0].startswith(f"{path}: {problem}")


async def test_a_progress_bar_on_large_files_does_no_harm(storage, tmp_path, capsys):
    rows = "".join(f"@u{i}:example.org,User {i},,KI,,,,,\n" for i in range(1500))
    result = await import_experts(storage, csv_file(tmp_path, HEADER + "\n" + rows),
                                  progress=True)
    assert result.created == 1500
    assert "writing 1500 profiles" in capsys.readouterr().err


# -- exporting --------------------------------------------------------------------------------


async def test_export_then_import_changes_nothing(storage, tmp_path):
    stored = [
        Profile("@anna:example.org", display_name="Anna, Dr.", organisation='Stadt "Köln"',
                level="kommune", municipality="Köln", state="Nordrhein-Westfalen",
                topics=["KI", "Open Data"], role="CDO", bio="Sagt: ja; nein.",
                languages=["de", "en"], consent_at=EARLIER),
        Profile("@bert:example.org", consent_at=EARLIER),  # consented, nothing set yet
        Profile("@carl:example.org", display_name="Carl", level="bund", topics=["E-Akte"],
                consent_at=EARLIER),
    ]
    await storage.experts.upsert_many(stored)
    before = [fields(p) for p in await all_of(storage)]
    path = tmp_path / "out.csv"

    assert await export_experts(storage, path) == 3
    assert path.read_text(encoding="utf-8").splitlines()[0] == HEADER
    result = await import_experts(storage, path, now=NOW)

    assert (result.created, result.updated, result.unchanged, result.skipped,
            result.problems) == (0, 0, 3, 0, [])
    assert [fields(p) for p in await all_of(storage)] == before


@pytest.mark.parametrize(("value", "written"), [
    ("=HYPERLINK(\"https://evil.example\";\"Klick\")",
     "'=HYPERLINK(\"https://evil.example\";\"Klick\")"),
    ("+49 611 123", "'+49 611 123"), ("-1+1", "'-1+1"), ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
    ("\t=1", "'\t=1"), ("\r=1", "'\r=1"),
    ("'=1", "''=1"), ("''@x", "'''@x"),  # apostrophes of its own: one more, so both come back
    ("'Ja'", "'Ja'"), ("Stadt Köln", "Stadt Köln"), ("", ""), ("'", "'"), ("a=b", "a=b"),
])
def test_a_value_a_spreadsheet_would_run_is_written_as_text(value, written):
    assert neutralised(value) == written
    assert plain(written) == value


async def test_an_export_never_starts_a_cell_with_a_formula_and_imports_unchanged(storage,
                                                                                  tmp_path):
    stored = [
        Profile("@anna:example.org", display_name="=HYPERLINK(\"https://evil.example\")",
                organisation="+49 Amt", municipality="'=schon markiert", role="-",
                topics=["-Minus", "KI"], bio="@room Hallo", consent_at=EARLIER),
        Profile("@bert:example.org", display_name="'Bert'", consent_at=EARLIER),
    ]
    await storage.experts.upsert_many(stored)
    before = [fields(p) for p in await all_of(storage)]
    path = tmp_path / "out.csv"
    assert await export_experts(storage, path) == 2

    with path.open(encoding="utf-8", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    assert header == list(COLUMNS)
    cells = [cell for row in rows for cell in row]
    assert not [cell for cell in cells if cell.startswith(FORMULA_STARTS)]
    assert rows[0] == ["'@anna:example.org", "'=HYPERLINK(\"https://evil.example\")",
                       "'+49 Amt", "'-Minus;KI", "", "''=schon markiert", "", "'-",
                       "'@room Hallo"]
    assert rows[1][:2] == ["'@bert:example.org", "'Bert'"]

    result = await import_experts(storage, path, now=NOW)
    assert (result.unchanged, result.problems) == (2, [])
    assert [fields(p) for p in await all_of(storage)] == before


async def test_an_import_takes_off_the_mark_a_spreadsheet_needs(storage, tmp_path):
    await import_experts(storage, csv_file(tmp_path, f"""{HEADER}
'@anna:example.org,'=Anna,'Stadt,,,,,'-,
'@anna:example.org,Anna,,,,,,,
"""), skip_invalid=True, now=NOW)
    [anna] = await all_of(storage)
    assert (anna.display_name, anna.organisation, anna.role) == ("=Anna", "'Stadt", "-")


async def test_export_refuses_what_would_not_import_unchanged(storage, tmp_path):
    await storage.experts.save(Profile("@anna:example.org", display_name="Anna",
                                       topics=["KI; OZG"], consent_at=EARLIER))
    path = tmp_path / "out.csv"
    path.write_text("old", encoding="utf-8")
    with pytest.raises(ExportError) as info:
        await export_experts(storage, path)
    assert info.value.problems == [
        "@anna:example.org: topics: would change on import (['KI; OZG'] → ['KI', 'OZG'])"]
    assert path.read_text(encoding="utf-8") == "old"  # left as it was
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temporary file left


# -- the command line -------------------------------------------------------------------------


def test_cli_import_and_export(tmp_path, capsys):
    cfg = config(tmp_path)
    assert main(["import", "experts", str(csv_file(tmp_path, GOOD)), "--config", str(cfg)]) == 0
    assert capsys.readouterr().out == "created 2, updated 0, unchanged 0, skipped 0\n"

    out = tmp_path / "out.csv"
    assert main(["export", "experts", str(out), "-c", str(cfg)]) == 0
    assert capsys.readouterr().out == f"exported 2 profiles to {out}\n"
    assert main(["import", "experts", str(out), "-c", str(cfg)]) == 0
    assert capsys.readouterr().out == "created 0, updated 0, unchanged 2, skipped 0\n"


def test_cli_bad_rows_exit_1_and_are_listed_on_stderr(tmp_path, capsys):
    cfg = config(tmp_path)
    path = csv_file(tmp_path, GOOD + "@carl:example.org,Carl,,,,,Hesen,,\n")

    assert main(["import", "experts", str(path), "-c", str(cfg)]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "line 4: state: 'Hesen' is not a German state",
        "nothing written: 1 of 3 rows are bad (fix them, or use --skip-invalid to import the "
        "2 good ones)",
    ]
    assert captured.out == "created 0, updated 0, unchanged 0, skipped 3\n"

    assert main(["import", "experts", str(path), "-c", str(cfg), "--dry-run"]) == 1
    assert main(["import", "experts", str(path), "-c", str(cfg), "--skip-invalid"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == ("created 2, updated 0, unchanged 0, "
                                                        "skipped 1")


def test_cli_dry_run_creates_no_database(tmp_path, capsys):
    cfg = config(tmp_path)
    assert main(["import", "experts", str(csv_file(tmp_path, GOOD)), "-c", str(cfg),
                 "--dry-run"]) == 0
    assert "would give: created 2" in capsys.readouterr().out
    assert not (tmp_path / "data").exists()


def test_cli_reports_a_missing_file_without_traceback(tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    assert main(["import", "experts", str(missing), "-c", str(config(tmp_path))]) == 1
    err = capsys.readouterr().err
    assert err == f"{missing}: file not found\n"


def test_cli_export_needs_an_existing_database(tmp_path, capsys):
    assert main(["export", "experts", str(tmp_path / "o.csv"), "-c", str(config(tmp_path))]) == 1
    assert capsys.readouterr().err.startswith("storage.database: file not found: ")
    assert not (tmp_path / "o.csv").exists()


def test_cli_config_errors_are_reported_as_for_run(tmp_path, capsys):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[matrix]\nhomeserver = "https://matrix.example.org"\n', encoding="utf-8")
    assert main(["import", "experts", str(csv_file(tmp_path, GOOD)), "-c", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "matrix.user_id: missing" in err
    assert "Traceback" not in err


def test_cli_import_needs_to_know_what(capsys):
    with pytest.raises(SystemExit) as info:
        main(["import"])
    assert info.value.code == 2
