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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench import experts, inprocess, pairing
from bench import scheduler as scheduler_bench
from bench.client import Member
from bench.inprocess import quantile, summary
from bench.png import BLUE, GREY, BarChart, Group
from bot.devtools.testserver import Homeserver

RESULTS_DIR = Path(__file__).parent / "results"
PASSWORD = "bench-password-123"
GAP_S = 0.05  # pause between two sequential round trips
REPLY_TIMEOUT_S = 15.0  # a sequential command without reply by then counts as lost
MAX_LOST = 5  # … and after this many lost ones the run gives up
SETUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0

# Targets (bench issue, part 1)
RT_RATIO_TARGET = 1.10
# `!experten <topic>` in the round trip: whole topics of the synthetic directory, in turn.
RT_EXPERT_TOPICS = ("Digitalisierung", "Datenschutz", "OZG", "Geodaten", "Vergaberecht")
# (label, command, bot): the sequential round trips, in the order they take turns.
RT_KINDS = (("reference !ping", "!ping", "reference"), ("ours !ping", "!ping", "ours"),
            ("ours !help", "!help", "ours"), ("ours !experten", "!experten", "ours"))

# Targets (bench issue, expert directory). Search and cold start are judged at every size measured,
# the import (a volume) at EXPERT_IMPORT_SIZE only.
EXPERT_SEARCH_P95_MS = 5.0
EXPERT_IMPORT_SIZE = 100_000
EXPERT_IMPORT_S = 10.0
EXPERT_COLD_START_MS = 2000.0
# "Start-up not slowed by the directory's size": Storage.open + services on a full directory
# at most this much slower than on an empty one (medians of equal ones differ by ~1 ms).
EXPERT_START_SLOWER_MS = 5.0

# The scheduler's rebuild: judged at this many items only.
SCHEDULER_ITEMS = 10_000
SCHEDULER_START_MS = 1000.0


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


# -- processes -----------------------------------------------------------------------------------


