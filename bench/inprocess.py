"""Measurements without a homeserver: dispatch overhead, the per-command pipeline, cold start.

`dispatch_overhead()` and `pipeline_cost()` run in the calling process. `cold_start()` starts a
fresh interpreter per sample (`python -m bench.inprocess --cold-start DIR`), so module imports,
the migration of an empty database and loading the catalog and registry are measured the way a
starting bot meets them. Only the standard library is imported at module level: the child's
import time is part of what it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOM = "!bench:localhost"
SENDER = "@member:localhost"


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (q in 0..1) of a non-empty list."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[index]


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "mean": None, "max": None}
    return {"n": len(values), "p50": quantile(values, 0.50), "p95": quantile(values, 0.95),
            "mean": statistics.fmean(values), "max": max(values)}


async def services_on(database: str | Path) -> Any:
    """Services as the bot builds them (`bot.runtime.Bot._start`), on `database`; the features'
    configs are their defaults (what `None` stands for)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from bot.features import FEATURES
    from commands.feature import routers
    from commands.features import open_storage
    from commands.framework import Registry, Services
    from commands.i18n import Catalog

    class Clock:
        def now(self) -> datetime:
            return datetime.now(ZoneInfo("Europe/Berlin"))

    storage = await open_storage(database)
    return Services(storage=storage, catalog=Catalog.load(), registry=Registry(routers(FEATURES)),
                    clock=Clock(), prefix="!")


async def dispatch_overhead(calls: int, bodies: tuple[str, ...] = ("!ping", "!help")
                            ) -> dict[str, dict[str, Any]]:
    """`dispatch()` of each body `calls` times (after a warm-up), in microseconds per call."""
    from commands.framework import Level, Request, dispatch

    services = await services_on(":memory:")

    async def member_level() -> Level:
        return Level.MEMBER

    results: dict[str, dict[str, Any]] = {}
    try:
        for body in bodies:
            request = Request("$bench", ROOM, SENDER, body, "de", member_level)
            for _ in range(min(100, calls)):
                await dispatch(request, services)
            samples = []
            for _ in range(calls):
                began = time.perf_counter_ns()
                reply = await dispatch(request, services)
                samples.append((time.perf_counter_ns() - began) / 1000)
                if not reply:  # None, or an empty list of replies
                    raise RuntimeError(f"dispatch({body!r}) gave no reply")
            results[body] = summary(samples)
    finally:
        await services.storage.close()
    return results


PLACEMENTS = ("one core", "two cores")


