-- The schema of etcdshim/migrations/sqlite/0001_init.sql, in MySQL/MariaDB types. Keys are
-- VARBINARY (compared bytewise, so ranges come in etcd's order; 3000 bytes keeps the
-- (key, revision) index within InnoDB's 3072-byte limit), values LONGBLOB.
CREATE TABLE log (
    revision        BIGINT          NOT NULL,
    sub             BIGINT          NOT NULL,
    `key`           VARBINARY(3000) NOT NULL,
    deleted         SMALLINT        NOT NULL,
    create_revision BIGINT          NOT NULL,
    version         BIGINT          NOT NULL,
    lease           BIGINT          NOT NULL,
    value           LONGBLOB        NOT NULL,
    PRIMARY KEY (`key`, revision),
    INDEX log_by_revision (revision, sub)
) ENGINE = InnoDB;

CREATE TABLE current (
    `key`           VARBINARY(3000) NOT NULL PRIMARY KEY,
    create_revision BIGINT          NOT NULL,
    mod_revision    BIGINT          NOT NULL,
    version         BIGINT          NOT NULL,
    lease           BIGINT          NOT NULL,
    value           LONGBLOB        NOT NULL,
    INDEX current_by_key_mod (`key`, mod_revision),
    INDEX current_by_lease (lease)
) ENGINE = InnoDB;

CREATE TABLE meta (
    name  VARCHAR(64) NOT NULL PRIMARY KEY,
    value BIGINT      NOT NULL
) ENGINE = InnoDB;
INSERT INTO meta (name, value) VALUES ('revision', 1), ('compacted', -1), ('compact_progress', 0);

CREATE TABLE leases (
    id         BIGINT NOT NULL PRIMARY KEY,
    ttl        BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    INDEX leases_by_expiry (expires_ms)
) ENGINE = InnoDB;
