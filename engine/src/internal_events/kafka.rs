//! Events of the Kafka front door: consumer, rebalances, commits, the
//! receipts and dead-letter producer, the registry reader, the agency
//! registry file. Labels name agencies and outcomes only.

use std::time::Duration;

use karpoosheh_schemas::AgencyId;
use metrics::{counter, gauge};

use super::agency_label;
use crate::metric_names as m;

pub struct KafkaBrokers {
    pub up: bool,
}

impl KafkaBrokers {
    pub fn emit(self) {
        gauge!(m::KAFKA_BROKERS_UP).set(if self.up { 1.0 } else { 0.0 });
        if self.up {
            tracing::info!("kafka brokers reachable");
        } else {
            tracing::warn!("kafka brokers unreachable; waiting (nothing is lost, consumption resumes when they are back)");
        }
    }
}

/// Consumer lag per agency, from librdkafka's statistics.
pub struct KafkaLag(pub Vec<(String, i64)>);

impl KafkaLag {
    pub fn emit(self) {
        for (agency, lag) in self.0 {
            gauge!(m::KAFKA_CONSUMER_LAG, "agency" => agency).set(lag.max(0) as f64);
        }
    }
}

/// Consumer lag by lane, from the statistics: `[urgent, normal, bulk]`.
pub struct KafkaBacklog(pub [i64; 3]);

impl KafkaBacklog {
    pub fn emit(self) {
        for p in karpoosheh_schemas::Priority::ALL {
            gauge!(m::KAFKA_BACKLOG, "priority" => p.as_str())
                .set(self.0[p as usize].max(0) as f64);
        }
    }
}

pub struct KafkaRebalance<'a> {
    pub kind: &'static str,
    pub partitions: usize,
    pub owned: usize,
    pub committed: Option<&'a str>,
}

impl KafkaRebalance<'_> {
    pub fn emit(self) {
        counter!(m::KAFKA_REBALANCES, "kind" => self.kind).increment(1);
        gauge!(m::KAFKA_ASSIGNED_PARTITIONS).set(self.owned as f64);
        tracing::info!(
            kind = self.kind,
            partitions = self.partitions,
            owned = self.owned,
            commit = self.committed.unwrap_or("-"),
            "kafka rebalance"
        );
    }
}

/// An exclusive group's check after an assignment (the embedded store):
/// how many notice partitions this node owns of how many.
pub struct KafkaGroupShared<'a> {
    pub group: &'a str,
    pub owned: usize,
    pub total: usize,
    /// This node has not owned every partition since it started.
    pub newcomer: bool,
}

impl KafkaGroupShared<'_> {
    pub fn emit(self) {
        let shared = self.owned < self.total;
        gauge!(m::KAFKA_GROUP_SHARED).set(if shared { 1.0 } else { 0.0 });
        match (shared, self.newcomer) {
            (false, _) => {}
            (true, true) => tracing::error!(
                group = self.group,
                owned = self.owned,
                total = self.total,
                "another member shares this consumer group: on the embedded store this node stops before reading anything (use one node per group, or store.backend = \"scylla\" for a fleet)"
            ),
            (true, false) => tracing::warn!(
                group = self.group,
                owned = self.owned,
                total = self.total,
                "another member joined this consumer group: on the embedded store it must not read; it stops, and this node takes its partitions back"
            ),
        }
    }
}

pub struct KafkaPaused {
    pub paused: usize,
}

impl KafkaPaused {
    pub fn emit(self) {
        gauge!(m::KAFKA_PAUSED_PARTITIONS).set(self.paused as f64);
    }
}

pub struct KafkaCommitted<'a> {
    pub partitions: usize,
    pub error: Option<&'a dyn std::error::Error>,
}

impl KafkaCommitted<'_> {
    pub fn emit(self) {
        match self.error {
            None => counter!(m::KAFKA_COMMITS, "result" => "ok").increment(1),
            Some(e) => {
                counter!(m::KAFKA_COMMITS, "result" => "error").increment(1);
                tracing::warn!(partitions = self.partitions, error = %e, "kafka offset commit failed; the next commit covers it");
            }
        }
    }
}

pub struct KafkaStarted<'a> {
    pub brokers: &'a str,
    pub group: &'a str,
    pub pattern: &'a str,
}

