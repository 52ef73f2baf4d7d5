"""Each room's waiting rows (inbox commands, outbox messages) kept in memory, in step with commits.

A room's rows are read from the database once; from then on its repository changes this copy only
after the change committed, so the lanes take the next row without a query. A room not in here was
not read yet. The database stays the truth: after a restart everything is read from it again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

from storage.database import Database

T = TypeVar("T")


class RoomQueues(Generic[T]):
    def __init__(self, db: Database, room_of: Callable[[T], str], id_of: Callable[[T], str]
                 ) -> None:
        self._db = db
        self._room_of = room_of
        self._id_of = id_of
        self._waiting: dict[str, deque[T]] = {}  # room -> its rows, oldest first

    def remember(self, new: Iterable[T]) -> None:
        """Rows just committed; rooms not read yet get theirs from the database."""
        for row in new:
            waiting = self._waiting.get(self._room_of(row))
            if waiting is not None:
                waiting.append(row)

    async def first(self, room_id: str, read: Callable[[], Awaitable[Iterable[T]]]) -> T | None:
        """The room's oldest row; `read()` gives all of them from the database, in order."""
        waiting = self._waiting.get(room_id)
        if waiting is None:
            waiting = deque(await read())
            if self._db.in_transaction():  # uncommitted rows: not a state to keep
                return waiting[0] if waiting else None
            waiting = self._waiting.setdefault(room_id, waiting)
        return waiting[0] if waiting else None

    def forget(self, row_id: str, room_id: str | None = None) -> None:
        """A row deleted and committed; its room, when known, saves a search."""
        rooms = [room_id] if room_id is not None else list(self._waiting)
        for room in rooms:
            waiting = self._waiting.get(room)
            if not waiting:
                continue
            if self._id_of(waiting[0]) == row_id:  # the usual case: the one just done
                waiting.popleft()
                return
            if any(self._id_of(row) == row_id for row in waiting):
                self._waiting[room] = deque(row for row in waiting if self._id_of(row) != row_id)
                return
