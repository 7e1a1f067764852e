-- The log keyed by its revisions. Under (key, revision) every change wrote a leaf at a random
-- place in the key order, beside `current`'s and `history`'s: one of four B-tree pages a random
-- update dirties, each a page the commit writes to the WAL. Keyed by (revision, sub) the log is
-- appended to, and its one index by key holds the tombstones only: a key's latest change at a
-- past revision is its latest deletion or its latest version in `history` (see
-- `latest_change` in src/backend/sql/statements.rs).
--
-- An import before this migration wrote every key it copied with sub 0, so keys an etcd
-- transaction wrote at one revision share (revision, sub): the changes of such a revision are
-- numbered again, in their order (sub, then key).
CREATE TABLE changes (
    revision INTEGER NOT NULL,
    sub      INTEGER NOT NULL,
    key      BLOB    NOT NULL,
    deleted  INTEGER NOT NULL,
    PRIMARY KEY (revision, sub)
) WITHOUT ROWID;
INSERT INTO changes (revision, sub, key, deleted)
    SELECT revision, ROW_NUMBER() OVER (PARTITION BY revision ORDER BY sub, key) - 1, key, deleted
    FROM log;
DROP TABLE log;
ALTER TABLE changes RENAME TO log;
CREATE INDEX log_tombstones ON log (revision, key) WHERE deleted = 1;
CREATE INDEX log_deleted_keys ON log (key, revision) WHERE deleted = 1;
