//! "What happened to my notice?" — an agency's question by its own
//! reference (issue 24): the notice's tracking code, lane and state, and
//! every receipt the engine produced for it, in order, as the agency got
//! (or will get) them: the notice's chain of events, receipt IDs
//! included. And the rejections kept for the reference, if it was ever
//! refused. Read by `karpoosheh status` (the store, or a running node's
//! operators' endpoint) and by the agencies' own endpoint of the inbox
//! listener (`GET /v1/agency/status?reference=`).

use chrono::{DateTime, Utc};
use karpoosheh_schemas::{AgencyId, Priority, Problem, SourcePosition, TrackingCode};
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};

/// How many of an agency's newest kept rejections are searched for the
/// reference: rejections are kept per agency in time order, not by
/// reference, so an older one is found with `karpoosheh rejections`.
pub const REJECTIONS_SEARCHED: usize = 1_000;

/// The answer for one (agency, reference).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoticeStatus {
    pub agency: AgencyId,
    pub reference: String,
    /// The stored notice, when the reference was accepted (and its
    /// delivery record is still kept).
    pub notice: Option<StoredStatus>,
    /// Rejections kept for this reference, newest first (among the
    /// agency's newest [`REJECTIONS_SEARCHED`]).
    pub rejections: Vec<RejectionStatus>,
}

impl NoticeStatus {
    /// Whether the engine knows the reference at all.
    pub fn found(&self) -> bool {
        self.notice.is_some() || !self.rejections.is_empty()
    }
}

/// A stored notice's standing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredStatus {
    pub tracking_code: TrackingCode,
    pub accepted_at: DateTime<Utc>,
    /// The lane it came in on.
    pub lane: Priority,
    /// `scheduled`, `awaiting_activation`, `unreachable`, `served`,
    /// `not_served`, `expired`, `held` (a scheduled send not yet in the
    /// mailbox) or `cancelled`.
    pub state: String,
    /// When a final state was reached; for `held`, when it is to land.
    pub state_at: Option<DateTime<Utc>>,
    /// Notification rounds done (1-3).
    pub rounds: u8,
    /// Confirmations recorded (two make it served).
    pub confirmations: u8,
    /// Every receipt of the notice, oldest first: the notice's events,
    /// each the receipt's JSON as sent without its `evidence` (its
    /// `receipt_id` and `evidence.chain.seq` order are the same).
    pub receipts: Vec<serde_json::Value>,
    /// Whether the events' hash chain checks.
    pub chain_intact: bool,
    /// The response deadline the agency set (`respond_by`), and when its
    /// reminder was decided (sent, failed or not needed).
    #[serde(default)]
    pub respond_by: Option<DateTime<Utc>>,
    #[serde(default)]
    pub reminded: Option<DateTime<Utc>>,
    /// Whose notice it is, for the traffic record of the read; never
    /// answered.
    #[serde(skip)]
    pub recipient: Option<karpoosheh_schemas::MailboxId>,
}

/// A kept rejection of the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectionStatus {
    pub id: u64,
    pub at: DateTime<Utc>,
    pub problems: Vec<Problem>,
    pub position: SourcePosition,
}

