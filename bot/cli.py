"""Command line entry point: ``nextbot run``, ``check-config``, ``import …``, ``export …``.

Add a subcommand of the bot's own by writing a ``_cmd_<name>(args) -> int`` function and
registering it in ``build_parser()``. ``import`` and ``export`` take what to move as a second
word (``nextbot import experts FILE.csv``): each is a feature's tool, declared with its importer
(``bot/importers/file_tool.py``) and listed in ``bot/features.py``.
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
from typing import TYPE_CHECKING

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

    # The features' tools: `nextbot import experts FILE.csv` … (bot/importers/file_tool.py).
    from bot.features import FILE_TOOLS

    for verb, what in (("import", "import data from a CSV file"),
                       ("export", "export data to a CSV file")):
        tools = [tool for tool in FILE_TOOLS if tool.verb == verb]
        if not tools:
            continue
        verb_parser = sub.add_parser(verb, help=f"{what} (see: {verb} {tools[0].what} -h)")
        kinds = verb_parser.add_subparsers(dest="what", metavar="WHAT", required=True)
        for tool in tools:
            parser_of_tool = kinds.add_parser(
                tool.what, help=tool.help, description=tool.description,
                formatter_class=argparse.RawDescriptionHelpFormatter)
            parser_of_tool.add_argument(
                "file", type=Path, metavar="FILE.csv",
                help="the CSV file to import" if verb == "import" else "the CSV file to write")
            _add_config_option(parser_of_tool)
            tool.options(parser_of_tool)
            parser_of_tool.set_defaults(func=_cmd_file_tool, tool=tool)

    return parser


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


def _cmd_file_tool(args: argparse.Namespace) -> int:
    """`nextbot import …` or `nextbot export …`: the feature's tool on the configured database
    (a dry run of an import works without one)."""
    settings = _load_or_report(args.config)
    if settings is None:
        return 1
    tool = args.tool

    async def work(storage: Storage) -> int:
        return await tool.run(settings, storage, args)

    return _with_storage(settings, work, must_exist=tool.database_must_exist,
                         in_memory_if_missing=getattr(args, "dry_run", False))


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
