//! Internal events: each is a struct whose `emit()` writes its metric and,
//! where one is due, its log line together, so they never drift apart.
//! Hot-path events are emitted once per batch, not per record.
//!
//! No event carries a national ID: logs and labels name agencies, reasons,
//! counts and tracking-code-free positions only.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use karpoosheh_schemas::{AgencyId, MailboxStatus, Reason};
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
    /// The store refuses every later write too ([`crate::StoreError::is_fatal`]):
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
        gauge!(m::SOURCE_FINISHED).set(0.0);
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

pub struct StoreSize(pub crate::store::StoreStats);

impl StoreSize {
    pub fn emit(self) {
        let s = self.0;
        gauge!(m::STORE_DISK_BYTES).set(s.disk_bytes as f64);
        gauge!(m::STORE_WRITE_BUFFER_BYTES).set(s.write_buffer_bytes as f64);
        gauge!(m::STORE_CACHE_BYTES).set(s.cache_bytes as f64);
        gauge!(m::STORE_JOURNAL_FILES).set(s.journal_files as f64);
        gauge!(m::STORE_PINNED_BYTES).set(s.pinned_bytes as f64);
        gauge!(m::STORE_TABLES).set(s.tables as f64);
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

/// One attempt of one round, as recorded.
pub struct RoundFinished {
    pub round: u8,
    pub retry: u8,
    /// (channel or `none`, sent?, to a representative?) per delivery.
    pub deliveries: Vec<(&'static str, bool, bool)>,
}

fn round_label(r: u8) -> &'static str {
    match r {
        1 => "1",
        2 => "2",
        3 => "3",
        _ => "other",
    }
}

/// What the scheduler decided for one notice, counted after the write.
pub enum DeliveryOutcome {
    Round(RoundFinished),
    NotServed { agency: AgencyId },
    Expired { agency: AgencyId },
    Unreachable { status: MailboxStatus },
}

impl DeliveryOutcome {
    pub fn emit(self) {
        match self {
            DeliveryOutcome::Round(r) => {
                if r.retry > 0 {
                    counter!(m::ROUND_RETRIES, "round" => round_label(r.round)).increment(1);
                }
                for (channel, sent, rep) in r.deliveries {
                    counter!(m::NOTIFICATIONS,
                        "channel" => channel,
                        "round" => round_label(r.round),
                        "outcome" => if sent { "sent" } else { "failed" },
                        "to" => if rep { "representative" } else { "recipient" })
                    .increment(1);
                }
            }
            DeliveryOutcome::NotServed { agency } => {
                counter!(m::NOTICES_NOT_SERVED, "agency" => agency_label(Some(&agency)))
                    .increment(1)
            }
            DeliveryOutcome::Expired { agency } => {
                counter!(m::NOTICES_EXPIRED, "agency" => agency_label(Some(&agency))).increment(1)
            }
            DeliveryOutcome::Unreachable { status } => {
                let s = match status {
                    MailboxStatus::Active => "active",
                    MailboxStatus::NotActivated => "not_activated",
                    MailboxStatus::Deceased => "deceased",
                    MailboxStatus::Incapacitated => "incapacitated",
                    MailboxStatus::Dissolved => "dissolved",
                };
                counter!(m::MAILBOX_UNREACHABLE, "status" => s).increment(1)
            }
        }
    }
}

/// A notice became served.
pub struct NoticeServed<'a> {
    pub agency: &'a AgencyId,
    pub after: Duration,
}

impl NoticeServed<'_> {
    pub fn emit(self) {
        counter!(m::NOTICES_SERVED, "agency" => agency_label(Some(self.agency))).increment(1);
        histogram!(m::TIME_TO_SERVED_SECONDS).record(self.after.as_secs_f64());
    }
}

/// One confirmation handled.
pub struct ConfirmationHandled(pub crate::delivery::ConfirmOutcome);

impl ConfirmationHandled {
    pub fn emit(self) {
        use crate::delivery::ConfirmOutcome as O;
        let (outcome, reason) = match self.0 {
            O::Applied { .. } => ("applied", "none"),
            O::Duplicate => ("duplicate", "none"),
            O::Rejected(r) => ("rejected", r.code()),
        };
        counter!(m::CONFIRMATIONS, "outcome" => outcome, "reason" => reason).increment(1);
    }
}

