"""What a benchmark run measures and how often (the full and the quick plan), and its
progress lines on stderr."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    name: str
    round_trips: int  # per command kind
    burst_rooms: int
    burst_per_room: int
    quiet_s: float  # a burst is over when no reply came for this long …
    burst_max_wait_s: float  # … or this long after the last send was accepted
    dispatch_calls: int
    pipeline_commands: int
    cold_starts: int
    expert_sizes: tuple[int, ...]  # synthetic directories, profiles each
    expert_runs: int  # rounds of the `!experten` query mix per size
    bot_profiles: int  # the directory in our bot's database during the Matrix phases
    scheduler_items: int  # scheduled reminders the scheduler plans at start
    scheduler_runs: int


FULL = Plan("full", round_trips=50, burst_rooms=10, burst_per_room=100, quiet_s=5.0,
            burst_max_wait_s=120.0, dispatch_calls=5000, pipeline_commands=500, cold_starts=5,
            expert_sizes=(2_000, 100_000), expert_runs=30, bot_profiles=100_000,
            scheduler_items=10_000, scheduler_runs=5)
QUICK = Plan("quick", round_trips=5, burst_rooms=10, burst_per_room=10, quiet_s=3.0,
             burst_max_wait_s=30.0, dispatch_calls=1000, pipeline_commands=100, cold_starts=2,
             expert_sizes=(2_000,), expert_runs=10, bot_profiles=2_000,
             scheduler_items=2_000, scheduler_runs=1)


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