class BotProcess:
    """A bot in its own process; stdout and stderr go to a log file."""

    def __init__(self, name: str, args: list[str], log_path: Path) -> None:
        self.name = name
        self.args = args
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parent.parent,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def check(self) -> None:
        if self.process is None or self.process.poll() is not None:
            code = None if self.process is None else self.process.returncode
            raise RuntimeError(f"{self.name} is not running (exit code {code}); its logs are "
                               f"in {self.log_path.parent}. {self.log_path.name}:\n"
                               f"{tail(self.log_path)}")

    def memory_kib(self) -> dict[str, int]:
        """VmRSS (now) and VmHWM (peak) of the process, in KiB."""
        found: dict[str, int] = {}
        with open(f"/proc/{self.pid}/status", encoding="ascii") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    found[key] = int(value.split()[0])
        return found

    def stop(self) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        return process.returncode


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def log_problems(path: Path) -> dict[str, int]:
    counts = {"WARNING": 0, "ERROR": 0, "Traceback": 0}
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            for key in counts:
                if key in line:
                    counts[key] += 1
    return counts


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | str = "self", children: bool = False) -> float | None:
    """User + system CPU time of a process (and of its waited-for children), in seconds."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # after the ")": state is field 3 of stat(5), so utime (14) is index 11 here
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (idle and iowait left out)."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / CLOCK_TICKS


class CpuMeter:
    """CPU seconds per named process between `start()` and `stop()`."""

    def __init__(self, pids: dict[str, int | str]) -> None:
        self.pids = pids
        self._before: dict[str, float | None] = {}

    def start(self) -> None:
        self._before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float | None]:
        used: dict[str, float | None] = {}
        for name, pid in self.pids.items():
            now, before = cpu_seconds(pid), self._before.get(name)
            used[name] = None if now is None or before is None else round(now - before, 2)
        return used


# -- phases --------------------------------------------------------------------------------------


@dataclass
class Target:
    """One bot and one of its rooms, seen by one member."""

    bot: str  # "reference" | "ours"
    member: Member
    room_id: str


async def setup_rooms(pairs: list[tuple[Member, str, str]], bots: dict[str, str]
                      ) -> list[Target]:
    """Each (member, bot, room name): the member creates a room and invites the bot."""

    async def one(member: Member, bot: str, name: str) -> Target:
        room_id = await member.create_room([bots[bot]], name)
        await member.wait_joined(room_id, bots[bot], SETUP_TIMEOUT_S)
        return Target(bot, member, room_id)

    return list(await asyncio.gather(*(one(m, b, n) for m, b, n in pairs)))


async def warm_up(targets: list[Target], bodies: dict[str, list[str]]) -> None:
    """A few commands per room, answered before anything is measured."""

    async def one(target: Target) -> None:
        for body in bodies[target.bot]:
            event_id = await target.member.send(target.room_id, body)
            await target.member.reply_to(event_id, SETUP_TIMEOUT_S)

    await asyncio.gather(*(one(t) for t in targets))


async def round_trips(kinds: list[tuple[str, str | tuple[str, ...], Target]], count: int,
                      check: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """`count` sequential commands of each kind, taking turns; milliseconds. A kind with several
    bodies sends them in turn. `check()` raises if a bot is gone; more than MAX_LOST lost
    commands end the phase early."""
    samples: dict[str, list[float]] = {label: [] for label, _, _ in kinds}
    lost: dict[str, int] = {label: 0 for label, _, _ in kinds}
    for turn in range(count):
        for label, bodies, target in kinds:
            body = bodies if isinstance(bodies, str) else bodies[turn % len(bodies)]
            began = time.perf_counter()
            event_id = await target.member.send(target.room_id, body)
            try:
                seen = await target.member.reply_to(event_id, REPLY_TIMEOUT_S)
            except TimeoutError:
                lost[label] += 1
                check()
                if sum(lost.values()) > MAX_LOST:
                    raise RuntimeError(f"more than {MAX_LOST} round trips got no reply "
                                       f"within {REPLY_TIMEOUT_S:.0f} s: {lost}") from None
            else:
                samples[label].append((seen - began) * 1000)
            await asyncio.sleep(GAP_S)
    return {label: summary(values) | {"lost": lost[label], "samples_ms": values}
            for label, values in samples.items()}


async def burst(targets: list[Target], per_room: int, plan: Plan, cpu: CpuMeter
                ) -> dict[str, Any]:
    """All commands started at once; replies counted until none came for `plan.quiet_s`."""
    sent: list[tuple[Member, str, float]] = []  # member, event id, send began
    cpu.start()

    async def send(target: Target) -> None:
        began = time.perf_counter()
        event_id = await target.member.send(target.room_id, "!ping")
        sent.append((target.member, event_id, began))

    first_send = time.perf_counter()
    outcomes = await asyncio.gather(*(send(t) for t in targets for _ in range(per_room)),
                                    return_exceptions=True)
    sends_done = time.perf_counter()
    send_failures = [o for o in outcomes if isinstance(o, BaseException)]

    def replies_seen() -> int:
        return sum(len(member.replies.get(event_id, ())) for member, event_id, _ in sent)

    last_count, last_change, timed_out = replies_seen(), sends_done, False
    while True:
        await asyncio.sleep(0.2)
        now = time.perf_counter()
        count = replies_seen()
        if count != last_count:
            last_count, last_change = count, now
        if now - last_change >= plan.quiet_s:
            break
        if now - sends_done >= plan.burst_max_wait_s:
            timed_out = True
            break
    cpu_used = cpu.stop()

    once = none = several = 0
    latencies: list[float] = []
    last_reply = first_send
    for member, event_id, began in sent:
        stamps = member.replies.get(event_id, [])
        if not stamps:
            none += 1
            continue
        if len(stamps) == 1:
            once += 1
        else:
            several += 1
        latencies.append(stamps[0] - began)
        last_reply = max(last_reply, stamps[0])
    answered = once + several
    span = last_reply - first_send
    unanswered = len(targets) * per_room - answered
    # Over every command started, a lost one counting as never answered (None: not reached).
    everything = latencies + [float("inf")] * unanswered
    latency_all = {q: (None if math.isinf(v := quantile(everything, p)) else v)
                   for q, p in (("p50", 0.50), ("p95", 0.95))}
    return {
        "commands": len(targets) * per_room,
        "sent": len(sent),
        "send_failures": len(send_failures),
        "send_failure_example": repr(send_failures[0])[:300] if send_failures else None,
        "sends_accepted_s": sends_done - first_send,
        "exactly_once": once,
        "none": none + len(send_failures),
        "more_than_once": several,
        "answered": answered,
        "throughput_per_s": answered / span if answered and span > 0 else 0.0,
        "first_send_to_last_reply_s": span if answered else None,
        "latency_s": summary(latencies),
        "latency_all_s": latency_all,
        "timed_out": timed_out,
        "cpu_s": cpu_used,
    }


def synapse_pid(homeserver: Homeserver) -> int:
    """Our own child process running this homeserver's config (-1 if not found)."""
    config = str(homeserver.config_path).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == os.getpid() and config in (entry / "cmdline").read_bytes():
                return int(entry.name)
        except (OSError, IndexError, ValueError):
            continue
    return -1


