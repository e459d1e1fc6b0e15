//! Time series of one node's scrapes: the values the monitor reads, kept
//! over a sliding window with counter resets already folded in, and the
//! window arithmetic on them (increases, per-second rates, quantiles from
//! histogram buckets, a gauge's slope).
//!
//! Memory is bounded whatever the run time: every scrape is kept for the
//! last `fine_horizon` (the short windows and alerts read those), older
//! ones thin out to one per `coarse_step` up to `retention`.

use std::collections::{HashMap, VecDeque};

use crate::prom::Exposition;
use crate::reads::{Kind, READS};

pub(crate) type SeriesId = usize;

/// One series the monitor keeps: a read with its grouping labels (and a
/// histogram bucket's upper bound).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SeriesInfo {
    pub read: usize,
    pub labels: Box<[Box<str>]>,
    pub le: Option<f64>,
}

impl SeriesInfo {
    pub fn label(&self, i: usize) -> &str {
        self.labels.get(i).map(|s| &**s).unwrap_or("")
    }
}

/// A read, its grouping label values, and a bucket bound's bits.
type SeriesKey = (usize, Box<[Box<str>]>, Option<u64>);

/// Interns series across every node, so one id names the same series on
/// all of them and fleet sums are index-wise.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    infos: Vec<SeriesInfo>,
    index: HashMap<SeriesKey, SeriesId>,
    by_read: Vec<Vec<SeriesId>>,
    reads_by_name: HashMap<&'static str, usize>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry {
            by_read: vec![Vec::new(); READS.len()],
            reads_by_name: READS.iter().enumerate().map(|(i, r)| (r.name, i)).collect(),
            ..Registry::default()
        }
    }

    pub fn len(&self) -> usize {
        self.infos.len()
    }

    pub fn info(&self, id: SeriesId) -> &SeriesInfo {
        &self.infos[id]
    }

    /// Series of one read, in the order they were first seen.
    pub fn of(&self, read: usize) -> &[SeriesId] {
        &self.by_read[read]
    }

    fn intern(&mut self, read: usize, labels: Box<[Box<str>]>, le: Option<f64>) -> SeriesId {
        let key = (read, labels, le.map(f64::to_bits));
        if let Some(&id) = self.index.get(&key) {
            return id;
        }
        let id = self.infos.len();
        self.infos.push(SeriesInfo {
            read,
            labels: key.1.clone(),
            le,
        });
        self.by_read[read].push(id);
        self.index.insert(key, id);
        id
    }

    /// The values one exposition holds for what the monitor reads: one
    /// slot per known series, NaN where this scrape has none. Labels the
    /// monitor does not group by are summed over.
    pub fn extract(&mut self, expo: &Exposition) -> Vec<f64> {
        let mut found: Vec<(SeriesId, f64)> = Vec::new();
        for family in &expo.families {
            let Some(&read) = self.reads_by_name.get(family.name.as_str()) else {
                continue;
            };
            let r = &READS[read];
            for s in &family.samples {
                let le = match (r.kind, s.suffix) {
                    (Kind::Histogram, "_bucket") => match s.label("le").and_then(parse_le) {
                        Some(le) => Some(le),
                        None => continue,
                    },
                    (Kind::HistogramSum, "_sum") => None,
                    (Kind::Histogram | Kind::HistogramSum, _)
                    | (_, "_sum" | "_count" | "_bucket") => continue,
                    _ => None,
                };
                let labels: Box<[Box<str>]> = r
                    .labels
                    .iter()
                    .map(|l| Box::from(s.label(l).unwrap_or("")))
                    .collect();
                let id = self.intern(read, labels, le);
                found.push((id, s.value));
            }
        }
        let mut values = vec![f64::NAN; self.len()];
        for (id, v) in found {
            let slot = &mut values[id];
            *slot = if slot.is_nan() { v } else { *slot + v };
        }
        values
    }
}

fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        _ => s.parse().ok(),
    }
}

/// One scrape, as kept: counters made monotonic across resets, gauges as
/// read (NaN when absent).
#[derive(Debug, Clone)]
pub(crate) struct Point {
    /// Seconds on the monitor's clock.
    pub t: f64,
    values: Vec<f64>,
}

impl Point {
    /// A counter's adjusted value (absent = 0) or a gauge's value (absent = None).
    pub fn get(&self, id: SeriesId, cumulative: bool) -> Option<f64> {
        match self.values.get(id).copied() {
            Some(v) if !v.is_nan() => Some(v),
            _ if cumulative => Some(0.0),
            _ => None,
        }
    }
}

