//! The cluster's estimate of the keyspace's size, for the
//! `karpoosheh_store_disk_bytes` gauge: each node keeps estimates of the
//! partitions of its primary token ranges in its node-local
//! `system.size_estimates` table (ScyllaDB and Cassandra both; the nodes
//! refresh them every few minutes, from their SSTables, so data still in
//! memtables is not counted yet). Every node is asked, each on its own
//! connection; their sum is one copy of the data, and times the
//! keyspace's replicas (the replication factors summed over the data
//! centres) what the cluster's disks hold, uncompressed. An estimate, read
//! every two minutes: rewritten rows and tombstones not yet compacted
//! count too, and ScyllaDB computes its estimates when asked (Cassandra
//! keeps them, refreshed every five minutes). ScyllaDB's own monitoring has
//! the exact per-node sizes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::policies::load_balancing::{NodeIdentifier, SingleTargetLoadBalancingPolicy};
use scylla::statement::unprepared::Statement;

use super::{collect, ScyllaError, ScyllaStore};

impl ScyllaStore {
    /// One copy of the keyspace's data as the nodes estimate it now
    /// (what the gauge shows, before the replicas).
    pub fn size_estimate(&self) -> Result<u64, crate::store::StoreError> {
        Ok(self.rt.block_on(one_copy(
            &self.session,
            &self.keyspace,
            &mut std::collections::HashMap::new(),
        ))?)
    }
}

/// How often the estimate is read again (the nodes refresh theirs every
/// few minutes anyway; each read asks every node).
pub(crate) const EVERY: Duration = Duration::from_secs(120);

const QUERY: &str =
    "SELECT mean_partition_size, partitions_count FROM system.size_estimates WHERE keyspace_name = ?";

/// One copy of the keyspace's data, in bytes, from one node's rows
/// (mean partition size × partitions, per table and range).
pub(crate) fn sum_estimates(rows: &[(Option<i64>, Option<i64>)]) -> u64 {
    rows.iter()
        .map(|(size, count)| {
            let (size, count) = (
                size.unwrap_or(0).max(0) as u64,
                count.unwrap_or(0).max(0) as u64,
            );
            size.saturating_mul(count)
        })
        .fold(0u64, u64::saturating_add)
}

/// Every node's estimate of its primary ranges, summed: one copy. A node
/// that does not answer counts with its last answer in `last` (by host
/// ID), so a node down for a while makes no dip that would look like
/// growth when it is back; one never heard from counts 0.
pub(crate) async fn one_copy(
    session: &Session,
    keyspace: &str,
    last: &mut std::collections::HashMap<String, u64>,
) -> Result<u64, ScyllaError> {
    let state = session.get_cluster_state();
    let mut total = 0u64;
    let mut answered = 0usize;
    for node in state.get_nodes_info() {
        let mut q = Statement::new(QUERY);
        q.set_load_balancing_policy(Some(SingleTargetLoadBalancingPolicy::new(
            NodeIdentifier::Node(node.clone()),
            None,
        )));
        q.set_request_timeout(Some(Duration::from_secs(10)));
        let Ok(res) = session.query_unpaged(q, (keyspace,)).await else {
            total = total.saturating_add(last.get(&node.host_id.to_string()).copied().unwrap_or(0));
            continue;
        };
        let rows = collect::<(Option<i64>, Option<i64>)>(res, "system.size_estimates")?;
        let one = sum_estimates(&rows);
        last.insert(node.host_id.to_string(), one);
        total = total.saturating_add(one);
        answered += 1;
    }
    if answered == 0 {
        return Err(ScyllaError::Rows {
            what: "system.size_estimates".into(),
            message: "no node answered".into(),
        });
    }
    Ok(total)
}

/// Reads the estimate now and then every [`EVERY`] until `stop`, into
/// `bytes` (one copy × `replicas`).
pub(crate) fn spawn(
    rt: &tokio::runtime::Runtime,
    session: Arc<Session>,
    keyspace: String,
    replicas: u64,
    bytes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    rt.spawn(async move {
        let mut last = std::collections::HashMap::new();
        while !stop.load(Ordering::Acquire) {
            if let Ok(one) = one_copy(&session, &keyspace, &mut last).await {
                bytes.store(one.saturating_mul(replicas.max(1)), Ordering::Relaxed);
            }
            tokio::time::sleep(EVERY).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_are_mean_size_times_count_summed_and_never_negative() {
        assert_eq!(sum_estimates(&[]), 0);
        assert_eq!(
            sum_estimates(&[(Some(1000), Some(3)), (Some(50), Some(2)), (None, Some(9))]),
            3100
        );
        assert_eq!(
            sum_estimates(&[(Some(-5), Some(10)), (Some(7), Some(-1))]),
            0
        );
        assert_eq!(sum_estimates(&[(Some(i64::MAX), Some(i64::MAX))]), u64::MAX);
    }
}
