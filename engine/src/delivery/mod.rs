//! Article 29: every stored notice is followed to a legal outcome.
//!
//! The recipient is told three times, at the configured intervals, on
//! their own channels (and their representatives too, art. 22); two
//! distinct confirmations make the notice *actually served* at the time of
//! the second; after the last round plus a grace period with fewer than two
//! the agency is told `not_served`; a notice whose retention expiry passes
//! first is `expired`. Every step becomes a receipt for the agency.
//!
//! What it guarantees:
//! - The follow-up of a notice lives in the store, not in memory: the
//!   store writes each new notice together with its [`DeliveryRecord`] and
//!   its first timer ([`Timer`]), atomically, so a stored notice is never
//!   forgotten and ten million pending rounds cost disk, not RAM.
//! - Every state change, its timers and its receipts are one atomic,
//!   durable store write ([`DeliveryWrite`]); receipts go out through the
//!   store's outbox, so none is lost to a crash (they are at least once).
//! - A round is sent, then recorded. A crash between the two (at most one
//!   scan batch of sends, `delivery.batch`) sends those rounds again after
//!   the restart, with the same idempotency key so a gateway that
//!   deduplicates drops the copy. Recording first would instead lose a
//!   round on a crash, and the law asks for three.
//!
//! Modules: [`scheduler`] (the durable timer scan and the rounds),
//! [`confirm`] (confirmations), [`clock`] (real and test clocks),
//! [`simulate`] (the demo's simulated recipients and registry).

pub mod clock;
pub mod confirm;
pub mod outbox;
pub mod scheduler;
pub mod simulate;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Duration as ChronoDuration, FixedOffset, NaiveTime, Timelike, Utc};
use karpoosheh_schemas::{
    AccessLevel, AgencyId, Channel, HumanDuration, MailboxId, MailboxStatus, NoticeKind, Receipt,
    TrackingCode,
};
use serde::{Deserialize, Serialize};

pub use clock::{Clock, ManualClock, SystemClock};
pub use confirm::ConfirmOutcome;
pub use outbox::{Outbox, OutboxError};
pub use scheduler::{
    Notify, Registry, Scheduler, SchedulerError, SchedulerHandle, SentNotification, StoreRegistry,
};

/// Timers are spread over this many shards, fixed in the key layout so a
/// change of `delivery.workers` never strands a timer.
pub const TIMER_SHARDS: u8 = 16;

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
        FixedOffset::east_opt(3 * 3600 + 1800).expect("valid offset")
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

/// Where a notice stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
// Externally tagged: the store's compact format (postcard) cannot read
// internally tagged enums.
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Rounds are running.
    Scheduled,
    /// The mailbox has never been activated: kept, nobody to notify; the
    /// rounds start when the person registers.
    AwaitingActivation,
    /// The mailbox cannot be notified in its state (deceased, dissolved, or
    /// incapacitated without a representative).
    Unreachable { status: MailboxStatus },
    /// Confirmed twice: actually served (art. 29) at `at`.
    Served { at: DateTime<Utc> },
    /// Every round done, fewer than two confirmations.
    NotServed { at: DateTime<Utc> },
    /// Retention expiry passed before it was served.
    Expired { at: DateTime<Utc> },
}

impl DeliveryState {
    pub fn name(&self) -> &'static str {
        match self {
            DeliveryState::Scheduled => "scheduled",
            DeliveryState::AwaitingActivation => "awaiting_activation",
            DeliveryState::Unreachable { .. } => "unreachable",
            DeliveryState::Served { .. } => "served",
            DeliveryState::NotServed { .. } => "not_served",
            DeliveryState::Expired { .. } => "expired",
        }
    }
}

/// The next action the scheduler owes a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Send round `round` (1-3); `retry` counts transient-failure retries.
    Round { round: u8, retry: u8 },
    /// Decide served / not served after the last round's grace period.
    Verdict,
}

/// The pending action and when it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub due_ms: i64,
    pub action: Action,
}

/// One notification of one round to one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundDelivery {
    pub to_representative: bool,
    /// The channel that accepted it, or `None` when none did.
    pub channel: Option<Channel>,
    /// Why it failed, when it did (a stable code).
    pub failure: Option<String>,
    pub attempts: u32,
}

/// One round as it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundRecord {
    pub round: u8,
    /// 0 for the first attempt; each transient-failure retry adds one.
    pub retry: u8,
    pub at: DateTime<Utc>,
    pub deliveries: Vec<RoundDelivery>,
}

impl RoundRecord {
    /// Whether the recipient (or, for an incapacitated one, a
    /// representative) was reached: at least one channel accepted.
    pub fn delivered(&self) -> bool {
        self.deliveries.iter().any(|d| d.channel.is_some())
    }
}

/// One confirmation applied to a notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmationRecord {
    pub confirmation_id: String,
    pub by_representative: bool,
    pub confirmed_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
}

