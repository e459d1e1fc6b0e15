//! The fleet: every node's history, and the arithmetic that turns them
//! into a [`State`] for a scope (the fleet or one node) and a window.
//! Pure: time is passed in, so tests drive it with fixed scrapes and a
//! made-up clock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use karpoosheh_schemas::Priority;

use crate::alerts::{self, Ages};
use crate::config::{AlertConfig, Config, Target, FINE_HORIZON};
use crate::prom;
use crate::reads::{self as r, READS};
use crate::series::{quantile, History, Point, Registry, Retention, SeriesId, SeriesInfo};
use crate::state::{
    AgencyRow, ChannelRow, Circuit, Flow, Health, NodeRow, Overview, Params, State, F,
};

/// Chart slices per window, at most (fewer when the window holds fewer
/// scrapes).
const MAX_SLICES: usize = 120;

struct Node {
    target: Target,
    history: History,
    last_ok: Option<(f64, SystemTime)>,
    last_failed: Option<String>,
    node_id: Option<String>,
    version: Option<String>,
    parse_errors: usize,
}

pub(crate) struct Fleet {
    registry: Registry,
    nodes: Vec<Node>,
    interval: f64,
    rate_window: f64,
    alerts: AlertConfig,
    /// When each alert condition was first seen.
    ages: Ages,
}

impl Fleet {
    pub fn new(cfg: &Config, targets: Vec<Target>) -> Fleet {
        let keep = Retention {
            fine_horizon: FINE_HORIZON.as_secs_f64(),
            // 720 points cover the longest window at one per 30 s.
            coarse_step: crate::config::WINDOWS
                .last()
                .map_or(30.0, |w| w.as_secs_f64() / 720.0),
            retention: crate::config::WINDOWS
                .last()
                .map_or(3600.0, |w| w.as_secs_f64() + 60.0),
        };
        Fleet {
            registry: Registry::new(),
            nodes: targets
                .into_iter()
                .map(|target| Node {
                    target,
                    history: History::new(keep),
                    last_ok: None,
                    last_failed: None,
                    node_id: None,
                    version: None,
                    parse_errors: 0,
                })
                .collect(),
            interval: cfg.scrape_interval.0.as_secs_f64(),
            rate_window: cfg.rate_window.0.as_secs_f64(),
            alerts: cfg.alerts.clone(),
            ages: Ages::default(),
        }
    }

    /// One scrape of node `i` at monitor time `t`: the body, or why there
    /// is none.
    pub fn record(&mut self, i: usize, t: f64, wall: SystemTime, body: Result<String, String>) {
        let parsed = body
            .and_then(|text| prom::parse(&text).map_err(|e| format!("not Prometheus text ({e})")));
        let node = &mut self.nodes[i];
        match parsed {
            Err(e) => node.last_failed = Some(e),
            Ok(expo) => {
                if let Some(info) = expo.family(READS[r::BUILD_INFO].name) {
                    if let Some(s) = info.samples.first() {
                        node.node_id = s.label("node").map(str::to_owned);
                        node.version = s.label("version").map(str::to_owned);
                    }
                }
                node.parse_errors = expo.errors;
                let values = self.registry.extract(&expo);
                node.history.push(t, values, &self.registry);
                node.last_ok = Some((t, wall));
                node.last_failed = None;
            }
        }
    }

    /// The state as of `now` (or `params.as_of` when paused).
    pub fn snapshot(&mut self, params: Params, now: f64, wall_now: SystemTime) -> State {
        let end = params.as_of.unwrap_or(now).min(now);
        let wall = wall_now
            .checked_sub(Duration::from_secs_f64(now - end))
            .unwrap_or(wall_now);
        let ctx = Ctx {
            fleet: self,
            end,
            window: params.window.as_secs_f64(),
        };
        let scope: Vec<usize> = match params.scope {
            Some(i) if i < self.nodes.len() => vec![i],
            _ => (0..self.nodes.len()).collect(),
        };
        let nodes: Vec<NodeRow> = (0..self.nodes.len()).map(|i| ctx.node_row(i)).collect();
        let overview = ctx.overview(&scope, &nodes);
        let agencies = ctx.agencies(&scope);
        let channels = ctx.channels(&scope);
        // The rules measure over the alert window, whatever the chart's.
        let alert_ctx = Ctx {
            window: self.alerts.window.0.as_secs_f64(),
            ..ctx
        };
        let raw_alerts = alerts::conditions(&self.alerts, &nodes, &alert_ctx);
        let warming_up = self
            .nodes
            .iter()
            .any(|n| n.last_failed.is_none() && n.history.len() < 2);

        let alerts = self
            .ages
            .shown(raw_alerts, params.as_of.is_none(), end, wall);

        State {
            at: end,
            wall,
            params,
            rate_window: Duration::from_secs_f64(self.rate_window),
            nodes,
            overview,
            agencies,
            channels,
            alerts,
            warming_up,
        }
    }
}

/// One snapshot's computation.
struct Ctx<'a> {
    fleet: &'a Fleet,
    end: f64,
    window: f64,
}

/// Increases and rates of one node over one window.
struct Span<'a> {
    a: &'a Point,
    b: &'a Point,
}

impl Span<'_> {
    fn inc(&self, ids: &[SeriesId]) -> f64 {
        ids.iter()
            .map(|&id| {
                (self.b.get(id, true).unwrap_or(0.0) - self.a.get(id, true).unwrap_or(0.0)).max(0.0)
            })
            .sum()
    }

    fn rate(&self, ids: &[SeriesId]) -> f64 {
        self.inc(ids) / (self.b.t - self.a.t)
    }

    /// Bucket increases of a histogram's series, as (le, count).
    fn buckets(&self, reg: &Registry, ids: &[SeriesId]) -> Vec<(f64, f64)> {
        ids.iter()
            .filter_map(|&id| Some((reg.info(id).le?, self.inc(&[id]))))
            .collect()
    }
}