impl KafkaStarted<'_> {
    pub fn emit(self) {
        // Series exist from the start, so alerts see zeros, not gaps.
        counter!(m::KAFKA_COMMITS, "result" => "ok").increment(0);
        counter!(m::KAFKA_COMMITS, "result" => "error").increment(0);
        counter!(m::KAFKA_PRODUCE_ERRORS).increment(0);
        counter!(m::DEAD_LETTERS_PRODUCED).increment(0);
        counter!(m::KAFKA_REBALANCES, "kind" => "assign").increment(0);
        gauge!(m::KAFKA_PAUSED_PARTITIONS).set(0.0);
        gauge!(m::KAFKA_ASSIGNED_PARTITIONS).set(0.0);
        gauge!(m::KAFKA_GROUP_SHARED).set(0.0);
        gauge!(m::KAFKA_BROKERS_UP).set(0.0);
        tracing::info!(
            brokers = self.brokers,
            group = self.group,
            topics = self.pattern,
            "kafka consumer started"
        );
    }
}

/// One batch of receipts and dead letters delivered.
pub struct KafkaProduced {
    pub receipts: Vec<(String, u64)>,
    pub dead_letters: u64,
    pub elapsed: Duration,
}

impl KafkaProduced {
    pub fn emit(self) {
        for (agency, n) in self.receipts {
            counter!(m::RECEIPTS_PRODUCED, "agency" => agency).increment(n);
        }
        counter!(m::DEAD_LETTERS_PRODUCED).increment(self.dead_letters);
        if self.elapsed > Duration::from_secs(5) {
            tracing::warn!(
                elapsed_ms = self.elapsed.as_millis() as u64,
                "slow receipt delivery; the brokers may be overloaded or unreachable"
            );
        }
    }
}

pub struct KafkaProduceFailed<'a> {
    pub topic: &'a str,
    pub error: &'a dyn std::error::Error,
    pub retrying: bool,
}

impl KafkaProduceFailed<'_> {
    pub fn emit(self) {
        counter!(m::KAFKA_PRODUCE_ERRORS).increment(1);
        tracing::warn!(topic = self.topic, error = %self.error, retrying = self.retrying, "receipt or dead-letter delivery failed");
    }
}

pub struct ProfilesRead {
    pub applied: u64,
    pub stale: u64,
    pub deleted: u64,
    pub invalid: u64,
}

impl ProfilesRead {
    pub fn emit(self) {
        for (outcome, n) in [
            ("applied", self.applied),
            ("stale", self.stale),
            ("deleted", self.deleted),
            ("invalid", self.invalid),
        ] {
            counter!(m::PROFILES, "outcome" => outcome).increment(n);
        }
    }
}

pub struct AgencyRegistryLoaded<'a> {
    pub agencies: usize,
    pub error: Option<&'a dyn std::error::Error>,
}

impl AgencyRegistryLoaded<'_> {
    pub fn emit(self) {
        match self.error {
            None => {
                counter!(m::AGENCY_REGISTRY_LOADS, "result" => "ok").increment(1);
                tracing::info!(agencies = self.agencies, "agency registry loaded");
            }
            Some(e) => {
                counter!(m::AGENCY_REGISTRY_LOADS, "result" => "error").increment(1);
                tracing::error!(error = %e, agencies = self.agencies, "agency registry not reloaded; the previous one stays in force");
            }
        }
    }
}

/// The notice consumer committed what was durable and is leaving its group.
pub struct KafkaClosing;

impl KafkaClosing {
    pub fn emit(self) {
        tracing::info!("kafka consumer committed and closing");
    }
}

/// The notice consumer's client met an error; `kind` is one of
/// [`KafkaClientError::KINDS`]. librdkafka retries by itself.
pub struct KafkaClientError<'a> {
    pub kind: &'static str,
    pub error: &'a dyn std::fmt::Display,
    /// The partition concerned, for `pause_resume` and `seek`.
    pub partition: Option<(&'a str, i32)>,
    /// Log it (the consume loop logs at most every ten seconds; the
    /// counter counts every one).
    pub log: bool,
}

impl KafkaClientError<'_> {
    pub const KINDS: &'static [&'static str] =
        &["client", "rebalance", "consume", "pause_resume", "seek"];

    /// Every kind at zero, so alerts see a value from the start.
    pub fn register() {
        for kind in Self::KINDS {
            counter!(m::KAFKA_CLIENT_ERRORS, "kind" => *kind).increment(0);
        }
    }

    pub fn emit(self) {
        counter!(m::KAFKA_CLIENT_ERRORS, "kind" => self.kind).increment(1);
        if self.log {
            match self.partition {
                Some((topic, partition)) => {
                    tracing::warn!(kind = self.kind, topic, partition, error = %self.error, "kafka client error")
                }
                None => tracing::warn!(kind = self.kind, error = %self.error, "kafka client error"),
            }
        }
    }
}

/// A bulk lane left unread until Tehran midnight: its agency is over its
/// daily quota (`over_quota = "defer"`).
pub struct BulkDeferred<'a> {
    pub agency: &'a AgencyId,
    pub partition: i32,
    pub wait: std::time::Duration,
}

