//! Confirmations: the recipient (or a representative) says they have seen
//! a notice. Deduplicated by confirmation ID; the second distinct one makes
//! the notice actually served (art. 29) at its confirmation time, cancels
//! the remaining rounds and tells the agency. Confirmations of unknown,
//! expired or someone else's notices are refused with a reason and never
//! applied.

use chrono::{DateTime, Utc};
use karpoosheh_schemas::{Confirmation, MailboxId, Reason, ReceiptEvent};

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
    let by_representative = c.confirmed_by != rec.recipient;
    if by_representative && !representatives.contains(&c.confirmed_by) {
        return ConfirmOutcome::Rejected(Reason::NotRecipient);
    }
    if matches!(rec.state, DeliveryState::Expired { .. }) || rec.purged || now >= rec.expires_at {
        return ConfirmOutcome::Rejected(Reason::NoticeExpired);
    }
    // A confirmation cannot predate the notice or lie in the future.
    let confirmed_at = c.confirmed_at.clamp(rec.accepted_at, now);
    w.confirmation_ids
        .push((c.confirmation_id.clone(), rec.tracking_code));
    rec.confirmations.push(ConfirmationRecord {
        confirmation_id: c.confirmation_id.clone(),
        by_representative,
        confirmed_at,
        received_at: now,
    });
    let count = rec.confirmations.len().min(u8::MAX as usize) as u8;
    if let DeliveryState::Served { .. } = rec.state {
        return ConfirmOutcome::Applied {
            count,
            served: false,
        };
    }
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
    // Served at the second confirmation's time: the legal timestamp.
    rec.state = DeliveryState::Served { at: confirmed_at };
    reschedule(rec, w, None);
    w.awaiting = Some(false);
    w.receipts.push(rec.receipt(
        "served",
        now,
        ReceiptEvent::Served {
            tracking_code: rec.tracking_code,
            served_at: confirmed_at,
        },
    ));
    crate::internal_events::NoticeServed {
        agency: &rec.agency,
        after: (confirmed_at - rec.accepted_at)
            .to_std()
            .unwrap_or_default(),
    }
    .emit();
    ConfirmOutcome::Applied {
        count,
        served: true,
    }
}
