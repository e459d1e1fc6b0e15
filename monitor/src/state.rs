//! The snapshot the collector publishes and every view draws from: plain
//! numbers, already aggregated for the requested scope and window, so
//! drawing is cheap and a frozen (paused) snapshot stays consistent.

use std::time::{Duration, SystemTime};

pub(crate) use crate::alerts::{Alert, Severity};

/// What the UI asks the collector to compute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Params {
    /// The chart window; shares (%) and counts are over it too.
    pub window: Duration,
    /// `None` for the whole fleet, or one node's index.
    pub scope: Option<usize>,
    /// Compute as of this monitor time (paused) instead of now.
    pub as_of: Option<f64>,
}

/// The flows the overview shows, as indexes into [`Flow`] arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum F {
    Received,
    Stored,
    Duplicates,
    Rejected,
    DeadLetters,
    Notified,
    Failed,
    Retries,
    PutOff,
    Confirmed,
    Served,
    NotServed,
    Expired,
}

impl F {
    pub const ALL: [F; 13] = [
        F::Received,
        F::Stored,
        F::Duplicates,
        F::Rejected,
        F::DeadLetters,
        F::Notified,
        F::Failed,
        F::Retries,
        F::PutOff,
        F::Confirmed,
        F::Served,
        F::NotServed,
        F::Expired,
    ];
}

/// Per-second rates (over the rate window) of every flow; None before
/// two scrapes.
pub(crate) type Flow = [Option<f64>; F::ALL.len()];

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Health {
    /// No scrape finished yet.
    Waiting,
    /// Never answered, still within `node_down_after` of start.
    Unreached {
        error: String,
    },
    Up,
    /// The last scrape failed, but the node answered within `node_down_after`.
    Late {
        error: String,
    },
    /// No answer for `node_down_after` or longer.
    Down {
        last_ok: Option<SystemTime>,
        /// Seconds since the last answer (since start when never).
        silent_for: f64,
        error: String,
    },
}

