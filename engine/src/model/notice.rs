//! What the ingest pipeline writes to a store and what the read path gets
//! back: new notices with their tracking codes, kept rejections, the
//! outcome of each write, stored notices and mailbox pages.

use chrono::{DateTime, Utc};
use karpoosheh_schemas::{AgencyId, DeadLetter, Notice, Problem, SourcePosition, TrackingCode};
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
    Duplicate { original: TrackingCode },
    /// Same reference, different content: the original kept, a
    /// `reference_conflict` rejection recorded.
    Conflict { original: TrackingCode },
    /// A rejection or dead letter recorded.
    Kept,
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
#[derive(Debug, Clone, PartialEq)]
pub struct MailboxPage {
    pub notices: Vec<StoredNotice>,
    /// Pass as `before` to get the next page; `None` on the last page.
    pub next: Option<TrackingCode>,
}
