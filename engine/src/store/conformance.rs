//! The conformance suite every [`Store`] backend must pass.
//!
//! A backend's test calls [`run_all`] with a factory that opens a fresh,
//! empty store for each case (the second value it returns is kept alive
//! for the case and dropped after: a temporary directory, a keyspace
//! guard). Each case panics with a message naming what broke.

use std::any::Any;

use chrono::{Duration, TimeZone, Utc};
use karpoosheh_schemas::{
    AgencyId, DeadLetter, LifeEvent, MailboxId, MailboxProfile, MailboxStatus, Notice, NoticeKind,
    Problem, Reason, SourcePosition, TrackingCode, SCHEMA_VERSION,
};

use super::{Entry, NewNotice, NewRejection, Outcome, Store};

/// Opens a fresh store for the named case.
pub type Factory<'a> = dyn FnMut(&str) -> (Box<dyn Store>, Box<dyn Any>) + 'a;

/// Runs every case.
pub fn run_all(factory: &mut Factory<'_>) {
    type Case = (&'static str, fn(&dyn Store));
    let cases: &[Case] = &[
        ("stores_and_reads_back", stores_and_reads_back),
        (
            "mailbox_is_newest_first_and_pages",
            mailbox_is_newest_first_and_pages,
        ),
        ("mailboxes_are_isolated", mailboxes_are_isolated),
        ("exact_resend_is_absorbed", exact_resend_is_absorbed),
        (
            "conflicting_resend_keeps_original",
            conflicting_resend_keeps_original,
        ),
        ("duplicates_within_one_batch", duplicates_within_one_batch),
        (
            "same_reference_different_agencies",
            same_reference_different_agencies,
        ),
        (
            "rejections_are_kept_per_agency",
            rejections_are_kept_per_agency,
        ),
        ("dead_letters_are_kept", dead_letters_are_kept),
        (
            "last_tracking_code_is_the_highest",
            last_tracking_code_is_the_highest,
        ),
        ("empty_store_answers_empty", empty_store_answers_empty),
        (
            "a_stored_notice_starts_its_follow_up",
            a_stored_notice_starts_its_follow_up,
        ),
        (
            "delivery_writes_move_timers_and_fill_the_outbox",
            delivery_writes_move_timers_and_fill_the_outbox,
        ),
        (
            "expiry_purge_and_record_deletion",
            expiry_purge_and_record_deletion,
        ),
        (
            "profiles_are_kept_newest_wins",
            profiles_are_kept_newest_wins,
        ),
        ("profiles_are_deleted", profiles_are_deleted),
        (
            "a_timer_written_behind_a_cursor_comes_back",
            a_timer_written_behind_a_cursor_comes_back,
        ),
    ];
    for (name, case) in cases {
        let (store, guard) = factory(name);
        case(store.as_ref());
        drop(store);
        drop(guard);
    }
}

/// The conformance cases' "now": 2026-11-01 08:00 UTC (11:30 in Tehran).
pub fn t0() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap()
}

/// The first valid national code at or after body `n`.
pub fn person(n: u32) -> MailboxId {
    (n..)
        .find_map(MailboxId::person_from_body)
        .expect("a valid code")
}

/// A notice from `agency` with `reference` to `recipient`.
pub fn notice(agency: &str, reference: &str, recipient: MailboxId, body: &str) -> Notice {
    Notice {
        schema_version: SCHEMA_VERSION,
        agency: AgencyId::parse(agency).unwrap(),
        reference: reference.to_owned(),
        recipient,
        kind: NoticeKind::ServiceNotice,
        title: "ابلاغیه".to_owned(),
        body: body.to_owned(),
        attachments: vec![],
        min_access_level: 1,
        life_event: LifeEvent::Tax,
        expires_at: t0() + Duration::days(365),
        sent_at: t0(),
        batch_id: None,
    }
}

/// Wraps a notice for writing, with tracking code `seq` (increasing
/// `seq` gives increasing codes).
pub fn new_notice(n: Notice, seq: u16) -> Entry {
    let at = t0() + Duration::milliseconds(seq as i64);
    Entry::Notice(NewNotice {
        tracking_code: TrackingCode::from_parts(at.timestamp_millis(), 1, seq),
        accepted_at: at,
        content_hash: n.content_hash(),
        notice: n,
        position: SourcePosition::InProcess {
            sequence: seq as u64,
        },
    })
}

