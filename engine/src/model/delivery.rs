//! The article-29 follow-up as it is stored: a notice's delivery record,
//! its durable timers and the atomic changes the scheduler writes. Plain
//! data with the rules that belong to the data (a new record's first
//! timers, which timer shard a notice belongs to); the scheduler that
//! changes them is `crate::delivery`, the stores that keep them
//! `crate::store`.

use chrono::{DateTime, Utc};
use karpoosheh_schemas::{
    AccessLevel, AgencyId, Channel, MailboxId, MailboxStatus, NoticeKind, Priority, Receipt,
    TrackingCode,
};
use serde::{Deserialize, Serialize};

/// Timers are spread over this many shards, fixed in the key layout so a
/// change of `delivery.workers` never strands a timer. A notice's shard
/// decides which scheduler worker owns it.
pub const TIMER_SHARDS: u8 = 16;

/// Agencies' queues in the normal and in the bulk lane: each agency's
/// timers are in one of them ([`agency_queue`]), and when several queues
/// of a lane have rounds due the scheduler takes from each in turn, in
/// proportion to the `weight`s of their agencies in the registry: one
/// agency's campaign never holds back another's rounds. The urgent lane
/// has one queue (it is small, and reserved its own thread and rate).
pub const AGENCY_QUEUES: u8 = 7;

/// Where timers are kept: one slot per shard and queue. The layout before
/// agencies' queues is kept, so stored timers stay where they are: normal
/// notices' queue 0 is in slots 0-15, urgent notices in 16-31, bulk
/// notices' queue 0 in 32-47. Queues 1-6 of the normal lane follow in
/// 48-143, and of the bulk lane in 144-239. The scheduler reads the urgent
/// slots on a thread of their own, so an urgent notice's round never waits
/// behind a campaign's due rounds.
pub const TIMER_SLOTS: u8 = TIMER_SHARDS * (1 + 2 * AGENCY_QUEUES);

/// One queue of timers: a lane, and in the normal and bulk lanes one of
/// their [`AGENCY_QUEUES`] agencies' queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Queue {
    pub lane: Priority,
    pub index: u8,
}

impl From<Priority> for Queue {
    /// A lane's queue 0 (where every timer was before agencies' queues).
    fn from(lane: Priority) -> Queue {
        Queue { lane, index: 0 }
    }
}

impl Queue {
    /// The queue of `agency`'s notices in `lane`.
    pub fn of(lane: Priority, agency: &AgencyId) -> Queue {
        Queue {
            lane,
            index: match lane {
                Priority::Urgent => 0,
                _ => agency_queue(agency),
            },
        }
    }

    /// The queue of a notice of `agency` in `lane` stored with `queue`
    /// (`None`: the hash of the agency's ID).
    pub fn stored(lane: Priority, agency: &AgencyId, queue: Option<u8>) -> Queue {
        match (lane, queue) {
            (Priority::Urgent, _) | (_, None) => Queue::of(lane, agency),
            (lane, Some(q)) => Queue {
                lane,
                index: q % AGENCY_QUEUES,
            },
        }
    }

    /// Every queue of `lane`.
    pub fn all(lane: Priority) -> impl Iterator<Item = Queue> {
        let n = if lane == Priority::Urgent {
            1
        } else {
            AGENCY_QUEUES
        };
        (0..n).map(move |index| Queue { lane, index })
    }

    /// The queue's first slot.
    fn base(self) -> u8 {
        let extra = |first: u8| first + (self.index - 1) * TIMER_SHARDS;
        match (self.lane, self.index) {
            (Priority::Normal, 0) => 0,
            (Priority::Urgent, _) => TIMER_SHARDS,
            (Priority::Bulk, 0) => 2 * TIMER_SHARDS,
            (Priority::Normal, _) => extra(3 * TIMER_SHARDS),
            (Priority::Bulk, _) => extra((3 + AGENCY_QUEUES - 1) * TIMER_SHARDS),
        }
    }

