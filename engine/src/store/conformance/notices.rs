//! Conformance cases of [`NoticeStore`]: writes, idempotency on
//! (agency, reference), mailbox pages, rejections and dead letters.

use super::*;

pub(super) fn stores_and_reads_back(s: &dyn Store) {
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

pub(super) fn mailbox_is_newest_first_and_pages(s: &dyn Store) {
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

pub(super) fn mailboxes_are_isolated(s: &dyn Store) {
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

pub(super) fn exact_resend_is_absorbed(s: &dyn Store) {
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
            original: code_of(&first),
            redelivery: false,
        }],
        "re-send answers with the original code"
    );
    assert_eq!(
        s.mailbox(id, None, 10).unwrap().notices.len(),
        1,
        "the re-send does not show twice"
    );
}

/// The same record from the same source position (a crash or rebalance
/// before its offset was committed) is a re-delivery, not a re-send: the
/// pipeline answers it with the receipt it got the first time.
pub(super) fn a_redelivered_record_is_known_by_its_source_position(s: &dyn Store) {
    let id = person(450_000_001);
    let at_kafka = |e: Entry, offset: i64| match e {
        Entry::Notice(mut n) => {
            n.position = SourcePosition::Kafka {
                topic: "karpoosheh.notices.tax".into(),
                partition: 3,
                offset,
            };
            Entry::Notice(n)
        }
        other => other,
    };
    let first = at_kafka(new_notice(notice("tax", "rd1", id, "body"), 1), 1187);
    assert_eq!(
        s.write(std::slice::from_ref(&first)).unwrap(),
        vec![Outcome::Stored]
    );
    // Re-delivered: a new tracking code from the pipeline, the same offset.
    let again = at_kafka(new_notice(notice("tax", "rd1", id, "body"), 2), 1187);
    assert_eq!(
        s.write(&[again]).unwrap(),
        vec![Outcome::Duplicate {
            original: code_of(&first),
            redelivery: true,
        }],
        "the same record from the same offset"
    );
    // Sent again by the agency: another offset.
    let resent = at_kafka(new_notice(notice("tax", "rd1", id, "body"), 3), 2000);
    assert_eq!(
        s.write(&[resent]).unwrap(),
        vec![Outcome::Duplicate {
            original: code_of(&first),
            redelivery: false,
        }],
        "a re-send from another offset"
    );
    assert_eq!(
        s.mailbox(id, None, 10).unwrap().notices.len(),
        1,
        "one notice"
    );
}

pub(super) fn conflicting_resend_keeps_original(s: &dyn Store) {
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

pub(super) fn duplicates_within_one_batch(s: &dyn Store) {
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
                original: code_of(&a),
                redelivery: false,
            },
            Outcome::Conflict {
                original: code_of(&a)
            }
        ]
    );
    assert_eq!(s.mailbox(id, None, 10).unwrap().notices.len(), 1);
}

