//! A fixed fleet for tests: three nodes built from real scrapes of
//! `karpoosheh demo` (monitor/fixtures/, taken 5 s apart), on a made-up
//! clock, so every view renders the same way on every machine. (Their
//! `process_resident_memory_bytes` lines were added after the capture, at
//! the demo's usual level, when the engine began to export them; their
//! all-zero `karpoosheh_channel_rate_limited_seconds_total` gauge was
//! rewritten as the empty `karpoosheh_channel_rate_limit_wait_seconds`
//! histogram that replaced it. The per-agency notification and
//! confirmation counters, which the captures predate, are added when the
//! scrapes are read: [`with_agency_delivery`].)
//!
//! - `10.0.0.1:9464` — the demo node as captured, 04 s → 14 s into its run.
//! - `10.0.0.2:9464` — the same capture 14 s → 24 s, as a Kafka node
//!   (node 1) whose consumer lag grows (most of it in the normal lane),
//!   whose SMS breaker is open at the end, where `municipality` just sent
//!   a batch of bad notices, where a batch of `insurance`'s notices ran out
//!   of rounds (not served), and where `judiciary` is parked (its receipt
//!   topic refuses its receipts).
//! - `10.0.0.3:9464` — answered once at 0 s, then connection refused.

use std::time::{Duration, SystemTime};

use karpoosheh_schemas::metric_names as m;

use crate::config::Config;
use crate::fleet::Fleet;
use crate::reads::{self as r, READS};
use crate::state::{Params, State};

pub(crate) const T0: &str = include_str!("../fixtures/demo-04s.prom");
pub(crate) const T1: &str = include_str!("../fixtures/demo-09s.prom");
pub(crate) const T2: &str = include_str!("../fixtures/demo-14s.prom");
pub(crate) const T3: &str = include_str!("../fixtures/demo-19s.prom");
pub(crate) const T4: &str = include_str!("../fixtures/demo-24s.prom");

/// Wall time of monitor time zero: 2027-01-15 08:00:00 UTC.
pub(crate) fn wall(t: f64) -> SystemTime {
    SystemTime::UNIX_EPOCH
        + Duration::from_secs(1_800_000_000 - 1_800_000_000 % 86400 + 8 * 3600)
        + Duration::from_secs_f64(t)
}

/// Each agency's share of the notifications and confirmations in
/// [`with_agency_delivery`]: what it had stored 4 s into the demo, in
/// hundreds.
const AGENCY_WEIGHTS: [(&str, u64); 8] = [
    ("tax", 165),
    ("utilities", 119),
    ("social-security", 108),
    ("judiciary", 88),
    ("traffic-police", 47),
    ("civil-registry", 30),
    ("municipality", 24),
    ("insurance", 12),
];

