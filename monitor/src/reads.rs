//! Every metric the monitor reads from an engine's `/metrics`, with the
//! labels it groups by. Names come from `karpoosheh_schemas::metric_names`
//! (the engine emits the same constants), never from string literals here,
//! and the end-to-end tests check that each one is emitted, with its labels
//! and of the expected type.

use karpoosheh_schemas::metric_names as m;

/// How the monitor interprets a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// A counter: per-second rates over a window, resets handled.
    Counter,
    /// A gauge: the latest value.
    Gauge,
    /// The `_sum` of a histogram (seconds spent, say): read like a
    /// counter, exported as `histogram`.
    HistogramSum,
    /// A histogram with `_bucket{le=..}` series: quantiles from bucket
    /// increases over a window.
    Histogram,
}

impl Kind {
    /// The `# TYPE` the engine must declare for this kind.
    pub fn prometheus_type(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram | Kind::HistogramSum => "histogram",
        }
    }

    /// Counts that only grow (until the node restarts).
    pub(crate) fn cumulative(self) -> bool {
        !matches!(self, Kind::Gauge)
    }
}

/// Which engine nodes emit a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Emitter {
    /// Every node (`karpoosheh run`, `demo`), once its pipeline and
    /// scheduler have started.
    Every,
    /// Only nodes consuming Kafka (`karpoosheh run`); listed in
    /// `metric_names::KAFKA`.
    Kafka,
    /// Only nodes serving the inbox API (`inbox.listen`); listed in
    /// `metric_names::IDENTITY`.
    Inbox,
}

/// One metric the monitor reads.
#[derive(Debug, Clone, Copy)]
pub struct Read {
    pub name: &'static str,
    pub kind: Kind,
    /// Labels kept (in this order); others are summed over.
    pub labels: &'static [&'static str],
    pub emitter: Emitter,
}

