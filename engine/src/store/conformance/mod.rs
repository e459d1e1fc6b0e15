//! The conformance suite every [`Store`] backend must pass: one file of
//! cases per aggregate ([`NoticeStore`], [`DeliveryStore`],
//! [`ProfileStore`], [`AuditStore`]), the shared fixtures here.
//!
//! A backend's test calls [`run_all`] with a factory that opens a fresh,
//! empty store for each case (the second value it returns is kept alive
//! for the case and dropped after: a temporary directory, a keyspace
//! guard). Each case panics with a message naming what broke.

mod audit;
mod delivery;
mod notices;
mod profiles;

use std::any::Any;

use chrono::{Duration, TimeZone, Utc};
use karpoosheh_schemas::{
    AgencyId, DeadLetter, LifeEvent, MailboxId, MailboxProfile, MailboxStatus, Notice, NoticeKind,
    Problem, Reason, SourcePosition, TrackingCode, SCHEMA_VERSION,
};

use super::Store;
use crate::model::{Entry, NewNotice, NewRejection, Outcome};

/// Opens a fresh store for the named case.
pub type Factory<'a> = dyn FnMut(&str) -> (Box<dyn Store>, Box<dyn Any>) + 'a;

/// Runs every case.
pub fn run_all(factory: &mut Factory<'_>) {
    type Case = (&'static str, fn(&dyn Store));
    let cases: &[Case] = &[
        ("stores_and_reads_back", notices::stores_and_reads_back),
        (
            "mailbox_is_newest_first_and_pages",
            notices::mailbox_is_newest_first_and_pages,
        ),
        ("mailboxes_are_isolated", notices::mailboxes_are_isolated),
        (
            "exact_resend_is_absorbed",
            notices::exact_resend_is_absorbed,
        ),
        (
            "a_redelivered_record_is_known_by_its_source_position",
            notices::a_redelivered_record_is_known_by_its_source_position,
        ),
        (
            "conflicting_resend_keeps_original",
            notices::conflicting_resend_keeps_original,
        ),
        (
            "duplicates_within_one_batch",
            notices::duplicates_within_one_batch,
        ),
        (
            "a_redelivered_rejection_is_kept_once",
            notices::a_redelivered_rejection_is_kept_once,
        ),
        (
            "the_accepted_out_mark_is_kept",
            notices::the_accepted_out_mark_is_kept,
        ),
        (
            "same_reference_different_agencies",
            notices::same_reference_different_agencies,
        ),
        (
            "rejections_are_kept_per_agency",
            notices::rejections_are_kept_per_agency,
        ),
        (
            "an_agencys_references_are_listed_page_by_page",
            notices::an_agencys_references_are_listed_page_by_page,
        ),
        ("dead_letters_are_kept", notices::dead_letters_are_kept),
        (
            "last_tracking_code_is_the_highest",
            notices::last_tracking_code_is_the_highest,
        ),
        (
            "empty_store_answers_empty",
            notices::empty_store_answers_empty,
        ),
        (
            "a_stored_notice_starts_its_follow_up",
            delivery::a_stored_notice_starts_its_follow_up,
        ),
        (
            "delivery_writes_move_timers_and_fill_the_outbox",
            delivery::delivery_writes_move_timers_and_fill_the_outbox,
        ),
        (
            "expiry_purge_and_record_deletion",
            delivery::expiry_purge_and_record_deletion,
        ),
        (
            "a_replay_never_adds_to_a_chain",
            delivery::a_replay_never_adds_to_a_chain,
        ),
        (
            "parked_receipts_wait_per_agency_in_order",
            delivery::parked_receipts_wait_per_agency_in_order,
        ),
        (
            "quarantined_records_are_kept_in_order",
            delivery::quarantined_records_are_kept_in_order,
        ),
        (
            "profiles_are_kept_newest_wins",
            profiles::profiles_are_kept_newest_wins,
        ),
        ("profiles_are_deleted", profiles::profiles_are_deleted),
        (
            "a_timer_written_behind_a_cursor_comes_back",
            delivery::a_timer_written_behind_a_cursor_comes_back,
        ),
        (
            "each_lane_keeps_its_timers_apart",
            delivery::each_lane_keeps_its_timers_apart,
        ),
        (
            "a_notice_keeps_the_queue_it_was_stored_in",
            delivery::a_notice_keeps_the_queue_it_was_stored_in,
        ),
        (
            "events_form_a_hash_chain_kept_with_the_record",
            delivery::events_form_a_hash_chain_kept_with_the_record,
        ),
        (
            "the_audit_log_is_appended_read_back_and_indexed",
            audit::the_audit_log_is_appended_read_back_and_indexed,
        ),
        (
            "traffic_data_is_kept_per_mailbox_newest_first",
            audit::traffic_data_is_kept_per_mailbox_newest_first,
        ),
    ];
    for (name, case) in cases {
        let (store, guard) = factory(name);
        case(store.as_ref());
        drop(store);
        drop(guard);
    }
}

/// A buffered embedded store in `dir`: the real store for the unit tests
/// of other modules (the conformance cases get theirs from each backend's
/// factory).
pub fn fjall_store(dir: &std::path::Path) -> std::sync::Arc<dyn Store> {
    let mut cfg = crate::store::FjallStoreConfig::new(dir);
    cfg.durability = crate::store::Durability::Buffered;
    std::sync::Arc::new(crate::store::FjallStore::open(cfg).expect("open the test store"))
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
        priority: karpoosheh_schemas::Priority::Normal,
        deliver_at: None,
        respond_by: None,
        queue: None,
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

/// A receipt for the queues' cases (outbox, parking lot): `<agency>-r<i>`,
/// for reference `ref-<i>`, a confirmation of one code per `i`.
pub fn receipt(agency: &str, i: u8) -> karpoosheh_schemas::Receipt {
    karpoosheh_schemas::Receipt::new(
        format!("{agency}-r{i}"),
        AgencyId::parse(agency).unwrap(),
        Some(format!("ref-{i}")),
        t0(),
        karpoosheh_schemas::ReceiptEvent::Confirmed {
            tracking_code: TrackingCode::from_u64(1 << 40 | u64::from(i)),
            count: 1,
        },
    )
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
        delegations: vec![],
        updated_at: t0() + Duration::minutes(minutes),
    }
}
