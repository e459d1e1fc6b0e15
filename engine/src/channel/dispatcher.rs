//! The dispatcher: one notification to one person, across channels.
//!
//! For each channel in the configured order, for each of the person's
//! targets on it: breaker check (an open breaker skips the channel), a
//! rate-limit token (waited for up to a bound; past it the channel is
//! skipped as saturated), then attempts — transient failures retried with
//! exponential back-off and full jitter up to `max_attempts`, permanent
//! failures never. The first acceptance ends the round.
//!
//! Blocking and thread-safe: scheduler workers call [`Dispatcher::deliver`]
//! concurrently; the rate limit and the breaker are shared per channel.
//! A call blocks at most about `rate_limit_wait + max_attempts × (timeout +
//! backoff_max)` per channel tried.

use std::sync::Arc;
use std::time::Instant;

use rand::Rng;

use super::config::{ChannelsConfig, EmailGateway, PushGateway, SmsGateway};
use super::policy::{backoff_delay, ChannelPolicy, CircuitBreaker, TokenBucket, Transition};
use super::{
    email_allowed, Address, ChannelError, ChannelKind, Delivery, HttpTransport, Notification,
    SendError, SimulatedTransport, SmtpTransport, Target, Transport,
};
use crate::internal_events::{
    ChannelAttempted, ChannelRateLimitSaturated, ChannelRateLimitWaited, ChannelRefused,
    ChannelRetrying, ChannelsStarted, CircuitStateChanged,
};

struct Channel {
    transport: Arc<dyn Transport>,
    policy: ChannelPolicy,
    bucket: TokenBucket,
    breaker: CircuitBreaker,
}

impl Channel {
    fn report(&self, t: Transition) {
        if let Some((from, to)) = t {
            CircuitStateChanged {
                channel: self.transport.kind(),
                gateway: self.transport.name(),
                from: from.as_str(),
                to: to.as_str(),
                to_value: to.gauge_value(),
            }
            .emit();
        }
    }
}

/// How one channel fared for one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Accepted,
    CircuitOpen,
    RateLimited,
    Transient,
    Permanent,
}

/// Sends notifications over the configured channels.
pub struct Dispatcher {
    channels: Vec<Channel>,
    order: Vec<ChannelKind>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("gateways", &self.gateways())
            .field("order", &self.order)
            .finish()
    }
}

impl Dispatcher {
    /// Builds the transports `[channels]` names (enabled channels only).
    pub fn from_config(cfg: &ChannelsConfig) -> Result<Dispatcher, ChannelError> {
        cfg.validate().map_err(ChannelError::Config)?;
        let mut transports: Vec<(Arc<dyn Transport>, ChannelPolicy)> = Vec::new();
        for &kind in &cfg.order {
            if !cfg.enabled(kind) {
                continue;
            }
            let (t, policy): (Arc<dyn Transport>, &ChannelPolicy) = match kind {
                ChannelKind::Sms => {
                    let c = &cfg.sms;
                    let t: Arc<dyn Transport> = match c.gateway {
                        SmsGateway::Http => Arc::new(HttpTransport::sms(c)?),
                        SmsGateway::Simulated => Arc::new(SimulatedTransport::new(
                            kind,
                            &c.simulated,
                            c.policy.timeout.0,
                        )),
                    };
                    (t, &c.policy)
                }
                ChannelKind::Email => {
                    let c = &cfg.email;
                    let t: Arc<dyn Transport> = match c.gateway {
                        EmailGateway::Smtp => Arc::new(SmtpTransport::new(c)?),
                        EmailGateway::Simulated => Arc::new(SimulatedTransport::new(
                            kind,
                            &c.simulated,
                            c.policy.timeout.0,
                        )),
                    };
                    (t, &c.policy)
                }
                ChannelKind::Push => {
                    let c = &cfg.push;
                    let t: Arc<dyn Transport> = match c.gateway {
                        PushGateway::Webhook => Arc::new(HttpTransport::push(c)?),
                        PushGateway::Simulated => Arc::new(SimulatedTransport::new(
                            kind,
                            &c.simulated,
                            c.policy.timeout.0,
                        )),
                    };
                    (t, &c.policy)
                }
            };
            transports.push((t, policy.clone()));
        }
        Ok(Dispatcher::new(transports, cfg.order.clone()))
    }

    /// A dispatcher over `transports` (one per channel; a later one for the
    /// same channel is ignored), tried in `order`. Channels missing from
    /// `order` are never used.
    pub fn new(
        transports: Vec<(Arc<dyn Transport>, ChannelPolicy)>,
        order: Vec<ChannelKind>,
    ) -> Dispatcher {
        let mut channels: Vec<Channel> = Vec::new();
        for (transport, policy) in transports {
            if channels
                .iter()
                .any(|c| c.transport.kind() == transport.kind())
            {
                continue;
            }
            channels.push(Channel {
                bucket: TokenBucket::with_reserve(
                    policy.rate_per_sec,
                    policy.burst,
                    policy.urgent_reserve,
                ),
                breaker: CircuitBreaker::new(policy.breaker_failures, policy.breaker_cooldown.0),
                transport,
                policy,
            });
        }
        let d = Dispatcher { channels, order };
        ChannelsStarted {
            gateways: d.gateways(),
        }
        .emit();
        d
    }