async def run_homeserver_phases(plan: Plan, workdir: Path) -> dict[str, Any]:
    homeserver = Homeserver(workdir=workdir / "synapse")
    bots: list[BotProcess] = []
    members: list[Member] = []
    results: dict[str, Any] = {}
    try:
        say(f"starting Synapse; writing {plan.bot_profiles:,} expert profiles into our bot's "
            "database …")
        directory = asyncio.ensure_future(experts.build_directly(
            plan.bot_profiles, experts.SEED, workdir / "nextbot" / "nextbot.db"))
        try:
            await asyncio.to_thread(homeserver.start)
        finally:
            results["bot_directory"] = {"profiles": plan.bot_profiles, "seed": experts.SEED,
                                        **await directory}
        say(f"Synapse answers on {homeserver.url} ({homeserver.startup_seconds:.1f} s); "
            f"directory written in {results['bot_directory']['upsert_many_s']:.1f} s")
        ref_user = await homeserver.register("refbot", PASSWORD)
        our_user = await homeserver.register("nextbot", PASSWORD)
        member_users = [await homeserver.register(f"member{i}", PASSWORD)
                        for i in range(plan.burst_rooms + 1)]
        reference = BotProcess("reference bot", [
            sys.executable, "-m", "bench.reference_bot", "--homeserver", homeserver.url,
            "--user", ref_user, "--password", PASSWORD,
        ], workdir / "reference.log")
        ours = BotProcess("nextbot", [
            sys.executable, "-m", "bench.run_nextbot", "--homeserver", homeserver.url,
            "--user", our_user, "--password", PASSWORD, "--workdir", str(workdir / "nextbot"),
            "--log-file", str(workdir / "nextbot.log"),
        ], workdir / "nextbot.out")
        bots += [reference, ours]

        def check_bots() -> None:
            for bot in bots:
                bot.check()

        for bot in bots:
            bot.start()
        members = [Member(homeserver.url, user) for user in member_users]
        await asyncio.gather(*(m.login(PASSWORD) for m in members))
        bot_ids = {"reference": ref_user, "ours": our_user}
        for member in members:
            member.bots = set(bot_ids.values())

        say(f"creating {2 + 2 * plan.burst_rooms} rooms, waiting for both bots to join …")
        rt_member, burst_members = members[0], members[1:]
        try:
            targets = await setup_rooms(
                [(rt_member, "reference", "RT reference"), (rt_member, "ours", "RT ours")]
                + [(m, bot, f"Burst {bot} {i}") for i, m in enumerate(burst_members)
                   for bot in ("reference", "ours")],
                bot_ids,
            )
        except TimeoutError:
            check_bots()
            raise
        await asyncio.gather(*(m.start_sync() for m in members))
        cpu = CpuMeter({"reference": reference.pid, "ours": ours.pid, "bench": "self",
                        "synapse": synapse_pid(homeserver)})
        rt_ref, rt_ours, burst_targets = targets[0], targets[1], targets[2:]
        topics = tuple(f"!experten {topic}" for topic in RT_EXPERT_TOPICS)
        await warm_up([rt_ref, rt_ours, *burst_targets],
                      {"reference": ["!ping"], "ours": ["!ping", "!help", topics[0]]})
        check_bots()

        say(f"round trip: {plan.round_trips} × (reference !ping, our !ping, our !help, "
            f"our !experten <topic> with {plan.bot_profiles:,} profiles) …")
        bodies: dict[str, str | tuple[str, ...]] = {"!experten": topics}
        by_bot = {"reference": rt_ref, "ours": rt_ours}
        cpu.start()
        results["round_trip"] = await round_trips(
            [(label, bodies.get(command, command), by_bot[bot])
             for label, command, bot in RT_KINDS],
            plan.round_trips,
            check=check_bots,
        )
        results["round_trip_cpu_s"] = cpu.stop()
        results["burst"] = {}
        for bot in ("reference", "ours"):
            rooms = [t for t in burst_targets if t.bot == bot]
            say(f"burst against {bot}: {len(rooms)} rooms × {plan.burst_per_room} commands …")
            results["burst"][bot] = await burst(rooms, plan.burst_per_room, plan, cpu)
            check_bots()
        results["memory_kib"] = {"reference": reference.memory_kib(), "ours": ours.memory_kib()}
        results["member_side"] = {
            "limited_syncs": sum(m.limited_syncs for m in members),
            "sync_errors": sum(m.sync_errors for m in members),
        }
    finally:
        await asyncio.gather(*(m.close() for m in members), return_exceptions=True)
        exit_codes = {bot.name: bot.stop() for bot in bots}
        homeserver.stop()
    results["exit_codes"] = exit_codes
    results["nextbot_log"] = log_problems(workdir / "nextbot.log")
    return results


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


