"""Command line entry point: ``nextbot run``, ``check-config``, ``import …``, ``export …``.

Add a subcommand by writing a ``_cmd_<name>(args) -> int`` function and
registering it in ``build_parser()``. ``import`` and ``export`` take what to move as a
second word (``nextbot import experts FILE.csv``); add e.g. ``import workshops`` with one more
parser in ``_add_import_parsers`` / ``_add_export_parsers`` and its ``_cmd_`` function.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.settings import ConfigError, Settings, load_settings, redacted

if TYPE_CHECKING:
    from storage import Storage

DEFAULT_CONFIG = Path("./config.toml")
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

log = logging.getLogger("nextbot")


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        default=DEFAULT_CONFIG,
        metavar="PATH",
        help=f"TOML configuration file (default: {DEFAULT_CONFIG}); "
        "NEXTBOT_* environment variables override it",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nextbot", description="Matrix community bot for the NExT network."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="connect to Matrix and run the bot")
    _add_config_option(run)
    run.set_defaults(func=_cmd_run)

    check = sub.add_parser("check-config", help="validate the configuration and exit")
    _add_config_option(check)
    check.set_defaults(func=_cmd_check_config)

    device = sub.add_parser("device", help="show the bot's device and its key, to verify it")
    _add_config_option(device)
    device.set_defaults(func=_cmd_device)

    reset = sub.add_parser(
        "reset-identity",
        help="replace the bot's cross-signing identity (after its store was lost)",
        description="Make a new cross-signing identity for the bot and publish it, replacing the "
        "one the homeserver has; the bot's password proves the account. Needed when the bot "
        "refuses to start because the homeserver has an identity its store does not (the store "
        "was lost). Stop the bot first. Moderators who verified the bot verify it again.")
    _add_config_option(reset)
    reset.add_argument("--password-stdin", action="store_true",
                       help="read the password from the first line of standard input (default: "
                       "matrix.password, else asked for)")
    reset.set_defaults(func=_cmd_reset_identity)

    imp = sub.add_parser("import", help="import data from a CSV file (see: import experts -h)")
    _add_import_parsers(imp.add_subparsers(dest="what", metavar="WHAT", required=True))

    exp = sub.add_parser("export", help="export data to a CSV file (see: export experts -h)")
    _add_export_parsers(exp.add_subparsers(dest="what", metavar="WHAT", required=True))

    return parser


_EXPERTS_FORMAT = """\
The file: UTF-8 CSV (a BOM is fine), comma-separated (a file whose header only parses
with ';' is read with ';'), one profile per row, this header, columns in any order:

  matrix_id,name,organisation,topics,level,municipality,state,role,bio

Only matrix_id and name are required (name may be empty for a profile that already
exists). topics are separated by ';' (a topic cannot contain ';' or ','); level is
kommune, land, bund or other (German and English words are understood); state is
one of the 16 states (name, code or common spelling: NRW, bw, Bavaria).
"""


def _add_import_parsers(sub: Any) -> None:
    experts = sub.add_parser(
        "experts",
        help="add or update expert profiles from a CSV file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Add or update expert directory profiles (by matrix_id) from a CSV file.\n\n"
        + _EXPERTS_FORMAT
        + """
Every row is checked first; each problem is reported as 'line N: column: reason'.
If any row is bad, nothing is written (exit 1) unless --skip-invalid is given.
An empty cell clears the field; a column left out of the header keeps the field of
existing profiles as it is; members' languages are always kept. Rows that change
nothing are not written (counted as unchanged), so re-importing a member list only
writes what changed.