/// `n` notices to one recipient with distinct references.
pub fn sample_entries(n: u16) -> Vec<Entry> {
    (0..n)
        .map(|i| {
            new_notice(
                notice("tax", &format!("ref-{i}"), person(100_000_001), "متن"),
                i + 1,
            )
        })
        .collect()
}

fn code_of(e: &Entry) -> TrackingCode {
    match e {
        Entry::Notice(n) => n.tracking_code,
        _ => panic!("not a notice"),
    }
}

fn stores_and_reads_back(s: &dyn Store) {
    let entries = sample_entries(5);
    let out = s.write(&entries).unwrap();
    assert_eq!(out, vec![Outcome::Stored; 5], "five new notices are stored");
    for e in &entries {
        let Entry::Notice(n) = e else { unreachable!() };
        let got = s
            .notice(n.tracking_code)
            .unwrap()
            .expect("stored notice is found by tracking code");
        assert_eq!(got.notice, n.notice, "notice reads back unchanged");
        assert_eq!(got.content_hash, n.content_hash);
        assert_eq!(got.accepted_at, n.accepted_at);
        assert_eq!(
            s.reference(&n.notice.agency, &n.notice.reference).unwrap(),
            Some(n.tracking_code)
        );
    }
    assert_eq!(
        s.notice(TrackingCode::from_u64(12345)).unwrap(),
        None,
        "unknown code is None"
    );
}

fn mailbox_is_newest_first_and_pages(s: &dyn Store) {
    let entries = sample_entries(25);
    s.write(&entries[..10]).unwrap();
    s.write(&entries[10..]).unwrap();
    let id = person(100_000_001);
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = s.mailbox(id, before, 10).unwrap();
        assert!(page.notices.len() <= 10);
        seen.extend(page.notices.iter().map(|n| n.tracking_code));
        match page.next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    let mut expected: Vec<_> = entries.iter().map(code_of).collect();
    expected.reverse();
    assert_eq!(
        seen, expected,
        "all 25 notices, newest first, no gaps or repeats across pages"
    );
}

fn mailboxes_are_isolated(s: &dyn Store) {
    let a = person(200_000_001);
    let b = person(300_000_001);
    let legal = (1_000_000_000u64..)
        .find_map(MailboxId::legal_from_body)
        .unwrap();
    s.write(&[
        new_notice(notice("tax", "a1", a, "x"), 1),
        new_notice(notice("tax", "b1", b, "x"), 2),
        new_notice(notice("tax", "l1", legal, "x"), 3),
    ])
    .unwrap();
    for (id, reference) in [(a, "a1"), (b, "b1"), (legal, "l1")] {
        let page = s.mailbox(id, None, 10).unwrap();
        assert_eq!(
            page.notices.len(),
            1,
            "mailbox {reference} has exactly its own notice"
        );
        assert_eq!(page.notices[0].notice.reference, reference);
    }
}

fn exact_resend_is_absorbed(s: &dyn Store) {
    let id = person(400_000_001);
    let first = new_notice(notice("tax", "r1", id, "body"), 1);
    s.write(std::slice::from_ref(&first)).unwrap();
    // The re-send gets a new tracking code from the pipeline and a new
    // sent_at; it is still the same notice.
    let mut again = notice("tax", "r1", id, "body");
    again.sent_at = t0() + Duration::hours(3);
    let out = s.write(&[new_notice(again, 2)]).unwrap();
    assert_eq!(
        out,
        vec![Outcome::Duplicate {
            original: code_of(&first)
        }],
        "re-send answers with the original code"
    );
    assert_eq!(
        s.mailbox(id, None, 10).unwrap().notices.len(),
        1,
        "the re-send does not show twice"
    );
}

