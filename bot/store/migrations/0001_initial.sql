-- readersviews schema, version 1. Times are ISO-8601 UTC text; Discord ids are INTEGER.

CREATE TABLE guild_settings (
    guild_id        INTEGER NOT NULL,
    key             TEXT    NOT NULL,
    value           TEXT    NOT NULL,           -- JSON
    updated_at      TEXT    NOT NULL,
    updated_by      INTEGER,
    PRIMARY KEY (guild_id, key)
);

CREATE TABLE meta (
    key             TEXT PRIMARY KEY,
    value           TEXT NOT NULL
);

CREATE TABLE feeds (
    id                    INTEGER PRIMARY KEY,
    guild_id              INTEGER NOT NULL,
    url                   TEXT    NOT NULL,
    channel_id            INTEGER NOT NULL,
    channel_kind          TEXT    NOT NULL CHECK (channel_kind IN ('forum', 'text')),
    tag_map               TEXT    NOT NULL DEFAULT '{}',   -- JSON {category: forum tag name}
    poll_interval         INTEGER NOT NULL DEFAULT 900,    -- seconds
    etag                  TEXT,
    last_modified         TEXT,
    last_poll_at          TEXT,
    last_ok_at            TEXT,
    last_status           TEXT,
    next_poll_at          TEXT,
    consecutive_errors    INTEGER NOT NULL DEFAULT 0,
    last_error            TEXT,
    alerted               INTEGER NOT NULL DEFAULT 0,      -- a failure alert is outstanding
    enabled               INTEGER NOT NULL DEFAULT 1,
    disabled_reason       TEXT,
    title                 TEXT,
    item_count            INTEGER NOT NULL DEFAULT 0,
    created_at            TEXT    NOT NULL,
    created_by            INTEGER,
    UNIQUE (guild_id, url, channel_id)
);

CREATE TABLE articles (
    id               INTEGER PRIMARY KEY,
    feed_id          INTEGER NOT NULL REFERENCES feeds(id) ON DELETE CASCADE,
    guid             TEXT    NOT NULL,
    title            TEXT    NOT NULL,
    link             TEXT    NOT NULL,
    summary          TEXT    NOT NULL DEFAULT '',
    published_at     TEXT,
    content_hash     TEXT    NOT NULL,
    categories       TEXT    NOT NULL DEFAULT '[]',   -- JSON list, for forum tag routing
    needs_edit       INTEGER NOT NULL DEFAULT 0,      -- title/summary changed since posting
    -- seen: recorded, never to be posted (baseline, too old); pending: to post;
    -- posting: a post was attempted (check before trying again); posted; failed
    status           TEXT    NOT NULL DEFAULT 'pending',
    status_reason    TEXT,
    thread_id        INTEGER,
    message_id       INTEGER,
    channel_id       INTEGER,
    first_seen_at    TEXT    NOT NULL,
    posted_at        TEXT,
    updated_at       TEXT,
    UNIQUE (feed_id, guid)
);
CREATE INDEX articles_thread ON articles(thread_id);
CREATE INDEX articles_link ON articles(link);
CREATE INDEX articles_status ON articles(status, feed_id);

CREATE TABLE contributions (
    id                  INTEGER PRIMARY KEY,
    guild_id            INTEGER NOT NULL,
    message_id          INTEGER UNIQUE,          -- NULL for letters written with /letter submit
    channel_id          INTEGER NOT NULL,
    article_id          INTEGER REFERENCES articles(id) ON DELETE SET NULL,
    reply_to_message_id INTEGER,
    author_id           INTEGER NOT NULL,
    author_name         TEXT    NOT NULL,
    content             TEXT    NOT NULL,
    original_content    TEXT,                    -- kept when an editor edits
    created_at          TEXT    NOT NULL,
    edited_at           TEXT,
    deleted_at          TEXT,
    state               TEXT    NOT NULL DEFAULT 'recorded'
        CHECK (state IN ('recorded', 'submitted', 'nominated', 'approved', 'rejected',
                         'published', 'retracted', 'withdrawn', 'declined')),
    consent             TEXT    NOT NULL DEFAULT 'pending'
        CHECK (consent IN ('pending', 'granted', 'declined')),
    byline              TEXT,
    location            TEXT,
    reviewer_id         INTEGER,
    review_note         TEXT,
    flags               TEXT    NOT NULL DEFAULT '[]',   -- JSON list of screening flags
    review_message_id   INTEGER,
    review_channel_id   INTEGER,
    remote_id           TEXT,
    remote_url          TEXT,
    submitted_at        TEXT,
    decided_at          TEXT,
    version             INTEGER NOT NULL DEFAULT 0       -- optimistic concurrency for reviews
);
CREATE INDEX contributions_author ON contributions(guild_id, author_id);
CREATE INDEX contributions_state ON contributions(guild_id, state);
CREATE INDEX contributions_article ON contributions(article_id);