CONSENT: by importing, you assert that the network has the consent of every member
in the file to be listed in the expert directory. New profiles record the import
time as their consent time; existing profiles keep theirs. Members can still see,
export and delete their profile with !profil.
""",
    )
    experts.add_argument("file", type=Path, metavar="FILE.csv", help="the CSV file to import")
    _add_config_option(experts)
    experts.add_argument("--skip-invalid", action="store_true",
                         help="import the good rows even if some rows are bad (exit 0)")
    experts.add_argument("--dry-run", action="store_true",
                         help="only check the file and report; write nothing "
                         "(exit 1 if any row is bad)")
    experts.set_defaults(func=_cmd_import_experts)
    workshops = sub.add_parser(
        "workshops",
        help="add workshops from a CSV file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Add workshops from a CSV file.

The file: UTF-8 CSV (a BOM is fine), comma-separated (a file whose header only parses
with ';' is read with ';'), one workshop per row, this header, columns in any order:

  title,starts_at,ends_at,community,location,url,description

title, starts_at and ends_at are required. Times are ISO 8601 on the wall clock of
[bot] timezone: 2026-12-03T10:00 or 2026-12-03 10:00 (03.12.2026 10:00 is read too);
a time with an offset (2026-12-03T10:00+01:00, 2026-12-03T09:00Z) is converted to that
zone. The end must be after the start and at most 14 days later, the start at most
5 years ahead and not before 2000; url must be an http(s) address. Text is made one
line, as the bot does with members' input; the length limits are those of !werkstatt neu.
A workshop that has started already (a calendar export holds the past ones too) is
imported as past: never listed as coming up, no reminders; the summary counts them.

Every row is checked first; each problem is reported as 'line N: column: reason'.
If any row is bad, nothing is written (exit 1) unless --skip-invalid is given.

A row with the same title (case and spacing ignored) and the same start as a stored
workshop, planned or cancelled, is not added again but counted as 'already there',
and not changed either (change a workshop with !werkstatt ändern). So a file can be
imported again after it grew, also once its first workshops have taken place.

Imported workshops belong to no room: their reminders go to the rooms in
[workshops] rooms (a running bot plans them within 15 minutes). They have no limit on
places; moderators of any room can edit or cancel them.
""",
    )
    workshops.add_argument("file", type=Path, metavar="FILE.csv",
                           help="the CSV file to import")
    _add_config_option(workshops)
    workshops.add_argument("--skip-invalid", action="store_true",
                           help="import the good rows even if some rows are bad (exit 0)")
    workshops.add_argument("--dry-run", action="store_true",
                           help="only check the file and report; write nothing "
                           "(exit 1 if any row is bad)")
    workshops.set_defaults(func=_cmd_import_workshops)
    members = sub.add_parser(
        "municipalities",
        help="add members of the network (municipalities and other organisations) from a CSV file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Add member organisations of the network to the register from a CSV file.

The file: UTF-8 CSV (a BOM is fine), comma-separated (a file whose header only parses
with ';' is read with ';'), one member per row, this header, columns in any order:

  name,kind,state,ags,joined_on,website

name and state are required. kind is Stadt, Gemeinde, Landkreis, Land, Bundesbehörde
or other (German or English words; empty: other); state one of the 16 states (name,
code or common spelling: NRW, BW); ags the 8-digit official municipality key, whose
first two digits must be the state's; joined_on 2026-11-26 or 26.11.2026, not in the
future; website an http(s) address.

Every row is checked first; each problem is reported as 'line N: column: reason'.
If any row is bad, nothing is written (exit 1) unless --skip-invalid is given.
A member already in the register (same AGS, else same name and state), also one an
admin removed, is not added again but counted as 'already there'.

Importing into an empty register only fills it. Later imports register the new members
to be announced: a running bot posts one announcement per room with announcements
within 15 minutes (all joins of one import in one message). --silent announces nothing.
""",
    )
    members.add_argument("file", type=Path, metavar="FILE.csv", help="the CSV file to import")
    _add_config_option(members)
    members.add_argument("--skip-invalid", action="store_true",
                         help="import the good rows even if some rows are bad (exit 0)")
    members.add_argument("--dry-run", action="store_true",
                         help="only check the file and report; write nothing "
                         "(exit 1 if any row is bad)")
    members.add_argument("--silent", action="store_true",
                         help="register the new members without announcing them")
    members.set_defaults(func=_cmd_import_municipalities)


def _add_export_parsers(sub: Any) -> None:
    experts = sub.add_parser(
        "experts",
        help="write every expert profile to a CSV file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write every expert directory profile to a CSV file in the format\n"
        "'import experts' reads, so that importing it again changes nothing.\n\n"
        + _EXPERTS_FORMAT
        + """
The file holds personal data: it is created readable by you only. An existing file is
replaced, and only once the export is complete.
""",
    )
    experts.add_argument("file", type=Path, metavar="FILE.csv", help="the CSV file to write")
    _add_config_option(experts)
    experts.set_defaults(func=_cmd_export_experts)


def _load_or_report(path: Path) -> Settings | None:
    """Load the settings, or print every problem on its own line to stderr."""
    try:
        return load_settings(path)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return None


def _cmd_check_config(args: argparse.Namespace) -> int:
    settings = _load_or_report(args.config)
    if settings is None:
        return 1
    note = "" if args.config.exists() else " (file not found, settings from environment)"
    print(f"config OK: {args.config}{note}")
    return 0


def _cmd_device(args: argparse.Namespace) -> int:
    settings = _load_or_report(args.config)
    if settings is None:
        return 1

    async def work(storage: Storage) -> int:
        from bot.matrix.crypto import device_fingerprint

        session = await storage.session.get()
        if session is None:
            _report(["no device yet: the bot has never logged in (start it once with run)"])
            return 1
        try:
            key = device_fingerprint(settings.matrix, session.device_id)
        except LookupError as exc:
            _report([str(exc)])
            return 1
        from bot.matrix.cross_signing import IdentityError, load_identity, spaced

        try:
            identity = load_identity(settings.matrix.store_path, session.user_id)
        except IdentityError as exc:
            _report([str(exc)])
            return 1
        master = (spaced(identity.master_public) if identity
                  else "none yet (the bot makes it at its next start)")
        print(f"user:   {session.user_id}\ndevice: {session.device_id}\nkey:    {spaced(key)}\n"
              f"master: {master}\n"
              f"In Element: /verify {session.user_id} {session.device_id} {key}")
        return 0

    return _with_storage(settings, work, must_exist=True)


def _cmd_reset_identity(args: argparse.Namespace) -> int:
    settings = _load_or_report(args.config)
    if settings is None:
        return 1
    if not settings.matrix.encryption:
        _report(["matrix.encryption is off: the bot has no cross-signing identity"])
        return 1
    password = _password(args, settings)
    if not password:
        _report(["no password: give it in matrix.password, on standard input "
                 "(--password-stdin) or when asked"])
        return 1

    async def work(storage: Storage) -> int:
        from bot.matrix.connection import LoginError, MatrixConnection, TransientError
        from bot.matrix.cross_signing import IdentityError, spaced
        from bot.matrix.crypto import StoreKeyError

        session = await storage.session.get()
        if session is None or session.user_id != settings.matrix.user_id:
            _report(["the bot has not logged in yet: start it once with run (it makes its "
                     "identity itself then)"])
            return 1
        connection = MatrixConnection(settings.matrix)
        try:
            identity, deleted = await connection.reset_identity(storage.session, password)
        except (IdentityError, LoginError, StoreKeyError, TransientError) as exc:
            _report([f"the identity was not replaced: {exc}"])
            return 1
        finally:
            await connection.close()
        if deleted:
            print(f"device {deleted} had lost its keys: deleted; the bot logged in as a new "
                  "device, which it signs at its next start")
        print(f"new cross-signing identity for {session.user_id}\n"
              f"master: {spaced(identity.master_public)}\n"
              "Start the bot again. Moderators who had verified it are told in Element that "
              "its identity changed: they verify it again (README, 'Encrypted rooms').")
        return 0

    return _with_storage(settings, work, must_exist=True)


def _password(args: argparse.Namespace, settings: Settings) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n") or None
    if settings.matrix.password is not None:
        return settings.matrix.password.get_secret_value()
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"password of {settings.matrix.user_id}: ") or None
    return None


def _report(lines: list[str]) -> None:
    for line in lines:
        print(line, file=sys.stderr)


def _with_storage(settings: Settings, work: Callable[[Storage], Awaitable[int]], *,
                  must_exist: bool = False, in_memory_if_missing: bool = False) -> int:
    """Open the configured database, run ``work`` on it, close it; problems as one line each."""
    from commands.features import open_storage
    from storage.schema import DatabaseTooNewError

    path = settings.storage.database
    if not path.exists() and (must_exist or in_memory_if_missing):
        if must_exist:
            _report([f"storage.database: file not found: {path}"])
            return 1
        path = Path(":memory:")  # nothing stored yet: check against an empty directory

    async def go() -> int:
        storage = await open_storage(path)
        try:
            return await work(storage)
        finally:
            await storage.close()

    try:
        return asyncio.run(go())
    except KeyboardInterrupt:
        _report(["interrupted, nothing written"])
        return 130
    except DatabaseTooNewError as exc:
        _report([f"storage.database: {exc}"])
        return 1
    except sqlite3.Error as exc:
        _report([f"storage.database: {path}: {exc}"])
        return 1
    except OSError as exc:
        _report([f"{exc.filename or path}: {exc.strerror or exc}"])
        return 1


def _cmd_import_experts(args: argparse.Namespace) -> int:
    settings = _load_or_report(args.config)
    if settings is None:
        return 1
    from bot.importers.experts import run_cli

    async def work(storage: Storage) -> int:
        return await run_cli(
            storage, args.file, skip_invalid=args.skip_invalid, dry_run=args.dry_run,
            bio_max_length=settings.experts.bio_max_length, progress=sys.stderr.isatty(),
        )

    return _with_storage(settings, work, in_memory_if_missing=args.dry_run)


def _cmd_import_workshops(args: argparse.Namespace) -> int:
    settings = _load_or_report(args.config)
    if settings is None:
        return 1
    from bot.importers.workshops import run_cli

    async def work(storage: Storage) -> int:
        return await run_cli(
            storage, args.file, timezone=settings.bot.timezone,
            skip_invalid=args.skip_invalid, dry_run=args.dry_run,
            reminders=settings.workshops.reminders, reminder_rooms=settings.workshops.rooms,
            progress=sys.stderr.isatty(),
        )

    return _with_storage(settings, work, in_memory_if_missing=args.dry_run)


def _cmd_import_municipalities(args: argparse.Namespace) -> int:
    settings = _load_or_report(args.config)
    if settings is None:
        return 1
    from bot.importers.municipalities import run_cli

    async def work(storage: Storage) -> int:
        return await run_cli(
            storage, args.file, skip_invalid=args.skip_invalid, dry_run=args.dry_run,
            silent=args.silent, announcement_rooms=len(settings.announcements.rooms),
            progress=sys.stderr.isatty(),
        )

    return _with_storage(settings, work, in_memory_if_missing=args.dry_run)


def _cmd_export_experts(args: argparse.Namespace) -> int:
    settings = _load_or_report(args.config)
    if settings is None:
        return 1
    from bot.importers.experts import ExportError, export_experts

    async def work(storage: Storage) -> int:
        try:
            count = await export_experts(storage, args.file,
                                         bio_max_length=settings.experts.bio_max_length,
                                         progress=sys.stderr.isatty())
        except ExportError as exc:
            _report(exc.problems)
            _report([f"nothing written: {len(exc.problems)} problems; these profiles would not "
                     "import again unchanged"])
            return 1
        print(f"exported {count} profiles to {args.file}")
        return 0

    return _with_storage(settings, work, must_exist=True)


async def _serve(run_bot: Callable[[Settings], Awaitable[None]], settings: Settings) -> None:
    # SIGTERM (systemd, docker stop) cancels the bot like Ctrl-C does; its stop then takes no
    # more commands, finishes those in hand, sends what is queued (briefly) and closes.
    task = asyncio.current_task()
    if task is not None:

        def stop() -> None:
            if task.cancelling():
                return  # stopping already: a second SIGTERM must not cut the stop short
            log.info("SIGTERM: stopping")
            task.cancel()

        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not available (Windows, or not in the main thread)
    await run_bot(settings)


def _cmd_run(args: argparse.Namespace) -> int:
    settings = _load_or_report(args.config)
    if settings is None:
        return 1
    logging.basicConfig(level=settings.logging.level, format=LOG_FORMAT)
    logging.getLogger("nio").setLevel(logging.WARNING)  # nio logs every room event at INFO
    log.debug("settings: %s", redacted(settings))

    from bot.runtime import run_bot  # imported late: needs the Matrix libraries

    try:
        asyncio.run(_serve(run_bot, settings))
    except (KeyboardInterrupt, asyncio.CancelledError):
        log.info("stopped")
        return 0
    except Exception:
        log.exception("the bot stopped because of an unexpected error")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
