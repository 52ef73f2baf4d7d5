"""One SQLite connection for the whole bot, with transactions (its schema: `storage/schema.py`).

All access goes through one aiosqlite connection guarded by a lock, so coroutines never interleave
statements inside another coroutine's transaction. Inside `async with db.transaction():` every
repository call made by the same task joins that transaction (tracked with a context variable).

For latency only: every call is one hand-off to aiosqlite's thread and back, and a hand-off costs
more than a simple statement (tens to hundreds of microseconds, more when the two threads run on
different cores). So a query and its fetch go together, a transaction's BEGIN goes with its first
statement, `run(fn)` executes several statements in one hand-off, and a write whose result nobody
waits for (`execute_later`, `run_later`) goes along with the transaction's next hand-off, at the
latest with its COMMIT.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import os
import re
import sqlite3
import stat
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000  # an operator's large import may hold the write lock for seconds

# SQLite's integers have 64 bits and its text is UTF-8. JSON, and so what arrives from Matrix, can
# hold more: any integer, and lone surrogates (`"\ud800"`) that no UTF-8 holds. Binding either
# raises, and would fail the whole transaction it is part of.
SQLITE_INTEGERS = range(-(2**63), 2**63)
_SURROGATE = re.compile("[\ud800-\udfff]")  # JSON makes a valid pair one character: lone ones

T = TypeVar("T")


def storable(*values: object) -> bool:
    """Whether SQLite takes each value as a parameter: text without lone surrogates, integers
    within 64 bits (other values as they are)."""
    for value in values:
        if isinstance(value, str):
            if not value.isascii() and _SURROGATE.search(value):
                return False
        elif isinstance(value, int) and value not in SQLITE_INTEGERS:
            return False
    return True


def storable_record(record: object) -> bool:
    """`storable` for every field of a dataclass (a field holding a dict or list is left to
    the repository, which stores it as JSON: escaped, so always storable)."""
    return storable(*(getattr(record, f.name) for f in dataclasses.fields(record)))


def utc_ms(moment: datetime) -> int:
    """A moment as stored: whole milliseconds since the epoch (UTC)."""
    return int(moment.astimezone(UTC).timestamp() * 1000)


def moment(ms: int) -> datetime:
    """A stored moment (milliseconds since the epoch) as a time in UTC."""
    return datetime.fromtimestamp(ms / 1000, UTC)


def owner_only(path: Path) -> None:
    """Take every access of group and others away from one of the bot's files or directories
    (they hold secrets); nothing if it does not exist."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(mode & 0o700)
    except FileNotFoundError:
        return
    except OSError as exc:  # not the bot's own file: the operator has to see to it
        log.warning("%s: cannot make it readable by its owner only (%s)", path, exc.strerror)


def create_owner_only(path: Path) -> None:
    """Create the database file readable and writable by the owner only (0600), whatever the
    umask, and tighten an existing one with its -wal and -shm files. It holds the access token
    and every profile. SQLite gives the -wal and -shm files it creates the database's mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # only one made here is 0700
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            owner_only(file)
    else:
        try:
            os.fchmod(descriptor, 0o600)  # the umask may have taken the owner's bits too
        finally:
            os.close(descriptor)


def storable_text(text: str) -> str:
    """The text with each lone surrogate replaced by U+FFFD, as a UTF-8 decoder shows a broken
    character: the rest of the text stays readable and storable."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


