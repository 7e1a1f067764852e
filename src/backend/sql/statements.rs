//! Every statement of the SQL backend, written once as a template and rendered for one
//! database by its [`Dialect`]. Statements are rendered when the backend opens, so each is a
//! prepared statement the driver caches per connection.

use super::dialect::Dialect;
use super::multirow::{MultiRow, list, placeholders};
use super::template::Sql;
use crate::backend::{KeyEnd, KeyRange};

/// The parameters of the range statements, in the order [`RangeArgs`] passes them.
const RANGE_NAMES: [&str; 7] = ["key", "end", "rev", "limit", "from", "to", "prev"];

/// The columns of a live key, in the order rows are decoded.
const KV_COLUMNS: &str = "create_revision, mod_revision, version, lease, value";

/// The reads of one range shape (single key, `[key, end)`, or `>= key`).
pub struct RangeStatements {
    /// The keys alive at :rev in key order, up to :limit of them, in one statement: those
    /// `current` lists (at their version as of :rev), then those deleted since :rev and not
    /// alive now. The caller merges the two parts.
    pub page: Sql,
    /// How many keys are alive at :rev, from an index count of the range at the head.
    pub count: Sql,
    /// The same from the live-key counter of the prefix :key (for `[P, P + 1)` ranges only).
    pub prefix_count: Sql,
    /// The changes with revisions in `[:from, :to]`, in revision order, up to :limit, each with
    /// the key's previous live version when :prev is set.
    pub history: Sql,
}

/// `column` within the range described by :key and :end.
fn key_condition(column: &str, end: &KeyEnd) -> String {
    match end {
        KeyEnd::Single => format!("{column} = :key"),
        KeyEnd::Before(_) => format!("{column} >= :key AND {column} < :end"),
        KeyEnd::Unbounded => format!("{column} >= :key"),
    }
}

/// The revision of `key`'s latest change within `bound` (`<= :rev`, say), looked up only when
/// `guard` holds (a database would otherwise evaluate it for every row scanned); 0 if it has
/// none. Its version is in `history` unless that change was a deletion.
///
/// It is the later of the key's latest deletion (a tombstone in `log`, found through
/// `log_deleted_keys`) and its latest replaced version in `history`: every put within the
/// bound but the live version was replaced, and the live version is past the bound wherever
/// this is asked. Compaction removes every `history` version that a change at or below the
/// compacted revision superseded, and the `log` rows below it (see `compact_log`); a version it
/// removed was replaced at or below the compacted revision, so it is not the latest change
/// within a bound at or above it, and a deletion below it leaves nothing older in `history`
/// either.
fn latest_change<D: Dialect>(key: &str, guard: &str, bound: &str) -> String {
    let newest = |table: &str, only: &str| {
        format!(
            "COALESCE((SELECT MAX(m.revision) FROM {table} WHERE {guard} AND m.@key = {key} \
             {only}AND m.revision {bound}), 0)"
        )
    };
    format!(
        "{}({}, {})",
        D::GREATEST,
        newest(
            &D::table_via("log", "m", "log_deleted_keys"),
            "AND m.deleted = 1 "
        ),
        newest("history m", "")
    )
}

/// `(key, revision)` of every change in `(:from, :to]`: the log's rows, and the versions of the
/// revisions it does not list (a version of a listed revision is there twice, which no caller
/// minds).
const WINDOW_CHANGES: &str = "(SELECT n.@key AS @key, n.revision FROM log n \
      WHERE n.revision > :from AND n.revision <= :to \
    UNION ALL SELECT y.@key, y.mod_revision FROM current y \
      WHERE y.mod_revision > :from AND y.mod_revision <= :to \
    UNION ALL SELECT w.@key, w.revision FROM history w \
      WHERE w.revision > :from AND w.revision <= :to)";

/// The largest revision, as an upper bound that makes a scan by revision a bounded range.
const MAX_REVISION: i64 = i64::MAX;

