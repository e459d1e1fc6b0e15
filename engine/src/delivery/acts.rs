//! What a person does with a notice in an inbox app, written as events of
//! the notice by the worker that owns it (so they never race a round or a
//! confirmation): the first opening (`opened`), and sharing with another
//! agency or withdrawing the share (article 27: `shared` /
//! `share_revoked` in the notice's chain; `document_shared` /
//! `share_withdrawn` to the other agency, with the document and what
//! verifies it). Who may do what is the inbox API's to check
//! (`crate::model::standing`); this records what was allowed.

use chrono::{DateTime, Utc};
use karpoosheh_schemas::{AgencyId, Receipt, ReceiptEvent};

use crate::model::{
    hex, DeliveryRecord, DeliveryState, DeliveryWrite, OpenRecord, ShareRecord, StoredNotice,
};

/// Shares one notice may have had, revoked ones included.
pub const MAX_SHARES: usize = 32;

/// One act on a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboxAct {
    /// Opened; an `opened` event the first time for this side.
    Open { by_representative: bool },
    /// Share with `with` (an approved agency other than the sender).
    Share {
        with: AgencyId,
        by_representative: bool,
    },
    /// Withdraw share `share_id`.
    Unshare { share_id: String },
}

/// What became of an act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActOutcome {
    /// Recorded (or recorded before: acts are idempotent). For a share,
    /// its ID and whether it was new.
    Done { share_id: Option<String>, new: bool },
    /// No such notice (or no longer kept).
    Missing,
    /// Not recorded: a stable reason code.
    Refused(&'static str),
}

fn done(new: bool) -> ActOutcome {
    ActOutcome::Done {
        share_id: None,
        new,
    }
}

/// What became of an agency's cancellation of a scheduled send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// Cancelled at `at` (or before: cancelling is idempotent, `new`
    /// says which).
    Cancelled { at: DateTime<Utc>, new: bool },
    /// Too late: the notice is in its mailbox (or was never held); its
    /// state's name.
    TooLate { state: &'static str },
    /// No such notice (or no longer kept).
    Missing,
}

/// Cancels a held notice (a scheduled send not yet in its mailbox): it
/// never lands and nobody is notified; the agency gets `cancelled`. A
/// notice already in its mailbox stays as it is.
pub(crate) fn apply_cancel(
    rec: &mut DeliveryRecord,
    w: &mut DeliveryWrite,
    now: DateTime<Utc>,
) -> CancelOutcome {
    match rec.state {
        DeliveryState::Cancelled { at } => CancelOutcome::Cancelled { at, new: false },
        // Its time has come: it lands (at the next scan, if the scheduler
        // is behind or was down), whatever the agency asks now.
        DeliveryState::Held { until } if now >= until => CancelOutcome::TooLate { state: "held" },
        DeliveryState::Held { .. } => {
            rec.state = DeliveryState::Cancelled { at: now };
            // Its release timer goes; the expiry timer stays, to end the
            // notice's retention as the agency set it.
            super::reschedule(rec, w, None);
            w.receipts.push(rec.receipt(
                "cancelled",
                now,
                ReceiptEvent::Cancelled {
                    tracking_code: rec.tracking_code,
                },
            ));
            CancelOutcome::Cancelled { at: now, new: true }
        }
        s => CancelOutcome::TooLate { state: s.name() },
    }
}

/// Applies `act` to the record; `notice` is the stored notice (needed to
/// share: the document goes to the other agency).
pub(crate) fn apply_act(
    rec: &mut DeliveryRecord,
    w: &mut DeliveryWrite,
    act: &InboxAct,
    notice: Option<&StoredNotice>,
    now: DateTime<Utc>,
) -> ActOutcome {
    if !rec.in_mailbox() {
        // A scheduled send still held, or cancelled: to the inbox, no
        // notice at all (the API checks too; this holds under the lock).
        return ActOutcome::Missing;
    }
    match act {
        InboxAct::Open { by_representative } => {
            if rec
                .opened
                .iter()
                .any(|o| o.by_representative == *by_representative)
            {
                return done(false);
            }
            rec.opened.push(OpenRecord {
                by_representative: *by_representative,
                at: now,
            });
            let seq = if *by_representative {
                "opened-rep"
            } else {
                "opened"
            };
            w.receipts.push(rec.receipt(
                seq,
                now,
                ReceiptEvent::Opened {
                    tracking_code: rec.tracking_code,
                    by_representative: *by_representative,
                },
            ));
            done(true)
        }
        InboxAct::Share {
            with,
            by_representative,
        } => {
            if let Some(s) = rec
                .shares
                .iter()
                .find(|s| &s.with == with && s.revoked_at.is_none())
            {
                return ActOutcome::Done {
                    share_id: Some(s.share_id.clone()),
                    new: false,
                };
            }
            let Some(n) = notice.filter(|_| !rec.purged) else {
                return ActOutcome::Refused("notice_expired");
            };
            if matches!(rec.state, DeliveryState::Expired { .. }) || now >= rec.expires_at {
                return ActOutcome::Refused("notice_expired");
            }
            if with == &rec.agency {
                return ActOutcome::Refused("share_with_sender");
            }
            if rec.shares.len() >= MAX_SHARES {
                return ActOutcome::Refused("too_many_shares");
            }
            let share_id = format!("s{}", rec.shares.len() + 1);
            rec.shares.push(ShareRecord {
                share_id: share_id.clone(),
                with: with.clone(),
                by_representative: *by_representative,
                at: now,
                revoked_at: None,
            });
            w.receipts.push(rec.receipt(
                &format!("share-{share_id}"),
                now,
                ReceiptEvent::Shared {
                    tracking_code: rec.tracking_code,
                    share_id: share_id.clone(),
                    with: with.clone(),
                },
            ));
            w.receipts.push(Receipt::new(
                format!("{}-share-{share_id}-doc", rec.tracking_code),
                with.clone(),
                None,
                now,
                ReceiptEvent::DocumentShared {
                    tracking_code: rec.tracking_code,
                    share_id: share_id.clone(),
                    from: rec.agency.clone(),
                    content_hash: hex(&n.content_hash),
                    verification_code: karpoosheh_schemas::verification_code(
                        &rec.tracking_code,
                        &n.content_hash,
                    ),
                    document: n.notice.clone(),
                },
            ));
            ActOutcome::Done {
                share_id: Some(share_id),
                new: true,
            }
        }
        InboxAct::Unshare { share_id } => {
            let Some(i) = rec.shares.iter().position(|s| &s.share_id == share_id) else {
                return ActOutcome::Refused("no_such_share");
            };
            if rec.shares[i].revoked_at.is_some() {
                return done(false);
            }
            rec.shares[i].revoked_at = Some(now);
            let with = rec.shares[i].with.clone();
            w.receipts.push(rec.receipt(
                &format!("unshare-{share_id}"),
                now,
                ReceiptEvent::ShareRevoked {
                    tracking_code: rec.tracking_code,
                    share_id: share_id.clone(),
                    with: with.clone(),
                },
            ));
            w.receipts.push(Receipt::new(
                format!("{}-unshare-{share_id}-doc", rec.tracking_code),
                with,
                None,
                now,
                ReceiptEvent::ShareWithdrawn {
                    tracking_code: rec.tracking_code,
                    share_id: share_id.clone(),
                    from: rec.agency.clone(),
                },
            ));
            done(true)
        }
    }
}
