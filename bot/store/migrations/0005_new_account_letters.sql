-- Letters submitted from accounts younger than letters.new_account_days: each server caps how many
-- of them may wait for review at once (letters.new_account_queue_cap), so a wave of fresh accounts
-- cannot bury the queue. Counted in the submitting transaction; the index keeps the count small.
ALTER TABLE contributions ADD COLUMN new_account INTEGER NOT NULL DEFAULT 0;
CREATE INDEX contributions_waiting_new_accounts ON contributions(guild_id)
    WHERE state = 'submitted' AND new_account = 1;
