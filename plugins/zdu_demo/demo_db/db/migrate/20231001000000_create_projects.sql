-- 16.5's schema: one table, and the demo's projects (the app shows the first; the others give the
-- background migration of 16.6 batches to work through).
CREATE TABLE projects (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  legacy_path TEXT NOT NULL
);
INSERT INTO projects (id, name, legacy_path) VALUES (1, 'Demo Project', 'demo-group/demo-project');
INSERT INTO projects (id, name, legacy_path)
WITH RECURSIVE numbers(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM numbers WHERE i < 100)
SELECT i, 'Project ' || i, 'demo-group/project-' || i FROM numbers;
