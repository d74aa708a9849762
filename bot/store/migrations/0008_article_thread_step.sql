-- A text-channel post is a message plus a discussion thread, made in two Discord calls. The thread
-- step is recorded so that an interrupted one is recovered (found or made) like the post itself:
-- NULL: nothing to do (forum post, or thread recorded); 'wanted': to find or make; 'given_up':
-- Discord refused it (the admins were alerted; `/feed resume` wants it again).
ALTER TABLE articles ADD COLUMN thread_step TEXT;

-- Text posts recorded without a thread before this version lost their thread step: recover them.
UPDATE articles SET thread_step = 'wanted'
 WHERE status = 'posted' AND thread_id IS NULL AND message_id IS NOT NULL
   AND feed_id IN (SELECT id FROM feeds WHERE channel_kind = 'text');