fn conflicting_resend_keeps_original(s: &dyn Store) {
    let id = person(500_000_001);
    let first = new_notice(notice("tax", "r1", id, "original"), 1);
    s.write(std::slice::from_ref(&first)).unwrap();
    let out = s
        .write(&[new_notice(notice("tax", "r1", id, "changed"), 2)])
        .unwrap();
    assert_eq!(
        out,
        vec![Outcome::Conflict {
            original: code_of(&first)
        }]
    );
    let page = s.mailbox(id, None, 10).unwrap();
    assert_eq!(page.notices.len(), 1);
    assert_eq!(
        page.notices[0].notice.body, "original",
        "the original is kept"
    );
    let agency = AgencyId::parse("tax").unwrap();
    let rej = s.rejections(Some(&agency), None, 10).unwrap();
    assert_eq!(
        rej.len(),
        1,
        "the conflict is kept as a rejection for the agency"
    );
    assert_eq!(
        rej[0].rejection.problems[0].reason,
        Reason::ReferenceConflict
    );
    assert_eq!(rej[0].rejection.reference.as_deref(), Some("r1"));
}

fn duplicates_within_one_batch(s: &dyn Store) {
    let id = person(600_000_001);
    let a = new_notice(notice("tax", "r1", id, "same"), 1);
    let b = new_notice(notice("tax", "r1", id, "same"), 2);
    let c = new_notice(notice("tax", "r1", id, "different"), 3);
    let out = s.write(&[a.clone(), b, c]).unwrap();
    assert_eq!(
        out,
        vec![
            Outcome::Stored,
            Outcome::Duplicate {
                original: code_of(&a)
            },
            Outcome::Conflict {
                original: code_of(&a)
            }
        ]
    );
    assert_eq!(s.mailbox(id, None, 10).unwrap().notices.len(), 1);
}

fn same_reference_different_agencies(s: &dyn Store) {
    let id = person(700_000_001);
    let out = s
        .write(&[
            new_notice(notice("tax", "r1", id, "x"), 1),
            new_notice(notice("judiciary", "r1", id, "y"), 2),
        ])
        .unwrap();
    assert_eq!(
        out,
        vec![Outcome::Stored, Outcome::Stored],
        "references are unique per agency only"
    );
    assert_eq!(s.mailbox(id, None, 10).unwrap().notices.len(), 2);
}

pub fn rejection(agency: Option<&str>, reference: &str, reason: Reason) -> Entry {
    Entry::Rejection(NewRejection {
        agency: agency.map(|a| AgencyId::parse(a).unwrap()),
        reference: Some(reference.to_owned()),
        problems: vec![Problem::new(reason, Some("recipient".to_owned()), "bad")],
        position: SourcePosition::File {
            path: "batch.ndjson".into(),
            line: 7,
        },
        at: t0(),
    })
}

fn rejections_are_kept_per_agency(s: &dyn Store) {
    let mut entries: Vec<Entry> = (0..5)
        .map(|i| rejection(Some("tax"), &format!("t{i}"), Reason::BadCheckDigit))
        .collect();
    entries.push(rejection(Some("judiciary"), "j0", Reason::MissingField));
    entries.push(rejection(None, "u0", Reason::InvalidAgency));
    let out = s.write(&entries).unwrap();
    assert!(out.iter().all(|o| *o == Outcome::Kept));
    let tax = AgencyId::parse("tax").unwrap();
    let first = s.rejections(Some(&tax), None, 3).unwrap();
    assert_eq!(
        first
            .iter()
            .map(|r| r.rejection.reference.clone().unwrap())
            .collect::<Vec<_>>(),
        ["t0", "t1", "t2"]
    );
    let rest = s.rejections(Some(&tax), Some(first[2].id), 10).unwrap();
    assert_eq!(
        rest.iter()
            .map(|r| r.rejection.reference.clone().unwrap())
            .collect::<Vec<_>>(),
        ["t3", "t4"]
    );
    let jud = s
        .rejections(Some(&AgencyId::parse("judiciary").unwrap()), None, 10)
        .unwrap();
    assert_eq!(jud.len(), 1);
    assert_eq!(jud[0].rejection.problems[0].reason, Reason::MissingField);
    assert_eq!(
        jud[0].rejection.position,
        SourcePosition::File {
            path: "batch.ndjson".into(),
            line: 7
        }
    );
    let un = s.rejections(None, None, 10).unwrap();
    assert_eq!(un.len(), 1, "unattributed rejections are kept apart");
}

/// A dead letter of an in-process source at `sequence`: "{}", not JSON.
pub fn dead_letter(sequence: u64) -> Entry {
    Entry::DeadLetter(DeadLetter {
        schema_version: SCHEMA_VERSION,
        source: SourcePosition::InProcess { sequence },
        agency: None,
        problems: vec![Problem::new(Reason::MalformedJson, None, "not JSON")],
        payload_base64: "e30=".into(),
        payload_size: 2,
        at: t0(),
    })
}