impl BulkDeferred<'_> {
    pub fn emit(self) {
        tracing::warn!(
            agency = self.agency.as_str(),
            partition = self.partition,
            hours = self.wait.as_secs() / 3600,
            "agency over its daily quota: its bulk lane is left unread until Tehran midnight (over_quota = \"defer\")"
        );
    }
}

/// How many of an agency's bulk lanes are deferred on this node now.
pub struct BulkDeferredLanes<'a> {
    pub agency: &'a AgencyId,
    pub lanes: usize,
}

impl BulkDeferredLanes<'_> {
    pub fn emit(self) {
        if self.lanes == 0 {
            tracing::info!(
                agency = self.agency.as_str(),
                "agency's bulk lanes read again: its quota's day has turned"
            );
        }
        gauge!(m::AGENCY_BULK_DEFERRED, "agency" => agency_label(Some(self.agency)))
            .set(self.lanes as f64);
    }

    /// Every agency of the registry at 0, at start.
    pub fn started(agencies: &[AgencyId]) {
        for a in agencies {
            gauge!(m::AGENCY_BULK_DEFERRED, "agency" => agency_label(Some(a))).set(0.0);
        }
    }
}

/// The parking lot's gauges and counters for every agency, at 0, at start.
pub struct ParkingStarted<'a> {
    pub agencies: &'a [String],
}

impl ParkingStarted<'_> {
    pub fn emit(self) {
        for a in self.agencies {
            gauge!(m::AGENCY_PARKED, "agency" => a.clone()).set(0.0);
            gauge!(m::RECEIPTS_PARKED, "agency" => a.clone()).set(0.0);
            counter!(m::RECEIPTS_UNPARKED, "agency" => a.clone()).increment(0);
            for reason in ["topic_missing", "not_authorized", "refused", "held"] {
                counter!(m::RECEIPTS_PARKED_TOTAL, "agency" => a.clone(), "reason" => reason)
                    .increment(0);
            }
        }
    }
}

/// Receipts of an agency put in the parking lot.
pub struct ReceiptsParked<'a> {
    pub agency: &'a str,
    pub reason: &'static str,
    pub count: usize,
    /// Receipts waiting for the agency now.
    pub waiting: u64,
    /// The agency was not parked before: logged once, loudly.
    pub newly: bool,
    pub error: Option<&'a str>,
}

impl ReceiptsParked<'_> {
    pub fn emit(self) {
        counter!(m::RECEIPTS_PARKED_TOTAL, "agency" => self.agency.to_owned(), "reason" => self.reason)
            .increment(self.count as u64);
        gauge!(m::AGENCY_PARKED, "agency" => self.agency.to_owned()).set(1.0);
        gauge!(m::RECEIPTS_PARKED, "agency" => self.agency.to_owned()).set(self.waiting as f64);
        if self.newly {
            tracing::error!(
                agency = self.agency,
                reason = self.reason,
                error = self.error.unwrap_or("-"),
                receipts = self.count,
                "agency parked: its receipt topic refuses receipts; they wait in the store and are delivered in order once it takes them again; every other agency goes on"
            );
        }
    }
}

/// Parked receipts delivered.
pub struct ReceiptsUnparked<'a> {
    pub agency: &'a str,
    pub count: usize,
    pub waiting: u64,
}

impl ReceiptsUnparked<'_> {
    pub fn emit(self) {
        counter!(m::RECEIPTS_UNPARKED, "agency" => self.agency.to_owned())
            .increment(self.count as u64);
        gauge!(m::RECEIPTS_PARKED, "agency" => self.agency.to_owned()).set(self.waiting as f64);
    }
}

/// A parked agency's topic still refuses: tried again later.
pub struct ParkedStillRefused<'a> {
    pub agency: &'a str,
    pub reason: &'static str,
    pub error: &'a str,
    pub retry_in: Duration,
}

impl ParkedStillRefused<'_> {
    pub fn emit(self) {
        tracing::warn!(
            agency = self.agency,
            reason = self.reason,
            error = self.error,
            retry_in_ms = self.retry_in.as_millis() as u64,
            "parked agency's receipt topic still refuses receipts"
        );
    }
}

/// A parked agency's lot is empty again: its receipts flow directly.
pub struct AgencyUnparked<'a> {
    pub agency: &'a str,
    pub parked_for: Duration,
}

impl AgencyUnparked<'_> {
    pub fn emit(self) {
        gauge!(m::AGENCY_PARKED, "agency" => self.agency.to_owned()).set(0.0);
        gauge!(m::RECEIPTS_PARKED, "agency" => self.agency.to_owned()).set(0.0);
        tracing::info!(
            agency = self.agency,
            parked_s = self.parked_for.as_secs(),
            "agency unparked: every parked receipt delivered, its receipts flow directly again"
        );
    }
}
