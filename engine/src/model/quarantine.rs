//! A stored record that could not be read back, set aside (quarantined)
//! so that it blocks nothing behind it: kept with the error, counted,
//! alerted and listed (`karpoosheh quarantine`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    /// Assigned by the store: time-ordered, unique on the node.
    #[serde(default)]
    pub id: u64,
    /// When it was set aside (the node's clock).
    pub at: DateTime<Utc>,
    /// What it was: `outbox_receipt`, `delivery_record`, `parked_receipt`.
    pub kind: String,
    /// Where it was: an outbox or lot ID, a tracking code.
    pub key: String,
    /// Why it could not be read.
    pub error: String,
    /// The stored bytes, base64 (standard), where the record was moved
    /// out of its place; empty where it stays where it was (a delivery
    /// record is evidence and is never removed).
    #[serde(default)]
    pub bytes_b64: String,
    /// What was done besides (e.g. the timers taken off the schedule).
    #[serde(default)]
    pub detail: String,
}
