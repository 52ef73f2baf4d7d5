"""A per-member limit on commands, so one member cannot keep the bot busy for everyone else.

A member may send `limit` commands within any `window_ms`. The first command over the limit is
answered once with a friendly "slow down"; further ones are handled silently (marked handled,
nothing sent) until the member's recent commands fall below the limit again. Every command
counts, also those not answered, so a member who keeps flooding stays limited until they pause;
one who sends at the allowed rate is always served. Bot admins are exempt.

Only in memory: after a restart everybody starts afresh, which is harmless.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field


class Verdict(enum.Enum):
    ALLOW = "allow"
    SLOW_DOWN = "slow_down"  # over the limit: answer once with "slow down"
    DROP = "drop"  # over the limit and told already: answer nothing


@dataclass
class _Member:
    times: deque[int]  # the member's latest commands (ms), at most `limit` of them
    told: bool = field(default=False)


class MemberRateLimit:
    def __init__(self, limit: int, window_ms: int, exempt: Iterable[str] = ()) -> None:
        """`limit` 0 switches the limit off."""
        self.limit = limit
        self.window_ms = window_ms
        self._exempt = frozenset(exempt)
        self._members: dict[str, _Member] = {}
        self._pruned_at = 0

    def check(self, member: str, now_ms: int) -> Verdict:
        """Count one command of `member` at `now_ms` and say how to treat it."""
        if self.limit <= 0 or member in self._exempt:
            return Verdict.ALLOW
        self._prune(now_ms)
        state = self._members.get(member)
        if state is None:
            state = self._members[member] = _Member(deque(maxlen=self.limit))
        times = state.times
        over = len(times) == self.limit and now_ms - times[0] < self.window_ms
        times.append(now_ms)
        if not over:
            state.told = False
            return Verdict.ALLOW
        if state.told:
            return Verdict.DROP
        state.told = True
        return Verdict.SLOW_DOWN

    def limited_members(self, now_ms: int) -> int:
        """How many members are being held back right now."""
        return sum(1 for state in self._members.values()
                   if state.told and now_ms - state.times[-1] < self.window_ms)

    def _prune(self, now_ms: int) -> None:
        """Forget members quiet for a whole window (at most one pass per window)."""
        if now_ms - self._pruned_at < self.window_ms:
            return
        self._pruned_at = now_ms
        quiet = [member for member, state in self._members.items()
                 if now_ms - state.times[-1] >= self.window_ms]
        for member in quiet:
            del self._members[member]