fn dead_letters_are_kept(s: &dyn Store) {
    s.write(&[dead_letter(1), dead_letter(2)]).unwrap();
    s.write(&[dead_letter(3)]).unwrap();
    let all = s.dead_letters(None, 10).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(
        all[2].1.source,
        SourcePosition::InProcess { sequence: 3 },
        "oldest first"
    );
    let after = s.dead_letters(Some(all[0].0), 10).unwrap();
    assert_eq!(after.len(), 2);
}

fn last_tracking_code_is_the_highest(s: &dyn Store) {
    let entries = sample_entries(4);
    s.write(&entries).unwrap();
    assert_eq!(s.last_tracking_code().unwrap(), Some(code_of(&entries[3])));
}

fn empty_store_answers_empty(s: &dyn Store) {
    assert_eq!(s.last_tracking_code().unwrap(), None);
    assert!(s
        .mailbox(person(800_000_001), None, 10)
        .unwrap()
        .notices
        .is_empty());
    assert!(s.rejections(None, None, 10).unwrap().is_empty());
    assert!(s.dead_letters(None, 10).unwrap().is_empty());
    assert_eq!(
        s.reference(&AgencyId::parse("tax").unwrap(), "nope")
            .unwrap(),
        None
    );
}

/// A profile for `id`, updated `minutes` after the test epoch.
pub fn profile(id: MailboxId, status: MailboxStatus, minutes: i64) -> MailboxProfile {
    MailboxProfile {
        schema_version: SCHEMA_VERSION,
        id,
        status,
        access_level: 2,
        mobile: Some("09121234567".to_owned()),
        email: None,
        push: true,
        representatives: vec![],
        updated_at: t0() + Duration::minutes(minutes),
    }
}

fn profiles_are_kept_newest_wins(s: &dyn Store) {
    let (a, b) = (person(300_000_001), person(300_000_101));
    assert_eq!(
        s.profile(a).unwrap(),
        None,
        "no profile before the registry sends one"
    );
    let v1 = profile(a, MailboxStatus::NotActivated, 0);
    let v2 = profile(a, MailboxStatus::Active, 10);
    let other = profile(b, MailboxStatus::Deceased, 5);
    assert_eq!(
        s.put_profiles(&[v1.clone(), other.clone()]).unwrap(),
        [true, true]
    );
    assert_eq!(s.profile(a).unwrap(), Some(v1.clone()));
    assert_eq!(
        s.put_profiles(std::slice::from_ref(&v2)).unwrap(),
        [true],
        "a newer version replaces"
    );
    assert_eq!(
        s.put_profiles(std::slice::from_ref(&v1)).unwrap(),
        [false],
        "a re-delivered older version is ignored"
    );
    assert_eq!(
        s.profile(a).unwrap(),
        Some(v2.clone()),
        "the newer version is kept"
    );
    // Within one call: the older one after the newer is ignored too.
    let v3 = profile(a, MailboxStatus::Deceased, 20);
    assert_eq!(s.put_profiles(&[v3.clone(), v2]).unwrap(), [true, false]);
    assert_eq!(s.profile(a).unwrap(), Some(v3));
    assert_eq!(s.profile(b).unwrap(), Some(other), "mailboxes are isolated");
    // Same time: the later write wins (a correction with the same stamp).
    let mut fix = profile(b, MailboxStatus::Active, 5);
    fix.push = false;
    assert_eq!(s.put_profiles(&[fix.clone()]).unwrap(), [true]);
    assert_eq!(s.profile(b).unwrap(), Some(fix));
}

fn profiles_are_deleted(s: &dyn Store) {
    let (a, b) = (person(400_000_001), person(400_000_101));
    s.put_profiles(&[
        profile(a, MailboxStatus::Active, 0),
        profile(b, MailboxStatus::Active, 0),
    ])
    .unwrap();
    let at = t0() + Duration::seconds(30);
    s.delete_profiles(&[(a, at), (person(400_000_201), at)])
        .unwrap();
    assert_eq!(s.profile(a).unwrap(), None, "deleted");
    assert!(s.profile(b).unwrap().is_some(), "others kept");
    // A tombstone older than the stored profile leaves it alone.
    s.delete_profiles(&[(b, t0() - Duration::minutes(1))])
        .unwrap();
    assert!(
        s.profile(b).unwrap().is_some(),
        "a stale tombstone removed a newer profile"
    );
    // A tombstone does not block a later registration.
    assert_eq!(
        s.put_profiles(&[profile(a, MailboxStatus::Active, 1)])
            .unwrap(),
        [true]
    );
}