    /// The channels in use, in order, with their gateway names.
    pub fn gateways(&self) -> Vec<(ChannelKind, &'static str)> {
        self.order
            .iter()
            .filter_map(|k| self.channel(*k).map(|c| (*k, c.transport.name())))
            .collect()
    }

    fn channel(&self, kind: ChannelKind) -> Option<&Channel> {
        self.channels.iter().find(|c| c.transport.kind() == kind)
    }

    #[cfg(test)]
    /// Each channel's breaker state, in order.
    pub fn circuit_states(&self) -> Vec<(ChannelKind, super::CircuitState)> {
        self.order
            .iter()
            .filter_map(|k| self.channel(*k).map(|c| (*k, c.breaker.state())))
            .collect()
    }

    /// Notifies one person of one round; see the module documentation.
    pub fn deliver(&self, n: &Notification, targets: &[Target]) -> Delivery {
        let mut attempts = 0u32;
        let mut outcomes: Vec<Outcome> = Vec::new();
        for &kind in &self.order {
            let Some(ch) = self.channel(kind) else {
                continue;
            };
            for t in targets.iter().filter(|t| t.kind == kind) {
                let o = self.try_channel(ch, n, &t.address, &mut attempts);
                if o == Outcome::Accepted {
                    return Delivery::Accepted {
                        channel: kind,
                        attempts,
                    };
                }
                outcomes.push(o);
            }
        }
        let all = |w: Outcome| !outcomes.is_empty() && outcomes.iter().all(|o| *o == w);
        let (reason, transient) = if outcomes.is_empty() {
            ("no_channel", false)
        } else if all(Outcome::Permanent) {
            ("permanent_failure", false)
        } else if all(Outcome::CircuitOpen) {
            ("circuit_open", true)
        } else if all(Outcome::RateLimited) {
            ("rate_limited", true)
        } else {
            ("all_channels_failed", true)
        };
        Delivery::Failed {
            reason,
            transient,
            attempts,
        }
    }

    fn try_channel(
        &self,
        ch: &Channel,
        n: &Notification,
        to: &Address,
        attempts: &mut u32,
    ) -> Outcome {
        let kind = ch.transport.kind();
        let gateway = ch.transport.name();
        // Refusals that need no gateway: cost no token, no attempt.
        let pre = match (kind, to) {
            (ChannelKind::Email, Address::Email(e)) => email_allowed(n.recipient_kind, e),
            (ChannelKind::Sms, Address::Mobile(_)) | (ChannelKind::Push, Address::Push(_)) => {
                Ok(())
            }
            _ => Err(SendError::Permanent("address_kind_mismatch".into())),
        };
        if let Err(e) = pre {
            ChannelRefused {
                channel: kind,
                reason: e.reason(),
            }
            .emit();
            return Outcome::Permanent;
        }
        let mut retry = 0u32;
        loop {
            let (allowed, t) = ch.breaker.allow_at(Instant::now());
            ch.report(t);
            if !allowed {
                return if retry == 0 {
                    Outcome::CircuitOpen
                } else {
                    Outcome::Transient
                };
            }
            let urgent = n.priority == karpoosheh_schemas::Priority::Urgent;
            match ch.bucket.acquire(ch.policy.rate_limit_wait.0, urgent) {
                None => {
                    ChannelRateLimitSaturated { channel: kind }.emit();
                    return if retry == 0 {
                        Outcome::RateLimited
                    } else {
                        Outcome::Transient
                    };
                }
                Some(w) if !w.is_zero() => ChannelRateLimitWaited {
                    channel: kind,
                    waited: w,
                }
                .emit(),
                Some(_) => {}
            }
            *attempts += 1;
            let started = Instant::now();
            let result = ch.transport.send(n, to);
            ChannelAttempted {
                channel: kind,
                gateway,
                outcome: match &result {
                    Ok(()) => "accepted",
                    Err(SendError::Transient(_)) => "transient",
                    Err(_) => "permanent",
                },
                failure: result.as_ref().err().map(|e| e.reason()),
                elapsed: started.elapsed(),
            }
            .emit();
            match result {
                Ok(()) => {
                    ch.report(ch.breaker.on_success());
                    return Outcome::Accepted;
                }
                // The gateway answered: it is up, whatever it thinks of
                // this recipient. Not retried.
                Err(SendError::Permanent(_)) => {
                    ch.report(ch.breaker.on_success());
                    return Outcome::Permanent;
                }
                Err(SendError::Transient(reason)) => {
                    ch.report(ch.breaker.on_failure_at(Instant::now()));
                    retry += 1;
                    if retry >= ch.policy.max_attempts {
                        return Outcome::Transient;
                    }
                    let delay = backoff_delay(
                        retry,
                        ch.policy.backoff_initial.0,
                        ch.policy.backoff_max.0,
                        rand::rng().random::<f64>(),
                    );
                    ChannelRetrying {
                        channel: kind,
                        gateway,
                        retry,
                        delay,
                        reason: &reason,
                    }
                    .emit();
                    std::thread::sleep(delay);
                }
            }
        }
    }
}
