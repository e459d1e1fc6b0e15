//! Simulation for the demo and load tests, clearly marked as such: a
//! registry that derives a plausible profile from each ID (profiles stored
//! from the real registry take precedence), and recipients who confirm
//! what they were told about with realistic probabilities and delays.
//! Nothing here is used unless the demo or the load generator asks for it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use crossbeam_channel::Receiver;
use karpoosheh_schemas::{
    Confirmation, MailboxId, MailboxKind, MailboxProfile, MailboxStatus, SCHEMA_VERSION,
};

use super::{Registry, SchedulerHandle, SentNotification};
use crate::store::{Store, StoreError};

fn mix(mut x: u64) -> u64 {
    // splitmix64: a cheap, well-spread hash of an ID and a seed.
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn id_bits(id: MailboxId) -> u64 {
    u64::from_be_bytes(id.to_key()[1..9].try_into().expect("8 bytes"))
}

/// The demo's identity registry (SIMULATED).
pub struct SimulatedRegistry {
    pub store: Arc<dyn Store>,
    pub seed: u64,
}

impl SimulatedRegistry {
    /// The simulated profile of `id`: natural persons 86% active, 9% not
    /// yet activated, 2% deceased, 1% incapacitated (with a guardian as
    /// representative), 2% active with a representative; legal entities
    /// 90% active, 6% not activated, 4% dissolved.
    pub fn profile_of(id: MailboxId, seed: u64) -> MailboxProfile {
        let h = mix(id_bits(id) ^ seed);
        let u = unit(h);
        let person = id.kind() == MailboxKind::Person;
        let status = if person {
            match u {
                u if u < 0.86 + 0.02 => MailboxStatus::Active,
                u if u < 0.97 => MailboxStatus::NotActivated,
                u if u < 0.99 => MailboxStatus::Deceased,
                _ => MailboxStatus::Incapacitated,
            }
        } else {
            match u {
                u if u < 0.90 => MailboxStatus::Active,
                u if u < 0.96 => MailboxStatus::NotActivated,
                _ => MailboxStatus::Dissolved,
            }
        };
        let h2 = mix(h);
        let v = unit(h2);
        let with_rep = status == MailboxStatus::Incapacitated
            || (status == MailboxStatus::Active && u >= 0.86);
        let representatives = if with_rep {
            (0..)
                .filter_map(|i| {
                    MailboxId::person_from_body(((h2 >> 8) as u32).wrapping_add(i) % 1_000_000_000)
                })
                .find(|r| *r != id)
                .into_iter()
                .collect()
        } else {
            Vec::new()
        };
        let digits = h2 % 1_000_000_000;
        MailboxProfile {
            schema_version: SCHEMA_VERSION,
            id,
            status,
            access_level: if v < 0.6 {
                1
            } else if v < 0.9 {
                2
            } else {
                3
            },
            mobile: (person || v < 0.7).then(|| format!("09{digits:09}")),
            email: (unit(mix(h2)) < 0.4).then(|| {
                if person {
                    format!("user{}@mail.ir", digits % 100_000)
                } else {
                    format!("office{}@company.com", digits % 100_000)
                }
            }),
            push: unit(mix(h2 ^ 1)) < 0.55,
            representatives,
            delegations: vec![],
            updated_at: chrono::DateTime::UNIX_EPOCH,
        }
    }
}

impl Registry for SimulatedRegistry {
    fn profile(&self, id: MailboxId) -> Result<Option<MailboxProfile>, StoreError> {
        Ok(Some(match self.store.profile(id)? {
            Some(p) => p,
            None => Self::profile_of(id, self.seed),
        }))
    }
}

/// How simulated recipients behave.
#[derive(Debug, Clone)]
pub struct RecipientModel {
    /// Chance that a person opens the inbox after round 1, 2, 3.
    pub open: [f64; 3],
    /// Chance that someone who opened it confirms a second time.
    pub confirm_twice: f64,
    /// Mean delay from notification to the first confirmation.
    pub first_delay: Duration,
    /// Mean delay between the first and second confirmation.
    pub second_delay: Duration,
    pub seed: u64,
    /// Confirmations waiting at most (the rest are forgotten).
    pub max_pending: usize,
}

impl Default for RecipientModel {
    fn default() -> Self {
        RecipientModel {
            // Most people react to the first SMS; reminders catch a few more.
            open: [0.55, 0.35, 0.25],
            confirm_twice: 0.85,
            first_delay: Duration::from_secs(3),
            second_delay: Duration::from_secs(2),
            seed: 7,
            max_pending: 2_000_000,
        }
    }
}

/// A confirmation waiting for its time, ordered by (time, sequence).
struct Due(Instant, u64, Confirmation);

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.0, self.1) == (o.0, o.1)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.0, self.1).cmp(&(o.0, o.1))
    }
}