fn total(p: &Point, ids: &[SeriesId]) -> f64 {
    ids.iter().map(|&id| p.get(id, true).unwrap_or(0.0)).sum()
}

/// Sum of a gauge's present series; None when none is present.
fn gauge(p: &Point, ids: &[SeriesId]) -> Option<f64> {
    ids.iter()
        .filter_map(|&id| p.get(id, false))
        .fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
}

fn share(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| part / whole)
}

/// Adds `v` into `acc`, keeping None only while nothing is known.
fn add(acc: &mut Option<f64>, v: Option<f64>) {
    if let Some(v) = v {
        *acc = Some(acc.unwrap_or(0.0) + v);
    }
}

fn merge_buckets(into: &mut Vec<(f64, f64)>, more: Vec<(f64, f64)>) {
    for (le, c) in more {
        match into.iter_mut().find(|b| b.0 == le) {
            Some(b) => b.1 += c,
            None => into.push((le, c)),
        }
    }
}

impl<'a> Ctx<'a> {
    fn reg(&self) -> &'a Registry {
        &self.fleet.registry
    }

    fn ids(&self, read: usize, keep: impl Fn(&SeriesInfo) -> bool) -> Vec<SeriesId> {
        self.reg()
            .of(read)
            .iter()
            .copied()
            .filter(|&id| keep(self.reg().info(id)))
            .collect()
    }

    fn all(&self, read: usize) -> Vec<SeriesId> {
        self.reg().of(read).to_vec()
    }

    /// The series each flow sums.
    fn flow_ids(&self, f: F) -> Vec<SeriesId> {
        let outcome = |read, want: &'static str| self.ids(read, move |s| s.label(1) == want);
        match f {
            F::Received => self.all(r::RECEIVED),
            F::Stored => self.all(r::STORED),
            F::Duplicates => self.all(r::DUPLICATE),
            F::Rejected => self.all(r::REJECTED),
            F::DeadLetters => self.all(r::DEAD_LETTERS),
            F::Notified => outcome(r::NOTIFICATIONS, "sent"),
            F::Failed => outcome(r::NOTIFICATIONS, "failed"),
            F::Retries => self.all(r::CH_RETRIES),
            F::PutOff => self.all(r::ROUND_RETRIES),
            F::Confirmed => self.ids(r::CONFIRMATIONS, |s| s.label(0) == "applied"),
            F::Served => self.all(r::SERVED),
            F::NotServed => self.all(r::NOT_SERVED),
            F::Expired => self.all(r::EXPIRED),
        }
    }

    fn node(&self, i: usize) -> &'a Node {
        &self.fleet.nodes[i]
    }

    /// The node's latest point at or before the end of the snapshot.
    fn latest(&self, i: usize) -> Option<&'a Point> {
        let h = &self.node(i).history;
        h.index_at_or_before(self.end).map(|j| h.get(j))
    }

    /// A node's data is current when it answered within `node_down_after`.
    fn fresh(&self, i: usize) -> bool {
        self.latest(i)
            .is_some_and(|p| self.end - p.t < self.fleet.alerts.node_down_after.0.as_secs_f64())
    }

    /// The rate window of a current node.
    fn now_span(&self, i: usize) -> Option<Span<'a>> {
        if !self.fresh(i) {
            return None;
        }
        self.span(i, self.fleet.rate_window)
    }

    fn span(&self, i: usize, span: f64) -> Option<Span<'a>> {
        let (a, b) = self.node(i).history.window(self.end, span)?;
        Some(Span { a, b })
    }

    fn health(&self, i: usize) -> Health {
        let n = self.node(i);
        let down_after = self.fleet.alerts.node_down_after.0.as_secs_f64();
        let error = n.last_failed.clone().unwrap_or_default();
        match n.last_ok {
            None if self.end < down_after && n.last_failed.is_none() => Health::Waiting,
            None if self.end < down_after => Health::Unreached { error },
            None => Health::Down {
                last_ok: None,
                silent_for: self.end,
                error: if error.is_empty() {
                    "no answer yet".into()
                } else {
                    error
                },
            },
            Some((t, wall)) => {
                let silent = (self.end - t).max(0.0);
                if silent >= down_after {
                    Health::Down {
                        last_ok: Some(wall),
                        silent_for: silent,
                        error,
                    }
                } else if n.last_failed.is_some() && t <= self.end {
                    Health::Late { error }
                } else {
                    Health::Up
                }
            }
        }
    }

    fn p99(&self, span: &Span, ids: &[SeriesId]) -> Option<f64> {
        quantile(0.99, &mut span.buckets(self.reg(), ids))
    }

    fn node_row(&self, i: usize) -> NodeRow {
        let n = self.node(i);
        let health = self.health(i);
        let now = self.now_span(i);
        // Gauges are shown only while current: a dead node's last queue
        // depth is not its queue depth.
        let last = self.latest(i).filter(|_| self.fresh(i));
        let g = |read| last.and_then(|p| gauge(p, &self.all(read)));
        let stage = |name: &'static str| {
            last.and_then(|p| gauge(p, &self.ids(r::QUEUE_DEPTH, |s| s.label(0) == name)))
        };
        let lag_ids = self.all(r::KAFKA_LAG);
        let lag = last.and_then(|p| gauge(p, &lag_ids));
        let lag_slope = lag.and_then(|_| {
            n.history
                .slope(self.end, self.fleet.alerts.window.0.as_secs_f64(), &|p| {
                    gauge(p, &lag_ids)
                })
        });
        NodeRow {
            name: n.target.name.clone(),
            url: n.target.url.clone(),
            health,
            node_id: n.node_id.clone(),
            version: n.version.clone(),
            ready: g(r::READY).map(|v| v >= 1.0),
            source_finished: g(r::SOURCE_FINISHED).map(|v| v >= 1.0),
            received: now.as_ref().map(|s| s.rate(&self.all(r::RECEIVED))),
            stored: now.as_ref().map(|s| s.rate(&self.all(r::STORED))),
            lag,
            lag_slope,
            scheduler_lag: g(r::SCHEDULER_LAG),
            shards: g(r::SHARDS),
            queue_decode: stage("decode"),
            queue_commit: stage("commit"),
            write_p99: now
                .as_ref()
                .and_then(|s| self.p99(s, &self.all(r::STORE_WRITE_SECONDS))),
            disk_bytes: g(r::DISK_BYTES),
            rss_bytes: g(r::RESIDENT_MEMORY),
            kafka_up: g(r::KAFKA_UP).map(|v| v >= 1.0),
            partitions: g(r::KAFKA_ASSIGNED).map(|a| (a, g(r::KAFKA_PAUSED).unwrap_or(0.0))),
            parse_errors: n.parse_errors,
        }
    }

    fn slices(&self) -> usize {
        ((self.window / self.fleet.interval).floor() as usize).clamp(2, MAX_SLICES)
    }

    fn overview(&self, scope: &[usize], rows: &[NodeRow]) -> Overview {
        let flows: Vec<Vec<SeriesId>> = F::ALL.iter().map(|&f| self.flow_ids(f)).collect();
        let slices = self.slices();
        let mut o = Overview {
            series: vec![vec![None; slices]; F::ALL.len()],
            lag_series: vec![None; slices],
            ..Overview::default()
        };
        let mut now: Flow = [None; F::ALL.len()];
        let mut win = [0.0f64; F::ALL.len()];
        let mut tot = [0.0f64; F::ALL.len()];
        let (mut ingest, mut write, mut served_lat) = (Vec::new(), Vec::new(), Vec::new());
        let mut api_lat = Vec::new();
        let lag_ids = self.all(r::KAFKA_LAG);
        for &i in scope {
            let h = &self.node(i).history;
            if let Some(s) = self.now_span(i) {
                for (k, ids) in flows.iter().enumerate() {
                    add(&mut now[k], Some(s.rate(ids)));
                }
                merge_buckets(
                    &mut ingest,
                    s.buckets(self.reg(), &self.all(r::INGEST_LATENCY)),
                );
                merge_buckets(
                    &mut write,
                    s.buckets(self.reg(), &self.all(r::STORE_WRITE_SECONDS)),
                );
                add(&mut o.unreachable, Some(s.rate(&self.all(r::UNREACHABLE))));
                let api = self.all(r::INBOX_REQUESTS);
                if !api.is_empty() {
                    let class =
                        |c: char| self.ids(r::INBOX_REQUESTS, move |x| x.label(1).starts_with(c));
                    add(&mut o.api_rate, Some(s.rate(&api)));
                    add(&mut o.api_4xx, Some(s.rate(&class('4'))));
                    add(&mut o.api_5xx, Some(s.rate(&class('5'))));
                    merge_buckets(
                        &mut api_lat,
                        s.buckets(self.reg(), &self.all(r::INBOX_SECONDS)),
                    );
                }
                add(
                    &mut o.store_write_errors,
                    Some(s.rate(&self.all(r::STORE_WRITE_ERRORS))),
                );
            }
            if let Some(s) = self.span(i, self.window) {
                for (k, ids) in flows.iter().enumerate() {
                    win[k] += s.inc(ids);
                }
                merge_buckets(
                    &mut served_lat,
                    s.buckets(self.reg(), &self.all(r::TIME_TO_SERVED)),
                );
            }
            if let Some(p) = self.latest(i) {
                for (k, ids) in flows.iter().enumerate() {
                    tot[k] += total(p, ids);
                }
            }
            for (k, ids) in flows.iter().enumerate() {
                let series = h.rate_series(self.end, self.window, slices, &|p| total(p, ids));
                for (acc, v) in o.series[k].iter_mut().zip(series) {
                    add(acc, v);
                }
            }
            let lag = h.gauge_series(self.end, self.window, slices, &|p| gauge(p, &lag_ids));
            for (acc, v) in o.lag_series.iter_mut().zip(lag) {
                add(acc, v);
            }
            add(&mut o.lag, rows[i].lag);
            // Like the lag, only while the node is current.
            if let Some(p) = self.latest(i).filter(|_| self.fresh(i)) {
                for lane in Priority::ALL {
                    let ids = self.ids(r::KAFKA_BACKLOG, |s| s.label(0) == lane.as_str());
                    if let Some(v) = gauge(p, &ids) {
                        o.backlog.get_or_insert([0.0; 3])[lane as usize] += v;
                    }
                }
            }
            if let Some(l) = rows[i].scheduler_lag {
                o.scheduler_lag = Some(o.scheduler_lag.map_or(l, |m: f64| m.max(l)));
            }
        }
        let k = |f: F| f as usize;
        o.now = now;
        o.acknowledged = share(
            win[k(F::Stored)] + win[k(F::Duplicates)],
            win[k(F::Stored)]
                + win[k(F::Duplicates)]
                + win[k(F::Rejected)]
                + win[k(F::DeadLetters)],
        );
        o.reached = share(win[k(F::Notified)], win[k(F::Notified)] + win[k(F::Failed)]);
        let outcome = |a: &[f64]| a[k(F::Served)] + a[k(F::NotServed)] + a[k(F::Expired)];
        o.served_window = share(win[k(F::Served)], outcome(&win));
        o.served_total = share(tot[k(F::Served)], outcome(&tot));
        o.ingest_p99 = quantile(0.99, &mut ingest);
        o.api_p99 = quantile(0.99, &mut api_lat);
        o.write_p99 = quantile(0.99, &mut write);
        o.served_p50 = quantile(0.5, &mut served_lat.clone());
        o.served_p99 = quantile(0.99, &mut served_lat);
        o
    }

    fn agencies(&self, scope: &[usize]) -> Vec<AgencyRow> {
        // Slots of the per-agency counters, in `now` (rates) and `win`
        // (increases over the window).
        const STORED: usize = 0;
        const DUPLICATE: usize = 1;
        const REJECTED: usize = 2;
        const SERVED: usize = 3;
        const NOT_SERVED: usize = 4;
        const EXPIRED: usize = 5;
        const NOTIFIED: usize = 6;
        const NOTIFY_FAILED: usize = 7;
        const CONFIRMED: usize = 8;
        const PACED: usize = 9;
        const SLOTS: usize = 10;
        #[derive(Default)]
        struct Acc {
            lag: Option<f64>,
            deferred: Option<f64>,
            now: [f64; SLOTS],
            win: [f64; SLOTS],
            /// Since start: served, not served, expired.
            tot: [f64; 3],
            reasons: HashMap<String, f64>,
        }
        let slot = |read: usize, info: &SeriesInfo| match read {
            r::STORED => Some(STORED),
            r::DUPLICATE => Some(DUPLICATE),
            r::REJECTED => Some(REJECTED),
            r::SERVED => Some(SERVED),
            r::NOT_SERVED => Some(NOT_SERVED),
            r::EXPIRED => Some(EXPIRED),
            r::AGENCY_NOTIFIED => match info.label(1) {
                "sent" => Some(NOTIFIED),
                "failed" => Some(NOTIFY_FAILED),
                _ => None,
            },
            r::AGENCY_CONFIRMED => Some(CONFIRMED),
            r::ROUNDS_PACED => Some(PACED),
            _ => None,
        };
        let mut acc: BTreeMap<String, Acc> = BTreeMap::new();
        for &i in scope {
            let now = self.now_span(i);
            let win = self.span(i, self.window);
            let last = self.latest(i);
            for read in [
                r::STORED,
                r::DUPLICATE,
                r::REJECTED,
                r::SERVED,
                r::NOT_SERVED,
                r::EXPIRED,
                r::AGENCY_NOTIFIED,
                r::AGENCY_CONFIRMED,
                r::ROUNDS_PACED,
            ] {
                for &id in self.reg().of(read) {
                    let info = self.reg().info(id);
                    let agency = info.label(0);
                    // The unlabelled zero a node starts with is no agency.
                    let Some(k) = slot(read, info).filter(|_| !agency.is_empty()) else {
                        continue;
                    };
                    let a = acc.entry(agency.to_owned()).or_default();
                    if let Some(s) = &now {
                        a.now[k] += s.rate(&[id]);
                    }
                    if let Some(s) = &win {
                        let inc = s.inc(&[id]);
                        a.win[k] += inc;
                        if k == REJECTED && inc > 0.0 {
                            *a.reasons.entry(info.label(1).to_owned()).or_default() += inc;
                        }
                    }
                    if let (Some(p), SERVED..=EXPIRED) = (last, k) {
                        a.tot[k - SERVED] += total(p, &[id]);
                    }
                }
            }
            if let Some(p) = last.filter(|_| self.fresh(i)) {
                for &id in self.reg().of(r::KAFKA_LAG) {
                    let agency = self.reg().info(id).label(0);
                    if let (false, Some(v)) = (agency.is_empty(), p.get(id, false)) {
                        add(&mut acc.entry(agency.to_owned()).or_default().lag, Some(v));
                    }
                }
                for &id in self.reg().of(r::BULK_DEFERRED) {
                    let agency = self.reg().info(id).label(0);
                    if let (false, Some(v)) = (agency.is_empty(), p.get(id, false)) {
                        add(
                            &mut acc.entry(agency.to_owned()).or_default().deferred,
                            Some(v),
                        );
                    }
                }
            }
        }
        acc.into_iter()
            .map(|(name, a)| {
                let (n, w) = (a.now, a.win);
                let mut reasons: Vec<(String, f64)> = a.reasons.into_iter().collect();
                reasons.sort_by(|x, y| y.1.total_cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
                AgencyRow {
                    name,
                    stored: n[STORED],
                    duplicates: n[DUPLICATE],
                    rejected: n[REJECTED],
                    stored_window: w[STORED],
                    duplicates_window: w[DUPLICATE],
                    rejected_window: w[REJECTED],
                    rejection: share(w[REJECTED], w[STORED] + w[DUPLICATE] + w[REJECTED]),
                    reasons,
                    served_window: share(w[SERVED], w[SERVED] + w[NOT_SERVED] + w[EXPIRED]),
                    served_total: share(a.tot[0], a.tot.iter().sum()),
                    served: w[SERVED],
                    not_served: w[NOT_SERVED],
                    expired: w[EXPIRED],
                    notified: n[NOTIFIED],
                    notify_failed: n[NOTIFY_FAILED],
                    confirmed: n[CONFIRMED],
                    served_rate: n[SERVED],
                    not_served_rate: n[NOT_SERVED],
                    notified_window: w[NOTIFIED],
                    notify_failed_window: w[NOTIFY_FAILED],
                    confirmed_window: w[CONFIRMED],
                    reached: share(w[NOTIFIED], w[NOTIFIED] + w[NOTIFY_FAILED]),
                    lag: a.lag,
                    paced: n[PACED],
                    deferred: a.deferred,
                }
            })
            .collect()
    }

    fn channels(&self, scope: &[usize]) -> Vec<ChannelRow> {
        let mut names = BTreeSet::new();
        for read in [
            r::CH_GATEWAY,
            r::CH_ATTEMPTS,
            r::CH_CIRCUIT,
            r::NOTIFICATIONS,
        ] {
            for &id in self.reg().of(read) {
                let c = self.reg().info(id).label(0);
                if !c.is_empty() && c != "none" {
                    names.insert(c.to_owned());
                }
            }
        }
        names
            .into_iter()
            .map(|c| {
                let of = |read| self.ids(read, |s| s.label(0) == c);
                let attempts = |outcome: &'static str| {
                    self.ids(r::CH_ATTEMPTS, |s| s.label(0) == c && s.label(1) == outcome)
                };
                let sent = self.ids(r::NOTIFICATIONS, |s| {
                    s.label(0) == c && s.label(1) == "sent"
                });
                let (all, transient, permanent) = (
                    of(r::CH_ATTEMPTS),
                    attempts("transient"),
                    attempts("permanent"),
                );
                let mut row = ChannelRow {
                    name: c.clone(),
                    gateways: Vec::new(),
                    sent: 0.0,
                    attempts: 0.0,
                    transient: 0.0,
                    permanent: 0.0,
                    failure: None,
                    retries: 0.0,
                    circuit: Circuit::Unknown,
                    open_on: Vec::new(),
                    opened: 0.0,
                    saturation: 0.0,
                    rate_limit_skips: 0.0,
                    send_p99: None,
                };
                let (mut failed_w, mut all_w, mut lat) = (0.0, 0.0, Vec::new());
                for &i in scope {
                    if let Some(s) = self.now_span(i) {
                        row.sent += s.rate(&sent);
                        row.attempts += s.rate(&all);
                        row.transient += s.rate(&transient);
                        row.permanent += s.rate(&permanent);
                        row.retries += s.rate(&of(r::CH_RETRIES));
                        row.saturation += s.rate(&of(r::CH_RATE_LIMITED));
                        row.rate_limit_skips += s.rate(&of(r::CH_RATE_REJECTED));
                        merge_buckets(&mut lat, s.buckets(self.reg(), &of(r::CH_SEND_SECONDS)));
                    }
                    if let Some(s) = self.span(i, self.window) {
                        failed_w += s.inc(&transient) + s.inc(&permanent);
                        all_w += s.inc(&all);
                        row.opened += s.inc(&of(r::CH_OPENED));
                    }
                    let Some(p) = self.latest(i).filter(|_| self.fresh(i)) else {
                        continue;
                    };
                    if let Some(v) = gauge(p, &of(r::CH_CIRCUIT)) {
                        let state = Circuit::from_gauge(v);
                        row.circuit = row.circuit.max(state);
                        if state == Circuit::Open {
                            row.open_on.push(self.node(i).target.name.clone());
                        }
                    }
                    for &id in &of(r::CH_GATEWAY) {
                        let gw = self.reg().info(id).label(1);
                        if p.get(id, false).is_some_and(|v| v >= 1.0)
                            && !row.gateways.iter().any(|g| g == gw)
                        {
                            row.gateways.push(gw.to_owned());
                        }
                    }
                }
                row.failure = share(failed_w, all_w);
                row.send_p99 = quantile(0.99, &mut lat);
                row
            })
            .collect()
    }

    /// Gateway attempts of a channel over this context's window.
    fn window_attempts(&self, scope: &[usize], channel: &str) -> f64 {
        let ids = self.ids(r::CH_ATTEMPTS, |s| s.label(0) == channel);
        scope
            .iter()
            .filter_map(|&i| self.span(i, self.window))
            .map(|s| s.inc(&ids))
            .sum()
    }

    /// An agency's stored + duplicate + rejected notices over this window.
    fn window_notices(&self, scope: &[usize], agency: &str) -> f64 {
        let ids: Vec<SeriesId> = [r::STORED, r::DUPLICATE, r::REJECTED]
            .into_iter()
            .flat_map(|read| self.ids(read, |s| s.label(0) == agency))
            .collect();
        scope
            .iter()
            .filter_map(|&i| self.span(i, self.window))
            .map(|s| s.inc(&ids))
            .sum()
    }
}

