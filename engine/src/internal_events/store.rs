//! Events of the store backends beyond ingest's writes: the ScyllaDB
//! node lease, schema migrations, and repairs made on the read or write
//! path (a write completed after an interruption, a listing entry whose
//! notice is gone).

use metrics::{counter, gauge};

use crate::metric_names as m;

/// Where this node's lease on its `node_id` stands (ScyllaDB): `held`,
/// `waiting` (another engine holds it), or `lost` (taken over: this engine
/// stops writing).
pub struct LeaseState<'a> {
    pub node: i16,
    pub state: &'static str,
    /// The other holder's host, while waiting.
    pub holder_host: Option<&'a str>,
}

impl LeaseState<'_> {
    pub fn emit(self) {
        gauge!(m::STORE_LEASE_HELD).set(if self.state == "held" { 1.0 } else { 0.0 });
        match self.state {
            "held" => tracing::info!(node_id = self.node, "node lease taken"),
            "waiting" => tracing::warn!(
                node_id = self.node,
                holder_host = self.holder_host.unwrap_or("an unknown host"),
                "node_id is held by another engine; waiting for its lease to expire (a crashed engine's lease lapses within 30 s)"
            ),
            _ => tracing::error!(
                node_id = self.node,
                "the node lease was taken by another engine: this engine stops writing; check that every node has its own node_id"
            ),
        }
    }
}

/// Renewing (`renew`) or releasing (`release`) the node lease failed.
pub struct LeaseFailed<'a> {
    pub node: i16,
    pub kind: &'static str,
    pub error: Option<&'a dyn std::fmt::Display>,
}

impl LeaseFailed<'_> {
    pub fn emit(self) {
        counter!(m::STORE_LEASE_ERRORS, "kind" => self.kind).increment(1);
        match self.kind {
            "renew" => {
                tracing::warn!(node_id = self.node, error = %self.error.map(|e| e.to_string()).unwrap_or_default(), "renewing the node lease failed; retrying")
            }
            _ => tracing::warn!(
                node_id = self.node,
                "could not release the node lease; it lapses by itself within 30 s"
            ),
        }
    }
}

/// A schema migration was applied to the keyspace (all its statements).
pub struct MigrationApplied<'a> {
    pub keyspace: &'a str,
    pub migration: &'a str,
    pub statements: usize,
}

impl MigrationApplied<'_> {
    pub fn emit(self) {
        counter!(m::STORE_MIGRATIONS_APPLIED).increment(1);
        tracing::info!(
            keyspace = self.keyspace,
            migration = self.migration,
            statements = self.statements,
            "schema migration applied"
        );
    }
}

/// The store repaired something on its way.
pub enum StoreRepaired<'a> {
    /// A notice whose first write was cut short, completed by its re-send.
    InterruptedWrite {
        tracking_code: &'a dyn std::fmt::Display,
    },
    /// A listing entry whose notice has expired or is still being
    /// written: not shown.
    OrphanMailboxEntry,
}

impl StoreRepaired<'_> {
    pub fn emit(self) {
        match self {
            StoreRepaired::InterruptedWrite { tracking_code } => {
                counter!(m::STORE_REPAIRS, "kind" => "interrupted_write").increment(1);
                tracing::warn!(tracking_code = %tracking_code, "completing a notice whose first write was interrupted");
            }
            StoreRepaired::OrphanMailboxEntry => {
                counter!(m::STORE_REPAIRS, "kind" => "orphan_mailbox_entry").increment(1);
                tracing::debug!("a mailbox entry without its notice was skipped");
            }
        }
    }
}

/// One pass of the embedded store's purge of rejections and dead letters
/// past `store.traffic_retention`.
pub struct TrafficPurged<'a> {
    pub result: Result<u64, &'a dyn std::fmt::Display>,
    pub elapsed: std::time::Duration,
}

impl TrafficPurged<'_> {
    pub fn emit(self) {
        match self.result {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                removed = n,
                seconds = self.elapsed.as_secs_f64(),
                "rejections and dead letters past store.traffic_retention purged"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "purging rejections and dead letters failed; trying again in an hour")
            }
        }
    }
}

/// A stored record that could not be read back was set aside.
pub struct RecordQuarantined<'a> {
    pub kind: &'static str,
    pub key: &'a str,
    pub error: &'a str,
}

impl RecordQuarantined<'_> {
    pub fn emit(self) {
        counter!(m::RECORDS_QUARANTINED, "kind" => self.kind).increment(1);
        tracing::error!(
            kind = self.kind,
            key = self.key,
            error = self.error,
            "record set aside (quarantined) so that it blocks nothing: it cannot be read back, or its topic refuses it for good; `karpoosheh quarantine` lists it"
        );
    }
}
