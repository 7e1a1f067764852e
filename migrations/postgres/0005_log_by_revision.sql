-- The log keyed by its revisions (see migrations/sqlite/0005_log_by_revision.sql): its index by
-- (key, revision), a leaf at a random place per change and about a hundred bytes per object on
-- disk, gives way to one that holds the tombstones only.
--
-- An import before this migration wrote every key it copied with sub 0: where keys share a
-- revision and a sub, that revision's changes are numbered again, in their order.
UPDATE log SET sub = renumbered.sub
    FROM (SELECT ctid AS row,
                 ROW_NUMBER() OVER (PARTITION BY revision ORDER BY sub, key) - 1 AS sub
          FROM log
          WHERE revision IN (SELECT revision FROM log GROUP BY revision, sub HAVING COUNT(*) > 1)
         ) renumbered
    WHERE log.ctid = renumbered.row;
ALTER TABLE log DROP CONSTRAINT log_pkey;
ALTER TABLE log ADD CONSTRAINT log_pkey PRIMARY KEY (revision, sub);
DROP INDEX log_by_revision;
CREATE INDEX log_deleted_keys ON log (key, revision) WHERE deleted = 1;