# -- verdicts and output -------------------------------------------------------------------------


def ratio_interval(ours: list[float], reference: list[float], rounds: int = 2000
                   ) -> tuple[float, float] | None:
    """A 95 % bootstrap interval of p50(ours) / p50(reference): how much the ratio could move
    from run to run by chance alone."""
    if len(ours) < 5 or len(reference) < 5:
        return None
    rng = random.Random(1)
    ratios = sorted(
        quantile(rng.choices(ours, k=len(ours)), 0.5)
        / quantile(rng.choices(reference, k=len(reference)), 0.5)
        for _ in range(rounds)
    )
    return ratios[int(0.025 * rounds)], ratios[int(0.975 * rounds) - 1]


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    rt, burst_ = results["round_trip"], results["burst"]
    ref_p50 = rt["reference !ping"]["p50"]
    checks: list[dict[str, Any]] = []
    for label in (label for label, _, bot in RT_KINDS if bot == "ours"):
        p50 = rt[label]["p50"]
        ratio = p50 / ref_p50 if p50 and ref_p50 else None
        checks.append({
            "name": f"round trip {label.split()[1]} p50 / reference !ping p50",
            "target": f"<= {RT_RATIO_TARGET:.2f}",
            "value": ratio,
            "interval_95": ratio_interval(rt[label]["samples_ms"],
                                          rt["reference !ping"]["samples_ms"]),
            "met": ratio is not None and ratio <= RT_RATIO_TARGET and rt[label]["lost"] == 0,
        })
    ref, ours = burst_["reference"], burst_["ours"]
    checks.append({
        "name": "burst: ours answers every command exactly once",
        "target": f"{ours['commands']} / {ours['commands']}",
        "value": ours["exactly_once"],
        "met": ours["exactly_once"] == ours["commands"],
    })
    checks.append({
        "name": "burst throughput ours >= reference",
        "target": f">= {ref['throughput_per_s']:.1f}/s",
        "value": ours["throughput_per_s"],
        "met": ours["throughput_per_s"] >= ref["throughput_per_s"],
    })
    # Over every command started, a lost one counting as never answered: a bot that drops
    # commands must not look fast. None means more than 5 % were never answered.
    ref_p95, our_p95 = ref["latency_all_s"]["p95"], ours["latency_all_s"]["p95"]
    checks.append({
        "name": "burst latency p95 ours < reference",
        "target": f"< {_inf(ref_p95, 2)} s",
        "value": our_p95,
        "met": our_p95 is not None and (ref_p95 is None or our_p95 < ref_p95),
    })
    planned = results["in_process"].get("scheduler") or {}
    if planned.get("items") == SCHEDULER_ITEMS:
        start_ms = planned.get("start_ms")
        checks.append({
            "name": f"scheduler start with {SCHEDULER_ITEMS:,} items",
            "target": f"< {SCHEDULER_START_MS:g} ms",
            "value": start_ms,
            "met": None if start_ms is None else start_ms < SCHEDULER_START_MS,
        })
    return checks + expert_verdicts(results["in_process"].get("experts", {}))


def _ok(figures: Any) -> bool:
    return isinstance(figures, dict) and "error" not in figures