fn all_due(s: &dyn Store, now_ms: i64) -> Vec<crate::delivery::Timer> {
    let mut out = Vec::new();
    for shard in 0..crate::delivery::TIMER_SHARDS {
        out.extend(s.due_timers(shard, i64::MIN, now_ms, 10_000).unwrap());
    }
    out
}

fn a_stored_notice_starts_its_follow_up(s: &dyn Store) {
    use crate::delivery::{Action, DeliveryState, TimerKind};
    let entries = sample_entries(3);
    s.write(&entries).unwrap();
    // A duplicate must not start a second follow-up.
    s.write(&entries[..1]).unwrap();
    let Entry::Notice(first) = &entries[0] else {
        unreachable!()
    };
    let rec = s
        .delivery(first.tracking_code)
        .unwrap()
        .expect("a delivery record with the notice");
    assert_eq!(rec.state, DeliveryState::Scheduled);
    assert_eq!(
        rec.next.unwrap().action,
        Action::Round { round: 1, retry: 0 }
    );
    assert_eq!(rec.recipient, first.notice.recipient);
    let now = (t0() + Duration::seconds(1)).timestamp_millis();
    let due = all_due(s, now);
    assert_eq!(
        due.len(),
        3,
        "round 1 of each notice is due at once, once: {due:?}"
    );
    assert!(due.iter().all(|t| t.kind == TimerKind::Next));
    let later = (t0() + Duration::days(366)).timestamp_millis();
    let expiries = all_due(s, later)
        .into_iter()
        .filter(|t| t.kind == TimerKind::Expire)
        .count();
    assert_eq!(expiries, 3, "each notice's expiry is a timer");
    for shard in 0..crate::delivery::TIMER_SHARDS {
        let ts = s.due_timers(shard, i64::MIN, later, 10_000).unwrap();
        let from = (t0() + Duration::days(300)).timestamp_millis();
        let tail = s.due_timers(shard, from, later, 10_000).unwrap();
        assert!(
            tail.iter().all(|t| t.due_ms >= from),
            "from_ms is a lower bound"
        );
        assert_eq!(tail.len(), ts.iter().filter(|t| t.due_ms >= from).count());
        assert!(
            ts.windows(2).all(|w| w[0].due_ms <= w[1].due_ms),
            "earliest first"
        );
        assert!(ts.iter().all(|t| t.shard == shard));
    }
    assert!(
        all_due(s, first.accepted_at.timestamp_millis() - 1).is_empty(),
        "nothing due before its time"
    );
}

