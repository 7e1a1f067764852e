-- A change is identified by its revision and sub (see migrations/sqlite/0005_log_by_revision.sql).
-- InnoDB keeps the log clustered by (key, revision): it has no partial index to hold the
-- tombstones alone, so an index by key would cost as much as the clustering does now. An
-- import before this migration wrote every key it copied with sub 0: where keys share a
-- revision and a sub, that revision's changes are numbered again, in their order.
UPDATE log l
    JOIN (SELECT `key`, revision,
                 ROW_NUMBER() OVER (PARTITION BY revision ORDER BY sub, `key`) - 1 AS renumbered
          FROM log
          WHERE revision IN (SELECT revision FROM
                (SELECT revision FROM log GROUP BY revision, sub HAVING COUNT(*) > 1) shared)
         ) n ON l.`key` = n.`key` AND l.revision = n.revision
    SET l.sub = n.renumbered;
