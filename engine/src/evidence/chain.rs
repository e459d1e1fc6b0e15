//! The hash chain of a notice's events. Every event of a notice (accepted,
//! each round sent or failed, each confirmation, the outcome) is the
//! receipt the agency gets for it; the chain links them:
//!
//! ```text
//! hash_1 = SHA-256(32 zero bytes || JCS(receipt_1 without "evidence"))
//! hash_n = SHA-256(hash_{n-1}     || JCS(receipt_n without "evidence"))
//! ```
//!
//! where JCS is RFC 8785. Events are appended, never rewritten: removing,
//! reordering or editing one changes every later hash, and the receipts
//! the agency already holds (and the audit log's tree heads) carry them.

use karpoosheh_schemas::{ChainLink, Evidence, Receipt, ReceiptEvent};

use super::jcs;
use super::merkle::{sha256, Hash};
use super::{b64url, from_b64url};
use crate::model::StoredEvent;

/// What comes before a notice's first event.
pub const GENESIS: Hash = [0; 32];

/// The canonical bytes of a receipt as an event: RFC 8785 JSON of the
/// receipt without its `evidence`.
pub fn event_bytes(r: &Receipt) -> Vec<u8> {
    if let (
        ReceiptEvent::Accepted {
            tracking_code,
            duplicate,
            content_hash: Some(hash),
            verification_code: Some(vcode),
        },
        Some(reference),
    ) = (&r.event, &r.reference)
    {
        return accepted_bytes(r, tracking_code, *duplicate, hash, vcode, reference);
    }
    let mut v = serde_json::to_value(r).expect("a receipt serialises");
    if let Some(o) = v.as_object_mut() {
        o.remove("evidence");
    }
    jcs::canonical(&v).expect("receipts carry strings, integers and booleans only")
}

/// The `accepted` receipt's canonical bytes, written directly: one per
/// stored notice, on the ingest path. Equal to the generic form (tested).
fn accepted_bytes(
    r: &Receipt,
    code: &karpoosheh_schemas::TrackingCode,
    duplicate: bool,
    content_hash: &str,
    verification_code: &str,
    reference: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(200 + reference.len());
    out.extend_from_slice(b"{\"agency\":");
    jcs::string(r.agency.as_str(), &mut out);
    out.extend_from_slice(b",\"at\":\"");
    let mut buf = [0u8; 32];
    match karpoosheh_schemas::rfc3339::format(&r.at, &mut buf) {
        Some(n) => out.extend_from_slice(&buf[..n]),
        None => out.extend_from_slice(
            serde_json::to_value(r.at)
                .expect("a time serialises")
                .as_str()
                .unwrap_or_default()
                .as_bytes(),
        ),
    }
    out.extend_from_slice(b"\",\"content_hash\":");
    jcs::string(content_hash, &mut out);
    out.extend_from_slice(b",\"duplicate\":");
    out.extend_from_slice(if duplicate { b"true" } else { b"false" });
    out.extend_from_slice(b",\"event\":\"accepted\",\"receipt_id\":");
    jcs::string(&r.receipt_id, &mut out);
    out.extend_from_slice(b",\"reference\":");
    jcs::string(reference, &mut out);
    out.extend_from_slice(b",\"schema_version\":");
    out.extend_from_slice(r.schema_version.to_string().as_bytes());
    out.extend_from_slice(b",\"tracking_code\":\"");
    out.extend_from_slice(code.to_string().as_bytes());
    out.extend_from_slice(b"\",\"verification_code\":");
    jcs::string(verification_code, &mut out);
    out.push(b'}');
    out
}

/// Whether a notice's stored events lack its first: while the notice's
/// record exists, event 1 is derived from it ([`first_event`]) and written
/// down only when the body is purged.
pub fn lacks_first(stored: &[StoredEvent]) -> bool {
    stored.first().map(|e| e.seq) != Some(1)
}

/// A stored notice's first event: its `accepted` receipt, chained.
pub fn first_event(n: &crate::model::StoredNotice) -> StoredEvent {
    let mut r =
        crate::model::accepted_receipt(n.tracking_code, n.accepted_at, &n.notice, &n.content_hash);
    append(0, GENESIS, &mut r)
}