def expert_verdicts(found: dict[str, Any]) -> list[dict[str, Any]]:
    """The expert directory's targets; `met` is None where the measurement failed."""
    checks: list[dict[str, Any]] = []
    empty = found.get("empty_cold_start")
    for key, size in (found.get("sizes") or {}).items():
        n = f"{int(key):,}"
        search, imported, cold = size.get("search"), size.get("import"), size.get("cold_start")
        p95 = search["dispatch_ms"]["p95"] if _ok(search) else None
        checks.append({
            "name": f"expert search p95 at {n} profiles",
            "target": f"< {EXPERT_SEARCH_P95_MS:g} ms", "value": p95,
            "met": None if p95 is None else p95 < EXPERT_SEARCH_P95_MS,
        })
        if int(key) == EXPERT_IMPORT_SIZE:
            total = imported["total_s"] if _ok(imported) else None
            checks.append({
                "name": f"expert import of {n} profiles",
                "target": f"< {EXPERT_IMPORT_S:g} s", "value": total,
                "met": None if total is None else total < EXPERT_IMPORT_S,
            })
        first = cold["to_first_reply_ms"] if _ok(cold) else None
        checks.append({
            "name": f"expert cold start to first reply at {n} profiles",
            "target": f"< {EXPERT_COLD_START_MS:g} ms", "value": first,
            "met": None if first is None else first < EXPERT_COLD_START_MS,
        })
        slower = (cold["storage_services_ms"] - empty["storage_services_ms"]
                  if _ok(cold) and _ok(empty) else None)
        checks.append({
            "name": f"expert start-up at {n} profiles not slower than empty",
            "target": f"storage+services < empty + {EXPERT_START_SLOWER_MS:g} ms",
            "value": slower,
            "met": None if slower is None else slower < EXPERT_START_SLOWER_MS,
        })
    return checks


