//! The whole article-29 life cycle on the embedded store, with a manual
//! clock: three rounds over days in milliseconds.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use karpoosheh_schemas::{
    Channel, Confirmation, MailboxId, MailboxProfile, MailboxStatus, Reason, Receipt, ReceiptEvent,
    TrackingCode, SCHEMA_VERSION,
};

use super::*;
use crate::channel::{Delivery, Notification, Target};
use crate::model::*;
use crate::store::conformance::{new_notice, notice, person, t0};
use crate::store::faulty::Faulty;
use crate::store::{Durability, FjallStore, FjallStoreConfig, Store};

const DAY: Duration = Duration::from_secs(24 * 3600);

/// A gateway double: accepts, or fails transiently while `down` > 0
/// (counting down one per attempt), and records what it sent.
#[derive(Default)]
struct Gateway {
    down: AtomicU32,
    permanent: std::sync::atomic::AtomicBool,
    /// How long each accepted send takes, in microseconds.
    slow_us: std::sync::atomic::AtomicU64,
    /// Sends begun.
    begun: AtomicU32,
    sent: Mutex<Vec<(TrackingCode, u8, bool, String)>>,
}

impl Notify for Gateway {
    fn deliver(&self, n: &Notification, targets: &[Target]) -> Delivery {
        if targets.is_empty() {
            return Delivery::Failed {
                reason: "no_channel",
                transient: false,
                attempts: 0,
            };
        }
        if self.permanent.load(Ordering::SeqCst) {
            return Delivery::Failed {
                reason: "permanent_failure",
                transient: false,
                attempts: 1,
            };
        }
        if self
            .down
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1))
            .is_ok()
        {
            return Delivery::Failed {
                reason: "all_channels_failed",
                transient: true,
                attempts: 3,
            };
        }
        self.begun.fetch_add(1, Ordering::SeqCst);
        let slow = self.slow_us.load(Ordering::SeqCst);
        if slow > 0 {
            std::thread::sleep(Duration::from_micros(slow));
        }
        self.sent.lock().unwrap().push((
            n.tracking_code,
            n.round,
            n.to_representative,
            n.idempotency_key.clone(),
        ));
        Delivery::Accepted {
            channel: targets[0].kind,
            attempts: 1,
        }
    }
}

struct World {
    dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    clock: ManualClock,
    gateway: Arc<Gateway>,
    scheduler: Scheduler,
}

fn config() -> DeliveryConfig {
    DeliveryConfig {
        quiet_hours: String::new(),
        ..DeliveryConfig::default()
    }
}

fn open(dir: &std::path::Path) -> Arc<dyn Store> {
    let mut c = FjallStoreConfig::new(dir);
    c.durability = Durability::Buffered;
    Arc::new(FjallStore::open(c).unwrap())
}

impl World {
    fn new() -> World {
        World::with_config(config())
    }

    /// A fresh store and gateway, the scheduler configured with `config`.
    fn with_config(config: DeliveryConfig) -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        World::with(dir, store, Arc::new(Gateway::default()), config)
    }

    fn with(
        dir: tempfile::TempDir,
        store: Arc<dyn Store>,
        gateway: Arc<Gateway>,
        config: DeliveryConfig,
    ) -> World {
        // A minute after the notices of `notice()` were accepted.
        let clock = ManualClock::new(t0() + chrono::Duration::seconds(60));
        let scheduler = Scheduler {
            config,
            store: store.clone(),
            notifier: gateway.clone(),
            registry: Arc::new(StoreRegistry(store.clone())),
            clock: Arc::new(clock.clone()),
            observer: None,
            agencies: None,
        };
        World {
            dir,
            store,
            clock,
            gateway,
            scheduler,
        }
    }

    /// Closes the store and opens it again, as a restarted node would.
    fn restart(self) -> World {
        let World {
            dir,
            store,
            clock,
            gateway,
            scheduler,
        } = self;
        let config = scheduler.config.clone();
        drop(scheduler);
        drop(store);
        let store = open(dir.path());
        let mut w = World::with(dir, store, gateway, config);
        w.clock = clock.clone();
        w.scheduler.clock = Arc::new(clock);
        w
    }

    fn profile(&self, id: MailboxId, status: MailboxStatus, reps: Vec<MailboxId>) {
        self.store
            .put_profiles(&[MailboxProfile {
                schema_version: SCHEMA_VERSION,
                id,
                status,
                access_level: 2,
                mobile: Some("09121234567".into()),
                email: None,
                push: true,
                representatives: reps,
                delegations: vec![],
                updated_at: self.clock.now(),
            }])
            .unwrap();
    }

    /// Stores one notice to `to`, accepted at t0.
    fn notice(&self, to: MailboxId, seq: u16) -> TrackingCode {
        self.notices_in(&[(to, seq)], karpoosheh_schemas::Priority::Normal)[0]
    }

    /// Stores notices (recipient, seq) that came in on `lane`, in one
    /// write.
    fn notices_in(
        &self,
        to: &[(MailboxId, u16)],
        lane: karpoosheh_schemas::Priority,
    ) -> Vec<TrackingCode> {
        self.notices_from("tax", to, lane)
    }

    /// The same from `agency`.
    fn notices_from(
        &self,
        agency: &str,
        to: &[(MailboxId, u16)],
        lane: karpoosheh_schemas::Priority,
    ) -> Vec<TrackingCode> {
        let mut codes = Vec::new();
        let entries: Vec<Entry> = to
            .iter()
            .map(|&(to, seq)| {
                let e = in_lane(
                    new_notice(notice(agency, &format!("ref-{seq}"), to, "متن"), seq),
                    lane,
                );
                let Entry::Notice(n) = &e else { unreachable!() };
                codes.push(n.tracking_code);
                e
            })
            .collect();
        self.store.write(&entries).unwrap();
        codes
    }

    /// Active mailboxes for `ids`, in one write.
    fn active(&self, ids: &[MailboxId]) {
        let profiles: Vec<MailboxProfile> = ids
            .iter()
            .map(|&id| MailboxProfile {
                schema_version: SCHEMA_VERSION,
                id,
                status: MailboxStatus::Active,
                access_level: 2,
                mobile: Some("09121234567".into()),
                email: None,
                push: true,
                representatives: vec![],
                delegations: vec![],
                updated_at: self.clock.now(),
            })
            .collect();
        self.store.put_profiles(&profiles).unwrap();
    }

    fn run(&self) -> usize {
        self.scheduler.run_due().unwrap()
    }

    fn advance(&self, d: Duration) -> usize {
        self.clock.advance(d);
        self.run()
    }

    /// Receipts published so far (drains the outbox).
    fn receipts(&self) -> Vec<Receipt> {
        let out = self.store.outbox(None, 100_000).unwrap();
        self.store
            .outbox_remove(&out.iter().map(|x| x.0).collect::<Vec<_>>())
            .unwrap();
        out.into_iter().map(|x| x.1).collect()
    }

    fn confirm(&self, code: TrackingCode, id: &str, by: MailboxId) -> ConfirmOutcome {
        self.confirm_claiming(code, id, by, self.clock.now())
    }

    /// A confirmation from `by` whose app claims `claimed` as its time.
    fn confirm_claiming(
        &self,
        code: TrackingCode,
        id: &str,
        by: MailboxId,
        claimed: DateTime<Utc>,
    ) -> ConfirmOutcome {
        self.scheduler
            .confirm_now(vec![Confirmation {
                schema_version: SCHEMA_VERSION,
                confirmation_id: id.into(),
                tracking_code: code,
                confirmed_by: by,
                confirmed_at: claimed,
            }])
            .unwrap()[0]
    }

    fn state(&self, code: TrackingCode) -> DeliveryState {
        self.store.delivery(code).unwrap().unwrap().state
    }

    fn rounds_sent(&self, code: TrackingCode) -> Vec<u8> {
        self.gateway
            .sent
            .lock()
            .unwrap()
            .iter()
            // Round 0 is a reminder (`reminders_sent`).
            .filter(|s| s.0 == code && !s.2 && s.1 > 0)
            .map(|s| s.1)
            .collect()
    }
}

fn events(rs: &[Receipt]) -> Vec<&'static str> {
    rs.iter()
        .map(|r| match r.event {
            ReceiptEvent::Accepted { .. } => "accepted",
            ReceiptEvent::Rejected { .. } => "rejected",
            ReceiptEvent::NotificationSent { .. } => "sent",
            ReceiptEvent::NotificationFailed { .. } => "failed",
            ReceiptEvent::Confirmed { .. } => "confirmed",
            ReceiptEvent::Served { .. } => "served",
            ReceiptEvent::NotServed { .. } => "not_served",
            ReceiptEvent::Expired { .. } => "expired",
            ReceiptEvent::Released { .. } => "released",
            ReceiptEvent::Cancelled { .. } => "cancelled",
            ReceiptEvent::ReminderSent { .. } => "reminder_sent",
            ReceiptEvent::ReminderFailed { .. } => "reminder_failed",
            ReceiptEvent::MailboxUnreachable { .. } => "unreachable",
            ReceiptEvent::AccessLevelInsufficient { .. } => "access_level_insufficient",
            ReceiptEvent::BatchSigned { .. } => "batch_signed",
            ReceiptEvent::Opened { .. } => "opened",
            ReceiptEvent::Shared { .. } => "shared",
            ReceiptEvent::ShareRevoked { .. } => "share_revoked",
            ReceiptEvent::DocumentShared { .. } => "document_shared",
            ReceiptEvent::ShareWithdrawn { .. } => "share_withdrawn",
        })
        .collect()
}

#[test]
fn served_after_two_confirmations_cancels_remaining_rounds() {
    let w = World::new();
    let to = person(300_000_001);
    w.profile(to, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 1);
    w.run();
    assert_eq!(w.rounds_sent(code), vec![1]);
    assert_eq!(
        w.confirm(code, "c-1", to),
        ConfirmOutcome::Applied {
            count: 1,
            served: false
        }
    );
    w.clock.advance(Duration::from_secs(3600));
    let second_at = w.clock.now();
    assert_eq!(
        w.confirm(code, "c-2", to),
        ConfirmOutcome::Applied {
            count: 2,
            served: true
        }
    );
    assert_eq!(w.state(code), DeliveryState::Served { at: second_at });
    let rs = w.receipts();
    assert_eq!(events(&rs), ["sent", "confirmed", "confirmed", "served"]);
    match rs[3].event {
        ReceiptEvent::Served { served_at, .. } => assert_eq!(
            served_at, second_at,
            "the legal time is the second confirmation's"
        ),
        _ => unreachable!(),
    }
    // Ten days on: no round 2 or 3, no verdict.
    w.advance(10 * DAY);
    assert_eq!(
        w.rounds_sent(code),
        vec![1],
        "remaining rounds were cancelled"
    );
    assert!(w.receipts().is_empty());
}

