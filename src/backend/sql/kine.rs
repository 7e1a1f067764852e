//! Reading a Kine database, for `etcdshim import kine`: its table (`kine` unless named
//! otherwise) as k3s-io/kine's `pkg/drivers/generic` and `pkg/logstructured/sqllog` lay it out.
//!
//! Kine keeps one row per change, its id the revision: `name` (the key), `created` and
//! `deleted` flags, `create_revision` (0 on the creating row, which is its own),
//! `prev_revision` (the key's previous row), `lease` (Kine's leases are their TTL in seconds),
//! `value`. A key's latest row says whether it is alive. Kine's own bookkeeping rides in the
//! same table: the row named `compact_rev_key` holds the compacted revision in its
//! `prev_revision`, and rows named `gap-N` fill revisions that were lost. Kine keeps no version:
//! the rows of the key's current life that compaction left are counted instead.

use async_trait::async_trait;
use sqlx::Pool;

use super::dialect::Dialect;
use super::driver::{Driver as _, Value};
use super::session::single_int;
use super::template::Sql;
use crate::backend::{KineRow, KineRows};
use crate::error::{Error, Result};

pub struct KineSource<D: Dialect> {
    pool: Pool<D::Db>,
    revisions: Sql,
    live: Sql,
    page: Sql,
}

impl<D: Dialect> KineSource<D> {
    /// Reads `table` through `pool`; the table name may hold only letters, digits and `_`.
    pub fn new(pool: Pool<D::Db>, table: &str) -> Result<KineSource<D>> {
        if table.is_empty() || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::InvalidEndpoint(format!(
                "the Kine table name {table:?} may hold only letters, digits and '_'"
            )));
        }
        let (int, text) = (D::INTEGER_CAST, D::TEXT_CAST);
        let render = |template: String, names: &[&str]| {
            Sql::render(
                D::PLACEHOLDERS,
                D::KEY,
                &template.replace("{table}", table),
                names,
            )
        };
        Ok(KineSource {
            pool,
            revisions: render(
                format!(
                    "SELECT (SELECT CAST(COALESCE(MAX(id), 0) AS {int}) FROM {{table}}), \
                     (SELECT CAST(COALESCE(MAX(prev_revision), 0) AS {int}) FROM {{table}} \
                       WHERE name = 'compact_rev_key')"
                ),
                &[],
            ),
            live: render(
                format!(
                    "SELECT CAST(COUNT(*) AS {int}) FROM {{table}} kv \
                     JOIN (SELECT MAX(id) AS id FROM {{table}} GROUP BY name) m ON m.id = kv.id \
                     WHERE kv.deleted = 0"
                ),
                &[],
            ),
            // The latest row of each of the next :limit keys after :after, with the rows of
            // its current life (from the creating row on) counted as its version.
            page: render(
                format!(
                    "SELECT CAST(kv.name AS {text}), CAST(kv.id AS {int}), \
                       CAST(COALESCE(kv.created, 0) AS {int}), \
                       CAST(COALESCE(kv.deleted, 0) AS {int}), \
                       CAST(COALESCE(kv.create_revision, 0) AS {int}), \
                       CAST(COALESCE(kv.lease, 0) AS {int}), kv.value, \
                       (SELECT CAST(COUNT(*) AS {int}) FROM {{table}} v WHERE v.name = kv.name \
                         AND v.id <= kv.id AND v.id >= \
                           CASE WHEN kv.created = 1 THEN kv.id ELSE kv.create_revision END) \
                     FROM {{table}} kv JOIN (SELECT MAX(mkv.id) AS id FROM {{table}} mkv \
                       WHERE mkv.name > :after GROUP BY mkv.name ORDER BY mkv.name \
                       LIMIT :limit) m ON m.id = kv.id \
                     ORDER BY kv.name"
                ),
                &["after", "limit"],
            ),
        })
    }
}

#[async_trait]
impl<D: Dialect> KineRows for KineSource<D> {
    async fn revisions(&mut self) -> Result<(i64, i64)> {
        let mut conn = self.pool.acquire().await?;
        let rows = D::Db::fetch_all(&mut conn, &self.revisions, &[]).await?;
        let row = rows.first().ok_or(sqlx::Error::RowNotFound)?;
        Ok((D::Db::int(row, 0)?, D::Db::int(row, 1)?))
    }

    async fn live_keys(&mut self) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        single_int::<D>(&D::Db::fetch_all(&mut conn, &self.live, &[]).await?)
    }

    async fn page(&mut self, after: &str, limit: i64) -> Result<Vec<KineRow>> {
        let mut conn = self.pool.acquire().await?;
        let arguments = [Value::Text(after), Value::Int(limit)];
        let rows = D::Db::fetch_all(&mut conn, &self.page, &arguments).await?;
        rows.iter()
            .map(|row| {
                Ok(KineRow {
                    name: D::Db::text(row, 0)?,
                    id: D::Db::int(row, 1)?,
                    created: D::Db::int(row, 2)? != 0,
                    deleted: D::Db::int(row, 3)? != 0,
                    create_revision: D::Db::int(row, 4)?,
                    lease: D::Db::int(row, 5)?,
                    value: D::Db::maybe_bytes(row, 6)?.unwrap_or_default(),
                    rows_alive: D::Db::int(row, 7)?,
                })
            })
            .collect()
    }
}
