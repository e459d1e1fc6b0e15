//! Events of ingest: records received, decoded, written durably, and
//! what became of them; the store's sizes and write buffer; readiness.

use std::time::{Duration, Instant};

use karpoosheh_schemas::Reason;
use metrics::{counter, gauge, histogram};

use crate::metric_names as m;

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
    /// The store refuses every later write too (`StoreError::is_fatal`):
    /// the pipeline stops instead of retrying.
    pub fatal: bool,
}

impl StoreWriteFailed<'_> {
    pub fn emit(self) {
        counter!(m::STORE_WRITE_ERRORS).increment(1);
        if self.fatal {
            tracing::error!(
                records = self.records,
                error = %self.error,
                "durable store write failed and the store refuses further writes; \
                 nothing acknowledged, stopping: restart the engine once the disk is fixed"
            );
        } else {
            tracing::error!(
                attempt = self.attempt,
                records = self.records,
                error = %self.error,
                "durable store write failed; nothing acknowledged, retrying"
            );
        }
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

/// The pipeline's stages, as `karpoosheh_pipeline_stage_seconds{stage}`
/// names them (decode and the store write have histograms of their own).
pub mod stage {
    /// A batch's first record waiting in it until it is handed to the
    /// committer (the linger, or a busy store).
    pub const BATCH: &str = "batch";
    /// A batch waiting for the committer to start its write.
    pub const COMMIT_QUEUE: &str = "commit_queue";
    /// Signing a write's receipts into the audit log.
    pub const SEAL: &str = "seal";
    /// A write's receipts from sealing until the ack stage has them all
    /// acknowledged by the broker (or parked) -- it settles when no write
    /// waits, or at 16,384 records -- and acknowledges the records to the
    /// source. An agency has its receipt sooner: see
    /// `karpoosheh_receipt_latency_seconds`.
    pub const SETTLE: &str = "settle";
}

/// One pass of a batch (or a write's receipts) through a stage.
pub struct StageTime {
    pub stage: &'static str,
    pub elapsed: Duration,
}

impl StageTime {
    pub fn emit(self) {
        histogram!(m::PIPELINE_STAGE_SECONDS, "stage" => self.stage)
            .record(self.elapsed.as_secs_f64());
    }
}

/// A record's receipt acknowledged by the broker: its arrival to then.
pub struct ReceiptDelivered {
    pub received: Instant,
}

impl ReceiptDelivered {
    pub fn emit(self) {
        histogram!(m::RECEIPT_LATENCY_SECONDS).record(self.received.elapsed().as_secs_f64());
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

/// Payload bytes read and not yet acknowledged.
pub struct BytesInFlight(pub usize);

impl BytesInFlight {
    pub fn emit(self) {
        gauge!(m::PIPELINE_BYTES_IN_FLIGHT).set(self.0 as f64);
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
        gauge!(m::SOURCE_FINISHED).set(0.0);
        gauge!(m::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "node" => self.node.to_string()).set(1.0);
        tracing::info!(node = self.node, shards = self.shards, source = %self.source, "pipeline started");
    }
}

/// The metrics and health endpoints are up (`listening`), or could not
/// be started where a node goes on without them (the demo).
pub struct HttpServing<'a> {
    pub addr: Option<std::net::SocketAddr>,
    pub error: Option<&'a dyn std::fmt::Display>,
}

impl HttpServing<'_> {
    pub fn emit(self) {
        match (self.addr, self.error) {
            (Some(addr), _) => tracing::info!(%addr, "metrics and health endpoints listening"),
            (None, e) => {
                tracing::warn!(error = %e.map(|e| e.to_string()).unwrap_or_default(), "metrics endpoint not started; the demo runs without it")
            }
        }
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

/// The source ended by itself (a finite source, as the demo's generator, at its end)
/// and everything read from it is acknowledged.
pub struct SourceFinished {
    pub records: u64,
}

impl SourceFinished {
    pub fn emit(self) {
        gauge!(m::SOURCE_FINISHED).set(1.0);
        tracing::info!(records = self.records, "source finished");
    }
}

/// The store's approximate sizes (`StoreStats`), as gauges.
pub struct StoreSize {
    pub disk_bytes: u64,
    pub write_buffer_bytes: u64,
    pub cache_bytes: u64,
    pub journal_files: u64,
    pub pinned_bytes: u64,
    pub tables: u64,
}

impl StoreSize {
    pub fn emit(self) {
        let s = self;
        gauge!(m::STORE_DISK_BYTES).set(s.disk_bytes as f64);
        gauge!(m::STORE_WRITE_BUFFER_BYTES).set(s.write_buffer_bytes as f64);
        gauge!(m::STORE_CACHE_BYTES).set(s.cache_bytes as f64);
        gauge!(m::STORE_JOURNAL_FILES).set(s.journal_files as f64);
        gauge!(m::STORE_PINNED_BYTES).set(s.pinned_bytes as f64);
        gauge!(m::STORE_TABLES).set(s.tables as f64);
        // There from the start, for the overrun alert (0 on ScyllaDB).
        counter!(m::STORE_WRITE_BUFFER_OVERRUNS).increment(0);
        for kind in [
            "outbox_receipt",
            "delivery_record",
            "parked_receipt",
            "refused_receipt",
        ] {
            counter!(m::RECORDS_QUARANTINED, "kind" => kind).increment(0);
        }
    }
}

/// A store write waited for the memtables to drain under
/// `store.write_buffer_size`.
pub struct WriteBufferWaited {
    pub waited: Duration,
    /// It waited the longest allowed and went ahead over the budget.
    pub overran: bool,
}

impl WriteBufferWaited {
    pub fn emit(self) {
        histogram!(m::STORE_WRITE_BUFFER_WAIT_SECONDS).record(self.waited.as_secs_f64());
        if self.overran {
            counter!(m::STORE_WRITE_BUFFER_OVERRUNS).increment(1);
            tracing::warn!(
                waited_ms = self.waited.as_millis() as u64,
                "store write went ahead over store.write_buffer_size: flushes are not keeping up"
            );
        }
    }
}