#[test]
fn not_served_after_three_rounds_at_the_configured_intervals() {
    let w = World::new();
    let to = person(300_000_101);
    w.profile(to, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 1);
    w.run();
    assert_eq!(w.rounds_sent(code), vec![1]);
    w.advance(DAY - Duration::from_secs(1));
    assert_eq!(
        w.rounds_sent(code),
        vec![1],
        "round 2 not before its interval"
    );
    w.advance(Duration::from_secs(1));
    assert_eq!(w.rounds_sent(code), vec![1, 2]);
    w.advance(3 * DAY);
    assert_eq!(w.rounds_sent(code), vec![1, 2, 3]);
    assert_eq!(
        w.confirm(code, "only-one", to),
        ConfirmOutcome::Applied {
            count: 1,
            served: false
        }
    );
    w.advance(4 * DAY);
    assert!(matches!(w.state(code), DeliveryState::NotServed { .. }));
    assert_eq!(
        events(&w.receipts()),
        ["sent", "sent", "sent", "confirmed", "not_served"]
    );
    let rec = w.store.delivery(code).unwrap().unwrap();
    assert_eq!(rec.rounds.len(), 3);
    assert!(rec.rounds.iter().all(|r| r.delivered()));
    assert_eq!(rec.next, None);
}

#[test]
fn expiry_removes_the_notice_keeps_the_history_then_purges_it() {
    let w = World::new();
    let to = person(300_000_201);
    w.profile(to, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 1); // expires t0 + 365 days
    w.run();
    w.advance(DAY);
    w.advance(3 * DAY);
    w.advance(4 * DAY);
    assert!(
        matches!(w.state(code), DeliveryState::NotServed { .. }),
        "verdict came first"
    );
    w.advance(400 * DAY);
    assert!(
        w.store.notice(code).unwrap().is_none(),
        "the notice left the store at expiry"
    );
    assert!(w.store.mailbox(to, None, 10).unwrap().notices.is_empty());
    let rec = w.store.delivery(code).unwrap().unwrap();
    assert!(
        rec.purged && rec.rounds.len() == 3,
        "the legal history is kept"
    );
    assert_eq!(
        w.confirm(code, "late", to),
        ConfirmOutcome::Rejected(Reason::NoticeExpired),
        "a confirmation after expiry is refused"
    );
    w.advance(185 * DAY);
    assert!(
        w.store.delivery(code).unwrap().is_some(),
        "kept six months after expiry"
    );
    w.advance(2 * DAY);
    assert!(
        w.store.delivery(code).unwrap().is_none(),
        "purged after the retention"
    );
    assert_eq!(
        w.confirm(code, "later", to),
        ConfirmOutcome::Rejected(Reason::UnknownNotice)
    );
}

#[test]
fn a_notice_never_served_before_expiry_gets_an_expired_receipt() {
    let w = World::new();
    let to = person(300_000_301);
    // Not activated: the rounds never start, so expiry comes first.
    let code = w.notice(to, 1);
    w.run();
    assert_eq!(w.state(code), DeliveryState::AwaitingActivation);
    w.advance(366 * DAY);
    assert!(matches!(w.state(code), DeliveryState::Expired { .. }));
    assert_eq!(events(&w.receipts()), ["unreachable", "expired"]);
    assert!(
        w.store.awaiting_activation(to, 10).unwrap().is_empty(),
        "no longer awaiting"
    );
}

#[test]
fn duplicate_unknown_and_foreign_confirmations_are_never_applied() {
    let w = World::new();
    let to = person(300_000_401);
    let rep = person(300_000_501);
    let stranger = person(300_000_601);
    w.profile(to, MailboxStatus::Active, vec![rep]);
    w.profile(rep, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 1);
    w.run();
    assert_eq!(
        w.confirm(code, "a", to),
        ConfirmOutcome::Applied {
            count: 1,
            served: false
        }
    );
    assert_eq!(
        w.confirm(code, "a", to),
        ConfirmOutcome::Duplicate,
        "same ID twice counts once"
    );
    assert_eq!(
        w.confirm(code, "s", stranger),
        ConfirmOutcome::Rejected(Reason::NotRecipient)
    );
    assert_eq!(
        w.confirm(TrackingCode::from_u64(code.as_u64() + 999), "u", to),
        ConfirmOutcome::Rejected(Reason::UnknownNotice)
    );
    assert_eq!(w.state(code), DeliveryState::Scheduled);
    // Duplicates within one batch too.
    let c = |id: &str| Confirmation {
        schema_version: SCHEMA_VERSION,
        confirmation_id: id.into(),
        tracking_code: code,
        confirmed_by: rep,
        confirmed_at: w.clock.now(),
    };
    let out = w.scheduler.confirm_now(vec![c("b"), c("b")]).unwrap();
    assert_eq!(
        out,
        [
            ConfirmOutcome::Applied {
                count: 2,
                served: true
            },
            ConfirmOutcome::Duplicate
        ]
    );
    let rec = w.store.delivery(code).unwrap().unwrap();
    assert_eq!(rec.confirmations.len(), 2);
    assert!(
        rec.confirmations[1].by_representative,
        "a representative may confirm (art. 22)"
    );
}

#[test]
fn restart_between_rounds_resumes_exactly_once() {
    let w = World::new();
    let to = person(300_000_701);
    w.profile(to, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 1);
    w.run();
    w.clock.advance(DAY);
    let w = w.restart();
    assert_eq!(w.run(), 1, "round 2's timer survived the restart");
    assert_eq!(w.rounds_sent(code), vec![1, 2]);
    let w = w.restart();
    assert_eq!(w.run(), 0, "nothing is due twice");
    w.advance(3 * DAY);
    assert_eq!(w.rounds_sent(code), vec![1, 2, 3]);
}

#[test]
fn gateway_down_then_recovered_retries_the_round() {
    let w = World::new();
    let to = person(300_000_801);
    w.profile(to, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 1);
    w.gateway.down.store(2, Ordering::SeqCst);
    w.run();
    assert!(w.rounds_sent(code).is_empty());
    let rec = w.store.delivery(code).unwrap().unwrap();
    assert_eq!(
        rec.next.unwrap().action,
        Action::Round { round: 1, retry: 1 }
    );
    w.advance(Duration::from_secs(15 * 60));
    assert!(w.rounds_sent(code).is_empty(), "still down");
    w.advance(Duration::from_secs(15 * 60));
    assert_eq!(
        w.rounds_sent(code),
        vec![1],
        "recovered: sent on the third attempt"
    );
    let rec = w.store.delivery(code).unwrap().unwrap();
    assert_eq!(
        rec.rounds
            .iter()
            .map(|r| (r.round, r.retry, r.delivered()))
            .collect::<Vec<_>>(),
        [(1, 0, false), (1, 1, false), (1, 2, true)]
    );
    // Round 2 counts from the successful attempt.
    assert_eq!(
        rec.next.unwrap().due_ms,
        (w.clock.now() + chrono::Duration::days(1)).timestamp_millis()
    );
}

#[test]
fn a_round_that_keeps_failing_is_reported_and_the_next_one_still_comes() {
    let mut cfg = config();
    cfg.round_max_retries = 2;
    let w = World::with_config(cfg);
    let to = person(300_000_901);
    w.profile(to, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 1);
    w.gateway.down.store(3, Ordering::SeqCst);
    w.run();
    w.advance(Duration::from_secs(15 * 60));
    w.advance(Duration::from_secs(15 * 60));
    let rs = w.receipts();
    assert_eq!(events(&rs), ["failed"]);
    match &rs[0].event {
        ReceiptEvent::NotificationFailed { round, reason, .. } => {
            assert_eq!((*round, reason.as_str()), (1, "all_channels_failed"))
        }
        _ => unreachable!(),
    }
    w.advance(DAY);
    assert_eq!(w.rounds_sent(code), vec![2]);
}

#[test]
fn representatives_receive_every_round() {
    let w = World::new();
    let to = person(300_001_001);
    let rep = person(300_001_101);
    w.profile(to, MailboxStatus::Active, vec![rep]);
    w.profile(rep, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 1);
    w.run();
    w.advance(DAY);
    w.advance(3 * DAY);
    let sent = w.gateway.sent.lock().unwrap().clone();
    let to_rep: Vec<u8> = sent
        .iter()
        .filter(|s| s.0 == code && s.2)
        .map(|s| s.1)
        .collect();
    assert_eq!(to_rep, [1, 2, 3]);
    let keys: std::collections::HashSet<_> = sent.iter().map(|s| s.3.clone()).collect();
    assert_eq!(
        keys.len(),
        6,
        "each notification has its own idempotency key"
    );
    let rs = w.receipts();
    let reps = rs
        .iter()
        .filter(|r| {
            matches!(
                r.event,
                ReceiptEvent::NotificationSent {
                    to_representative: true,
                    ..
                }
            )
        })
        .count();
    assert_eq!(reps, 3);
}

#[test]
fn not_activated_mailbox_waits_then_rounds_start_on_activation() {
    let w = World::new();
    let to = person(300_001_201);
    let code = w.notice(to, 1);
    w.run();
    assert_eq!(w.state(code), DeliveryState::AwaitingActivation);
    assert_eq!(w.store.awaiting_activation(to, 10).unwrap(), vec![code]);
    match &w.receipts()[0].event {
        ReceiptEvent::MailboxUnreachable { status, .. } => {
            assert_eq!(*status, MailboxStatus::NotActivated)
        }
        e => panic!("{e:?}"),
    }
    w.advance(10 * DAY);
    assert!(w.rounds_sent(code).is_empty());
    // The person registers.
    w.profile(to, MailboxStatus::Active, vec![]);
    w.scheduler.activate_now(&[to]).unwrap();
    w.run();
    assert_eq!(w.rounds_sent(code), vec![1]);
    assert!(w.store.awaiting_activation(to, 10).unwrap().is_empty());
    assert_eq!(w.state(code), DeliveryState::Scheduled);
}

/// The kill campaign's find (issue 23): a person registered while their
/// notice's first round was under way. The round read "not activated",
/// the registry reader stored the profile and looked for waiting notices
/// before the round had written this one as waiting, so nobody would
/// ever have resumed it. The round now looks again once it is indexed.
#[test]
fn a_registration_landing_during_the_round_that_found_none_is_not_missed() {
    struct Late {
        store: Arc<dyn Store>,
        pending: std::sync::Mutex<Option<MailboxProfile>>,
    }
    impl Registry for Late {
        fn profile(
            &self,
            id: MailboxId,
        ) -> Result<Option<MailboxProfile>, crate::store::StoreError> {
            let seen = self.store.profile(id)?;
            // Stored by the registry reader just after this read; its look
            // into the waiting index comes before the round's write.
            if let Some(p) = self.pending.lock().unwrap().take() {
                self.store.put_profiles(&[p])?;
                assert!(self.store.awaiting_activation(id, 10)?.is_empty());
            }
            Ok(seen)
        }
    }
    let mut w = World::new();
    let to = person(300_001_211);
    let code = w.notice(to, 1);
    let profile = MailboxProfile {
        schema_version: SCHEMA_VERSION,
        id: to,
        status: MailboxStatus::Active,
        access_level: 2,
        mobile: Some("09121234567".into()),
        email: None,
        push: true,
        representatives: vec![],
        delegations: vec![],
        updated_at: w.clock.now(),
    };
    w.scheduler.registry = Arc::new(Late {
        store: w.store.clone(),
        pending: std::sync::Mutex::new(Some(profile)),
    });
    w.run();
    assert!(
        w.store.awaiting_activation(to, 10).unwrap().is_empty(),
        "not left waiting for a registration that has happened"
    );
    assert_eq!(w.state(code), DeliveryState::Scheduled);
    w.run();
    assert_eq!(w.rounds_sent(code), vec![1], "its first round went out");
}

