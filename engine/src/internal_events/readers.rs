//! Events of the side readers (confirmations, registry) and of the
//! receipts outbox: failures that used to be log lines only, each now
//! counted beside its line.

use std::time::Duration;

use metrics::{counter, gauge};

use crate::metric_names as m;

/// A side reader started (`running` 1) or stopped (0). Its error counters
/// exist from the start, so alerts see zeros.
/// Settings that send credentials or personal data unencrypted: a loud
/// warning each, at start, and their count as a gauge for alerts.
pub struct InsecureSettings<'a> {
    pub warnings: &'a [String],
}

impl InsecureSettings<'_> {
    pub fn emit(self) {
        gauge!(m::INSECURE_SETTINGS).set(self.warnings.len() as f64);
        for w in self.warnings {
            tracing::warn!(setting = %w, "insecure setting");
            eprintln!("karpoosheh: WARNING: insecure setting: {w}");
        }
    }
}

/// Whether this `run` node is the agencies' sandbox: loudly, at start.
pub struct SandboxNode {
    pub enabled: bool,
}

impl SandboxNode {
    pub fn emit(self) {
        gauge!(m::SANDBOX).set(if self.enabled { 1.0 } else { 0.0 });
        if self.enabled {
            tracing::warn!("this node is the agencies' SANDBOX: simulated gateways and recipients, sandbox topics only; nobody is notified");
            eprintln!("karpoosheh: SANDBOX node: simulated gateways and recipients; receipts are real, nobody is notified");
        }
    }
}

/// A side reader's consumer lag, from librdkafka's statistics.
pub struct ReaderLag {
    pub reader: &'static str,
    pub records: i64,
}

impl ReaderLag {
    pub fn emit(self) {
        gauge!(m::READER_LAG, "reader" => self.reader).set(self.records.max(0) as f64);
    }
}

/// A side reader applied and committed a batch of records.
pub struct ReaderApplied {
    pub reader: &'static str,
    pub records: usize,
}

impl ReaderApplied {
    pub fn emit(self) {
        counter!(m::READER_APPLIED, "reader" => self.reader).increment(self.records as u64);
    }
}

pub struct ReaderRunning<'a> {
    /// `confirmations` or `registry`.
    pub reader: &'static str,
    pub running: bool,
    pub topic: &'a str,
    pub group: &'a str,
}

impl<'a> ReaderRunning<'a> {
    pub fn started(reader: &'static str, topic: &'a str, group: &'a str) -> Self {
        ReaderRunning {
            reader,
            running: true,
            topic,
            group,
        }
    }

    pub fn stopped(reader: &'static str) -> Self {
        ReaderRunning {
            reader,
            running: false,
            topic: "",
            group: "",
        }
    }

    pub fn emit(self) {
        gauge!(m::READER_RUNNING, "reader" => self.reader).set(if self.running {
            1.0
        } else {
            0.0
        });
        if self.running {
            for stage in ReaderFailed::STAGES {
                counter!(m::READER_ERRORS, "reader" => self.reader, "stage" => *stage).increment(0);
            }
            counter!(m::READER_APPLIED, "reader" => self.reader).increment(0);
            gauge!(m::READER_LAG, "reader" => self.reader).set(0.0);
            tracing::info!(
                reader = self.reader,
                topic = self.topic,
                group = self.group,
                "side reader started"
            );
        } else {
            tracing::info!(reader = self.reader, "side reader stopped");
        }
    }
}

/// A side reader's step failed; it is retried (consume, write and
/// activate) or covered by the next commit.
pub struct ReaderFailed<'a> {
    pub reader: &'static str,
    /// One of [`ReaderFailed::STAGES`].
    pub stage: &'static str,
    pub error: &'a dyn std::error::Error,
    /// When the step is tried again, if it waits.
    pub retry_in: Option<Duration>,
}

impl ReaderFailed<'_> {
    pub const STAGES: &'static [&'static str] = &["consume", "write", "commit", "activate"];

    pub fn emit(self) {
        counter!(m::READER_ERRORS, "reader" => self.reader, "stage" => self.stage).increment(1);
        match self.stage {
            // Transient broker trouble: the consumer retries by itself.
            "consume" => {
                tracing::debug!(reader = self.reader, error = %self.error, "side reader consume error")
            }
            "commit" => {
                tracing::warn!(reader = self.reader, error = %self.error, "side reader offset commit failed; the next one covers it")
            }
            "write" => {
                tracing::error!(reader = self.reader, error = %self.error, retry_in = ?self.retry_in, "side reader store write failed; retrying")
            }
            _ => {
                tracing::warn!(reader = self.reader, stage = self.stage, error = %self.error, retry_in = ?self.retry_in, "side reader step failed; retrying")
            }
        }
    }
}

/// Publishing receipts from the outbox failed; they stay and are retried.
pub struct OutboxPublishFailed<'a> {
    pub error: &'a dyn std::error::Error,
}

impl OutboxPublishFailed<'_> {
    pub fn emit(self) {
        counter!(m::OUTBOX_PUBLISH_ERRORS).increment(1);
        tracing::warn!(error = %self.error, "publishing receipts failed; they stay in the outbox and are retried");
    }
}

/// The outbox publisher started: its error counter exists from the start.
pub struct OutboxStarted;

impl OutboxStarted {
    pub fn emit(self) {
        counter!(m::OUTBOX_PUBLISH_ERRORS).increment(0);
    }
}
