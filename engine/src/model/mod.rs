//! The records the engine keeps, in the lowest layer: the store's entries
//! and answers ([`notice`]), the article-29 delivery records and timers
//! ([`delivery`]), and how an undecodable record becomes a dead letter
//! ([`dead_letter`]). Plain data and the rules that belong to it; no I/O,
//! and nothing here imports another module of the engine, so the stores
//! below the pipeline and the scheduler above them share one vocabulary.

mod access;
mod dead_letter;
mod delivery;
mod notice;
mod quarantine;
mod standing;

pub use self::access::AccessRecord;

/// `t` to the millisecond, as every store keeps times (a CQL timestamp
/// has no finer unit): what is hashed or signed from a time must be what
/// the store gives back.
pub fn to_millis(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}
pub use self::dead_letter::dead_letter;
pub use self::delivery::{
    agency_queue, timer_slot, Action, ConfirmationRecord, DeliveryRecord, DeliveryState,
    DeliveryWrite, OpenRecord, Pending, Queue, RoundDelivery, RoundRecord, ShareRecord, Timer,
    TimerKind, AGENCY_QUEUES, TIMER_SHARDS, TIMER_SLOTS,
};
pub use self::notice::{
    accepted_event, accepted_receipt, dead_letter_source, hex, position_id, rejected_receipt,
    Entry, MailboxPage, NewNotice, NewRejection, Outcome, StoredEvent, StoredNotice,
    StoredRejection,
};
pub use self::quarantine::Quarantined;
pub use self::standing::{may_confirm_for, standing, Standing};
