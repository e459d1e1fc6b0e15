//! The other messages of the contract: receipts back to agencies,
//! recipients' confirmations, mailbox profiles, and dead-letter records.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{AgencyId, MailboxId};
use crate::notice::{AccessLevel, SCHEMA_VERSION};
use crate::reason::Problem;
use crate::tracking::TrackingCode;

/// A notification channel (art. 29; SMS from the 4040 short code).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Sms,
    Email,
    Push,
}

/// The life-cycle state of a mailbox (DOMAIN.md, art. 31, 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum MailboxStatus {
    /// Registered and reachable.
    Active,
    /// The person exists but never registered: notices are kept, nobody can
    /// be notified.
    #[default]
    NotActivated,
    /// Deceased: access follows inheritance law (art. 31).
    Deceased,
    /// Legally incapacitated: access through the guardian (art. 31).
    Incapacitated,
    /// A dissolved legal entity (art. 32).
    Dissolved,
}

/// One event an agency is told about a notice, in
/// `karpoosheh.receipts.<agency>`, keyed by the agency's reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ReceiptEvent {
    /// Stored durably. `duplicate` is true when this was an exact re-send of
    /// a notice stored before; the tracking code is the original one.
    Accepted {
        tracking_code: TrackingCode,
        duplicate: bool,
        /// The content hash of what was stored (content hash v1, lowercase
        /// hex; wire contract, "Content hash").
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content_hash: Option<String>,
        /// The code to print on a paper copy (article 15), with which
        /// anyone holding the paper can check it is genuine.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        verification_code: Option<String>,
    },
    /// Not stored; every problem is listed.
    Rejected { problems: Vec<Problem> },
    /// Notification round `round` (1-3) went out on `channel`.
    NotificationSent {
        tracking_code: TrackingCode,
        round: u8,
        channel: Channel,
        to_representative: bool,
    },
    /// Notification round `round` failed on every channel.
    NotificationFailed {
        tracking_code: TrackingCode,
        round: u8,
        reason: String,
    },
    /// The recipient confirmed (`count` is 1 or 2).
    Confirmed {
        tracking_code: TrackingCode,
        count: u8,
    },
    /// Actually served (art. 29): confirmed twice; `served_at` is the legal time.
    Served {
        tracking_code: TrackingCode,
        served_at: DateTime<Utc>,
    },
    /// All rounds done with fewer than two confirmations: serve on paper.
    NotServed { tracking_code: TrackingCode },
    /// Retention expiry passed before the notice was served.
    Expired { tracking_code: TrackingCode },
    /// A scheduled notice (`deliver_at`) landed in the mailbox at `at`,
    /// by the engine's clock: from then the recipient sees it, and its
    /// rounds start.
    Released { tracking_code: TrackingCode },
    /// A scheduled notice the agency cancelled before it landed: nobody
    /// ever saw it or was notified of it.
    Cancelled { tracking_code: TrackingCode },
    /// A reminder of the response deadline (`respond_by`) went out by
    /// `channel` to a recipient (or representative) who had neither opened
    /// nor confirmed the notice.
    ReminderSent {
        tracking_code: TrackingCode,
        channel: Channel,
        to_representative: bool,
        respond_by: DateTime<Utc>,
    },
    /// The reminder reached nobody.
    ReminderFailed {
        tracking_code: TrackingCode,
        reason: String,
    },
    /// Stored, but the mailbox cannot be notified in its current state.
    MailboxUnreachable {
        tracking_code: TrackingCode,
        status: MailboxStatus,
    },
    /// Stored, but the mailbox's access level is below the notice's minimum.
    AccessLevelInsufficient {
        tracking_code: TrackingCode,
        required: AccessLevel,
        held: AccessLevel,
    },
    /// The recipient (or a representative) opened the notice in an inbox
    /// app, for the first time; at most once each (inbox API).
    Opened {
        tracking_code: TrackingCode,
        by_representative: bool,
    },
    /// The recipient consented to share the notice with agency `with`
    /// (article 27); that agency gets the document as `document_shared`.
    Shared {
        tracking_code: TrackingCode,
        share_id: String,
        with: AgencyId,
    },
    /// The recipient withdrew share `share_id`; agency `with` was told.
    ShareRevoked {
        tracking_code: TrackingCode,
        share_id: String,
        with: AgencyId,
    },
    /// To the agency a notice was shared with (article 27), not to its
    /// sender: the document, as stored, with what verifies it (its content
    /// hash v1 and verification code; wire contract). Not an event of the
    /// sender's chain.
    DocumentShared {
        tracking_code: TrackingCode,
        share_id: String,
        /// The agency that sent the notice.
        from: AgencyId,
        content_hash: String,
        verification_code: String,
        document: crate::notice::Notice,
    },
    /// To the agency a notice was shared with: the recipient withdrew the
    /// share; the document must no longer be used on its strength.
    ShareWithdrawn {
        tracking_code: TrackingCode,
        share_id: String,
        from: AgencyId,
    },
    /// Not an event of a notice: the node signed a batch of this agency's
    /// receipts. Each receipt of the batch names it (`evidence.batch.root`)
    /// and its place in `leaves` (wire contract, "Receipt evidence").
    BatchSigned {
        /// The node key that signed (its JWK kid).
        kid: String,
        signed_at: DateTime<Utc>,
        /// Receipts in the batch.
        size: u64,
        /// The batch's RFC 9162 Merkle tree hash, base64url.
        root: String,
        /// Ed25519 over the canonical batch head, base64url.
        signature: String,
        /// Each receipt's leaf, in order, base64url.
        leaves: Vec<String>,
    },
}

