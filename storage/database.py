"""One SQLite connection for the whole bot, with transactions and versioned migrations.

All access goes through one aiosqlite connection guarded by a lock, so coroutines never interleave
statements inside another coroutine's transaction. Inside `async with db.transaction():` every
repository call made by the same task joins that transaction (tracked with a context variable).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000  # an operator's large import may hold the write lock for seconds


class DatabaseTooNewError(RuntimeError):
    """The database was written by a newer version of the bot than this one."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str


class Database:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self._in_transaction: contextvars.ContextVar[bool] = contextvars.ContextVar(
            f"in_transaction_{id(self)}", default=False
        )

    @classmethod
    async def open(cls, path: str | Path, migrations: Sequence[Migration]) -> Database:
        """Open (creating if needed) and migrate the database. `:memory:` is fine for tests."""
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
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
            await db.migrate(migrations)
        except BaseException:
            await conn.close()
            raise
        return db

    async def close(self) -> None:
        await self._conn.close()

    # -- migrations ----------------------------------------------------------------------------

    async def version(self) -> int:
        row = await self.fetchone("PRAGMA user_version")
        return int(row[0]) if row else 0

    async def migrate(self, migrations: Sequence[Migration]) -> None:
        """Apply each missing step in its own transaction together with its version bump."""
        versions = [m.version for m in migrations]
        if versions != list(range(1, len(migrations) + 1)):
            raise ValueError("migrations must be numbered 1, 2, 3, … without gaps")
        current = await self.version()
        latest = len(migrations)
        if current > latest:
            raise DatabaseTooNewError(
                f"The database has schema version {current}, but this version of the bot only "
                f"knows up to {latest}. Update the bot, or restore a backup of the database."
            )
        for migration in migrations[current:]:
            log.info("migrating database to version %d: %s", migration.version,
                     migration.description)
            async with self.transaction():
                for statement in _split_sql(migration.sql):
                    await self._conn.execute(statement)
                await self._conn.execute(f"PRAGMA user_version = {migration.version}")

    # -- statements ----------------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any exception; nested use joins the outer."""
        if self._in_transaction.get():
            yield
            return
        async with self._lock:
            token = self._in_transaction.set(True)
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield
                except BaseException:
                    await self._conn.rollback()
                    raise
                await self._conn.commit()
            finally:
                self._in_transaction.reset(token)

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Run one statement (autocommitted unless inside a transaction); returns rowcount."""
        async with self._statement():
            cursor = await self._conn.execute(sql, params)
            return cursor.rowcount

    async def execute_returning_id(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._statement():
            cursor = await self._conn.execute(sql, params)
            return int(cursor.lastrowid or 0)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self.transaction():
            await self._conn.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        async with self._statement():
            cursor = await self._conn.execute(sql, params)
            return await cursor.fetchone()

    async def fetchall(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        async with self._statement():
            cursor = await self._conn.execute(sql, params)
            return list(await cursor.fetchall())

    @asynccontextmanager
    async def _statement(self) -> AsyncIterator[None]:
        if self._in_transaction.get():
            yield
        else:
            async with self._lock:
                yield


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (our migrations hold no ';' inside literals)."""
    without_comments = "\n".join(line.split("--", 1)[0] for line in script.splitlines())
    return [s.strip() for s in without_comments.split(";") if s.strip()]
