-- Hiding a signature hides the account on that statement: a re-sign after withdrawing stays hidden
-- until an organizer unhides it. Signing looks up the account's hidden rows; this keeps that
-- lookup to the (few) hidden rows instead of every signature of the statement.
CREATE INDEX signatures_hidden ON signatures(statement_id, user_id) WHERE hidden_at IS NOT NULL;
