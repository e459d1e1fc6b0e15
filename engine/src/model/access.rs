//! Traffic data (the 1401 requirement): every call of the inbox API that
//! touches a mailbox, kept at least six months and then purged. Never in
//! logs or metric labels: only here.

use chrono::{DateTime, Utc};
use karpoosheh_schemas::{MailboxId, TrackingCode};
use serde::{Deserialize, Serialize};

/// One call that touched a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRecord {
    /// When the node answered, to the millisecond.
    pub at: DateTime<Utc>,
    /// The mailbox touched.
    pub mailbox: MailboxId,
    /// Who called: the token's subject (the holder, or someone acting
    /// for them); none for an inquiry about a printed copy, which anyone
    /// holding the paper may make.
    pub actor: Option<MailboxId>,
    /// What: `list`, `open`, `confirm`, `share`, `unshare` (with
    /// `_refused` or `_missing`), `document_inquiry`.
    pub action: String,
    /// The notice asked for, when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_code: Option<TrackingCode>,
    /// The app the token was issued to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
    /// The caller's network address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}
