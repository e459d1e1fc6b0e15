//! `[delivery]`: the article-29 follow-up's intervals, quiet hours,
//! retries, workers and retention.

use chrono::{DateTime, FixedOffset, NaiveTime, Timelike, Utc};
use karpoosheh_schemas::HumanDuration;
use serde::{Deserialize, Serialize};

use crate::model::TIMER_SHARDS;

/// Configuration of the article-29 follow-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Run the scheduler (rounds, verdicts, expiry) on this node.
    pub enabled: bool,
    /// Delay before each of the three rounds: round 1 after the notice is
    /// stored, round 2 after round 1, round 3 after round 2.
    pub round_intervals: Vec<HumanDuration>,
    /// After the last round, how long the recipient has to confirm before
    /// the notice is reported `not_served`.
    pub not_served_after: HumanDuration,
    /// Local (Tehran, UTC+03:30) hours in which no round is sent, as
    /// `"HH:MM-HH:MM"`; a round falling inside waits for the end. Empty
    /// disables.
    pub quiet_hours: String,
    /// When every channel failed transiently, try the round again after
    /// this long...
    pub round_retry_after: HumanDuration,
    /// ...at most this many times before reporting the round failed.
    pub round_max_retries: u8,
    /// Scheduler threads; timer shards are divided among them.
    pub workers: usize,
    /// Notifications in flight at once per worker (gateways are slow; the
    /// channels' own rate limits still apply).
    pub concurrency: usize,
    /// Due timers taken per scan: one durable write records a scan's work.
    pub batch: usize,
    /// How often an idle worker looks for due timers.
    pub poll_interval: HumanDuration,
    /// How long delivery records and confirmations are kept after the
    /// notice's expiry (1401 art. 10.3: at least six months).
    pub record_retention: HumanDuration,
    /// How long before a notice's response deadline (`respond_by`) a
    /// recipient who has neither opened nor confirmed it is reminded;
    /// `"0s"`: no reminders.
    pub reminder_before: HumanDuration,
}

const DAY: u64 = 24 * 3600;

impl Default for DeliveryConfig {
    fn default() -> Self {
        let d = |s: u64| HumanDuration(std::time::Duration::from_secs(s));
        DeliveryConfig {
            enabled: true,
            // Round 1 at once; round 2 a day later (someone away for a day
            // still gets a fresh reminder); round 3 three days after that,
            // so the three span most of a working week.
            round_intervals: vec![d(0), d(DAY), d(3 * DAY)],
            // Four more days after round 3: eight days in all, close to the
            // ten-day window of paper service without delaying the agency's
            // paper fallback needlessly.
            not_served_after: d(4 * DAY),
            // No SMS at night.
            quiet_hours: "22:00-07:00".into(),
            // Gateway outages are usually minutes long.
            round_retry_after: d(15 * 60),
            round_max_retries: 8,
            workers: 2,
            // Enough to hide ~50 ms gateway latency at a few thousand/s.
            concurrency: 64,
            batch: 512,
            poll_interval: HumanDuration(std::time::Duration::from_millis(200)),
            // Six months and a few days.
            record_retention: d(186 * DAY),
            // Two days: time to act on a court date or a payment's last day.
            reminder_before: d(2 * DAY),
        }
    }
}

impl DeliveryConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.round_intervals.len() != 3 {
            return Err(format!(
                "delivery.round_intervals must have exactly three entries (art. 29: three notifications), not {}",
                self.round_intervals.len()
            ));
        }
        if self.workers == 0 || self.workers > TIMER_SHARDS as usize {
            return Err(format!("delivery.workers must be 1-{TIMER_SHARDS}"));
        }
        if self.concurrency == 0 || self.batch == 0 {
            return Err("delivery.concurrency and delivery.batch must be above zero".into());
        }
        if self.poll_interval.0.is_zero() {
            return Err("delivery.poll_interval must be above zero (e.g. \"200ms\")".into());
        }
        if self.record_retention.0 < std::time::Duration::from_secs(180 * DAY) {
            return Err(
                "delivery.record_retention must be at least 180 days (1401 art. 10.3: traffic data are kept at least six months)"
                    .into(),
            );
        }
        QuietHours::parse(&self.quiet_hours)?;
        Ok(())
    }
}

/// Hours in which no round is sent, in Tehran time (UTC+03:30, no DST
/// since 1401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    start: NaiveTime,
    end: NaiveTime,
}

impl QuietHours {
    /// `""` → `None`; `"22:00-07:00"` → the window.
    pub fn parse(s: &str) -> Result<Option<QuietHours>, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        let bad = || format!("delivery.quiet_hours must look like \"22:00-07:00\", not {s:?}");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let t = |x: &str| NaiveTime::parse_from_str(x.trim(), "%H:%M").map_err(|_| bad());
        let (start, end) = (t(a)?, t(b)?);
        if start == end {
            return Err(bad());
        }
        Ok(Some(QuietHours { start, end }))
    }

    fn tehran() -> FixedOffset {
        FixedOffset::east_opt(karpoosheh_schemas::TEHRAN_UTC_OFFSET_SECS).expect("valid offset")
    }

    /// The first moment at or after `at` outside the window.
    pub fn next_allowed(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let local = at.with_timezone(&Self::tehran());
        let t = local.time();
        let inside = if self.start < self.end {
            t >= self.start && t < self.end
        } else {
            t >= self.start || t < self.end
        };
        if !inside {
            return at;
        }
        let mut day = local.date_naive();
        if t >= self.end && self.start > self.end {
            day = day.succ_opt().unwrap_or(day);
        }
        let end = day
            .and_time(self.end)
            .and_local_timezone(Self::tehran())
            .single()
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or(at);
        debug_assert!(end.time().nanosecond() == 0);
        end.max(at)
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn quiet_hours_push_night_rounds_to_the_morning_in_tehran() {
        let q = QuietHours::parse("22:00-07:00").unwrap().unwrap();
        // 12:00 UTC = 15:30 Tehran: allowed.
        assert_eq!(
            q.next_allowed(utc("2026-03-01T12:00:00Z")),
            utc("2026-03-01T12:00:00Z")
        );
        // 20:00 UTC = 23:30 Tehran: next 07:00 Tehran = 03:30 UTC next day.
        assert_eq!(
            q.next_allowed(utc("2026-03-01T20:00:00Z")),
            utc("2026-03-02T03:30:00Z")
        );
        // 01:00 UTC = 04:30 Tehran: 07:00 Tehran the same day.
        assert_eq!(
            q.next_allowed(utc("2026-03-02T01:00:00Z")),
            utc("2026-03-02T03:30:00Z")
        );
        // A daytime window.
        let q = QuietHours::parse("12:00-13:00").unwrap().unwrap();
        assert_eq!(
            q.next_allowed(utc("2026-03-01T08:40:00Z")),
            utc("2026-03-01T09:30:00Z")
        );
        assert_eq!(QuietHours::parse("").unwrap(), None);
        assert!(QuietHours::parse("22-07").is_err());
    }

    #[test]
    fn defaults_validate_and_the_law_needs_three_rounds() {
        DeliveryConfig::default().validate().unwrap();
        let mut c = DeliveryConfig::default();
        c.round_intervals.pop();
        assert!(c.validate().unwrap_err().contains("three"));
        let c = DeliveryConfig {
            record_retention: HumanDuration(std::time::Duration::from_secs(30 * DAY)),
            ..DeliveryConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("six months"));
    }
}
