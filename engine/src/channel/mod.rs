//! PLACEHOLDER until the channels branch is merged: the interface only.
use karpoosheh_schemas::{AgencyId, MailboxId, TrackingCode};

pub use karpoosheh_schemas::Channel as ChannelKind;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Mobile(String),
    Email(String),
    Push(MailboxId),
}

#[derive(Debug, Clone)]
pub struct Notification {
    pub tracking_code: TrackingCode,
    pub round: u8,
    pub agency: AgencyId,
    pub title: String,
    pub to_representative: bool,
    pub idempotency_key: String,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub kind: ChannelKind,
    pub address: Address,
}

pub enum Delivery {
    Accepted {
        channel: ChannelKind,
        attempts: u32,
    },
    Failed {
        reason: &'static str,
        transient: bool,
        attempts: u32,
    },
}
