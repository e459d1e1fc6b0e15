//! What the operators' endpoint answers the dashboard (issue 26): one
//! definition for the engine that sends it and `karpoosheh-monitor` that
//! reads it, so the two cannot drift apart. Everything here is already
//! masked by the node ([`crate::mask_personal`], [`crate::mask_id`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::AgencyId;

/// A notice's legal history as an operator's screen shows it (the
/// dashboard's lookup): what `karpoosheh notice` prints of it, with the
/// recipient masked and neither the title nor the body, so that the
/// screen never carries a national ID or the notice's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoticeHistory {
    pub tracking_code: String,
    pub agency: String,
    pub reference: String,
    /// The mailbox's ID, all but its last four digits masked.
    pub recipient: String,
    pub kind: String,
    pub accepted_at: String,
    pub expires_at: String,
    /// `scheduled`, `awaiting_activation`, `unreachable`, `served`,
    /// `not_served`, `expired`, `held` or `cancelled`.
    pub state: String,
    /// The legal outcome, the rounds, confirmations and what is pending,
    /// one line each (as `karpoosheh notice`).
    pub history: Vec<String>,
    /// The evidence chain, one line per event and the verdict.
    pub chain: Vec<String>,
}

/// A node's parking lot for one agency (issue 23): receipts its topic
/// refused, waiting to be delivered in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParkedLot {
    pub agency: AgencyId,
    /// Receipts waiting.
    pub receipts: u64,
    /// The oldest one's event and time: how long the agency has waited.
    pub oldest_event: Option<String>,
    pub oldest_at: Option<DateTime<Utc>>,
}

/// A quarantined record as the dashboard shows it: no bytes, no detail,
/// the error masked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantinedView {
    pub id: u64,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub key: String,
    pub error: String,
}
