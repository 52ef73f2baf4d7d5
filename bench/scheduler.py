"""The scheduler's rebuild with 10,000 scheduled items, in-process (no homeserver).

    python -m bench.scheduler [--items N] [--runs N]

A file database gets N / 2 workshops in 100 rooms, all starting between one and two days from now,
so that both default reminders (a day and an hour before) of each fall within the scheduler's
planning horizon: N occurrences to plan. Then `bot.pipeline.scheduler.Scheduler` with the workshops'
reminder source, as `bot.runtime` wires it, is measured:

- *start*: `Scheduler.start()` on that database: the catch-up (nothing due) and the planning of
  every job (reading the workshops, the delivery records, one APScheduler job per occurrence);
- *re-plan*: `plan_all()` once the jobs exist (what runs every 15 minutes and after a change).

Milliseconds; start and stop once per run, the median of the runs is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ITEMS = 10_000
ROOMS = 100
TIMEZONE = ZoneInfo("Europe/Berlin")


async def fill(database: Path, items: int, now: datetime) -> dict[str, Any]:
    """`items // 2` workshops starting between 25 and 47 hours from now; seconds."""
    from commands.features import open_storage
    from storage.workshops import Workshop

    began = time.perf_counter()
    storage = await open_storage(database)
    try:
        count = items // 2
        span = timedelta(hours=22)
        async with storage.db.transaction():
            for index in range(count):
                starts = now + timedelta(hours=25) + span * index / max(1, count)
                starts = starts.replace(second=0, microsecond=0)
                await storage.workshops.add(Workshop(
                    title=f"Werkstatt {index}", starts_at=starts,
                    ends_at=starts + timedelta(hours=2), created_by="@orga:localhost",
                    room_id=f"!room{index % ROOMS}:localhost"), at=now - timedelta(days=7))
    finally:
        await storage.close()
    return {"workshops": items // 2, "fill_s": time.perf_counter() - began}


class _Clock:
    def now(self) -> datetime:
        return datetime.now(TIMEZONE)


async def rebuild(database: Path, runs: int) -> dict[str, Any]:
    from bench.inprocess import services_on
    from bot.pipeline.scheduler import Scheduler
    from commands import workshops

    services = await services_on(database)
    services.configs["workshops"] = workshops.WorkshopConfig.create(["1d", "1h"], [], TIMEZONE)
    queued: list[str] = []
    starts: list[float] = []
    replans: list[float] = []
    jobs = 0
    try:
        for _ in range(runs):
            scheduler = Scheduler(
                services.storage, [workshops.WorkshopReminders(services)], clock=_Clock(),
                timezone=TIMEZONE, grace=timedelta(minutes=30), catalog=services.catalog,
                default_language="de", on_queued=queued.append)
            began = time.perf_counter()
            await scheduler.start()
            started = time.perf_counter()
            await scheduler.plan_all()
            replanned = time.perf_counter()
            jobs = len(scheduler.job_ids()) - 1  # without the re-planning job itself
            scheduler.stop()
            starts.append((started - began) * 1000)
            replans.append((replanned - started) * 1000)
    finally:
        await services.storage.close()
    if queued:
        raise RuntimeError(f"the scheduler posted {len(queued)} message(s): nothing was due")
    return {"jobs": jobs, "runs": runs, "start_ms": statistics.median(starts),
            "replan_ms": statistics.median(replans), "start_samples_ms": starts,
            "replan_samples_ms": replans}


async def measure(items: int = ITEMS, runs: int = 3, workdir: Path | None = None
                  ) -> dict[str, Any]:
    """Fill a database with `items` scheduled reminders and time the rebuild; the database is
    deleted afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="scheduler-", dir=workdir))
    try:
        database = directory / "nextbot.db"
        filled = await fill(database, items, datetime.now(TIMEZONE))
        return {"items": items, **filled, **await rebuild(database, runs)}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scheduler",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=ITEMS)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    found = asyncio.run(measure(args.items, args.runs))
    print(json.dumps({k: v for k, v in found.items() if not k.endswith("samples_ms")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
