//! What the ingest pipeline writes to a store and what the read path gets
//! back: new notices with their tracking codes, kept rejections, the
//! outcome of each write, stored notices and mailbox pages.

use chrono::{DateTime, Utc};
use karpoosheh_schemas::{
    AgencyId, DeadLetter, Notice, Priority, Problem, SourcePosition, TrackingCode,
};
use serde::{Deserialize, Serialize};

/// A notice accepted by the pipeline, with its tracking code assigned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewNotice {
    pub tracking_code: TrackingCode,
    pub accepted_at: DateTime<Utc>,
    pub content_hash: [u8; 32],
    pub notice: Notice,
    /// Where it came from; recorded if it turns out to be a conflict.
    pub position: SourcePosition,
    /// The lane it came in on (its topic's suffix).
    #[serde(default)]
    pub priority: Priority,
    /// A scheduled send: held out of the mailbox until then (the
    /// envelope's `deliver_at`, when after `accepted_at`).
    #[serde(default)]
    pub deliver_at: Option<DateTime<Utc>>,
    /// The recipient's response deadline (the envelope's `respond_by`).
    #[serde(default)]
    pub respond_by: Option<DateTime<Utc>>,
    /// Its agencies' queue, from the registry (`None`: the hash of the
    /// agency's ID; `DeliveryRecord::queue`).
    #[serde(default)]
    pub queue: Option<u8>,
}

impl NewNotice {
    /// The delivery record the notice's follow-up starts with.
    pub fn delivery_record(&self) -> crate::model::DeliveryRecord {
        let mut rec = crate::model::DeliveryRecord::new(
            self.tracking_code,
            &self.notice,
            self.accepted_at,
            self.priority,
            self.deliver_at,
            self.respond_by,
        );
        rec.queue = self.queue;
        rec
    }

    /// The notice's first event: the agency's `accepted` receipt, at the
    /// time it was accepted. The store appends it to the notice's chain
    /// and the pipeline sends it, so both build it here.
    pub fn accepted_receipt(&self) -> karpoosheh_schemas::Receipt {
        accepted_receipt(
            self.tracking_code,
            self.accepted_at,
            &self.notice,
            &self.content_hash,
        )
    }
}

/// The `accepted` receipt of `notice` stored as `code` at `accepted_at`:
/// with its content hash and the verification code for paper copies.
pub fn accepted_receipt(
    code: TrackingCode,
    accepted_at: DateTime<Utc>,
    notice: &Notice,
    content_hash: &[u8; 32],
) -> karpoosheh_schemas::Receipt {
    karpoosheh_schemas::Receipt::new(
        format!("accepted:{code}"),
        notice.agency.clone(),
        Some(notice.reference.clone()),
        accepted_at,
        accepted_event(code, content_hash, false),
    )
}

/// The `accepted` event of the notice stored as `code` with
/// `content_hash`, for it or (`duplicate`) for an exact re-send of it.
pub fn accepted_event(
    code: TrackingCode,
    content_hash: &[u8; 32],
    duplicate: bool,
) -> karpoosheh_schemas::ReceiptEvent {
    karpoosheh_schemas::ReceiptEvent::Accepted {
        tracking_code: code,
        duplicate,
        content_hash: Some(hex(content_hash)),
        verification_code: Some(karpoosheh_schemas::verification_code(&code, content_hash)),
    }
}

/// The `rejected` receipt of the record at `position`. Its ID names the
/// position: the record read again is answered under the same ID, and
/// `receipts replay` re-sends a kept rejection under it.
pub fn rejected_receipt(
    position: &SourcePosition,
    agency: AgencyId,
    reference: Option<String>,
    at: DateTime<Utc>,
    problems: Vec<Problem>,
) -> karpoosheh_schemas::Receipt {
    karpoosheh_schemas::Receipt::new(
        format!("rejected:{}", position_id(position)),
        agency,
        reference,
        at,
        karpoosheh_schemas::ReceiptEvent::Rejected { problems },
    )
}

/// A source position as one string, for receipt IDs and for knowing a
/// re-delivered record: `kafka:<topic>:<partition>:<offset>`,
/// `file:<path>:<line>`, `memory:<sequence>`.
pub fn position_id(p: &SourcePosition) -> String {
    match p {
        SourcePosition::File { path, line } => format!("file:{path}:{line}"),
        SourcePosition::Kafka {
            topic,
            partition,
            offset,
        } => format!("kafka:{topic}:{partition}:{offset}"),
        SourcePosition::InProcess { sequence } => format!("memory:{sequence}"),
    }
}

/// Lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// A rejection, kept for the agency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRejection {
    /// The agency it is kept for: the source's agency, or the envelope's
    /// when that was a valid ID; `None` files it as unattributed.
    pub agency: Option<AgencyId>,
    pub reference: Option<String>,
    pub problems: Vec<Problem>,
    pub position: SourcePosition,
    pub at: DateTime<Utc>,
}

impl NewRejection {
    /// Its source position and a fingerprint of what it says (see
    /// [`kept_source`]).
    pub fn kept_source(&self) -> Option<(String, [u8; 16])> {
        kept_source(
            &self.position,
            &(&self.agency, &self.reference, &self.problems),
        )
    }
}

/// A dead letter's source position and a fingerprint of its bytes and
/// problems (see [`kept_source`]).
pub fn dead_letter_source(d: &DeadLetter) -> Option<(String, [u8; 16])> {
    kept_source(&d.source, &(&d.agency, &d.problems, &d.payload_base64))
}

/// Where a rejection or dead letter came from (its position ID) and a
/// fingerprint of what it says (SHA-256 of its JSON, first 16 bytes),
/// so that a record re-delivered from the same position (a crash or
/// rebalance before its offset was committed) with the same verdict is not
/// kept twice ([`Outcome::Again`]). A different record at the same position
/// (a topic deleted and made again) has another fingerprint and is kept.
/// `None` for the in-process source, whose sequence starts again with
/// every run.
pub fn kept_source(position: &SourcePosition, what: &impl Serialize) -> Option<(String, [u8; 16])> {
    if matches!(position, SourcePosition::InProcess { .. }) {
        return None;
    }
    let json = serde_json::to_vec(what).expect("rejections serialise");
    let d = ring::digest::digest(&ring::digest::SHA256, &json);
    let mut fp = [0u8; 16];
    fp.copy_from_slice(&d.as_ref()[..16]);
    Some((position_id(position), fp))
}

/// One thing to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Notice(NewNotice),
    Rejection(NewRejection),
    DeadLetter(DeadLetter),
}

/// What became of one [`Entry`], in the same order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new notice, stored under the tracking code it came with.
    Stored,
    /// An exact re-send: nothing written; the original's tracking code.
    /// `redelivery`: this very record again, from the source position that
    /// first stored it (a crash or rebalance before its offset was
    /// committed), not a re-send by the agency: it is answered with the
    /// receipt it got the first time.
    Duplicate {
        original: TrackingCode,
        redelivery: bool,
    },
    /// Same reference, different content: the original kept, a
    /// `reference_conflict` rejection recorded.
    Conflict { original: TrackingCode },
    /// A rejection or dead letter recorded.
    Kept,
    /// A rejection or dead letter already kept for this very record (the
    /// same source position, the same verdict): it came again after a
    /// crash or rebalance. Nothing written; answered as before.
    Again,
}

/// A stored notice, as the read path returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredNotice {
    pub tracking_code: TrackingCode,
    pub accepted_at: DateTime<Utc>,
    pub content_hash: [u8; 32],
    pub notice: Notice,
}

impl From<NewNotice> for StoredNotice {
    fn from(n: NewNotice) -> Self {
        StoredNotice {
            tracking_code: n.tracking_code,
            accepted_at: n.accepted_at,
            content_hash: n.content_hash,
            notice: n.notice,
        }
    }
}

/// A kept rejection, with its store-assigned ID (time-ordered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRejection {
    pub id: u64,
    pub rejection: NewRejection,
}

/// One page of a mailbox, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailboxPage {
    pub notices: Vec<StoredNotice>,
    /// Pass as `before` to get the next page; `None` on the last page.
    pub next: Option<TrackingCode>,
}

/// One event of a notice's hash chain, as stored: appended, never
/// rewritten (evidence::chain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// 1 for `accepted`, then one more per event.
    pub seq: u32,
    /// The previous event's hash (zeros before the first).
    pub prev: [u8; 32],
    /// SHA-256(prev || bytes).
    pub hash: [u8; 32],
    /// The event: the RFC 8785 JSON of its receipt without evidence.
    pub bytes: Vec<u8>,
}

impl StoredEvent {
    /// As stored by the embedded store: prev, hash, then the bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64 + self.bytes.len());
        v.extend_from_slice(&self.prev);
        v.extend_from_slice(&self.hash);
        v.extend_from_slice(&self.bytes);
        v
    }

    /// Reads [`StoredEvent::encode`]'s bytes back; `None` when too short.
    pub fn decode(seq: u32, v: &[u8]) -> Option<StoredEvent> {
        if v.len() < 64 {
            return None;
        }
        Some(StoredEvent {
            seq,
            prev: v[..32].try_into().ok()?,
            hash: v[32..64].try_into().ok()?,
            bytes: v[64..].to_vec(),
        })
    }
}
