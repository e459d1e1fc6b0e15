//! Notification channels (art. 29): how one notification round reaches one
//! person — SMS from the 4040 short code through an HTTP gateway, e-mail
//! over SMTP, push/messenger through an HTTP webhook, or a simulated
//! gateway for the demo and load tests.
//!
//! A [`Transport`] makes exactly one attempt at one gateway. The
//! [`Dispatcher`] owns everything around it, per channel: a token-bucket
//! rate limit (gateways are never flooded), retries with exponential
//! back-off and full jitter for transient failures only, a circuit breaker,
//! and the fallback order between channels. A round counts as delivered as
//! soon as one channel accepted it.
//!
//! Guarantees: no phone number, e-mail address or national ID ever appears
//! in an error message, a log line or a metric label — failures carry short
//! stable reason codes. Each notification carries an idempotency key that
//! gateways receive (header / Message-ID), so a resend after a crash can be
//! deduplicated on their side; the channels themselves never resend an
//! accepted notification.

mod config;
mod dispatcher;
mod http;
mod policy;
mod simulated;
mod smtp;
mod template;

use karpoosheh_schemas::{AgencyId, MailboxId, MailboxKind, MailboxProfile, TrackingCode};

pub use config::{ChannelsConfig, SimulatedConfig};
pub use dispatcher::Dispatcher;
pub use http::HttpTransport;
#[cfg(test)]
pub use policy::ChannelPolicy;
#[cfg(test)]
pub use policy::CircuitState;
pub use simulated::SimulatedTransport;
pub use smtp::SmtpTransport;
pub(crate) use template::{escape_into, Escape};

/// The three channels of art. 29.
pub use karpoosheh_schemas::Channel as ChannelKind;

pub use crate::internal_events::channel_label;

/// Where one notification goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A verified mobile number (`09` and nine digits).
    Mobile(String),
    /// An e-mail address.
    Email(String),
    /// The recipient's own mailbox, for the app / messenger.
    Push(MailboxId),
}

/// One notification: what to tell one person about one notice in one round.
#[derive(Debug, Clone)]
pub struct Notification {
    pub tracking_code: TrackingCode,
    /// 1..=3.
    pub round: u8,
    pub agency: AgencyId,
    /// The notice's title; may be Persian.
    pub title: String,
    /// Art. 22: representatives get every round too.
    pub to_representative: bool,
    /// Whether the person notified (the recipient or the representative)
    /// is a natural person or a legal entity: natural persons may only be
    /// e-mailed on `.ir` domains (art. 20).
    pub recipient_kind: MailboxKind,
    /// Stable per (tracking code, round, recipient); sent to gateways
    /// (header / Message-ID) so they can dedupe a resend after a crash.
    pub idempotency_key: String,
    /// The notice's lane: urgent sends may use the part of a gateway's
    /// rate kept for them (`urgent_reserve`).
    pub priority: karpoosheh_schemas::Priority,
    /// A reminder of this response deadline (`respond_by`), not a round
    /// (`round` is then 0): the channels send their reminder text.
    pub reminder: Option<chrono::DateTime<chrono::Utc>>,
}

impl Notification {
    /// The conventional idempotency key: `<tracking code>-r<round>-<n>`,
    /// where `n` is the position of the person notified (0 = the
    /// recipient, 1.. = representatives in profile order). It contains no
    /// national ID, so gateways and their logs never see one.
    pub fn idempotency_key_for(tracking_code: TrackingCode, round: u8, person: usize) -> String {
        format!("{tracking_code}-r{round}-{person}")
    }
}

/// One way to reach one person.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: ChannelKind,
    pub address: Address,
}

impl Target {
    /// The targets a mailbox profile offers: its mobile, e-mail and push,
    /// whichever are present. Order does not matter: the dispatcher tries
    /// them in the configured channel order.
    pub fn from_profile(p: &MailboxProfile) -> Vec<Target> {
        let mut out = Vec::with_capacity(3);
        if let Some(m) = p.mobile.as_deref().filter(|m| !m.is_empty()) {
            out.push(Target {
                kind: ChannelKind::Sms,
                address: Address::Mobile(m.to_owned()),
            });
        }
        if let Some(e) = p.email.as_deref().filter(|e| !e.is_empty()) {
            out.push(Target {
                kind: ChannelKind::Email,
                address: Address::Email(e.to_owned()),
            });
        }
        if p.push {
            out.push(Target {
                kind: ChannelKind::Push,
                address: Address::Push(p.id),
            });
        }
        out
    }
}

/// Why one attempt at one gateway failed. Messages are short reason codes
/// (`http_status_503`, `timeout`, `email_not_ir`), never personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The gateway may accept it later (timeouts, connection errors, 429,
    /// 5xx, SMTP 4xx): retried with back-off, counted by the breaker.
    #[error("transient gateway failure ({0}); retried with back-off")]
    Transient(String),
    /// This notification will never be accepted as it is (bad address,
    /// 4xx, SMTP 5xx): not retried on this channel.
    #[error("permanent failure ({0}); not retried on this channel")]
    Permanent(String),
}

impl SendError {
    pub fn reason(&self) -> &str {
        match self {
            SendError::Transient(r) | SendError::Permanent(r) => r,
        }
    }

    #[cfg(test)]
    pub fn is_transient(&self) -> bool {
        matches!(self, SendError::Transient(_))
    }
}

/// One gateway; one attempt, no retries (the [`Dispatcher`] retries).
/// A transport must enforce its own timeout.
pub trait Transport: Send + Sync {
    fn kind(&self) -> ChannelKind;
    /// `http-sms`, `smtp`, `push-webhook`, `simulated`: the `gateway` label.
    fn name(&self) -> &'static str;
    fn send(&self, n: &Notification, to: &Address) -> Result<(), SendError>;
}

/// The outcome of one notification round for one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A channel accepted it. `attempts` counts every attempt on every
    /// channel, this one included.
    Accepted { channel: ChannelKind, attempts: u32 },
    /// Every target failed, or none was usable. `reason` is a stable
    /// snake_case code: `no_channel` (no target on an enabled channel),
    /// `circuit_open` (every usable channel's breaker was open),
    /// `rate_limited` (every usable channel was saturated past its wait
    /// bound), `permanent_failure` (every channel refused it for good),
    /// `all_channels_failed` (a mix, at least one transient).
    /// `transient` says whether trying later may help.
    Failed {
        reason: &'static str,
        transient: bool,
        attempts: u32,
    },
}

impl Delivery {
    pub fn is_accepted(&self) -> bool {
        matches!(self, Delivery::Accepted { .. })
    }
}

/// Why the channels could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    #[error("channels configuration: {0}")]
    Config(String),
    #[error("channel {channel}: cannot set up the {gateway} gateway: {message}")]
    Transport {
        channel: &'static str,
        gateway: &'static str,
        message: String,
    },
}

/// Whether an e-mail address may be used for this person: natural persons
/// only on `.ir` domains (art. 20); legal entities on any domain.
pub fn email_allowed(kind: MailboxKind, email: &str) -> Result<(), SendError> {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err(SendError::Permanent("email_malformed".into()));
    };
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if local.is_empty() || domain.is_empty() || !domain.contains('.') {
        return Err(SendError::Permanent("email_malformed".into()));
    }
    if kind == MailboxKind::Person && !domain.ends_with(".ir") {
        return Err(SendError::Permanent("email_not_ir".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