def _f(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _inf(value: float | None, digits: int = 1) -> str:
    """None stands for "never": more than the quantile's share of commands got no answer."""
    return "∞" if value is None else f"{value:.{digits}f}"


def _pair(stats: dict[str, Any], digits: int = 1, scale: float = 1.0) -> str:
    p50, p95 = stats.get("p50"), stats.get("p95")
    if p50 is None:
        return "–"
    return f"{p50 * scale:.{digits}f} / {p95 * scale:.{digits}f}"


def _failed(figures: dict[str, Any]) -> str:
    """'failed' for a measurement that raised (its error is in the JSON), else ''."""
    return "failed (see JSON)" if "error" in figures else ""


def _verdict(check: dict[str, Any]) -> str:
    return {True: "met", False: "NOT MET", None: "n/a"}[check["met"]]


def table(report: dict[str, Any]) -> str:
    r = report["results"]
    rt, b, ip = r["round_trip"], r["burst"], r["in_process"]
    checks = {c["name"]: c for c in report["targets"]}
    plan = report["meta"]["plan"]
    rows: list[tuple[str, str, str, str, str]] = []

    def section(title: str) -> None:
        rows.append((title, "", "", "", ""))

    def ratio_text(check: dict[str, Any]) -> str:
        value = "–" if check["value"] is None else f"{check['value']:.2f}×"
        if check.get("interval_95"):
            low, high = check["interval_95"]
            value += f", 95 % CI {low:.2f}–{high:.2f}"
        return f"{_verdict(check)} ({value})"

    n = plan["round_trips"]
    section(f"Round trip, sequential, {n} each (ms)")
    c_ping = checks["round trip !ping p50 / reference !ping p50"]
    c_help = checks["round trip !help p50 / reference !ping p50"]
    rows.append(("  !ping p50 / p95", _pair(rt["reference !ping"]), _pair(rt["ours !ping"]),
                 f"p50 <= {RT_RATIO_TARGET:.2f}× ref", ratio_text(c_ping)))
    rows.append(("  !help p50 / p95", "(no !help)", _pair(rt["ours !help"]),
                 f"p50 <= {RT_RATIO_TARGET:.2f}× ref !ping", ratio_text(c_help)))
    c_experts = checks["round trip !experten p50 / reference !ping p50"]
    profiles = r["bot_directory"]["profiles"]
    rows.append((f"  !experten <topic>, {profiles:,} profiles", "(no !experten)",
                 _pair(rt["ours !experten"]), f"p50 <= {RT_RATIO_TARGET:.2f}× ref !ping",
                 ratio_text(c_experts)))
    cpu_rt = r["round_trip_cpu_s"]
    ours_kinds = sum(1 for _, _, bot in RT_KINDS if bot == "ours")
    per_command = {
        "reference": None if cpu_rt["reference"] is None else cpu_rt["reference"] * 1000 / n,
        "ours": None if cpu_rt["ours"] is None else cpu_rt["ours"] * 1000 / (ours_kinds * n),
    }
    rows.append(("  bot CPU per command (ms)", _f(per_command["reference"]),
                 _f(per_command["ours"]), "", ""))
    lost = sum(rt[k]["lost"] for k in rt)
    if lost:
        rows.append(("  lost (no reply in 15 s)", str(rt["reference !ping"]["lost"]),
                     str(sum(rt[label]["lost"] for label, _, bot in RT_KINDS
                             if bot == "ours")), "0", ""))
    total = b["ours"]["commands"]
    section(f"Burst, {plan['burst_rooms']} rooms × {plan['burst_per_room']} = {total} commands")
    c_once = checks["burst: ours answers every command exactly once"]
    rows.append(("  answered exactly once", f"{b['reference']['exactly_once']} / {total}",
                 f"{b['ours']['exactly_once']} / {total}", "all (ours)", _verdict(c_once)))
    rows.append(("  not answered", str(b["reference"]["none"]), str(b["ours"]["none"]), "0", ""))
    rows.append(("  answered more than once", str(b["reference"]["more_than_once"]),
                 str(b["ours"]["more_than_once"]), "0", ""))
    c_tp = checks["burst throughput ours >= reference"]
    rows.append(("  throughput (answered/s)", _f(b["reference"]["throughput_per_s"]),
                 _f(b["ours"]["throughput_per_s"]), ">= reference", _verdict(c_tp)))
    rows.append(("  latency p50 / p95, answered (s)", _pair(b["reference"]["latency_s"], 2),
                 _pair(b["ours"]["latency_s"], 2), "", ""))
    c_p95 = checks["burst latency p95 ours < reference"]
    every = {bot: b[bot]["latency_all_s"] for bot in ("reference", "ours")}
    rows.append(("  latency p50 / p95, all; lost = ∞ (s)",
                 f"{_inf(every['reference']['p50'], 2)} / {_inf(every['reference']['p95'], 2)}",
                 f"{_inf(every['ours']['p50'], 2)} / {_inf(every['ours']['p95'], 2)}",
                 "p95 < reference", _verdict(c_p95)))
    rows.append(("  sends accepted after (s)", _f(b["reference"]["sends_accepted_s"], 2),
                 _f(b["ours"]["sends_accepted_s"], 2), "", ""))
    cpu_b = {bot: b[bot]["cpu_s"] for bot in ("reference", "ours")}
    rows.append(("  CPU during burst: bot / Synapse (s)",
                 f"{_f(cpu_b['reference']['reference'])} / {_f(cpu_b['reference']['synapse'])}",
                 f"{_f(cpu_b['ours']['ours'])} / {_f(cpu_b['ours']['synapse'])}", "", ""))
    section("In-process, no homeserver")
    dispatch_us = ip["dispatch_us"]
    for body in ("!ping", "!help"):
        rows.append((f"  dispatch {body} p50 / p95 (µs)", "",
                     _failed(dispatch_us) or _pair(dispatch_us[body]), "–", ""))
    for body in ("!ping", "!help"):
        for placement, figures in ip["pipeline_ms"][body].items():
            where = placement if figures.get("pinned", True) else f"{placement}: not pinned"
            rows.append((f"  pipeline {body}, {where}, p50 / p95 (ms)", "",
                         _failed(figures) or _pair(figures, 2), "–", ""))
    cold = ip["cold_start_ms"]
    rows.append(("  cold start storage+registry (ms)", "",
                 _failed(cold) or _f(cold["storage_registry_ms"]), "–", ""))
    rows.append(("  cold start imports / process (ms)", "",
                 _failed(cold) or f"{_f(cold['imports_ms'], 0)} / {_f(cold['process_ms'], 0)}",
                 "–", ""))
    mem = r["memory_kib"]
    rows.append(("  resident memory after run (MiB)",
                 _f(mem["reference"]["VmRSS"] / 1024), _f(mem["ours"]["VmRSS"] / 1024), "–", ""))
    rows.append(("  peak resident memory (MiB)",
                 _f(mem["reference"]["VmHWM"] / 1024), _f(mem["ours"]["VmHWM"] / 1024), "–", ""))
    rows += expert_rows(ip.get("experts", {}), checks)
    paired = ip.get("pairing") or {"error": "not measured"}
    rows.append((f"Pairing {pairing.PARTICIPANTS:,} participants, p50 / p95 (ms)", "",
                 _failed(paired) or _pair(paired["ms"], 1),
                 f"<= {pairing.TARGET_MS:.0f} ms", "" if "error" in paired
                 else {True: "met", False: "NOT MET"}[paired["met"]]))
    planned = ip.get("scheduler") or {"error": "not measured"}
    c_sched = checks.get(f"scheduler start with {SCHEDULER_ITEMS:,} items")
    rows.append((f"Scheduler, {planned.get('items', 0):,} reminders: start / re-plan (ms)", "",
                 _failed(planned) or f"{planned['start_ms']:.0f} / {planned['replan_ms']:.0f}",
                 f"start < {SCHEDULER_START_MS:g} ms" if c_sched else "",
                 _verdict(c_sched) if c_sched else ""))

    header = ("Measurement", "Reference bot", "nextbot", "Target", "Result")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(5)]

    def line(row: tuple[str, ...]) -> str:
        return " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                          ).rstrip()

    out = [line(header), "-+-".join("-" * w for w in widths)]
    out += [line(row) for row in rows]
    return "\n".join(out)