/// The legal history of one notice, kept with it and for
/// `delivery.record_retention` after its expiry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub tracking_code: TrackingCode,
    pub agency: AgencyId,
    pub reference: String,
    pub recipient: MailboxId,
    pub kind: NoticeKind,
    /// The notice's title, for the notifications (kept here so a round
    /// never reads the notice's body).
    pub title: String,
    pub min_access_level: AccessLevel,
    #[serde(serialize_with = "karpoosheh_schemas::rfc3339::serialize")]
    pub accepted_at: DateTime<Utc>,
    #[serde(serialize_with = "karpoosheh_schemas::rfc3339::serialize")]
    pub expires_at: DateTime<Utc>,
    pub state: DeliveryState,
    pub next: Option<Pending>,
    pub rounds: Vec<RoundRecord>,
    pub confirmations: Vec<ConfirmationRecord>,
    /// Set once the agency was told the mailbox's access level is too low.
    pub access_reported: bool,
    /// Set once the notice's body left the store (expiry).
    pub purged: bool,
}

impl DeliveryRecord {
    /// The record a newly stored notice starts with: round 1 due at once.
    pub fn new(
        code: TrackingCode,
        notice: &karpoosheh_schemas::Notice,
        accepted_at: DateTime<Utc>,
    ) -> Self {
        DeliveryRecord {
            tracking_code: code,
            agency: notice.agency.clone(),
            reference: notice.reference.clone(),
            recipient: notice.recipient,
            kind: notice.kind,
            title: notice.title.clone(),
            min_access_level: notice.min_access_level,
            accepted_at,
            expires_at: notice.expires_at.with_timezone(&Utc),
            state: DeliveryState::Scheduled,
            next: Some(Pending {
                due_ms: accepted_at.timestamp_millis(),
                action: Action::Round { round: 1, retry: 0 },
            }),
            rounds: Vec::new(),
            confirmations: Vec::new(),
            access_reported: false,
            purged: false,
        }
    }

    /// The timers a new record starts with.
    pub fn initial_timers(&self) -> Vec<Timer> {
        let mut t = vec![Timer::expire(
            self.tracking_code,
            self.expires_at.timestamp_millis(),
        )];
        if let Some(p) = self.next {
            t.push(Timer::next(self.tracking_code, p.due_ms));
        }
        t
    }

    /// Whether the state is a final legal outcome.
    pub fn is_final(&self) -> bool {
        matches!(
            self.state,
            DeliveryState::Served { .. }
                | DeliveryState::NotServed { .. }
                | DeliveryState::Expired { .. }
        )
    }

    pub fn receipt(
        &self,
        seq: &str,
        at: DateTime<Utc>,
        event: karpoosheh_schemas::ReceiptEvent,
    ) -> Receipt {
        Receipt::new(
            format!("{}-{seq}", self.tracking_code),
            self.agency.clone(),
            Some(self.reference.clone()),
            at,
            event,
        )
    }
}

/// What a timer does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TimerKind {
    /// The record's `next` action (a round or the verdict).
    Next = 1,
    /// The notice's retention expiry.
    Expire = 2,
    /// The end of the delivery record's own retention.
    Purge = 3,
}

impl TimerKind {
    pub fn from_u8(v: u8) -> Option<TimerKind> {
        match v {
            1 => Some(TimerKind::Next),
            2 => Some(TimerKind::Expire),
            3 => Some(TimerKind::Purge),
            _ => None,
        }
    }
}

/// A durable timer: `(shard, due, tracking code, kind)`, kept in the store
/// ordered by due time within its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timer {
    pub shard: u8,
    pub due_ms: i64,
    pub code: TrackingCode,
    pub kind: TimerKind,
}

impl Timer {
    pub fn shard_of(code: TrackingCode) -> u8 {
        // The low bits of a tracking code are a sequence number: spread well.
        let v = code.as_u64();
        ((v ^ (v >> 16) ^ (v >> 32)) % TIMER_SHARDS as u64) as u8
    }
    fn new(code: TrackingCode, due_ms: i64, kind: TimerKind) -> Timer {
        Timer {
            shard: Timer::shard_of(code),
            due_ms,
            code,
            kind,
        }
    }
    pub fn next(code: TrackingCode, due_ms: i64) -> Timer {
        Timer::new(code, due_ms, TimerKind::Next)
    }
    pub fn expire(code: TrackingCode, due_ms: i64) -> Timer {
        Timer::new(code, due_ms, TimerKind::Expire)
    }
    pub fn purge(code: TrackingCode, due_ms: i64) -> Timer {
        Timer::new(code, due_ms, TimerKind::Purge)
    }
}

