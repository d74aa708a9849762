-- What the site says about a letter, and what the bot still owes people about it.

-- The post's status on the site as last seen (pending, draft, future, private, publish, trash;
-- NULL: unknown, e.g. the webhook). A letter is "published" in the bot once the site holds it;
-- only `publish` means the public can read it. Posts still with the site's editors are checked
-- periodically until they are published or trashed.
ALTER TABLE contributions ADD COLUMN remote_status TEXT;
ALTER TABLE contributions ADD COLUMN remote_checked_at TEXT;

-- Messages owed to people after a site event (the writer's DM, the thread announcement, the
-- nominating editor's note). Written in the same transaction as the change they announce and
-- sent by a worker that survives restarts; (letter, event, audience) is unique, so a repeated
-- event never queues a second message.
CREATE TABLE letter_notices (
    id          INTEGER PRIMARY KEY,
    letter_id   INTEGER NOT NULL,
    event       TEXT    NOT NULL,   -- e.g. published, sent_for_review, trashed, declined
    audience    TEXT    NOT NULL,   -- writer | thread | editor
    created_at  TEXT    NOT NULL,
    sent_at     TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    UNIQUE (letter_id, event, audience)
);
CREATE INDEX letter_notices_unsent ON letter_notices(id) WHERE sent_at IS NULL;

-- One site-wide incident at a time (credentials refused, site down): one alert, items wait, a
-- probe decides when delivery resumes, then one recovery note.
CREATE TABLE site_incident (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    kind            TEXT    NOT NULL,   -- credentials | down
    reason          TEXT    NOT NULL,
    started_at      TEXT    NOT NULL,
    next_probe_at   TEXT    NOT NULL,
    probes          INTEGER NOT NULL DEFAULT 0,
    alerted_at      TEXT,
    resolved_at     TEXT,               -- set when a probe succeeded; the recovery note is owed
    noted_at        TEXT                -- the recovery note was sent (the row may then be deleted)
);
