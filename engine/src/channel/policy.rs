//! Per-channel policy: the token-bucket rate limit, exponential back-off
//! with full jitter, and the circuit breaker. Each is a small thread-safe
//! state machine with a time-injectable core so tests need no sleeping.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use karpoosheh_schemas::HumanDuration;
use serde::{Deserialize, Serialize};

fn ms(v: u64) -> HumanDuration {
    HumanDuration(Duration::from_millis(v))
}

/// How the dispatcher treats one channel: `[channels.<channel>.policy]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelPolicy {
    /// Sustained sends per second to this gateway (all worker threads
    /// together); 0 means unlimited.
    pub rate_per_sec: f64,
    /// Sends allowed back to back before the rate applies.
    pub burst: u32,
    /// Longest a send waits for a token; past it the channel is skipped as
    /// `rate_limited` (and the next channel tried).
    pub rate_limit_wait: HumanDuration,
    /// Longest one attempt may take (HTTP request or SMTP session).
    pub timeout: HumanDuration,
    /// Attempts per notification on this channel, the first included.
    pub max_attempts: u32,
    /// Back-off ceiling before the first retry; doubles per retry.
    pub backoff_initial: HumanDuration,
    /// Largest back-off ceiling.
    pub backoff_max: HumanDuration,
    /// Consecutive transient failures that open the breaker; 0 disables it.
    pub breaker_failures: u32,
    /// How long an open breaker rejects before letting one probe through.
    pub breaker_cooldown: HumanDuration,
}

impl Default for ChannelPolicy {
    fn default() -> Self {
        ChannelPolicy {
            // Typical contracted throughput of an Iranian bulk-SMS line.
            rate_per_sec: 100.0,
            // One second's worth: absorbs a scheduler batch without waiting.
            burst: 100,
            // Short: a saturated channel should fall through to the next one
            // rather than hold a scheduler worker.
            rate_limit_wait: ms(2_000),
            // Gateways answer in well under a second when healthy.
            timeout: ms(10_000),
            // One try and two retries: enough for a blip, not a storm.
            max_attempts: 3,
            backoff_initial: ms(200),
            backoff_max: ms(5_000),
            // Five failures in a row is an outage, not bad luck.
            breaker_failures: 5,
            // Probe a failed gateway every 30 s.
            breaker_cooldown: ms(30_000),
        }
    }
}

impl ChannelPolicy {
    pub fn validate(&self, at: &str) -> Result<(), String> {
        if !self.rate_per_sec.is_finite() || self.rate_per_sec < 0.0 {
            return Err(format!(
                "{at}.rate_per_sec must be 0 (unlimited) or a positive number"
            ));
        }
        if self.rate_per_sec > 0.0 && self.burst == 0 {
            return Err(format!(
                "{at}.burst must be at least 1 when rate_per_sec is set"
            ));
        }
        if self.max_attempts == 0 {
            return Err(format!("{at}.max_attempts must be at least 1"));
        }
        if self.timeout.0.is_zero() {
            return Err(format!("{at}.timeout must be above zero (e.g. \"10s\")"));
        }
        if self.backoff_max.0 < self.backoff_initial.0 {
            return Err(format!(
                "{at}.backoff_max ({}) must be at least {at}.backoff_initial ({})",
                self.backoff_max, self.backoff_initial
            ));
        }
        if self.breaker_failures > 0 && self.breaker_cooldown.0.is_zero() {
            return Err(format!("{at}.breaker_cooldown must be above zero"));
        }
        Ok(())
    }
}

/// The back-off before retry number `retry` (1 = first retry): a uniform
/// draw in `[0, min(max, initial * 2^(retry-1))]` ("full jitter"), so
/// workers that failed together do not retry together. `unit` is a uniform
/// random number in `[0, 1)`.
pub fn backoff_delay(retry: u32, initial: Duration, max: Duration, unit: f64) -> Duration {
    let exp = retry.saturating_sub(1).min(30);
    let ceiling = initial.checked_mul(1u32 << exp).unwrap_or(max).min(max);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// A token bucket shared by every thread sending on one channel.
/// A waiting caller reserves its token (the balance goes negative), so
/// callers are served in arrival order and the rate holds under contention.
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// `rate` tokens per second up to `burst`; a rate of 0 never limits.
    pub fn new(rate: f64, burst: u32) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes a token at `now`: `Some(wait)` — the caller owns a token after
    /// waiting `wait` — or `None` when that wait would exceed `max_wait`
    /// (nothing is taken).
    pub fn reserve_at(&self, now: Instant, max_wait: Duration) -> Option<Duration> {
        if self.rate <= 0.0 {
            return Some(Duration::ZERO);
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = &mut *s;
        if now > *last {
            *tokens = (*tokens + (now - *last).as_secs_f64() * self.rate).min(self.burst);
            *last = now;
        }
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Some(Duration::ZERO);
        }
        let wait = Duration::from_secs_f64((1.0 - *tokens) / self.rate);
        if wait > max_wait {
            return None;
        }
        *tokens -= 1.0;
        Some(wait)
    }

    /// Takes a token, sleeping for it if needed; `None` when the wait
    /// would exceed `max_wait` (saturated).
    pub fn acquire(&self, max_wait: Duration) -> Option<Duration> {
        let wait = self.reserve_at(Instant::now(), max_wait)?;
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        Some(wait)
    }
}