/// The status of `reference` of `agency` in `store`.
pub fn status_of(
    store: &dyn Store,
    agency: &AgencyId,
    reference: &str,
) -> Result<NoticeStatus, StoreError> {
    let mut notice = None;
    if let Some(code) = store.reference(agency, reference)? {
        if let Some(rec) = store.delivery(code)? {
            let events = store.events(code)?;
            let chain_intact = crate::evidence::chain::verify(&events).is_ok();
            let state_at = match rec.state {
                crate::model::DeliveryState::Served { at }
                | crate::model::DeliveryState::NotServed { at }
                | crate::model::DeliveryState::Expired { at }
                | crate::model::DeliveryState::Cancelled { at } => Some(at),
                // Held: when it is to land.
                crate::model::DeliveryState::Held { until } => Some(until),
                _ => None,
            };
            notice = Some(StoredStatus {
                tracking_code: code,
                accepted_at: rec.accepted_at,
                lane: rec.priority,
                state: rec.state.name().to_owned(),
                state_at,
                rounds: rec.rounds.iter().map(|r| r.round).max().unwrap_or(0),
                confirmations: rec.confirmations.len().min(u8::MAX as usize) as u8,
                receipts: events
                    .iter()
                    .map(|e| {
                        serde_json::from_slice(&e.bytes)
                            .unwrap_or_else(|_| serde_json::json!({"unreadable_event": e.seq}))
                    })
                    .collect(),
                chain_intact,
                respond_by: rec.respond_by,
                reminded: rec.reminded,
                recipient: Some(rec.recipient),
            });
        }
    }
    let rejections = store
        .latest_rejections(Some(agency), REJECTIONS_SEARCHED)?
        .into_iter()
        .filter(|r| r.rejection.reference.as_deref() == Some(reference))
        .map(|r| RejectionStatus {
            id: r.id,
            at: r.rejection.at,
            problems: r.rejection.problems,
            position: r.rejection.position,
        })
        .collect();
    Ok(NoticeStatus {
        agency: agency.clone(),
        reference: reference.to_owned(),
        notice,
        rejections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Entry, NewRejection};
    use crate::store::conformance::{fjall_store, new_notice, notice, person, t0};
    use karpoosheh_schemas::Reason;

    #[test]
    fn a_reference_is_found_with_its_receipts_and_its_rejections() {
        let dir = tempfile::tempdir().unwrap();
        let store = fjall_store(dir.path());
        let tax = AgencyId::parse("tax").unwrap();
        let e = new_notice(notice("tax", "r-1", person(700_000_001), "متن"), 1);
        let Entry::Notice(n) = &e else { unreachable!() };
        let code = n.tracking_code;
        let refused = |reference: &str, id: u64| {
            Entry::Rejection(NewRejection {
                agency: Some(tax.clone()),
                reference: Some(reference.into()),
                problems: vec![Problem::new(
                    Reason::MissingField,
                    Some("title".to_owned()),
                    "no title",
                )],
                position: SourcePosition::InProcess { sequence: id },
                at: t0(),
            })
        };
        // Refused first, then sent again corrected and stored; another
        // reference refused beside it.
        store
            .write(&[refused("r-1", 7), e.clone(), refused("r-2", 8)])
            .unwrap();
        let s = status_of(&*store, &tax, "r-1").unwrap();
        assert!(s.found());
        let stored = s.notice.as_ref().expect("stored");
        assert_eq!(stored.tracking_code, code);
        assert_eq!(stored.state, "scheduled");
        assert_eq!(stored.lane, Priority::Normal);
        assert!(stored.chain_intact);
        assert_eq!(stored.receipts.len(), 1);
        assert_eq!(stored.receipts[0]["event"], "accepted");
        assert_eq!(
            stored.receipts[0]["receipt_id"],
            n.accepted_receipt().receipt_id
        );
        assert_eq!(s.rejections.len(), 1, "only this reference's");
        assert_eq!(s.rejections[0].problems[0].reason, Reason::MissingField);
        // Unknown: nothing, and said so.
        let none = status_of(&*store, &tax, "r-9").unwrap();
        assert!(!none.found());
        // Another agency's reference is not this one's.
        let other = status_of(&*store, &AgencyId::parse("customs").unwrap(), "r-1").unwrap();
        assert!(!other.found());
    }
}

/// What `karpoosheh receipts replay` put back in the outbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replayed {
    /// The agency's stored notices walked.
    pub notices: u64,
    /// Their events in the window, re-sent as receipts.
    pub receipts: u64,
    /// Kept rejections in the window, re-sent as `rejected` receipts.
    pub rejections: u64,
}

/// Receipts written to the outbox per store write.
const REPLAY_WRITE: usize = 500;

/// Re-sends an agency's receipts of events between `since` (included) and
/// `until` (excluded), by the engine's times: every event of its stored
/// notices (from `accepted` on), with the same receipt ID and the same
/// chain link (the store places a receipt its chain already holds where
/// it is, adding nothing), and its kept rejections (`rejected:<source>`,
/// as first sent). They go through this node's outbox: sealed in new
/// signed batches (`batch_signed` receipts of their own: a batch's leaf
/// values are not kept, so the first batches cannot be rebuilt) and
/// published to the agency's receipts topic. Duplicates' answers and
/// `batch_signed` receipts themselves are not replayed.
pub fn replay(
    store: &dyn Store,
    agency: &AgencyId,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Replayed, StoreError> {
    use karpoosheh_schemas::Receipt;
    let mut out = Replayed::default();
    let mut batch: Vec<Receipt> = Vec::new();
    let flush = |batch: &mut Vec<Receipt>| -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        store.write_delivery(&[crate::model::DeliveryWrite {
            receipts: std::mem::take(batch),
            // Only with the links the chains hold; nothing appended.
            replay: true,
            ..Default::default()
        }])
    };
    let in_window = |at: DateTime<Utc>| at >= since && at < until;
    let mut cursor: Option<String> = None;
    loop {
        let (page, next) = store.agency_references(agency, cursor.as_deref(), 1000)?;
        for (_, code) in page {
            out.notices += 1;
            for e in store.events(code)? {
                let Ok(mut r) = serde_json::from_slice::<Receipt>(&e.bytes) else {
                    continue;
                };
                if r.agency != *agency || !in_window(r.at) {
                    continue;
                }
                // The store places it at its link again.
                r.evidence = None;
                batch.push(r);
                out.receipts += 1;
                if batch.len() >= REPLAY_WRITE {
                    flush(&mut batch)?;
                }
            }
        }
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut after = None;
    loop {
        let page = store.rejections(Some(agency), after, 1000)?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for r in page {
            let rej = r.rejection;
            if !in_window(rej.at) {
                continue;
            }
            batch.push(crate::model::rejected_receipt(
                &rej.position,
                agency.clone(),
                rej.reference,
                rej.at,
                rej.problems,
            ));
            out.rejections += 1;
            if batch.len() >= REPLAY_WRITE {
                flush(&mut batch)?;
            }
        }
    }
    flush(&mut batch)?;
    Ok(out)
}