def expert_rows(found: dict[str, Any], checks: dict[str, dict[str, Any]]
                ) -> list[tuple[str, str, str, str, str]]:
    rows: list[tuple[str, str, str, str, str]] = []
    if not _ok(found):
        return [("Expert directory, in-process", "", _failed(found) or "–", "", "")]
    sizes = found.get("sizes") or {}
    queries = len(found.get("queries", ()))
    runs = next((s["search"]["runs"] for s in sizes.values() if _ok(s.get("search"))), 0)
    rows.append((f"Expert directory, in-process: {queries} queries × {runs}", "", "", "", ""))

    def verdict(name: str) -> str:
        return _verdict(checks[name]) if name in checks else ""

    for key, size in sizes.items():
        n = f"{int(key):,}"
        search, imported, cold = size["search"], size["import"], size["cold_start"]
        rows.append((f"  {n} profiles", "", "", "", ""))
        rows.append(("    !experten p50 / p95 (ms)", "",
                     _failed(search) or _pair(search["dispatch_ms"], 2),
                     f"p95 < {EXPERT_SEARCH_P95_MS:g} ms",
                     verdict(f"expert search p95 at {n} profiles")))
        if _ok(search):
            rows.append(("    … with Matrix content p50 / p95 (ms)", "",
                         _pair(search["with_content_ms"], 2), "", ""))
            slowest = search["slowest_query"]
            rows.append(("    slowest query (by p50) p50 / p95 (ms)", "", _pair(slowest, 2), "",
                         f"!experten {slowest['query']}"))
        import_name = f"expert import of {n} profiles"
        rows.append(("    import: total (check / write) (s)", "",
                     _failed(imported) or f"{imported['total_s']:.2f} "
                     f"({imported['parse_check_s']:.2f} / {imported['upsert_s']:.2f})",
                     f"< {EXPERT_IMPORT_S:g} s" if import_name in checks else "",
                     verdict(import_name)))
        rows.append(("    cold start to first reply (ms)", "",
                     _failed(cold) or _f(cold["to_first_reply_ms"], 0),
                     f"< {EXPERT_COLD_START_MS:g} ms",
                     verdict(f"expert cold start to first reply at {n} profiles")))
        rows.append(("    storage+services / first reply (ms)", "",
                     _failed(cold) or f"{cold['storage_services_ms']:.1f} / "
                     f"{cold['first_reply_ms']:.1f}",
                     f"< empty + {EXPERT_START_SLOWER_MS:g} ms",
                     verdict(f"expert start-up at {n} profiles not slower than empty")))
    empty = found.get("empty_cold_start", {})
    rows.append(("  no profiles", "", "", "", ""))
    rows.append(("    cold start to first reply (ms)", "",
                 _failed(empty) or _f(empty["to_first_reply_ms"], 0), "", ""))
    rows.append(("    storage+services / first reply (ms)", "",
                 _failed(empty) or f"{empty['storage_services_ms']:.1f} / "
                 f"{empty['first_reply_ms']:.1f}", "", ""))
    return rows