#[test]
fn deceased_and_dissolved_mailboxes_are_unreachable_and_reported() {
    let w = World::new();
    let dead = person(300_001_301);
    w.profile(dead, MailboxStatus::Deceased, vec![]);
    let code = w.notice(dead, 1);
    w.run();
    assert_eq!(
        w.state(code),
        DeliveryState::Unreachable {
            status: MailboxStatus::Deceased
        }
    );
    assert!(
        w.store.notice(code).unwrap().is_some(),
        "kept: heirs may need it (art. 31)"
    );
    let company = (1_000_000_000u64..)
        .find_map(MailboxId::legal_from_body)
        .unwrap();
    w.profile(company, MailboxStatus::Dissolved, vec![]);
    let code2 = w.notice(company, 2);
    w.run();
    assert_eq!(
        w.state(code2),
        DeliveryState::Unreachable {
            status: MailboxStatus::Dissolved
        }
    );
    assert!(w.gateway.sent.lock().unwrap().is_empty());
    let statuses: Vec<_> = w
        .receipts()
        .iter()
        .map(|r| match r.event {
            ReceiptEvent::MailboxUnreachable { status, .. } => status,
            _ => panic!("unexpected {r:?}"),
        })
        .collect();
    assert_eq!(
        statuses,
        [MailboxStatus::Deceased, MailboxStatus::Dissolved]
    );
}

#[test]
fn incapacitated_mailbox_is_served_through_the_guardian() {
    let w = World::new();
    let to = person(300_001_401);
    let guardian = person(300_001_501);
    w.profile(to, MailboxStatus::Incapacitated, vec![guardian]);
    w.profile(guardian, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 1);
    w.run();
    let sent = w.gateway.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].2, "only the guardian is notified");
    assert_eq!(events(&w.receipts()), ["unreachable", "sent"]);
    assert_eq!(
        w.confirm(code, "g1", guardian),
        ConfirmOutcome::Applied {
            count: 1,
            served: false
        }
    );
    assert_eq!(
        w.confirm(code, "g2", guardian),
        ConfirmOutcome::Applied {
            count: 2,
            served: true
        }
    );
}

#[test]
fn insufficient_access_level_is_reported_once_and_rounds_still_go() {
    let w = World::new();
    let to = person(300_001_601);
    w.profile(to, MailboxStatus::Active, vec![]); // level 2
    let mut n = notice("tax", "secret", to, "متن");
    n.min_access_level = 3;
    let e = new_notice(n, 1);
    let Entry::Notice(nn) = &e else {
        unreachable!()
    };
    let code = nn.tracking_code;
    w.store.write(&[e]).unwrap();
    w.run();
    w.advance(DAY);
    let rs = w.receipts();
    assert_eq!(events(&rs), ["access_level_insufficient", "sent", "sent"]);
    match rs[0].event {
        ReceiptEvent::AccessLevelInsufficient { required, held, .. } => {
            assert_eq!((required, held), (3, 2))
        }
        _ => unreachable!(),
    }
    assert_eq!(w.rounds_sent(code), vec![1, 2]);
}

#[test]
fn quiet_hours_hold_rounds_until_morning() {
    let mut cfg = config();
    cfg.quiet_hours = "22:00-07:00".into();
    let w = World::with_config(cfg);
    let to = person(300_001_701);
    w.profile(to, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 1);
    // 20:00 UTC = 23:30 in Tehran.
    w.clock.set(
        DateTime::parse_from_rfc3339("2026-11-01T20:00:00Z")
            .unwrap()
            .with_timezone(&Utc),
    );
    w.run();
    assert!(w.rounds_sent(code).is_empty());
    w.clock.set(
        DateTime::parse_from_rfc3339("2026-11-02T03:29:00Z")
            .unwrap()
            .with_timezone(&Utc),
    );
    w.run();
    assert!(w.rounds_sent(code).is_empty(), "06:59 in Tehran");
    w.clock.set(
        DateTime::parse_from_rfc3339("2026-11-02T03:30:00Z")
            .unwrap()
            .with_timezone(&Utc),
    );
    w.run();
    assert_eq!(w.rounds_sent(code), vec![1]);
}

#[test]
fn receipts_carry_stable_ids_and_the_agency_reference() {
    let w = World::new();
    let to = person(300_001_801);
    w.profile(to, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 7);
    w.run();
    let rs = w.receipts();
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].reference.as_deref(), Some("ref-7"));
    assert_eq!(rs[0].agency.as_str(), "tax");
    assert!(rs[0].receipt_id.starts_with(&code.to_string()));
    match rs[0].event {
        ReceiptEvent::NotificationSent { channel, round, .. } => {
            assert_eq!((channel, round), (Channel::Sms, 1))
        }
        _ => unreachable!(),
    }
}

#[test]
fn many_pending_rounds_are_processed_in_batches() {
    let mut cfg = config();
    cfg.batch = 50;
    let w = World::with_config(cfg);
    let to = person(300_001_901);
    w.profile(to, MailboxStatus::Active, vec![]);
    let entries: Vec<_> = (1..=1000u16)
        .map(|i| new_notice(notice("tax", &format!("r{i}"), to, "x"), i))
        .collect();
    w.store.write(&entries).unwrap();
    w.clock.advance(Duration::from_secs(1));
    assert_eq!(w.run(), 1000);
    assert_eq!(w.gateway.sent.lock().unwrap().len(), 1000);
    assert_eq!(w.run(), 0);
}

#[test]
fn a_long_outage_expires_the_notice_instead_of_sending_a_stale_round() {
    let w = World::new();
    let to = person(300_002_001);
    w.profile(to, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 1);
    w.run();
    // The node is down for over a year: round 2 and the expiry are both due.
    w.advance(400 * DAY);
    assert_eq!(
        w.rounds_sent(code),
        vec![1],
        "no round for an expired notice"
    );
    assert!(matches!(w.state(code), DeliveryState::Expired { .. }));
}

/// An SMS gateway that is down while `down` is set.
#[derive(Default)]
struct FlakySms {
    down: std::sync::atomic::AtomicBool,
    calls: AtomicU32,
}

impl crate::channel::Transport for FlakySms {
    fn kind(&self) -> Channel {
        Channel::Sms
    }
    fn name(&self) -> &'static str {
        "simulated"
    }
    fn send(
        &self,
        _: &Notification,
        _: &crate::channel::Address,
    ) -> Result<(), crate::channel::SendError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            Err(crate::channel::SendError::Transient(
                "http_status_503".into(),
            ))
        } else {
            Ok(())
        }
    }
}

#[test]
fn gateway_down_opens_the_breaker_and_rounds_resume_when_it_recovers() {
    use crate::channel::{ChannelPolicy, CircuitState, Dispatcher};
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let sms = Arc::new(FlakySms::default());
    let ms = |m| karpoosheh_schemas::HumanDuration(Duration::from_millis(m));
    let policy = ChannelPolicy {
        rate_per_sec: 0.0,
        max_attempts: 2,
        backoff_initial: ms(1),
        backoff_max: ms(2),
        breaker_failures: 3,
        breaker_cooldown: ms(100),
        ..ChannelPolicy::default()
    };
    let dispatcher = Arc::new(Dispatcher::new(
        vec![(sms.clone(), policy)],
        vec![Channel::Sms],
    ));
    let mut cfg = config();
    cfg.concurrency = 1; // one send at a time: the breaker's count is exact
    let clock = ManualClock::new(t0() + chrono::Duration::seconds(60));
    let scheduler = Scheduler {
        config: cfg,
        store: store.clone(),
        notifier: dispatcher.clone(),
        registry: Arc::new(StoreRegistry(store.clone())),
        clock: Arc::new(clock.clone()),
        observer: None,
        agencies: None,
    };
    let mut codes = Vec::new();
    for i in 0..6u16 {
        let to = person(310_000_001 + i as u32 * 1000);
        store
            .put_profiles(&[MailboxProfile {
                schema_version: SCHEMA_VERSION,
                id: to,
                status: MailboxStatus::Active,
                access_level: 1,
                mobile: Some("09121234567".into()),
                email: None,
                push: false,
                representatives: vec![],
                delegations: vec![],
                updated_at: t0(),
            }])
            .unwrap();
        let e = new_notice(notice("tax", &format!("g{i}"), to, "x"), i + 1);
        let Entry::Notice(n) = &e else { unreachable!() };
        codes.push(n.tracking_code);
        store.write(&[e]).unwrap();
    }
    sms.down.store(true, Ordering::SeqCst);
    scheduler.run_due().unwrap();
    // Two notices' attempts (2 + 1) open the breaker; the rest fail fast
    // without touching the gateway.
    assert_eq!(
        sms.calls.load(Ordering::SeqCst),
        3,
        "the breaker stopped the storm"
    );
    assert_eq!(
        dispatcher.circuit_states(),
        vec![(Channel::Sms, CircuitState::Open)]
    );
    for c in &codes {
        let rec = store.delivery(*c).unwrap().unwrap();
        assert_eq!(
            rec.next.unwrap().action,
            Action::Round { round: 1, retry: 1 },
            "retried later, durably"
        );
        assert!(!rec.rounds[0].delivered());
    }
    let failures: Vec<_> = codes
        .iter()
        .map(|c| {
            store.delivery(*c).unwrap().unwrap().rounds[0].deliveries[0]
                .failure
                .clone()
                .unwrap()
        })
        .collect();
    assert!(failures.iter().any(|f| f == "circuit_open"), "{failures:?}");
    // The gateway recovers; after the cooldown one probe closes the breaker.
    sms.down.store(false, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(150));
    clock.advance(Duration::from_secs(15 * 60));
    scheduler.run_due().unwrap();
    assert_eq!(
        dispatcher.circuit_states(),
        vec![(Channel::Sms, CircuitState::Closed)]
    );
    for c in &codes {
        let rec = store.delivery(*c).unwrap().unwrap();
        assert!(
            rec.rounds.last().unwrap().delivered(),
            "round 1 went out after recovery"
        );
        assert_eq!(
            rec.next.unwrap().action,
            Action::Round { round: 2, retry: 0 }
        );
    }
}