/// A circuit breaker's state, as exported by
/// `karpoosheh_channel_circuit_state` (0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    HalfOpen,
    Open,
}

impl CircuitState {
    pub fn gauge_value(self) -> f64 {
        match self {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            CircuitState::Open => 2.0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::HalfOpen => "half_open",
            CircuitState::Open => "open",
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed {
        failures: u32,
    },
    Open {
        since: Instant,
    },
    /// One probe is out since `since`; everyone else is rejected.
    HalfOpen {
        since: Instant,
    },
}

/// Closed → open after `threshold` consecutive transient failures → after
/// `cooldown`, half-open: exactly one probe goes through; its success
/// closes the breaker, its failure re-opens it. A probe that never reports
/// back (a crashed worker) is replaced after another cooldown.
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
}

/// A state change the caller should report (metric + log).
pub type Transition = Option<(CircuitState, CircuitState)>;

impl CircuitBreaker {
    /// `threshold` 0 disables the breaker (always closed).
    pub fn new(threshold: u32, cooldown: Duration) -> CircuitBreaker {
        CircuitBreaker {
            threshold,
            cooldown,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
    #[cfg(test)]
    pub fn state(&self) -> CircuitState {
        match *self.lock() {
            Inner::Closed { .. } => CircuitState::Closed,
            Inner::Open { .. } => CircuitState::Open,
            Inner::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// May a request go through at `now`? Moves open → half-open when the
    /// cooldown has passed (the caller is then the probe).
    pub fn allow_at(&self, now: Instant) -> (bool, Transition) {
        let mut s = self.lock();
        match *s {
            Inner::Closed { .. } => (true, None),
            Inner::Open { since } if now.saturating_duration_since(since) >= self.cooldown => {
                *s = Inner::HalfOpen { since: now };
                (true, Some((CircuitState::Open, CircuitState::HalfOpen)))
            }
            Inner::Open { .. } => (false, None),
            Inner::HalfOpen { since } if now.saturating_duration_since(since) >= self.cooldown => {
                // The previous probe never reported: let another through.
                *s = Inner::HalfOpen { since: now };
                (true, None)
            }
            Inner::HalfOpen { .. } => (false, None),
        }
    }

    /// The gateway answered (accepted, or refused for good: it is up).
    pub fn on_success(&self) -> Transition {
        let mut s = self.lock();
        let from = match *s {
            Inner::Closed { .. } => None,
            // A request let through before the breaker opened: one late
            // success is no proof of health (it made the breaker flap
            // under a half-failing gateway); only the probe may close it.
            Inner::Open { .. } => return None,
            Inner::HalfOpen { .. } => Some(CircuitState::HalfOpen),
        };
        *s = Inner::Closed { failures: 0 };
        from.map(|f| (f, CircuitState::Closed))
    }

    /// A transient failure at `now`.
    pub fn on_failure_at(&self, now: Instant) -> Transition {
        if self.threshold == 0 {
            return None;
        }
        let mut s = self.lock();
        match *s {
            Inner::Closed { failures } => {
                let failures = failures + 1;
                if failures >= self.threshold {
                    *s = Inner::Open { since: now };
                    Some((CircuitState::Closed, CircuitState::Open))
                } else {
                    *s = Inner::Closed { failures };
                    None
                }
            }
            Inner::HalfOpen { .. } => {
                *s = Inner::Open { since: now };
                Some((CircuitState::HalfOpen, CircuitState::Open))
            }
            // A request let through before the breaker opened: no news.
            Inner::Open { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_success_does_not_close_an_open_breaker() {
        let b = CircuitBreaker::new(2, Duration::from_secs(30));
        let t = Instant::now();
        b.on_failure_at(t);
        b.on_failure_at(t);
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(b.on_success(), None, "a request admitted before opening");
        assert_eq!(b.state(), CircuitState::Open);
        let (allowed, _) = b.allow_at(t + Duration::from_secs(31));
        assert!(allowed, "the probe");
        assert_eq!(
            b.on_success(),
            Some((CircuitState::HalfOpen, CircuitState::Closed))
        );
    }

    #[test]
    fn token_bucket_allows_burst_then_paces_at_rate() {
        let b = TokenBucket::new(10.0, 3);
        let t0 = Instant::now();
        let max = Duration::from_secs(10);
        for _ in 0..3 {
            assert_eq!(b.reserve_at(t0, max), Some(Duration::ZERO));
        }
        // Fourth at the same instant waits 1/rate; fifth 2/rate (reserved).
        let w4 = b.reserve_at(t0, max).unwrap();
        let w5 = b.reserve_at(t0, max).unwrap();
        assert!((w4.as_secs_f64() - 0.1).abs() < 1e-6, "{w4:?}");
        assert!((w5.as_secs_f64() - 0.2).abs() < 1e-6, "{w5:?}");
        // A bound below the needed wait refuses and takes nothing.
        assert_eq!(b.reserve_at(t0, Duration::from_millis(250)), None);
        assert!(b.reserve_at(t0, Duration::from_millis(300)).is_some());
        // One second later the debt (-3) is repaid and 7 tokens accrue:
        // the bucket is capped at burst, so exactly 3 are free again.
        let t1 = t0 + Duration::from_secs(1) + Duration::from_millis(300);
        for _ in 0..3 {
            assert_eq!(b.reserve_at(t1, max), Some(Duration::ZERO));
        }
        assert!(b.reserve_at(t1, max).unwrap() > Duration::ZERO);
    }

    #[test]
    fn zero_rate_never_limits() {
        let b = TokenBucket::new(0.0, 1);
        let t0 = Instant::now();
        for _ in 0..10_000 {
            assert_eq!(b.reserve_at(t0, Duration::ZERO), Some(Duration::ZERO));
        }
    }

    #[test]
    fn backoff_is_exponential_capped_and_fully_jittered() {
        let i = Duration::from_millis(100);
        let m = Duration::from_millis(1000);
        // The ceiling doubles per retry and is capped.
        let top = |r| backoff_delay(r, i, m, 1.0);
        assert_eq!(top(1), Duration::from_millis(100));
        assert_eq!(top(2), Duration::from_millis(200));
        assert_eq!(top(3), Duration::from_millis(400));
        assert_eq!(top(5), Duration::from_millis(1000));
        assert_eq!(top(60), Duration::from_millis(1000), "no overflow");
        assert_eq!(backoff_delay(3, i, m, 0.0), Duration::ZERO);
        assert_eq!(backoff_delay(3, i, m, 0.5), Duration::from_millis(200));
        // With real randomness every draw is inside [0, ceiling] and they
        // spread (not all equal).
        use rand::Rng;
        let mut rng = rand::rng();
        let draws: Vec<_> = (0..200)
            .map(|_| backoff_delay(3, i, m, rng.random::<f64>()))
            .collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_millis(400)));
        let lo = draws
            .iter()
            .filter(|d| **d < Duration::from_millis(200))
            .count();
        assert!(
            (40..160).contains(&lo),
            "jitter is roughly uniform: {lo}/200 in the lower half"
        );
    }

    #[test]
    fn breaker_opens_after_n_probes_half_open_and_closes_or_reopens() {
        let cd = Duration::from_secs(30);
        let b = CircuitBreaker::new(3, cd);
        let t0 = Instant::now();
        assert_eq!(b.on_failure_at(t0), None);
        assert_eq!(b.on_failure_at(t0), None);
        // A success in between resets the count.
        assert_eq!(b.on_success(), None);
        assert_eq!(b.on_failure_at(t0), None);
        assert_eq!(b.on_failure_at(t0), None);
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(
            b.on_failure_at(t0),
            Some((CircuitState::Closed, CircuitState::Open))
        );
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(b.allow_at(t0 + Duration::from_secs(29)), (false, None));
        // Cooldown over: exactly one probe.
        let t1 = t0 + cd;
        assert_eq!(
            b.allow_at(t1),
            (true, Some((CircuitState::Open, CircuitState::HalfOpen)))
        );
        assert_eq!(b.allow_at(t1), (false, None), "only one probe");
        // The probe fails: open again, for a whole new cooldown.
        assert_eq!(
            b.on_failure_at(t1),
            Some((CircuitState::HalfOpen, CircuitState::Open))
        );
        assert!(!b.allow_at(t1 + Duration::from_secs(29)).0);
        let t2 = t1 + cd;
        assert!(b.allow_at(t2).0);
        // The probe succeeds: closed, and everyone goes through.
        assert_eq!(
            b.on_success(),
            Some((CircuitState::HalfOpen, CircuitState::Closed))
        );
        assert_eq!(b.state(), CircuitState::Closed);
        assert!(b.allow_at(t2).0 && b.allow_at(t2).0);
    }

    #[test]
    fn lost_probe_is_replaced_after_a_cooldown() {
        let cd = Duration::from_secs(10);
        let b = CircuitBreaker::new(1, cd);
        let t0 = Instant::now();
        b.on_failure_at(t0);
        assert!(b.allow_at(t0 + cd).0);
        assert!(!b.allow_at(t0 + cd + Duration::from_secs(9)).0);
        assert!(b.allow_at(t0 + cd + cd).0);
    }

    #[test]
    fn zero_threshold_disables_the_breaker() {
        let b = CircuitBreaker::new(0, Duration::from_secs(1));
        for _ in 0..100 {
            assert_eq!(b.on_failure_at(Instant::now()), None);
        }
        assert_eq!(b.state(), CircuitState::Closed);
    }
}