/// A receipt: one event about one notice, for the sending agency.
/// Receipts are delivered at least once; deduplicate by `receipt_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Receipt")]
pub struct Receipt {
    pub schema_version: u32,
    /// Unique per event; the same event re-delivered has the same ID.
    pub receipt_id: String,
    pub agency: AgencyId,
    /// The agency's reference, when the envelope carried a readable one.
    pub reference: Option<String>,
    /// When the event happened.
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: ReceiptEvent,
    /// What proves this receipt without trusting the engine's database:
    /// its link in the notice's hash chain and the node's signature over
    /// the batch it was published in (wire contract, "Receipt evidence").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

/// A receipt's evidence (wire contract, "Receipt evidence").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// The event's link in its notice's hash chain; absent on receipts
    /// that are no event of a stored notice (rejected, duplicate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainLink>,
    /// The signed batch the receipt was published in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchRef>,
}

/// One event's link in its notice's hash chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChainLink {
    /// 1 for `accepted`, then one more per event of the notice.
    pub seq: u32,
    /// The previous event's hash (32 zero bytes before the first), base64url.
    pub prev: String,
    /// SHA-256(prev || canonical receipt without evidence), base64url.
    pub hash: String,
}

/// The signed batch a receipt was published in: its `batch_signed`
/// receipt (same topic) has this root and lists the leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRef {
    /// The batch's Merkle tree hash, base64url.
    pub root: String,
    /// This receipt's leaf index in the batch, from 0.
    pub index: u64,
}

impl Receipt {
    pub fn new(
        receipt_id: String,
        agency: AgencyId,
        reference: Option<String>,
        at: DateTime<Utc>,
        event: ReceiptEvent,
    ) -> Self {
        Receipt {
            schema_version: SCHEMA_VERSION,
            receipt_id,
            agency,
            reference,
            at,
            event,
            evidence: None,
        }
    }
}

/// A recipient's confirmation of a notice, from `karpoosheh.acks`, keyed by
/// recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Confirmation")]
pub struct Confirmation {
    pub schema_version: u32,
    /// Unique per confirmation; re-deliveries carry the same ID.
    pub confirmation_id: String,
    pub tracking_code: TrackingCode,
    /// The mailbox confirming; must be the notice's recipient or one of
    /// its representatives.
    pub confirmed_by: MailboxId,
    pub confirmed_at: DateTime<Utc>,
}

/// A mailbox profile from the identity side, in the compacted
/// `karpoosheh.registry` topic, keyed by mailbox ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Mailbox profile")]
pub struct MailboxProfile {
    pub schema_version: u32,
    pub id: MailboxId,
    pub status: MailboxStatus,
    /// Verified access level, 0 (none) to 3 (art. 18).
    pub access_level: AccessLevel,
    /// Verified mobile, `09` and nine digits; SMS comes from 4040.
    #[serde(default)]
    pub mobile: Option<String>,
    /// E-mail; on a `.ir` domain for natural persons (art. 20).
    #[serde(default)]
    pub email: Option<String>,
    /// Whether the recipient has the app / messenger for push.
    #[serde(default)]
    pub push: bool,
    /// Mailboxes this one has delegated to (art. 22); they are notified too.
    /// While the person is incapacitated they are the guardians (art. 31).
    #[serde(default)]
    pub representatives: Vec<MailboxId>,
    /// The scope of a representative's delegation, where it is narrower or
    /// wider than the default (read and confirm everything; no sharing).
    /// One entry per representative at most; an entry for a mailbox not in
    /// `representatives` grants nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegations: Vec<Delegation>,
    pub updated_at: DateTime<Utc>,
}

/// What one representative may do for a mailbox (art. 22), through the
/// inbox API and by confirmation. A guardian of an incapacitated person
/// may also share unless an entry says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Delegation {
    /// The representative.
    pub to: MailboxId,
    /// Notices needing a higher access level than this stay closed to
    /// the representative (their own session's level counts too).
    #[serde(default = "max_level")]
    pub max_access_level: AccessLevel,
    /// Only notices of these agencies; empty: of every agency.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agencies: Vec<AgencyId>,
    /// May confirm notifications (art. 29) for the person.
    #[serde(default = "yes")]
    pub may_confirm: bool,
    /// May share notices with other agencies (art. 27) for the person.
    #[serde(default)]
    pub may_share: bool,
    /// The delegation ends then; none: until the profile changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

fn max_level() -> AccessLevel {
    crate::notice::MAX_ACCESS_LEVEL
}

fn yes() -> bool {
    true
}

/// Where an undecodable record came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourcePosition {
    /// A line in an NDJSON file (1-based).
    File { path: String, line: u64 },
    /// A Kafka record.
    Kafka {
        topic: String,
        partition: i32,
        offset: i64,
    },
    /// The in-process source (demo and load tests).
    InProcess { sequence: u64 },
}

/// A record that could not be decoded into an envelope at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Dead letter")]
pub struct DeadLetter {
    pub schema_version: u32,
    pub source: SourcePosition,
    /// The agency the source speaks for, when it speaks for one.
    pub agency: Option<AgencyId>,
    pub problems: Vec<Problem>,
    /// The original bytes, base64 (standard alphabet), cut at the limit.
    pub payload_base64: String,
    /// The original size in bytes.
    pub payload_size: u64,
    pub at: DateTime<Utc>,
}
