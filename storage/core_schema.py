"""The core's part of the database: the session, the command inbox and the outbox, rooms and
their settings, the scheduler's record, joins, upgraded rooms. See `storage/schema.py`; append
new steps, never edit old ones."""

from storage.member_data import Action, Match, MemberColumn
from storage.outbox import OutboxRepository
from storage.schema import Migration, Schema

MIGRATIONS: tuple[Migration, ...] = (
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
        shared_step=1,
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
        shared_step=2,
    ),
    Migration(
        3,
        "the scheduler's delivery record and how far it has looked",
        """
        CREATE TABLE deliveries (
            key TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            room_id TEXT NOT NULL,
            due_at INTEGER NOT NULL,
            recorded_at INTEGER NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('sent', 'late', 'skipped'))
        );
        CREATE INDEX deliveries_by_due ON deliveries (due_at);
        CREATE TABLE scheduler_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            checked_until INTEGER NOT NULL
        )
        """,
        shared_step=4,
    ),
    Migration(
        4,
        "encrypted events not yet decrypted, and who was told about them",
        """
        CREATE TABLE undecrypted (
            event_id TEXT PRIMARY KEY,
            room_id TEXT NOT NULL,
            sender TEXT NOT NULL,
            content TEXT NOT NULL,
            origin_ts INTEGER NOT NULL,
            received_at INTEGER NOT NULL
        );
        CREATE TABLE decryption_notices (
            room_id TEXT NOT NULL,
            sender TEXT NOT NULL,
            notified_at INTEGER NOT NULL,
            PRIMARY KEY (room_id, sender)
        )
        """,
        shared_step=6,
    ),
    Migration(
        5,
        "room settings as key and value, with a record of every change",
        """
        ALTER TABLE room_settings RENAME TO room_settings_before_8;
        CREATE TABLE room_settings (
            room_id TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (room_id, key)
        );
        INSERT INTO room_settings (room_id, key, value)
            SELECT room_id, 'language', language FROM room_settings_before_8
            WHERE language IS NOT NULL;
        DROP TABLE room_settings_before_8;
        CREATE INDEX room_settings_by_key ON room_settings (key, value);
        -- who changed what when; old or new value NULL = the default
        CREATE TABLE room_setting_changes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            room_id TEXT NOT NULL,
            key TEXT NOT NULL,
            old_value TEXT,
            new_value TEXT,
            changed_by TEXT NOT NULL,
            changed_at INTEGER NOT NULL
        );
        CREATE INDEX room_setting_changes_by_room ON room_setting_changes (room_id, id)
        """,
        shared_step=8,
    ),
    Migration(
        6,
        "the joins waiting for their welcome",
        """
        -- a member's join seen in a room (its membership event is the key): looked at once,
        -- greeted unless the room has no welcome or the member was greeted there lately
        CREATE TABLE welcomes (
            event_id TEXT PRIMARY KEY,
            room_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            joined_at INTEGER NOT NULL,
            handled_at INTEGER,
            greeted INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX welcomes_waiting ON welcomes (joined_at) WHERE handled_at IS NULL;
        CREATE INDEX welcomes_greeted ON welcomes (room_id, user_id, handled_at) WHERE greeted = 1
        """,
        shared_step=9,
    ),
    Migration(
        7,
        "direct chats found by room: every permission check asks",
        """
        -- every permission check asks whether a room is the bot's direct chat
        CREATE INDEX direct_rooms_by_room ON direct_rooms (room_id)
        """,
        shared_step=12,
    ),
    Migration(
        8,
        "outbox: messages refused for good are set aside; the key of the bot's room aliases",
        """
        -- set when the homeserver refused the message for good (403, 413 …): no longer sent,
        -- kept a while for the operator
        ALTER TABLE outbox ADD COLUMN failed_at INTEGER;
        ALTER TABLE outbox ADD COLUMN failed_errcode TEXT;
        -- random keys the bot made itself, e.g. for aliases no member can guess
        CREATE TABLE bot_secrets (
            name TEXT PRIMARY KEY,
            value BLOB NOT NULL
        )
        """,
        shared_step=13,
    ),
    Migration(
        9,
        "inbox: the thread a command was written in, so that it is answered there",
        """
        -- the thread's root event; NULL: the command was written in the main timeline
        ALTER TABLE inbox ADD COLUMN thread_root TEXT
        """,
        shared_step=14,
    ),
    Migration(
        10,
        "upgraded rooms: each room's successor, and how far its carry-over went",
        """
        -- a tombstone seen in a room the bot serves (the first one counts); carried_over_at:
        -- the room's data moved to the successor (one transaction), done_at: the space's links
        -- too; both NULL until then
        CREATE TABLE room_upgrades (
            old_room_id TEXT PRIMARY KEY,
            new_room_id TEXT NOT NULL,
            event_id TEXT NOT NULL,  -- the tombstone
            seen_at INTEGER NOT NULL,
            carried_over_at INTEGER,
            done_at INTEGER
        );
        CREATE INDEX room_upgrades_pending ON room_upgrades (seen_at) WHERE done_at IS NULL
        """,
        shared_step=16,
    ),
    Migration(
        11,
        "outbox: what a message is recorded as once sent (a feature's kind and key)",
        """
        -- e.g. 'workshop_post' and '12': once sent, the feature that declared the kind records
        -- the message's event id (storage/outbox.py `sent`)
        ALTER TABLE outbox ADD COLUMN record_kind TEXT;
        ALTER TABLE outbox ADD COLUMN record_key TEXT
        """,
    ),
)

# The core's columns that can name a member (see `storage/member_data.py`).
MEMBER_DATA: tuple[MemberColumn, ...] = (
    MemberColumn("room_setting_changes", "changed_by", Action.PSEUDONYMISE,
                 "the rooms' settings history"),
    MemberColumn("direct_rooms", "user_id", Action.DELETE, "the bot's direct chat with the member"),
    MemberColumn("decryption_notices", "sender", Action.DELETE,
                 "when the member was told that the bot could not read a message"),
    MemberColumn("undecrypted", "sender", Action.DELETE,
                 "the member's encrypted messages not read yet"),
    MemberColumn("welcomes", "user_id", Action.DELETE,
                 "the member's joins and whether they were greeted"),
    MemberColumn("inbox", "sender", Action.DELETE,
                 "commands of the member; waiting ones are still answered (see above)",
                 deleted_rows="event_id IN (SELECT event_id FROM handled_events)"),
    # Through the outbox, which keeps each room's waiting messages in memory too.
    MemberColumn("outbox", "room_id", Action.DELETE,
                 "direct messages to the member not sent yet, or refused by the homeserver",
                 hidden=("file_data",), repository="outbox",
                 delete_with=OutboxRepository.delete_to_member),
    MemberColumn("outbox", "content", Action.DELETE,
                 "refused messages that name the member, kept for the operator",
                 match=Match.CONTAINS, deleted_rows="failed_at IS NOT NULL",
                 hidden=("content", "file_data"), repository="outbox",
                 delete_with=OutboxRepository.delete_refused_naming),
)

CORE = Schema("core", MIGRATIONS, member_data=MEMBER_DATA,
              not_member_data={("bot_session", "user_id"): "the bot's own account"})
