import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from bot.pipeline.lanes import RoomLanes
from tests.unit.fakes import until

A, B, C = "!a:example.org", "!b:example.org", "!c:example.org"


class Queues:
    """Per-room work queues; `drain` works one room off in order, like the real repositories."""

    def __init__(self) -> None:
        self.items: dict[str, list[str]] = {}
        self.done: list[tuple[str, str]] = []
        self.blockers: dict[str, asyncio.Event] = {}
        self.failures: dict[str, int] = {}
        self.drains: list[str] = []

    def add(self, room_id: str, *items: str) -> None:
        self.items.setdefault(room_id, []).extend(items)

    async def pending_rooms(self) -> list[str]:
        return [room for room, items in self.items.items() if items]

    async def drain(self, room_id: str) -> None:
        self.drains.append(room_id)
        if self.failures.get(room_id):
            self.failures[room_id] -= 1
            raise RuntimeError(f"drain of {room_id} failed")
        while self.items.get(room_id):
            if room_id in self.blockers:
                await self.blockers[room_id].wait()
            await asyncio.sleep(0)
            self.done.append((room_id, self.items[room_id].pop(0)))

    def done_in(self, room_id: str) -> list[str]:
        return [item for room, item in self.done if room == room_id]


@contextlib.asynccontextmanager
async def running(lanes: RoomLanes) -> AsyncIterator[asyncio.Task]:
    task = asyncio.create_task(lanes.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_work_left_from_before_a_start_is_done_without_a_wake():
    queues = Queues()
    queues.add(A, "1", "2")
    lanes = RoomLanes("test", queues.pending_rooms, queues.drain, retry_delay=0)
    async with running(lanes):
        await until(lambda: queues.done_in(A) == ["1", "2"])


async def test_order_per_room_is_kept():
    queues = Queues()
    lanes = RoomLanes("test", queues.pending_rooms, queues.drain, retry_delay=0)
    async with running(lanes):
        for i in range(5):
            queues.add(A, f"a{i}")
            queues.add(B, f"b{i}")
            lanes.wake()
            await asyncio.sleep(0)
        await until(lambda: len(queues.done) == 10)
    assert queues.done_in(A) == [f"a{i}" for i in range(5)]
    assert queues.done_in(B) == [f"b{i}" for i in range(5)]


async def test_a_stuck_room_does_not_block_another():
    queues = Queues()
    queues.blockers[A] = asyncio.Event()
    queues.add(A, "a1", "a2")
    queues.add(B, "b1")
    lanes = RoomLanes("test", queues.pending_rooms, queues.drain, retry_delay=0)
    async with running(lanes):
        await until(lambda: queues.done_in(B) == ["b1"])
        queues.add(C, "c1")
        lanes.wake()
        await until(lambda: queues.done_in(C) == ["c1"])
        assert queues.done_in(A) == []
        queues.blockers[A].set()
        await until(lambda: queues.done_in(A) == ["a1", "a2"])


async def test_one_drain_per_room_at_a_time():
    queues = Queues()
    queues.blockers[A] = asyncio.Event()
    queues.add(A, "a1")
    lanes = RoomLanes("test", queues.pending_rooms, queues.drain, retry_delay=0)
    async with running(lanes):
        await until(lambda: queues.drains == [A])
        for _ in range(3):
            queues.add(A, "more")
            lanes.wake()
            await asyncio.sleep(0.001)
        assert queues.drains == [A]
        queues.blockers[A].set()
        await until(lambda: len(queues.done_in(A)) == 4)


async def test_max_parallel_limits_rooms_running_at_once():
    queues = Queues()
    gate = asyncio.Event()
    for room in (A, B, C):
        queues.blockers[room] = gate
        queues.add(room, "x")
    lanes = RoomLanes("test", queues.pending_rooms, queues.drain, max_parallel=2,
                      retry_delay=0)
    async with running(lanes):
        await until(lambda: len(queues.drains) == 2)
        await asyncio.sleep(0.002)
        assert len(queues.drains) == 2
        gate.set()
        await until(lambda: len(queues.done) == 3)


async def test_a_failing_drain_is_logged_and_the_room_retried(caplog):
    caplog.set_level(logging.ERROR, logger="bot.pipeline.lanes")
    queues = Queues()
    queues.failures[A] = 2
    queues.add(A, "a1")
    queues.add(B, "b1")
    lanes = RoomLanes("commands", queues.pending_rooms, queues.drain, retry_delay=0)
    async with running(lanes):
        await until(lambda: queues.done_in(A) == ["a1"])
        assert queues.done_in(B) == ["b1"]
    assert queues.drains.count(A) == 3
    failures = [r for r in caplog.records if r.name == "bot.pipeline.lanes"]
    assert len(failures) == 2
    assert all(A in r.getMessage() and "commands" in r.getMessage() for r in failures)
    assert all(r.exc_info is not None for r in failures)


async def test_stopping_cancels_running_drains():
    queues = Queues()
    queues.blockers[A] = asyncio.Event()
    queues.add(A, "a1")
    lanes = RoomLanes("test", queues.pending_rooms, queues.drain, retry_delay=0)
    task = asyncio.create_task(lanes.run())
    await until(lambda: queues.drains == [A])
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert queues.done == []


async def test_an_idle_room_is_not_drained_over_and_over():
    queues = Queues()
    queues.add(A, "a1")
    lanes = RoomLanes("test", queues.pending_rooms, queues.drain, retry_delay=0)
    async with running(lanes):
        lanes.wake(A)  # woken by room, as the sync loop does
        await until(lambda: queues.done_in(A) == ["a1"])
        for _ in range(50):
            await asyncio.sleep(0)
    assert queues.drains.count(A) <= 2  # once, plus at most one for the extra wake-up


async def test_settled_waits_for_the_rooms_work_and_no_other_rooms():
    queues = Queues()
    queues.blockers[A] = asyncio.Event()
    queues.blockers[B] = asyncio.Event()  # never set: B stays busy
    queues.add(A, "a1")
    queues.add(B, "b1")
    lanes = RoomLanes("test", queues.pending_rooms, queues.drain, retry_delay=0)
    async with running(lanes):
        await until(lambda: set(queues.drains) == {A, B})
        settled = asyncio.create_task(lanes.settled([A, C]))
        await asyncio.sleep(0.002)
        assert not settled.done()  # A is still at work
        queues.add(A, "a2")
        lanes.wake(A)  # more work while its drain runs: it goes on before the lane ends
        queues.blockers[A].set()
        await asyncio.wait_for(settled, 1)
        assert queues.done_in(A) == ["a1", "a2"]
        assert queues.done_in(B) == []


async def test_settled_waits_for_a_room_woken_but_not_started_yet():
    queues = Queues()
    lanes = RoomLanes("test", queues.pending_rooms, queues.drain, retry_delay=0)
    queues.add(A, "a1")
    lanes.wake(A)  # before the lanes run: only hinted
    settled = asyncio.create_task(lanes.settled([A]))
    await asyncio.sleep(0.002)
    assert not settled.done()
    async with running(lanes):
        await asyncio.wait_for(settled, 1)
        assert queues.done_in(A) == ["a1"]


async def test_settled_returns_at_once_for_idle_rooms():
    lanes = RoomLanes("test", Queues().pending_rooms, Queues().drain)
    await asyncio.wait_for(lanes.settled([A, B]), 0.1)
