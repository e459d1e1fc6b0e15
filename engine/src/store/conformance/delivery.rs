//! Conformance cases of [`DeliveryStore`]: a stored notice's follow-up,
//! timers, the outbox, expiry and purge.

use super::*;

fn all_due(s: &dyn Store, now_ms: i64) -> Vec<crate::model::Timer> {
    let mut out = Vec::new();
    for slot in 0..crate::model::TIMER_SLOTS {
        out.extend(s.due_timers(slot, i64::MIN, now_ms, 10_000).unwrap());
    }
    out
}

pub(super) fn a_stored_notice_starts_its_follow_up(s: &dyn Store) {
    use crate::model::{Action, DeliveryState, TimerKind};
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
    for slot in 0..crate::model::TIMER_SLOTS {
        let ts = s.due_timers(slot, i64::MIN, later, 10_000).unwrap();
        let from = (t0() + Duration::days(300)).timestamp_millis();
        let tail = s.due_timers(slot, from, later, 10_000).unwrap();
        assert!(
            tail.iter().all(|t| t.due_ms >= from),
            "from_ms is a lower bound"
        );
        assert_eq!(tail.len(), ts.iter().filter(|t| t.due_ms >= from).count());
        assert!(
            ts.windows(2).all(|w| w[0].due_ms <= w[1].due_ms),
            "earliest first"
        );
        assert!(ts.iter().all(|t| t.slot == slot));
    }
    assert!(
        all_due(s, first.accepted_at.timestamp_millis() - 1).is_empty(),
        "nothing due before its time"
    );
}