#[test]
fn a_nudge_timer_makes_the_owner_act_on_a_due_record() {
    // A store completing an interrupted write (another node's notice, on a
    // shared cluster) cannot trust the first timers to exist: it adds one
    // due now, and the owner acts on what the record says is due.
    let w = World::new();
    let to = person(300_001_101);
    w.profile(to, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 1);
    let rec = w.store.delivery(code).unwrap().unwrap();
    let first = rec.next_timer(rec.next.unwrap().due_ms);
    // The first timer lost, as by an interrupted write.
    w.store
        .write_delivery(&[DeliveryWrite {
            remove_timers: vec![first],
            ..Default::default()
        }])
        .unwrap();
    assert_eq!(w.run(), 0, "nothing would ever send round 1");
    let nudge = rec.next_timer(w.clock.now().timestamp_millis());
    w.store
        .write_delivery(&[DeliveryWrite {
            add_timers: vec![nudge],
            ..Default::default()
        }])
        .unwrap();
    w.run();
    assert_eq!(w.rounds_sent(code), vec![1], "the nudge sent the due round");
    w.advance(DAY);
    assert_eq!(w.rounds_sent(code), vec![1, 2], "and the rounds go on");
    // A nudge for a record whose action is not due yet is only stale.
    let early = rec.next_timer(w.clock.now().timestamp_millis());
    w.store
        .write_delivery(&[DeliveryWrite {
            add_timers: vec![early],
            ..Default::default()
        }])
        .unwrap();
    w.run();
    assert_eq!(
        w.rounds_sent(code),
        vec![1, 2],
        "round 3 waits for its time"
    );
}

#[test]
fn a_confirmation_already_in_the_record_is_a_duplicate() {
    // A store without multi-row atomicity can keep the record but lose the
    // confirmation's ID row; the confirmation is still counted once.
    let w = World::new();
    let to = person(300_001_201);
    w.profile(to, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 1);
    w.run();
    let mut rec = w.store.delivery(code).unwrap().unwrap();
    let c = Confirmation {
        schema_version: SCHEMA_VERSION,
        confirmation_id: "c-1".into(),
        tracking_code: code,
        confirmed_by: to,
        confirmed_at: w.clock.now(),
    };
    let mut dw = DeliveryWrite::default();
    let first = confirm::apply_confirmation(
        &mut rec,
        &mut dw,
        &c,
        &[],
        Some(MailboxStatus::Active),
        w.clock.now(),
    );
    assert!(matches!(first, ConfirmOutcome::Applied { count: 1, .. }));
    let again = confirm::apply_confirmation(
        &mut rec,
        &mut dw,
        &c,
        &[],
        Some(MailboxStatus::Active),
        w.clock.now(),
    );
    assert_eq!(again, ConfirmOutcome::Duplicate);
    assert_eq!(rec.confirmations.len(), 1);
}

/// One fast-polling worker on a store that fails as `faulty` says.
fn world_on_faulty_store(faulty: impl FnOnce(Faulty) -> Faulty) -> World {
    let dir = tempfile::tempdir().unwrap();
    let inner = open(dir.path());
    let store: Arc<dyn Store> = Arc::new(faulty(Faulty::new(inner)));
    let mut cfg = config();
    cfg.workers = 1;
    cfg.poll_interval = karpoosheh_schemas::HumanDuration(Duration::from_millis(10));
    World::with(dir, store, Arc::new(Gateway::default()), cfg)
}

#[test]
fn a_store_that_refuses_writes_ends_the_worker_and_failed_says_so() {
    // Every follow-up write fails as on a poisoned fjall store (its journal
    // write failed: a full disk); retrying never gets past it.
    let w = world_on_faulty_store(Faulty::poisoned_delivery_writes);
    let to = person(300_001_302);
    w.profile(to, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 1);
    let World {
        store, scheduler, ..
    } = w;
    let handle = scheduler.start().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !handle.failed() {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker kept retrying a store that refuses every write"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        store
            .delivery(code)
            .unwrap()
            .is_none_or(|r| r.rounds.is_empty()),
        "nothing was recorded"
    );
    handle.stop();
}

#[test]
fn a_store_error_interrupts_a_pass_not_the_worker() {
    // Follow-up writes fail three times, as a cluster's do while a node
    // restarts.
    let w = world_on_faulty_store(|f| f.failing_delivery_writes(3));
    let to = person(300_001_301);
    w.profile(to, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 1);
    let World {
        store,
        scheduler,
        gateway,
        ..
    } = w;
    let handle = scheduler.start().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let done = store
            .delivery(code)
            .unwrap()
            .is_some_and(|r| r.rounds.len() == 1);
        if done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "round 1 was never recorded"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!handle.failed(), "the worker is still running");
    // Every failed pass sent the round again, with the same key.
    let sent = gateway.sent.lock().unwrap().clone();
    assert!(sent.len() >= 2, "the failed passes were redone: {sent:?}");
    assert!(
        sent.windows(2).all(|p| p[0].3 == p[1].3),
        "one idempotency key for the repeats"
    );
    handle.stop();
}

#[test]
fn a_confirmation_before_any_round_reached_the_person_is_refused() {
    let w = World::new();
    let to = person(300_002_001);
    w.profile(to, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 1);
    // Stored, round 1 not yet sent: nothing to confirm.
    assert_eq!(
        w.confirm(code, "early", to),
        ConfirmOutcome::Rejected(Reason::NotNotified)
    );
    w.run();
    assert_eq!(w.rounds_sent(code), vec![1]);
    assert!(matches!(
        w.confirm(code, "after-round-1", to),
        ConfirmOutcome::Applied { count: 1, .. }
    ));
    let rec = w.store.delivery(code).unwrap().unwrap();
    assert_eq!(rec.confirmations.len(), 1, "the refused one left no trace");
}

#[test]
fn a_representatives_confirmation_needs_a_round_sent_to_a_representative() {
    let w = World::new();
    let (to, guardian) = (person(300_002_101), person(300_002_102));
    w.profile(to, MailboxStatus::Incapacitated, vec![guardian]);
    w.profile(guardian, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 1);
    assert_eq!(
        w.confirm(code, "g-early", guardian),
        ConfirmOutcome::Rejected(Reason::NotNotified),
        "before the guardian was notified"
    );
    w.run();
    // The guardian acts for an incapacitated person (art. 31); the person's
    // own confirmation does not count.
    assert_eq!(
        w.confirm(code, "self", to),
        ConfirmOutcome::Rejected(Reason::MailboxNotReachable)
    );
    assert!(matches!(
        w.confirm(code, "g-1", guardian),
        ConfirmOutcome::Applied { count: 1, .. }
    ));
}

#[test]
fn confirmations_for_a_deceased_or_not_activated_mailbox_are_refused() {
    let w = World::new();
    let (dead, later) = (person(300_002_201), person(300_002_202));
    w.profile(dead, MailboxStatus::Deceased, vec![]);
    let a = w.notice(dead, 1);
    let b = w.notice(later, 2); // no profile: not activated
    w.run();
    assert!(matches!(w.state(a), DeliveryState::Unreachable { .. }));
    assert_eq!(w.state(b), DeliveryState::AwaitingActivation);
    assert_eq!(
        w.confirm(a, "x", dead),
        ConfirmOutcome::Rejected(Reason::MailboxNotReachable)
    );
    assert_eq!(
        w.confirm(b, "y", later),
        ConfirmOutcome::Rejected(Reason::MailboxNotReachable)
    );
    // Notified while alive, then reported deceased: neither the person nor
    // their representative confirms any more (the delegation ended).
    let (gone, rep) = (person(300_002_203), person(300_002_204));
    w.profile(gone, MailboxStatus::Active, vec![rep]);
    w.profile(rep, MailboxStatus::Active, vec![]);
    let c = w.notice(gone, 3);
    w.run();
    w.clock.advance(Duration::from_secs(1));
    w.profile(gone, MailboxStatus::Deceased, vec![rep]);
    assert_eq!(
        w.confirm(c, "z", gone),
        ConfirmOutcome::Rejected(Reason::MailboxNotReachable)
    );
    assert_eq!(
        w.confirm(c, "z-rep", rep),
        ConfirmOutcome::Rejected(Reason::MailboxNotReachable)
    );
}

#[test]
fn after_service_a_confirmation_does_not_count_again() {
    let w = World::new();
    let to = person(300_002_301);
    w.profile(to, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 1);
    w.run();
    w.confirm(code, "1", to);
    assert!(matches!(
        w.confirm(code, "2", to),
        ConfirmOutcome::Applied { served: true, .. }
    ));
    assert_eq!(
        w.confirm(code, "3", to),
        ConfirmOutcome::Rejected(Reason::AlreadyServed)
    );
    assert_eq!(
        w.store.delivery(code).unwrap().unwrap().confirmations.len(),
        2
    );
}

#[test]
fn served_at_is_the_engines_clock_not_the_apps_claim() {
    let w = World::new();
    let to = person(300_002_401);
    w.profile(to, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 1);
    w.run();
    let long_ago = w.clock.now() - chrono::Duration::days(400);
    let far_ahead = w.clock.now() + chrono::Duration::days(400);
    w.confirm_claiming(code, "1", to, long_ago);
    w.clock.advance(Duration::from_secs(90));
    let received = w.clock.now();
    w.confirm_claiming(code, "2", to, far_ahead);
    assert_eq!(w.state(code), DeliveryState::Served { at: received });
    let served = w
        .receipts()
        .into_iter()
        .find_map(|r| match r.event {
            ReceiptEvent::Served { served_at, .. } => Some(served_at),
            _ => None,
        })
        .expect("a served receipt");
    assert_eq!(served, received, "the receipt carries the engine's time");
    // The apps' claims are kept beside the engine's times, as evidence.
    let rec = w.store.delivery(code).unwrap().unwrap();
    assert_eq!(rec.confirmations[0].confirmed_at, long_ago);
    assert_eq!(rec.confirmations[1].confirmed_at, far_ahead);
    assert_eq!(rec.confirmations[1].received_at, received);
}

#[test]
fn a_clock_stepped_back_behind_the_notice_never_panics() {
    // A node moved to a host whose clock is behind, or an NTP step back:
    // the notice's acceptance lies in the engine's future.
    let w = World::new();
    let to = person(300_002_501);
    w.profile(to, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 1);
    w.run();
    let accepted = w.store.delivery(code).unwrap().unwrap().accepted_at;
    w.clock.set(accepted - chrono::Duration::hours(3));
    w.run();
    w.confirm_claiming(code, "1", to, accepted + chrono::Duration::days(1));
    let back = w.clock.now();
    w.confirm_claiming(code, "2", to, accepted - chrono::Duration::days(1));
    assert_eq!(w.state(code), DeliveryState::Served { at: back });
    // And forward again: nothing is pending, nothing breaks.
    w.clock.set(accepted + chrono::Duration::days(30));
    w.run();
    assert_eq!(w.state(code), DeliveryState::Served { at: back });
}

