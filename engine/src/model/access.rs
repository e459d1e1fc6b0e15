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
    /// Who called: the token's subject.
    pub actor: MailboxId,
    /// What: `list`, `open`, `open_refused` (level too low), `open_missing`
    /// (no such notice in this mailbox).
    pub action: String,
    /// The notice asked for, when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_code: Option<TrackingCode>,
    /// The app the token was issued to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
}
