//! The Karpoosheh delivery engine.
//!
//! Owns the path from agencies' input to durable mailboxes: sources
//! ([`source`]), decoding and validation, sharded batching and group
//! commit ([`pipeline`]), mailbox stores ([`store`]), receipts and other
//! sinks ([`sink`]), notification channels and their dispatcher
//! ([`channel`]), metrics and health endpoints, configuration, and
//! `karpoosheh demo` ([`demo`]).
//!
//! It must not own the wire contract (that is `karpoosheh-schemas`), the
//! traffic model the demo shares with the load generator
//! (`karpoosheh-traffic`), or the dashboard (`karpoosheh-monitor`, which
//! only reads metrics). It never writes a national ID into a log line or a
//! metric label.

pub mod agencies;
pub mod channel;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod http;
pub mod internal_events;
pub mod kafka;
pub mod pipeline;
pub mod process_metrics;
pub mod sink;
pub mod source;
pub mod store;

pub use config::Config;
/// The metric names live in the wire contract, shared with the monitor.
pub use karpoosheh_schemas::metric_names;
pub use pipeline::{Pipeline, PipelineError, RunSummary, TrackingCodes};
pub use store::{FjallStore, FjallStoreConfig, Store, StoreError};

/// Opens the store the configuration names, to write.
pub fn open_store(cfg: &Config) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    open(cfg, false)
}

/// Opens the store to read only (the inspection commands): on a cluster
/// this takes no node lease, so it runs beside the live engine of the same
/// `node_id`; any write is refused. The embedded store allows one process
/// either way.
pub fn open_store_read_only(cfg: &Config) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    open(cfg, true)
}

/// The embedded store's settings from the configuration's `[store]`.
pub fn fjall_config(cfg: &Config) -> FjallStoreConfig {
    let mut s = FjallStoreConfig::new(&cfg.store.path);
    s.durability = cfg.store.durability;
    s.cache_bytes = cfg.store.cache_size.as_u64();
    s.memtable_bytes = cfg.store.memtable_size.as_u64();
    s.max_journal_bytes = cfg.store.max_journal_size.as_u64();
    s.write_buffer_bytes = cfg.store.write_buffer_size.as_u64();
    s
}

fn open(cfg: &Config, read_only: bool) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    match cfg.store.backend {
        config::StoreBackend::Embedded => {
            Ok(std::sync::Arc::new(FjallStore::open(fjall_config(cfg))?))
        }
        config::StoreBackend::Scylla => Ok(std::sync::Arc::new(store::scylla::ScyllaStore::open(
            store::scylla::ScyllaStoreConfig {
                scylla: cfg.scylla.clone(),
                node_id: cfg.node_id,
                record_retention: cfg.delivery.record_retention.0,
                read_only,
            },
        )?)),
    }
}
