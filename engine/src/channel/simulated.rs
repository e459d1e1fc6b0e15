//! The SIMULATED gateway: sends nothing to anyone. For the demo, load
//! tests and benchmarks only. It announces itself with a warning at
//! start-up and the `gateway="simulated"` label on every metric, so a
//! production node misconfigured to use it is obvious.
//!
//! It models a real gateway's latency (mean ± uniform jitter), transient
//! and permanent failure rates, and periodic degraded windows (latency ×
//! factor and a higher failure rate). Latency beyond the channel's
//! timeout is reported as a transient `timeout` after waiting the timeout.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::config::SimulatedConfig;
use super::{Address, ChannelKind, Notification, SendError, Transport};
use crate::internal_events::SimulatedGatewayInUse;

pub struct SimulatedTransport {
    kind: ChannelKind,
    cfg: SimulatedConfig,
    timeout: Duration,
    started: Instant,
    rng: Mutex<SmallRng>,
}

/// What one simulated send does, decided before sleeping.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOutcome {
    pub latency: Duration,
    pub result: Result<(), SendError>,
}

impl SimulatedTransport {
    pub fn new(kind: ChannelKind, cfg: &SimulatedConfig, timeout: Duration) -> SimulatedTransport {
        SimulatedGatewayInUse { channel: kind }.emit();
        let rng = if cfg.seed == 0 {
            SmallRng::from_os_rng()
        } else {
            SmallRng::seed_from_u64(cfg.seed)
        };
        SimulatedTransport {
            kind,
            cfg: cfg.clone(),
            timeout,
            started: Instant::now(),
            rng: Mutex::new(rng),
        }
    }

    /// Whether `at` (time since start) falls in a degraded window.
    pub fn degraded_at(&self, at: Duration) -> bool {
        let every = self.cfg.slowdown_every.0;
        if every.is_zero() {
            return false;
        }
        let phase = at.as_nanos() % every.as_nanos();
        // Windows sit at the end of each period, so a fresh start is healthy.
        phase >= (every - self.cfg.slowdown_for.0).as_nanos()
    }

    /// Draws the outcome of one send at `at` since start (no sleeping).
    pub fn decide(&self, at: Duration) -> SimOutcome {
        let degraded = self.degraded_at(at);
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let mean = self.cfg.latency.0.as_secs_f64();
        let jitter = self.cfg.latency_jitter.0.as_secs_f64();
        let mut latency = if jitter > 0.0 {
            (mean + rng.random_range(-jitter..=jitter)).max(0.0)
        } else {
            mean
        };
        let (transient, permanent) = if degraded {
            latency *= self.cfg.slowdown_factor;
            (
                self.cfg
                    .slowdown_failure_rate
                    .max(self.cfg.transient_failure_rate),
                self.cfg.permanent_failure_rate,
            )
        } else {
            (
                self.cfg.transient_failure_rate,
                self.cfg.permanent_failure_rate,
            )
        };
        let draw: f64 = rng.random();
        drop(rng);
        let latency = Duration::from_secs_f64(latency);
        if latency > self.timeout {
            return SimOutcome {
                latency: self.timeout,
                result: Err(SendError::Transient("timeout".into())),
            };
        }
        let result = if draw < permanent {
            Err(SendError::Permanent("simulated_rejection".into()))
        } else if draw < permanent + transient {
            Err(SendError::Transient(if degraded {
                "simulated_degraded".into()
            } else {
                "simulated_failure".into()
            }))
        } else {
            Ok(())
        };
        SimOutcome { latency, result }
    }
}

impl Transport for SimulatedTransport {
    fn kind(&self) -> ChannelKind {
        self.kind
    }

