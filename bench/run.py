"""The benchmark: our bot against a minimal nio bot on one throwaway Synapse.

    python -m bench.run [--quick] [--json PATH] [--png PATH] [--keep]

Three processes talk to one Synapse: the reference bot (`bench.reference_bot`), our bot
(`bench.run_nextbot`) and this one, which plays the members. Measured:

1. Round trip, sequential: a member's send → the reply seen in that member's sync. Reference
   `!ping`, our `!ping`, our `!help`, our `!experten <topic>`, taking turns (A B C D A B C D …),
   N of each. Our bot's database holds a synthetic expert directory (`bench.experts.generate`;
   full: 100,000 profiles, quick: 2,000), written before the bot starts.
2. Burst: 10 members in 10 rooms start all their commands at once, first against the reference
   bot, then against ours (each bot has its own 10 rooms). Counted from the members' side:
   commands answered exactly once, not at all, more than once; throughput and latency.
3. Without a homeserver: dispatch overhead, the per-command pipeline, cold start; and the
   resident memory of both bot processes after the run.
4. The expert directory, without a homeserver (`bench.experts`): synthetic directories of 2,000
   and 100,000 profiles (quick: 2,000), each imported from a CSV file as `nextbot import experts`
   does, then `!experten` over a fixed query mix, then the cold start on that database against
   one without profiles.
5. NExT-to-meet-you pairing (`bench.pairing`): 2,000 synthetic participants with three rounds
   of history, paired in-process (quick: 5 runs, full: 30).
6. The scheduler's rebuild (`bench.scheduler`): a database with 5,000 workshops whose two
   reminders each fall within the planning horizon, `Scheduler.start()` planning those 10,000
   jobs, and a re-plan (quick: 2,000 items).

Every process it starts is stopped again, on errors and Ctrl-C too. Compare the figures of one
run with each other (ratios), not absolute times across runs or machines.

The modules: `plan` (the full and the quick plan), `homeserver_phases` (1 and 2, over Matrix),
`processes` (the bots' processes, CPU time), `report` (the targets, the table, the notes, the
chart); 3 to 6 are measured by `inprocess`, `experts`, `pairing` and `scheduler`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench import experts, inprocess, pairing
from bench import scheduler as scheduler_bench
from bench.homeserver_phases import run_homeserver_phases
from bench.plan import FULL, QUICK, Plan, say
from bench.processes import cpu_seconds, machine_busy_seconds
from bench.report import chart, notes, table, verdicts

RESULTS_DIR = Path(__file__).parent / "results"


async def run_inprocess_phases(plan: Plan, workdir: Path) -> dict[str, Any]:
    """Each measurement on its own: one that fails is reported, the others still run."""
    say(f"in-process: dispatch × {plan.dispatch_calls}, pipeline × {plan.pipeline_commands}, "
        f"cold start × {plan.cold_starts} …")

    async def guarded(measure: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await measure()
        except Exception as exc:
            say(f"in-process measurement failed: {type(exc).__name__}: {exc}")
            return {"error": f"{type(exc).__name__}: {str(exc)[-500:]}"}

    results: dict[str, Any] = {
        "dispatch_us": await guarded(lambda: inprocess.dispatch_overhead(plan.dispatch_calls)),
        # body -> placement of the event loop and the SQLite thread -> figures
        "pipeline_ms": {},
        "cold_start_ms": await guarded(
            lambda: asyncio.to_thread(inprocess.cold_start, plan.cold_starts)),
    }
    for body in ("!ping", "!help"):
        results["pipeline_ms"][body] = {}
        for placement in inprocess.PLACEMENTS:
            results["pipeline_ms"][body][placement] = await guarded(
                lambda body=body, placement=placement: inprocess.pipeline_cost(
                    plan.pipeline_commands, body, placement))
    sizes = ", ".join(f"{size:,}" for size in plan.expert_sizes)
    say(f"expert directory of {sizes} profiles: import, {len(experts.QUERIES)} queries × "
        f"{plan.expert_runs}, cold start × {plan.cold_starts} …")
    results["experts"] = await guarded(lambda: experts.measure_all(
        plan.expert_sizes, workdir / "experts", plan.expert_runs, plan.cold_starts))
    say("NExT-to-meet-you pairing of 2,000 participants …")
    results["pairing"] = await guarded(lambda: asyncio.to_thread(
        pairing.measure, 5 if plan.name == "quick" else 30))
    say(f"scheduler: rebuild with {plan.scheduler_items:,} scheduled reminders × "
        f"{plan.scheduler_runs} …")
    results["scheduler"] = await guarded(lambda: scheduler_bench.measure(
        plan.scheduler_items, plan.scheduler_runs, workdir))
    return results


def meta(plan: Plan) -> dict[str, Any]:
    def package(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    root = Path(__file__).resolve().parent.parent
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                            capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "bot", "commands", "storage"],
                           cwd=root, capture_output=True, text=True, check=False).stdout.strip()
    return {
        "plan": asdict(plan),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "matrix-nio": package("matrix-nio"),
        "matrix-synapse": package("matrix-synapse"),
        "git_commit": commit or None,
        "bot_sources_modified": bool(dirty),
    }


async def run(plan: Plan, keep: bool) -> dict[str, Any]:
    # SIGTERM (a CI timeout, `kill`) stops the run like Ctrl-C does: cleanup runs either way.
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    report: dict[str, Any] = {"meta": meta(plan)}
    began = time.monotonic()
    busy_before, own_before = machine_busy_seconds(), cpu_seconds("self", children=True) or 0.0
    workdir = Path(tempfile.mkdtemp(prefix="nextbot-bench-"))
    try:
        results = await run_homeserver_phases(plan, workdir)
        results["in_process"] = await run_inprocess_phases(plan, workdir)
    except Exception:
        keep = True  # for the post-mortem: Synapse's and both bots' logs
        raise
    finally:
        if keep:
            say(f"kept the work directory with every log: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - began
    own = (cpu_seconds("self", children=True) or 0.0) - own_before
    other = max(0.0, machine_busy_seconds() - busy_before - own)
    report["results"] = results
    report["targets"] = verdicts(results)
    report["meta"]["duration_s"] = round(elapsed, 1)
    # CPU the benchmark's own processes did not use: other work on the machine skews figures.
    report["meta"]["other_load_cores"] = round(other / elapsed, 2)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="5 round trips each, a burst of 100, 2,000 profiles: under "
                             "a minute")
    parser.add_argument("--json", type=Path, default=RESULTS_DIR / "latest.json",
                        metavar="PATH", help="where to write the results (default: %(default)s)")
    parser.add_argument("--png", type=Path, default=RESULTS_DIR / "latest.png",
                        metavar="PATH", help="where to draw the chart (default: %(default)s)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (Synapse, bot logs and databases)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    try:
        report = asyncio.run(run(plan, args.keep))
    except (KeyboardInterrupt, asyncio.CancelledError):
        say("interrupted; everything started was stopped")
        return 130
    print(table(report))
    for note in notes(report):
        print(f"note: {note}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                         encoding="utf-8")
    chart(report, args.png)
    print(f"\n{plan.name} run in {report['meta']['duration_s']:.0f} s; "
          f"results: {args.json}, chart: {args.png}")
    unmet = [c["name"] for c in report["targets"] if c["met"] is False]
    if unmet:
        print(f"targets not met: {'; '.join(unmet)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
