//! Leases: grant, revoke, keep-alive and expiry as sequencer requests, and the one task that
//! expires leases.
//!
//! A lease's expiry is stored as a wall-clock time, so it keeps counting while the server is
//! down: a restart neither hands out a fresh full TTL nor forgets one. The expiry task revokes
//! at most `EXPIRE_PER_TICK` leases per tick, so leases that all ran out during a long outage
//! expire over the next seconds instead of in one burst. Expiry is conditional (the lease must
//! still be expired when the sequencer gets to it), so a keep-alive that wins the race keeps the
//! lease, and two processes expiring the same lease is harmless.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng as _;
use tokio::task::JoinSet;

use crate::backend::LeaseRecord;
use crate::error::{Error, Result};
use crate::store::WeakStore;
use crate::store::apply::Apply;
use crate::store::backoff::Backoff;

/// etcd's largest lease TTL, in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;
/// How often the expiry task looks for expired leases.
const EXPIRY_TICK: Duration = Duration::from_millis(250);
/// Leases revoked per tick at most (etcd revokes at most 1000 a second).
const EXPIRE_PER_TICK: i64 = 250;

/// Wall-clock milliseconds since the Unix epoch, the unit of stored lease expiries.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn expiry(ttl: i64) -> i64 {
    now_ms().saturating_add(ttl.saturating_mul(1000))
}

impl Apply<'_> {
    /// Grants lease `id` (0: the server picks one). Returns the lease.
    pub async fn lease_grant(&mut self, id: i64, ttl: i64) -> Result<LeaseRecord> {
        if ttl > MAX_LEASE_TTL {
            return Err(Error::LeaseTtlTooLarge);
        }
        let id = if id != 0 {
            if self.buffer.lease(id).await?.is_some() {
                return Err(Error::LeaseExists);
            }
            id
        } else {
            loop {
                let candidate = rand::rng().random_range(1..i64::MAX);
                if self.buffer.lease(candidate).await?.is_none() {
                    break candidate;
                }
            }
        };
        let lease = LeaseRecord {
            id,
            ttl: ttl.max(1),
            expires_ms: expiry(ttl.max(1)),
        };
        self.buffer.save_lease(lease).await?;
        Ok(lease)
    }

    /// Revokes a lease: its keys are deleted at one revision.
    pub async fn lease_revoke(&mut self, id: i64) -> Result<()> {
        if self.buffer.lease(id).await?.is_none() {
            return Err(Error::LeaseNotFound);
        }
        self.drop_lease(id).await
    }

    /// Revokes a lease only if it is still expired (a keep-alive may have come first).
    /// Returns whether it was revoked.
    pub async fn lease_expire(&mut self, id: i64) -> Result<bool> {
        match self.buffer.lease(id).await? {
            Some(lease) if lease.expires_ms <= now_ms() => {
                self.drop_lease(id).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn drop_lease(&mut self, id: i64) -> Result<()> {
        let keys = self.buffer.keys_with_lease(id).await?;
        if !keys.is_empty() {
            let revision = self.head + 1;
            for kv in keys {
                self.buffer.delete(kv, revision);
            }
            self.changed = true;
        }
        self.buffer.delete_lease(id).await
    }

    /// Restarts a lease's TTL. Returns the granted TTL, or `None` for an unknown lease.
    pub async fn lease_keep_alive(&mut self, id: i64) -> Result<Option<i64>> {
        let Some(mut lease) = self.buffer.lease(id).await? else {
            return Ok(None);
        };
        lease.expires_ms = expiry(lease.ttl);
        self.buffer.save_lease(lease).await?;
        Ok(Some(lease.ttl))
    }
}

/// Expires leases until the store is gone.
pub(crate) async fn expire_leases(store: WeakStore) {
    let mut tick = tokio::time::interval(EXPIRY_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = Backoff::default();
    loop {
        tick.tick().await;
        let Some(store) = store.upgrade() else {
            return;
        };
        let expired = match crate::metrics::timed(
            "expired_leases",
            store.backend().expired_leases(now_ms(), EXPIRE_PER_TICK),
        )
        .await
        {
            Ok(expired) => {
                backoff.reset();
                expired
            }
            Err(err) => {
                backoff.fail("lease expiry", &err).await;
                continue;
            }
        };
        // Sent together, the revocations share the sequencer's batches.
        let mut revocations = JoinSet::new();
        for lease in expired {
            let store = store.clone();
            revocations.spawn(async move { (lease.id, store.expire_lease(lease.id).await) });
        }
        while let Some(joined) = revocations.join_next().await {
            match joined {
                Ok((id, Ok(true))) => tracing::debug!(lease = id, "lease expired"),
                Ok((_, Ok(false))) => {}
                Ok((_, Err(Error::ShuttingDown))) => return,
                Ok((id, Err(err))) => {
                    tracing::warn!(lease = id, error = %err.detail(), "expiring a lease failed")
                }
                Err(err) => tracing::warn!(error = %err, "a lease revocation task failed"),
            }
        }
    }
}
