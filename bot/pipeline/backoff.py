"""Exponential back-off with jitter, capped: how every retry in the bot waits."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable


class Backoff:
    def __init__(
        self,
        base: float = 0.5,
        cap: float = 30.0,
        rng: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base, self.cap = base, cap
        self._rng, self._sleep = rng, sleep
        self.failures = 0

    def next_delay(self) -> float:
        """Half the exponential step fixed, half random: never a tight loop, never in lockstep."""
        step = min(self.cap, self.base * 2.0 ** min(self.failures, 64))
        self.failures += 1
        return step / 2 + self._rng() * step / 2

    async def wait(self) -> float:
        delay = self.next_delay()
        await self._sleep(delay)
        return delay

    def reset(self) -> None:
        self.failures = 0