/// One scheduler scan.
pub struct SchedulerScanned {
    pub timers: usize,
    pub lag: Duration,
    pub elapsed: Duration,
}

impl SchedulerScanned {
    pub fn emit(self) {
        counter!(m::SCHEDULER_TIMERS).increment(self.timers as u64);
        gauge!(m::SCHEDULER_LAG_SECONDS).set(self.lag.as_secs_f64());
        histogram!(m::SCHEDULER_SCAN_SECONDS).record(self.elapsed.as_secs_f64());
    }
}

/// Receipts published from the outbox.
pub struct ReceiptsPublished {
    pub count: usize,
}

impl ReceiptsPublished {
    pub fn emit(self) {
        counter!(m::RECEIPTS_PUBLISHED).increment(self.count as u64);
    }
}

/// A scheduler pass interrupted by a store error; retried after `after`.
pub struct StoreRetry<'a> {
    pub worker: usize,
    pub error: &'a crate::store::StoreError,
    pub after: Duration,
}

impl StoreRetry<'_> {
    pub fn emit(self) {
        counter!(m::SCHEDULER_STORE_ERRORS).increment(1);
        tracing::warn!(worker = self.worker, error = %self.error, retry_in = ?self.after, "a scheduler pass failed on a store error; retrying from the start of its shards");
    }
}

/// A scheduler worker ended because the store refuses every write
/// ([`crate::StoreError::is_fatal`]).
pub struct SchedulerStoreFailed<'a> {
    pub worker: usize,
    pub error: &'a crate::store::StoreError,
}

impl SchedulerStoreFailed<'_> {
    pub fn emit(self) {
        counter!(m::SCHEDULER_STORE_ERRORS).increment(1);
        tracing::error!(worker = self.worker, error = %self.error, "a scheduler pass failed and the store refuses further writes; the scheduler stops and the node with it: restart the engine once the disk is fixed");
    }
}

/// Zero-initialises the follow-up's counters so rate() sees zeros.
pub struct SchedulerStarted {
    pub workers: usize,
}

impl SchedulerStarted {
    pub fn emit(self) {
        counter!(m::SCHEDULER_TIMERS).increment(0);
        counter!(m::RECEIPTS_PUBLISHED).increment(0);
        counter!(m::ROUND_RETRIES).increment(0);
        counter!(m::NOTICES_SERVED).increment(0);
        counter!(m::NOTICES_NOT_SERVED).increment(0);
        counter!(m::NOTICES_EXPIRED).increment(0);
        counter!(m::MAILBOX_UNREACHABLE).increment(0);
        counter!(m::SCHEDULER_STORE_ERRORS).increment(0);
        gauge!(m::SCHEDULER_LAG_SECONDS).set(0.0);
        tracing::info!(workers = self.workers, "delivery scheduler started");
    }
}

// ---- Notification channels (engine/src/channel) ----
//
// Labels: channel (sms, email, push), gateway (http-sms, smtp,
// push-webhook, simulated), outcome (accepted, transient, permanent).
// Never an address, a national ID or a tracking code.

use crate::channel::{channel_label, ChannelKind, CircuitState, SendError};

/// The channels in use, at start-up: series exist from the start (zeros),
/// so alerts see a value rather than a missing series.
pub struct ChannelsStarted {
    pub gateways: Vec<(ChannelKind, &'static str)>,
}

impl ChannelsStarted {
    pub fn emit(self) {
        for (kind, gateway) in &self.gateways {
            let channel = channel_label(*kind);
            gauge!(m::CHANNEL_GATEWAY_INFO, "channel" => channel, "gateway" => *gateway).set(1.0);
            gauge!(m::CHANNEL_CIRCUIT_STATE, "channel" => channel)
                .set(CircuitState::Closed.gauge_value());
            counter!(m::CHANNEL_CIRCUIT_OPENED, "channel" => channel).increment(0);
            counter!(m::CHANNEL_RETRIES, "channel" => channel).increment(0);
            counter!(m::CHANNEL_RATE_LIMIT_REJECTED, "channel" => channel).increment(0);
            // Registered, so the histogram shows (empty) before the first wait.
            let _ = histogram!(m::CHANNEL_RATE_LIMIT_WAIT_SECONDS, "channel" => channel);
            for outcome in ["accepted", "transient", "permanent"] {
                counter!(m::CHANNEL_ATTEMPTS, "channel" => channel, "gateway" => *gateway, "outcome" => outcome)
                    .increment(0);
            }
        }
        let list: Vec<String> = self
            .gateways
            .iter()
            .map(|(k, g)| format!("{}={g}", channel_label(*k)))
            .collect();
        tracing::info!(channels = %list.join(","), "notification channels ready");
    }
}

/// A simulated gateway was set up: nobody will actually be notified.
pub struct SimulatedGatewayInUse {
    pub channel: ChannelKind,
}

impl SimulatedGatewayInUse {
    pub fn emit(self) {
        tracing::warn!(
            channel = channel_label(self.channel),
            gateway = "simulated",
            "SIMULATED gateway in use: no real notifications are sent on this channel (demo and load tests only)"
        );
    }
}

/// One attempt at one gateway.
pub struct ChannelAttempted<'a> {
    pub channel: ChannelKind,
    pub gateway: &'static str,
    pub result: &'a Result<(), SendError>,
    pub elapsed: Duration,
}

