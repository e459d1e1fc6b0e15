//! `[store]`: which backend keeps mailboxes, and the embedded store's
//! directory, durability and memory bounds.

use std::path::PathBuf;

use karpoosheh_schemas::{ByteSize, HumanDuration};
use serde::{Deserialize, Serialize};

use super::fjall::{
    Durability, FjallStoreConfig, DEFAULT_CACHE_BYTES, DEFAULT_MAX_JOURNAL_BYTES,
    DEFAULT_MEMTABLE_BYTES, DEFAULT_WRITE_BUFFER_BYTES,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Where mailboxes live: `embedded` (fjall, on this machine; the
    /// default) or `scylla` (a ScyllaDB cluster shared by the fleet,
    /// configured in `[scylla]`).
    pub backend: StoreBackend,
    /// Directory of the embedded store; created if missing.
    pub path: PathBuf,
    /// When a write counts as durable: `sync_data` (fdatasync, default),
    /// `sync_all` (fsync) or `buffered` (no sync: loses the last writes on
    /// power loss; tests and benchmarks only).
    pub durability: Durability,
    /// Block cache for reads.
    pub cache_size: ByteSize,
    /// Memtable size per keyspace; larger means fewer, bigger flushes.
    pub memtable_size: ByteSize,
    /// Journal size after which memtables are flushed to free it.
    pub max_journal_size: ByteSize,
    /// All memtables together, every keyspace: above it, writes wait for
    /// flushes. 0 turns the bound off (fjall's per-keyspace limits only).
    pub write_buffer_size: ByteSize,
    /// How long the embedded store keeps rejections and dead letters
    /// (traffic data): at least 180 days (1401 art. 10.3), then purged
    /// hourly. ScyllaDB: `scylla.traffic_retention`.
    pub traffic_retention: HumanDuration,
}

/// The store backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    #[default]
    Embedded,
    Scylla,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Embedded,
            path: PathBuf::from("./karpoosheh-data"),
            durability: Durability::SyncData,
            // Holds the index and filter blocks that bulk ingest reads
            // (reference checks); the OS page cache holds every block as
            // well, outside the engine's RSS. Against 64 MiB: the same
            // ingest and scheduler rates, and full within the first
            // million or two notices instead of slowly filling for twenty
            // million, the largest term of the 5M demo's growth
            // (BENCHMARKS.md, "Memory").
            cache_size: ByteSize(DEFAULT_CACHE_BYTES),
            // 16 MiB holds ~10k notices. Against 64 MiB: the same or a
            // higher ingest rate at about half the peak RSS (BENCHMARKS.md).
            memtable_size: ByteSize(DEFAULT_MEMTABLE_BYTES),
            max_journal_size: ByteSize(DEFAULT_MAX_JOURNAL_BYTES),
            // The memtables are the store's largest buffer and, without a
            // bound on their sum, grew with the tree's depth: flushes queue
            // behind longer compactions (BENCHMARKS.md, "Memory").
            write_buffer_size: ByteSize(DEFAULT_WRITE_BUFFER_BYTES),
            // A year, as on ScyllaDB: over the six-month minimum, and
            // bounded, so a flood of bad records cannot fill the disk for
            // good.
            traffic_retention: HumanDuration(std::time::Duration::from_secs(365 * 86_400)),
        }
    }
}

impl StoreConfig {
    /// Refuses sizes the embedded store cannot run with.
    pub fn validate(&self) -> Result<(), String> {
        if self.memtable_size.0 < 1 << 20 {
            return Err("store.memtable_size must be at least 1MiB".into());
        }
        let wb = self.write_buffer_size.0;
        if wb != 0 && wb < 2 * self.memtable_size.0 {
            return Err(format!(
                "store.write_buffer_size ({}) must be 0 (no bound) or at least twice \
             store.memtable_size ({}): one memtable filling while another is flushed",
                self.write_buffer_size, self.memtable_size
            ));
        }
        if self.max_journal_size.0 < 64 << 20 {
            return Err("store.max_journal_size must be at least 64MiB".into());
        }
        if self.traffic_retention.0 < std::time::Duration::from_secs(180 * 86_400) {
            return Err("store.traffic_retention must be at least 180 days (1401 art. 10.3: traffic data are kept at least six months)".into());
        }
        Ok(())
    }

    /// The embedded store's settings.
    pub fn fjall(&self) -> FjallStoreConfig {
        let mut s = FjallStoreConfig::new(&self.path);
        s.durability = self.durability;
        s.cache_bytes = self.cache_size.as_u64();
        s.memtable_bytes = self.memtable_size.as_u64();
        s.max_journal_bytes = self.max_journal_size.as_u64();
        s.write_buffer_bytes = self.write_buffer_size.as_u64();
        s
    }
}