/// The notice a receipt is an event of (every receipt but a rejection, a
/// duplicate's and a signed batch's).
pub fn code_of(r: &Receipt) -> Option<karpoosheh_schemas::TrackingCode> {
    match &r.event {
        // To the agency a notice was shared with: not in the sender's chain.
        ReceiptEvent::Rejected { .. }
        | ReceiptEvent::BatchSigned { .. }
        | ReceiptEvent::DocumentShared { .. }
        | ReceiptEvent::ShareWithdrawn { .. } => None,
        ReceiptEvent::Accepted {
            duplicate: true, ..
        } => None,
        ReceiptEvent::Accepted { tracking_code, .. }
        | ReceiptEvent::NotificationSent { tracking_code, .. }
        | ReceiptEvent::NotificationFailed { tracking_code, .. }
        | ReceiptEvent::Confirmed { tracking_code, .. }
        | ReceiptEvent::Served { tracking_code, .. }
        | ReceiptEvent::NotServed { tracking_code }
        | ReceiptEvent::Expired { tracking_code }
        | ReceiptEvent::Released { tracking_code }
        | ReceiptEvent::Cancelled { tracking_code }
        | ReceiptEvent::ReminderSent { tracking_code, .. }
        | ReceiptEvent::ReminderFailed { tracking_code, .. }
        | ReceiptEvent::MailboxUnreachable { tracking_code, .. }
        | ReceiptEvent::AccessLevelInsufficient { tracking_code, .. }
        | ReceiptEvent::Opened { tracking_code, .. }
        | ReceiptEvent::Shared { tracking_code, .. }
        | ReceiptEvent::ShareRevoked { tracking_code, .. } => Some(*tracking_code),
    }
}

/// The hash of an event following `prev`.
pub fn link(prev: &Hash, bytes: &[u8]) -> Hash {
    sha256(&[prev, bytes])
}

/// Appends `receipt` to a chain whose last event is (`seq`, `prev`): sets
/// its evidence's chain link and returns the event to store.
pub fn append(seq: u32, prev: Hash, receipt: &mut Receipt) -> StoredEvent {
    let bytes = event_bytes(receipt);
    let hash = link(&prev, &bytes);
    let chain = ChainLink {
        seq: seq + 1,
        prev: b64url(&prev),
        hash: b64url(&hash),
    };
    match &mut receipt.evidence {
        Some(e) => e.chain = Some(chain),
        None => {
            receipt.evidence = Some(Evidence {
                chain: Some(chain),
                batch: None,
            })
        }
    }
    StoredEvent {
        seq: seq + 1,
        prev,
        hash,
        bytes,
    }
}

/// Places `receipt` in its notice's chain, `events` (as stored, plus what
/// this write appended): when an event with its `receipt_id` is there
/// already -- a write retried after the event was appended -- the receipt
/// gets that event's link and nothing is appended; otherwise it is
/// appended, and the new event returned to be stored.
pub fn place(events: &mut Vec<StoredEvent>, receipt: &mut Receipt) -> Option<StoredEvent> {
    if link_known(events, receipt) {
        return None;
    }
    let (seq, prev) = events.last().map_or((0, GENESIS), |e| (e.seq, e.hash));
    let event = append(seq, prev, receipt);
    events.push(event.clone());
    Some(event)
}

/// Whether the chain holds `receipt` (by its ID); if so, the receipt
/// becomes the event as recorded, with its chain link. A replay writes
/// only such receipts: it never adds to a chain (a notice purged while
/// it ran has none left, and its receipts are dropped).
pub fn link_known(events: &[StoredEvent], receipt: &mut Receipt) -> bool {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        receipt_id: std::borrow::Cow<'a, str>,
    }
    if let Some(e) = events.iter().find(|e| {
        serde_json::from_slice::<Id>(&e.bytes).is_ok_and(|id| id.receipt_id == receipt.receipt_id)
    }) {
        // The event as it was recorded (a retry may have rebuilt it with
        // another time): its receipt is that one, so hash and content agree.
        if let Ok(recorded) = serde_json::from_slice::<Receipt>(&e.bytes) {
            *receipt = recorded;
        }
        let chain = ChainLink {
            seq: e.seq,
            prev: b64url(&e.prev),
            hash: b64url(&e.hash),
        };
        receipt.evidence = Some(Evidence {
            chain: Some(chain),
            batch: None,
        });
        return true;
    }
    false
}

/// The hash a receipt's chain link claims, if it has one.
pub fn claimed_hash(r: &Receipt) -> Option<Hash> {
    let c = r.evidence.as_ref()?.chain.as_ref()?;
    from_b64url(&c.hash)?.try_into().ok()
}

/// Where a stored chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {seq}: {problem}")]
pub struct BrokenLink {
    pub seq: u32,
    pub problem: String,
}