class Database:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self._in_transaction: contextvars.ContextVar[bool] = contextvars.ContextVar(
            f"in_transaction_{id(self)}", default=False
        )
        # Inside `transaction()` (under the lock): BEGIN not sent yet / sent.
        self._begin_pending = False
        self._begun = False
        self._after_commit: list[Callable[[], None]] = []
        self._deferred: list[Callable[[sqlite3.Connection], object]] = []

    @classmethod
    async def open(cls, path: str | Path) -> Database:
        """Open the database, creating it if needed. `:memory:` is fine for tests."""
        if str(path) != ":memory:":
            create_owner_only(Path(path))
        conn = await aiosqlite.connect(str(path), isolation_level=None)
        conn.row_factory = aiosqlite.Row
        db = cls(conn)
        try:
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA foreign_keys = ON")
            # Deleted rows are overwritten, not just unlinked: a deleted profile is gone.
            await conn.execute("PRAGMA secure_delete = ON")
            if str(path) != ":memory:":
                await conn.execute("PRAGMA journal_mode = WAL")
                await conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            await conn.close()
            raise
        return db

    async def close(self) -> None:
        await self._conn.close()

    # -- statements ----------------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any exception; nested use joins the outer.

        BEGIN IMMEDIATE goes out with the first statement, in the same hand-off; a transaction
        without statements sends nothing."""
        if self._in_transaction.get():
            yield
            return
        async with self._lock:
            token = self._in_transaction.set(True)
            self._begin_pending, self._begun = True, False
            try:
                try:
                    yield
                    if self._begun or self._deferred:  # deferred writes go first: may fail
                        await self._on_thread(lambda conn: conn.commit())
                except BaseException:
                    self._begin_pending, self._deferred = False, []
                    # Unconditionally: a cancelled statement may still have begun on the thread.
                    await self._on_thread(lambda conn: conn.rollback())
                    raise
                for callback in self._after_commit:  # still under the lock
                    callback()
            finally:
                self._begin_pending = self._begun = False
                self._after_commit, self._deferred = [], []
                self._in_transaction.reset(token)

    def in_transaction(self) -> bool:
        """Whether the calling task is inside `transaction()`."""
        return self._in_transaction.get()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback()` once what the calling task wrote is committed: when its transaction
        commits (dropped if it rolls back), or at once outside a transaction (call this right
        after the statement). Either way no other task has used the database in between, so a
        repository can keep a copy of rows in memory exactly in step with the database."""
        if self._in_transaction.get():
            self._after_commit.append(callback)
        else:
            callback()

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(connection)` on SQLite's thread, in one hand-off: for several statements in a row.
        Joins the task's transaction like every other call; `fn` must not block on anything else."""
        async with self._statement():
            return await self._on_thread(fn)

    async def run_later(self, fn: Callable[[sqlite3.Connection], object]) -> None:
        """Like `run`, for writes whose result nobody waits for: inside a transaction, `fn` goes
        along with the transaction's next hand-off (at the latest its COMMIT), before that
        hand-off's own work, so later reads see it; an error in it fails that hand-off and
        rolls the transaction back. Outside a transaction it runs at once."""
        if self._in_transaction.get():
            self._deferred.append(fn)
        else:
            await self.run(fn)

    async def execute_later(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> None:
        """`execute` for a write whose rowcount nobody needs: see `run_later`."""
        await self.run_later(lambda conn: conn.execute(sql, params))

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Run one statement (autocommitted unless inside a transaction); returns rowcount."""
        return await self.run(lambda conn: conn.execute(sql, params).rowcount)

    async def execute_returning_id(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await self.run(lambda conn: int(conn.execute(sql, params).lastrowid or 0))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self.transaction():
            await self.run(lambda conn: conn.executemany(sql, rows))

    async def fetchone(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        return await self.run(lambda conn: conn.execute(sql, params).fetchone())

    async def fetchall(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        return await self.run(lambda conn: conn.execute(sql, params).fetchall())

    async def _on_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """One hand-off; a pending BEGIN and deferred writes go first. The thread runs one function
        at a time, so asking the connection whether a transaction is open there is free of races."""
        in_transaction = self._in_transaction.get()
        begin = self._begin_pending and in_transaction
        deferred: list[Callable[[sqlite3.Connection], object]] = []
        if in_transaction:
            deferred, self._deferred = self._deferred, []

        def call() -> T:
            conn = self._conn._conn  # the sqlite3 connection, used on its own thread
            if begin and not conn.in_transaction:
                conn.execute("BEGIN IMMEDIATE")
                self._begun = True
            for write in deferred:
                write(conn)
            return fn(conn)

        # aiosqlite's own methods queue their work the same way; it has no public call for
        # running a function of ours on its thread.
        return await self._conn._execute(call)

    @asynccontextmanager
    async def _statement(self) -> AsyncIterator[None]:
        if self._in_transaction.get():
            yield
        else:
            async with self._lock:
                yield