/// Runs simulated recipients: reads sent notifications, confirms some
/// after their delay through the scheduler. Stops at `shutdown`.
pub fn spawn_recipients(
    model: RecipientModel,
    sent: Receiver<Vec<SentNotification>>,
    scheduler: Arc<SchedulerHandle>,
    shutdown: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("recipients".into())
        .spawn(move || {
            // Confirmations go to the scheduler from a thread of their own:
            // the scheduler waits on this thread to take what it sent, so
            // this one must never wait on the scheduler (a cycle that only
            // the send timeouts would break, a second at a time).
            let (confirm_tx, confirm_rx) = crossbeam_channel::bounded::<Vec<Confirmation>>(8);
            let confirmer = {
                let (scheduler, shutdown) = (scheduler.clone(), shutdown.clone());
                std::thread::Builder::new()
                    .name("confirmer".into())
                    .spawn(move || {
                        for batch in confirm_rx {
                            if !scheduler.confirm_until_done(batch, &shutdown) {
                                return; // the scheduler stopped
                            }
                        }
                    })
                    .expect("spawning the simulated recipients' confirmer")
            };
            let mut heap: BinaryHeap<Reverse<Due>> = BinaryHeap::new();
            let mut n = 0u64;
            let exp =
                |mean: Duration, x: u64| mean.mul_f64(-(1.0 - unit(x)).max(1e-9).ln().min(8.0));
            while !shutdown.load(Ordering::SeqCst) {
                let wait = heap
                    .peek()
                    .map(|Reverse(Due(t, _, _))| t.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::from_millis(100))
                    .min(Duration::from_millis(100))
                    // Due ones the confirmer has no room for: not in a spin.
                    .max(if confirm_tx.is_full() {
                        Duration::from_millis(20)
                    } else {
                        Duration::ZERO
                    });
                if let Ok(batch) = sent.recv_timeout(wait) {
                    let now = Instant::now();
                    for s in batch {
                        if s.to_representative || heap.len() >= model.max_pending {
                            continue;
                        }
                        let h = mix(s.code.as_u64() ^ model.seed ^ ((s.round as u64) << 56));
                        let p = model.open[(s.round as usize).clamp(1, 3) - 1];
                        if unit(h) >= p {
                            continue;
                        }
                        let d1 = exp(model.first_delay, mix(h));
                        let mk = |k: u8, d: Duration| Confirmation {
                            schema_version: SCHEMA_VERSION,
                            confirmation_id: format!("sim-{}-{}-{k}", s.code, s.round),
                            tracking_code: s.code,
                            confirmed_by: s.recipient,
                            confirmed_at: Utc::now()
                                + chrono::Duration::from_std(d).unwrap_or_default(),
                        };
                        n += 1;
                        heap.push(Reverse(Due(now + d1, n, mk(1, d1))));
                        if unit(mix(h ^ 2)) < model.confirm_twice {
                            let d2 = d1 + exp(model.second_delay, mix(h ^ 3));
                            n += 1;
                            heap.push(Reverse(Due(now + d2, n, mk(2, d2))));
                        }
                    }
                }
                // The confirmer is behind: leave the due ones in the heap
                // (taking them out and putting them back, at every batch the
                // scheduler sends, cost a third of a core).
                if confirm_tx.is_full() {
                    continue;
                }
                let now = Instant::now();
                let mut due = Vec::new();
                while let Some(Reverse(Due(t, _, _))) = heap.peek() {
                    if *t > now || due.len() >= 4096 {
                        break;
                    }
                    let Reverse(Due(_, _, c)) = heap.pop().expect("peeked");
                    due.push(c);
                }
                if due.is_empty() {
                    continue;
                }
                // Never waits: there was room, and this thread is the only sender.
                if confirm_tx.send(due).is_err() {
                    break; // the confirmer stopped with the scheduler
                }
            }
            drop(confirm_tx);
            let _ = confirmer.join();
        })
        .expect("spawning the simulated recipients")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_profiles_are_valid_and_mixed() {
        let mut active = 0;
        let mut not_activated = 0;
        for body in 100_000_000u32..100_002_000 {
            let Some(id) = MailboxId::person_from_body(body) else {
                continue;
            };
            let p = SimulatedRegistry::profile_of(id, 1);
            assert_eq!(p, SimulatedRegistry::profile_of(id, 1), "deterministic");
            let problems = karpoosheh_schemas::validate_profile(&p);
            assert!(problems.is_empty(), "{p:?}: {problems:?}");
            match p.status {
                MailboxStatus::Active => active += 1,
                MailboxStatus::NotActivated => not_activated += 1,
                _ => {}
            }
        }
        assert!(
            active > 1500 && not_activated > 100,
            "{active} {not_activated}"
        );
    }
}
