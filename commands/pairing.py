"""Pairing members for NExT-to-meet-you: pure, deterministic for a seed, fast for thousands.

Everyone gets exactly one group: pairs, and with an odd count one trio. What makes a good
partner, in this order (a better rank always outweighs everything below it):

1. not met in the recent rounds (`recent`),
2. from a different organisation,
3. on a different level (Kommune, Land, Bund),
4. from a different state,
5. and, only to break ties, topics in common (a conversation starter).

A detail nobody gave (no profile, an empty field) counts as different: it is no reason to
avoid someone. The pairing is greedy in an order shuffled by the seed, then improved by
swapping partners between two pairs wherever that scores higher. Scores are integers with
weights 125/25/5/1, so in a comparison of up to four partnerships a higher rank still
outweighs all lower ones together.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

NOT_RECENT, OTHER_ORGANISATION, OTHER_LEVEL, OTHER_STATE = 125, 25, 5, 1
PERFECT = NOT_RECENT + OTHER_ORGANISATION + OTHER_LEVEL + OTHER_STATE
# A greedy pick stops looking after this many perfect candidates (the best topics among them).
PERFECT_ENOUGH = 12
# Upper bound on partner swaps tried while improving: keeps degenerate inputs fast.
SWAP_BUDGET = 100_000


@dataclass(frozen=True)
class Participant:
    """What pairing knows of a member: keys to compare (already folded), nothing to show."""

    user_id: str
    organisation: str | None = None
    level: str | None = None
    state: str | None = None
    topics: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Group:
    members: tuple[str, ...]  # user ids, sorted
    shared_topics: tuple[str, ...]  # topic keys at least two members share, sorted


def _differs(a: str | None, b: str | None) -> bool:
    return a is None or b is None or a != b


def score(a: Participant, b: Participant, recent: Mapping[str, Iterable[str]]) -> int:
    """How good `b` is as `a`'s partner (higher is better, PERFECT at most)."""
    total = 0
    if b.user_id not in recent.get(a.user_id, ()) and a.user_id not in recent.get(b.user_id, ()):
        total += NOT_RECENT
    if _differs(a.organisation, b.organisation):
        total += OTHER_ORGANISATION
    if _differs(a.level, b.level):
        total += OTHER_LEVEL
    if _differs(a.state, b.state):
        total += OTHER_STATE
    return total


def pair(participants: Sequence[Participant], recent: Mapping[str, Iterable[str]],
         seed: str) -> list[Group]:
    """Everyone in exactly one group of two (one of three when the count is odd); the same
    input and seed always give the same groups. Fewer than two participants: no group."""
    people = {p.user_id: p for p in participants}  # one entry per member
    if len(people) < 2:
        return []
    rng = random.Random(seed)
    pool = [people[u] for u in sorted(people)]
    rng.shuffle(pool)
    seen = {u: frozenset(partners) for u, partners in recent.items() if u in people}

    def rate(a: Participant, b: Participant) -> int:
        return score(a, b, seen)

    pairs = _greedy(pool, seen, rng)
    leftover = pool[0] if len(pool) == 1 else None
    _improve(pairs, rate, rng)
    groups: list[tuple[Participant, ...]] = [tuple(p) for p in pairs]
    if leftover is not None:
        best = max(range(len(groups)), key=lambda i: (
            sum(rate(leftover, member) for member in groups[i]), -i))
        groups[best] = (*groups[best], leftover)
    return [Group(tuple(sorted(m.user_id for m in group)), _shared(group)) for group in groups]


def _greedy(pool: list[Participant], seen: Mapping[str, frozenset[str]],
            rng: random.Random) -> list[list[Participant]]:
    """Take people off the end of `pool` one by one, each with the best partner left; at
    most one person stays in `pool`. Inlined scoring: this loop is the hot path."""
    pairs: list[list[Participant]] = []
    empty: frozenset[str] = frozenset()
    while len(pool) >= 2:
        a = pool.pop()
        a_seen = seen.get(a.user_id, empty)
        a_org, a_level, a_state, a_topics = a.organisation, a.level, a.state, a.topics
        n = len(pool)
        start = rng.randrange(n)
        best_index, best_score, best_shared, perfect = -1, -1, -1, 0
        for step in range(n):
            index = start + step
            if index >= n:
                index -= n
            b = pool[index]
            s = 0
            if b.user_id not in a_seen and a.user_id not in seen.get(b.user_id, empty):
                s = NOT_RECENT
            if a_org is None or b.organisation is None or a_org != b.organisation:
                s += OTHER_ORGANISATION
            if a_level is None or b.level is None or a_level != b.level:
                s += OTHER_LEVEL
            if a_state is None or b.state is None or a_state != b.state:
                s += OTHER_STATE
            if s < best_score:
                continue
            shared = len(a_topics & b.topics) if a_topics else 0
            if s > best_score or shared > best_shared:
                best_index, best_score, best_shared = index, s, shared
            if s == PERFECT:
                perfect += 1
                if perfect >= PERFECT_ENOUGH:
                    break
        b = pool[best_index]
        pool[best_index] = pool[-1]
        pool.pop()
        pairs.append([a, b])
    return pairs


def _improve(pairs: list[list[Participant]], rate, rng: random.Random) -> None:
    """Swap partners between two pairs while that raises their joint score."""
    scores = [rate(a, b) for a, b in pairs]
    budget = SWAP_BUDGET
    improved = True
    while improved and budget > 0:
        improved = False
        for i in range(len(pairs)):
            if scores[i] == PERFECT:
                continue
            a, b = pairs[i]
            start = rng.randrange(len(pairs))
            for step in range(len(pairs)):
                j = (start + step) % len(pairs)
                if j == i:
                    continue
                budget -= 1
                c, d = pairs[j]
                now = scores[i] + scores[j]
                ac, bd = rate(a, c), rate(b, d)
                ad, bc = rate(a, d), rate(b, c)
                if max(ac + bd, ad + bc) > now:
                    if ac + bd >= ad + bc:
                        pairs[i], pairs[j], scores[i], scores[j] = [a, c], [b, d], ac, bd
                    else:
                        pairs[i], pairs[j], scores[i], scores[j] = [a, d], [b, c], ad, bc
                    improved = True
                    break
                if budget <= 0:
                    return
            if budget <= 0:
                return


def _shared(group: Sequence[Participant]) -> tuple[str, ...]:
    shared: set[str] = set()
    for i, a in enumerate(group):
        for b in group[i + 1:]:
            shared |= a.topics & b.topics
    return tuple(sorted(shared))