def _pin(placement: str) -> set[int] | None:
    """Put the event loop's thread on the first CPU, and every other thread of this process
    (the SQLite connection's among them) on the same one or on the second. Returns the affinity
    to restore, or None where that cannot be done (fewer than two CPUs, not Linux)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    saved = os.sched_getaffinity(0)
    cpus = sorted(saved)
    if len(cpus) < 2:
        return None
    main = threading.get_native_id()
    os.sched_setaffinity(0, {cpus[0]})  # pid 0: the calling thread only
    other = cpus[0] if placement == "one core" else cpus[1]
    for tid in _threads():
        if tid != main:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, {other})
    return saved


def _unpin(saved: set[int] | None) -> None:
    if saved is None:
        return
    for tid in _threads():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, saved)


def _threads() -> list[int]:
    return [int(tid) for tid in os.listdir("/proc/self/task")]


async def pipeline_cost(commands: int, body: str = "!ping", placement: str | None = None
                        ) -> dict[str, Any]:
    """What the bot does per command besides the network, on a file database as in production:
    the sync loop's transaction (inbox insert, room cursor, sync token), handling (dispatch,
    rendering, outbox insert and inbox mark in one transaction), taking the outbox row and
    deleting it once sent. Milliseconds per command.

    Each transaction is a hand-off between the event loop and aiosqlite's thread (three per
    command: the sync loop's, the handling's, the delete). Whether the two threads share a CPU
    changes the cost severalfold on some machines, so `placement` ("one core", "two cores")
    pins them; None leaves it to the scheduler."""
    from bot.matrix.permissions import Permissions
    from bot.pipeline.handling import CommandHandler
    from storage.inbox import InboxMessage
    from storage.rooms import RoomCursor

    async def no_state(room_id: str) -> tuple[None, None]:
        return None, None

    with tempfile.TemporaryDirectory(prefix="nextbot-bench-") as tmp:
        services = await services_on(str(Path(tmp) / "bench.db"))
        storage = services.storage
        await storage.session.save_login("@bot:localhost", "DEVICE", "token")
        handler = CommandHandler(services, Permissions(no_state, [], 50), "de",
                                 lambda: int(time.time() * 1000), on_reply=lambda room_id: None)
        samples = []
        saved = _pin(placement) if placement else None
        try:
            for index in range(commands + 20):
                message = InboxMessage(f"$bench{index}", ROOM, SENDER, body,
                                       int(time.time() * 1000))
                began = time.perf_counter_ns()
                async with storage.db.transaction():  # as `bot.pipeline.syncer.Syncer.sync_once`
                    await storage.inbox.add_on_commit([message],
                                                      received_at=int(time.time() * 1000))
                    await storage.rooms.set_cursor(RoomCursor(ROOM, message.event_id,
                                                              message.origin_ts))
                    await storage.session.set_sync_token(f"s{index}")
                queued = await storage.inbox.next_for_room(ROOM)
                assert queued is not None
                await handler.handle(queued)
                outgoing = await storage.outbox.next_for_room(ROOM)
                assert outgoing is not None
                await storage.outbox.remove(outgoing.txn_id, ROOM)
                if index >= 20:  # the first ones warm caches up
                    samples.append((time.perf_counter_ns() - began) / 1e6)
        finally:
            _unpin(saved)
            await storage.close()
    return summary(samples) | {"pinned": saved is not None}


# -- cold start ------------------------------------------------------------------------------


async def _cold_start_child(directory: Path) -> dict[str, float]:
    began = time.perf_counter()
    import bot.runtime  # noqa: F401 - timed: importing the whole bot
    from bot.features import FEATURES
    from commands.feature import routers
    from commands.features import open_storage
    from commands.framework import Registry
    from commands.i18n import Catalog

    imported = time.perf_counter()
    storage = await open_storage(directory / "nextbot.db")
    opened = time.perf_counter()
    catalog = Catalog.load()
    registry = Registry(routers(FEATURES))
    ready = time.perf_counter()
    assert catalog.languages() and registry.all()
    await storage.close()
    return {
        "imports_ms": (imported - began) * 1000,
        "storage_ms": (opened - imported) * 1000,
        "catalog_registry_ms": (ready - opened) * 1000,
    }


def cold_start(samples: int, timeout: float = 60.0) -> dict[str, Any]:
    """Median over `samples` fresh interpreters, each with a new, empty database file."""
    runs: list[dict[str, float]] = []
    for _ in range(samples):
        with tempfile.TemporaryDirectory(prefix="nextbot-bench-cold-") as tmp:
            began = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-m", "bench.inprocess", "--cold-start", tmp],
                capture_output=True, text=True, timeout=timeout, check=False,
            )
            wall = (time.perf_counter() - began) * 1000
            if result.returncode != 0:
                raise RuntimeError(f"cold-start child failed:\n{result.stderr[-2000:]}")
            run = json.loads(result.stdout.strip().splitlines()[-1])
            run["process_ms"] = wall
            run["storage_registry_ms"] = run["storage_ms"] + run["catalog_registry_ms"]
            runs.append(run)
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]} | {"n": samples}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess")
    parser.add_argument("--cold-start", metavar="DIR", required=True,
                        help="measure one cold start with an empty database in DIR")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(_cold_start_child(Path(args.cold_start)))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