impl RangeStatements {
    fn new<D: Dialect>(end: &KeyEnd, counted_prefix_min_keys: i64) -> RangeStatements {
        let render = |template: &str| Sql::render(D::PLACEHOLDERS, D::KEY, template, &RANGE_NAMES);
        let c_keys = key_condition("c.@key", end);
        let latest_c = latest_change::<D>("c.@key", "c.mod_revision > :rev", "<= :rev");
        let latest_g = latest_change::<D>("g.@key", "TRUE", "<= :rev");
        // Tombstones after :rev: for a range, found through the index of tombstones by revision
        // (few, even while many keys change); for one key, through the key's own history.
        let ranged = !matches!(end, KeyEnd::Single);
        let via = |table: &str, alias: &str, index: &str| match ranged {
            true => D::table_via(table, alias, index),
            false => format!("{table} {alias}"),
        };
        let tombstones = via("log", "d", "log_tombstones");
        let changed_current = via("current", "c", "current_by_mod");
        // A statement PostgreSQL plans for its arguments on every call (a count; at 5M objects a
        // page too, before and after VACUUM) has the planner read an index's first or last
        // entry wherever a key bound lies outside the statistics' histogram, stepping over every
        // entry of a removed row that no VACUUM has taken out yet:
        // at 5M objects before VACUUM, the `log` rows compaction had deleted made a list's first
        // page 15 to 38 ms (a middle page 3 to 5) and a count's plan 2.7 to 3.9 ms. So a range's
        // bounds on `log` (whose tombstones are found by revision anyway) and on a count's joins
        // only filter; a page's join keeps them as bounds (`Dialect::BOUNDED_JOINS`).
        let in_range = |column: &str| key_condition(column, end);
        let filtering = |column: &str| match ranged {
            true => key_condition(&D::filter_only(column), end),
            false => key_condition(column, end),
        };
        // The range's bounds repeated on a joined table's `column` where the dialect asks for
        // them (`Dialect::BOUNDED_JOINS`), written by `bound`; empty elsewhere.
        let join_bounds = |column: &str, bound: &dyn Fn(&str) -> String| match D::BOUNDED_JOINS {
            true => format!("AND {}", bound(column)),
            false => String::new(),
        };
        // Keys deleted after :rev and not alive now: the only keys alive at :rev that `current`
        // does not list. The join's bounds on `history` are written by `h_bound`.
        let deleted_since = |h_bound: &dyn Fn(&str) -> String| {
            let h_bounds = join_bounds("h.@key", h_bound);
            format!(
                "FROM (SELECT DISTINCT d.@key AS @key FROM {tombstones} \
                       WHERE d.revision > :rev AND d.revision <= {MAX_REVISION} \
                       AND d.deleted = 1 AND {}) g \
                 JOIN history h ON h.@key = g.@key {h_bounds} AND h.revision = {latest_g} \
                 WHERE NOT EXISTS (SELECT 1 FROM current c WHERE c.@key = g.@key)",
                filtering("d.@key")
            )
        };
        let deleted_since_counted = deleted_since(&filtering);
        let deleted_since = deleted_since(&in_range);
        let pick = |column: &str, history_column: &str| {
            format!("CASE WHEN c.mod_revision <= :rev THEN c.{column} ELSE h.{history_column} END")
        };
        // Counts at :rev start from the head's and correct for the keys changed since: less the
        // live keys that were not alive at :rev, plus the deleted ones that were.
        let corrections = format!(
            " - (SELECT COUNT(*) FROM {changed_current} \
                 WHERE c.mod_revision > :rev AND c.mod_revision <= {MAX_REVISION} AND {} \
                 AND NOT EXISTS (SELECT 1 FROM history h WHERE h.@key = c.@key \
                   AND h.revision = {latest_c})) \
             + (SELECT COUNT(*) {deleted_since_counted})",
            filtering("c.@key")
        );
        // The changes in [:from, :to] as (revision, sub, key, deleted), each part in revision
        // order and cut at :limit: the log's rows (on SQLite and PostgreSQL by its primary key,
        // (revision, sub)), then the versions of the revisions it does not list, each such
        // revision's only change, a put (see migrations/sqlite/0007_versions_by_revision.sql).
        let flag = |value: &str| format!("CAST({value} AS {})", D::INTEGER_CAST);
        let unlisted = |revision: &str| {
            format!("NOT EXISTS (SELECT 1 FROM log n WHERE n.revision = {revision})")
        };
        let versions = |table: &str, alias: &str, index: &str, revision: &str| {
            format!(
                "SELECT * FROM (SELECT {alias}.{revision} AS revision, 0 AS sub, \
                   {alias}.@key AS @key, {} AS deleted FROM {} \
                 WHERE {alias}.{revision} >= :from AND {alias}.{revision} <= :to AND {} \
                 AND {} ORDER BY {alias}.{revision} LIMIT :limit) {table}_versions",
                flag("0"),
                via(table, alias, index),
                filtering(&format!("{alias}.@key")),
                unlisted(&format!("{alias}.{revision}")),
            )
        };
        let changes = format!(
            "(SELECT * FROM (SELECT x.revision, x.sub, x.@key AS @key, {} AS deleted FROM log x \
                WHERE x.revision >= :from AND x.revision <= :to AND {} \
                ORDER BY x.revision, x.sub LIMIT :limit) logged \
              UNION ALL {} UNION ALL {}) l",
            flag("x.deleted"),
            filtering("x.@key"),
            versions("current", "y", "current_by_mod", "mod_revision"),
            versions("history", "w", "history_by_revision", "revision"),
        );
        let with_prev = D::boolean(":prev");
        let previous = latest_change::<D>("l.@key", &with_prev, "< l.revision");
        // The version at :rev of a key changed since, from `history` under `alias`.
        let version_at_rev = |alias: &str| {
            let bounds = join_bounds(&format!("{alias}.@key"), &in_range);
            format!(
                "c.mod_revision > :rev AND {alias}.@key = c.@key {bounds} \
                 AND {alias}.revision = {latest_c}"
            )
        };
        let history_at_rev = D::page_history_join(&version_at_rev);
        RangeStatements {
            page: render(&format!(
                "SELECT * FROM (SELECT c.@key AS @key, {} AS create_revision, \
                   {} AS mod_revision, {} AS version, {} AS lease, {} AS value FROM current c \
                 {history_at_rev} \
                 WHERE {c_keys} AND (c.mod_revision <= :rev OR h.revision IS NOT NULL) \
                 ORDER BY c.@key LIMIT :limit) live \
                 UNION ALL \
                 SELECT * FROM (SELECT h.@key AS @key, h.create_revision, h.revision, h.version, \
                   h.lease, h.value {deleted_since} ORDER BY h.@key LIMIT :limit) gone",
                pick("create_revision", "create_revision"),
                pick("mod_revision", "revision"),
                pick("version", "version"),
                pick("lease", "lease"),
                pick("value", "value"),
            )),
            count: render(&format!(
                "SELECT (SELECT COUNT(*) FROM current c WHERE {c_keys}){corrections}"
            )),
            // A prefix without a counter row holds fewer keys than the threshold (the writer
            // makes the row as it reaches it), so its index count reads fewer than that many
            // entries; the limit states that bound in the statement.
            prefix_count: render(&format!(
                "SELECT COALESCE((SELECT live FROM counts WHERE prefix = :key), \
                   (SELECT COUNT(*) FROM (SELECT 1 FROM current c WHERE {c_keys} \
                     LIMIT {counted_prefix_min_keys}) x)){corrections}"
            )),
            history: render(&format!(
                "SELECT l.revision, l.@key, l.deleted, \
                   COALESCE(c.create_revision, h.create_revision), COALESCE(c.version, h.version), \
                   COALESCE(c.lease, h.lease), COALESCE(c.value, h.value), \
                   p.create_revision, p.revision, p.version, p.lease, p.value \
                 FROM {changes} \
                 LEFT JOIN current c ON l.deleted = 0 AND c.@key = l.@key \
                   AND c.mod_revision = l.revision \
                 LEFT JOIN history h ON l.deleted = 0 AND h.@key = l.@key \
                   AND h.revision = l.revision \
                 LEFT JOIN history p ON {with_prev} AND p.@key = l.@key \
                   AND p.revision = {previous} \
                 ORDER BY l.revision, l.sub LIMIT :limit"
            )),
        }
    }
}

