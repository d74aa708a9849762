-- Per-feed settings chosen in Discord (filters, formats, mentions, options) as one JSON object, and
-- what a post shows besides title and summary (byline, image). `link_key` is the article's link
-- normalised (bot.articles.link_key): the same article reached through several feeds of one
-- channel is posted there once.
ALTER TABLE feeds ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
ALTER TABLE articles ADD COLUMN author TEXT;
ALTER TABLE articles ADD COLUMN image_url TEXT;
ALTER TABLE articles ADD COLUMN link_key TEXT NOT NULL DEFAULT '';
CREATE INDEX articles_link_key ON articles(link_key);
CREATE INDEX articles_guid ON articles(guid);
-- 'done' or 'none' once an article's "From the archives" reply has been handled (NULL: not yet, or not wanted).
ALTER TABLE articles ADD COLUMN archive_state TEXT;