impl ChannelAttempted<'_> {
    pub fn emit(self) {
        let channel = channel_label(self.channel);
        let outcome = match self.result {
            Ok(()) => "accepted",
            Err(SendError::Transient(_)) => "transient",
            Err(_) => "permanent",
        };
        counter!(m::CHANNEL_ATTEMPTS, "channel" => channel, "gateway" => self.gateway, "outcome" => outcome)
            .increment(1);
        histogram!(m::CHANNEL_SEND_SECONDS, "channel" => channel)
            .record(self.elapsed.as_secs_f64());
        if let Err(e) = self.result {
            // Debug only: at volume, failures are read from the metric.
            tracing::debug!(
                channel,
                gateway = self.gateway,
                outcome,
                reason = e.reason(),
                "notification attempt failed"
            );
        }
    }
}

/// A transient failure is retried after `delay`.
pub struct ChannelRetrying<'a> {
    pub channel: ChannelKind,
    pub gateway: &'static str,
    pub retry: u32,
    pub delay: Duration,
    pub reason: &'a str,
}

impl ChannelRetrying<'_> {
    pub fn emit(self) {
        let channel = channel_label(self.channel);
        counter!(m::CHANNEL_RETRIES, "channel" => channel).increment(1);
        tracing::debug!(
            channel,
            gateway = self.gateway,
            retry = self.retry,
            delay_ms = self.delay.as_millis() as u64,
            reason = self.reason,
            "retrying notification"
        );
    }
}

/// A circuit breaker changed state.
pub struct CircuitStateChanged {
    pub channel: ChannelKind,
    pub gateway: &'static str,
    pub from: CircuitState,
    pub to: CircuitState,
}

impl CircuitStateChanged {
    pub fn emit(self) {
        let channel = channel_label(self.channel);
        gauge!(m::CHANNEL_CIRCUIT_STATE, "channel" => channel).set(self.to.gauge_value());
        match self.to {
            CircuitState::Open => {
                counter!(m::CHANNEL_CIRCUIT_OPENED, "channel" => channel).increment(1);
                tracing::warn!(
                    channel,
                    gateway = self.gateway,
                    from = self.from.as_str(),
                    "circuit breaker opened: channel skipped until a probe succeeds"
                );
            }
            CircuitState::HalfOpen => {
                tracing::info!(
                    channel,
                    gateway = self.gateway,
                    "circuit breaker half-open: probing the gateway"
                );
            }
            CircuitState::Closed => {
                tracing::info!(
                    channel,
                    gateway = self.gateway,
                    "circuit breaker closed: gateway healthy again"
                );
            }
        }
    }
}

/// Time a send waited for a rate-limit token (saturation).
pub struct ChannelRateLimitWaited {
    pub channel: ChannelKind,
    pub waited: Duration,
}

impl ChannelRateLimitWaited {
    pub fn emit(self) {
        histogram!(m::CHANNEL_RATE_LIMIT_WAIT_SECONDS, "channel" => channel_label(self.channel))
            .record(self.waited.as_secs_f64());
    }
}

/// A send gave up waiting for a token: the channel was skipped.
pub struct ChannelRateLimitSaturated {
    pub channel: ChannelKind,
}

impl ChannelRateLimitSaturated {
    pub fn emit(self) {
        counter!(m::CHANNEL_RATE_LIMIT_REJECTED, "channel" => channel_label(self.channel))
            .increment(1);
    }
}
mod kafka;
pub use kafka::*;