impl Health {
    pub fn is_up(&self) -> bool {
        matches!(self, Health::Up | Health::Late { .. })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeRow {
    pub name: String,
    pub url: String,
    pub health: Health,
    /// From `build_info`: the engine's `node_id` and version.
    pub node_id: Option<String>,
    pub version: Option<String>,
    pub ready: Option<bool>,
    /// Its source ended by itself (the demo's generator, a finite source, read to
    /// the end): not ready for that reason, not for a fault.
    pub source_finished: Option<bool>,
    pub received: Option<f64>,
    pub stored: Option<f64>,
    /// Kafka consumer lag (records), summed over agencies; None off Kafka.
    pub lag: Option<f64>,
    /// Its slope over the alert window (records per second).
    pub lag_slope: Option<f64>,
    pub scheduler_lag: Option<f64>,
    pub shards: Option<f64>,
    pub queue_decode: Option<f64>,
    pub queue_commit: Option<f64>,
    /// p99 of one durable store write (a batch), over the rate window.
    pub write_p99: Option<f64>,
    pub disk_bytes: Option<f64>,
    /// The engine process's resident memory (RSS).
    pub rss_bytes: Option<f64>,
    pub kafka_up: Option<bool>,
    pub partitions: Option<(f64, f64)>,
    /// Families the last scrape could not read.
    pub parse_errors: usize,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Overview {
    pub now: Flow,
    /// Rates per chart slice over the window, one Vec per [`F`].
    pub series: Vec<Vec<Option<f64>>>,
    /// Kafka consumer lag of the scope, per chart slice.
    pub lag_series: Vec<Option<f64>>,
    /// (stored + duplicates) / (stored + duplicates + rejected + dead
    /// letters) over the window: the share of records answered `accepted`.
    pub acknowledged: Option<f64>,
    /// sent / (sent + failed) notifications over the window.
    pub reached: Option<f64>,
    /// served / (served + not served + expired) over the window, and since
    /// the nodes started.
    pub served_window: Option<f64>,
    pub served_total: Option<f64>,
    pub ingest_p99: Option<f64>,
    pub write_p99: Option<f64>,
    pub served_p50: Option<f64>,
    pub served_p99: Option<f64>,
    pub lag: Option<f64>,
    pub scheduler_lag: Option<f64>,
    /// Mailboxes found unreachable per second.
    pub unreachable: Option<f64>,
    pub store_write_errors: Option<f64>,
    /// Inbox API calls per second, those answered 4xx and 5xx, and the
    /// p99 time to answer, over the scope; `None` when no node serves it.
    pub api_rate: Option<f64>,
    pub api_4xx: Option<f64>,
    pub api_5xx: Option<f64>,
    pub api_p99: Option<f64>,
    /// Kafka records not yet read, by lane (urgent, normal, bulk), summed
    /// over the scope's current nodes; `None` when none reports it.
    pub backlog: Option<[f64; 3]>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AgencyRow {
    pub name: String,
    pub stored: f64,
    pub duplicates: f64,
    pub rejected: f64,
    /// Counts over the window: stored, duplicates, rejected.
    pub stored_window: f64,
    pub duplicates_window: f64,
    pub rejected_window: f64,
    /// rejected / (stored + duplicates + rejected) over the window.
    pub rejection: Option<f64>,
    /// Rejection reasons over the window, most frequent first.
    pub reasons: Vec<(String, f64)>,
    pub served_window: Option<f64>,
    pub served_total: Option<f64>,
    /// Counts over the window: served, not served, expired.
    pub served: f64,
    pub not_served: f64,
    pub expired: f64,
    /// Per second: notifications sent and failed (one per notification of
    /// a round, as `notified` and `failed` in the Overview), confirmations
    /// applied, notices served and not served.
    pub notified: f64,
    pub notify_failed: f64,
    pub confirmed: f64,
    pub served_rate: f64,
    pub not_served_rate: f64,
    /// Counts over the window: notifications sent and failed, confirmations
    /// applied.
    pub notified_window: f64,
    pub notify_failed_window: f64,
    pub confirmed_window: f64,
    /// sent / (sent + failed) notifications over the window.
    pub reached: Option<f64>,
    pub lag: Option<f64>,
    /// Rounds put off to the agency's next slot per second: it is over
    /// its pace (`rounds_per_second`).
    pub paced: f64,
    /// Its bulk partitions left unread until Tehran midnight on the
    /// scope's nodes (over its daily quota, `over_quota = "defer"`);
    /// `None` when no node reports it.
    pub deferred: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Circuit {
    Unknown,
    Closed,
    HalfOpen,
    Open,
}

impl Circuit {
    pub fn from_gauge(v: f64) -> Circuit {
        match v as i64 {
            0 => Circuit::Closed,
            1 => Circuit::HalfOpen,
            2 => Circuit::Open,
            _ => Circuit::Unknown,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Circuit::Unknown => "?",
            Circuit::Closed => "closed",
            Circuit::HalfOpen => "half-open",
            Circuit::Open => "OPEN",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChannelRow {
    pub name: String,
    pub gateways: Vec<String>,
    /// Rounds delivered through this channel, per second.
    pub sent: f64,
    pub attempts: f64,
    pub transient: f64,
    pub permanent: f64,
    /// (transient + permanent) / attempts over the window.
    pub failure: Option<f64>,
    pub retries: f64,
    /// The worst state over the scope's nodes, and the nodes where open.
    pub circuit: Circuit,
    pub open_on: Vec<String>,
    /// Breaker openings over the window.
    pub opened: f64,
    /// Seconds spent waiting for rate-limit tokens per second: on average
    /// this many sends were waiting.
    pub saturation: f64,
    /// Sends that gave up on a token (channel skipped), per second.
    pub rate_limit_skips: f64,
    pub send_p99: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct State {
    /// Monitor clock (seconds since start) and wall time of the snapshot.
    pub at: f64,
    pub wall: SystemTime,
    pub params: Params,
    pub rate_window: Duration,
    pub nodes: Vec<NodeRow>,
    pub overview: Overview,
    pub agencies: Vec<AgencyRow>,
    pub channels: Vec<ChannelRow>,
    pub alerts: Vec<Alert>,
    /// Some node has answered fewer than twice: rates are not known yet.
    pub warming_up: bool,
}

impl State {
    pub fn up(&self) -> usize {
        self.nodes.iter().filter(|n| n.health.is_up()).count()
    }

    /// The scope's name: "fleet" or a node's.
    pub fn scope_name(&self) -> &str {
        match self.params.scope.and_then(|i| self.nodes.get(i)) {
            Some(n) => &n.name,
            None => "fleet",
        }
    }
}
