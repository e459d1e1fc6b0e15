//! The agencies' sandbox (`[sandbox]`): a node of its own, on its own
//! topics and store, where an integrator sends notices and gets real
//! receipts from the real pipeline, scheduler and evidence, while the
//! gateways are simulated and the recipients are played here. Which
//! outcome a notice gets is the integrator's choice, by its recipient's
//! ID: the digit before the check digit (`Outcome::of`, and the agency
//! guide's table). Nothing here reaches a real mailbox, gateway,
//! registry or confirmation: `karpoosheh run` refuses a sandbox that
//! could (`Config::check_sandbox`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use crossbeam_channel::Receiver;
use karpoosheh_schemas::{
    Confirmation, MailboxId, MailboxKind, MailboxProfile, MailboxStatus, SCHEMA_VERSION,
};
use serde::{Deserialize, Serialize};

use super::{Registry, SchedulerHandle, SentNotification};
use crate::store::StoreError;

/// `[sandbox]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// Run this node as the agencies' sandbox.
    pub enabled: bool,
}

/// What a sandbox recipient does, by the digit before its ID's check
/// digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 0-3: active, confirms twice after round 1: `served`.
    Served,
    /// 4: active, confirms once: `confirmed` (1), then `not_served`.
    ConfirmsOnce,
    /// 5: active, never confirms: `not_served`.
    Silent,
    /// 6: a deceased person, a dissolved entity: `mailbox_unreachable`.
    Gone,
    /// 7: never activated: `mailbox_unreachable` (`not_activated`).
    NotActivated,
    /// 8: active, but no way to reach them: `notification_failed` each
    /// round, then `not_served`.
    NoChannel,
    /// 9: a person under guardianship whose guardian confirms twice:
    /// `mailbox_unreachable` (`incapacitated`), rounds to the guardian,
    /// `served`. (A legal entity: as 0-3.)
    Guardian,
}

impl Outcome {
    /// The outcome a test ID asks for.
    pub fn of(id: MailboxId) -> Outcome {
        let digits = id.to_string();
        let d = digits
            .as_bytes()
            .get(digits.len().saturating_sub(2))
            .map_or(0, |b| b.wrapping_sub(b'0'));
        match d {
            4 => Outcome::ConfirmsOnce,
            5 => Outcome::Silent,
            6 => Outcome::Gone,
            7 => Outcome::NotActivated,
            8 => Outcome::NoChannel,
            9 if id.kind() == MailboxKind::Person => Outcome::Guardian,
            _ => Outcome::Served,
        }
    }
}

/// The guardian of a sandbox person under guardianship: another test ID,
/// itself an active one.
fn guardian_of(id: MailboxId) -> MailboxId {
    // The body's first eight digits, then 0-3 before the check digit (the
    // first that makes a valid code: active, served).
    let body: u32 = id.to_string()[..9].parse().unwrap_or(0);
    (0..=3)
        .find_map(|d| MailboxId::person_from_body(body / 10 * 10 + d))
        .unwrap_or(id)
}

/// The sandbox's identity registry: every ID has the profile its outcome
/// needs (the registry topic is not read).
pub struct SandboxRegistry;

impl SandboxRegistry {
    pub fn profile_of(id: MailboxId) -> MailboxProfile {
        let outcome = Outcome::of(id);
        let person = id.kind() == MailboxKind::Person;
        let status = match outcome {
            Outcome::Gone if person => MailboxStatus::Deceased,
            Outcome::Gone => MailboxStatus::Dissolved,
            Outcome::NotActivated => MailboxStatus::NotActivated,
            Outcome::Guardian => MailboxStatus::Incapacitated,
            _ => MailboxStatus::Active,
        };
        let reachable = outcome != Outcome::NoChannel;
        MailboxProfile {
            schema_version: SCHEMA_VERSION,
            id,
            status,
            access_level: 3,
            // Test numbers: the simulated gateway never sends anything.
            mobile: reachable.then(|| "09120000000".to_owned()),
            email: None,
            push: false,
            representatives: if outcome == Outcome::Guardian {
                vec![guardian_of(id)]
            } else {
                Vec::new()
            },
            delegations: vec![],
            updated_at: chrono::DateTime::UNIX_EPOCH,
        }
    }
}

impl Registry for SandboxRegistry {
    fn profile(&self, id: MailboxId) -> Result<Option<MailboxProfile>, StoreError> {
        Ok(Some(Self::profile_of(id)))
    }
}

/// How long a sandbox recipient takes to confirm after being told, and
/// between its two confirmations.
pub const CONFIRM_AFTER: Duration = Duration::from_secs(1);

