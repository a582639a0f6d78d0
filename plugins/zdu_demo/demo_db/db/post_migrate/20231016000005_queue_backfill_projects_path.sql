-- 16.6, post-deployment migration: queue the batched background migration that fills projects.path
-- from the name for every project (16.6 fills it only for the project it shows), 10 projects a batch,
-- 0.2 s apart: the demo's worker takes a few seconds, as GitLab's Sidekiq takes minutes to hours.
-- GitLab requires it finished before the next upgrade: zdu's preflight refuses one until then.
INSERT INTO batched_background_migrations
  (id, job_class_name, table_name, column_name, job_arguments, min_value, max_value, batch_size,
   pause_ms, status, queued_migration_version)
SELECT
  COALESCE((SELECT max(id) FROM batched_background_migrations), 0) + 1,
  'BackfillProjectsPath', 'projects', 'id', '[]', COALESCE(min(id), 1), COALESCE(max(id), 1), 10,
  200, 1, '20231016000005'
FROM projects;
