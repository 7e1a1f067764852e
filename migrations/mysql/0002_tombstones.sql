-- Deletions by revision. A list pinned at revision R looks for keys deleted after R (alive at R,
-- gone from `current`) on every page; without an index that leads with `deleted`, that scans
-- every change since R (or every key of the range). MySQL has no partial indexes.
CREATE INDEX log_tombstones ON log (deleted, revision);
