"""The bot's own Matrix session: device, access token, sync token."""

from __future__ import annotations

from dataclasses import dataclass

from storage.database import Database


@dataclass(frozen=True)
class BotSession:
    user_id: str
    device_id: str
    access_token: str
    sync_token: str | None
    first_synced_at: int | None

    def __repr__(self) -> str:  # the token must never reach a log
        return f"BotSession(user_id={self.user_id!r}, device_id={self.device_id!r})"


class SessionRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self) -> BotSession | None:
        row = await self._db.fetchone(
            "SELECT user_id, device_id, access_token, sync_token, first_synced_at "
            "FROM bot_session WHERE id = 1"
        )
        return BotSession(*row) if row else None

    async def save_login(self, user_id: str, device_id: str, access_token: str) -> None:
        """A new login starts a new sync history only if the account changed."""
        await self._db.execute(
            "INSERT INTO bot_session (id, user_id, device_id, access_token) VALUES (1, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET device_id = excluded.device_id, "
            "access_token = excluded.access_token, "
            "sync_token = CASE WHEN user_id = excluded.user_id THEN sync_token END, "
            "first_synced_at = CASE WHEN user_id = excluded.user_id THEN first_synced_at END, "
            "user_id = excluded.user_id",
            (user_id, device_id, access_token),
        )

    async def set_sync_token(self, token: str) -> None:
        # In the sync loop's transaction: goes out with its COMMIT.
        await self._db.execute_later("UPDATE bot_session SET sync_token = ? WHERE id = 1",
                                     (token,))

    async def set_first_synced_at(self, ts_ms: int) -> None:
        await self._db.execute(
            "UPDATE bot_session SET first_synced_at = COALESCE(first_synced_at, ?) WHERE id = 1",
            (ts_ms,),
        )
