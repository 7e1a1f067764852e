-- Every value is stored once. A live key's version (with its value) lives only in `current`; a
-- version that a later change replaced or deleted moves to `history`; the log keeps only which
-- key changed at which revision, and whether the change was a deletion. Reads at the head touch
-- `current` alone; a read at a past revision finds a changed key's version there through the log.
CREATE TABLE history (
    key             BLOB    NOT NULL,
    revision        INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    version         INTEGER NOT NULL,
    lease           INTEGER NOT NULL,
    value           BLOB    NOT NULL,
    PRIMARY KEY (key, revision)
);
INSERT INTO history (key, revision, create_revision, version, lease, value)
    SELECT l.key, l.revision, l.create_revision, l.version, l.lease, l.value FROM log l
    WHERE l.deleted = 0
      AND NOT EXISTS (SELECT 1 FROM current c WHERE c.key = l.key AND c.mod_revision = l.revision);

-- Narrow rows, kept in key order: the changes of one key sit together.
CREATE TABLE changes (
    revision INTEGER NOT NULL,
    sub      INTEGER NOT NULL,
    key      BLOB    NOT NULL,
    deleted  INTEGER NOT NULL,
    PRIMARY KEY (key, revision)
) WITHOUT ROWID;
INSERT INTO changes (revision, sub, key, deleted) SELECT revision, sub, key, deleted FROM log;
DROP TABLE log;
ALTER TABLE changes RENAME TO log;
CREATE INDEX log_by_revision ON log (revision, sub);
CREATE INDEX log_tombstones ON log (revision, key) WHERE deleted = 1;

-- Counts at a past revision start from the head's count and look at the keys changed since,
-- which this index finds.
DROP INDEX current_by_key_mod;
CREATE INDEX current_by_mod ON current (mod_revision);

-- Live keys under each '/'-ending prefix of every key, kept by the sequencer in the transaction
-- of each write; the store rebuilds them from `current` while counts_ready is 0.
CREATE TABLE counts (
    prefix BLOB    NOT NULL PRIMARY KEY,
    live   INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (name, value) VALUES ('counts_ready', 0);