/// Checks a notice's stored events: numbered 1, 2, … without gaps, each
/// linked to the one before, each hash the hash of its bytes.
pub fn verify(events: &[StoredEvent]) -> Result<Hash, BrokenLink> {
    let mut prev = GENESIS;
    for (i, e) in events.iter().enumerate() {
        let want = i as u32 + 1;
        if e.seq != want {
            return Err(BrokenLink {
                seq: want,
                problem: format!("missing: the next stored event is number {}", e.seq),
            });
        }
        if e.prev != prev {
            return Err(BrokenLink {
                seq: e.seq,
                problem: "its link to the previous event does not match that event's hash (an event before it was edited, removed or replaced)".into(),
            });
        }
        if link(&e.prev, &e.bytes) != e.hash {
            return Err(BrokenLink {
                seq: e.seq,
                problem: "its content does not match its hash (it was edited)".into(),
            });
        }
        prev = e.hash;
    }
    Ok(prev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use karpoosheh_schemas::{AgencyId, TrackingCode};

    fn accepted(reference: &str, nanos: u32, duplicate: bool) -> Receipt {
        let code = TrackingCode::from_parts(1_760_000_000_123, 3, 77);
        Receipt::new(
            format!("accepted:{code}"),
            AgencyId::parse("tax").unwrap(),
            Some(reference.to_owned()),
            Utc.timestamp_opt(1_765_000_000, nanos).unwrap(),
            ReceiptEvent::Accepted {
                tracking_code: code,
                duplicate,
                content_hash: Some("ab".repeat(32)),
                verification_code: Some(karpoosheh_schemas::verification_code(&code, &[7; 32])),
            },
        )
    }

    fn generic(r: &Receipt) -> Vec<u8> {
        let mut v = serde_json::to_value(r).unwrap();
        v.as_object_mut().unwrap().remove("evidence");
        jcs::canonical(&v).unwrap()
    }

    #[test]
    fn the_fast_accepted_form_is_the_canonical_form() {
        for (reference, nanos) in [
            ("ref-1", 0),
            ("پرونده/۱۴۰۳-\"q\"\\", 123_000_000),
            ("x", 1),
            ("تست", 999_999_999),
        ] {
            for dup in [false, true] {
                let r = accepted(reference, nanos, dup);
                assert_eq!(
                    String::from_utf8(event_bytes(&r)).unwrap(),
                    String::from_utf8(generic(&r)).unwrap()
                );
            }
        }
    }

    #[test]
    fn a_retried_event_is_the_recorded_one() {
        let mut events = Vec::new();
        let mut first = accepted("r", 1, false);
        assert!(place(&mut events, &mut first).is_some());
        // The same event rebuilt by a retry, with another time.
        let mut again = accepted("r", 2, false);
        assert!(
            place(&mut events, &mut again).is_none(),
            "not appended twice"
        );
        assert_eq!(again.at, first.at, "the recorded content is sent");
        assert_eq!(claimed_hash(&again), Some(events[0].hash));
        assert_eq!(link(&GENESIS, &event_bytes(&again)), events[0].hash);
    }

    #[test]
    fn a_chain_verifies_until_an_event_is_edited_removed_or_reordered() {
        let mut events = Vec::new();
        let (mut seq, mut prev) = (0, GENESIS);
        for i in 0..4 {
            let mut r = accepted(&format!("r{i}"), i, false);
            let e = append(seq, prev, &mut r);
            assert_eq!(claimed_hash(&r), Some(e.hash));
            assert_eq!(
                r.evidence.as_ref().unwrap().chain.as_ref().unwrap().seq,
                i + 1
            );
            (seq, prev) = (e.seq, e.hash);
            events.push(e);
        }
        assert_eq!(verify(&events), Ok(prev));
        let mut edited = events.clone();
        edited[1].bytes[5] ^= 1;
        assert_eq!(verify(&edited).unwrap_err().seq, 2);
        let mut removed = events.clone();
        removed.remove(2);
        assert_eq!(verify(&removed).unwrap_err().seq, 3);
        // Removed and renumbered: the link breaks instead.
        removed[2].seq = 3;
        assert_eq!(verify(&removed).unwrap_err().seq, 3);
        // Edited with its hash recomputed: the next link breaks.
        let mut rehashed = events.clone();
        rehashed[1].bytes[5] ^= 1;
        rehashed[1].hash = link(&rehashed[1].prev, &rehashed[1].bytes);
        let e = verify(&rehashed).unwrap_err();
        assert_eq!(e.seq, 3, "{e}");
    }
}
