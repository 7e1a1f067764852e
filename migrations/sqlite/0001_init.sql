-- The MVCC history: one row per key change. A txn touching three keys writes three rows
-- with the same revision, ordered by sub. Deleted keys get a tombstone row (deleted = 1).
CREATE TABLE log (
    revision        INTEGER NOT NULL,
    sub             INTEGER NOT NULL,
    key             BLOB    NOT NULL,
    deleted         INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    version         INTEGER NOT NULL,
    lease           INTEGER NOT NULL,
    value           BLOB    NOT NULL,
    PRIMARY KEY (key, revision)
);
-- Changes after a revision: past-revision reads, watch replay and compaction walk this.
CREATE INDEX log_by_revision ON log (revision, sub);

-- The live keys at the newest revision: reads and counts at the head touch only this table.
CREATE TABLE current (
    key             BLOB    NOT NULL PRIMARY KEY,
    create_revision INTEGER NOT NULL,
    mod_revision    INTEGER NOT NULL,
    version         INTEGER NOT NULL,
    lease           INTEGER NOT NULL,
    value           BLOB    NOT NULL
);
-- Covers counts at a revision (key range plus mod_revision) without reading values.
CREATE INDEX current_by_key_mod ON current (key, mod_revision);
CREATE INDEX current_by_lease ON current (lease) WHERE lease <> 0;

-- Bookkeeping: the revision counter (etcd starts at 1), the compacted revision (-1: never),
-- how far compaction has physically removed history, and the cluster identity.
CREATE TABLE meta (
    name  TEXT    NOT NULL PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO meta (name, value) VALUES ('revision', 1), ('compacted', -1), ('compact_progress', 0);

-- Leases, with their expiry in milliseconds since the Unix epoch (time keeps counting while
-- the server is down).
CREATE TABLE leases (
    id         INTEGER NOT NULL PRIMARY KEY,
    ttl        INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE INDEX leases_by_expiry ON leases (expires_ms);
