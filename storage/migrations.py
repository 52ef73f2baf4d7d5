"""The schema, as an ordered list of described steps. Append new steps; never edit old ones."""

from storage.database import Migration

MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "bot session, sync cursors, command inbox, handled events, outbox, room settings",
        """
        CREATE TABLE bot_session (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            user_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            access_token TEXT NOT NULL,
            sync_token TEXT,
            -- milliseconds; nothing older than the bot's first sync is ever answered
            first_synced_at INTEGER
        );
        CREATE TABLE room_cursor (
            room_id TEXT PRIMARY KEY,
            last_event_id TEXT NOT NULL,
            last_ts INTEGER NOT NULL
        );
        CREATE TABLE inbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id TEXT NOT NULL UNIQUE,
            room_id TEXT NOT NULL,
            sender TEXT NOT NULL,
            body TEXT NOT NULL,
            origin_ts INTEGER NOT NULL,
            received_at INTEGER NOT NULL
        );
        CREATE INDEX inbox_by_room ON inbox (room_id, seq);
        CREATE TABLE handled_events (
            event_id TEXT PRIMARY KEY,
            room_id TEXT NOT NULL,
            handled_at INTEGER NOT NULL
        );
        CREATE INDEX handled_events_by_time ON handled_events (handled_at);
        CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            txn_id TEXT NOT NULL UNIQUE,
            room_id TEXT NOT NULL,
            event_type TEXT NOT NULL,
            content TEXT NOT NULL,
            created_at INTEGER NOT NULL
        );
        CREATE INDEX outbox_by_room ON outbox (room_id, seq);
        CREATE TABLE room_settings (
            room_id TEXT PRIMARY KEY,
            language TEXT
        )
        """,
    ),
    Migration(
        2,
        "files in the outbox, direct-message rooms with members",
        """
        ALTER TABLE outbox ADD COLUMN file_data BLOB;
        CREATE TABLE direct_rooms (
            user_id TEXT PRIMARY KEY,
            room_id TEXT NOT NULL
        )
        """,
    ),
]
