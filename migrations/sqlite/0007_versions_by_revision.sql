-- A revision with one change, a put, has no `log` row: its version is the one in `current` with
-- that mod_revision, or in `history` with that revision (every version lives in one of them, see
-- 0004_values_once.sql). The log keeps every deletion and every change of a revision with more
-- than one, whose order within the revision only the log's `sub` records. A replay reads the
-- three in revision order, so `history` is indexed by revision as `current` is by mod_revision.
--
-- Why: a log row per put was written for every object, about 160 bytes of each 1 KiB object on
-- PostgreSQL, and said nothing the versions do not. Rows already in the log stay: a revision
-- the log lists is read from the log alone, as before.
CREATE INDEX history_by_revision ON history (revision);