/// The alert rules' measurements, over this context's window (the alert
/// window, when the snapshot asks the rules).
impl alerts::Measures for Ctx<'_> {
    fn store_write_errors(&self, i: usize) -> Option<f64> {
        let s = self.span(i, self.window).filter(|_| self.fresh(i))?;
        Some(s.inc(&self.all(r::STORE_WRITE_ERRORS)))
    }

    fn produce_errors(&self, i: usize) -> Option<f64> {
        let s = self.span(i, self.window).filter(|_| self.fresh(i))?;
        Some(s.inc(&self.all(r::KAFKA_PRODUCE_ERRORS)))
    }

    fn parked(&self, i: usize) -> Vec<(String, f64)> {
        let Some(p) = self.latest(i).filter(|_| self.fresh(i)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for &id in self.reg().of(r::PARKED) {
            let agency = self.reg().info(id).label(0);
            if agency.is_empty() || gauge(p, &[id]).is_none_or(|v| v < 1.0) {
                continue;
            }
            let waiting = self
                .reg()
                .of(r::PARKED_WAITING)
                .iter()
                .find(|&&w| self.reg().info(w).label(0) == agency)
                .and_then(|&w| gauge(p, &[w]))
                .unwrap_or(0.0);
            out.push((agency.to_owned(), waiting));
        }
        out
    }

    fn quarantined(&self, i: usize) -> Option<f64> {
        let s = self.span(i, self.window).filter(|_| self.fresh(i))?;
        Some(s.inc(&self.all(r::QUARANTINED)))
    }

    fn scheduler_lag_slope(&self, i: usize) -> Option<f64> {
        let ids = self.all(r::SCHEDULER_LAG);
        self.node(i)
            .history
            .slope(self.end, self.window, &|p| gauge(p, &ids))
    }

    fn fleet_channels(&self) -> Vec<(ChannelRow, f64)> {
        let all: Vec<usize> = (0..self.fleet.nodes.len()).collect();
        self.channels(&all)
            .into_iter()
            .map(|c| {
                let attempts = self.window_attempts(&all, &c.name);
                (c, attempts)
            })
            .collect()
    }

    fn fleet_agencies(&self) -> Vec<(AgencyRow, f64)> {
        let all: Vec<usize> = (0..self.fleet.nodes.len()).collect();
        self.agencies(&all)
            .into_iter()
            .map(|a| {
                let notices = self.window_notices(&all, &a.name);
                (a, notices)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::Severity;
    use crate::fixtures::{self, wall, T0, T2, T4};

    /// Sum of every sample of `name` in exposition text, by plain line
    /// scanning: an independent check on the parser and the arithmetic.
    fn scan(text: &str, name: &str) -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn scan_bucket(text: &str, name: &str, le: &str) -> f64 {
        let prefix = format!("{name}_bucket{{le=\"{le}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
            .unwrap_or(0.0)
    }

    #[test]
    fn fleet_rates_add_up_the_answering_nodes() {
        let s = fixtures::state();
        let name = READS[r::RECEIVED].name;
        let a = (scan(T2, name) - scan(T0, name)) / 10.0;
        let b = (scan(T4, name) - scan(T2, name)) / 10.0;
        assert!(a > 1000.0 && b > 0.0, "the fixtures carry traffic: {a} {b}");
        assert!((s.nodes[0].received.unwrap() - a).abs() < 1e-6);
        assert!((s.nodes[1].received.unwrap() - b).abs() < 1e-6);
        let fleet = s.overview.now[F::Received as usize].unwrap();
        assert!((fleet - (a + b)).abs() < 1e-6, "{fleet} vs {}", a + b);
    }

    #[test]
    fn a_down_node_shows_its_last_answer_and_counts_for_nothing() {
        let s = fixtures::state();
        let c = &s.nodes[2];
        match &c.health {
            Health::Down {
                last_ok,
                silent_for,
                error,
            } => {
                assert_eq!(*last_ok, Some(wall(0.2)));
                assert!((silent_for - 10.3).abs() < 1e-9);
                assert_eq!(error, "connection refused");
            }
            h => panic!("{h:?}"),
        }
        assert_eq!(
            (c.received, c.write_p99, c.queue_commit),
            (None, None, None)
        );
        assert_eq!(s.up(), 2);
        let down = s
            .alerts
            .iter()
            .find(|a| a.key == "down 10.0.0.3:9464")
            .expect("down alert");
        assert_eq!(down.severity, Severity::Critical);
        assert!(
            down.message.contains("connection refused"),
            "{}",
            down.message
        );
    }

    #[test]
    fn a_node_just_late_is_not_down() {
        let mut f = fixtures::fleet();
        let s = f.snapshot(fixtures::params(), 10.5, wall(10.5));
        assert_eq!(s.nodes[0].health, Health::Up);
        f.record(0, 12.0, wall(12.0), Err("timed out".into()));
        let s = f.snapshot(fixtures::params(), 12.1, wall(12.1));
        assert_eq!(
            s.nodes[0].health,
            Health::Late {
                error: "timed out".into()
            }
        );
        assert!(s.nodes[0].received.is_some(), "its last rates still count");
        assert!(!s.alerts.iter().any(|a| a.key == "down 10.0.0.1:9464"));
    }

    #[test]
    fn shares_are_what_the_help_says() {
        let s = fixtures::state();
        let (st, dup, rej, dead) = (
            READS[r::STORED].name,
            READS[r::DUPLICATE].name,
            READS[r::REJECTED].name,
            READS[r::DEAD_LETTERS].name,
        );
        let inc = |name: &str| {
            scan(T2, name) - scan(T0, name) + scan(&fixtures_b(2), name)
                - scan(&fixtures_b(0), name)
        };
        let ok = inc(st) + inc(dup);
        let want = ok / (ok + inc(rej) + inc(dead));
        assert!((s.overview.acknowledged.unwrap() - want).abs() < 1e-9);
        let (sv, ns, ex) = (
            READS[r::SERVED].name,
            READS[r::NOT_SERVED].name,
            READS[r::EXPIRED].name,
        );
        let want = inc(sv) / (inc(sv) + inc(ns) + inc(ex));
        assert!((s.overview.served_window.unwrap() - want).abs() < 1e-9);
    }

    fn fixtures_b(round: usize) -> String {
        fixtures::node_b(round)
    }

    #[test]
    fn write_p99_comes_from_bucket_increases() {
        let s = fixtures::state();
        let name = READS[r::STORE_WRITE_SECONDS].name;
        let les = [
            "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5",
            "5", "10", "30", "+Inf",
        ];
        let mut buckets: Vec<(f64, f64)> = les
            .iter()
            .map(|le| {
                let bound = if *le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                (bound, scan_bucket(T2, name, le) - scan_bucket(T0, name, le))
            })
            .collect();
        let want = quantile(0.99, &mut buckets).unwrap();
        assert!((s.nodes[0].write_p99.unwrap() - want).abs() < 1e-9);
    }

    #[test]
    fn one_node_in_scope_shows_only_that_node() {
        let mut f = fixtures::fleet();
        let p = Params {
            scope: Some(0),
            ..fixtures::params()
        };
        let s = f.snapshot(p, 10.5, wall(10.5));
        let name = READS[r::RECEIVED].name;
        let a = (scan(T2, name) - scan(T0, name)) / 10.0;
        assert!((s.overview.now[F::Received as usize].unwrap() - a).abs() < 1e-6);
        assert!(
            s.agencies.iter().all(|a| a.lag.is_none()),
            "node 1 has no Kafka lag"
        );
        assert_eq!(s.scope_name(), "10.0.0.1:9464");
        assert_eq!(
            s.alerts.len(),
            fixtures::state().alerts.len(),
            "alerts stay fleet-wide"
        );
    }

    #[test]
    fn a_restarted_node_never_shows_negative_rates() {
        let cfg = fixtures::config();
        let mut f = Fleet::new(&cfg, cfg.targets().unwrap());
        f.record(0, 0.0, wall(0.0), Ok(T2.to_owned()));
        f.record(0, 5.0, wall(5.0), Ok(T0.to_owned())); // restarted: counters lower
        let s = f.snapshot(fixtures::params(), 5.5, wall(5.5));
        let name = READS[r::RECEIVED].name;
        let want = scan(T0, name) / 5.0;
        assert!((s.nodes[0].received.unwrap() - want).abs() < 1e-6);
        assert!(s.overview.now.iter().flatten().all(|v| *v >= 0.0));
    }

    #[test]
    fn paused_at_a_time_shows_that_time() {
        let mut f = fixtures::fleet();
        let live_at_5 = {
            let cfg = fixtures::config();
            let mut g = Fleet::new(&cfg, cfg.targets().unwrap());
            g.record(0, 0.0, wall(0.0), Ok(T0.to_owned()));
            g.record(0, 5.0, wall(5.0), Ok(fixtures::T1.to_owned()));
            g.snapshot(fixtures::params(), 5.0, wall(5.0))
        };
        let paused = f.snapshot(
            Params {
                as_of: Some(5.0),
                ..fixtures::params()
            },
            10.5,
            wall(10.5),
        );
        assert_eq!(paused.at, 5.0);
        assert_eq!(paused.wall, wall(5.0));
        assert_eq!(paused.nodes[0].received, live_at_5.nodes[0].received);
    }

    #[test]
    fn agencies_carry_reasons_and_served_shares() {
        let s = fixtures::state();
        let tax = s.agencies.iter().find(|a| a.name == "tax").expect("tax");
        assert!(tax.stored > 0.0 && tax.rejection.is_some_and(|r| r > 0.0 && r < 0.2));
        assert!(!tax.reasons.is_empty());
        assert!(
            tax.reasons.windows(2).all(|w| w[0].1 >= w[1].1),
            "most frequent first"
        );
        assert!(
            tax.lag.is_some_and(|l| l == 19_800.0),
            "lag from the Kafka node"
        );
        assert!(
            !s.agencies.iter().any(|a| a.name.is_empty()),
            "the unlabelled zero is no agency"
        );
        let muni = s
            .agencies
            .iter()
            .find(|a| a.name == "municipality")
            .unwrap();
        assert!(muni.rejection.unwrap() > 0.2);
    }

    #[test]
    fn agency_delivery_rates_add_up_to_the_fleets() {
        let s = fixtures::state();
        let now = |f: F| s.overview.now[f as usize].unwrap();
        let sum = |v: fn(&AgencyRow) -> f64| s.agencies.iter().map(v).sum::<f64>();
        // Both counters count each notification of a round once, each
        // applied confirmation once: per agency they add up to the fleet's.
        for (what, agencies, fleet) in [
            ("notified", sum(|a| a.notified), now(F::Notified)),
            ("failed", sum(|a| a.notify_failed), now(F::Failed)),
            ("confirmed", sum(|a| a.confirmed), now(F::Confirmed)),
            ("served", sum(|a| a.served_rate), now(F::Served)),
            ("not served", sum(|a| a.not_served_rate), now(F::NotServed)),
        ] {
            assert!(fleet > 0.0, "the fixtures carry {what}");
            assert!(
                (agencies - fleet).abs() < 1e-6,
                "{what}: {agencies} vs {fleet}"
            );
        }
        // One agency's, read off the text: node 1's over 0 → 10 s, node
        // 2's over 0.1 → 10.1 s.
        let name = READS[r::AGENCY_NOTIFIED].name;
        let (a0, a2, b0, b2) = (
            fixtures::node_a(0),
            fixtures::node_a(2),
            fixtures::node_b(0),
            fixtures::node_b(2),
        );
        let inc = |outcome: &str| {
            let want = format!("{name}{{agency=\"tax\",outcome=\"{outcome}\"}} ");
            let v = |text: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(want.as_str())?.parse::<f64>().ok())
                    .unwrap()
            };
            v(&a2) - v(&a0) + v(&b2) - v(&b0)
        };
        let row = |name: &str| s.agencies.iter().find(|a| a.name == name).unwrap();
        let (sent, failed) = (inc("sent"), inc("failed"));
        assert!((row("tax").notified - sent / 10.0).abs() < 1e-6);
        assert!((row("tax").notify_failed - failed / 10.0).abs() < 1e-6);
        assert!((row("tax").reached.unwrap() - sent / (sent + failed)).abs() < 1e-9);
        assert!(row("tax").confirmed_window > 0.0);
        let insurance = row("insurance");
        assert!(insurance.not_served_rate > 0.0 && insurance.served_window.unwrap() < 1.0);
        assert_eq!(row("tax").not_served_rate, 0.0);
    }

    #[test]
    fn the_lane_backlog_is_the_kafka_nodes_while_it_answers() {
        let s = fixtures::state();
        assert_eq!(s.overview.backlog, Some([320.0, 18_380.0, 6_000.0]));
        assert_eq!(
            s.nodes[1].lag,
            Some(s.overview.backlog.unwrap().iter().sum()),
            "the consumer lag's records, by lane"
        );
        let mut f = fixtures::fleet();
        let one = |scope| Params {
            scope: Some(scope),
            ..fixtures::params()
        };
        assert_eq!(
            f.snapshot(one(0), 10.5, wall(10.5)).overview.backlog,
            None,
            "node 1 is not on Kafka"
        );
        assert!(f
            .snapshot(one(1), 10.5, wall(10.5))
            .overview
            .backlog
            .is_some());
        // Silent past `node_down_after`: its last backlog is not its backlog.
        let later = f.snapshot(fixtures::params(), 25.0, wall(25.0));
        assert!(matches!(later.nodes[1].health, Health::Down { .. }));
        assert_eq!(later.overview.backlog, None);
    }

    #[test]
    fn channels_show_breaker_gateway_and_failures() {
        let s = fixtures::state();
        let names: Vec<&str> = s.channels.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["email", "push", "sms"], "`none` is no channel");
        let sms = s.channels.iter().find(|c| c.name == "sms").unwrap();
        assert_eq!(sms.circuit, Circuit::Open);
        assert_eq!(sms.open_on, ["10.0.0.2:9464"]);
        assert_eq!(sms.gateways, ["simulated"]);
        assert!(sms.sent > 0.0 && sms.attempts >= sms.sent * 0.9);
        assert!(sms.failure.is_some_and(|f| f > 0.0 && f < 0.5));
    }
}

#[cfg(test)]
mod inbox_tests {
    use super::*;
    use crate::fixtures::{wall, T0, T2};

    /// A demo scrape with the inbox API's series: `n` calls answered 200,
    /// `n / 10` answered 401 and `n / 100` answered 503, all within 5 ms
    /// but the 5xx ones, which took a second.
    fn with_api(text: &str, n: u64) -> String {
        let mut s = text.to_owned();
        s.push_str("# TYPE karpoosheh_inbox_requests_total counter\n");
        for (status, c) in [("200", n), ("401", n / 10), ("503", n / 100)] {
            s.push_str(&format!(
                "karpoosheh_inbox_requests_total{{route=\"mailbox\",status=\"{status}\"}} {c}\n"
            ));
        }
        s.push_str("# TYPE karpoosheh_inbox_request_seconds histogram\n");
        let fast = n + n / 10;
        for (le, c) in [
            ("0.005", fast),
            ("1", fast + n / 100),
            ("+Inf", fast + n / 100),
        ] {
            s.push_str(&format!(
                "karpoosheh_inbox_request_seconds_bucket{{route=\"mailbox\",le=\"{le}\"}} {c}\n"
            ));
        }
        s
    }

    #[test]
    fn the_inbox_api_shows_its_rate_errors_and_p99_only_where_served() {
        let cfg = crate::config::Config {
            targets: vec!["10.0.0.1:9464".into()],
            ..crate::config::Config::default()
        };
        let mut fleet = Fleet::new(&cfg, cfg.targets().unwrap());
        fleet.record(0, 0.0, wall(0.0), Ok(with_api(T0, 1000)));
        fleet.record(0, 10.0, wall(10.0), Ok(with_api(T2, 21_000)));
        let s = fleet.snapshot(crate::fixtures::params(), 10.5, wall(10.5));
        let o = &s.overview;
        // 20,000 more 200s, 2,000 more 401s, 200 more 503s in 10 s.
        assert!(
            (o.api_rate.unwrap() - 2220.0).abs() < 1e-6,
            "{:?}",
            o.api_rate
        );
        assert!((o.api_4xx.unwrap() - 200.0).abs() < 1e-6);
        assert!((o.api_5xx.unwrap() - 20.0).abs() < 1e-6);
        // 200 of 22,200 calls (0.9%) took up to a second: p99 is fast.
        assert!(o.api_p99.unwrap() <= 0.005, "{:?}", o.api_p99);

        let mut plain = Fleet::new(&cfg, cfg.targets().unwrap());
        plain.record(0, 0.0, wall(0.0), Ok(T0.to_owned()));
        plain.record(0, 10.0, wall(10.0), Ok(T2.to_owned()));
        let s = plain.snapshot(crate::fixtures::params(), 10.5, wall(10.5));
        assert_eq!(s.overview.api_rate, None, "no node serves it: no line");
    }
}