fn delivery_writes_move_timers_and_fill_the_outbox(s: &dyn Store) {
    use crate::delivery::{DeliveryWrite, Timer};
    use karpoosheh_schemas::{Receipt, ReceiptEvent};
    let entries = sample_entries(1);
    s.write(&entries).unwrap();
    let Entry::Notice(n) = &entries[0] else {
        unreachable!()
    };
    let code = n.tracking_code;
    let mut rec = s.delivery(code).unwrap().unwrap();
    let old = Timer::next(code, rec.next.unwrap().due_ms);
    let new_due = (t0() + Duration::days(1)).timestamp_millis();
    rec.next.as_mut().unwrap().due_ms = new_due;
    let receipt = |i: u8| {
        Receipt::new(
            format!("{code}-x{i}"),
            n.notice.agency.clone(),
            Some(n.notice.reference.clone()),
            t0(),
            ReceiptEvent::Confirmed {
                tracking_code: code,
                count: i,
            },
        )
    };
    s.write_delivery(&[DeliveryWrite {
        record: Some(rec.clone()),
        remove_timers: vec![old],
        add_timers: vec![Timer::next(code, new_due)],
        receipts: vec![receipt(1), receipt(2)],
        confirmation_ids: vec![("conf-1".into(), code)],
        awaiting: Some(true),
        ..Default::default()
    }])
    .unwrap();
    s.write_delivery(&[DeliveryWrite {
        receipts: vec![receipt(3)],
        ..Default::default()
    }])
    .unwrap();
    assert_eq!(
        s.delivery(code).unwrap().unwrap(),
        rec,
        "the record was replaced"
    );
    assert!(
        all_due(s, (t0() + Duration::hours(1)).timestamp_millis()).is_empty(),
        "the old timer is gone"
    );
    assert_eq!(all_due(s, new_due).len(), 1, "the new one is there");
    assert_eq!(s.confirmation("conf-1").unwrap(), Some(code));
    assert_eq!(s.confirmation("conf-2").unwrap(), None);
    assert_eq!(
        s.awaiting_activation(n.notice.recipient, 10).unwrap(),
        vec![code]
    );
    let out = s.outbox(None, 10).unwrap();
    let ids: Vec<_> = out.iter().map(|(_, r)| r.receipt_id.clone()).collect();
    assert_eq!(
        ids,
        [
            format!("{code}-x1"),
            format!("{code}-x2"),
            format!("{code}-x3")
        ],
        "in order"
    );
    assert_eq!(s.outbox(Some(out[0].0), 10).unwrap().len(), 2, "paged");
    s.outbox_remove(&[out[0].0, out[1].0]).unwrap();
    let left = s.outbox(None, 10).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].1, out[2].1);
    s.write_delivery(&[DeliveryWrite {
        record: Some(rec),
        awaiting: Some(false),
        ..Default::default()
    }])
    .unwrap();
    assert!(s
        .awaiting_activation(n.notice.recipient, 10)
        .unwrap()
        .is_empty());
}

fn expiry_purge_and_record_deletion(s: &dyn Store) {
    use crate::delivery::DeliveryWrite;
    let entries = sample_entries(2);
    s.write(&entries).unwrap();
    let Entry::Notice(n) = &entries[0] else {
        unreachable!()
    };
    let code = n.tracking_code;
    let mut rec = s.delivery(code).unwrap().unwrap();
    rec.purged = true;
    s.write_delivery(&[DeliveryWrite {
        record: Some(rec.clone()),
        purge_notice: true,
        ..Default::default()
    }])
    .unwrap();
    assert!(s.notice(code).unwrap().is_none(), "the body left");
    let page = s.mailbox(n.notice.recipient, None, 10).unwrap();
    assert_eq!(
        page.notices.len(),
        1,
        "and its mailbox entry; the other notice stays"
    );
    assert!(
        s.delivery(code).unwrap().unwrap().purged,
        "the history stays"
    );
    assert_eq!(
        s.reference(&n.notice.agency, &n.notice.reference).unwrap(),
        Some(code),
        "a re-send is still absorbed"
    );
    s.write_delivery(&[DeliveryWrite {
        delete_record: Some(rec),
        ..Default::default()
    }])
    .unwrap();
    assert!(s.delivery(code).unwrap().is_none());
    assert_eq!(
        s.reference(&n.notice.agency, &n.notice.reference).unwrap(),
        None
    );
}

fn a_timer_written_behind_a_cursor_comes_back(s: &dyn Store) {
    // A scheduler scans from a cursor; a notice accepted a moment before a
    // scan moved the cursor past its round-1 time must still be found.
    let later = (t0() + Duration::days(1)).timestamp_millis();
    for shard in 0..crate::delivery::TIMER_SHARDS {
        assert!(s
            .due_timers(shard, i64::MIN, later, 10_000)
            .unwrap()
            .is_empty());
    }
    s.write(&[new_notice(
        notice("tax", "behind-1", person(500_000_001), "x"),
        1,
    )])
    .unwrap();
    let Entry::Notice(n) = &new_notice(notice("tax", "behind-1", person(500_000_001), "x"), 1)
    else {
        unreachable!()
    };
    let shard = crate::delivery::Timer::shard_of(n.tracking_code);
    let cursor = (t0() + Duration::hours(1)).timestamp_millis();
    let seen = s.due_timers(shard, cursor, later, 10_000).unwrap();
    assert!(
        seen.iter().any(|t| t.code == n.tracking_code),
        "a timer written behind the cursor is returned by the next scan: {seen:?}"
    );
    let again = s.due_timers(shard, cursor, later, 10_000).unwrap();
    assert!(
        again.iter().all(|t| t.due_ms >= cursor),
        "only once: after that the cursor is a lower bound again"
    );
}
