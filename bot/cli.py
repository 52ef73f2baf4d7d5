"""Command line entry point: ``nextbot run`` and ``nextbot check-config``.

Add a subcommand by writing a ``_cmd_<name>(args) -> int`` function and
registering it in ``build_parser()``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot.settings import ConfigError, Settings, load_settings, redacted

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


async def _serve(run_bot: Callable[[Settings], Awaitable[None]], settings: Settings) -> None:
    # SIGTERM (systemd, docker stop) cancels the bot like Ctrl-C does, so its
    # cleanup (closing the Matrix client and the database) still runs.
    task = asyncio.current_task()
    if task is not None:
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
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
