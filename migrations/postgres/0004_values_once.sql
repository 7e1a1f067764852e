-- Every value is stored once (see migrations/sqlite/0004_values_once.sql): a live version only
-- in `current`, a replaced or deleted one in `history`; the log keeps which key changed at which
-- revision and whether it was deleted; `counts` holds the live keys under each '/'-prefix.
CREATE TABLE history (
    key             BYTEA  NOT NULL,
    revision        BIGINT NOT NULL,
    create_revision BIGINT NOT NULL,
    version         BIGINT NOT NULL,
    lease           BIGINT NOT NULL,
    value           BYTEA  NOT NULL,
    PRIMARY KEY (key, revision)
);
INSERT INTO history (key, revision, create_revision, version, lease, value)
    SELECT l.key, l.revision, l.create_revision, l.version, l.lease, l.value FROM log l
    WHERE l.deleted = 0
      AND NOT EXISTS (SELECT 1 FROM current c WHERE c.key = l.key AND c.mod_revision = l.revision);

-- A new table rather than dropped columns: PostgreSQL would keep the dropped values' space.
CREATE TABLE changes (
    revision BIGINT   NOT NULL,
    sub      BIGINT   NOT NULL,
    key      BYTEA    NOT NULL,
    deleted  SMALLINT NOT NULL
);
INSERT INTO changes (revision, sub, key, deleted) SELECT revision, sub, key, deleted FROM log;
DROP TABLE log;
ALTER TABLE changes RENAME TO log;
ALTER TABLE log ADD CONSTRAINT log_pkey PRIMARY KEY (key, revision);
CREATE INDEX log_by_revision ON log (revision, sub);
CREATE INDEX log_tombstones ON log (revision, key) WHERE deleted = 1;

DROP INDEX current_by_key_mod;
CREATE INDEX current_by_mod ON current (mod_revision);

CREATE TABLE counts (
    prefix BYTEA  NOT NULL PRIMARY KEY,
    live   BIGINT NOT NULL
);
INSERT INTO meta (name, value) VALUES ('counts_ready', 0);
