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
    /// The share of `rate_per_sec` (and of `burst`) kept for urgent
    /// notices: the other lanes never take it, so an urgent round goes out
    /// at once while a campaign saturates the gateway. Unused, it flows to
    /// the other lanes, so a gateway with no urgent traffic still runs at
    /// its whole rate. 0 keeps nothing aside; below 1.
    pub urgent_reserve: f64,
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
            // Ten urgent sends a second on a 100/s line: far more than the
            // courts and the like send, little taken from a campaign.
            urgent_reserve: 0.1,
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
        if !(0.0..1.0).contains(&self.urgent_reserve) {
            return Err(format!(
                "{at}.urgent_reserve must be at least 0 and below 1 (a share of rate_per_sec)"
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

/// A token bucket shared by every thread sending on one channel, with a
/// reserve for urgent notices.
///
/// Two balances fill at `rate` together: the reserve at `reserve × rate`
/// up to `reserve × burst` (at least one token), the shared balance with
/// the rest — and with whatever the full reserve cannot hold, so a gateway
/// with no urgent traffic runs at its whole rate. Urgent sends take from
/// the reserve first, then queue for the shared balance like the others;
/// the others only ever take the shared balance. A waiting caller reserves
/// its token (the shared balance goes negative), so callers are served in
/// arrival order and the rate holds under contention.
pub struct TokenBucket {
    rate: f64,
    /// The shared balance's ceiling.
    shared_cap: f64,
    /// The reserve's ceiling (0: no reserve) and fill rate.
    reserve_cap: f64,
    reserve_rate: f64,
    state: Mutex<Balances>,
}

struct Balances {
    shared: f64,
    reserve: f64,
    last: Instant,
}

impl TokenBucket {
    /// `rate` tokens per second up to `burst`; a rate of 0 never limits.
    #[cfg(test)]
    pub fn new(rate: f64, burst: u32) -> TokenBucket {
        TokenBucket::with_reserve(rate, burst, 0.0)
    }

    /// The same, `reserve` (0 to below 1) of the rate and burst kept for
    /// urgent sends.
    pub fn with_reserve(rate: f64, burst: u32, reserve: f64) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        // A burst of one cannot be shared: no reserve then (the two
        // balances' ceilings would add up to more than the burst).
        let reserve = if burst < 2.0 {
            0.0
        } else {
            reserve.clamp(0.0, 0.99)
        };
        let reserve_cap = if reserve > 0.0 {
            (burst * reserve).max(1.0)
        } else {
            0.0
        };
        let shared_cap = (burst - reserve_cap).max(1.0);
        TokenBucket {
            rate,
            shared_cap,
            reserve_cap,
            reserve_rate: rate * reserve,
            state: Mutex::new(Balances {
                shared: shared_cap,
                reserve: reserve_cap,
                last: Instant::now(),
            }),
        }
    }

    /// Takes a token at `now` for a send of lane `urgent` or not:
    /// `Some(wait)` — the caller owns a token after waiting `wait` — or
    /// `None` when that wait would exceed `max_wait` (nothing is taken).
    pub fn reserve_at(&self, now: Instant, max_wait: Duration, urgent: bool) -> Option<Duration> {
        if self.rate <= 0.0 {
            return Some(Duration::ZERO);
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now > s.last {
            let dt = (now - s.last).as_secs_f64();
            s.last = now;
            let to_reserve = dt * self.reserve_rate;
            let room = (self.reserve_cap - s.reserve).max(0.0);
            let kept = to_reserve.min(room);
            s.reserve += kept;
            // The shared part, and what the full reserve spills.
            s.shared = (s.shared + dt * (self.rate - self.reserve_rate) + (to_reserve - kept))
                .min(self.shared_cap);
        }
        if urgent && s.reserve >= 1.0 {
            s.reserve -= 1.0;
            return Some(Duration::ZERO);
        }
        if s.shared >= 1.0 {
            s.shared -= 1.0;
            return Some(Duration::ZERO);
        }
        // At the rate the shared balance is sure to fill: the whole rate
        // only while the reserve spills, which urgent sends may stop at
        // any moment; a caller that wakes later than it could have keeps
        // the gateway within its rate.
        let fill = self.rate - self.reserve_rate;
        let wait = Duration::from_secs_f64((1.0 - s.shared) / fill);
        if wait > max_wait {
            return None;
        }
        s.shared -= 1.0;
        Some(wait)
    }

    /// Takes a token, sleeping for it if needed; `None` when the wait
    /// would exceed `max_wait` (saturated).
    pub fn acquire(&self, max_wait: Duration, urgent: bool) -> Option<Duration> {
        let wait = self.reserve_at(Instant::now(), max_wait, urgent)?;
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
            assert_eq!(b.reserve_at(t0, max, false), Some(Duration::ZERO));
        }
        // Fourth at the same instant waits 1/rate; fifth 2/rate (reserved).
        let w4 = b.reserve_at(t0, max, false).unwrap();
        let w5 = b.reserve_at(t0, max, false).unwrap();
        assert!((w4.as_secs_f64() - 0.1).abs() < 1e-6, "{w4:?}");
        assert!((w5.as_secs_f64() - 0.2).abs() < 1e-6, "{w5:?}");
        // A bound below the needed wait refuses and takes nothing.
        assert_eq!(b.reserve_at(t0, Duration::from_millis(250), false), None);
        assert!(b
            .reserve_at(t0, Duration::from_millis(300), false)
            .is_some());
        // One second later the debt (-3) is repaid and 7 tokens accrue:
        // the bucket is capped at burst, so exactly 3 are free again.
        let t1 = t0 + Duration::from_secs(1) + Duration::from_millis(300);
        for _ in 0..3 {
            assert_eq!(b.reserve_at(t1, max, false), Some(Duration::ZERO));
        }
        assert!(b.reserve_at(t1, max, false).unwrap() > Duration::ZERO);
    }

    #[test]
    fn the_urgent_reserve_is_kept_from_the_other_lanes_and_spills_when_unused() {
        // 100/s, burst 100, a tenth kept for urgent sends.
        let b = TokenBucket::with_reserve(100.0, 100, 0.1);
        let t0 = Instant::now();
        let max = Duration::from_secs(2);
        let free = |t, urgent| {
            let mut n = 0;
            while b.reserve_at(t, Duration::ZERO, urgent) == Some(Duration::ZERO) {
                n += 1;
            }
            n
        };
        // The campaign takes the shared 90 back to back, then must wait...
        assert_eq!(free(t0, false), 90);
        let w = b.reserve_at(t0, max, false).unwrap();
        assert!(w > Duration::ZERO);
        // ...and queues up to the wait bound, two seconds of the gateway.
        while b.reserve_at(t0, max, false).is_some() {}
        // An urgent send still goes at once, ten times: the reserve.
        assert_eq!(free(t0, true), 10);
        // Beyond it, urgent queues behind the campaign like the others.
        assert!(b.reserve_at(t0, max, true).is_none());
        // A second later the reserve has ten again; the campaign's debt
        // was repaid at 90/s only.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(free(t1, true), 10);
        assert_eq!(free(t1, false), 0, "the campaign is still in debt");

        // With no urgent traffic the campaign gets the whole rate: over
        // ten seconds of saturation, ~1,000 sends, not 900.
        let b = TokenBucket::with_reserve(100.0, 100, 0.1);
        let t0 = Instant::now();
        let mut sent = 0;
        for ms in (0..10_000).step_by(10) {
            let t = t0 + Duration::from_millis(ms);
            while b.reserve_at(t, Duration::ZERO, false) == Some(Duration::ZERO) {
                sent += 1;
            }
        }
        // 90 at once, then 100/s for 9.99 s (the reserve starts full).
        assert!((1_080..=1_090).contains(&sent), "{sent}");
        // With the reserve in use, the campaign gets 90/s.
        let b = TokenBucket::with_reserve(100.0, 100, 0.1);
        let (mut bulk, mut urgent) = (0, 0);
        for ms in (0..10_000).step_by(10) {
            let t = t0 + Duration::from_millis(ms);
            while b.reserve_at(t, Duration::ZERO, true) == Some(Duration::ZERO) {
                urgent += 1;
                if urgent % 2 == 0 {
                    break; // urgent traffic below the reserve's rate
                }
            }
            while b.reserve_at(t, Duration::ZERO, false) == Some(Duration::ZERO) {
                bulk += 1;
            }
        }
        // The whole rate (the two bursts, then 100/s), no more...
        assert!(
            (1_090..=1_100).contains(&(bulk + urgent)),
            "{bulk} + {urgent}"
        );
        // ...and urgent had its reserve's ten a second (its burst, then
        // a token each 100 ms, give or take the rounding of the ticks).
        assert!(urgent >= 90, "urgent got its reserve: {urgent}");
    }

    #[test]
    fn without_a_reserve_urgent_sends_queue_like_the_others() {
        let b = TokenBucket::new(10.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(b.reserve_at(t0, Duration::ZERO, true), Some(Duration::ZERO));
        }
        assert_eq!(b.reserve_at(t0, Duration::ZERO, true), None);
    }

    #[test]
    fn zero_rate_never_limits() {
        let b = TokenBucket::new(0.0, 1);
        let t0 = Instant::now();
        for _ in 0..10_000 {
            assert_eq!(
                b.reserve_at(t0, Duration::ZERO, false),
                Some(Duration::ZERO)
            );
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
