-- Deletions by revision. A list pinned at revision R looks for keys deleted after R (alive at R,
-- gone from `current`) on every page; through log_by_revision that scans every change since R,
-- which under heavy writes is most of the page's cost. Tombstones are few.
CREATE INDEX log_tombstones ON log (revision, key) WHERE deleted = 1;
