-- 16.5's schema: one table, and the demo's one project.
CREATE TABLE projects (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  legacy_path TEXT NOT NULL
);
INSERT INTO projects (id, name, legacy_path) VALUES (1, 'Demo Project', 'demo-group/demo-project');
