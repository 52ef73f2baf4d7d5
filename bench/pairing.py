"""NExT-to-meet-you pairing, in-process: how long `commands.pairing.pair` takes for 2,000
participants (the network's size) with the last three rounds to avoid.

    python -m bench.pairing [--participants N] [--runs N]

The participants are synthetic but shaped like the network: 600 organisations of very
different sizes (a few large ones), the three levels, 16 states, three topics each out of
120, and a quarter without a profile (nothing to compare). The history is made by the
algorithm itself, three rounds with other seeds. Each run pairs with a new seed.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

from bench.inprocess import summary
from commands.pairing import PERFECT, Participant, pair, score

PARTICIPANTS = 2_000
TARGET_MS = 250.0  # "well under a second"


def population(size: int, seed: int = 1) -> list[Participant]:
    rng = random.Random(seed)
    organisations = [f"org{i}" for i in range(600)]
    weights = [1 / (i + 1) for i in range(len(organisations))]  # a few large, many small
    people = []
    for i in range(size):
        user_id = f"@member{i}:example.org"
        if rng.random() < 0.25:
            people.append(Participant(user_id))
            continue
        people.append(Participant(
            user_id, rng.choices(organisations, weights)[0],
            rng.choice(("kommune", "kommune", "land", "bund")), f"state{rng.randrange(16)}",
            frozenset(f"topic{rng.randrange(120)}" for _ in range(3))))
    return people


def history(people: list[Participant], rounds: int) -> dict[str, set[str]]:
    recent: dict[str, set[str]] = {}
    for number in range(rounds):
        for group in pair(people, recent, f"history-{number}"):
            for member in group.members:
                recent.setdefault(member, set()).update(m for m in group.members if m != member)
    return recent


def measure(runs: int = 20, size: int = PARTICIPANTS) -> dict[str, Any]:
    people = population(size)
    recent = history(people, 3)
    by_id = {p.user_id: p for p in people}
    times: list[float] = []
    imperfect = repeats = 0
    for run in range(runs):
        started = time.perf_counter()
        groups = pair(people, recent, f"run-{run}")
        times.append((time.perf_counter() - started) * 1000)
        for group in groups:
            a, b = (by_id[m] for m in group.members[:2])
            imperfect += score(a, b, recent) < PERFECT
            repeats += any(recent.get(m, set()) & set(group.members) for m in group.members)
    return {"participants": size, "history_rounds": 3, "runs": runs, "ms": summary(times),
            "target_ms": TARGET_MS, "met": max(times) <= TARGET_MS,
            "groups_not_perfect_per_run": imperfect / runs, "repeats_per_run": repeats / runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=PARTICIPANTS)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    result = measure(args.runs, args.participants)
    ms = result["ms"]
    print(f"pairing {result['participants']:,} participants: p50 {ms['p50']:.1f} ms, "
          f"p95 {ms['p95']:.1f} ms, max {ms['max']:.1f} ms over {result['runs']} runs "
          f"(target <= {TARGET_MS:.0f} ms: {'met' if result['met'] else 'NOT MET'})")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