const fn read(name: &'static str, kind: Kind, labels: &'static [&'static str]) -> Read {
    Read {
        name,
        kind,
        labels,
        emitter: Emitter::Every,
    }
}

const fn inbox(name: &'static str, kind: Kind, labels: &'static [&'static str]) -> Read {
    Read {
        name,
        kind,
        labels,
        emitter: Emitter::Inbox,
    }
}

const fn kafka(name: &'static str, kind: Kind, labels: &'static [&'static str]) -> Read {
    Read {
        name,
        kind,
        labels,
        emitter: Emitter::Kafka,
    }
}

use Kind::{Counter, Gauge, Histogram, HistogramSum};

// Index constants into READS, so the code that computes views names what
// it reads without searching by string. A test checks they match.
pub(crate) const RECEIVED: usize = 0;
pub(crate) const STORED: usize = 1;
pub(crate) const DUPLICATE: usize = 2;
pub(crate) const REJECTED: usize = 3;
pub(crate) const DEAD_LETTERS: usize = 4;
pub(crate) const STORE_WRITE_ERRORS: usize = 5;
pub(crate) const STORE_WRITE_SECONDS: usize = 6;
pub(crate) const INGEST_LATENCY: usize = 7;
pub(crate) const QUEUE_DEPTH: usize = 8;
pub(crate) const SHARDS: usize = 9;
pub(crate) const DISK_BYTES: usize = 10;
pub(crate) const READY: usize = 11;
pub(crate) const BUILD_INFO: usize = 12;
pub(crate) const NOTIFICATIONS: usize = 13;
pub(crate) const ROUND_RETRIES: usize = 14;
pub(crate) const CONFIRMATIONS: usize = 15;
pub(crate) const SERVED: usize = 16;
pub(crate) const NOT_SERVED: usize = 17;
pub(crate) const EXPIRED: usize = 18;
pub(crate) const UNREACHABLE: usize = 19;
pub(crate) const TIME_TO_SERVED: usize = 20;
pub(crate) const SCHEDULER_LAG: usize = 21;
pub(crate) const CH_ATTEMPTS: usize = 22;
pub(crate) const CH_RETRIES: usize = 23;
pub(crate) const CH_CIRCUIT: usize = 24;
pub(crate) const CH_OPENED: usize = 25;
pub(crate) const CH_RATE_LIMITED: usize = 26;
pub(crate) const CH_RATE_REJECTED: usize = 27;
pub(crate) const CH_SEND_SECONDS: usize = 28;
pub(crate) const CH_GATEWAY: usize = 29;
pub(crate) const KAFKA_UP: usize = 30;
pub(crate) const KAFKA_LAG: usize = 31;
pub(crate) const KAFKA_ASSIGNED: usize = 32;
pub(crate) const KAFKA_PAUSED: usize = 33;
pub(crate) const KAFKA_PRODUCE_ERRORS: usize = 34;
pub(crate) const RESIDENT_MEMORY: usize = 35;
pub(crate) const SOURCE_FINISHED: usize = 36;
pub(crate) const INBOX_REQUESTS: usize = 37;
pub(crate) const INBOX_SECONDS: usize = 38;
pub(crate) const PARKED: usize = 39;
pub(crate) const PARKED_WAITING: usize = 40;
pub(crate) const QUARANTINED: usize = 41;
pub(crate) const AGENCY_NOTIFIED: usize = 42;
pub(crate) const AGENCY_CONFIRMED: usize = 43;
pub(crate) const KAFKA_BACKLOG: usize = 44;
pub(crate) const ROUNDS_PACED: usize = 45;
pub(crate) const BULK_DEFERRED: usize = 46;

/// What the monitor reads, in index order.
pub const READS: &[Read] = &[
    read(m::RECORDS_RECEIVED, Counter, &[]),
    read(m::NOTICES_STORED, Counter, &["agency"]),
    read(m::NOTICES_DUPLICATE, Counter, &["agency"]),
    read(m::NOTICES_REJECTED, Counter, &["agency", "reason"]),
    read(m::DEAD_LETTERS, Counter, &["reason"]),
    read(m::STORE_WRITE_ERRORS, Counter, &[]),
    read(m::STORE_WRITE_SECONDS, Histogram, &[]),
    read(m::INGEST_LATENCY_SECONDS, Histogram, &[]),
    read(m::QUEUE_DEPTH, Gauge, &["stage"]),
    read(m::SHARDS, Gauge, &[]),
    read(m::STORE_DISK_BYTES, Gauge, &[]),
    read(m::READY, Gauge, &[]),
    read(m::BUILD_INFO, Gauge, &["version", "node"]),
    read(m::NOTIFICATIONS, Counter, &["channel", "outcome"]),
    read(m::ROUND_RETRIES, Counter, &[]),
    read(m::CONFIRMATIONS, Counter, &["outcome"]),
    read(m::NOTICES_SERVED, Counter, &["agency"]),
    read(m::NOTICES_NOT_SERVED, Counter, &["agency"]),
    read(m::NOTICES_EXPIRED, Counter, &["agency"]),
    read(m::MAILBOX_UNREACHABLE, Counter, &[]),
    read(m::TIME_TO_SERVED_SECONDS, Histogram, &[]),
    read(m::SCHEDULER_LAG_SECONDS, Gauge, &[]),
    read(m::CHANNEL_ATTEMPTS, Counter, &["channel", "outcome"]),
    read(m::CHANNEL_RETRIES, Counter, &["channel"]),
    read(m::CHANNEL_CIRCUIT_STATE, Gauge, &["channel"]),
    read(m::CHANNEL_CIRCUIT_OPENED, Counter, &["channel"]),
    read(
        m::CHANNEL_RATE_LIMIT_WAIT_SECONDS,
        HistogramSum,
        &["channel"],
    ),
    read(m::CHANNEL_RATE_LIMIT_REJECTED, Counter, &["channel"]),
    read(m::CHANNEL_SEND_SECONDS, Histogram, &["channel"]),
    read(m::CHANNEL_GATEWAY_INFO, Gauge, &["channel", "gateway"]),
    kafka(m::KAFKA_BROKERS_UP, Gauge, &[]),
    kafka(m::KAFKA_CONSUMER_LAG, Gauge, &["agency"]),
    kafka(m::KAFKA_ASSIGNED_PARTITIONS, Gauge, &[]),
    kafka(m::KAFKA_PAUSED_PARTITIONS, Gauge, &[]),
    kafka(m::KAFKA_PRODUCE_ERRORS, Counter, &[]),
    read(m::PROCESS_RESIDENT_MEMORY, Gauge, &[]),
    read(m::SOURCE_FINISHED, Gauge, &[]),
    inbox(m::INBOX_REQUESTS, Counter, &["route", "status"]),
    inbox(m::INBOX_REQUEST_SECONDS, Histogram, &["route"]),
    kafka(m::AGENCY_PARKED, Gauge, &["agency"]),
    kafka(m::RECEIPTS_PARKED, Gauge, &["agency"]),
    read(m::RECORDS_QUARANTINED, Counter, &[]),
    read(m::AGENCY_NOTIFICATIONS, Counter, &["agency", "outcome"]),
    read(m::AGENCY_CONFIRMATIONS, Counter, &["agency"]),
    kafka(m::KAFKA_BACKLOG, Gauge, &["priority"]),
    read(m::ROUNDS_PACED, Counter, &["agency"]),
    kafka(m::AGENCY_BULK_DEFERRED, Gauge, &["agency"]),
];

/// Every metric the monitor reads (for the end-to-end "is it emitted" tests).
pub fn reads() -> &'static [Read] {
    READS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_constants_name_the_right_rows() {
        let pairs = [
            (RECEIVED, m::RECORDS_RECEIVED),
            (STORED, m::NOTICES_STORED),
            (DUPLICATE, m::NOTICES_DUPLICATE),
            (REJECTED, m::NOTICES_REJECTED),
            (DEAD_LETTERS, m::DEAD_LETTERS),
            (STORE_WRITE_ERRORS, m::STORE_WRITE_ERRORS),
            (STORE_WRITE_SECONDS, m::STORE_WRITE_SECONDS),
            (INGEST_LATENCY, m::INGEST_LATENCY_SECONDS),
            (QUEUE_DEPTH, m::QUEUE_DEPTH),
            (SHARDS, m::SHARDS),
            (DISK_BYTES, m::STORE_DISK_BYTES),
            (READY, m::READY),
            (BUILD_INFO, m::BUILD_INFO),
            (NOTIFICATIONS, m::NOTIFICATIONS),
            (ROUND_RETRIES, m::ROUND_RETRIES),
            (CONFIRMATIONS, m::CONFIRMATIONS),
            (SERVED, m::NOTICES_SERVED),
            (NOT_SERVED, m::NOTICES_NOT_SERVED),
            (EXPIRED, m::NOTICES_EXPIRED),
            (UNREACHABLE, m::MAILBOX_UNREACHABLE),
            (TIME_TO_SERVED, m::TIME_TO_SERVED_SECONDS),
            (SCHEDULER_LAG, m::SCHEDULER_LAG_SECONDS),
            (CH_ATTEMPTS, m::CHANNEL_ATTEMPTS),
            (CH_RETRIES, m::CHANNEL_RETRIES),
            (CH_CIRCUIT, m::CHANNEL_CIRCUIT_STATE),
            (CH_OPENED, m::CHANNEL_CIRCUIT_OPENED),
            (CH_RATE_LIMITED, m::CHANNEL_RATE_LIMIT_WAIT_SECONDS),
            (CH_RATE_REJECTED, m::CHANNEL_RATE_LIMIT_REJECTED),
            (CH_SEND_SECONDS, m::CHANNEL_SEND_SECONDS),
            (CH_GATEWAY, m::CHANNEL_GATEWAY_INFO),
            (KAFKA_UP, m::KAFKA_BROKERS_UP),
            (KAFKA_LAG, m::KAFKA_CONSUMER_LAG),
            (KAFKA_ASSIGNED, m::KAFKA_ASSIGNED_PARTITIONS),
            (KAFKA_PAUSED, m::KAFKA_PAUSED_PARTITIONS),
            (KAFKA_PRODUCE_ERRORS, m::KAFKA_PRODUCE_ERRORS),
            (RESIDENT_MEMORY, m::PROCESS_RESIDENT_MEMORY),
            (SOURCE_FINISHED, m::SOURCE_FINISHED),
            (INBOX_REQUESTS, m::INBOX_REQUESTS),
            (INBOX_SECONDS, m::INBOX_REQUEST_SECONDS),
            (PARKED, m::AGENCY_PARKED),
            (PARKED_WAITING, m::RECEIPTS_PARKED),
            (QUARANTINED, m::RECORDS_QUARANTINED),
            (AGENCY_NOTIFIED, m::AGENCY_NOTIFICATIONS),
            (AGENCY_CONFIRMED, m::AGENCY_CONFIRMATIONS),
            (KAFKA_BACKLOG, m::KAFKA_BACKLOG),
            (ROUNDS_PACED, m::ROUNDS_PACED),
            (BULK_DEFERRED, m::AGENCY_BULK_DEFERRED),
        ];
        assert_eq!(pairs.len(), READS.len(), "every row has a constant");
        for (i, name) in pairs {
            assert_eq!(READS[i].name, name, "READS[{i}]");
        }
    }

    #[test]
    fn every_read_is_a_name_the_engine_defines() {
        let every = m::every();
        for r in READS {
            match r.emitter {
                Emitter::Every => assert!(every.contains(&r.name), "{} not in every()", r.name),
                Emitter::Kafka => assert!(m::KAFKA.contains(&r.name), "{} not in KAFKA", r.name),
                Emitter::Inbox => {
                    assert!(m::IDENTITY.contains(&r.name), "{} not in IDENTITY", r.name)
                }
            }
        }
    }

    #[test]
    fn histograms_are_seconds_so_the_engine_gives_them_buckets() {
        // The engine configures buckets for names ending in `_seconds`
        // (engine/src/http.rs); any other histogram renders as a summary,
        // from which no window quantile can be computed.
        for r in READS
            .iter()
            .filter(|r| matches!(r.kind, Kind::Histogram | Kind::HistogramSum))
        {
            assert!(r.name.ends_with("_seconds"), "{}", r.name);
        }
    }
}
