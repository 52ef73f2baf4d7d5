"""Our bot in its own process for the benchmark, configured like a production deployment.

    python -m bench.run_nextbot --homeserver URL --user @nextbot:localhost --password PW \
        --workdir DIR [--log-file PATH]

Builds `Settings` (SQLite database and nio store under DIR, the homeserver's own server allowed
to invite) and runs `bot.runtime.Bot` until SIGTERM or SIGINT, then stops it cleanly. Logs go to
`--log-file` (default DIR/bot.log) at INFO, as `nextbot run` logs by default.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from bot.cli import LOG_FORMAT
from bot.runtime import Bot
from bot.settings import Settings, server_of


async def run(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir)
    settings = Settings(
        matrix={"homeserver": args.homeserver, "user_id": args.user, "password": args.password,
                "store_path": str(workdir / "store")},
        # The burst is one member sending 100 commands at once: measured without the
        # per-member limit, which would answer 20 and then ask to slow down.
        bot={"allowed_servers": [server_of(args.user)], "member_rate_limit": 0},
        storage={"database": str(workdir / "nextbot.db")},
    )
    bot = Bot(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await bot.start()
        print("nextbot: running", flush=True)
        stopping = asyncio.ensure_future(stop.wait())
        running = asyncio.ensure_future(bot.wait())
        done, _ = await asyncio.wait({stopping, running}, return_when=asyncio.FIRST_COMPLETED)
        for task in (stopping, running):
            if task not in done:
                task.cancel()
        if running in done:
            running.result()  # a task of the bot ended: show why
            return 1
        return 0
    finally:
        await bot.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run_nextbot",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--homeserver", required=True)
    parser.add_argument("--user", required=True, help="full user id, e.g. @nextbot:localhost")
    parser.add_argument("--password", required=True)
    parser.add_argument("--workdir", required=True, help="directory for the database and store")
    parser.add_argument("--log-file", help="default: WORKDIR/bot.log")
    args = parser.parse_args(argv)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT,
                        filename=args.log_file or str(Path(args.workdir) / "bot.log"))
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
