//! The node lease: at most one live engine per `node_id` on a cluster.
//!
//! The node ID is part of every tracking code, rejection ID and timer
//! partition, so two engines started with one ID would issue the same
//! codes and run each other's timers. An engine takes its ID's row in
//! `node_leases` with `INSERT ... IF NOT EXISTS USING TTL`, renews it
//! while it runs, and deletes it when it stops cleanly. After a crash the
//! row expires by itself within [`LEASE_TTL`]; a restart waits that long
//! at most. An engine that cannot renew stops writing (every write fails
//! with [`ScyllaError::LeaseLost`]) rather than risk duplicate codes.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use super::{lwt_outcome, ScyllaError};
use crate::internal_events::{LeaseFailed, LeaseState};

/// How long a lease lives without renewal.
pub(crate) const LEASE_TTL: Duration = Duration::from_secs(30);
/// How often it is renewed: three tries before it could lapse.
pub(crate) const RENEW_EVERY: Duration = Duration::from_secs(8);

pub(crate) struct LeaseStatements {
    pub take: PreparedStatement,
    pub renew: PreparedStatement,
    pub release: PreparedStatement,
}

impl LeaseStatements {
    pub const TAKE: &'static str = "INSERT INTO node_leases (node_id, holder, host, acquired_at) VALUES (?, ?, ?, ?) IF NOT EXISTS USING TTL ?";
    // Every column is set again: an UPDATE's TTL covers only the cells it
    // writes, and the holder must not lapse under a live lease.
    pub const RENEW: &'static str = "UPDATE node_leases USING TTL ? SET holder = ?, host = ?, acquired_at = ? WHERE node_id = ? IF holder = ?";
    pub const RELEASE: &'static str = "DELETE FROM node_leases WHERE node_id = ? IF holder = ?";
}

/// A held lease; renewed on the store's runtime until dropped.
pub(crate) struct Lease {
    pub node: i16,
    pub holder: String,
    pub host: String,
    lost: Arc<AtomicBool>,
    /// Milliseconds (of the process clock) of the last confirmed renewal.
    confirmed_ms: Arc<AtomicI64>,
    epoch: Instant,
}

fn ttl_secs() -> i32 {
    LEASE_TTL.as_secs() as i32
}

impl Lease {
    /// Takes the lease, waiting for a crashed holder's row to expire.
    pub async fn take(
        session: &Session,
        st: &LeaseStatements,
        node: i16,
        host: String,
    ) -> Result<Lease, ScyllaError> {
        let holder = format!(
            "{host}/{}/{:016x}",
            std::process::id(),
            rand::random::<u64>()
        );
        let deadline = Instant::now() + LEASE_TTL + Duration::from_secs(5);
        loop {
            let res = session
                .execute_unpaged(
                    &st.take,
                    (node, &holder, &host, chrono::Utc::now(), ttl_secs()),
                )
                .await
                .map_err(ScyllaError::request("taking the node lease"))?;
            let (applied, cols) = lwt_outcome(res, "node_leases")?;
            if applied {
                LeaseState {
                    node,
                    state: "held",
                    holder_host: None,
                }
                .emit();
                let epoch = Instant::now();
                return Ok(Lease {
                    node,
                    holder,
                    host,
                    lost: Arc::new(AtomicBool::new(false)),
                    confirmed_ms: Arc::new(AtomicI64::new(0)),
                    epoch,
                });
            }
            let other = cols
                .get("host")
                .and_then(|v| v.as_text().cloned())
                .unwrap_or_else(|| "an unknown host".into());
            if Instant::now() >= deadline {
                return Err(ScyllaError::LeaseHeld { node, host: other });
            }
            LeaseState {
                node,
                state: "waiting",
                holder_host: Some(&other),
            }
            .emit();
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Whether writes may go on: renewed recently and never lost.
    pub fn check(&self) -> Result<(), ScyllaError> {
        let since =
            self.epoch.elapsed().as_millis() as i64 - self.confirmed_ms.load(Ordering::Acquire);
        if self.lost.load(Ordering::Acquire)
            || since > (LEASE_TTL - Duration::from_secs(5)).as_millis() as i64
        {
            return Err(ScyllaError::LeaseLost { node: self.node });
        }
        Ok(())
    }

    /// Renews until `stop`, on the runtime.
    pub fn spawn_renewal(
        &self,
        rt: &tokio::runtime::Runtime,
        session: Arc<Session>,
        renew: PreparedStatement,
        stop: Arc<AtomicBool>,
    ) {
        let (node, holder, host) = (self.node, self.holder.clone(), self.host.clone());
        let (lost, confirmed, epoch) = (self.lost.clone(), self.confirmed_ms.clone(), self.epoch);
        rt.spawn(async move {
            while !stop.load(Ordering::Acquire) {
                tokio::time::sleep(RENEW_EVERY).await;
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let res = session
                    .execute_unpaged(
                        &renew,
                        (
                            ttl_secs(),
                            &holder,
                            &host,
                            chrono::Utc::now(),
                            node,
                            &holder,
                        ),
                    )
                    .await;
                match res
                    .map_err(ScyllaError::request("renewing the node lease"))
                    .and_then(|r| lwt_outcome(r, "node_leases"))
                {
                    Ok((true, _)) => {
                        confirmed.store(epoch.elapsed().as_millis() as i64, Ordering::Release)
                    }
                    Ok((false, _)) => {
                        LeaseState {
                            node,
                            state: "lost",
                            holder_host: None,
                        }
                        .emit();
                        lost.store(true, Ordering::Release);
                        break;
                    }
                    Err(e) => LeaseFailed {
                        node,
                        kind: "renew",
                        error: Some(&e),
                    }
                    .emit(),
                }
            }
        });
    }
}