/// Plays the sandbox's recipients: each one told by round 1 (a guardian,
/// for a person under guardianship) confirms as its ID asks, after
/// [`CONFIRM_AFTER`], through the scheduler as an inbox app's signed
/// confirmation would be applied. Stops at `shutdown`.
pub fn spawn_recipients(
    sent: Receiver<Vec<SentNotification>>,
    scheduler: Arc<SchedulerHandle>,
    shutdown: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    // Confirmations go to the scheduler from a thread of their own, by an
    // unbounded queue: the scheduler waits (a second, then drops) for this
    // thread to take what it sent, so this one must never wait on it.
    let (confirm_tx, confirm_rx) = crossbeam_channel::unbounded::<Vec<Confirmation>>();
    {
        let (scheduler, shutdown) = (scheduler.clone(), shutdown.clone());
        std::thread::Builder::new()
            .name("sandbox-confirmer".into())
            .spawn(move || {
                for batch in confirm_rx {
                    if !scheduler.confirm_until_done(batch, &shutdown) {
                        return; // the scheduler stopped
                    }
                }
            })?;
    }
    std::thread::Builder::new()
        .name("sandbox-recipients".into())
        .spawn(move || {
            // Constant delays: due times only grow, a queue keeps them in order.
            let mut due: VecDeque<(Instant, Confirmation)> = VecDeque::new();
            while !shutdown.load(Ordering::SeqCst) {
                let wait = due
                    .front()
                    .map(|(t, _)| t.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::from_millis(100))
                    .min(Duration::from_millis(100));
                if let Ok(batch) = sent.recv_timeout(wait) {
                    let now = Instant::now();
                    for s in batch.into_iter().filter(|s| s.round == 1) {
                        let outcome = Outcome::of(s.recipient);
                        let by = match (outcome, s.to_representative) {
                            (Outcome::Guardian, true) => guardian_of(s.recipient),
                            (Outcome::Served | Outcome::ConfirmsOnce, false) => s.recipient,
                            _ => continue,
                        };
                        let times = if outcome == Outcome::ConfirmsOnce {
                            1
                        } else {
                            2
                        };
                        for k in 1..=times {
                            due.push_back((
                                now + CONFIRM_AFTER * k,
                                Confirmation {
                                    schema_version: SCHEMA_VERSION,
                                    confirmation_id: format!("sandbox-{}-{k}", s.code),
                                    tracking_code: s.code,
                                    confirmed_by: by,
                                    confirmed_at: Utc::now(),
                                },
                            ));
                        }
                    }
                }
                let now = Instant::now();
                let mut ready = Vec::new();
                while due.front().is_some_and(|(t, _)| *t <= now) {
                    ready.push(due.pop_front().expect("checked").1);
                }
                if !ready.is_empty() && confirm_tx.send(ready).is_err() {
                    return; // the confirmer stopped with the scheduler
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first valid national code whose digit before the check digit is
    /// `d`, from `start`.
    fn person_with(d: u32, start: u32) -> MailboxId {
        (start..)
            .filter(|b| b % 10 == d)
            .find_map(MailboxId::person_from_body)
            .unwrap()
    }

    #[test]
    fn each_test_id_gets_the_profile_its_outcome_needs() {
        for (d, status, reachable, reps) in [
            (0, MailboxStatus::Active, true, 0),
            (3, MailboxStatus::Active, true, 0),
            (4, MailboxStatus::Active, true, 0),
            (5, MailboxStatus::Active, true, 0),
            (6, MailboxStatus::Deceased, true, 0),
            (7, MailboxStatus::NotActivated, true, 0),
            (8, MailboxStatus::Active, false, 0),
            (9, MailboxStatus::Incapacitated, true, 1),
        ] {
            let id = person_with(d, 123_456_000);
            let p = SandboxRegistry::profile_of(id);
            assert_eq!(p.status, status, "{id}");
            assert_eq!(p.mobile.is_some(), reachable, "{id}");
            assert_eq!(p.representatives.len(), reps, "{id}");
            assert!(karpoosheh_schemas::validate_profile(&p).is_empty(), "{p:?}");
        }
        // A guardian is itself a test ID that is served, never the person,
        // even where a 0 there would make no valid code (digits 4-9 zero).
        for id in [person_with(9, 123_456_000), person_with(9, 123_000_000)] {
            let g = guardian_of(id);
            assert_ne!(g, id);
            assert_eq!(Outcome::of(g), Outcome::Served, "{id} {g}");
        }
        // Legal entities: 6 dissolved, 9 as 0-3.
        let legal = |d: u8| {
            (0u64..)
                .map(|i| 10_380_284_000 + i)
                .filter_map(|v| MailboxId::parse(&v.to_string()).ok())
                .find(|id| id.to_string().as_bytes()[9] == b'0' + d)
                .unwrap()
        };
        assert_eq!(
            SandboxRegistry::profile_of(legal(6)).status,
            MailboxStatus::Dissolved
        );
        assert_eq!(Outcome::of(legal(9)), Outcome::Served);
    }
}
