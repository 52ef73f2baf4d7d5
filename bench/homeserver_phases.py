"""The measurements over Matrix (`run_homeserver_phases`): one throwaway Synapse, the reference
bot and ours each in its own process, and members played by `bench.client`.

1. Round trip, sequential (`round_trips`): a member's send → the reply seen in that member's
   sync, the kinds of `RT_KINDS` taking turns.
2. Burst (`burst`): members in many rooms start all their commands at once; counted from the
   members' side: answered exactly once, not at all, more than once; throughput and latency.

Also the resident memory of both bots after the run and the problems our bot logged.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import experts
from bench.client import Member
from bench.inprocess import quantile, summary
from bench.plan import Plan, say
from bench.processes import BotProcess, CpuMeter, log_problems
from bot.devtools.testserver import Homeserver

PASSWORD = "bench-password-123"
GAP_S = 0.05  # pause between two sequential round trips
REPLY_TIMEOUT_S = 15.0  # a sequential command without reply by then counts as lost
MAX_LOST = 5  # … and after this many lost ones the run gives up
SETUP_TIMEOUT_S = 30.0
# `!experten <topic>` in the round trip: whole topics of the synthetic directory, in turn.
RT_EXPERT_TOPICS = ("Digitalisierung", "Datenschutz", "OZG", "Geodaten", "Vergaberecht")
# (label, command, bot): the sequential round trips, in the order they take turns.
RT_KINDS = (("reference !ping", "!ping", "reference"), ("ours !ping", "!ping", "ours"),
            ("ours !help", "!help", "ours"), ("ours !experten", "!experten", "ours"))


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