/// The arguments of a range statement; each statement binds the ones it names.
#[derive(Clone, Copy, Debug, Default)]
pub struct RangeArgs<'a> {
    pub key: &'a [u8],
    pub end: &'a [u8],
    pub rev: i64,
    pub limit: i64,
    pub from: i64,
    pub to: i64,
    pub prev: bool,
}

impl<'a> RangeArgs<'a> {
    /// The range (its end as bytes; empty for the single-key and from-key shapes, which do not
    /// bind it).
    pub fn new(range: KeyRange<'a>) -> RangeArgs<'a> {
        RangeArgs {
            key: range.key,
            end: match range.end {
                KeyEnd::Before(end) => end,
                KeyEnd::Single | KeyEnd::Unbounded => &[],
            },
            ..RangeArgs::default()
        }
    }

    /// In the order of [`RANGE_NAMES`].
    pub fn values(&self) -> [super::driver::Value<'a>; 7] {
        use super::driver::Value::{Bool, Bytes, Int};
        [
            Bytes(self.key),
            Bytes(self.end),
            Int(self.rev),
            Int(self.limit),
            Int(self.from),
            Int(self.to),
            Bool(self.prev),
        ]
    }
}

/// No limit, as a number every database takes in `LIMIT`.
pub fn limit_or_all(limit: i64) -> i64 {
    if limit > 0 { limit } else { i64::MAX }
}

pub struct Statements {
    single: RangeStatements,
    before: RangeStatements,
    unbounded: RangeStatements,
    /// The live rows of N keys.
    pub current_of_keys: MultiRow,
    /// Appends N log rows: deletions, and the changes of revisions with more than one (see
    /// `WriteBuffer::listed_rows`). Two changes of one key at one revision (a from-key delete
    /// escapes etcd's duplicate-key check) arrive merged, but an earlier flush of the same batch
    /// may have written the first of them: the later one comes with the first one's `sub` and
    /// replaces it.
    pub insert_log: MultiRow,
    /// Keeps N replaced or deleted versions.
    pub insert_history: MultiRow,
    /// Writes N live versions; where the dialect keeps [`Dialect::ROWID_RANGES`], each row
    /// starts with the rowid a new key gets (an existing key's row keeps its own).
    pub upsert_current: MultiRow,
    pub delete_current: MultiRow,
    /// :from, :to: the last rowid of `current` in that range (SQLite's rowid ranges).
    pub last_rowid: Sql,
    /// Adds N (prefix, change) pairs to the live-key counters (a missing row is inserted with
    /// the change as its count).
    pub add_counts: MultiRow,
    /// Which of N prefixes have a counter row.
    pub counted_of: MultiRow,
    /// The live keys in N ranges `(ordinal, start, end, limit)`, each counted up to its limit:
    /// rows `(ordinal, count)`.
    pub live_up_to: MultiRow,
    /// The keys a prefix holds before it gets a counter row.
    pub counted_prefix_min_keys: i64,
    /// :key, :limit: the live keys after :key, in order (to rebuild the counters).
    pub keys_after: Sql,
    pub clear_counts: Sql,
    /// Whether the counters are complete (0 while they must be rebuilt).
    pub counts_ready: Sql,
    pub set_counts_ready: Sql,
    /// :lease
    pub live_of_lease: Sql,
    /// :lease
    pub keys_of_lease: Sql,
    /// :id
    pub lease: Sql,
    /// :id, :ttl, :expires
    pub save_lease: Sql,
    /// :id
    pub delete_lease: Sql,
    pub leases: Sql,
    /// :now, :limit
    pub expired_leases: Sql,
    /// Every (name, value) of the bookkeeping.
    pub meta: Sql,
    /// :cluster, :member: the identity, unless one is stored already.
    pub add_identity: Sql,
    /// The revision, locked until the transaction ends. One row only: two rows locked by one
    /// statement may be locked in different orders by different transactions, and deadlock.
    /// Writers change the compacted revision only under this lock, so reading it afterwards is
    /// consistent.
    pub lock_revision: Sql,
    pub compacted: Sql,
    /// The (name, value) of the revision and the compacted revision.
    pub latest_revisions: Sql,
    /// N keys: the revision, the compacted revision, then a key's live version (columns 2..=7:
    /// the key and its columns), a row for each of the N keys that is live, or one row with
    /// NULLs when none is. One statement, so one snapshot.
    pub keys_at_latest: MultiRow,
    /// :rev, :compacted
    pub save_meta: Sql,
    /// :name
    pub meta_value: Sql,
    /// :name, :value
    pub save_meta_value: Sql,
    /// :from, :to: deletes the versions that changes in (:from, :to] replaced, all at or below
    /// the compacted revision, where the dialect does so in one statement
    /// ([`Dialect::delete_superseded`]). The changes are the log's rows and the versions of
    /// those revisions, in `current` by mod_revision and in `history` by revision.
    pub compact_history: Option<Sql>,
    /// :from, :to: `(key, revision)` of those versions, by a plain read, where
    /// `compact_history` is `None` (MySQL); then `delete_versions` deletes them.
    pub superseded: Sql,
    /// Deletes N versions from `history`, each named by `(key, revision)`.
    pub delete_versions: MultiRow,
    /// :from, :to: the changes in [:from, :to), after `superseded` named their versions. The log
    /// trails by one revision: a watch may start at the compacted revision and must see its
    /// changes.
    pub compact_log: Sql,
    /// :from, :to
    pub save_compact_progress: Sql,
    pub compact_progress: Sql,
    pub db_size: Sql,
    pub defragment: Sql,
    /// Empty every table of the key space, then reset the bookkeeping.
    pub discard: Vec<Sql>,
}

impl Statements {
    pub fn new<D: Dialect>(counted_prefix_min_keys: i64) -> Statements {
        let render =
            |template: &str, names: &[&str]| Sql::render(D::PLACEHOLDERS, D::KEY, template, names);
        let key = D::KEY;
        // `build` gets the placeholders of N rows: `(?, ?), (?, ?)`, or for one column `?, ?`.
        let multirow = |per_row: usize, build: &dyn Fn(String) -> String| {
            MultiRow::new(|rows| {
                Sql::numbered(D::PLACEHOLDERS, rows * per_row, |p| {
                    build(match per_row {
                        1 => list(1, rows, p),
                        _ => placeholders(rows, per_row, p),
                    })
                })
            })
        };
        let compact = |template: &str| render(template, &["from", "to"]);
        Statements {
            single: RangeStatements::new::<D>(&KeyEnd::Single, counted_prefix_min_keys),
            before: RangeStatements::new::<D>(
                &KeyEnd::Before(Default::default()),
                counted_prefix_min_keys,
            ),
            unbounded: RangeStatements::new::<D>(&KeyEnd::Unbounded, counted_prefix_min_keys),
            current_of_keys: multirow(1, &|keys| {
                format!("SELECT {key}, {KV_COLUMNS} FROM current WHERE {key} IN ({keys})")
            }),
            insert_log: multirow(4, &|rows| {
                format!(
                    "INSERT INTO log (revision, sub, {key}, deleted) VALUES {rows} {}",
                    D::on_conflict("revision, sub", &[key, "deleted"])
                )
            }),
            insert_history: multirow(6, &|rows| {
                format!(
                    "INSERT INTO history ({key}, create_revision, revision, version, lease, value) \
                     VALUES {rows} {}",
                    D::on_conflict(&format!("{key}, revision"), &[])
                )
            }),
            add_counts: multirow(2, &|rows| {
                format!(
                    "INSERT INTO counts (prefix, live) VALUES {rows} {}",
                    D::on_conflict_add("counts", "prefix", "live")
                )
            }),
            counted_of: multirow(1, &|rows| {
                format!("SELECT prefix FROM counts WHERE prefix IN ({rows})")
            }),
            live_up_to: MultiRow::new(|rows| {
                Sql::numbered(D::PLACEHOLDERS, rows * 4, |p| {
                    (0..rows)
                        .map(|row| {
                            let [ordinal, start, end, limit] =
                                [1, 2, 3, 4].map(|column| p(row * 4 + column));
                            format!(
                                "SELECT CAST({ordinal} AS {cast}) AS ordinal, \
                                   (SELECT COUNT(*) FROM (SELECT 1 FROM current c \
                                     WHERE c.{key} >= {start} AND c.{key} < {end} \
                                     LIMIT {limit}) x) AS live",
                                cast = D::INTEGER_CAST,
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(" UNION ALL ")
                })
            }),
            counted_prefix_min_keys,
            keys_after: render(
                "SELECT @key FROM current WHERE @key > :key ORDER BY @key LIMIT :limit",
                &["key", "limit"],
            ),
            clear_counts: render("DELETE FROM counts", &[]),
            counts_ready: render("SELECT value FROM meta WHERE name = 'counts_ready'", &[]),
            set_counts_ready: render("UPDATE meta SET value = 1 WHERE name = 'counts_ready'", &[]),
            upsert_current: multirow(if D::ROWID_RANGES { 7 } else { 6 }, &|rows| {
                let rowid = if D::ROWID_RANGES { "rowid, " } else { "" };
                format!(
                    "INSERT INTO current ({rowid}{key}, {KV_COLUMNS}) VALUES {rows} {}",
                    D::on_conflict(
                        key,
                        &[
                            "create_revision",
                            "mod_revision",
                            "version",
                            "lease",
                            "value"
                        ]
                    )
                )
            }),
            delete_current: multirow(1, &|keys| {
                format!("DELETE FROM current WHERE {key} IN ({keys})")
            }),
            last_rowid: render(
                "SELECT rowid FROM current WHERE rowid >= :from AND rowid <= :to \
                 ORDER BY rowid DESC LIMIT 1",
                &["from", "to"],
            ),
            live_of_lease: render(
                &format!(
                    "SELECT @key, {KV_COLUMNS} FROM current WHERE lease = :lease ORDER BY @key"
                ),
                &["lease"],
            ),
            keys_of_lease: render(
                "SELECT @key FROM current WHERE lease = :lease ORDER BY @key",
                &["lease"],
            ),
            lease: render(
                "SELECT id, ttl, expires_ms FROM leases WHERE id = :id",
                &["id"],
            ),
            save_lease: render(
                &format!(
                    "INSERT INTO leases (id, ttl, expires_ms) VALUES (:id, :ttl, :expires) {}",
                    D::on_conflict("id", &["ttl", "expires_ms"])
                ),
                &["id", "ttl", "expires"],
            ),
            delete_lease: render("DELETE FROM leases WHERE id = :id", &["id"]),
            leases: render("SELECT id FROM leases ORDER BY id", &[]),
            expired_leases: render(
                "SELECT id, ttl, expires_ms FROM leases WHERE expires_ms <= :now \
                 ORDER BY expires_ms LIMIT :limit",
                &["now", "limit"],
            ),
            meta: render("SELECT name, value FROM meta", &[]),
            add_identity: render(
                &format!(
                    "INSERT INTO meta (name, value) VALUES ('cluster_id', :cluster), \
                     ('member_id', :member) {}",
                    D::on_conflict("name", &[])
                ),
                &["cluster", "member"],
            ),
            lock_revision: render(
                "SELECT value FROM meta WHERE name = 'revision' FOR UPDATE",
                &[],
            ),
            compacted: render("SELECT value FROM meta WHERE name = 'compacted'", &[]),
            latest_revisions: render(
                "SELECT name, value FROM meta WHERE name IN ('revision', 'compacted')",
                &[],
            ),
            keys_at_latest: multirow(1, &|keys| {
                format!(
                    "SELECT r.value, k.value, c.{key}, c.create_revision, c.mod_revision, \
                     c.version, c.lease, c.value FROM meta r JOIN meta k ON k.name = 'compacted' \
                     LEFT JOIN current c ON c.{key} IN ({keys}) WHERE r.name = 'revision'"
                )
            }),
            save_meta: render(
                "UPDATE meta SET value = CASE name WHEN 'revision' THEN :rev ELSE :compacted END \
                 WHERE name IN ('revision', 'compacted')",
                &["rev", "compacted"],
            ),
            meta_value: render("SELECT value FROM meta WHERE name = :name", &["name"]),
            save_meta_value: render(
                &format!(
                    "INSERT INTO meta (name, value) VALUES (:name, :value) {}",
                    D::on_conflict("name", &["value"])
                ),
                &["name", "value"],
            ),
            compact_history: D::delete_superseded(WINDOW_CHANGES)
                .map(|statement| compact(&statement)),
            superseded: compact(&format!(
                "SELECT DISTINCT o.@key, o.revision FROM {WINDOW_CHANGES} n \
                 JOIN history o ON o.@key = n.@key AND o.revision < n.revision"
            )),
            delete_versions: MultiRow::new(|rows| {
                Sql::numbered(D::PLACEHOLDERS, rows * 2, |p| {
                    let named = (0..rows)
                        .map(|row| {
                            format!(
                                "({key} = {} AND revision = {})",
                                p(row * 2 + 1),
                                p(row * 2 + 2)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(" OR ");
                    format!("DELETE FROM history WHERE {named}")
                })
            }),
            compact_log: compact("DELETE FROM log WHERE revision >= :from AND revision < :to"),
            save_compact_progress: compact(&format!(
                "UPDATE meta SET value = {}(value, :to) WHERE name = 'compact_progress'",
                D::GREATEST
            )),
            compact_progress: render(
                "SELECT value FROM meta WHERE name = 'compact_progress'",
                &[],
            ),
            db_size: render(D::DB_SIZE, &[]),
            defragment: render(D::DEFRAGMENT, &[]),
            discard: [
                "DELETE FROM current",
                "DELETE FROM log",
                "DELETE FROM history",
                "DELETE FROM leases",
                "DELETE FROM counts",
                "UPDATE meta SET value = CASE name WHEN 'revision' THEN 1 WHEN 'compacted' THEN -1 \
                 WHEN 'compact_progress' THEN 0 ELSE 1 END \
                 WHERE name IN ('revision', 'compacted', 'compact_progress', 'counts_ready')",
            ]
            .iter()
            .map(|statement| render(statement, &[]))
            .collect(),
        }
    }

    pub fn range(&self, end: &KeyEnd) -> &RangeStatements {
        match end {
            KeyEnd::Single => &self.single,
            KeyEnd::Before(_) => &self.before,
            KeyEnd::Unbounded => &self.unbounded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::postgres::Postgres;

    /// A range's count on PostgreSQL names no key bound that an index could take, nor does a
    /// page on the tombstones: the planner, which plans them on every call, would read that
    /// index's end (see `filtering`).
    #[test]
    fn postgres_range_statements_bound_keys_only_as_filters() {
        for end in [
            KeyEnd::Before(bytes::Bytes::from_static(b"b")),
            KeyEnd::Unbounded,
        ] {
            let statements = RangeStatements::new::<Postgres>(&end, 1000);
            for count in [&statements.count, &statements.prefix_count] {
                let text = &count.text;
                let corrections = &text[text.find(" - (SELECT COUNT(*)").expect("corrections")..];
                for alias in ["c", "d", "h"] {
                    assert!(
                        !corrections.contains(&format!(" {alias}.key >= ")),
                        "{alias}'s key bound can lead an index scan: {corrections}"
                    );
                    assert!(
                        corrections.contains(&format!("({alias}.key || ''::bytea) >= ")),
                        "{alias}'s key bound is missing: {corrections}"
                    );
                }
            }
            // A page's tombstones are found by revision too; its join keeps the bounds.
            let page = &statements.page.text;
            assert!(!page.contains(" d.key >= ") && page.contains("(d.key || ''::bytea) >= "));
            assert!(page.contains(" h.key >= "));
        }
    }
}