pub(super) fn delivery_writes_move_timers_and_fill_the_outbox(s: &dyn Store) {
    use crate::model::DeliveryWrite;
    use karpoosheh_schemas::{Receipt, ReceiptEvent};
    let entries = sample_entries(1);
    s.write(&entries).unwrap();
    let Entry::Notice(n) = &entries[0] else {
        unreachable!()
    };
    let code = n.tracking_code;
    let mut rec = s.delivery(code).unwrap().unwrap();
    let old = rec.next_timer(rec.next.unwrap().due_ms);
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
        add_timers: vec![rec.next_timer(new_due)],
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

/// A replay (`receipts replay`) writes a notice event only with the link
/// its chain holds: the accepted event of a stored notice goes out as
/// recorded; an event whose chain is gone (a notice purged meanwhile) is
/// dropped, and no chain begins.
pub(super) fn a_replay_never_adds_to_a_chain(s: &dyn Store) {
    let e = new_notice(notice("tax", "rp-1", person(880_000_001), "x"), 1);
    let Entry::Notice(n) = &e else { unreachable!() };
    let (code, accepted) = (n.tracking_code, n.accepted_receipt());
    s.write(&[e]).unwrap();
    let gone = TrackingCode::from_parts(t0().timestamp_millis(), 1, 999);
    let stray = karpoosheh_schemas::Receipt::new(
        format!("{gone}-expired"),
        AgencyId::parse("tax").unwrap(),
        Some("rp-gone".into()),
        t0(),
        karpoosheh_schemas::ReceiptEvent::Expired {
            tracking_code: gone,
        },
    );
    let before = s.events(code).unwrap();
    s.write_delivery(&[crate::model::DeliveryWrite {
        receipts: vec![accepted.clone(), stray],
        replay: true,
        ..Default::default()
    }])
    .unwrap();
    let out = s.outbox(None, 10).unwrap();
    assert_eq!(out.len(), 1, "the one its chain holds: {out:?}");
    assert_eq!(out[0].1.receipt_id, accepted.receipt_id);
    let link = out[0].1.evidence.as_ref().unwrap().chain.as_ref().unwrap();
    assert_eq!(link.seq, 1);
    assert!(s.events(gone).unwrap().is_empty(), "no chain begun");
    assert_eq!(s.events(code).unwrap(), before, "nothing appended");
}

pub(super) fn expiry_purge_and_record_deletion(s: &dyn Store) {
    use crate::model::DeliveryWrite;
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

pub(super) fn a_timer_written_behind_a_cursor_comes_back(s: &dyn Store) {
    // A scheduler scans from a cursor; a notice accepted a moment before a
    // scan moved the cursor past its round-1 time must still be found.
    let later = (t0() + Duration::days(1)).timestamp_millis();
    for slot in 0..crate::model::TIMER_SLOTS {
        assert!(s
            .due_timers(slot, i64::MIN, later, 10_000)
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
    // The slot of tax's normal notices: its agencies' queue.
    let slot = n.delivery_record().timer_slot();
    let cursor = (t0() + Duration::hours(1)).timestamp_millis();
    let seen = s.due_timers(slot, cursor, later, 10_000).unwrap();
    assert!(
        seen.iter().any(|t| t.code == n.tracking_code),
        "a timer written behind the cursor is returned by the next scan: {seen:?}"
    );
    let again = s.due_timers(slot, cursor, later, 10_000).unwrap();
    assert!(
        again.iter().all(|t| t.due_ms >= cursor),
        "only once: after that the cursor is a lower bound again"
    );
}

pub(super) fn a_notice_keeps_the_queue_it_was_stored_in(s: &dyn Store) {
    use crate::model::{timer_slot, Queue, Timer};
    use karpoosheh_schemas::Priority;
    // The registry gave tax queue 2 (its ID's hash is 6).
    let mut e = new_notice(notice("tax", "queued-1", person(610_000_001), "x"), 1);
    let Entry::Notice(n) = &mut e else {
        unreachable!()
    };
    n.priority = Priority::Bulk;
    n.queue = Some(2);
    let code = n.tracking_code;
    s.write(&[e]).unwrap();
    let rec = s.delivery(code).unwrap().unwrap();
    assert_eq!(rec.queue, Some(2), "kept with the record");
    assert_eq!(
        rec.queue(),
        Queue {
            lane: Priority::Bulk,
            index: 2
        }
    );
    let later = (t0() + Duration::days(400)).timestamp_millis();
    let shard = Timer::shard_of(code);
    let there = |q: Queue| {
        s.due_timers(timer_slot(shard, q), i64::MIN, later, 10_000)
            .unwrap()
            .into_iter()
            .filter(|t| t.code == code)
            .count()
    };
    assert_eq!(there(rec.queue()), 2, "round 1 and the expiry");
    assert_eq!(
        there(Queue {
            lane: Priority::Bulk,
            index: 6
        }),
        0
    );
}

pub(super) fn each_lane_keeps_its_timers_apart(s: &dyn Store) {
    use crate::model::{timer_slot, Queue, Timer, TimerKind};
    use karpoosheh_schemas::Priority;
    let mut entries = Vec::new();
    for (i, lane) in Priority::ALL.into_iter().enumerate() {
        let mut e = new_notice(
            notice("tax", &format!("lane-{i}"), person(600_000_001), "x"),
            i as u16 + 1,
        );
        if let Entry::Notice(n) = &mut e {
            n.priority = lane;
        }
        entries.push(e);
    }
    s.write(&entries).unwrap();
    let later = (t0() + Duration::days(400)).timestamp_millis();
    for (e, lane) in entries.iter().zip(Priority::ALL) {
        let Entry::Notice(n) = e else { unreachable!() };
        let code = n.tracking_code;
        let rec = s.delivery(code).unwrap().unwrap();
        assert_eq!(rec.priority, lane, "the record keeps its lane");
        // In the lane's queue of tax's (queue 6; urgent has one).
        let queue = Queue::of(lane, &rec.agency);
        assert_eq!(queue.index, if lane == Priority::Urgent { 0 } else { 6 });
        let slot = timer_slot(Timer::shard_of(code), queue);
        let mine: Vec<Timer> = s
            .due_timers(slot, i64::MIN, later, 10_000)
            .unwrap()
            .into_iter()
            .filter(|t| t.code == code)
            .collect();
        let kinds: Vec<TimerKind> = mine.iter().map(|t| t.kind).collect();
        assert!(
            kinds.contains(&TimerKind::Next) && kinds.contains(&TimerKind::Expire),
            "{lane}: round 1 and the expiry are in the lane's slot: {mine:?}"
        );
        assert!(mine.iter().all(|t| t.lane() == lane && t.slot == slot));
        for other in Priority::ALL.into_iter().filter(|o| *o != lane) {
            let there = s
                .due_timers(
                    timer_slot(Timer::shard_of(code), Queue::of(other, &rec.agency)),
                    i64::MIN,
                    later,
                    10_000,
                )
                .unwrap();
            assert!(
                there.iter().all(|t| t.code != code),
                "{lane}: nothing in the {other} slot"
            );
        }
    }
}

pub(super) fn events_form_a_hash_chain_kept_with_the_record(s: &dyn Store) {
    use crate::evidence::chain;
    use crate::model::DeliveryWrite;
    use karpoosheh_schemas::{Receipt, ReceiptEvent};
    let entries = sample_entries(2);
    s.write(&entries).unwrap();
    // An exact re-send appends nothing.
    s.write(&entries[..1]).unwrap();
    let Entry::Notice(n) = &entries[0] else {
        unreachable!()
    };
    let code = n.tracking_code;
    let first = s.events(code).unwrap();
    assert_eq!(first.len(), 1, "the notice's first event: accepted");
    let mut accepted = n.accepted_receipt();
    let expected = chain::append(0, chain::GENESIS, &mut accepted);
    assert_eq!(
        first[0], expected,
        "event 1 is the accepted receipt, chained"
    );
    let receipt = |id: &str, count: u8| {
        Receipt::new(
            format!("{code}-{id}"),
            n.notice.agency.clone(),
            Some(n.notice.reference.clone()),
            t0(),
            ReceiptEvent::Confirmed {
                tracking_code: code,
                count,
            },
        )
    };
    let rec = s.delivery(code).unwrap().unwrap();
    // Two writes for the notice in one call, then one more call, and the
    // same receipt again (a retried write): it is not appended twice.
    s.write_delivery(&[
        DeliveryWrite {
            record: Some(rec.clone()),
            receipts: vec![receipt("c1", 1)],
            ..Default::default()
        },
        DeliveryWrite {
            receipts: vec![receipt("c2", 2)],
            ..Default::default()
        },
    ])
    .unwrap();
    s.write_delivery(&[DeliveryWrite {
        receipts: vec![receipt("c3", 3), receipt("c2", 2)],
        ..Default::default()
    }])
    .unwrap();
    let events = s.events(code).unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    let head = chain::verify(&events).expect("an intact chain");
    assert_eq!(head, events[3].hash);
    // The outbox's receipts carry their links, as the events say.
    let out = s.outbox(None, 10).unwrap();
    assert_eq!(out.len(), 4);
    for (i, (_, r)) in out.iter().enumerate() {
        let link = r.evidence.as_ref().unwrap().chain.as_ref().unwrap();
        let seq = [2, 3, 4, 3][i];
        assert_eq!(link.seq, seq, "{}", r.receipt_id);
        let e = &events[seq as usize - 1];
        assert_eq!(link.hash, crate::evidence::b64url(&e.hash));
        assert_eq!(chain::event_bytes(r), e.bytes, "the event is the receipt");
    }
    // Another notice's chain is its own.
    let Entry::Notice(other) = &entries[1] else {
        unreachable!()
    };
    assert_eq!(s.events(other.tracking_code).unwrap().len(), 1);
    // Kept past the body's purge; removed with the record.
    s.write_delivery(&[DeliveryWrite {
        record: Some(rec.clone()),
        purge_notice: true,
        ..Default::default()
    }])
    .unwrap();
    assert_eq!(s.events(code).unwrap().len(), 4, "kept after the purge");
    s.write_delivery(&[DeliveryWrite {
        delete_record: Some(rec),
        ..Default::default()
    }])
    .unwrap();
    assert!(
        s.events(code).unwrap().is_empty(),
        "removed with the record"
    );
    assert_eq!(s.events(other.tracking_code).unwrap().len(), 1);
}

/// Receipts an agency's topic refused wait per agency, oldest first,
/// until delivered; other agencies' lots are apart; a store reopened
/// (here: the same one) lists them.
pub(super) fn parked_receipts_wait_per_agency_in_order(s: &dyn Store) {
    let tax = AgencyId::parse("tax").unwrap();
    let post = AgencyId::parse("post").unwrap();
    let receipt = |agency: &AgencyId, i: u8| super::receipt(agency.as_str(), i);
    assert!(
        s.parked_agencies().unwrap().is_empty(),
        "nothing parked yet"
    );
    assert!(s.parked(&tax, 10).unwrap().is_empty());
    s.park(&tax, &[receipt(&tax, 1), receipt(&tax, 2)]).unwrap();
    s.park(&post, &[receipt(&post, 1)]).unwrap();
    s.park(&tax, &[receipt(&tax, 3)]).unwrap();
    s.park(&tax, &[]).unwrap();
    assert_eq!(
        s.parked_agencies().unwrap(),
        vec![(post.clone(), 1), (tax.clone(), 3)],
        "every agency with parked receipts, and how many"
    );
    let lot = s.parked(&tax, 10).unwrap();
    let ids: Vec<_> = lot.iter().map(|(_, r)| r.receipt_id.as_str()).collect();
    assert_eq!(ids, ["tax-r1", "tax-r2", "tax-r3"], "oldest first");
    assert_eq!(lot[0].1, receipt(&tax, 1), "kept whole");
    assert!(lot.windows(2).all(|w| w[0].0 < w[1].0), "IDs increase");
    assert_eq!(s.parked(&tax, 2).unwrap().len(), 2, "limited");
    s.unpark(&tax, &[lot[0].0, lot[1].0]).unwrap();
    let left = s.parked(&tax, 10).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].1.receipt_id, "tax-r3");
    // Parked after a removal: still behind what is left.
    s.park(&tax, &[receipt(&tax, 4)]).unwrap();
    let left: Vec<_> = s
        .parked(&tax, 10)
        .unwrap()
        .into_iter()
        .map(|(_, r)| r.receipt_id)
        .collect();
    assert_eq!(left, ["tax-r3", "tax-r4"]);
    s.unpark(&post, &[s.parked(&post, 10).unwrap()[0].0])
        .unwrap();
    assert_eq!(
        s.parked_agencies().unwrap(),
        vec![(tax.clone(), 2)],
        "an emptied lot is not listed"
    );
    assert_eq!(s.parked(&post, 10).unwrap(), vec![]);
    // What operators see of a lot: its oldest receipt, read only.
    assert_eq!(
        s.oldest_parked(&tax).unwrap().map(|r| r.receipt_id),
        Some("tax-r3".to_owned())
    );
    assert_eq!(s.oldest_parked(&post).unwrap(), None);
    assert_eq!(s.parked(&tax, 10).unwrap().len(), 2, "nothing taken");
}

/// Records set aside are kept whole, oldest first, with IDs of their own.
pub(super) fn quarantined_records_are_kept_in_order(s: &dyn Store) {
    use crate::model::Quarantined;
    assert!(s.quarantined(10).unwrap().is_empty());
    let q = |i: u64| Quarantined {
        id: 0,
        at: t0() + Duration::seconds(i as i64),
        kind: "outbox_receipt".into(),
        key: i.to_string(),
        error: format!("outbox receipt {i}: EOF while parsing"),
        bytes_b64: "e3g=".into(),
        detail: String::new(),
    };
    for i in 1..=3 {
        s.quarantine(&q(i)).unwrap();
    }
    let got = s.quarantined(10).unwrap();
    assert_eq!(got.len(), 3);
    for (i, g) in got.iter().enumerate() {
        let want = q(i as u64 + 1);
        assert_eq!(
            (&g.key, &g.error, &g.bytes_b64, g.at),
            (&want.key, &want.error, &want.bytes_b64, want.at)
        );
    }
    assert!(got.windows(2).all(|w| w[0].id < w[1].id), "IDs increase");
    assert_eq!(s.quarantined(2).unwrap().len(), 2, "limited");
}
