//! Internal events: each is a struct whose `emit()` writes its metric and,
//! where one is due, its log line together, so they never drift apart.
//! Hot-path events are emitted once per batch, not per record.
//!
//! No event carries a national ID: logs and labels name agencies, reasons,
//! counts and tracking-code-free positions only.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use karpoosheh_schemas::{AgencyId, Reason};
use metrics::{counter, gauge, histogram};

use crate::metric_names as m;

/// Agency label values are capped: a flood of made-up agency IDs must not
/// explode the metrics' cardinality. Past the cap, new agencies are
/// counted under `_other`.
pub const MAX_AGENCY_LABELS: usize = 256;

/// Maps an agency to its metric label.
pub fn agency_label(agency: Option<&AgencyId>) -> String {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let Some(a) = agency else {
        return "_invalid".to_owned();
    };
    let seen = SEEN.get_or_init(|| Mutex::new(HashSet::new()));
    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    if seen.contains(a.as_str()) {
        return a.as_str().to_owned();
    }
    if seen.len() < MAX_AGENCY_LABELS {
        seen.insert(a.as_str().to_owned());
        return a.as_str().to_owned();
    }
    "_other".to_owned()
}

pub struct RecordsReceived {
    pub source: &'static str,
    pub count: u64,
}

impl RecordsReceived {
    pub fn emit(self) {
        counter!(m::RECORDS_RECEIVED, "source" => self.source).increment(self.count);
    }
}

/// Counts per agency and reason for one durable write.
#[derive(Default)]
pub struct BatchOutcomes {
    pub stored: Vec<(String, u64)>,
    pub duplicates: Vec<(String, u64)>,
    pub rejected: Vec<((String, Reason), u64)>,
    pub dead_letters: Vec<(Reason, u64)>,
    pub stored_bytes: u64,
}

impl BatchOutcomes {
    pub fn emit(self) {
        for (agency, n) in self.stored {
            counter!(m::NOTICES_STORED, "agency" => agency).increment(n);
        }
        for (agency, n) in self.duplicates {
            counter!(m::NOTICES_DUPLICATE, "agency" => agency).increment(n);
        }
        for ((agency, reason), n) in self.rejected {
            counter!(m::NOTICES_REJECTED, "agency" => agency, "reason" => reason.code())
                .increment(n);
        }
        for (reason, n) in self.dead_letters {
            counter!(m::DEAD_LETTERS, "reason" => reason.code()).increment(n);
        }
        counter!(m::STORED_BYTES).increment(self.stored_bytes);
    }
}

pub struct StoreWritten {
    pub records: usize,
    pub elapsed: Duration,
}

impl StoreWritten {
    pub fn emit(self) {
        counter!(m::STORE_WRITES).increment(1);
        histogram!(m::STORE_WRITE_SECONDS).record(self.elapsed.as_secs_f64());
        histogram!(m::STORE_WRITE_RECORDS).record(self.records as f64);
        if self.elapsed > Duration::from_secs(2) {
            tracing::warn!(
                records = self.records,
                elapsed_ms = self.elapsed.as_millis() as u64,
                "slow durable store write"
            );
        }
    }
}

pub struct StoreWriteFailed<'a> {
    pub error: &'a dyn std::error::Error,
    pub attempt: u32,
    pub records: usize,
}

impl StoreWriteFailed<'_> {
    pub fn emit(self) {
        counter!(m::STORE_WRITE_ERRORS).increment(1);
        tracing::error!(
            attempt = self.attempt,
            records = self.records,
            error = %self.error,
            "durable store write failed; nothing acknowledged, retrying"
        );
    }
}

/// Latencies of one write's records, recorded as a batch.
pub struct IngestLatencies<'a>(pub &'a [f64]);

impl IngestLatencies<'_> {
    pub fn emit(self) {
        let h = histogram!(m::INGEST_LATENCY_SECONDS);
        for &s in self.0 {
            h.record(s);
        }
    }
}

pub struct ChunkDecoded {
    pub elapsed: Duration,
}

impl ChunkDecoded {
    pub fn emit(self) {
        histogram!(m::DECODE_SECONDS).record(self.elapsed.as_secs_f64());
    }
}

pub struct QueueDepth {
    pub stage: &'static str,
    pub depth: usize,
}

impl QueueDepth {
    pub fn emit(self) {
        gauge!(m::QUEUE_DEPTH, "stage" => self.stage).set(self.depth as f64);
    }
}

pub struct PipelineStarted {
    pub node: u16,
    pub shards: usize,
    pub source: String,
}

impl PipelineStarted {
    pub fn emit(self) {
        gauge!(m::SHARDS).set(self.shards as f64);
        // Counters exist from the start, so rate() and alerts see a zero
        // rather than a missing series.
        counter!(m::STORE_WRITE_ERRORS).increment(0);
        counter!(m::STORE_WRITES).increment(0);
        counter!(m::STORED_BYTES).increment(0);
        gauge!(m::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "node" => self.node.to_string()).set(1.0);
        tracing::info!(node = self.node, shards = self.shards, source = %self.source, "pipeline started");
    }
}

pub struct Readiness {
    pub ready: bool,
    pub why: &'static str,
}

impl Readiness {
    pub fn emit(self) {
        gauge!(m::READY).set(if self.ready { 1.0 } else { 0.0 });
        tracing::info!(ready = self.ready, why = self.why, "readiness changed");
    }
}

pub struct StoreSize {
    pub disk_bytes: u64,
}

impl StoreSize {
    pub fn emit(self) {
        gauge!(m::STORE_DISK_BYTES).set(self.disk_bytes as f64);
    }
}

mod kafka;
pub use kafka::*;
