//! Confirmations: the recipient (or a representative) says they have seen
//! a notice. Deduplicated by confirmation ID; the second distinct one makes
//! the notice actually served (art. 29), cancels the remaining rounds and
//! tells the agency.
//!
//! The rules (art. 29: the user confirms *the notification*):
//! - only the recipient or one of their representatives confirms
//!   (`not_recipient`), and only after a round reached that person: the
//!   recipient's own confirmation needs a round delivered to the
//!   recipient, a representative's one delivered to a representative
//!   (`not_notified`) -- or the notice opened by that side in an inbox
//!   app;
//! - only while the notice is neither expired (`notice_expired`) nor
//!   served (`already_served`); a late service after `not_served` stays
//!   possible;
//! - only while someone can act for the mailbox: its holder while it is
//!   active, only the guardian (a representative) while the person is
//!   incapacitated, nobody once the person is deceased or the entity
//!   dissolved (a delegation ends with its principal), and nobody while the
//!   notice waits for the mailbox to become reachable
//!   (`mailbox_not_reachable`).
//!
//! The legal time of service is the engine's clock when it received the
//! second valid confirmation; the app's claimed `confirmed_at` is kept in
//! the record beside it, never used as the legal time. No arithmetic here
//! assumes the clock only moves forward.

use chrono::{DateTime, Utc};
use karpoosheh_schemas::{Confirmation, MailboxId, MailboxStatus, Reason, ReceiptEvent};

use super::reschedule;
use crate::internal_events::ConfirmationHandled;
use crate::model::{ConfirmationRecord, DeliveryRecord, DeliveryState, DeliveryWrite};

/// What became of one confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmOutcome {
    /// Recorded; `count` distinct confirmations so far; `served` when this
    /// one made the notice served.
    Applied { count: u8, served: bool },
    /// This confirmation ID was applied before: nothing changed.
    Duplicate,
    /// Refused, not applied.
    Rejected(Reason),
}

impl ConfirmOutcome {
    pub fn emit(&self) {
        let (outcome, reason) = match self {
            ConfirmOutcome::Applied { .. } => ("applied", "none"),
            ConfirmOutcome::Duplicate => ("duplicate", "none"),
            ConfirmOutcome::Rejected(r) => ("rejected", r.code()),
        };
        ConfirmationHandled { outcome, reason }.emit();
    }
}

pub(crate) fn apply_confirmation(
    rec: &mut DeliveryRecord,
    w: &mut DeliveryWrite,
    c: &Confirmation,
    representatives: &[MailboxId],
    // The recipient's mailbox status now (`None`: no profile).
    status: Option<MailboxStatus>,
    now: DateTime<Utc>,
) -> ConfirmOutcome {
    // Already in the record: a re-delivery after a write that recorded the
    // confirmation but not yet its ID (a store without atomic multi-row
    // writes can stop between the two).
    if rec
        .confirmations
        .iter()
        .any(|x| x.confirmation_id == c.confirmation_id)
    {
        return ConfirmOutcome::Duplicate;
    }
    if !rec.in_mailbox() {
        // A scheduled send not yet landed, or cancelled: no notice to the
        // inbox side, which cannot have seen it.
        return ConfirmOutcome::Rejected(Reason::UnknownNotice);
    }
    let by_representative = c.confirmed_by != rec.recipient;
    if by_representative && !representatives.contains(&c.confirmed_by) {
        return ConfirmOutcome::Rejected(Reason::NotRecipient);
    }
    if matches!(rec.state, DeliveryState::Expired { .. }) || rec.purged || now >= rec.expires_at {
        return ConfirmOutcome::Rejected(Reason::NoticeExpired);
    }
    if matches!(rec.state, DeliveryState::Served { .. }) {
        return ConfirmOutcome::Rejected(Reason::AlreadyServed);
    }
    // Who may act for the mailbox now: its holder while active; for an
    // incapacitated person only the guardian (a representative); nobody for
    // a deceased person or a dissolved entity (a delegation ends with its
    // principal), a mailbox never activated, or one without a profile.
    let can_act = match status {
        Some(MailboxStatus::Active) => true,
        Some(MailboxStatus::Incapacitated) => by_representative,
        _ => false,
    };
    if matches!(
        rec.state,
        DeliveryState::AwaitingActivation | DeliveryState::Unreachable { .. }
    ) || !can_act
    {
        return ConfirmOutcome::Rejected(Reason::MailboxNotReachable);
    }
    // Told by a round, or seen in an inbox app: the notice reached them.
    let notified = rec.rounds.iter().any(|r| {
        r.deliveries
            .iter()
            .any(|d| d.channel.is_some() && d.to_representative == by_representative)
    }) || rec
        .opened
        .iter()
        .any(|o| o.by_representative == by_representative);
    if !notified {
        return ConfirmOutcome::Rejected(Reason::NotNotified);
    }
    w.confirmation_ids
        .push((c.confirmation_id.clone(), rec.tracking_code));
    rec.confirmations.push(ConfirmationRecord {
        confirmation_id: c.confirmation_id.clone(),
        by_representative,
        // What the app says; kept as evidence of its claim, not legal time.
        confirmed_at: c.confirmed_at,
        received_at: now,
    });
    let count = rec.confirmations.len().min(u8::MAX as usize) as u8;
    w.receipts.push(rec.receipt(
        &format!("c{count}"),
        now,
        ReceiptEvent::Confirmed {
            tracking_code: rec.tracking_code,
            count,
        },
    ));
    if count < 2 {
        return ConfirmOutcome::Applied {
            count,
            served: false,
        };
    }
    // Served now, on the engine's clock: the legal timestamp.
    let served_at = now;
    rec.state = DeliveryState::Served { at: served_at };
    reschedule(rec, w, None);
    w.awaiting = Some(false);
    w.receipts.push(rec.receipt(
        "served",
        now,
        ReceiptEvent::Served {
            tracking_code: rec.tracking_code,
            served_at,
        },
    ));
    crate::internal_events::NoticeServed {
        agency: &rec.agency,
        // Zero when the clock stands behind the notice's acceptance.
        after: (served_at - rec.accepted_at).to_std().unwrap_or_default(),
    }
    .emit();
    ConfirmOutcome::Applied {
        count,
        served: true,
    }
}
