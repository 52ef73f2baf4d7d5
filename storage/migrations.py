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
    Migration(
        3,
        "expert directory: profiles, topics, topic counts, search index, removal log",
        """
        CREATE TABLE profiles (
            id INTEGER PRIMARY KEY,  -- also the rowid of the profile's search entry
            user_id TEXT NOT NULL UNIQUE,
            display_name TEXT,
            organisation TEXT,
            level TEXT CHECK (level IN ('kommune', 'land', 'bund', 'other')),
            municipality TEXT,
            state TEXT,  -- canonical German name of one of the 16 states
            role TEXT,
            bio TEXT,
            languages TEXT NOT NULL DEFAULT '[]',  -- JSON list of strings
            consent_at INTEGER NOT NULL,  -- milliseconds; no row exists without consent
            updated_at INTEGER NOT NULL
        );
        CREATE TABLE profile_topics (
            profile_id INTEGER NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            topic TEXT NOT NULL,
            topic_key TEXT NOT NULL,  -- folded: one topic however it is spelled
            PRIMARY KEY (profile_id, topic_key)
        ) WITHOUT ROWID;
        CREATE INDEX profile_topics_by_key ON profile_topics (topic_key);
        -- Kept in step with profile_topics by every write, so !topics reads only a few rows.
        CREATE TABLE topic_counts (
            topic_key TEXT PRIMARY KEY,
            label TEXT NOT NULL,
            profiles INTEGER NOT NULL
        );
        CREATE INDEX topic_counts_by_profiles ON topic_counts (profiles DESC, topic_key);
        -- Folded text only (storage/experts.py fold()); rowid = profiles.id. The short twin
        -- lacks the bio: ranking and counting mostly stay on its much smaller doclists.
        CREATE VIRTUAL TABLE profile_search USING fts5 (
            topics, organisation, municipality, role, name, bio, state, level,
            tokenize = 'unicode61 remove_diacritics 2',
            prefix = '3'
        );
        CREATE VIRTUAL TABLE profile_search_short USING fts5 (
            topics, organisation, municipality, role, name, state, level,
            tokenize = 'unicode61 remove_diacritics 2',
            prefix = '3'
        );
        -- A moderation log: whose profile a bot admin removed, and when; never its content.
        CREATE TABLE profile_removals (
            id INTEGER PRIMARY KEY,
            user_id TEXT NOT NULL,
            removed_by TEXT NOT NULL,
            removed_at INTEGER NOT NULL
        );
        CREATE INDEX profile_removals_by_user ON profile_removals (user_id)
        """,
    ),
    Migration(
        4,
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
    ),
    Migration(
        5,
        "workshops, their registrations and waiting lists",
        """
        CREATE TABLE workshops (
            number INTEGER PRIMARY KEY AUTOINCREMENT,  -- what members type; never reused
            title TEXT NOT NULL,
            community TEXT,
            room_id TEXT,  -- the room it was added in: its reminders go there
            starts_at INTEGER NOT NULL,  -- UTC milliseconds
            ends_at INTEGER NOT NULL,
            timezone TEXT NOT NULL,  -- IANA name of the zone the times were entered in
            location TEXT,
            url TEXT,
            description TEXT,
            capacity INTEGER CHECK (capacity IS NULL OR capacity > 0),
            status TEXT NOT NULL DEFAULT 'planned' CHECK (status IN ('planned', 'cancelled')),
            created_by TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            sequence INTEGER NOT NULL DEFAULT 0,  -- grows with each change (iCalendar SEQUENCE)
            CHECK (ends_at > starts_at)
        );
        CREATE INDEX workshops_by_start ON workshops (status, starts_at);
        CREATE TABLE workshop_registrations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,  -- sign-up order: orders the waiting list
            workshop INTEGER NOT NULL REFERENCES workshops (number) ON DELETE CASCADE,
            user_id TEXT NOT NULL,
            registered_at INTEGER NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('registered', 'waiting')),
            UNIQUE (workshop, user_id)
        );
        CREATE INDEX workshop_registrations_by_user ON workshop_registrations (user_id)
        """,
    ),
    Migration(
        6,
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
    ),
    Migration(
        7,
        "expert search: prefix index for 4 letters too",
        """
        -- Prefixes of 4 letters (`Digi`, `akte`, `harz`) are common search words; without their
        -- own index FTS5 merges every matching term's doclist, and bm25 does it a second time.
        -- FTS5 cannot change the option in place: each table is rebuilt with the same rows.
        CREATE VIRTUAL TABLE profile_search_rebuilt USING fts5 (
            topics, organisation, municipality, role, name, bio, state, level,
            tokenize = 'unicode61 remove_diacritics 2',
            prefix = '3 4'
        );
        INSERT INTO profile_search_rebuilt (rowid, topics, organisation, municipality, role, name,
                                            bio, state, level)
            SELECT rowid, topics, organisation, municipality, role, name, bio, state, level
            FROM profile_search;
        DROP TABLE profile_search;
        ALTER TABLE profile_search_rebuilt RENAME TO profile_search;
        CREATE VIRTUAL TABLE profile_search_short_rebuilt USING fts5 (
            topics, organisation, municipality, role, name, state, level,
            tokenize = 'unicode61 remove_diacritics 2',
            prefix = '3 4'
        );
        INSERT INTO profile_search_short_rebuilt (rowid, topics, organisation, municipality,
                                                  role, name, state, level)
            SELECT rowid, topics, organisation, municipality, role, name, state, level
            FROM profile_search_short;
        DROP TABLE profile_search_short;
        ALTER TABLE profile_search_short_rebuilt RENAME TO profile_search_short
        """,
    ),
    Migration(
        8,
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
    ),
    Migration(
        9,
        "communities, the network's space, and the joins waiting for their welcome",
        """
        CREATE TABLE communities (
            slug TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            topic TEXT NOT NULL DEFAULT '',
            description TEXT NOT NULL DEFAULT '',
            room_id TEXT NOT NULL,
            created_by TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            archived_at INTEGER
        );
        CREATE UNIQUE INDEX communities_active_room ON communities (room_id)
            WHERE archived_at IS NULL;
        -- the space the bot created or was given; one row
        CREATE TABLE network_space (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            room_id TEXT NOT NULL
        );
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
    ),
    Migration(
        10,
        "the member register (municipalities and other member organisations) and its feed",
        """
        CREATE TABLE municipalities (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            name_key TEXT NOT NULL,
            state TEXT NOT NULL,
            kind TEXT NOT NULL,
            ags TEXT,
            joined_on TEXT,
            website TEXT,
            source TEXT NOT NULL,
            added_by TEXT NOT NULL,
            registered_at INTEGER NOT NULL,
            announce INTEGER NOT NULL,
            removed_at INTEGER
        );
        CREATE UNIQUE INDEX municipalities_ags ON municipalities (ags) WHERE ags IS NOT NULL;
        CREATE INDEX municipalities_name ON municipalities (name_key, state);
        CREATE INDEX municipalities_registered ON municipalities (registered_at)
            WHERE announce = 1;
        -- per feed address: the validators of its last good poll, and when it seeded
        CREATE TABLE member_feed (
            url TEXT PRIMARY KEY,
            etag TEXT,
            last_modified TEXT,
            rows INTEGER NOT NULL,
            seeded_at INTEGER
        )
        """,
    ),
    Migration(
        11,
        "NExT-to-meet-you: schedule changes, pairing participants, rounds and their groups",
        """
        -- the admins' schedule; a NULL column: the configuration's value
        CREATE TABLE meet_schedule (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            rule TEXT,
            start_time TEXT,
            duration_minutes INTEGER,
            link TEXT,
            changed_by TEXT NOT NULL,
            changed_at INTEGER NOT NULL
        );
        -- a date of the rule (YYYY-MM-DD, wall clock) cancelled (moved_to NULL) or moved
        CREATE TABLE meet_exceptions (
            date TEXT PRIMARY KEY,
            moved_to INTEGER,
            changed_by TEXT NOT NULL,
            changed_at INTEGER NOT NULL
        );
        CREATE TABLE meet_participants (
            user_id TEXT PRIMARY KEY,
            joined_at INTEGER NOT NULL,
            paused_until INTEGER
        );
        CREATE TABLE meet_rounds (
            date TEXT PRIMARY KEY,
            starts_at INTEGER NOT NULL,
            paired_at INTEGER NOT NULL,
            participants INTEGER NOT NULL
        );
        -- met: NULL no answer, 1 met, 0 did not
        CREATE TABLE meet_groups (
            key TEXT PRIMARY KEY,
            round TEXT NOT NULL REFERENCES meet_rounds (date) ON DELETE CASCADE,
            size INTEGER NOT NULL,
            room_id TEXT,
            room_requested_at INTEGER,
            met INTEGER
        );
        CREATE INDEX meet_groups_by_round ON meet_groups (round);
        CREATE UNIQUE INDEX meet_groups_room ON meet_groups (room_id) WHERE room_id IS NOT NULL;
        CREATE TABLE meet_group_members (
            group_key TEXT NOT NULL REFERENCES meet_groups (key) ON DELETE CASCADE,
            user_id TEXT NOT NULL,
            PRIMARY KEY (group_key, user_id)
        )
        """,
    ),
    Migration(
        12,
        "trust model: workshops shown network-wide or only in their room; direct chats by room",
        """
        -- 1: listed everywhere (added by a network moderator, imported, or from before);
        -- 0: a room moderator's, listed only in its room
        ALTER TABLE workshops ADD COLUMN network_wide INTEGER NOT NULL DEFAULT 1;
        -- every permission check asks whether a room is the bot's direct chat
        CREATE INDEX direct_rooms_by_room ON direct_rooms (room_id)
        """,
    ),
    Migration(
        13,
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
    ),
    Migration(
        14,
        "inbox: the thread a command was written in, so that it is answered there",
        """
        -- the thread's root event; NULL: the command was written in the main timeline
        ALTER TABLE inbox ADD COLUMN thread_root TEXT
        """,
    ),
    Migration(
        15,
        "workshop posts: the bot's posts of a workshop, and the ✅ reactions that signed up",
        """
        -- set on a message that is a post of this workshop: once sent, it is recorded below
        ALTER TABLE outbox ADD COLUMN post_of_workshop INTEGER;
        -- room_id: where it was queued (a room, or the member of a direct chat)
        CREATE TABLE workshop_posts (
            event_id TEXT PRIMARY KEY,
            workshop INTEGER NOT NULL REFERENCES workshops (number) ON DELETE CASCADE,
            room_id TEXT NOT NULL
        );
        CREATE INDEX workshop_posts_by_workshop ON workshop_posts (workshop);
        -- a member's ✅ on a post that signed them up: its redaction withdraws them
        CREATE TABLE workshop_reactions (
            event_id TEXT PRIMARY KEY,
            workshop INTEGER NOT NULL REFERENCES workshops (number) ON DELETE CASCADE,
            user_id TEXT NOT NULL
        );
        CREATE INDEX workshop_reactions_by_user ON workshop_reactions (user_id)
        """,
    ),
    Migration(
        16,
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
    ),
    Migration(
        17,
        "posts answered with a tap: the question after a date (👍/👎), reminders in a thread",
        """
        -- set on the question after a date to this group: once sent, recorded below
        ALTER TABLE outbox ADD COLUMN follow_up_of_group TEXT;
        -- the bot's question whether the group met: a member's 👍/👎 on it is `!getroffen`
        ALTER TABLE meet_groups ADD COLUMN follow_up_event TEXT;
        CREATE INDEX meet_groups_by_follow_up ON meet_groups (follow_up_event)
            WHERE follow_up_event IS NOT NULL;
        -- the thread a post of a workshop went into (NULL: the main timeline): its reminders
        -- go into that thread, a post inside a thread cannot root one of its own
        ALTER TABLE workshop_posts ADD COLUMN thread_root TEXT
        """,
    ),
]
