-- A member keeps one personal signature and may also sign for organizations (one signature per
-- organization name). `sign_key` says which of a member's signatures a row is: '' the personal
-- one, 'org:<organization name, case-folded>' one per organization. The unique index of live
-- signatures moves from (statement, user) to (statement, user, sign_key).
ALTER TABLE signatures ADD COLUMN sign_key TEXT NOT NULL DEFAULT '';
-- Organization signatures from before get a key no new row has; the bot matches them by their
-- organization's name and gives them the proper key the next time they change.
UPDATE signatures SET sign_key = 'legacy:' || id WHERE kind = 'organization';
DROP INDEX signatures_live;
CREATE UNIQUE INDEX signatures_live ON signatures(statement_id, user_id, sign_key) WHERE withdrawn_at IS NULL;