CREATE TABLE statements (
    id                  INTEGER PRIMARY KEY,
    guild_id            INTEGER NOT NULL,
    slug                TEXT    NOT NULL,
    title               TEXT    NOT NULL,
    body                TEXT    NOT NULL,
    organizer_id        INTEGER NOT NULL,
    channel_id          INTEGER,
    message_id          INTEGER,
    opens_at            TEXT,
    closes_at           TEXT,
    status              TEXT    NOT NULL DEFAULT 'open' CHECK (status IN ('draft', 'open', 'closed')),
    allow_organizations INTEGER NOT NULL DEFAULT 1,
    public_by_default   INTEGER NOT NULL DEFAULT 1,
    created_at          TEXT    NOT NULL,
    updated_at          TEXT    NOT NULL,
    closed_at           TEXT,
    remote_id           TEXT,
    remote_url          TEXT,
    message_dirty       INTEGER NOT NULL DEFAULT 0,     -- the Discord message needs a refresh
    UNIQUE (guild_id, slug)
);

CREATE TABLE signatures (
    id              INTEGER PRIMARY KEY,
    statement_id    INTEGER NOT NULL REFERENCES statements(id) ON DELETE CASCADE,
    user_id         INTEGER NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('individual', 'organization')),
    name            TEXT    NOT NULL,
    organization    TEXT,
    role            TEXT,
    city            TEXT,
    country         TEXT,
    public          INTEGER NOT NULL DEFAULT 1,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    withdrawn_at    TEXT,
    hidden_at       TEXT,
    hidden_by       INTEGER,
    flags           TEXT    NOT NULL DEFAULT '[]'
);
-- One live signature per user per statement.
CREATE UNIQUE INDEX signatures_live ON signatures(statement_id, user_id) WHERE withdrawn_at IS NULL;
CREATE INDEX signatures_statement ON signatures(statement_id, created_at);

CREATE TABLE statement_blocks (
    statement_id    INTEGER NOT NULL REFERENCES statements(id) ON DELETE CASCADE,
    user_id         INTEGER NOT NULL,
    blocked_by      INTEGER NOT NULL,
    created_at      TEXT    NOT NULL,
    PRIMARY KEY (statement_id, user_id)
);

CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY,
    kind             TEXT    NOT NULL,     -- e.g. letter.create, letter.update, letter.retract
    entity           TEXT    NOT NULL,     -- e.g. letter:42, statement:7
    payload          TEXT    NOT NULL,     -- JSON
    idempotency_key  TEXT    NOT NULL UNIQUE,
    state            TEXT    NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'inflight', 'done', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT    NOT NULL,
    last_error       TEXT,
    remote_id        TEXT,
    remote_url       TEXT,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL
);
CREATE INDEX outbox_due ON outbox(state, next_attempt_at);
CREATE INDEX outbox_entity ON outbox(entity, id);

-- Where each entity lives on the site once created (shared by all its outbox rows).
CREATE TABLE remote_objects (
    entity          TEXT PRIMARY KEY,
    remote_id       TEXT,
    remote_url      TEXT,
    updated_at      TEXT NOT NULL
);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    guild_id    INTEGER,
    actor_id    INTEGER,
    action      TEXT    NOT NULL,
    entity      TEXT,
    detail      TEXT    NOT NULL DEFAULT '{}',    -- JSON
    created_at  TEXT    NOT NULL
);
CREATE INDEX audit_entity ON audit_log(entity, id);
