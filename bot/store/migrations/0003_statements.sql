-- Statement sign-ons: site-mirror throttling and durable close announcements.

-- The site copy is behind the signatures (an update is owed, at most every N minutes).
ALTER TABLE statements ADD COLUMN site_dirty INTEGER NOT NULL DEFAULT 0;
-- Counter of site updates enqueued; it makes each update's outbox key unique and idempotent.
ALTER TABLE statements ADD COLUMN site_revision INTEGER NOT NULL DEFAULT 0;
-- When the last site create/update was enqueued (throttle origin).
ALTER TABLE statements ADD COLUMN site_synced_at TEXT;
-- The final count was posted in the channel after closing (so a restart posts it once).
ALTER TABLE statements ADD COLUMN close_announced INTEGER NOT NULL DEFAULT 0;

CREATE INDEX statements_open_deadline ON statements(status, closes_at);
CREATE INDEX statements_guild_title ON statements(guild_id, title);
CREATE INDEX statement_blocks_user ON statement_blocks(user_id);