pub(super) fn same_reference_different_agencies(s: &dyn Store) {
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

/// An agency's references page by page, each once, no other agency's.
pub(super) fn an_agencys_references_are_listed_page_by_page(s: &dyn Store) {
    let id = person(700_000_101);
    let mut entries: Vec<Entry> = (0..7u16)
        .map(|i| new_notice(notice("pager", &format!("p-{i}"), id, "x"), i + 1))
        .collect();
    entries.push(new_notice(notice("other", "p-0", id, "y"), 20));
    entries.push(new_notice(notice("pagers", "p-9", id, "y"), 21));
    s.write(&entries).unwrap();
    let pager = AgencyId::parse("pager").unwrap();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let (page, next) = s.agency_references(&pager, cursor.as_deref(), 2).unwrap();
        seen.extend(page);
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    seen.sort();
    let want: Vec<(String, TrackingCode)> = entries[..7]
        .iter()
        .map(|e| match e {
            Entry::Notice(n) => (n.notice.reference.clone(), n.tracking_code),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(seen, want, "each of its references once, no other agency's");
}

pub(super) fn rejections_are_kept_per_agency(s: &dyn Store) {
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
    // The newest first, for an operator looking at them now.
    let latest = s.latest_rejections(Some(&tax), 2).unwrap();
    assert_eq!(
        latest
            .iter()
            .map(|r| r.rejection.reference.clone().unwrap())
            .collect::<Vec<_>>(),
        ["t4", "t3"]
    );
    assert_eq!(
        latest[0].id, rest[1].id,
        "the same IDs as the oldest-first read"
    );
    assert_eq!(s.latest_rejections(Some(&tax), 10).unwrap().len(), 5);
    assert_eq!(s.latest_rejections(None, 10).unwrap().len(), 1);
    assert!(s
        .latest_rejections(Some(&AgencyId::parse("customs").unwrap()), 10)
        .unwrap()
        .is_empty());
}

pub(super) fn dead_letters_are_kept(s: &dyn Store) {
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

pub(super) fn last_tracking_code_is_the_highest(s: &dyn Store) {
    let entries = sample_entries(4);
    s.write(&entries).unwrap();
    assert_eq!(s.last_tracking_code().unwrap(), Some(code_of(&entries[3])));
}

/// A rejected or dead-lettered record that comes again from its source
/// position (a crash or rebalance before its offset was committed) is not
/// kept twice; a different record at that position is, and the in-process
/// source (its sequence starts again each run) is never taken for one.
pub(super) fn a_redelivered_rejection_is_kept_once(s: &dyn Store) {
    let at = |offset: i64| SourcePosition::Kafka {
        topic: "karpoosheh.notices.tax".into(),
        partition: 2,
        offset,
    };
    let rejected = |offset: i64, reference: &str| {
        let Entry::Rejection(mut r) = rejection(Some("tax"), reference, Reason::BadCheckDigit)
        else {
            unreachable!()
        };
        r.position = at(offset);
        Entry::Rejection(r)
    };
    let dead = |offset: i64| {
        let Entry::DeadLetter(mut d) = dead_letter(0) else {
            unreachable!()
        };
        d.source = at(offset);
        Entry::DeadLetter(d)
    };
    let first = vec![rejected(10, "a"), dead(11), dead_letter(5)];
    assert_eq!(
        s.write(&first).unwrap(),
        vec![Outcome::Kept, Outcome::Kept, Outcome::Kept]
    );
    // The same records again, later, in a batch with new ones (and one of
    // them twice).
    let again = vec![
        rejected(10, "a"),
        dead(11),
        dead_letter(5),
        rejected(12, "b"),
        rejected(12, "b"),
        rejected(10, "c"),
    ];
    assert_eq!(
        s.write(&again).unwrap(),
        vec![
            Outcome::Again,
            Outcome::Again,
            Outcome::Kept,
            Outcome::Kept,
            Outcome::Again,
            Outcome::Kept,
        ],
        "re-deliveries absorbed; an in-process record and another record at a known position kept"
    );
    let tax = AgencyId::parse("tax").unwrap();
    let refs: Vec<String> = s
        .rejections(Some(&tax), None, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.rejection.reference.unwrap())
        .collect();
    assert_eq!(refs, ["a", "b", "c"]);
    assert_eq!(s.dead_letters(None, 10).unwrap().len(), 3);
}

/// The mark of `accepted` receipts out: none at first, then the last one
/// marked.
pub(super) fn the_accepted_out_mark_is_kept(s: &dyn Store) {
    assert_eq!(s.accepted_out().unwrap(), None);
    let entries = sample_entries(3);
    s.write(&entries).unwrap();
    s.mark_accepted_out(code_of(&entries[1])).unwrap();
    assert_eq!(s.accepted_out().unwrap(), Some(code_of(&entries[1])));
    s.mark_accepted_out(code_of(&entries[2])).unwrap();
    assert_eq!(s.accepted_out().unwrap(), Some(code_of(&entries[2])));
}

pub(super) fn empty_store_answers_empty(s: &dyn Store) {
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
