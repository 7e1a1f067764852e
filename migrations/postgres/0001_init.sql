-- The schema of etcdshim/migrations/sqlite/0001_init.sql, in PostgreSQL's types. Keys and values
-- are bytea, compared bytewise, so ranges come in etcd's order.
CREATE TABLE log (
    revision        BIGINT   NOT NULL,
    sub             BIGINT   NOT NULL,
    key             BYTEA    NOT NULL,
    deleted         SMALLINT NOT NULL,
    create_revision BIGINT   NOT NULL,
    version         BIGINT   NOT NULL,
    lease           BIGINT   NOT NULL,
    value           BYTEA    NOT NULL,
    PRIMARY KEY (key, revision)
);
CREATE INDEX log_by_revision ON log (revision, sub);

CREATE TABLE current (
    key             BYTEA  NOT NULL PRIMARY KEY,
    create_revision BIGINT NOT NULL,
    mod_revision    BIGINT NOT NULL,
    version         BIGINT NOT NULL,
    lease           BIGINT NOT NULL,
    value           BYTEA  NOT NULL
);
CREATE INDEX current_by_key_mod ON current (key, mod_revision);
CREATE INDEX current_by_lease ON current (lease) WHERE lease <> 0;

CREATE TABLE meta (
    name  TEXT   NOT NULL PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO meta (name, value) VALUES ('revision', 1), ('compacted', -1), ('compact_progress', 0);

CREATE TABLE leases (
    id         BIGINT NOT NULL PRIMARY KEY,
    ttl        BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX leases_by_expiry ON leases (expires_ms);