    /// The queue a slot belongs to (the inverse of [`timer_slot`]).
    pub fn of_slot(slot: u8) -> Queue {
        let block = slot / TIMER_SHARDS;
        let q = |lane, index| Queue { lane, index };
        match block {
            0 => q(Priority::Normal, 0),
            1 => q(Priority::Urgent, 0),
            2 => q(Priority::Bulk, 0),
            b if b < 3 + AGENCY_QUEUES - 1 => q(Priority::Normal, b - 2),
            b => q(Priority::Bulk, b - (3 + AGENCY_QUEUES - 1) + 1),
        }
    }
}

/// The queue of an agency's notices in the normal and bulk lanes: the
/// first eight bytes of the SHA-256 of its ID (UTF-8), read big-endian,
/// modulo [`AGENCY_QUEUES`]. Fixed by the ID alone, so every node and
/// every stored record agree; two agencies may share a queue (and then
/// share it first come, first served). docs/operations.md lists how to
/// compute it.
pub fn agency_queue(agency: &AgencyId) -> u8 {
    let d = ring::digest::digest(&ring::digest::SHA256, agency.as_str().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d.as_ref()[..8]);
    (u64::from_be_bytes(first) % AGENCY_QUEUES as u64) as u8
}

/// The slot of `shard`'s timers in queue `queue` (a lane: its queue 0).
pub fn timer_slot(shard: u8, queue: impl Into<Queue>) -> u8 {
    queue.into().base() + shard % TIMER_SHARDS
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
    /// A scheduled send (`deliver_at`): stored, not in the mailbox and not
    /// notified until `until`. (New variants go last: the embedded store's
    /// format numbers them.)
    Held { until: DateTime<Utc> },
    /// Cancelled by its agency at `at`, while held: it never lands.
    Cancelled { at: DateTime<Utc> },
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
            DeliveryState::Held { .. } => "held",
            DeliveryState::Cancelled { .. } => "cancelled",
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
    /// A held notice lands in its mailbox; round 1 follows.
    Release,
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
    /// First openings in an inbox app: the recipient's and a
    /// representative's, at most one each (the engine's clock).
    #[serde(default)]
    pub opened: Vec<OpenRecord>,
    /// Shares with other agencies the recipient consented to (article
    /// 27), in order, revoked ones kept.
    #[serde(default)]
    pub shares: Vec<ShareRecord>,
    /// The lane the notice came in on: its rounds are scheduled, and its
    /// notifications sent, in that lane (agency guide, "Priority lanes").
    #[serde(default)]
    pub priority: Priority,
    /// The pending round was put off to its agency's next slot
    /// (`rounds_per_second` in the agency registry) and has it: it starts
    /// when due without asking again.
    #[serde(default)]
    pub paced: bool,
    /// The recipient's response deadline (the envelope's `respond_by`):
    /// a reminder goes ahead of it (`delivery.reminder_before`).
    #[serde(default)]
    pub respond_by: Option<DateTime<Utc>>,
    /// When the reminder was decided: sent, failed, or not needed (the
    /// recipient had opened or confirmed it); `None` while it waits.
    #[serde(default)]
    pub reminded: Option<DateTime<Utc>>,
    /// Its agencies' queue in the normal and bulk lanes, as the registry
    /// had it when the notice was stored (`queue` there, else the hash of
    /// the agency's ID); `None`: the hash ([`agency_queue`]). Records
    /// stored before agencies' queues read as `Some(0)` from the embedded
    /// store, where their timers are.
    #[serde(default)]
    pub queue: Option<u8>,
}

/// A notice opened in an inbox app, the first time by this side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRecord {
    pub by_representative: bool,
    pub at: DateTime<Utc>,
}

