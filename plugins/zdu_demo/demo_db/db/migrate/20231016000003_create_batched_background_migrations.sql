-- 16.6, regular migration: GitLab's tables of batched background migrations (the columns the demo
-- uses, with GitLab's names and status codes: 0 paused, 1 active, 3 finished, 4 failed, 5 finalizing,
-- 6 finalized; jobs: 0 pending, 1 running, 2 failed, 3 succeeded). A post-deployment migration queues
-- one; a worker runs it batch by batch (Sidekiq in GitLab, `python -m zdu_demo.demo_worker` here).
-- Additive: 16.5 never reads them.
CREATE TABLE batched_background_migrations (
  id INTEGER PRIMARY KEY,
  job_class_name TEXT NOT NULL,
  table_name TEXT NOT NULL,
  column_name TEXT NOT NULL,
  job_arguments TEXT NOT NULL DEFAULT '[]',
  min_value BIGINT NOT NULL DEFAULT 1,
  max_value BIGINT NOT NULL,
  batch_size INTEGER NOT NULL,
  pause_ms INTEGER NOT NULL DEFAULT 100,
  status SMALLINT NOT NULL DEFAULT 0,
  queued_migration_version TEXT,
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  started_at TIMESTAMP,
  finished_at TIMESTAMP
);
CREATE TABLE batched_background_migration_jobs (
  id INTEGER PRIMARY KEY,
  batched_background_migration_id BIGINT NOT NULL REFERENCES batched_background_migrations (id),
  min_value BIGINT NOT NULL,
  max_value BIGINT NOT NULL,
  status SMALLINT NOT NULL DEFAULT 0,
  attempts SMALLINT NOT NULL DEFAULT 0,
  started_at TIMESTAMP,
  finished_at TIMESTAMP
);