    fn name(&self) -> &'static str {
        "simulated"
    }

    fn send(&self, _n: &Notification, to: &Address) -> Result<(), SendError> {
        let ok_kind = matches!(
            (self.kind, to),
            (ChannelKind::Sms, Address::Mobile(_))
                | (ChannelKind::Email, Address::Email(_))
                | (ChannelKind::Push, Address::Push(_))
        );
        if !ok_kind {
            return Err(SendError::Permanent("address_kind_mismatch".into()));
        }
        let o = self.decide(self.started.elapsed());
        if !o.latency.is_zero() {
            std::thread::sleep(o.latency);
        }
        o.result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(seed: u64) -> SimulatedConfig {
        SimulatedConfig {
            latency: HumanDuration(Duration::from_millis(20)),
            latency_jitter: HumanDuration(Duration::from_millis(10)),
            transient_failure_rate: 0.10,
            permanent_failure_rate: 0.05,
            slowdown_every: HumanDuration(Duration::from_secs(60)),
            slowdown_for: HumanDuration(Duration::from_secs(10)),
            slowdown_factor: 5.0,
            slowdown_failure_rate: 0.5,
            seed,
        }
    }
    use karpoosheh_schemas::HumanDuration;

    #[test]
    fn failure_rates_match_the_configuration_with_a_fixed_seed() {
        let t = SimulatedTransport::new(ChannelKind::Sms, &cfg(42), Duration::from_secs(1));
        let n = 20_000;
        let (mut tr, mut pe) = (0, 0);
        for _ in 0..n {
            let o = t.decide(Duration::from_secs(1)); // healthy window
            assert!(
                o.latency >= Duration::from_millis(10) && o.latency <= Duration::from_millis(30)
            );
            match o.result {
                Err(SendError::Transient(_)) => tr += 1,
                Err(SendError::Permanent(_)) => pe += 1,
                _ => {}
            }
        }
        let (tr, pe) = (tr as f64 / n as f64, pe as f64 / n as f64);
        assert!((tr - 0.10).abs() < 0.01, "transient {tr}");
        assert!((pe - 0.05).abs() < 0.01, "permanent {pe}");
        // Same seed, same sequence.
        let a = SimulatedTransport::new(ChannelKind::Sms, &cfg(7), Duration::from_secs(1));
        let b = SimulatedTransport::new(ChannelKind::Sms, &cfg(7), Duration::from_secs(1));
        for _ in 0..100 {
            assert_eq!(a.decide(Duration::ZERO), b.decide(Duration::ZERO));
        }
    }

    #[test]
    fn degraded_windows_are_slower_and_fail_more() {
        let t = SimulatedTransport::new(ChannelKind::Push, &cfg(1), Duration::from_secs(1));
        assert!(!t.degraded_at(Duration::from_secs(5)));
        assert!(t.degraded_at(Duration::from_secs(55)));
        assert!(!t.degraded_at(Duration::from_secs(61)));
        let n = 5_000;
        let mut fails = 0;
        for _ in 0..n {
            let o = t.decide(Duration::from_secs(55));
            assert!(o.latency >= Duration::from_millis(50), "{:?}", o.latency);
            fails += o.result.is_err() as u32;
        }
        let f = fails as f64 / n as f64;
        assert!((f - 0.55).abs() < 0.03, "degraded failure share {f}");
    }

    #[test]
    fn latency_past_the_timeout_is_a_transient_timeout() {
        let mut c = cfg(3);
        c.latency = HumanDuration(Duration::from_millis(500));
        c.transient_failure_rate = 0.0;
        c.permanent_failure_rate = 0.0;
        let t = SimulatedTransport::new(ChannelKind::Sms, &c, Duration::from_millis(100));
        let o = t.decide(Duration::ZERO);
        assert_eq!(o.latency, Duration::from_millis(100));
        assert_eq!(o.result, Err(SendError::Transient("timeout".into())));
    }

    #[test]
    fn zero_latency_mode_is_instant_and_never_fails() {
        let t = SimulatedTransport::new(
            ChannelKind::Sms,
            &SimulatedConfig::zero_latency(),
            Duration::from_secs(1),
        );
        for _ in 0..1000 {
            assert_eq!(
                t.decide(Duration::from_secs(3600)),
                SimOutcome {
                    latency: Duration::ZERO,
                    result: Ok(())
                }
            );
        }
    }
}
