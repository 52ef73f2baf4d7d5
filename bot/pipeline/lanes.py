"""One task per room that drains that room's queue in order; different rooms run side by side.

Used for both queues: commands waiting for an answer, and messages waiting to be sent. A slow or
throttled room never holds up the others, and within a room the order is kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class RoomLanes:
    def __init__(
        self,
        name: str,
        pending_rooms: Callable[[], Awaitable[list[str]]],
        drain: Callable[[str], Awaitable[None]],
        max_parallel: int = 16,
        retry_delay: float = 1.0,
    ) -> None:
        self.name = name
        self._pending_rooms = pending_rooms
        self._drain = drain
        self._slots = asyncio.Semaphore(max_parallel)
        self._retry_delay = retry_delay
        self._wakeup = asyncio.Event()
        self._rescan = True  # look up every room with work (at start and after failures)
        self._hinted: set[str] = set()  # rooms known to have new work: no lookup needed
        self._again: set[str] = set()  # rooms woken while their lane was still running
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._started: list[asyncio.Future[None]] = []  # `settled` callers waiting for a start
        self._running = False

    def wake(self, room_id: str | None = None) -> None:
        """New work in `room_id` (or somewhere, when None)."""
        if room_id is None:
            self._rescan = True
        elif self._running and not self._rescan:
            # Straight to the room's lane: no detour through `run`'s loop on a command's way.
            self._start(room_id)
            return
        else:
            self._hinted.add(room_id)
        self._wakeup.set()

    def _start(self, room_id: str) -> None:
        if room_id in self._tasks:
            self._again.add(room_id)
        else:
            self._tasks[room_id] = asyncio.create_task(
                self._lane(room_id), name=f"{self.name}:{room_id}")
            for waiter in self._started:
                if not waiter.done():
                    waiter.set_result(None)
            self._started.clear()

    async def settled(self, room_ids: list[str]) -> None:
        """Until none of these rooms has work running or woken but not yet started."""
        rooms = set(room_ids)
        while True:
            running = [task for room, task in self._tasks.items() if room in rooms]
            if running:
                # A lane that finds more work on its way out starts again before it ends.
                await asyncio.wait(running)
            elif rooms & self._hinted:
                waiter = asyncio.get_running_loop().create_future()
                self._started.append(waiter)
                await waiter
            else:
                return

    async def run(self) -> None:
        self.wake()  # work off whatever was left from before a restart
        self._running = True
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                rooms, self._hinted = list(self._hinted), set()
                if self._rescan:
                    self._rescan = False
                    rooms += await self._pending_rooms()
                for room_id in rooms:
                    self._start(room_id)
        finally:
            self._running = False
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _lane(self, room_id: str) -> None:
        try:
            async with self._slots:
                await self._drain(room_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: room %s failed; retried shortly", self.name, room_id)
            await asyncio.sleep(self._retry_delay)
            self._again.add(room_id)
        finally:
            self._tasks.pop(room_id, None)
            if room_id in self._again:  # work may have come after the drain's last look
                self._again.discard(room_id)
                self.wake(room_id)
