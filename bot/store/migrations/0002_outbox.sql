-- Outbox delivery bookkeeping (site mirroring).

-- The last attempt may have reached the site (process died mid-send, timeout, 5xx): the next
-- create looks the item up on the site before creating it again.
ALTER TABLE outbox ADD COLUMN outcome_unknown INTEGER NOT NULL DEFAULT 0;

-- A dead letter is announced exactly once; NULL on a dead row means the alert is still owed.
ALTER TABLE outbox ADD COLUMN alerted_at TEXT;