/// One share of a notice with another agency (article 27).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareRecord {
    /// `s1`, `s2`, ... in the order shared.
    pub share_id: String,
    pub with: AgencyId,
    pub by_representative: bool,
    pub at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl DeliveryRecord {
    /// The record a newly stored notice starts with: round 1 due at once,
    /// or, for a scheduled send (`deliver_at` after `accepted_at`), held
    /// until then.
    pub fn new(
        code: TrackingCode,
        notice: &karpoosheh_schemas::Notice,
        accepted_at: DateTime<Utc>,
        priority: Priority,
        deliver_at: Option<DateTime<Utc>>,
        respond_by: Option<DateTime<Utc>>,
    ) -> Self {
        let (state, next) = match deliver_at.filter(|t| *t > accepted_at) {
            Some(until) => (
                DeliveryState::Held { until },
                Pending {
                    due_ms: until.timestamp_millis(),
                    action: Action::Release,
                },
            ),
            None => (
                DeliveryState::Scheduled,
                Pending {
                    due_ms: accepted_at.timestamp_millis(),
                    action: Action::Round { round: 1, retry: 0 },
                },
            ),
        };
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
            state,
            next: Some(next),
            rounds: Vec::new(),
            confirmations: Vec::new(),
            access_reported: false,
            purged: false,
            opened: Vec::new(),
            shares: Vec::new(),
            priority,
            paced: false,
            respond_by,
            reminded: None,
            queue: None,
        }
    }

    /// The timers a new record starts with.
    pub fn initial_timers(&self) -> Vec<Timer> {
        let mut t = vec![Timer::expire(
            self.tracking_code,
            self.queue(),
            self.expires_at.timestamp_millis(),
        )];
        if let Some(p) = self.next {
            t.push(self.next_timer(p.due_ms));
        }
        t
    }

    /// The timer of this notice's next action, due at `due_ms`.
    pub fn next_timer(&self, due_ms: i64) -> Timer {
        Timer::next(self.tracking_code, self.queue(), due_ms)
    }

    /// The queue of this notice's timers: its lane's queue of its agency.
    pub fn queue(&self) -> Queue {
        Queue::stored(self.priority, &self.agency, self.queue)
    }

    /// The slot of this notice's timers.
    pub fn timer_slot(&self) -> u8 {
        timer_slot(Timer::shard_of(self.tracking_code), self.queue())
    }

    /// Whether the state is a final legal outcome.
    pub fn is_final(&self) -> bool {
        matches!(
            self.state,
            DeliveryState::Served { .. }
                | DeliveryState::NotServed { .. }
                | DeliveryState::Expired { .. }
                | DeliveryState::Cancelled { .. }
        )
    }

    /// Whether the notice is in its mailbox: not a scheduled send still
    /// held, nor one cancelled before it landed. A notice not in its
    /// mailbox is, to the inbox API, no notice at all.
    pub fn in_mailbox(&self) -> bool {
        !matches!(
            self.state,
            DeliveryState::Held { .. } | DeliveryState::Cancelled { .. }
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
    /// The reminder ahead of the response deadline (`respond_by`).
    Remind = 4,
}

impl TimerKind {
    pub fn from_u8(v: u8) -> Option<TimerKind> {
        match v {
            1 => Some(TimerKind::Next),
            2 => Some(TimerKind::Expire),
            3 => Some(TimerKind::Purge),
            4 => Some(TimerKind::Remind),
            _ => None,
        }
    }
}

/// A durable timer: `(slot, due, tracking code, kind)`, kept in the store
/// ordered by due time within its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timer {
    /// The notice's shard in its lane ([`timer_slot`], [`TIMER_SLOTS`]).
    pub slot: u8,
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
    fn new(code: TrackingCode, queue: impl Into<Queue>, due_ms: i64, kind: TimerKind) -> Timer {
        Timer {
            slot: timer_slot(Timer::shard_of(code), queue),
            due_ms,
            code,
            kind,
        }
    }
    pub fn next(code: TrackingCode, queue: impl Into<Queue>, due_ms: i64) -> Timer {
        Timer::new(code, queue, due_ms, TimerKind::Next)
    }
    pub fn expire(code: TrackingCode, queue: impl Into<Queue>, due_ms: i64) -> Timer {
        Timer::new(code, queue, due_ms, TimerKind::Expire)
    }
    pub fn purge(code: TrackingCode, queue: impl Into<Queue>, due_ms: i64) -> Timer {
        Timer::new(code, queue, due_ms, TimerKind::Purge)
    }
    pub fn remind(code: TrackingCode, queue: impl Into<Queue>, due_ms: i64) -> Timer {
        Timer::new(code, queue, due_ms, TimerKind::Remind)
    }
    /// The lane whose slots hold this timer.
    pub fn lane(&self) -> Priority {
        Queue::of_slot(self.slot).lane
    }
    /// The queue whose slots hold this timer.
    pub fn queue(&self) -> Queue {
        Queue::of_slot(self.slot)
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
    /// `receipts` are a replay: each notice event goes out only with the
    /// link its chain already holds, and one the chain lacks is dropped;
    /// nothing is appended.
    pub replay: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_shards_spread_sequential_codes() {
        let mut counts = [0u32; TIMER_SHARDS as usize];
        for seq in 0..1600u16 {
            let code = TrackingCode::from_parts(1_760_000_000_000 + seq as i64 / 7, 3, seq);
            counts[Timer::shard_of(code) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 50), "{counts:?}");
    }

    #[test]
    fn each_lane_has_its_own_slots_and_normal_keeps_the_old_ones() {
        let code = TrackingCode::from_parts(1_760_000_000_000, 3, 77);
        let shard = Timer::shard_of(code);
        // Timers stored before lanes were in slot == shard: still normal.
        assert_eq!(Timer::next(code, Priority::Normal, 5).slot, shard);
        let mut seen = std::collections::HashSet::new();
        for lane in Priority::ALL {
            let t = Timer::expire(code, lane, 5);
            assert!(t.slot < TIMER_SLOTS);
            assert_eq!(t.slot % TIMER_SHARDS, shard);
            assert_eq!(t.lane(), lane);
            assert!(seen.insert(t.slot));
        }
    }

    #[test]
    fn every_queue_has_its_own_slots_and_each_slot_names_its_queue() {
        let mut seen = std::collections::HashSet::new();
        for lane in Priority::ALL {
            for q in Queue::all(lane) {
                for shard in 0..TIMER_SHARDS {
                    let slot = timer_slot(shard, q);
                    assert!(slot < TIMER_SLOTS, "{q:?} {shard}");
                    assert_eq!(slot % TIMER_SHARDS, shard);
                    assert_eq!(Queue::of_slot(slot), q);
                    assert!(seen.insert(slot), "{q:?} {shard}: slot {slot} twice");
                }
            }
        }
        assert_eq!(
            seen.len(),
            TIMER_SLOTS as usize,
            "every slot is some queue's"
        );
        // Queue 0 of each lane is the layout before agencies' queues.
        assert_eq!(timer_slot(3, Priority::Normal), 3);
        assert_eq!(timer_slot(3, Priority::Urgent), 19);
        assert_eq!(timer_slot(3, Priority::Bulk), 35);
    }

    #[test]
    fn an_agencys_queue_is_fixed_by_its_id() {
        // Values from an independent computation (Python's hashlib:
        // int.from_bytes(sha256(id).digest()[:8], "big") % 7), as in
        // docs/operations.md.
        let q = |id: &str| agency_queue(&AgencyId::parse(id).unwrap());
        assert_eq!(
            [q("tax"), q("customs"), q("judiciary"), q("registry")],
            [6, 3, 1, 4]
        );
        assert_eq!(
            Queue::of(Priority::Urgent, &AgencyId::parse("tax").unwrap()).index,
            0,
            "the urgent lane has one queue"
        );
    }
}
