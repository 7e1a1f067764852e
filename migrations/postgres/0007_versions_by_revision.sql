-- Versions by revision, for a replay of the revisions the log does not list (see
-- migrations/sqlite/0007_versions_by_revision.sql).
CREATE INDEX history_by_revision ON history (revision);