/// Sum of the samples of `name` whose labels contain `label`.
fn sum_of(text: &str, name: &str, label: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix('{'))
        .filter(|l| l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// `total` split by [`AGENCY_WEIGHTS`]: each agency gets the increase of
/// the running share, so the parts add up to `total` exactly and grow
/// with it.
fn split(total: u64) -> Vec<(&'static str, u64)> {
    let all: u64 = AGENCY_WEIGHTS.iter().map(|w| w.1).sum();
    let (mut weight, mut given) = (0, 0);
    AGENCY_WEIGHTS
        .iter()
        .map(|&(agency, w)| {
            weight += w;
            let upto = total * weight / all;
            let part = upto - given;
            given = upto;
            (agency, part)
        })
        .collect()
}

/// A capture with `karpoosheh_agency_notifications_total{agency,outcome}`
/// and `karpoosheh_agency_confirmations_total{agency}`: its own
/// notifications (sent, failed) and applied confirmations split among the
/// agencies, so that, as an engine's, they add up to the capture's totals.
pub(crate) fn with_agency_delivery(text: &str) -> String {
    let notifications = READS[r::NOTIFICATIONS].name;
    let mut s = text.to_owned();
    s.push_str(&format!("# TYPE {} counter\n", m::AGENCY_NOTIFICATIONS));
    for outcome in ["sent", "failed"] {
        let total = sum_of(text, notifications, &format!("outcome=\"{outcome}\""));
        for (agency, n) in split(total) {
            s.push_str(&format!(
                "{}{{agency=\"{agency}\",outcome=\"{outcome}\"}} {n}\n",
                m::AGENCY_NOTIFICATIONS
            ));
        }
    }
    let applied = sum_of(text, READS[r::CONFIRMATIONS].name, "outcome=\"applied\"");
    s.push_str(&format!("\n# TYPE {} counter\n", m::AGENCY_CONFIRMATIONS));
    for (agency, n) in split(applied) {
        s.push_str(&format!(
            "{}{{agency=\"{agency}\"}} {n}\n",
            m::AGENCY_CONFIRMATIONS
        ));
    }
    s.push('\n');
    s
}

/// What node 2, on Kafka, shows beyond the capture it is made from.
struct Kafka {
    /// Consumer lag of tax, judiciary and utilities.
    lag: [u64; 3],
    /// The same records by lane: urgent, normal, bulk.
    backlog: [u64; 3],
    open_sms: bool,
    /// Municipality's notices refused for `agency_not_allowed`.
    bad_batch: u64,
    /// Insurance's notices that ran out of rounds.
    not_served: u64,
    /// Utilities' rounds put off to its pace, and its bulk partitions
    /// deferred to midnight (over its quota).
    paced: u64,
    deferred: u64,
}

fn kafka_node(text: &str, k: Kafka) -> String {
    let Kafka {
        lag,
        backlog,
        open_sms,
        bad_batch,
        not_served,
        paced,
        deferred,
    } = k;
    let mut s = with_agency_delivery(text).replace(
        "karpoosheh_build_info{version=\"0.1.0\",node=\"0\"}",
        "karpoosheh_build_info{version=\"0.1.0\",node=\"1\"}",
    );
    // The capture's pipeline had finished ingest; a Kafka node keeps taking traffic.
    s = s.replace("karpoosheh_ready 0", "karpoosheh_ready 1");
    if open_sms {
        s = s
            .replace(
                "karpoosheh_channel_circuit_state{channel=\"sms\"} 0",
                "karpoosheh_channel_circuit_state{channel=\"sms\"} 2",
            )
            .replace(
                "karpoosheh_channel_circuit_opened_total{channel=\"sms\"} 0",
                "karpoosheh_channel_circuit_opened_total{channel=\"sms\"} 1",
            );
    }
    s.push_str("# TYPE karpoosheh_kafka_brokers_up gauge\nkarpoosheh_kafka_brokers_up 1\n\n");
    s.push_str("# TYPE karpoosheh_kafka_assigned_partitions gauge\nkarpoosheh_kafka_assigned_partitions 24\n\n");
    s.push_str(
        "# TYPE karpoosheh_kafka_paused_partitions gauge\nkarpoosheh_kafka_paused_partitions 0\n\n",
    );
    s.push_str("# TYPE karpoosheh_kafka_produce_errors_total counter\nkarpoosheh_kafka_produce_errors_total 0\n\n");
    s.push_str("# TYPE karpoosheh_kafka_consumer_lag_records gauge\n");
    for (agency, l) in [
        ("tax", lag[0]),
        ("judiciary", lag[1]),
        ("utilities", lag[2]),
    ] {
        s.push_str(&format!(
            "karpoosheh_kafka_consumer_lag_records{{agency=\"{agency}\"}} {l}\n"
        ));
    }
    s.push('\n');
    // Judiciary's receipt topic refuses its receipts: parked on this node.
    s.push_str("# TYPE karpoosheh_agency_parked gauge\nkarpoosheh_agency_parked{agency=\"judiciary\"} 1\nkarpoosheh_agency_parked{agency=\"tax\"} 0\n\n");
    s.push_str("# TYPE karpoosheh_receipts_parked gauge\nkarpoosheh_receipts_parked{agency=\"judiciary\"} 1200\nkarpoosheh_receipts_parked{agency=\"tax\"} 0\n\n");
    s.push_str(&format!("# TYPE {} gauge\n", m::KAFKA_BACKLOG));
    for (lane, b) in ["urgent", "normal", "bulk"].into_iter().zip(backlog) {
        s.push_str(&format!(
            "{}{{priority=\"{lane}\"}} {b}\n",
            m::KAFKA_BACKLOG
        ));
    }
    s.push('\n');
    s.push_str(&format!(
        "# TYPE {0} counter\n{0} 0\n{0}{{agency=\"utilities\"}} {paced}\n\n",
        m::ROUNDS_PACED
    ));
    s.push_str(&format!(
        "# TYPE {0} gauge\n{0}{{agency=\"tax\"}} 0\n{0}{{agency=\"utilities\"}} {deferred}\n\n",
        m::AGENCY_BULK_DEFERRED
    ));
    if not_served > 0 {
        s.push_str(&format!(
            "# TYPE karpoosheh_notices_not_served_total counter\nkarpoosheh_notices_not_served_total{{agency=\"insurance\"}} {not_served}\n\n"
        ));
    }
    if bad_batch > 0 {
        s.push_str(&format!(
            "# TYPE karpoosheh_notices_rejected_total counter\nkarpoosheh_notices_rejected_total{{agency=\"municipality\",reason=\"agency_not_allowed\"}} {bad_batch}\n"
        ));
    }
    s
}

/// Node 1's scrape of round 0, 1 or 2.
pub(crate) fn node_a(round: usize) -> String {
    with_agency_delivery([T0, T1, T2][round.min(2)])
}

/// Node 2's scrape of round 0, 1 or 2.
pub(crate) fn node_b(round: usize) -> String {
    match round {
        0 => kafka_node(
            T2,
            Kafka {
                lag: [12_000, 3_000, 900],
                backlog: [200, 11_700, 4_000],
                open_sms: false,
                bad_batch: 0,
                not_served: 0,
                paced: 0,
                deferred: 0,
            },
        ),
        1 => kafka_node(
            T3,
            Kafka {
                lag: [15_500, 3_400, 950],
                backlog: [250, 14_600, 5_000],
                open_sms: false,
                bad_batch: 0,
                not_served: 20,
                paced: 400,
                deferred: 0,
            },
        ),
        _ => kafka_node(
            T4,
            Kafka {
                lag: [19_800, 3_900, 1_000],
                backlog: [320, 18_380, 6_000],
                open_sms: true,
                bad_batch: 6_000,
                not_served: 60,
                paced: 1_200,
                deferred: 2,
            },
        ),
    }
}

pub(crate) fn config() -> Config {
    Config {
        targets: vec![
            "10.0.0.1:9464".into(),
            "10.0.0.2:9464".into(),
            "10.0.0.3:9464".into(),
        ],
        ..Config::default()
    }
}

/// The fleet after three scrape rounds (t = 0, 5, 10).
pub(crate) fn fleet() -> Fleet {
    fleet_with(&config())
}

/// The same scrapes under another configuration (its targets must be
/// [`config`]'s).
pub(crate) fn fleet_with(cfg: &Config) -> Fleet {
    let mut fleet = Fleet::new(cfg, cfg.targets().unwrap());
    let b = [node_b(0), node_b(1), node_b(2)];
    for (round, t) in [0.0, 5.0, 10.0].into_iter().enumerate() {
        fleet.record(0, t, wall(t), Ok(node_a(round)));
        fleet.record(1, t + 0.1, wall(t + 0.1), Ok(b[round].clone()));
        let c = if round == 0 {
            Ok(node_a(0))
        } else {
            Err("connection refused".to_owned())
        };
        fleet.record(2, t + 0.2, wall(t + 0.2), c);
    }
    fleet
}

pub(crate) fn params() -> Params {
    Params {
        window: Duration::from_secs(60),
        scope: None,
        as_of: None,
    }
}

/// The fixed state every snapshot test draws.
pub(crate) fn state() -> State {
    fleet().snapshot(params(), 10.5, wall(10.5))
}
