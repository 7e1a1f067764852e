-- Every value is stored once (see migrations/sqlite/0004_values_once.sql): a live version only
-- in `current`, a replaced or deleted one in `history`; the log keeps which key changed at which
-- revision and whether it was deleted; `counts` holds the live keys under each '/'-prefix.
CREATE TABLE history (
    `key`           VARBINARY(3000) NOT NULL,
    revision        BIGINT          NOT NULL,
    create_revision BIGINT          NOT NULL,
    version         BIGINT          NOT NULL,
    lease           BIGINT          NOT NULL,
    value           LONGBLOB        NOT NULL,
    PRIMARY KEY (`key`, revision)
) ENGINE = InnoDB;
INSERT INTO history (`key`, revision, create_revision, version, lease, value)
    SELECT l.`key`, l.revision, l.create_revision, l.version, l.lease, l.value FROM log l
    WHERE l.deleted = 0
      AND NOT EXISTS (SELECT 1 FROM current c WHERE c.`key` = l.`key` AND c.mod_revision = l.revision);

-- InnoDB rebuilds the table without the columns.
ALTER TABLE log DROP COLUMN create_revision, DROP COLUMN version, DROP COLUMN lease, DROP COLUMN value;

ALTER TABLE current DROP INDEX current_by_key_mod, ADD INDEX current_by_mod (mod_revision);

CREATE TABLE counts (
    prefix VARBINARY(3000) NOT NULL PRIMARY KEY,
    live   BIGINT          NOT NULL
) ENGINE = InnoDB;
INSERT INTO meta (name, value) VALUES ('counts_ready', 0);
