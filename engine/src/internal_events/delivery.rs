//! Events of the article-29 follow-up: rounds, outcomes, confirmations,
//! scheduler scans and its store errors, receipts published.

use std::time::Duration;

use karpoosheh_schemas::{AgencyId, MailboxStatus};
use metrics::{counter, gauge, histogram};

use super::agency_label;
use crate::metric_names as m;

/// One attempt of one round, as recorded.
pub struct RoundFinished {
    pub agency: AgencyId,
    pub round: u8,
    pub retry: u8,
    /// (channel or `none`, sent?, to a representative?) per delivery.
    pub deliveries: Vec<(&'static str, bool, bool)>,
}

fn round_label(r: u8) -> &'static str {
    match r {
        1 => "1",
        2 => "2",
        3 => "3",
        _ => "other",
    }
}

/// What the scheduler decided for one notice, counted after the write.
pub enum DeliveryOutcome {
    Round(RoundFinished),
    NotServed {
        agency: AgencyId,
    },
    /// A round put off to its agency's next slot (`rounds_per_second`).
    Paced {
        agency: AgencyId,
    },
    Expired {
        agency: AgencyId,
    },
    /// A scheduled notice landed in its mailbox.
    Released {
        agency: AgencyId,
    },
    /// A scheduled notice cancelled by its agency before it landed.
    Cancelled {
        agency: AgencyId,
    },
    /// A response deadline's reminder: `sent`, `failed` or `skipped`
    /// (opened or confirmed already, or no longer followed).
    Reminder {
        outcome: &'static str,
    },
    Unreachable {
        status: MailboxStatus,
    },
}

impl DeliveryOutcome {
    pub fn emit(self) {
        match self {
            DeliveryOutcome::Round(r) => {
                if r.retry > 0 {
                    counter!(m::ROUND_RETRIES, "round" => round_label(r.round)).increment(1);
                }
                let agency = agency_label(Some(&r.agency));
                for (channel, sent, rep) in r.deliveries {
                    counter!(m::AGENCY_NOTIFICATIONS,
                        "agency" => agency.clone(),
                        "outcome" => if sent { "sent" } else { "failed" })
                    .increment(1);
                    counter!(m::NOTIFICATIONS,
                        "channel" => channel,
                        "round" => round_label(r.round),
                        "outcome" => if sent { "sent" } else { "failed" },
                        "to" => if rep { "representative" } else { "recipient" })
                    .increment(1);
                }
            }
            DeliveryOutcome::NotServed { agency } => {
                counter!(m::NOTICES_NOT_SERVED, "agency" => agency_label(Some(&agency)))
                    .increment(1)
            }
            DeliveryOutcome::Paced { agency } => {
                counter!(m::ROUNDS_PACED, "agency" => agency_label(Some(&agency))).increment(1)
            }
            DeliveryOutcome::Expired { agency } => {
                counter!(m::NOTICES_EXPIRED, "agency" => agency_label(Some(&agency))).increment(1)
            }
            DeliveryOutcome::Released { agency } => {
                counter!(m::NOTICES_RELEASED, "agency" => agency_label(Some(&agency))).increment(1)
            }
            DeliveryOutcome::Cancelled { agency } => {
                counter!(m::NOTICES_CANCELLED, "agency" => agency_label(Some(&agency))).increment(1)
            }
            DeliveryOutcome::Reminder { outcome } => {
                counter!(m::REMINDERS, "outcome" => outcome).increment(1)
            }
            DeliveryOutcome::Unreachable { status } => {
                let s = match status {
                    MailboxStatus::Active => "active",
                    MailboxStatus::NotActivated => "not_activated",
                    MailboxStatus::Deceased => "deceased",
                    MailboxStatus::Incapacitated => "incapacitated",
                    MailboxStatus::Dissolved => "dissolved",
                };
                counter!(m::MAILBOX_UNREACHABLE, "status" => s).increment(1)
            }
        }
    }
}

/// A notice became served.
pub struct NoticeServed<'a> {
    pub agency: &'a AgencyId,
    pub after: Duration,
}

impl NoticeServed<'_> {
    pub fn emit(self) {
        counter!(m::NOTICES_SERVED, "agency" => agency_label(Some(self.agency))).increment(1);
        histogram!(m::TIME_TO_SERVED_SECONDS).record(self.after.as_secs_f64());
    }
}

/// A confirmation applied to one of `agency`'s notices.
pub struct ConfirmationApplied<'a> {
    pub agency: &'a AgencyId,
}

impl ConfirmationApplied<'_> {
    pub fn emit(self) {
        counter!(m::AGENCY_CONFIRMATIONS, "agency" => agency_label(Some(self.agency))).increment(1);
    }
}

/// One confirmation handled: `applied`, `duplicate` or `rejected`, with
/// the rejection's reason code (`none` otherwise).
pub struct ConfirmationHandled {
    pub outcome: &'static str,
    pub reason: &'static str,
}

impl ConfirmationHandled {
    pub fn emit(self) {
        let (outcome, reason) = (self.outcome, self.reason);
        counter!(m::CONFIRMATIONS, "outcome" => outcome, "reason" => reason).increment(1);
    }
}

/// One scheduler scan.
pub struct SchedulerScanned {
    pub timers: usize,
    pub lag: Duration,
    pub elapsed: Duration,
}

impl SchedulerScanned {
    pub fn emit(self) {
        counter!(m::SCHEDULER_TIMERS).increment(self.timers as u64);
        gauge!(m::SCHEDULER_LAG_SECONDS).set(self.lag.as_secs_f64());
        histogram!(m::SCHEDULER_SCAN_SECONDS).record(self.elapsed.as_secs_f64());
    }
}

