-- The server an outbox row belongs to, as a column: alerts, /readersviews outbox and status find a
-- row's server without reading it out of the entity text, and a server no longer served is held.
-- NULL: an item no server owns. Existing rows are backfilled from their entity, once, here.
ALTER TABLE outbox ADD COLUMN guild_id INTEGER;
UPDATE outbox SET guild_id =
    (SELECT c.guild_id FROM contributions c WHERE c.id = CAST(substr(outbox.entity, 8) AS INTEGER))
    WHERE entity LIKE 'letter:%';
UPDATE outbox SET guild_id =
    (SELECT s.guild_id FROM statements s WHERE s.id = CAST(substr(outbox.entity, 11) AS INTEGER))
    WHERE entity LIKE 'statement:%';
-- Digests: "digest:<guild>-<since>-<until>".
UPDATE outbox SET guild_id = CAST(substr(entity, 8, instr(substr(entity, 8), '-') - 1) AS INTEGER)
    WHERE entity LIKE 'digest:%-%';
CREATE INDEX outbox_guild ON outbox(guild_id, state);
