//! Alerts: what the dashboard and the plain log warn about. The rules
//! (which conditions, against which configured thresholds, in what words),
//! and their ages (an alert shows once it has held long enough, dated from
//! when this monitor first saw it). The fleet supplies the measurements
//! through [`Measures`]; nothing here reads a node's history itself.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::config::{window_name, AlertConfig};
use crate::fmt;
use crate::state::{AgencyRow, ChannelRow, Health, NodeRow};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Severity {
    Critical,
    Warning,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Alert {
    pub severity: Severity,
    /// Stable across snapshots: what and where.
    pub key: String,
    pub message: String,
    /// When the condition was first seen (by this monitor).
    pub since: Option<SystemTime>,
}

/// What the rules read besides the node rows, all over the alert window.
pub(crate) trait Measures {
    /// Failed store writes of node `i`; None when its data is not current.
    fn store_write_errors(&self, i: usize) -> Option<f64>;
    /// Failed receipt or dead-letter deliveries of node `i`; None when its
    /// data is not current.
    fn produce_errors(&self, i: usize) -> Option<f64>;
    /// Agencies parked on node `i` (their receipt topics refuse their
    /// receipts), with the receipts waiting for each.
    fn parked(&self, i: usize) -> Vec<(String, f64)>;
    /// Stored records node `i` set aside as unreadable; None when its data
    /// is not current.
    fn quarantined(&self, i: usize) -> Option<f64>;
    /// How node `i`'s scheduler lag moves (seconds per second).
    fn scheduler_lag_slope(&self, i: usize) -> Option<f64>;
    /// Every channel over the whole fleet, with its gateway attempts.
    fn fleet_channels(&self) -> Vec<(ChannelRow, f64)>;
    /// Every agency over the whole fleet, with its stored + duplicate +
    /// rejected notices.
    fn fleet_agencies(&self) -> Vec<(AgencyRow, f64)>;
}

/// Every alert condition true at the end of the snapshot, with how long
/// it must hold before it shows.
pub(crate) fn conditions(
    cfg: &AlertConfig,
    rows: &[NodeRow],
    m: &impl Measures,
) -> Vec<(Alert, f64)> {
    let wname = window_name(cfg.window.0);
    let mut out = Vec::new();
    let mut push = |severity, key: String, message: String, hold: f64| {
        out.push((
            Alert {
                severity,
                key,
                message,
                since: None,
            },
            hold,
        ))
    };
    for (i, row) in rows.iter().enumerate() {
        let name = &row.name;
        if let Health::Down {
            last_ok,
            silent_for,
            error,
        } = &row.health
        {
            let last = match last_ok {
                Some(_) => format!("last answer {} ago", fmt::duration(*silent_for)),
                None => "never answered".to_owned(),
            };
            push(
                Severity::Critical,
                format!("down {name}"),
                format!("node {name} down: {error}; {last}"),
                0.0,
            );
            continue;
        }
        // A node whose demo input (a finite source) has ended takes no traffic
        // because there is none left: done, not failing.
        if row.ready == Some(false) && row.source_finished != Some(true) {
            push(
                Severity::Critical,
                format!("ready {name}"),
                format!("node {name} not ready: not taking traffic (starting, stopping or store failing; see /health/ready)"),
                0.0,
            );
        }
        if row.kafka_up == Some(false) {
            push(
                Severity::Critical,
                format!("kafka {name}"),
                format!("node {name} reaches no Kafka broker"),
                0.0,
            );
        }
        if let Some(errors) = m.store_write_errors(i) {
            if errors > 0.0 {
                push(
                    Severity::Critical,
                    format!("store {name}"),
                    format!("node {name}: {} failed store writes in {wname} (retrying; nothing acknowledged)", fmt::count(errors)),
                    0.0,
                );
            }
        }
        if let Some(errors) = m.produce_errors(i) {
            if errors > 0.0 {
                push(
                    Severity::Warning,
                    format!("receipts {name}"),
                    format!("node {name}: {} receipt or dead-letter deliveries failed in {wname} (retried; offsets wait)", fmt::count(errors)),
                    0.0,
                );
            }
        }
        for (agency, waiting) in m.parked(i) {
            push(
                Severity::Warning,
                format!("parked {name} {agency}"),
                format!(
                    "node {name}: agency {agency} parked: its receipt topic refuses receipts; {} wait in the store",
                    fmt::count(waiting)
                ),
                0.0,
            );
        }
        if let Some(q) = m.quarantined(i).filter(|q| *q > 0.0) {
            push(
                Severity::Warning,
                format!("quarantine {name}"),
                format!(
                    "node {name}: {} unreadable stored records set aside in {wname} (karpoosheh quarantine)",
                    fmt::count(q)
                ),
                0.0,
            );
        }
        if let (Some(lag), Some(slope)) = (row.lag, row.lag_slope) {
            if slope > 0.0 && lag >= cfg.lag_min_records as f64 {
                push(
                    Severity::Warning,
                    format!("lag {name}"),
                    format!(
                        "node {name}: consumer lag growing +{}/s over {wname}, now {} records",
                        fmt::rate(slope),
                        fmt::count(lag)
                    ),
                    0.0,
                );
            }
        }
        if let Some(lag) = row
            .scheduler_lag
            .filter(|l| *l >= cfg.scheduler_lag.0.as_secs_f64())
        {
            let slope = m.scheduler_lag_slope(i);
            if slope.is_some_and(|s| s > 0.0) {
                push(
                    Severity::Warning,
                    format!("scheduler {name}"),
                    format!(
                        "node {name}: scheduler {} behind and falling further (rounds are late)",
                        fmt::duration(lag)
                    ),
                    0.0,
                );
            }
        }
    }
    // Channels and agencies over the whole fleet: a gateway or an
    // agency is one thing however many nodes see it.
    for (c, attempts) in m.fleet_channels() {
        for node in &c.open_on {
            push(
                Severity::Critical,
                format!("circuit {} {node}", c.name),
                format!(
                    "circuit open: {} on {node}: gateway failing, rounds go to the next channel",
                    c.name
                ),
                cfg.circuit_open_for.0.as_secs_f64(),
            );
        }
        if let Some(f) = c.failure.filter(|f| *f > cfg.notification_failure_rate) {
            if attempts >= cfg.min_events as f64 {
                push(
                    Severity::Warning,
                    format!("failures {}", c.name),
                    format!(
                        "channel {}: {} of gateway attempts failed over {wname} (limit {})",
                        c.name,
                        fmt::pct(f),
                        fmt::pct(cfg.notification_failure_rate)
                    ),
                    0.0,
                );
            }
        }
    }
    for (a, events) in m.fleet_agencies() {
        if let Some(rej) = a.rejection.filter(|x| *x > cfg.rejection_rate) {
            if events >= cfg.min_events as f64 {
                let top = a
                    .reasons
                    .first()
                    .map(|(r, _)| format!(", mostly {r}"))
                    .unwrap_or_default();
                push(
                    Severity::Warning,
                    format!("rejections {}", a.name),
                    format!(
                        "agency {}: {} rejected over {wname} (limit {}){top}",
                        a.name,
                        fmt::pct(rej),
                        fmt::pct(cfg.rejection_rate)
                    ),
                    0.0,
                );
            }
        }
    }
    out
}

/// When each alert condition was first seen: (monitor time, wall time).
#[derive(Debug, Default)]
pub(crate) struct Ages {
    seen: HashMap<String, (f64, SystemTime)>,
}

impl Ages {
    /// The conditions at `end` that have held long enough, dated, critical
    /// first. Ages are kept while `live`; a paused view does not move them.
    pub fn shown(
        &mut self,
        conditions: Vec<(Alert, f64)>,
        live: bool,
        end: f64,
        wall: SystemTime,
    ) -> Vec<Alert> {
        let mut alerts = Vec::new();
        if live {
            self.seen
                .retain(|k, _| conditions.iter().any(|a| &a.0.key == k));
        }
        for (mut alert, hold) in conditions {
            let first = match self.seen.get(&alert.key) {
                Some(f) => *f,
                None if live => {
                    self.seen.insert(alert.key.clone(), (end, wall));
                    (end, wall)
                }
                None => (end, wall),
            };
            if end - first.0 + 1e-9 < hold {
                continue;
            }
            alert.since = Some(first.1);
            alerts.push(alert);
        }
        alerts.sort_by(|a, b| (a.severity, &a.key).cmp(&(b.severity, &b.key)));
        alerts
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use karpoosheh_schemas::HumanDuration;

    use super::*;
    use crate::fixtures::{self, wall, T4};
    use crate::state::State;

    #[test]
    fn a_node_whose_source_finished_is_done_not_alerting() {
        let ready_alert = |s: &State| s.alerts.iter().any(|a| a.key == "ready 10.0.0.1:9464");
        let mut f = fixtures::fleet();
        // The capture 24 s in: ingest had ended, on an engine from before
        // the gauge, so not ready and nothing says why.
        f.record(0, 11.0, wall(11.0), Ok(T4.to_owned()));
        let s = f.snapshot(fixtures::params(), 11.1, wall(11.1));
        assert_eq!(s.nodes[0].ready, Some(false));
        assert_eq!(s.nodes[0].source_finished, None);
        assert!(ready_alert(&s));

        let with_gauge = |v: u8| {
            format!(
                "{T4}\n# TYPE karpoosheh_source_finished gauge\nkarpoosheh_source_finished {v}\n"
            )
        };
        f.record(0, 12.0, wall(12.0), Ok(with_gauge(1)));
        let s = f.snapshot(fixtures::params(), 12.1, wall(12.1));
        assert_eq!(s.nodes[0].source_finished, Some(true));
        assert!(!ready_alert(&s), "{:?}", s.alerts);

        f.record(0, 13.0, wall(13.0), Ok(with_gauge(0)));
        let s = f.snapshot(fixtures::params(), 13.1, wall(13.1));
        assert!(ready_alert(&s), "not ready with its source still open");
    }

    #[test]
    fn alerts_for_an_open_breaker_growing_lag_and_a_bad_batch() {
        let s = fixtures::state();
        let keys: Vec<&str> = s.alerts.iter().map(|a| a.key.as_str()).collect();
        for want in [
            "circuit sms 10.0.0.2:9464",
            "lag 10.0.0.2:9464",
            "rejections municipality",
        ] {
            assert!(keys.contains(&want), "{want} missing from {keys:?}");
        }
        assert!(
            !keys.iter().any(|k| k.starts_with("lag 10.0.0.1")),
            "node 1 is not on Kafka"
        );
        assert_eq!(s.alerts[0].severity, Severity::Critical, "critical first");
        let rej = s
            .alerts
            .iter()
            .find(|a| a.key == "rejections municipality")
            .unwrap();
        assert!(
            rej.message.contains("mostly agency_not_allowed"),
            "{}",
            rej.message
        );
    }

    #[test]
    fn thresholds_come_from_the_configuration() {
        let mut cfg = fixtures::config();
        cfg.alerts.rejection_rate = 0.99;
        cfg.alerts.lag_min_records = 1_000_000;
        let mut f = fixtures::fleet_with(&cfg);
        let s = f.snapshot(fixtures::params(), 10.5, wall(10.5));
        assert!(
            !s.alerts.iter().any(|a| a.key.starts_with("rejections")),
            "{:?}",
            s.alerts
        );
        assert!(!s.alerts.iter().any(|a| a.key.starts_with("lag")));
        assert!(s.alerts.iter().any(|a| a.key.starts_with("circuit")));
    }

    #[test]
    fn an_alert_that_must_hold_waits_its_time() {
        let mut cfg = fixtures::config();
        cfg.alerts.circuit_open_for = HumanDuration(Duration::from_secs(3));
        let mut f = fixtures::fleet_with(&cfg);
        let circuit = |s: &State| {
            s.alerts
                .iter()
                .find(|a| a.key.starts_with("circuit"))
                .cloned()
        };
        assert!(circuit(&f.snapshot(fixtures::params(), 10.5, wall(10.5))).is_none());
        assert!(circuit(&f.snapshot(fixtures::params(), 13.0, wall(13.0))).is_none());
        let a = circuit(&f.snapshot(fixtures::params(), 14.0, wall(14.0))).expect("held 3.5 s");
        assert_eq!(a.since, Some(wall(10.5)), "since when it was first seen");
    }
}