/// Retention of a node's points.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retention {
    /// Every point younger than this is kept.
    pub fine_horizon: f64,
    /// Older points are kept one per this many seconds.
    pub coarse_step: f64,
    /// Nothing older than this is kept.
    pub retention: f64,
}

/// A node's points, oldest first.
#[derive(Debug)]
pub(crate) struct History {
    coarse: VecDeque<Point>,
    fine: VecDeque<Point>,
    keep: Retention,
    prev_raw: Vec<f64>,
    offset: Vec<f64>,
}

impl History {
    pub fn new(keep: Retention) -> History {
        History {
            coarse: VecDeque::new(),
            fine: VecDeque::new(),
            keep,
            prev_raw: Vec::new(),
            offset: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.coarse.len() + self.fine.len()
    }

    pub fn get(&self, i: usize) -> &Point {
        if i < self.coarse.len() {
            &self.coarse[i]
        } else {
            &self.fine[i - self.coarse.len()]
        }
    }

    pub fn latest(&self) -> Option<&Point> {
        self.fine.back().or(self.coarse.back())
    }

    /// Adds a scrape taken at `t` (later than the previous one).
    ///
    /// Counter resets are handled as Prometheus' `rate()` does: a counter
    /// lower than before restarted from zero, so everything it shows now is
    /// new. The adjusted value carries the old total forward, so window
    /// increases never go negative and a thinned-out history loses no reset.
    pub fn push(&mut self, t: f64, raw: Vec<f64>, registry: &Registry) {
        if self.latest().is_some_and(|p| p.t >= t) {
            return;
        }
        self.prev_raw.resize(raw.len(), 0.0);
        self.offset.resize(raw.len(), 0.0);
        let mut values = raw;
        for (id, v) in values.iter_mut().enumerate() {
            if !READS[registry.info(id).read].kind.cumulative() {
                continue;
            }
            let r = if v.is_nan() { 0.0 } else { *v };
            if r < self.prev_raw[id] {
                self.offset[id] += self.prev_raw[id];
            }
            self.prev_raw[id] = r;
            *v = r + self.offset[id];
        }
        self.fine.push_back(Point { t, values });
        while let Some(old) = self.fine.front() {
            if old.t >= t - self.keep.fine_horizon {
                break;
            }
            let old = self.fine.pop_front().expect("front exists");
            let due = self
                .coarse
                .back()
                .is_none_or(|c| old.t - c.t >= self.keep.coarse_step);
            if due {
                self.coarse.push_back(old);
            }
        }
        while self
            .coarse
            .front()
            .is_some_and(|c| c.t < t - self.keep.retention)
        {
            self.coarse.pop_front();
        }
    }

    /// Index of the latest point at or before `t`.
    pub fn index_at_or_before(&self, t: f64) -> Option<usize> {
        let n = self.len();
        if n == 0 || self.get(0).t > t {
            return None;
        }
        // Binary search over the two halves as one sequence.
        let (mut lo, mut hi) = (0, n);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if self.get(mid).t <= t {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(lo)
    }

    /// The two points bounding the window `(end - span, end]`: the latest
    /// at or before `end`, and the latest at or before `end - span` (the
    /// oldest point when the history is shorter than the span). None
    /// without two distinct points.
    pub fn window(&self, end: f64, span: f64) -> Option<(&Point, &Point)> {
        let e = self.index_at_or_before(end)?;
        let s = self.index_at_or_before(end - span).unwrap_or(0);
        (s < e).then(|| (self.get(s), self.get(e)))
    }

    /// Per-bucket rates of `value` over `(end - span, end]` in `buckets`
    /// equal slices: each slice shows the rate of the scrape interval that
    /// covers it, so slices narrower than the scrape interval show no gaps.
    pub fn rate_series(
        &self,
        end: f64,
        span: f64,
        buckets: usize,
        value: &dyn Fn(&Point) -> f64,
    ) -> Vec<Option<f64>> {
        let step = span / buckets as f64;
        (0..buckets)
            .map(|i| {
                let from = end - span + step * i as f64;
                let to = from + step;
                let a = self.index_at_or_before(from)?;
                let b = match self.index_at_or_before(to) {
                    Some(b) if b > a => b,
                    _ if a + 1 < self.len() && self.get(a + 1).t <= end => a + 1,
                    _ => return None,
                };
                let (pa, pb) = (self.get(a), self.get(b));
                Some(((value(pb) - value(pa)) / (pb.t - pa.t)).max(0.0))
            })
            .collect()
    }

    /// A gauge's value at the end of each of `buckets` slices of the window.
    pub fn gauge_series(
        &self,
        end: f64,
        span: f64,
        buckets: usize,
        value: &dyn Fn(&Point) -> Option<f64>,
    ) -> Vec<Option<f64>> {
        let step = span / buckets as f64;
        (0..buckets)
            .map(|i| {
                let to = end - span + step * (i + 1) as f64;
                value(self.get(self.index_at_or_before(to)?))
            })
            .collect()
    }

    /// Least-squares slope (per second) of a gauge over `(end - span, end]`;
    /// None with fewer than three points.
    pub fn slope(&self, end: f64, span: f64, value: &dyn Fn(&Point) -> Option<f64>) -> Option<f64> {
        let e = self.index_at_or_before(end)?;
        let s = self.index_at_or_before(end - span).map_or(0, |i| i + 1);
        let pts: Vec<(f64, f64)> = (s..=e)
            .filter_map(|i| {
                let p = self.get(i);
                value(p).map(|v| (p.t, v))
            })
            .collect();
        slope(&pts)
    }
}

/// Least-squares slope of `(t, v)` points; None with fewer than three.
pub(crate) fn slope(pts: &[(f64, f64)]) -> Option<f64> {
    if pts.len() < 3 {
        return None;
    }
    let n = pts.len() as f64;
    let mt = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let mv = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let num: f64 = pts.iter().map(|p| (p.0 - mt) * (p.1 - mv)).sum();
    let den: f64 = pts.iter().map(|p| (p.0 - mt).powi(2)).sum();
    (den > 0.0).then(|| num / den)
}

/// `histogram_quantile` as Prometheus computes it: `buckets` are
/// (upper bound, cumulative count) pairs of a window's increases; the
/// result is interpolated linearly inside the bucket holding the rank.
/// A rank in the `+Inf` bucket answers the highest finite bound. None
/// when the window saw no observation.
pub(crate) fn quantile(q: f64, buckets: &mut [(f64, f64)]) -> Option<f64> {
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Increases of separately reset buckets can come out non-monotonic by a
    // hair; cumulative counts must not fall.
    let mut max = 0.0f64;
    for b in buckets.iter_mut() {
        max = max.max(b.1);
        b.1 = max;
    }
    let total = buckets.last()?.1;
    if total <= 0.0 || !buckets.last()?.0.is_infinite() {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let i = buckets.iter().position(|b| b.1 >= rank)?;
    if buckets[i].0.is_infinite() {
        return i.checked_sub(1).map(|j| buckets[j].0);
    }
    let (lower, below) = if i == 0 {
        (0.0f64.min(buckets[0].0), 0.0)
    } else {
        (buckets[i - 1].0, buckets[i - 1].1)
    };
    let inside = buckets[i].1 - below;
    if inside <= 0.0 {
        return Some(buckets[i].0);
    }
    Some(lower + (buckets[i].0 - lower) * (rank - below) / inside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reads;

    fn keep() -> Retention {
        Retention {
            fine_horizon: 60.0,
            coarse_step: 30.0,
            retention: 3600.0,
        }
    }

    /// A registry with one counter series (stored, agency tax) as id 0 and
    /// one gauge (ready) as id 1.
    fn registry() -> Registry {
        let mut r = Registry::new();
        let text = "# TYPE karpoosheh_notices_stored_total counter\n\
                    karpoosheh_notices_stored_total{agency=\"tax\"} 1\n\
                    # TYPE karpoosheh_ready gauge\nkarpoosheh_ready 1\n";
        r.extract(&crate::prom::parse(text).unwrap());
        assert_eq!(r.of(reads::STORED), &[0]);
        assert_eq!(r.of(reads::READY), &[1]);
        r
    }

    fn counter(p: &Point) -> f64 {
        p.get(0, true).unwrap()
    }

    #[test]
    fn a_histogram_sum_is_read_as_one_series_per_label_set() {
        // The rate-limit wait: only `_sum` is kept, per channel; the
        // buckets and the count are not mistaken for it.
        let mut r = Registry::new();
        let text = "# TYPE karpoosheh_channel_rate_limit_wait_seconds histogram\n\
                    karpoosheh_channel_rate_limit_wait_seconds_bucket{channel=\"push\",le=\"0.5\"} 3\n\
                    karpoosheh_channel_rate_limit_wait_seconds_bucket{channel=\"push\",le=\"+Inf\"} 4\n\
                    karpoosheh_channel_rate_limit_wait_seconds_sum{channel=\"push\"} 1.25\n\
                    karpoosheh_channel_rate_limit_wait_seconds_count{channel=\"push\"} 4\n\
                    karpoosheh_channel_rate_limit_wait_seconds_sum{channel=\"sms\"} 0\n\
                    karpoosheh_channel_rate_limit_wait_seconds_count{channel=\"sms\"} 0\n";
        let values = r.extract(&crate::prom::parse(text).unwrap());
        let ids = r.of(reads::CH_RATE_LIMITED).to_vec();
        assert_eq!(ids.len(), 2, "one series per channel");
        let by_channel: Vec<(String, f64)> = ids
            .iter()
            .map(|&id| (r.info(id).labels[0].to_string(), values[id]))
            .collect();
        assert!(
            by_channel.contains(&("push".into(), 1.25)),
            "{by_channel:?}"
        );
        assert!(by_channel.contains(&("sms".into(), 0.0)), "{by_channel:?}");
    }

    #[test]
    fn rate_over_a_window_is_increase_over_time() {
        let reg = registry();
        let mut h = History::new(keep());
        for (t, v) in [(0.0, 100.0), (2.0, 120.0), (4.0, 160.0), (6.0, 200.0)] {
            h.push(t, vec![v, 1.0], &reg);
        }
        let (a, b) = h.window(6.0, 4.0).unwrap();
        assert_eq!((a.t, b.t), (2.0, 6.0));
        assert_eq!((counter(b) - counter(a)) / (b.t - a.t), 20.0);
    }

    #[test]
    fn a_counter_reset_counts_what_the_restarted_node_shows() {
        let reg = registry();
        let mut h = History::new(keep());
        // 100 → 150, then the node restarts: 10 → 40.
        for (t, v) in [(0.0, 100.0), (2.0, 150.0), (4.0, 10.0), (6.0, 40.0)] {
            h.push(t, vec![v, 1.0], &reg);
        }
        let (a, b) = h.window(6.0, 6.0).unwrap();
        // +50 before the restart, +10 (from zero) across it, +30 after.
        assert_eq!(counter(b) - counter(a), 90.0);
        // Never negative across the reset itself.
        let (a, b) = h.window(4.0, 2.0).unwrap();
        assert_eq!(counter(b) - counter(a), 10.0);
    }

    #[test]
    fn a_series_missing_after_a_restart_counts_as_a_reset_to_zero() {
        let reg = registry();
        let mut h = History::new(keep());
        h.push(0.0, vec![100.0, 1.0], &reg);
        h.push(2.0, vec![f64::NAN, f64::NAN], &reg);
        h.push(4.0, vec![5.0, 1.0], &reg);
        let (a, b) = h.window(4.0, 4.0).unwrap();
        assert_eq!(counter(b) - counter(a), 5.0);
        assert_eq!(
            h.get(1).get(1, false),
            None,
            "an absent gauge is unknown, not zero"
        );
    }

    #[test]
    fn resets_survive_thinning_of_old_points() {
        let reg = registry();
        let mut h = History::new(Retention {
            fine_horizon: 10.0,
            coarse_step: 100.0,
            retention: 1000.0,
        });
        // Rises by 10 per second with a restart at t=50 (back to 0).
        for t in 0..200 {
            let v = if t < 50 {
                10.0 * t as f64
            } else {
                10.0 * (t - 50) as f64
            };
            h.push(t as f64, vec![v, 1.0], &reg);
        }
        assert!(h.len() < 20, "old points thinned: {}", h.len());
        let (a, b) = h.window(199.0, 199.0).unwrap();
        assert_eq!(a.t, 0.0);
        assert_eq!(counter(b) - counter(a), 490.0 + 1490.0);
    }

    #[test]
    fn retention_bounds_memory_for_hours_of_scrapes() {
        let reg = registry();
        let keep = Retention {
            fine_horizon: 900.0,
            coarse_step: 30.0,
            retention: 6.0 * 3600.0,
        };
        let mut h = History::new(keep);
        for i in 0..(12 * 3600 / 2) {
            h.push(i as f64 * 2.0, vec![i as f64, 1.0], &reg);
        }
        // 450 fine + 720 coarse, give or take the edges.
        assert!(h.len() <= 450 + 721 + 1, "{}", h.len());
        assert!(h.get(0).t >= 6.0 * 3600.0 - 2.0);
    }

    #[test]
    fn short_history_uses_what_it_has() {
        let reg = registry();
        let mut h = History::new(keep());
        h.push(10.0, vec![0.0, 1.0], &reg);
        assert!(h.window(10.0, 60.0).is_none(), "one point has no rate");
        h.push(12.0, vec![4.0, 1.0], &reg);
        let (a, b) = h.window(12.0, 60.0).unwrap();
        assert_eq!((a.t, b.t), (10.0, 12.0));
    }

    #[test]
    fn rate_series_has_no_gaps_when_slices_are_narrower_than_scrapes() {
        let reg = registry();
        let mut h = History::new(keep());
        for i in 0..=10 {
            h.push(i as f64 * 2.0, vec![i as f64 * 20.0, 1.0], &reg);
        }
        let s = h.rate_series(20.0, 10.0, 20, &counter);
        assert_eq!(s.len(), 20);
        assert!(s.iter().all(|v| *v == Some(10.0)), "{s:?}");
        // Before the first point there is nothing to show.
        let early = h.rate_series(4.0, 10.0, 5, &counter);
        assert_eq!(early[0], None);
        assert_eq!(early[4], Some(10.0));
    }

    #[test]
    fn quantile_interpolates_like_prometheus() {
        // 100 observations: 50 ≤ 0.1, 40 in (0.1, 0.5], 10 in (0.5, 1].
        let mut b = vec![
            (0.1, 50.0),
            (0.5, 90.0),
            (1.0, 100.0),
            (f64::INFINITY, 100.0),
        ];
        assert!((quantile(0.5, &mut b).unwrap() - 0.1).abs() < 1e-9);
        // rank 99 lies 9/10 into (0.5, 1].
        assert!((quantile(0.99, &mut b).unwrap() - 0.95).abs() < 1e-9);
        // rank 25 lies halfway into [0, 0.1].
        assert!((quantile(0.25, &mut b).unwrap() - 0.05).abs() < 1e-9);
    }

    #[test]
    fn quantile_in_the_inf_bucket_is_the_highest_finite_bound() {
        let mut b = vec![(0.1, 10.0), (1.0, 10.0), (f64::INFINITY, 20.0)];
        assert_eq!(quantile(0.99, &mut b), Some(1.0));
    }

    #[test]
    fn quantile_of_nothing_is_none() {
        assert_eq!(
            quantile(0.99, &mut [(0.1, 0.0), (f64::INFINITY, 0.0)]),
            None
        );
        assert_eq!(quantile(0.99, &mut []), None);
    }

    #[test]
    fn quantile_tolerates_non_monotonic_counts() {
        let mut b = vec![(0.1, 10.0), (0.5, 9.0), (f64::INFINITY, 10.0)];
        assert!(quantile(0.99, &mut b).unwrap() <= 0.1);
    }

    #[test]
    fn slope_of_a_rising_gauge_is_positive() {
        let pts: Vec<(f64, f64)> = (0..10)
            .map(|i| (i as f64, 100.0 + 5.0 * i as f64))
            .collect();
        assert!((slope(&pts).unwrap() - 5.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 7.0)).collect();
        assert_eq!(slope(&flat), Some(0.0));
        assert_eq!(slope(&pts[..2]), None);
    }

    #[test]
    fn labels_not_grouped_by_are_summed() {
        let mut r = Registry::new();
        let text = "# TYPE karpoosheh_notifications_total counter\n\
            karpoosheh_notifications_total{channel=\"sms\",round=\"1\",outcome=\"sent\",to=\"recipient\"} 5\n\
            karpoosheh_notifications_total{channel=\"sms\",round=\"2\",outcome=\"sent\",to=\"recipient\"} 7\n\
            karpoosheh_notifications_total{channel=\"sms\",round=\"1\",outcome=\"sent\",to=\"representative\"} 1\n";
        let v = r.extract(&crate::prom::parse(text).unwrap());
        assert_eq!(r.of(reads::NOTIFICATIONS).len(), 1);
        let id = r.of(reads::NOTIFICATIONS)[0];
        assert_eq!(&*r.info(id).labels, &[Box::from("sms"), Box::from("sent")]);
        assert_eq!(v[id], 13.0);
    }

    #[test]
    fn histogram_buckets_are_series_with_their_bound() {
        let mut r = Registry::new();
        let text = "# TYPE karpoosheh_store_write_seconds histogram\n\
            karpoosheh_store_write_seconds_bucket{le=\"0.1\"} 3\n\
            karpoosheh_store_write_seconds_bucket{le=\"+Inf\"} 4\n\
            karpoosheh_store_write_seconds_sum 1\nkarpoosheh_store_write_seconds_count 4\n";
        let v = r.extract(&crate::prom::parse(text).unwrap());
        let ids = r.of(reads::STORE_WRITE_SECONDS);
        assert_eq!(ids.len(), 2, "sum and count are not kept");
        assert_eq!(r.info(ids[1]).le, Some(f64::INFINITY));
        assert_eq!(v[ids[1]], 4.0);
    }
}