/// One atomic change to a notice's follow-up.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeliveryWrite {
    /// The record to put (`None` with `delete_record`: remove it).
    pub record: Option<DeliveryRecord>,
    pub remove_timers: Vec<Timer>,
    pub add_timers: Vec<Timer>,
    /// Receipts for the agency, through the outbox.
    pub receipts: Vec<Receipt>,
    /// Confirmation IDs to remember (deduplication).
    pub confirmation_ids: Vec<(String, TrackingCode)>,
    /// Add (`Some(true)`) or remove (`Some(false)`) the notice from its
    /// mailbox's awaiting-activation index.
    pub awaiting: Option<bool>,
    /// Remove the notice's body and mailbox entry (retention expiry).
    pub purge_notice: bool,
    /// Remove the delivery record, its reference and confirmation IDs
    /// (end of record retention).
    pub delete_record: Option<DeliveryRecord>,
}

/// Moves `next` to a new pending action: the old timer goes, the new comes.
pub(crate) fn reschedule(rec: &mut DeliveryRecord, w: &mut DeliveryWrite, next: Option<Pending>) {
    if let Some(old) = rec.next.take() {
        w.remove_timers
            .push(Timer::next(rec.tracking_code, old.due_ms));
    }
    if let Some(p) = next {
        w.add_timers.push(Timer::next(rec.tracking_code, p.due_ms));
    }
    rec.next = next;
}

/// The notifier the configuration asks for.
pub fn notifier_for(
    cfg: &crate::Config,
) -> Result<std::sync::Arc<dyn Notify>, crate::channel::ChannelError> {
    Ok(std::sync::Arc::new(
        crate::channel::Dispatcher::from_config(&cfg.channels)?,
    ))
}

/// The legal history of a notice, for `karpoosheh notice`: outcome,
/// rounds with their channels, confirmations, what is pending.
pub fn render_history(rec: &DeliveryRecord) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let t = |d: &DateTime<Utc>| d.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let outcome = match &rec.state {
        DeliveryState::Scheduled => "in progress: rounds running".to_owned(),
        DeliveryState::AwaitingActivation => {
            "waiting: the mailbox is not activated; rounds start when the person registers"
                .to_owned()
        }
        DeliveryState::Unreachable { status } => {
            format!(
                "unreachable: mailbox {}",
                serde_json::to_value(status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )
        }
        DeliveryState::Served { at } => format!("SERVED (art. 29) at {}", t(at)),
        DeliveryState::NotServed { at } => format!(
            "NOT SERVED: fewer than two confirmations after every round (decided {})",
            t(at)
        ),
        DeliveryState::Expired { at } => format!("EXPIRED before service, at {}", t(at)),
    };
    let _ = writeln!(s, "legal outcome   {outcome}");
    for r in &rec.rounds {
        let attempt = if r.retry > 0 {
            format!(" (retry {})", r.retry)
        } else {
            String::new()
        };
        for d in &r.deliveries {
            let who = if d.to_representative {
                "representative"
            } else {
                "recipient"
            };
            let what = match (&d.channel, &d.failure) {
                (Some(c), _) => format!("sent by {}", crate::channel::channel_label(*c)),
                (None, Some(f)) => format!("failed: {f}"),
                (None, None) => "failed".to_owned(),
            };
            let _ = writeln!(
                s,
                "round {}{attempt:<10} {}  to {who:<15} {what} ({} attempt(s))",
                r.round,
                t(&r.at),
                d.attempts
            );
        }
        if r.deliveries.is_empty() {
            let _ = writeln!(
                s,
                "round {}{attempt:<10} {}  nobody to notify",
                r.round,
                t(&r.at)
            );
        }
    }
    for (i, c) in rec.confirmations.iter().enumerate() {
        let by = if c.by_representative {
            "a representative"
        } else {
            "the recipient"
        };
        let _ = writeln!(
            s,
            "confirmation {}  {}  by {by} (received {}; id {})",
            i + 1,
            t(&c.confirmed_at),
            t(&c.received_at),
            c.confirmation_id
        );
    }
    if let Some(p) = &rec.next {
        let what = match p.action {
            Action::Round { round, retry: 0 } => format!("round {round}"),
            Action::Round { round, retry } => format!("round {round}, retry {retry}"),
            Action::Verdict => "verdict (served / not served)".to_owned(),
        };
        let due = DateTime::from_timestamp_millis(p.due_ms).unwrap_or_default();
        let _ = writeln!(s, "next            {what} at {}", t(&due));
    }
    if rec.purged {
        let _ = writeln!(s, "retention       the notice itself left the store at its expiry ({}); this history is kept", t(&rec.expires_at));
    }
    s
}

pub(crate) fn add(at: DateTime<Utc>, d: std::time::Duration) -> DateTime<Utc> {
    at + ChronoDuration::from_std(d).unwrap_or(ChronoDuration::MAX)
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

    #[test]
    fn timer_shards_spread_sequential_codes() {
        let mut counts = [0u32; TIMER_SHARDS as usize];
        for seq in 0..1600u16 {
            let code = TrackingCode::from_parts(1_760_000_000_000 + seq as i64 / 7, 3, seq);
            counts[Timer::shard_of(code) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 50), "{counts:?}");
    }
}