def notes(report: dict[str, Any]) -> list[str]:
    r = report["results"]
    found = []
    other, cpus = report["meta"]["other_load_cores"], report["meta"]["cpus"]
    if other >= 0.25:
        found.append(f"other processes kept {other:.2f} of {cpus} cores busy during the run: "
                     "absolute figures suffer, the alternating ratios less")
    if r["member_side"]["limited_syncs"]:
        found.append(f"members' own syncs were cut short {r['member_side']['limited_syncs']} "
                     "times: reply counts may be low")
    for bot in ("reference", "ours"):
        burst_ = r["burst"][bot]
        if burst_["timed_out"]:
            found.append(f"burst against {bot}: replies still arriving when the wait ended")
        if burst_["send_failures"]:
            found.append(f"burst against {bot}: {burst_['send_failures']} sends failed, e.g. "
                         f"{burst_['send_failure_example']}")
    ip = r["in_process"]
    failed = [name for name, figures in [("dispatch", ip["dispatch_us"]),
                                         ("cold start", ip["cold_start_ms"]),
                                         ("scheduler", ip.get("scheduler") or {}),
                                         ("pairing", ip.get("pairing") or {})]
              + [(f"pipeline {body} {placement}", figures)
                 for body, by_placement in ip["pipeline_ms"].items()
                 for placement, figures in by_placement.items()]
              if "error" in figures]
    found_experts = ip.get("experts", {})
    if not _ok(found_experts):
        failed.append("expert directory")
    else:
        for key, size in found_experts.get("sizes", {}).items():
            failed += [f"experts {int(key):,} {part}" for part in ("import", "search", "cold_start")
                       if not _ok(size.get(part))]
        if not _ok(found_experts.get("empty_cold_start")):
            failed.append("experts empty cold_start")
        for key, size in found_experts.get("sizes", {}).items():
            if size.get("database_built_by", "import") != "import":
                found.append(f"experts {int(key):,}: the import failed, so the database that "
                             "was searched and started on was written with upsert_many alone")
    if failed:
        found.append(f"in-process measurements failed: {', '.join(failed)} (errors in the JSON)")
    logged = r["nextbot_log"]
    if logged["ERROR"] or logged["Traceback"]:
        found.append(f"nextbot logged {logged['ERROR']} ERROR line(s) and "
                     f"{logged['Traceback']} traceback(s)")
    if logged["WARNING"]:
        found.append(f"nextbot logged {logged['WARNING']} WARNING line(s)")
    for name, code in r["exit_codes"].items():
        if code not in (0, None):
            found.append(f"{name} exited with code {code} when stopped")
    return found


def chart(report: dict[str, Any], path: Path) -> None:
    r = report["results"]
    rt, b = r["round_trip"], r["burst"]
    plot = BarChart(f"NEXTBOT BENCH ({report['meta']['plan']['name']}) - P50 / P95",
                    panel_width=420)
    plot.panel("ROUND TRIP, SEQUENTIAL (MS)", [
        Group("REF !PING", GREY, [("P50", rt["reference !ping"]["p50"]),
                                  ("P95", rt["reference !ping"]["p95"])]),
        Group("OURS !PING", BLUE, [("P50", rt["ours !ping"]["p50"]),
                                   ("P95", rt["ours !ping"]["p95"])]),
        Group("OURS !HELP", BLUE, [("P50", rt["ours !help"]["p50"]),
                                   ("P95", rt["ours !help"]["p95"])]),
        Group("OURS !EXPERTEN", BLUE, [("P50", rt["ours !experten"]["p50"]),
                                       ("P95", rt["ours !experten"]["p95"])]),
    ])
    total = b["ours"]["commands"]
    plot.panel(f"BURST OF {total}: LATENCY OF ANSWERED (S)", [
        Group(f"REF {b['reference']['answered']}/{total}", GREY,
              [("P50", b["reference"]["latency_s"]["p50"]),
               ("P95", b["reference"]["latency_s"]["p95"])]),
        Group(f"OURS {b['ours']['answered']}/{total}", BLUE,
              [("P50", b["ours"]["latency_s"]["p50"]), ("P95", b["ours"]["latency_s"]["p95"])]),
    ], decimals=2)
    plot.panel("BURST THROUGHPUT (ANSWERED/S)", [
        Group("REF", GREY, [("", b["reference"]["throughput_per_s"])]),
        Group("OURS", BLUE, [("", b["ours"]["throughput_per_s"])]),
    ], decimals=1)
    found = r["in_process"].get("experts", {})
    searched = {key: size["search"]["dispatch_ms"] for key, size in
                (found.get("sizes", {}) if _ok(found) else {}).items() if _ok(size.get("search"))}
    if searched:
        plot.panel("!EXPERTEN, IN-PROCESS (MS)", [
            Group(_thousands(int(key)), BLUE, [("P50", stats["p50"]), ("P95", stats["p95"])])
            for key, stats in searched.items()
        ], decimals=1)
    plot.save(path)


def _thousands(count: int) -> str:
    return f"{count // 1000}K PROFILES" if count % 1000 == 0 else f"{count} PROFILES"


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
