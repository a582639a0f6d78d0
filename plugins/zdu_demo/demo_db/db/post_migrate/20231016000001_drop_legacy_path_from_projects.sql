-- 16.6, post-deployment migration: drop the column only 16.5 reads. Run while 16.5 serves, it breaks
-- 16.5's pages; run once only 16.6 serves, nobody notices.
ALTER TABLE projects DROP COLUMN legacy_path;