#[test]
fn a_mailbox_corrected_back_to_reachable_resumes_its_rounds() {
    let w = World::new();
    // Wrongly reported deceased before round 1.
    let to = person(300_002_601);
    w.profile(to, MailboxStatus::Deceased, vec![]);
    let code = w.notice(to, 1);
    w.run();
    assert!(matches!(w.state(code), DeliveryState::Unreachable { .. }));
    assert!(w.rounds_sent(code).is_empty());
    w.clock.advance(Duration::from_secs(60));
    w.profile(to, MailboxStatus::Active, vec![]);
    w.scheduler.activate_now(&[to]).unwrap();
    w.run();
    assert_eq!(
        w.rounds_sent(code),
        vec![1],
        "round 1 goes out after the correction"
    );
    assert_eq!(w.state(code), DeliveryState::Scheduled);

    // Notified once, then found deceased at round 2, then corrected: the
    // rounds go on with round 2, not from the start.
    let other = person(300_002_602);
    w.profile(other, MailboxStatus::Active, vec![]);
    let c2 = w.notice(other, 2);
    w.run();
    assert_eq!(w.rounds_sent(c2), vec![1]);
    w.profile(other, MailboxStatus::Deceased, vec![]);
    w.advance(DAY);
    assert!(matches!(w.state(c2), DeliveryState::Unreachable { .. }));
    w.clock.advance(Duration::from_secs(60));
    w.profile(other, MailboxStatus::Active, vec![]);
    w.scheduler.activate_now(&[other]).unwrap();
    w.run();
    assert_eq!(w.rounds_sent(c2), vec![1, 2]);

    // An incapacitated person without a guardian gets one appointed.
    let ward = person(300_002_603);
    let guardian = person(300_002_604);
    w.profile(ward, MailboxStatus::Incapacitated, vec![]);
    w.profile(guardian, MailboxStatus::Active, vec![]);
    let c3 = w.notice(ward, 3);
    w.run();
    assert!(matches!(w.state(c3), DeliveryState::Unreachable { .. }));
    w.clock.advance(Duration::from_secs(60));
    w.profile(ward, MailboxStatus::Incapacitated, vec![guardian]);
    w.scheduler.activate_now(&[ward]).unwrap();
    w.run();
    assert_eq!(w.state(c3), DeliveryState::Scheduled);
    let to_guardian = w
        .gateway
        .sent
        .lock()
        .unwrap()
        .iter()
        .any(|s| s.0 == c3 && s.2);
    assert!(to_guardian, "the guardian is notified");
}

/// A gateway that holds every send until it is let go: a round in flight.
struct HeldGateway {
    entered: crossbeam_channel::Sender<()>,
    release: crossbeam_channel::Receiver<()>,
}

impl Notify for HeldGateway {
    fn deliver(&self, _n: &Notification, targets: &[Target]) -> Delivery {
        let _ = self.entered.send(());
        let _ = self.release.recv_timeout(Duration::from_secs(20));
        Delivery::Accepted {
            channel: targets[0].kind,
            attempts: 1,
        }
    }
}

/// A person opens a notice while its round is at the gateway: the opening
/// is durable at once (it does not wait for the round), and the round's
/// write, which read the record before, keeps it; the chain holds both.
#[test]
fn an_opening_during_a_round_is_neither_delayed_nor_lost() {
    let w = World::new();
    let to = person(300_003_001);
    w.profile(to, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 1);
    let (entered_tx, entered) = crossbeam_channel::unbounded();
    let (release, release_rx) = crossbeam_channel::unbounded();
    let handle = Scheduler {
        config: DeliveryConfig {
            poll_interval: karpoosheh_schemas::HumanDuration(Duration::from_millis(10)),
            ..config()
        },
        store: w.store.clone(),
        notifier: Arc::new(HeldGateway {
            entered: entered_tx,
            release: release_rx,
        }),
        registry: Arc::new(StoreRegistry(w.store.clone())),
        clock: Arc::new(w.clock.clone()),
        observer: None,
        agencies: None,
    }
    .start()
    .unwrap();
    entered
        .recv_timeout(Duration::from_secs(20))
        .expect("round 1 reached the gateway");
    let opened = handle
        .act(
            code,
            InboxAct::Open {
                by_representative: false,
            },
        )
        .unwrap();
    assert_eq!(
        opened,
        ActOutcome::Done {
            share_id: None,
            new: true
        }
    );
    assert_eq!(w.store.delivery(code).unwrap().unwrap().opened.len(), 1);
    release.send(()).unwrap();
    // The round's write lands after the opening's.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let rec = loop {
        let rec = w.store.delivery(code).unwrap().unwrap();
        if !rec.rounds.is_empty() || std::time::Instant::now() > deadline {
            break rec;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    handle.stop();
    assert_eq!(rec.rounds.len(), 1, "the round was recorded");
    assert_eq!(rec.opened.len(), 1, "and the opening kept");
    let names = events(&w.receipts());
    assert_eq!(
        names,
        ["opened", "sent"],
        "the opening first, then the round"
    );
    crate::evidence::chain::verify(&w.store.events(code).unwrap()).expect("the chain holds");
}

/// A delivery record that cannot be read is set aside, its timers taken
/// off the schedule: it does not fail the passes of its shard, and every
/// other notice gets its rounds.
#[test]
fn an_unreadable_delivery_record_is_quarantined_and_the_rest_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(Faulty::new(open(dir.path())));
    let store: Arc<dyn Store> = faulty.clone();
    let w = World::with(dir, store, Arc::new(Gateway::default()), config());
    let mut codes = Vec::new();
    for i in 0..20u16 {
        let to = person(300_002_000 + u32::from(i) * 7);
        w.profile(to, MailboxStatus::Active, vec![]);
        codes.push(w.notice(to, i + 1));
    }
    let bad = codes[7];
    faulty.corrupt_delivery(bad);
    w.run();
    for &c in &codes {
        if c != bad {
            assert_eq!(w.rounds_sent(c), vec![1], "{c} notified");
        }
    }
    let q = w.store.quarantined(10).unwrap();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0].kind, "delivery_record");
    assert_eq!(q[0].key, bad.to_string());
    assert!(q[0].error.contains("delivery record"), "{}", q[0].error);
    assert!(
        q[0].detail.contains("Next@"),
        "its timer is named: {}",
        q[0].detail
    );
    // Its timers are off the schedule: later passes neither fail nor set
    // it aside again.
    w.advance(Duration::from_secs(3 * 86_400));
    assert_eq!(w.store.quarantined(10).unwrap().len(), 1);
}

/// A notice's later events wait in the outbox until its `accepted` receipt
/// is out (the ingest sink advances the gate); events of another node's
/// notices are not held.
#[test]
fn the_outbox_holds_a_notice_s_events_until_its_accepted_receipt_is_out() {
    use crate::sink::AcceptedOut;
    let w = World::new();
    let to = person(300_003_001);
    w.profile(to, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 1);
    assert!(w.run() > 0, "its first round went out");
    let waiting = w.store.outbox(None, 100).unwrap().len();
    assert!(waiting > 0, "its events are in the outbox");
    let out = Arc::new(AcceptedOut::new(code.node(), code.as_u64() - 1));
    let mut outbox = Outbox {
        store: w.store.clone(),
        sinks: vec![],
        batch: 100,
        sealer: None,
        gate: Some(out.clone()),
    };
    assert_eq!(
        outbox.publish_once().unwrap(),
        0,
        "held: its accepted is not out"
    );
    assert_eq!(w.store.outbox(None, 100).unwrap().len(), waiting, "kept");
    out.advance(&[code.as_u64()]);
    assert_eq!(
        outbox.publish_once().unwrap(),
        waiting,
        "out once its accepted is"
    );
    // A second notice's events are held by this node's gate, not by
    // another node's (an inbox act served there for a notice of this one).
    let to2 = person(300_003_101);
    w.profile(to2, MailboxStatus::Active, vec![]);
    let code2 = w.notice(to2, 2);
    assert!(code2.as_u64() > code.as_u64());
    assert!(w.run() > 0);
    let waiting = w.store.outbox(None, 100).unwrap().len();
    assert!(waiting > 0);
    assert_eq!(outbox.publish_once().unwrap(), 0, "held");
    let mut elsewhere = Outbox {
        store: w.store.clone(),
        sinks: vec![],
        batch: 100,
        sealer: None,
        gate: Some(Arc::new(AcceptedOut::new(code2.node().wrapping_add(1), 0))),
    };
    assert_eq!(
        elsewhere.publish_once().unwrap(),
        waiting,
        "not another node's to hold"
    );
}

/// `e`, a new notice, as if it came in on `lane`.
fn in_lane(mut e: Entry, lane: karpoosheh_schemas::Priority) -> Entry {
    if let Entry::Notice(n) = &mut e {
        n.priority = lane;
    }
    e
}

/// `n` people from `first` on, with `seq` numbers from `seq0`.
fn crowd(first: u32, n: u16, seq0: u16) -> Vec<(MailboxId, u16)> {
    (0..n)
        .map(|i| (person(first + u32::from(i)), seq0 + i))
        .collect()
}

#[test]
fn urgent_rounds_go_before_the_due_rounds_of_the_other_lanes() {
    use karpoosheh_schemas::Priority;
    let mut cfg = config();
    cfg.batch = 40;
    let w = World::with_config(cfg);
    // A campaign accepted first, then everyday notices, then one urgent:
    // all due now, the campaign's the longest.
    let bulk = crowd(400_000_001, 600, 1);
    let normal = crowd(400_001_001, 50, 1_001);
    let urgent = crowd(400_002_001, 1, 2_001);
    let everyone: Vec<MailboxId> = bulk
        .iter()
        .chain(&normal)
        .chain(&urgent)
        .map(|p| p.0)
        .collect();
    w.active(&everyone);
    let bulk = w.notices_in(&bulk, Priority::Bulk);
    let normal = w.notices_in(&normal, Priority::Normal);
    let urgent = w.notices_in(&urgent, Priority::Urgent)[0];
    assert_eq!(
        w.store.delivery(urgent).unwrap().unwrap().priority,
        Priority::Urgent
    );
    w.run();
    let order: Vec<TrackingCode> = w.gateway.sent.lock().unwrap().iter().map(|s| s.0).collect();
    assert_eq!(order.len(), 651, "every round 1 went out");
    assert_eq!(order[0], urgent, "the urgent notice first");
    let last_normal = order.iter().rposition(|c| normal.contains(c)).unwrap();
    let first_bulk = order.iter().position(|c| bulk.contains(c)).unwrap();
    assert!(
        last_normal < first_bulk,
        "everyday notices before the campaign"
    );
    // Round 2 of the urgent notice is scheduled in its lane too.
    let rec = w.store.delivery(urgent).unwrap().unwrap();
    assert_eq!(rec.rounds.len(), 1);
    let due = rec.next.unwrap().due_ms;
    let slot = timer_slot(Timer::shard_of(urgent), Priority::Urgent);
    assert!(
        w.store
            .due_timers(slot, i64::MIN, due, 100)
            .unwrap()
            .iter()
            .any(|t| t.code == urgent && t.kind == TimerKind::Next && t.due_ms == due),
        "the next round's timer is in the urgent slot"
    );
}

