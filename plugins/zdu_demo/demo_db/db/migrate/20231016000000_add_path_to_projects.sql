-- 16.6, regular migration: add the column 16.6 reads and writes. Additive: 16.5 keeps working.
ALTER TABLE projects ADD COLUMN path TEXT;
