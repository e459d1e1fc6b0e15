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
//! [`confirm`] (confirmations), [`outbox`] (receipts from the store to
//! the sinks), [`clock`] (real and test clocks), [`simulate`] (the demo's
//! simulated recipients and registry), [`sandbox`] (the agencies'
//! sandbox: a registry and recipients by test ID), `config` (`[delivery]`). The
//! records it keeps are `crate::model`'s.

pub mod acts;
pub mod clock;
mod config;
pub mod confirm;
pub mod outbox;
pub mod sandbox;
pub mod scheduler;
pub mod simulate;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Duration as ChronoDuration, Utc};

use crate::model::{DeliveryRecord, DeliveryWrite, Pending};

pub use acts::{ActOutcome, CancelOutcome, InboxAct};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{DeliveryConfig, QuietHours};
pub use confirm::ConfirmOutcome;
pub use outbox::{Outbox, OutboxError};
pub use scheduler::{
    Notify, Registry, Scheduler, SchedulerError, SchedulerHandle, SentNotification, StoreRegistry,
};

/// Moves `next` to a new pending action: the old timer goes, the new comes.
pub(crate) fn reschedule(rec: &mut DeliveryRecord, w: &mut DeliveryWrite, next: Option<Pending>) {
    if let Some(old) = rec.next.take() {
        w.remove_timers.push(rec.next_timer(old.due_ms));
    }
    if let Some(p) = next {
        w.add_timers.push(rec.next_timer(p.due_ms));
    }
    rec.next = next;
}

pub(crate) fn add(at: DateTime<Utc>, d: std::time::Duration) -> DateTime<Utc> {
    at + ChronoDuration::from_std(d).unwrap_or(ChronoDuration::MAX)
}