/// Receipts published from the outbox.
pub struct ReceiptsPublished {
    pub count: usize,
}

impl ReceiptsPublished {
    pub fn emit(self) {
        counter!(m::RECEIPTS_PUBLISHED).increment(self.count as u64);
    }
}

/// A scheduler pass interrupted by a store error; retried after `after`.
pub struct StoreRetry<'a> {
    pub worker: usize,
    /// Which of the worker's threads: `urgent`, or `normal and bulk`.
    pub lanes: &'static str,
    pub error: &'a dyn std::error::Error,
    pub after: Duration,
}

impl StoreRetry<'_> {
    pub fn emit(self) {
        counter!(m::SCHEDULER_STORE_ERRORS).increment(1);
        tracing::warn!(worker = self.worker, lanes = self.lanes, error = %self.error, retry_in = ?self.after, "a scheduler pass failed on a store error; retrying from the start of its shards");
    }
}

/// A scheduler worker ended because the store refuses every write
/// (`StoreError::is_fatal`).
pub struct SchedulerStoreFailed<'a> {
    pub worker: usize,
    /// Which of the worker's threads: `urgent`, or `normal and bulk`.
    pub lanes: &'static str,
    pub error: &'a dyn std::error::Error,
}

impl SchedulerStoreFailed<'_> {
    pub fn emit(self) {
        counter!(m::SCHEDULER_STORE_ERRORS).increment(1);
        tracing::error!(worker = self.worker, lanes = self.lanes, error = %self.error, "a scheduler pass failed and the store refuses further writes; the scheduler stops and the node with it: restart the engine once the disk is fixed");
    }
}

/// How late a lane's oldest due timer was in a worker's last pass over
/// its shards (zero when none was due).
pub struct LaneLag {
    pub worker: usize,
    pub lane: karpoosheh_schemas::Priority,
    pub lag: Duration,
}

impl LaneLag {
    pub fn emit(self) {
        gauge!(m::SCHEDULER_LANE_LAG_SECONDS,
            "priority" => self.lane.as_str(),
            "worker" => self.worker.to_string())
        .set(self.lag.as_secs_f64());
    }
}

/// Zero-initialises the follow-up's counters so rate() sees zeros.
pub struct SchedulerStarted {
    pub workers: usize,
}

impl SchedulerStarted {
    pub fn emit(self) {
        counter!(m::SCHEDULER_TIMERS).increment(0);
        counter!(m::RECEIPTS_PUBLISHED).increment(0);
        counter!(m::ROUND_RETRIES).increment(0);
        counter!(m::NOTICES_SERVED).increment(0);
        counter!(m::NOTICES_NOT_SERVED).increment(0);
        counter!(m::NOTICES_EXPIRED).increment(0);
        counter!(m::NOTICES_RELEASED).increment(0);
        counter!(m::NOTICES_CANCELLED).increment(0);
        counter!(m::ROUNDS_PACED).increment(0);
        for outcome in ["sent", "failed", "skipped"] {
            counter!(m::REMINDERS, "outcome" => outcome).increment(0);
        }
        counter!(m::MAILBOX_UNREACHABLE).increment(0);
        counter!(m::SCHEDULER_STORE_ERRORS).increment(0);
        gauge!(m::SCHEDULER_LAG_SECONDS).set(0.0);
        for worker in 0..self.workers {
            for lane in karpoosheh_schemas::Priority::ALL {
                LaneLag {
                    worker,
                    lane,
                    lag: Duration::ZERO,
                }
                .emit();
            }
        }
        tracing::info!(workers = self.workers, "delivery scheduler started");
    }
}

/// Applying a batch of confirmations was interrupted by a store error; the
/// batch is handed in again after `retry_in` (confirmations are idempotent).
/// The store error itself is counted once, by the worker that met it
/// ([`StoreRetry`]), so this event only logs.
pub struct ConfirmationsInterrupted {
    pub retry_in: Duration,
}

impl ConfirmationsInterrupted {
    pub fn emit(self) {
        tracing::warn!(retry_in = ?self.retry_in, "applying confirmations was interrupted by a store error; retrying");
    }
}

/// Notices marked waiting for their mailbox by a round whose profile read
/// came just before the mailbox's new profile: resumed at once.
pub struct NoticesResumed {
    pub count: usize,
}

impl NoticesResumed {
    pub fn emit(self) {
        tracing::info!(
            count = self.count,
            "notices resumed: their mailbox became reachable while their round was under way"
        );
    }
}

/// A restarted node found notices stored before it stopped whose
/// `accepted` may never have gone out: their later events wait until it
/// has (their records come again), or at most `hold`.
pub struct UnansweredAtStart {
    pub after: u64,
    pub through: u64,
    pub hold: Duration,
}

impl UnansweredAtStart {
    pub fn emit(self) {
        tracing::info!(
            after = %karpoosheh_schemas::TrackingCode::from_u64(self.after),
            through = %karpoosheh_schemas::TrackingCode::from_u64(self.through),
            hold = ?self.hold,
            "notices stored before the restart may have no accepted receipt out yet: their later events wait until it is out, or at most the hold"
        );
    }
}

/// The mark of `accepted` receipts out could not be written: a restart
/// holds events longer than it needs to. Nothing is lost.
pub struct AcceptedMarkFailed<'a> {
    pub error: &'a dyn std::error::Error,
}

impl AcceptedMarkFailed<'_> {
    pub fn emit(self) {
        tracing::warn!(error = %self.error, "could not mark the accepted receipts out; a restart will hold events longer than needed");
    }
}