/// One scheduler worker sending one notification at a time, 1 ms each,
/// `batch` due timers a scan: a campaign's rounds keep it busy for
/// seconds, as a gateway's rate limit does.
fn one_slow_worker(batch: usize) -> World {
    let mut cfg = config();
    cfg.workers = 1;
    cfg.concurrency = 1;
    cfg.batch = batch;
    cfg.poll_interval = karpoosheh_schemas::HumanDuration(Duration::from_millis(10));
    let w = World::with_config(cfg);
    w.gateway.slow_us.store(1_000, Ordering::SeqCst);
    w
}

#[test]
fn an_urgent_round_goes_out_while_the_worker_is_busy_with_a_campaign() {
    use karpoosheh_schemas::Priority;
    // A campaign of 3,000 due rounds takes three seconds, in batches of
    // 1,000 that take a second each (as a batch does at a gateway's rate
    // limit).
    let w = one_slow_worker(1_000);
    let gateway = w.gateway.clone();
    let bulk = crowd(410_000_001, 3_000, 1);
    let urgent = crowd(410_010_001, 1, 5_001);
    let everyone: Vec<MailboxId> = bulk.iter().chain(&urgent).map(|p| p.0).collect();
    w.active(&everyone);
    w.notices_in(&bulk, Priority::Bulk);
    let World {
        store, scheduler, ..
    } = w;
    let handle = scheduler.start().unwrap();
    let sent = || gateway.sent.lock().unwrap().len();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sent() < 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the campaign did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The urgent notice arrives while the campaign's rounds are due.
    let e = in_lane(
        new_notice(
            notice("courts", "summons-1", urgent[0].0, "احضاریه"),
            urgent[0].1,
        ),
        Priority::Urgent,
    );
    let Entry::Notice(n) = &e else { unreachable!() };
    let code = n.tracking_code;
    let before = sent();
    store.write(&[e]).unwrap();
    let at = loop {
        let s = gateway.sent.lock().unwrap();
        if let Some(i) = s.iter().position(|x| x.0 == code) {
            break i;
        }
        drop(s);
        assert!(
            std::time::Instant::now() < deadline,
            "the urgent round never went out"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    handle.stop();
    let overtaken = 3_000usize.saturating_sub(at);
    // The worker's urgent thread sent it while the campaign's batch went
    // on: within a poll (10 ms, ten sends of the campaign), give or take
    // a busy machine — not after the batch under way (up to 1,000) nor
    // the 2,800 rounds due.
    assert!(
        at <= before + 200,
        "{} campaign rounds went out before it ({} were due behind it)",
        at - before,
        overtaken
    );
    assert!(at < 1_200, "the campaign had not finished: {at}");
}

#[test]
fn confirmations_of_urgent_notices_are_never_lost_to_their_rounds() {
    use karpoosheh_schemas::Priority;
    // The urgent thread sends round 2 of 200 urgent notices while the
    // worker's thread applies a confirmation to each: a round's write from
    // a record read before the confirmation would lose it for good (its ID
    // is remembered, so a re-sent one is a duplicate).
    let mut cfg = config();
    cfg.workers = 1;
    cfg.concurrency = 4;
    cfg.batch = 50;
    cfg.poll_interval = karpoosheh_schemas::HumanDuration(Duration::from_millis(5));
    let w = World::with_config(cfg);
    let gateway = w.gateway.clone();
    let people = crowd(420_000_001, 200, 1);
    w.active(&people.iter().map(|p| p.0).collect::<Vec<_>>());
    let codes = w.notices_in(&people, Priority::Urgent);
    w.run();
    assert_eq!(gateway.sent.lock().unwrap().len(), 200, "round 1 of each");
    gateway.slow_us.store(2_000, Ordering::SeqCst);
    let World {
        store,
        scheduler,
        clock,
        ..
    } = w;
    let handle = scheduler.start().unwrap();
    clock.advance(DAY);
    for (i, (&code, p)) in codes.iter().zip(&people).enumerate() {
        let out = handle
            .confirm(vec![Confirmation {
                schema_version: SCHEMA_VERSION,
                confirmation_id: format!("c-{i}"),
                tracking_code: code,
                confirmed_by: p.0,
                confirmed_at: clock.now(),
            }])
            .unwrap();
        assert!(
            matches!(out[0], ConfirmOutcome::Applied { count: 1, .. }),
            "{out:?}"
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while gateway.sent.lock().unwrap().len() < 400 {
        assert!(
            std::time::Instant::now() < deadline,
            "round 2 did not go out"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    handle.stop();
    for code in codes {
        let rec = store.delivery(code).unwrap().unwrap();
        assert_eq!(rec.rounds.len(), 2, "{code}: both rounds recorded");
        assert_eq!(
            rec.confirmations.len(),
            1,
            "{code}: the confirmation was lost to the round's write"
        );
    }
}

#[test]
fn an_agency_over_its_pace_has_its_rounds_put_off_to_its_slots_once() {
    use karpoosheh_schemas::Priority;
    let (_dir, file) = crate::agencies::tests::registry_file(
        "[agency.tax]\nstatus = \"approved\"\nrounds_per_second = 10\n",
    );
    let mut w = World::new();
    w.scheduler.agencies = Some(crate::agencies::tests::open_file(&file).unwrap());
    let people = crowd(430_000_001, 40, 1);
    w.active(&people.iter().map(|p| p.0).collect::<Vec<_>>());
    let bulk = w.notices_in(&people[..39], Priority::Bulk);
    let urgent = w.notices_in(&people[39..], Priority::Urgent)[0];
    let sent = |w: &World| w.gateway.sent.lock().unwrap().len();
    w.run();
    // A second's worth of the campaign's rounds (ten) went out, and the
    // urgent notice's (never paced); the other 29 have their slots, 100 ms
    // apart.
    assert_eq!(sent(&w), 11);
    assert_eq!(w.rounds_sent(urgent), vec![1]);
    let paced = |w: &World| {
        bulk.iter()
            .filter(|c| w.store.delivery(**c).unwrap().unwrap().paced)
            .count()
    };
    assert_eq!(paced(&w), 29);
    // A second later the ten slots in it went out, each once: a round put
    // off to its slot is not put off again.
    w.advance(Duration::from_millis(1_050));
    assert_eq!(sent(&w), 21);
    assert_eq!(paced(&w), 19);
    w.advance(Duration::from_secs(2));
    assert_eq!(sent(&w), 40, "every round 1, once");
    assert_eq!(paced(&w), 0);
    for c in &bulk {
        assert_eq!(w.rounds_sent(*c), vec![1]);
    }
}

#[test]
fn an_urgent_round_being_sent_holds_up_no_inbox_act_and_no_other_confirmation() {
    use karpoosheh_schemas::Priority;
    // One worker; a gateway that takes a second to accept the urgent
    // notice's round. Meanwhile an app opens another notice of the same
    // worker and a confirmation of a third arrives: neither waits for the
    // gateway (the worker's lock is not held while a round is sent).
    let mut cfg = config();
    cfg.workers = 1;
    cfg.poll_interval = karpoosheh_schemas::HumanDuration(Duration::from_millis(5));
    let w = World::with_config(cfg);
    let gateway = w.gateway.clone();
    let people = crowd(440_000_001, 3, 1);
    w.active(&people.iter().map(|p| p.0).collect::<Vec<_>>());
    // Two normal notices notified first (round 1), on the manual clock.
    let normal = w.notices_in(&people[..2], Priority::Normal);
    w.run();
    assert_eq!(gateway.sent.lock().unwrap().len(), 2);
    gateway.slow_us.store(1_000_000, Ordering::SeqCst);
    let World {
        store,
        scheduler,
        clock,
        ..
    } = w;
    let handle = scheduler.start().unwrap();
    let e = in_lane(
        new_notice(notice("courts", "u-1", people[2].0, "فوری"), 9),
        Priority::Urgent,
    );
    store.write(&[e]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while gateway.begun.load(Ordering::SeqCst) < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the urgent round never began"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let t = std::time::Instant::now();
    let opened = handle
        .act(
            normal[0],
            InboxAct::Open {
                by_representative: false,
            },
        )
        .unwrap();
    let confirmed = handle
        .confirm(vec![Confirmation {
            schema_version: SCHEMA_VERSION,
            confirmation_id: "c-n".into(),
            tracking_code: normal[1],
            confirmed_by: people[1].0,
            confirmed_at: clock.now(),
        }])
        .unwrap();
    let took = t.elapsed();
    assert!(
        gateway.sent.lock().unwrap().len() == 2,
        "the urgent round was still being sent"
    );
    assert!(
        took < Duration::from_millis(700),
        "the act and the confirmation waited for the gateway: {took:?}"
    );
    assert!(matches!(opened, ActOutcome::Done { .. }), "{opened:?}");
    assert!(
        matches!(confirmed[0], ConfirmOutcome::Applied { count: 1, .. }),
        "{confirmed:?}"
    );
    handle.stop();
}

#[test]
fn a_timer_in_another_lanes_slot_moves_to_its_records_lane() {
    use karpoosheh_schemas::Priority;
    let w = World::new();
    let people = crowd(450_000_001, 1, 1);
    w.active(&[people[0].0]);
    let code = w.notices_in(&people, Priority::Urgent)[0];
    let rec = w.store.delivery(code).unwrap().unwrap();
    let due = rec.next.unwrap().due_ms;
    // Round 1's timer in the normal slot instead, as a repair with the
    // wrong lane would leave it.
    let stray = Timer::next(code, Priority::Normal, due);
    w.store
        .write_delivery(&[DeliveryWrite {
            remove_timers: vec![rec.next_timer(due)],
            add_timers: vec![stray],
            ..Default::default()
        }])
        .unwrap();
    w.run();
    assert_eq!(w.rounds_sent(code), vec![1], "sent once, from its own lane");
    let later = w.clock.now().timestamp_millis() + 400 * 86_400_000;
    let normal = timer_slot(Timer::shard_of(code), Priority::Normal);
    assert!(
        w.store
            .due_timers(normal, i64::MIN, later, 100)
            .unwrap()
            .iter()
            .all(|t| t.code != code),
        "nothing of it left in the normal slot"
    );
}

#[test]
fn a_timer_stored_before_agencies_queues_moves_to_its_agencys_queue_and_acts_once() {
    use crate::model::Queue;
    use karpoosheh_schemas::Priority;
    let w = World::new();
    let people = crowd(451_000_001, 1, 1);
    w.active(&[people[0].0]);
    let code = w.notices_in(&people, Priority::Bulk)[0];
    let rec = w.store.delivery(code).unwrap().unwrap();
    assert_eq!(
        rec.queue(),
        Queue {
            lane: Priority::Bulk,
            index: 6
        },
        "tax's"
    );
    let due = rec.next.unwrap().due_ms;
    // Round 1's timer and the expiry in the bulk lane's queue 0, where a
    // store written before agencies' queues keeps them.
    let expires = rec.expires_at.timestamp_millis();
    w.store
        .write_delivery(&[DeliveryWrite {
            remove_timers: vec![
                rec.next_timer(due),
                Timer::expire(code, rec.queue(), expires),
            ],
            add_timers: vec![
                Timer::next(code, Priority::Bulk, due),
                Timer::expire(code, Priority::Bulk, expires),
            ],
            ..Default::default()
        }])
        .unwrap();
    w.run();
    assert_eq!(w.rounds_sent(code), vec![1], "sent once");
    let rec = w.store.delivery(code).unwrap().unwrap();
    let later = w.clock.now().timestamp_millis() + 400 * 86_400_000;
    let in_slot = |slot| {
        w.store
            .due_timers(slot, i64::MIN, later, 100)
            .unwrap()
            .into_iter()
            .filter(|t| t.code == code)
            .collect::<Vec<_>>()
    };
    assert!(in_slot(timer_slot(Timer::shard_of(code), Priority::Bulk)).is_empty());
    let home = in_slot(rec.timer_slot());
    assert!(
        home.iter()
            .any(|t| t.kind == TimerKind::Next && Some(t.due_ms) == rec.next.map(|p| p.due_ms)),
        "round 2 is in tax's queue: {home:?}"
    );
    assert!(
        home.iter()
            .any(|t| t.kind == TimerKind::Expire && t.due_ms == expires),
        "the expiry moved with it, ahead of the later rounds: {home:?}"
    );
}

#[test]
fn no_round_goes_out_after_the_notices_expiry_whichever_timer_comes_first() {
    let w = World::new();
    let people = crowd(454_000_001, 1, 1);
    w.active(&[people[0].0]);
    let code = w.notice(people[0].0, people[0].1);
    w.run();
    assert_eq!(w.rounds_sent(code), vec![1]);
    // The notice expires an hour from now, before round 2, and its
    // expiry's timer is lost (or late in another queue): round 2 falls
    // due after the notice expired.
    let mut rec = w.store.delivery(code).unwrap().unwrap();
    let old_expiry = Timer::expire(code, rec.queue(), rec.expires_at.timestamp_millis());
    rec.expires_at = w.clock.now() + chrono::Duration::hours(1);
    let to_round_2 = rec.next.unwrap().due_ms - w.clock.now().timestamp_millis();
    assert!(to_round_2 > 3_600_000, "round 2 comes after the expiry");
    w.store
        .write_delivery(&[DeliveryWrite {
            record: Some(rec),
            remove_timers: vec![old_expiry],
            ..Default::default()
        }])
        .unwrap();
    w.advance(Duration::from_millis(to_round_2 as u64 + 1_000));
    assert_eq!(w.rounds_sent(code), vec![1], "round 2 never went out");
    assert!(
        matches!(w.state(code), DeliveryState::Expired { .. }),
        "{:?}",
        w.state(code)
    );
}

#[test]
fn a_notice_stored_in_a_queue_the_registry_gave_keeps_its_timers_there() {
    use crate::model::Queue;
    use karpoosheh_schemas::Priority;
    let w = World::new();
    let people = crowd(455_000_001, 1, 1);
    w.active(&[people[0].0]);
    let mut e = in_lane(
        new_notice(notice("tax", "pinned", people[0].0, "متن"), people[0].1),
        Priority::Bulk,
    );
    let Entry::Notice(n) = &mut e else {
        unreachable!()
    };
    n.queue = Some(2);
    let code = n.tracking_code;
    w.store.write(&[e]).unwrap();
    let rec = w.store.delivery(code).unwrap().unwrap();
    assert_eq!(
        rec.queue(),
        Queue {
            lane: Priority::Bulk,
            index: 2
        }
    );
    w.run();
    assert_eq!(w.rounds_sent(code), vec![1]);
    let rec = w.store.delivery(code).unwrap().unwrap();
    let later = w.clock.now().timestamp_millis() + 400 * 86_400_000;
    let mine = |q: Queue| {
        w.store
            .due_timers(timer_slot(Timer::shard_of(code), q), i64::MIN, later, 100)
            .unwrap()
            .into_iter()
            .filter(|t| t.code == code)
            .map(|t| t.kind)
            .collect::<Vec<_>>()
    };
    let home = mine(rec.queue());
    assert!(
        home.contains(&TimerKind::Next) && home.contains(&TimerKind::Expire),
        "{home:?}"
    );
    assert!(
        mine(Queue::of(Priority::Bulk, &rec.agency)).is_empty(),
        "nothing in its hash's queue"
    );
}

/// Which agency each round the gateway sent was for, in order.
fn sent_by(w: &World, of: &[(&'static str, &[TrackingCode])]) -> Vec<&'static str> {
    w.gateway
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|s| {
            of.iter()
                .find(|(_, codes)| codes.contains(&s.0))
                .map_or("?", |(a, _)| *a)
        })
        .collect()
}

#[test]
fn agencies_with_rounds_due_share_the_scheduler_by_their_weights() {
    use karpoosheh_schemas::Priority;
    // tax (queue 6) weighs 3, customs (queue 3) 1. tax's campaign of 640
    // was accepted before customs' 160: one queue would send every one
    // of tax's first.
    let (_dir, file) = crate::agencies::tests::registry_file(
        "[agency.tax]\nstatus = \"approved\"\nweight = 3\n\
         [agency.customs]\nstatus = \"approved\"\n",
    );
    let mut cfg = config();
    cfg.batch = 4;
    let mut w = World::with_config(cfg);
    w.scheduler.agencies = Some(crate::agencies::tests::open_file(&file).unwrap());
    let people = crowd(452_000_001, 800, 1);
    w.active(&people.iter().map(|p| p.0).collect::<Vec<_>>());
    let tax = w.notices_from("tax", &people[..640], Priority::Bulk);
    let customs = w.notices_from("customs", &people[640..], Priority::Bulk);
    w.run();
    let order = sent_by(&w, &[("tax", &tax), ("customs", &customs)]);
    assert_eq!(order.len(), 800, "every round 1, once");
    assert!(!order.contains(&"?"));
    // The first pass takes a batch from each (neither had rounds due
    // before); from then on tax three to customs' one, until customs'
    // are done: near the 512th round, not the 800th.
    let customs_done = order.iter().rposition(|a| *a == "customs").unwrap();
    assert!(
        (400..600).contains(&customs_done),
        "customs' last round was the {customs_done}th"
    );
    let stretch = &order[160..440];
    let tax_share = stretch.iter().filter(|a| **a == "tax").count() as f64 / stretch.len() as f64;
    assert!(
        (0.65..=0.85).contains(&tax_share),
        "tax had {tax_share:.2} of the rounds while both had some due"
    );
}

#[test]
fn one_agencys_campaign_does_not_hold_back_anothers_on_the_running_workers() {
    use karpoosheh_schemas::Priority;
    // tax's campaign of 2,000 due rounds takes two seconds. customs'
    // 100, accepted after it, go out beside it (equal weights), not
    // after it.
    let w = one_slow_worker(32);
    let gateway = w.gateway.clone();
    let people = crowd(453_000_001, 2_100, 1);
    w.active(&people.iter().map(|p| p.0).collect::<Vec<_>>());
    let tax = w.notices_from("tax", &people[..2_000], Priority::Bulk);
    let customs = w.notices_from("customs", &people[2_000..], Priority::Bulk);
    let World {
        store, scheduler, ..
    } = w;
    let handle = scheduler.start().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while gateway.sent.lock().unwrap().len() < 2_100 {
        assert!(std::time::Instant::now() < deadline, "rounds stalled");
        std::thread::sleep(Duration::from_millis(20));
    }
    handle.stop();
    let order: Vec<&str> = gateway
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|s| {
            if customs.contains(&s.0) {
                "customs"
            } else {
                "tax"
            }
        })
        .collect();
    assert_eq!(order.iter().filter(|a| **a == "tax").count(), tax.len());
    let customs_done = order.iter().rposition(|a| *a == "customs").unwrap();
    // Side by side: customs' 100 are done within about 200 rounds (a
    // first pass that took at most 32 of each per shard, then half each).
    assert!(
        customs_done < 600,
        "customs' last round was the {customs_done}th of 2,100"
    );
    drop(store);
}

/// Stores one notice to `to` that its agency scheduled for `at`.
fn scheduled(w: &World, to: MailboxId, seq: u16, at: DateTime<Utc>) -> TrackingCode {
    with_options(w, to, seq, Some(at), None)
}

/// Stores one notice to `to` with the envelope's delivery options.
fn with_options(
    w: &World,
    to: MailboxId,
    seq: u16,
    deliver_at: Option<DateTime<Utc>>,
    respond_by: Option<DateTime<Utc>>,
) -> TrackingCode {
    let mut e = new_notice(notice("tax", &format!("ref-{seq}"), to, "متن"), seq);
    let Entry::Notice(n) = &mut e else {
        unreachable!()
    };
    n.deliver_at = deliver_at;
    n.respond_by = respond_by;
    let code = n.tracking_code;
    w.store.write(&[e]).unwrap();
    code
}

/// The reminders the gateway sent (round 0), to recipients.
fn reminders_sent(w: &World, code: TrackingCode) -> Vec<String> {
    w.gateway
        .sent
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.0 == code && s.1 == 0)
        .map(|s| s.3.clone())
        .collect()
}

#[test]
fn a_scheduled_send_is_held_until_its_time_then_lands_and_its_rounds_start() {
    let w = World::new();
    let to = person(300_007_001);
    w.profile(to, MailboxStatus::Active, vec![]);
    let at = w.clock.now() + chrono::Duration::days(2);
    let code = scheduled(&w, to, 1, at);
    assert_eq!(w.state(code), DeliveryState::Held { until: at });
    w.run();
    w.advance(DAY);
    assert!(w.rounds_sent(code).is_empty(), "nobody told before then");
    assert!(w.receipts().is_empty());
    assert_eq!(
        w.confirm(code, "c-early", to),
        ConfirmOutcome::Rejected(Reason::UnknownNotice),
        "a notice not in the mailbox cannot be confirmed"
    );
    // A second before: still held.
    w.clock.set(at - chrono::Duration::seconds(1));
    w.run();
    assert!(w.rounds_sent(code).is_empty());
    // At its time: it lands, by the engine's clock, and round 1 goes.
    w.clock.set(at);
    w.run();
    let rs = w.receipts();
    assert_eq!(events(&rs), ["released", "sent"]);
    assert_eq!(rs[0].at, at, "landed at the engine's time");
    assert_eq!(w.rounds_sent(code), vec![1]);
    assert_eq!(w.state(code), DeliveryState::Scheduled);
    // From then on article 29 as for any notice, counted from landing.
    w.advance(DAY);
    assert_eq!(w.rounds_sent(code), vec![1, 2]);
    assert_eq!(
        w.scheduler.cancel_now(code).unwrap(),
        CancelOutcome::TooLate { state: "scheduled" },
        "in the mailbox: too late to cancel"
    );
    // The chain holds accepted, released and the rounds, in order.
    let events = w.store.events(code).unwrap();
    assert!(crate::evidence::chain::verify(&events).is_ok());
    assert_eq!(events.len(), 4, "accepted, released, round 1, round 2");
}

#[test]
fn a_scheduled_send_cancelled_before_its_time_never_lands() {
    let w = World::new();
    let to = person(300_007_101);
    w.profile(to, MailboxStatus::Active, vec![]);
    let at = w.clock.now() + chrono::Duration::hours(5);
    let code = scheduled(&w, to, 1, at);
    w.clock.advance(Duration::from_secs(3600));
    let cancelled_at = w.clock.now();
    assert_eq!(
        w.scheduler.cancel_now(code).unwrap(),
        CancelOutcome::Cancelled {
            at: cancelled_at,
            new: true
        }
    );
    assert_eq!(w.state(code), DeliveryState::Cancelled { at: cancelled_at });
    let rs = w.receipts();
    assert_eq!(events(&rs), ["cancelled"]);
    assert_eq!(rs[0].receipt_id, format!("{code}-cancelled"));
    // Again: the same answer, nothing new.
    w.clock.advance(Duration::from_secs(60));
    assert_eq!(
        w.scheduler.cancel_now(code).unwrap(),
        CancelOutcome::Cancelled {
            at: cancelled_at,
            new: false
        }
    );
    assert!(w.receipts().is_empty());
    // Its time passes, and days after: nothing goes out.
    w.advance(10 * DAY);
    assert!(w.rounds_sent(code).is_empty(), "never notified");
    assert!(w.receipts().is_empty(), "no released, no rounds");
    assert_eq!(w.state(code), DeliveryState::Cancelled { at: cancelled_at });
    // Its expiry ends its retention without an `expired`: it stays
    // cancelled.
    w.clock
        .set(w.store.delivery(code).unwrap().unwrap().expires_at);
    w.run();
    assert!(w.receipts().is_empty());
    let rec = w.store.delivery(code).unwrap().unwrap();
    assert!(rec.purged);
    assert_eq!(rec.state, DeliveryState::Cancelled { at: cancelled_at });
    assert!(crate::evidence::chain::verify(&w.store.events(code).unwrap()).is_ok());
}

#[test]
fn a_notice_for_now_cannot_be_cancelled_and_an_unknown_one_is_missing() {
    let w = World::new();
    let to = person(300_007_201);
    w.profile(to, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 1);
    assert_eq!(
        w.scheduler.cancel_now(code).unwrap(),
        CancelOutcome::TooLate { state: "scheduled" }
    );
    let unknown = TrackingCode::from_parts(t0().timestamp_millis(), 1, 999);
    assert_eq!(
        w.scheduler.cancel_now(unknown).unwrap(),
        CancelOutcome::Missing
    );
    // Its time come but the scheduler not yet round (behind, or the node
    // down): too late to cancel; it lands at the next scan.
    let late = scheduled(&w, to, 3, w.clock.now() + chrono::Duration::minutes(5));
    w.clock.advance(Duration::from_secs(600));
    assert_eq!(
        w.scheduler.cancel_now(late).unwrap(),
        CancelOutcome::TooLate { state: "held" }
    );
    w.run();
    assert_eq!(w.state(late), DeliveryState::Scheduled);
    assert_eq!(w.rounds_sent(late), vec![1]);
    // A scheduled time already past when stored: at once, never held.
    let past = scheduled(&w, to, 2, t0() - chrono::Duration::hours(1));
    assert_eq!(w.state(past), DeliveryState::Scheduled);
    w.run();
    assert_eq!(w.rounds_sent(past), vec![1]);
}

#[test]
fn a_recipient_who_has_not_opened_is_reminded_before_the_deadline_once() {
    let w = World::new();
    let to = person(300_007_301);
    w.profile(to, MailboxStatus::Active, vec![]);
    let by = w.clock.now() + chrono::Duration::days(5);
    let code = with_options(&w, to, 1, None, Some(by));
    w.run();
    w.advance(DAY);
    assert_eq!(w.rounds_sent(code), vec![1, 2]);
    assert!(reminders_sent(&w, code).is_empty(), "not yet");
    // Two days before the deadline (delivery.reminder_before).
    w.clock
        .set(by - chrono::Duration::days(2) - chrono::Duration::seconds(1));
    w.run();
    assert!(reminders_sent(&w, code).is_empty());
    w.clock.set(by - chrono::Duration::days(2));
    w.run();
    assert_eq!(reminders_sent(&w, code), [format!("{code}-reminder-0")]);
    let rs = w.receipts();
    let reminder = rs
        .iter()
        .find(|r| matches!(r.event, ReceiptEvent::ReminderSent { .. }))
        .expect("reminder_sent");
    match &reminder.event {
        ReceiptEvent::ReminderSent {
            respond_by,
            to_representative,
            ..
        } => {
            assert_eq!(*respond_by, by);
            assert!(!to_representative);
        }
        _ => unreachable!(),
    }
    assert_eq!(reminder.receipt_id, format!("{code}-reminder-0"));
    // Once: the rounds go on, no second reminder.
    w.advance(10 * DAY);
    assert_eq!(reminders_sent(&w, code).len(), 1);
    assert_eq!(w.rounds_sent(code), vec![1, 2, 3]);
    let rec = w.store.delivery(code).unwrap().unwrap();
    assert_eq!(rec.reminded, Some(by - chrono::Duration::days(2)));
    assert!(crate::evidence::chain::verify(&w.store.events(code).unwrap()).is_ok());
}

#[test]
fn no_reminder_to_one_who_opened_or_confirmed_or_when_the_deadline_is_near() {
    let w = World::new();
    let (a, b, c) = (
        person(300_007_401),
        person(300_007_402),
        person(300_007_403),
    );
    w.active(&[a, b, c]);
    let by = w.clock.now() + chrono::Duration::days(3);
    let opened = with_options(&w, a, 1, None, Some(by));
    let confirmed = with_options(&w, b, 2, None, Some(by));
    // A deadline nearer than two days when it lands: the round says it.
    let near = with_options(
        &w,
        c,
        3,
        None,
        Some(w.clock.now() + chrono::Duration::days(1)),
    );
    w.run();
    let mut rec = w.store.delivery(opened).unwrap().unwrap();
    rec.opened.push(OpenRecord {
        by_representative: false,
        at: w.clock.now(),
    });
    w.store
        .write_delivery(&[DeliveryWrite {
            record: Some(rec),
            ..DeliveryWrite::default()
        }])
        .unwrap();
    assert!(matches!(
        w.confirm(confirmed, "c-1", b),
        ConfirmOutcome::Applied { count: 1, .. }
    ));
    w.receipts();
    w.advance(5 * DAY);
    for code in [opened, confirmed, near] {
        assert!(reminders_sent(&w, code).is_empty(), "{code}");
    }
    assert!(!w.receipts().iter().any(|r| matches!(
        r.event,
        ReceiptEvent::ReminderSent { .. } | ReceiptEvent::ReminderFailed { .. }
    )));
    let decided = |code| w.store.delivery(code).unwrap().unwrap().reminded;
    assert!(decided(opened).is_some() && decided(confirmed).is_some());
    assert_eq!(decided(near), None, "never planned");
}

#[test]
fn a_scheduled_send_with_a_deadline_is_reminded_after_it_lands_and_a_failed_reminder_is_told() {
    let w = World::new();
    let to = person(300_007_501);
    w.profile(to, MailboxStatus::Active, vec![]);
    let lands = w.clock.now() + chrono::Duration::days(2);
    let by = lands + chrono::Duration::days(4);
    let code = with_options(&w, to, 1, Some(lands), Some(by));
    w.advance(DAY);
    assert!(w.receipts().is_empty(), "held");
    w.clock.set(lands);
    w.run();
    assert_eq!(w.rounds_sent(code), vec![1]);
    // Every channel fails for good at the reminder's time.
    w.gateway.permanent.store(true, Ordering::SeqCst);
    w.clock.set(by - chrono::Duration::days(2));
    w.run();
    let rs = w.receipts();
    let failed: Vec<_> = rs
        .iter()
        .filter_map(|r| match &r.event {
            ReceiptEvent::ReminderFailed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(failed, ["permanent_failure"]);
}

/// `receipts replay`: an agency's receipts go out again with the same
/// receipt IDs and chain links, from `accepted` on, and nothing is added
/// to any chain; another agency's, and events outside the window, stay.
#[test]
fn a_replay_sends_the_same_receipts_again_and_changes_no_chain() {
    let w = World::new();
    let to = person(300_007_601);
    w.profile(to, MailboxStatus::Active, vec![]);
    let code = w.notice(to, 1);
    let other = new_notice(notice("judiciary", "j-1", to, "متن"), 2);
    w.store.write(&[other]).unwrap();
    w.run();
    w.confirm(code, "c-1", to);
    let first = w.receipts();
    // Round 1 of each agency's notice, and the confirmation of tax's.
    assert_eq!(events(&first), ["sent", "sent", "confirmed"]);
    let chain_before = w.store.events(code).unwrap();
    let tax = karpoosheh_schemas::AgencyId::parse("tax").unwrap();
    let all = crate::status::replay(
        w.store.as_ref(),
        &tax,
        t0() - chrono::Duration::days(1),
        w.clock.now() + chrono::Duration::days(1),
    )
    .unwrap();
    assert_eq!((all.notices, all.receipts, all.rejections), (1, 3, 0));
    let again = w.receipts();
    assert_eq!(events(&again), ["accepted", "sent", "confirmed"]);
    assert!(again.iter().all(|r| r.agency == tax), "only tax's");
    // The same IDs and links as first sent (accepted went out by the
    // ingest path, so only here).
    let link = |r: &Receipt| r.evidence.as_ref().unwrap().chain.clone().unwrap();
    for r in &again[1..] {
        let orig = first
            .iter()
            .find(|f| f.receipt_id == r.receipt_id)
            .expect("sent before");
        assert_eq!(link(r), link(orig), "{}", r.receipt_id);
        assert_eq!(r.at, orig.at);
    }
    assert_eq!(again[0].receipt_id, format!("accepted:{code}"));
    assert_eq!(link(&again[0]).seq, 1);
    assert_eq!(
        w.store.events(code).unwrap(),
        chain_before,
        "no event added"
    );
    assert!(crate::evidence::chain::verify(&chain_before).is_ok());
    // A window after everything: nothing.
    let none = crate::status::replay(
        w.store.as_ref(),
        &tax,
        w.clock.now() + chrono::Duration::hours(1),
        w.clock.now() + chrono::Duration::days(1),
    )
    .unwrap();
    assert_eq!((none.notices, none.receipts), (1, 0));
    assert!(w.receipts().is_empty());
}
