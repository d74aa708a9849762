-- `message_dirty` became a counter of changes not yet shown on the statement's message (an edit
-- refreshes the message, and the counter read before it is subtracted afterwards); its name says so now.
ALTER TABLE statements RENAME COLUMN message_dirty TO message_changes;
