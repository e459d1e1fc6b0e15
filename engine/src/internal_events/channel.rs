//! Events of the notification channels. Labels: channel (sms, email,
//! push), gateway (http-sms, smtp, push-webhook, simulated), outcome
//! (accepted, transient, permanent). Never an address, a national ID or a
//! tracking code.

use std::time::Duration;

use karpoosheh_schemas::Channel;
use metrics::{counter, gauge, histogram};

use super::channel_label;
use crate::metric_names as m;

/// The channels in use, at start-up: series exist from the start (zeros),
/// so alerts see a value rather than a missing series.
pub struct ChannelsStarted {
    pub gateways: Vec<(Channel, &'static str)>,
}

impl ChannelsStarted {
    pub fn emit(self) {
        for (kind, gateway) in &self.gateways {
            let channel = channel_label(*kind);
            gauge!(m::CHANNEL_GATEWAY_INFO, "channel" => channel, "gateway" => *gateway).set(1.0);
            // Every breaker starts closed (0; half-open 1, open 2).
            gauge!(m::CHANNEL_CIRCUIT_STATE, "channel" => channel).set(0.0);
            counter!(m::CHANNEL_CIRCUIT_OPENED, "channel" => channel).increment(0);
            counter!(m::CHANNEL_RETRIES, "channel" => channel).increment(0);
            counter!(m::CHANNEL_RATE_LIMIT_REJECTED, "channel" => channel).increment(0);
            for reason in ChannelRefused::REASONS {
                counter!(m::CHANNEL_REFUSED, "channel" => channel, "reason" => *reason)
                    .increment(0);
            }
            // Registered, so the histogram shows (empty) before the first wait.
            let _ = histogram!(m::CHANNEL_RATE_LIMIT_WAIT_SECONDS, "channel" => channel);
            for outcome in ["accepted", "transient", "permanent"] {
                counter!(m::CHANNEL_ATTEMPTS, "channel" => channel, "gateway" => *gateway, "outcome" => outcome)
                    .increment(0);
            }
        }
        let list: Vec<String> = self
            .gateways
            .iter()
            .map(|(k, g)| format!("{}={g}", channel_label(*k)))
            .collect();
        tracing::info!(channels = %list.join(","), "notification channels ready");
    }
}

/// A notification refused before any gateway was asked (no token, no
/// attempt): the address cannot be used on this channel. `reason` is one
/// of [`ChannelRefused::REASONS`].
pub struct ChannelRefused<'a> {
    pub channel: Channel,
    pub reason: &'a str,
}

impl ChannelRefused<'_> {
    pub const REASONS: &'static [&'static str] =
        &["address_kind_mismatch", "email_malformed", "email_not_ir"];

    pub fn emit(self) {
        let channel = channel_label(self.channel);
        // Bounded: the reasons above, anything else counted as `other`.
        let reason = Self::REASONS
            .iter()
            .find(|r| **r == self.reason)
            .copied()
            .unwrap_or("other");
        counter!(m::CHANNEL_REFUSED, "channel" => channel, "reason" => reason).increment(1);
        tracing::debug!(channel, reason, "notification refused before sending");
    }
}

/// A simulated gateway was set up: nobody will actually be notified.
pub struct SimulatedGatewayInUse {
    pub channel: Channel,
}

impl SimulatedGatewayInUse {
    pub fn emit(self) {
        tracing::warn!(
            channel = channel_label(self.channel),
            gateway = "simulated",
            "SIMULATED gateway in use: no real notifications are sent on this channel (demo and load tests only)"
        );
    }
}

/// One attempt at one gateway.
pub struct ChannelAttempted<'a> {
    pub channel: Channel,
    pub gateway: &'static str,
    /// `accepted`, `transient` or `permanent`.
    pub outcome: &'static str,
    /// Why it failed (a stable code), when it did.
    pub failure: Option<&'a str>,
    pub elapsed: Duration,
}

impl ChannelAttempted<'_> {
    pub fn emit(self) {
        let channel = channel_label(self.channel);
        let outcome = self.outcome;
        counter!(m::CHANNEL_ATTEMPTS, "channel" => channel, "gateway" => self.gateway, "outcome" => outcome)
            .increment(1);
        histogram!(m::CHANNEL_SEND_SECONDS, "channel" => channel)
            .record(self.elapsed.as_secs_f64());
        if let Some(reason) = self.failure {
            // Debug only: at volume, failures are read from the metric.
            tracing::debug!(
                channel,
                gateway = self.gateway,
                outcome,
                reason,
                "notification attempt failed"
            );
        }
    }
}

/// A transient failure is retried after `delay`.
pub struct ChannelRetrying<'a> {
    pub channel: Channel,
    pub gateway: &'static str,
    pub retry: u32,
    pub delay: Duration,
    pub reason: &'a str,
}

impl ChannelRetrying<'_> {
    pub fn emit(self) {
        let channel = channel_label(self.channel);
        counter!(m::CHANNEL_RETRIES, "channel" => channel).increment(1);
        tracing::debug!(
            channel,
            gateway = self.gateway,
            retry = self.retry,
            delay_ms = self.delay.as_millis() as u64,
            reason = self.reason,
            "retrying notification"
        );
    }
}

/// A circuit breaker changed state.
pub struct CircuitStateChanged {
    pub channel: Channel,
    pub gateway: &'static str,
    /// `closed`, `half_open` or `open`.
    pub from: &'static str,
    pub to: &'static str,
    /// The state as the gauge shows it: closed 0, half-open 1, open 2.
    pub to_value: f64,
}

impl CircuitStateChanged {
    pub fn emit(self) {
        let channel = channel_label(self.channel);
        gauge!(m::CHANNEL_CIRCUIT_STATE, "channel" => channel).set(self.to_value);
        match self.to {
            "open" => {
                counter!(m::CHANNEL_CIRCUIT_OPENED, "channel" => channel).increment(1);
                tracing::warn!(
                    channel,
                    gateway = self.gateway,
                    from = self.from,
                    "circuit breaker opened: channel skipped until a probe succeeds"
                );
            }
            "half_open" => {
                tracing::info!(
                    channel,
                    gateway = self.gateway,
                    "circuit breaker half-open: probing the gateway"
                );
            }
            _ => {
                tracing::info!(
                    channel,
                    gateway = self.gateway,
                    "circuit breaker closed: gateway healthy again"
                );
            }
        }
    }
}

/// Time a send waited for a rate-limit token (saturation).
pub struct ChannelRateLimitWaited {
    pub channel: Channel,
    pub waited: Duration,
}

impl ChannelRateLimitWaited {
    pub fn emit(self) {
        histogram!(m::CHANNEL_RATE_LIMIT_WAIT_SECONDS, "channel" => channel_label(self.channel))
            .record(self.waited.as_secs_f64());
    }
}

/// A send gave up waiting for a token: the channel was skipped.
pub struct ChannelRateLimitSaturated {
    pub channel: Channel,
}

impl ChannelRateLimitSaturated {
    pub fn emit(self) {
        counter!(m::CHANNEL_RATE_LIMIT_REJECTED, "channel" => channel_label(self.channel))
            .increment(1);
    }
}
