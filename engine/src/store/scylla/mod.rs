//! The ScyllaDB store: the same [`Store`] contract as the embedded store,
//! on a cluster shared by every engine node, replicated across the main,
//! mirror and disaster data centres.
//!
//! The data model (one table per query, bounded partitions, TTLs, where
//! lightweight transactions are used and why) is in
//! `schemas/cql/001_init.cql` and docs/storage.md. The driver is async;
//! this backend owns a small tokio runtime and every [`Store`] call blocks
//! on it, so the engine's threads stay as they are.
//!
//! How it keeps the contract without multi-partition atomicity:
//! - **Idempotency first.** A notice's reference is claimed with
//!   `IF NOT EXISTS` before anything else is written. A claim already held
//!   with the same tracking code is this very entry being retried after a
//!   failed write: everything is written again (all writes are upserts of
//!   the same values). A claim held by another code with the same content
//!   is a re-send; if the original's writes never finished (a crash
//!   between the claim and the rows), they are completed from the re-send.
//! - **Ordered follow-up writes.** A [`DeliveryWrite`] is applied in
//!   phases so that a write that stops half-way is redone, never lost:
//!   receipts and new timers first, then the record, then confirmation
//!   IDs, removals last. A retry repeats at most a round (same idempotency
//!   key) or a receipt (same receipt ID).
//! - **One owner per notice.** The node that issued a tracking code (it
//!   is in the code) runs its timers, applies its confirmations and
//!   publishes its receipts: timers and the outbox are partitioned by node.
//!   The node lease ([`lease`]) keeps two engines off one node ID.
//! - **Queues read from cursors.** Timers and the outbox are read forward
//!   from where the last read stopped, by hour partition, so the
//!   tombstones of handled entries are not read again.

mod access;
mod audit;
mod config;
mod delivery;
mod lease;
mod notices;
mod parking;
mod profiles;
mod quarantine;
mod rows;
mod schema;
mod size;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use karpoosheh_schemas::{
    AgencyId, DeadLetter, MailboxId, MailboxProfile, Problem, Reason, Receipt, TrackingCode,
};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::deserialize::row::DeserializeRow;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::retry::DefaultRetryPolicy;
use scylla::policies::speculative_execution::SimpleSpeculativeExecutionPolicy;
use scylla::response::query_result::QueryResult;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};

use crate::evidence::chain;
use crate::internal_events::{LeaseFailed, StoreRepaired};
use crate::model::{
    DeliveryRecord, DeliveryWrite, Entry, MailboxPage, NewRejection, Outcome, StoredNotice,
    StoredRejection, Timer, TimerKind, TIMER_SLOTS,
};

use self::lease::{Lease, LeaseStatements};
use self::rows::{
    bucket_of, code_col, code_of, day_of, hour_of, hour_start_ms, id_ms, month_of, next_id,
    ttl_until, MailboxRow, NoticeRow, NoticeValues, DEAD_LETTER_DAYS, TRAFFIC_BUCKETS,
    UNATTRIBUTED,
};
use super::{DeliveryStore, NoticeStore, ProfileStore, StoreError, StoreStats};

pub use self::config::{ConsistencyName, ScyllaConfig, ScyllaTls, SerialName};
pub use self::schema::MigrationReport;

/// Errors of the ScyllaDB backend, with what to do about them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScyllaError {
    #[error("cannot connect to ScyllaDB at {nodes}: {message} (check scylla.nodes, the network, and scylla.tls / credentials)")]
    Connect { nodes: String, message: String },
    #[error("ScyllaDB request failed while {what}: {message} (retried; check the cluster's health and scylla.request_timeout)")]
    Request { what: String, message: String },
    #[error("unexpected result while reading {what}: {message}")]
    Rows { what: String, message: String },
    #[error("ScyllaDB schema: {0}")]
    Schema(String),
    #[error("ScyllaDB TLS setup failed: {0} (check scylla.tls.ca_file, cert_file and key_file)")]
    Tls(String),
    #[error("node_id {node} is in use by another running engine on {host}: give every engine node its own node_id")]
    LeaseHeld { node: i16, host: String },
    #[error("this store was opened read-only (an inspection command): writes are refused")]
    ReadOnly,
    #[error("this engine lost its lease on node_id {node} (another engine took it, or the cluster was unreachable for too long): it stops writing; restart it once the node_id is its own")]
    LeaseLost { node: i16 },
}

impl ScyllaError {
    pub(crate) fn request<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> ScyllaError + '_ {
        move |e| ScyllaError::Request {
            what: what.to_owned(),
            message: e.to_string(),
        }
    }
    pub(crate) fn rows<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> ScyllaError + '_ {
        move |e| ScyllaError::Rows {
            what: what.to_owned(),
            message: e.to_string(),
        }
    }
}

/// Slack added to notice TTLs, so the engine's own expiry timer normally
/// removes a notice (and tells the agency) before the TTL does.
const NOTICE_TTL_SLACK_SECS: i64 = 7 * 24 * 3600;
/// Statements of one unlogged (single-partition) batch.
const BATCH_MAX: usize = 100;
/// Rows of `node_state`.
const LAST_TRACKING: &str = "last_tracking_code";
const LAST_TRAFFIC_ID: &str = "last_traffic_id";
const OUTBOX_LOW_WATER: &str = "outbox_low_water";
const ACCEPTED_OUT: &str = "accepted_out";

/// Prepared statements, one per query; the CQL is also what the unit
/// tests check.
struct Statements {
    claim: PreparedStatement,
    source_put: PreparedStatement,
    source_get: PreparedStatement,
    source_delete: PreparedStatement,
    kept_put: PreparedStatement,
    kept_get: PreparedStatement,
    rejection_has: PreparedStatement,
    dead_letter_has: PreparedStatement,
    ref_get: PreparedStatement,
    refs_scan: PreparedStatement,
    ref_delete: PreparedStatement,
    notice_put: PreparedStatement,
    notice_get: PreparedStatement,
    notice_delete: PreparedStatement,
    mailbox_put: PreparedStatement,
    mailbox_delete: PreparedStatement,
    mailbox_page: PreparedStatement,
    mailbox_page_before: PreparedStatement,
    month_put: PreparedStatement,
    months: PreparedStatement,
    months_before: PreparedStatement,
    delivery_put: PreparedStatement,
    delivery_get: PreparedStatement,
    delivery_delete: PreparedStatement,
    event_put: PreparedStatement,
    events_get: PreparedStatement,
    events_delete: PreparedStatement,
    timer_put: PreparedStatement,
    timer_delete: PreparedStatement,
    timers_due: PreparedStatement,
    timers_any: PreparedStatement,
    timer_hour_put: PreparedStatement,
    timer_hours: PreparedStatement,
    timer_hour_delete: PreparedStatement,
    outbox_last: PreparedStatement,
    outbox_put: PreparedStatement,
    outbox_read: PreparedStatement,
    outbox_delete: PreparedStatement,
    parked_put: PreparedStatement,
    parked_last: PreparedStatement,
    parked_read: PreparedStatement,
    parked_delete: PreparedStatement,
    parked_agency_put: PreparedStatement,
    parked_agencies: PreparedStatement,
    parked_count: PreparedStatement,
    quarantine_put: PreparedStatement,
    quarantine_read: PreparedStatement,
    confirmation_put: PreparedStatement,
    confirmation_get: PreparedStatement,
    confirmation_delete: PreparedStatement,
    awaiting_put: PreparedStatement,
    awaiting_delete: PreparedStatement,
    awaiting_list: PreparedStatement,
    profile_put: PreparedStatement,
    profile_delete: PreparedStatement,
    profile_get: PreparedStatement,
    rejection_put: PreparedStatement,
    rejection_read: PreparedStatement,
    rejection_latest: PreparedStatement,
    dead_letter_put: PreparedStatement,
    dead_letter_read: PreparedStatement,
    day_put: PreparedStatement,
    days: PreparedStatement,
    state_put: PreparedStatement,
    state_get: PreparedStatement,
    audit_put: PreparedStatement,
    audit_leaves_put: PreparedStatement,
    audit_event_put: PreparedStatement,
    audit_read: PreparedStatement,
    audit_get: PreparedStatement,
    audit_leaves_get: PreparedStatement,
    audit_event_get: PreparedStatement,
    audit_head_put: PreparedStatement,
    audit_latest_put: PreparedStatement,
    audit_latest_get: PreparedStatement,
    audit_published_put: PreparedStatement,
    audit_published_get: PreparedStatement,
    access_put: PreparedStatement,
    access_read: PreparedStatement,
    lease: LeaseStatements,
}

/// Every statement's CQL with whether a retry may repeat it: plain
/// upserts and deletes of fixed values are idempotent; lightweight
/// transactions are not (a retried claim could find its own row).
const CQL: &[(&str, &str, bool)] = &[
    ("claim", "INSERT INTO agency_refs (agency, reference, tracking_code, content_hash, accepted_at) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?", false),
    ("source_put", "INSERT INTO reference_sources (agency, reference, source) VALUES (?, ?, ?) USING TTL ?", true),
    ("source_get", "SELECT source FROM reference_sources WHERE agency = ? AND reference = ?", true),
    ("source_delete", "DELETE FROM reference_sources WHERE agency = ? AND reference = ?", true),
    ("kept_put", "INSERT INTO kept_sources (source, fingerprint, id) VALUES (?, ?, ?) USING TTL ?", true),
    ("kept_get", "SELECT fingerprint, id FROM kept_sources WHERE source = ?", true),
    ("rejection_has", "SELECT id FROM rejections WHERE agency = ? AND day = ? AND bucket = ? AND id = ?", true),
    ("dead_letter_has", "SELECT id FROM dead_letters WHERE day = ? AND bucket = ? AND id = ?", true),
    ("ref_get", "SELECT tracking_code, content_hash, accepted_at FROM agency_refs WHERE agency = ? AND reference = ?", true),
    ("refs_scan", "SELECT token(agency, reference), agency, reference, tracking_code FROM agency_refs WHERE token(agency, reference) > ? LIMIT ?", true),
    ("ref_delete", "DELETE FROM agency_refs WHERE agency = ? AND reference = ? IF tracking_code = ?", false),
    ("notice_put", "INSERT INTO notices (tracking_code, schema_version, agency, reference, mailbox_id, kind, title, body, attachments, min_access_level, life_event, expires_at, sent_at, batch_id, accepted_at, content_hash) VALUES (:tracking_code, :schema_version, :agency, :reference, :mailbox_id, :kind, :title, :body, :attachments, :min_access_level, :life_event, :expires_at, :sent_at, :batch_id, :accepted_at, :content_hash) USING TTL :ttl", true),
    ("notice_get", "SELECT tracking_code, schema_version, agency, reference, mailbox_id, kind, title, body, attachments, min_access_level, life_event, expires_at, sent_at, batch_id, accepted_at, content_hash FROM notices WHERE tracking_code = ?", true),
    ("notice_delete", "DELETE FROM notices WHERE tracking_code = ?", true),
    ("mailbox_put", "INSERT INTO mailbox_notices (mailbox_id, month, tracking_code, agency, kind, title, life_event, min_access_level, accepted_at, expires_at) VALUES (:mailbox_id, :month, :tracking_code, :agency, :kind, :title, :life_event, :min_access_level, :accepted_at, :expires_at) USING TTL :ttl", true),
    ("mailbox_delete", "DELETE FROM mailbox_notices WHERE mailbox_id = ? AND month = ? AND tracking_code = ?", true),
    ("mailbox_page", "SELECT tracking_code FROM mailbox_notices WHERE mailbox_id = ? AND month = ? LIMIT ?", true),
    ("mailbox_page_before", "SELECT tracking_code FROM mailbox_notices WHERE mailbox_id = ? AND month = ? AND tracking_code < ? LIMIT ?", true),
    ("month_put", "INSERT INTO mailbox_months (mailbox_id, month) VALUES (?, ?)", true),
    ("months", "SELECT month FROM mailbox_months WHERE mailbox_id = ?", true),
    ("months_before", "SELECT month FROM mailbox_months WHERE mailbox_id = ? AND month <= ?", true),
    ("delivery_put", "INSERT INTO deliveries (tracking_code, state, record) VALUES (?, ?, ?) USING TTL ?", true),
    ("delivery_get", "SELECT record FROM deliveries WHERE tracking_code = ?", true),
    ("delivery_delete", "DELETE FROM deliveries WHERE tracking_code = ?", true),
    ("audit_put", "INSERT INTO audit_log (log, bucket, idx, kid, signed_at, root, size, signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", true),
    ("audit_leaves_put", "INSERT INTO audit_leaves (log, idx, leaves) VALUES (?, ?, ?)", true),
    ("audit_event_put", "INSERT INTO audit_events (tracking_code, seq, log, idx) VALUES (?, ?, ?, ?)", true),
    ("audit_read", "SELECT idx, kid, signed_at, root, size, signature FROM audit_log WHERE log = ? AND bucket = ? AND idx >= ? LIMIT ?", true),
    ("audit_get", "SELECT idx, kid, signed_at, root, size, signature FROM audit_log WHERE log = ? AND bucket = ? AND idx = ?", true),
    ("audit_leaves_get", "SELECT leaves FROM audit_leaves WHERE log = ? AND idx = ?", true),
    ("audit_event_get", "SELECT log, idx FROM audit_events WHERE tracking_code = ? AND seq = ?", true),
    ("audit_head_put", "INSERT INTO audit_heads (log, bucket, size, head) VALUES (?, ?, ?, ?)", true),
    ("audit_latest_put", "INSERT INTO audit_latest (log, head) VALUES (?, ?) USING TIMESTAMP ?", true),
    ("audit_latest_get", "SELECT head FROM audit_latest WHERE log = ?", true),
    ("audit_published_put", "UPDATE audit_latest USING TIMESTAMP ? SET published = ? WHERE log = ?", true),
    ("audit_published_get", "SELECT published FROM audit_latest WHERE log = ?", true),
    ("access_put", "INSERT INTO access_log (mailbox_id, at, seq, record) VALUES (?, ?, ?, ?) USING TTL ?", true),
    ("access_read", "SELECT record FROM access_log WHERE mailbox_id = ? LIMIT ?", true),
    ("event_put", "INSERT INTO notice_events (tracking_code, seq, prev, hash, event) VALUES (?, ?, ?, ?, ?) USING TTL ?", true),
    ("events_get", "SELECT seq, prev, hash, event FROM notice_events WHERE tracking_code = ?", true),
    ("events_delete", "DELETE FROM notice_events WHERE tracking_code = ?", true),
    ("timer_put", "INSERT INTO timers (node_id, shard, hour, due_ms, tracking_code, kind) VALUES (?, ?, ?, ?, ?, ?)", true),
    ("timer_delete", "DELETE FROM timers WHERE node_id = ? AND shard = ? AND hour = ? AND due_ms = ? AND tracking_code = ? AND kind = ?", true),
    ("timers_due", "SELECT due_ms, tracking_code, kind FROM timers WHERE node_id = ? AND shard = ? AND hour = ? AND due_ms >= ? AND due_ms <= ? LIMIT ?", true),
    ("timers_any", "SELECT due_ms FROM timers WHERE node_id = ? AND shard = ? AND hour = ? LIMIT 1", true),
    ("timer_hour_put", "INSERT INTO timer_hours (node_id, shard, hour) VALUES (?, ?, ?)", true),
    ("timer_hours", "SELECT hour FROM timer_hours WHERE node_id = ? AND shard = ? AND hour >= ? AND hour <= ? LIMIT ?", true),
    ("timer_hour_delete", "DELETE FROM timer_hours WHERE node_id = ? AND shard = ? AND hour = ?", true),
    ("outbox_last", "SELECT id FROM outbox WHERE node_id = ? AND hour = ? ORDER BY id DESC LIMIT 1", true),
    ("outbox_put", "INSERT INTO outbox (node_id, hour, id, receipt) VALUES (?, ?, ?, ?)", true),
    ("outbox_read", "SELECT id, receipt FROM outbox WHERE node_id = ? AND hour = ? AND id > ? AND id < ? LIMIT ?", true),
    ("outbox_delete", "DELETE FROM outbox WHERE node_id = ? AND hour = ? AND id = ?", true),
    ("parked_put", "INSERT INTO parked_receipts (node_id, agency, id, receipt) VALUES (?, ?, ?, ?)", true),
    ("parked_last", "SELECT id FROM parked_receipts WHERE node_id = ? AND agency = ? ORDER BY id DESC LIMIT 1", true),
    ("parked_read", "SELECT id, receipt FROM parked_receipts WHERE node_id = ? AND agency = ? LIMIT ?", true),
    ("parked_delete", "DELETE FROM parked_receipts WHERE node_id = ? AND agency = ? AND id = ?", true),
    ("parked_agency_put", "INSERT INTO parked_agencies (node_id, agency) VALUES (?, ?)", true),
    ("parked_agencies", "SELECT agency FROM parked_agencies WHERE node_id = ?", true),
    ("parked_count", "SELECT count(*) FROM parked_receipts WHERE node_id = ? AND agency = ?", true),
    ("quarantine_put", "INSERT INTO quarantine (node_id, id, entry) VALUES (?, ?, ?)", true),
    ("quarantine_read", "SELECT entry FROM quarantine WHERE node_id = ? LIMIT ?", true),
    ("confirmation_put", "INSERT INTO confirmations (confirmation_id, tracking_code) VALUES (?, ?) USING TTL ?", true),
    ("confirmation_get", "SELECT tracking_code FROM confirmations WHERE confirmation_id = ?", true),
    ("confirmation_delete", "DELETE FROM confirmations WHERE confirmation_id = ?", true),
    ("awaiting_put", "INSERT INTO awaiting (mailbox_id, node_id, tracking_code) VALUES (?, ?, ?) USING TTL ?", true),
    ("awaiting_delete", "DELETE FROM awaiting WHERE mailbox_id = ? AND node_id = ? AND tracking_code = ?", true),
    ("awaiting_list", "SELECT tracking_code FROM awaiting WHERE mailbox_id = ? AND node_id = ? LIMIT ?", true),
    ("profile_put", "INSERT INTO profiles (mailbox_id, updated_us, profile) VALUES (?, ?, ?) USING TIMESTAMP ?", true),
    ("profile_delete", "DELETE FROM profiles USING TIMESTAMP ? WHERE mailbox_id = ?", true),
    ("profile_get", "SELECT profile, updated_us, WRITETIME(profile) FROM profiles WHERE mailbox_id = ?", true),
    ("rejection_put", "INSERT INTO rejections (agency, day, bucket, id, at, reference, reasons, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?", true),
    ("rejection_read", "SELECT id, record FROM rejections WHERE agency = ? AND day = ? AND bucket = ? AND id > ? LIMIT ?", true),
    ("rejection_latest", "SELECT id, record FROM rejections WHERE agency = ? AND day = ? AND bucket = ? ORDER BY id DESC LIMIT ?", true),
    ("dead_letter_put", "INSERT INTO dead_letters (day, bucket, id, at, agency, reasons, record) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?", true),
    ("dead_letter_read", "SELECT id, record FROM dead_letters WHERE day = ? AND bucket = ? AND id > ? LIMIT ?", true),
    ("day_put", "INSERT INTO traffic_days (kind, agency, day) VALUES (?, ?, ?) USING TTL ?", true),
    ("days", "SELECT day FROM traffic_days WHERE kind = ? AND agency = ? AND day >= ?", true),
    ("state_put", "INSERT INTO node_state (node_id, name, value) VALUES (?, ?, ?)", true),
    ("state_get", "SELECT name, value FROM node_state WHERE node_id = ?", true),
    ("lease_take", LeaseStatements::TAKE, false),
    ("lease_renew", LeaseStatements::RENEW, false),
    ("lease_release", LeaseStatements::RELEASE, false),
];

async fn prepare_all(session: &Session) -> Result<Statements, ScyllaError> {
    let mut m: HashMap<&str, PreparedStatement> = HashMap::new();
    for (name, cql, idempotent) in CQL {
        let mut p = session.prepare(*cql).await.map_err(|e| {
            ScyllaError::Schema(format!("preparing {name}: {e} (is the schema migrated?)"))
        })?;
        p.set_is_idempotent(*idempotent);
        if name.starts_with("lease_") {
            // A node ID is one engine's across every data centre, whatever
            // scylla.serial_consistency says for the reference claims.
            p.set_serial_consistency(Some(scylla::statement::SerialConsistency::Serial));
        }
        m.insert(name, p);
    }
    let mut take = |n: &str| m.remove(n).expect("every statement is in CQL");
    Ok(Statements {
        claim: take("claim"),
        source_put: take("source_put"),
        source_get: take("source_get"),
        source_delete: take("source_delete"),
        kept_put: take("kept_put"),
        kept_get: take("kept_get"),
        rejection_has: take("rejection_has"),
        dead_letter_has: take("dead_letter_has"),
        ref_get: take("ref_get"),
        refs_scan: take("refs_scan"),
        ref_delete: take("ref_delete"),
        notice_put: take("notice_put"),
        notice_get: take("notice_get"),
        notice_delete: take("notice_delete"),
        mailbox_put: take("mailbox_put"),
        mailbox_delete: take("mailbox_delete"),
        mailbox_page: take("mailbox_page"),
        mailbox_page_before: take("mailbox_page_before"),
        month_put: take("month_put"),
        months: take("months"),
        months_before: take("months_before"),
        delivery_put: take("delivery_put"),
        delivery_get: take("delivery_get"),
        delivery_delete: take("delivery_delete"),
        event_put: take("event_put"),
        events_get: take("events_get"),
        events_delete: take("events_delete"),
        timer_put: take("timer_put"),
        timer_delete: take("timer_delete"),
        timers_due: take("timers_due"),
        timers_any: take("timers_any"),
        timer_hour_put: take("timer_hour_put"),
        timer_hours: take("timer_hours"),
        timer_hour_delete: take("timer_hour_delete"),
        outbox_last: take("outbox_last"),
        outbox_put: take("outbox_put"),
        outbox_read: take("outbox_read"),
        outbox_delete: take("outbox_delete"),
        parked_put: take("parked_put"),
        parked_last: take("parked_last"),
        parked_read: take("parked_read"),
        parked_delete: take("parked_delete"),
        parked_agency_put: take("parked_agency_put"),
        parked_agencies: take("parked_agencies"),
        parked_count: take("parked_count"),
        quarantine_put: take("quarantine_put"),
        quarantine_read: take("quarantine_read"),
        confirmation_put: take("confirmation_put"),
        confirmation_get: take("confirmation_get"),
        confirmation_delete: take("confirmation_delete"),
        awaiting_put: take("awaiting_put"),
        awaiting_delete: take("awaiting_delete"),
        awaiting_list: take("awaiting_list"),
        profile_put: take("profile_put"),
        profile_delete: take("profile_delete"),
        profile_get: take("profile_get"),
        rejection_put: take("rejection_put"),
        rejection_read: take("rejection_read"),
        rejection_latest: take("rejection_latest"),
        dead_letter_put: take("dead_letter_put"),
        dead_letter_read: take("dead_letter_read"),
        day_put: take("day_put"),
        days: take("days"),
        state_put: take("state_put"),
        state_get: take("state_get"),
        audit_put: take("audit_put"),
        audit_leaves_put: take("audit_leaves_put"),
        audit_event_put: take("audit_event_put"),
        audit_read: take("audit_read"),
        audit_get: take("audit_get"),
        audit_leaves_get: take("audit_leaves_get"),
        audit_event_get: take("audit_event_get"),
        audit_head_put: take("audit_head_put"),
        audit_latest_put: take("audit_latest_put"),
        audit_latest_get: take("audit_latest_get"),
        audit_published_put: take("audit_published_put"),
        audit_published_get: take("audit_published_get"),
        access_put: take("access_put"),
        access_read: take("access_read"),
        lease: LeaseStatements {
            take: take("lease_take"),
            renew: take("lease_renew"),
            release: take("lease_release"),
        },
    })
}

/// Rows of a result, typed.
fn collect<R>(res: QueryResult, what: &str) -> Result<Vec<R>, ScyllaError>
where
    R: for<'f> DeserializeRow<'f, 'f>,
{
    let rows = res.into_rows_result().map_err(ScyllaError::rows(what))?;
    rows.rows::<R>()
        .map_err(ScyllaError::rows(what))?
        .collect::<Result<Vec<R>, _>>()
        .map_err(ScyllaError::rows(what))
}

/// A lightweight transaction's `[applied]` and the current row's columns
/// by name (ScyllaDB returns them whether or not it applied).
pub(crate) fn lwt_outcome(
    res: QueryResult,
    what: &str,
) -> Result<(bool, HashMap<String, CqlValue>), ScyllaError> {
    let rows = res.into_rows_result().map_err(ScyllaError::rows(what))?;
    let names: Vec<String> = rows
        .column_specs()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    let row = rows
        .maybe_first_row::<Row>()
        .map_err(ScyllaError::rows(what))?
        .ok_or_else(|| ScyllaError::Rows {
            what: what.to_owned(),
            message: "a lightweight transaction returned no row".into(),
        })?;
    let mut cols = HashMap::new();
    for (name, v) in names.into_iter().zip(row.columns) {
        if let Some(v) = v {
            cols.insert(name, v);
        }
    }
    let applied = cols
        .get("[applied]")
        .and_then(CqlValue::as_boolean)
        .ok_or_else(|| ScyllaError::Rows {
            what: what.to_owned(),
            message: "no [applied] column".into(),
        })?;
    Ok((applied, cols))
}

/// The outbox's read state: IDs below `horizon()` are durable, everything
/// up to `removed_upto` has been published and removed.
struct OutboxState {
    last_id: u64,
    in_flight: BTreeSet<u64>,
    removed_upto: u64,
    low_water_hour: i32,
}

impl OutboxState {
    /// IDs below it are durable or never issued: an ID in flight, or the
    /// next one to issue (every later ID is higher).
    fn horizon(&self) -> u64 {
        self.in_flight
            .first()
            .copied()
            .unwrap_or(self.last_id.saturating_add(1))
    }
}

/// Which traffic records a read wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrafficRead {
    /// The oldest after this ID (0: from the first).
    After(u64),
    /// The newest first (rejections only).
    Newest,
}

struct WriterState {
    last_tracking: Option<u64>,
    last_traffic_id: u64,
    /// (kind, agency, day) already in `traffic_days` by this process.
    days: HashSet<(&'static str, String, NaiveDate)>,
    /// The traffic IDs of a failed write, by a fingerprint of its
    /// entries: the pipeline retries the same entries, which then keep
    /// their IDs instead of leaving copies of their rejections.
    failed: Option<(u64, Vec<u64>)>,
}

/// A fingerprint of a write's entries (their source positions and
/// tracking codes), to recognise its retry.
fn fingerprint(entries: &[Entry]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    entries.len().hash(&mut h);
    for e in entries {
        match e {
            Entry::Notice(n) => {
                n.tracking_code.as_u64().hash(&mut h);
                format!("{:?}", n.position).hash(&mut h);
            }
            Entry::Rejection(r) => format!("{:?}{:?}", r.position, r.reference).hash(&mut h),
            Entry::DeadLetter(d) => format!("{:?}{}", d.source, d.payload_size).hash(&mut h),
        }
    }
    h.finish()
}

/// What a timer write needs to know about hours and scans, per process.
struct TimerState {
    /// (node, shard, hour) already in `timer_hours`.
    hours: HashSet<(i16, i8, i32)>,
    /// Per timer slot of this node (the `shard` column), the earliest due
    /// time written since the last `due_timers` of that slot (`i64::MAX`:
    /// none; `i64::MIN` at open, so the first scan reads the whole slot).
    behind: [i64; TIMER_SLOTS as usize],
}

/// Tuning the backend takes from the engine's configuration.
#[derive(Debug, Clone)]
pub struct ScyllaStoreConfig {
    pub scylla: ScyllaConfig,
    /// This engine's node ID (`node_id`): owner of its timers and outbox.
    pub node_id: u16,
    /// How long delivery records outlive their notice
    /// (`delivery.record_retention`).
    pub record_retention: Duration,
    /// Read only: no node lease is taken and every write is refused (the
    /// inspection commands, beside a live engine of the same node ID).
    pub read_only: bool,
}

/// The ScyllaDB mailbox store.
pub struct ScyllaStore {
    rt: tokio::runtime::Runtime,
    session: Arc<Session>,
    st: Statements,
    node: i16,
    concurrency: usize,
    record_retention_secs: i64,
    traffic_ttl: i32,
    keyspace: String,
    writer: tokio::sync::Mutex<WriterState>,
    outbox: Mutex<OutboxState>,
    timer_state: Mutex<TimerState>,
    /// Timer writes hold it shared while they add hours to `timer_hours`
    /// and write into them; removing an empty hour from the index holds it
    /// exclusively, so an hour is never dropped under a timer being written.
    hours_lock: RwLock<()>,
    read_only: bool,
    /// `None` when opened read-only.
    lease: Option<Lease>,
    stop: Arc<AtomicBool>,
    /// The cluster's estimate of the keyspace on its disks (`size`).
    disk_bytes: Arc<std::sync::atomic::AtomicU64>,
}

/// Builds a session from the configuration (TLS, credentials, routing,
/// consistency), without a keyspace.
async fn connect(cfg: &ScyllaConfig) -> Result<Session, ScyllaError> {
    let mut lb = DefaultPolicy::builder()
        .token_aware(true)
        .permit_dc_failover(false);
    if !cfg.local_datacenter.is_empty() {
        lb = lb.prefer_datacenter(cfg.local_datacenter.clone());
    }
    let mut profile = ExecutionProfile::builder()
        .consistency(cfg.consistency.to_driver())
        .serial_consistency(Some(cfg.serial_consistency.to_driver()))
        .request_timeout(Some(cfg.request_timeout.0))
        .load_balancing_policy(lb.build())
        // Retries only what is marked idempotent (see CQL).
        .retry_policy(Arc::new(DefaultRetryPolicy::new()));
    if !cfg.speculative_delay.0.is_zero() {
        // The driver speculates only on idempotent statements.
        profile = profile.speculative_execution_policy(Some(Arc::new(
            SimpleSpeculativeExecutionPolicy {
                max_retry_count: cfg.speculative_max as usize,
                retry_interval: cfg.speculative_delay.0,
            },
        )));
    }
    let mut b = SessionBuilder::new()
        .known_nodes(&cfg.nodes)
        .connection_timeout(cfg.connect_timeout.0)
        // Client-side, increasing write timestamps: this process's
        // successive overwrites of one row (a delivery record, a mark) keep
        // their order whatever the coordinators' clocks say.
        .timestamp_generator(Arc::new(
            scylla::policies::timestamp_generator::MonotonicTimestampGenerator::new(),
        ))
        .default_execution_profile_handle(profile.build().into_handle());
    if !cfg.username.is_empty() {
        b = b.user(cfg.username.clone(), cfg.password.expose().to_owned());
    }
    if cfg.tls.enabled {
        b = b.tls_context(Some(tls_context(&cfg.tls)?));
    }
    b.build().await.map_err(|e| ScyllaError::Connect {
        nodes: cfg.nodes.join(","),
        message: e.to_string(),
    })
}

/// OpenSSL context for the cluster: the configured CA (or the system's),
/// an optional client certificate, and name checking as configured.
fn tls_context(t: &ScyllaTls) -> Result<scylla::client::session::OpenSsl010Config, ScyllaError> {
    use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
    let err = |e: openssl::error::ErrorStack| ScyllaError::Tls(e.to_string());
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(err)?;
    if t.ca_file.as_os_str().is_empty() {
        b.set_default_verify_paths().map_err(err)?;
    } else {
        b.set_ca_file(&t.ca_file)
            .map_err(|e| ScyllaError::Tls(format!("{}: {e}", t.ca_file.display())))?;
    }
    if !t.cert_file.as_os_str().is_empty() {
        b.set_certificate_chain_file(&t.cert_file)
            .map_err(|e| ScyllaError::Tls(format!("{}: {e}", t.cert_file.display())))?;
        b.set_private_key_file(&t.key_file, SslFiletype::PEM)
            .map_err(|e| ScyllaError::Tls(format!("{}: {e}", t.key_file.display())))?;
        b.check_private_key().map_err(|e| {
            ScyllaError::Tls(format!("the key does not match the certificate: {e}"))
        })?;
    }
    if t.verify_hostname {
        b.set_verify(SslVerifyMode::PEER);
    } else {
        // The driver asks OpenSSL to check the node's IP address; here only
        // that one check is waived, the chain to the CA is still verified.
        const IP_ADDRESS_MISMATCH: i32 = 64; // X509_V_ERR_IP_ADDRESS_MISMATCH
        b.set_verify_callback(SslVerifyMode::PEER, |ok, ctx| {
            ok || ctx.error().as_raw() == IP_ADDRESS_MISMATCH
        });
    }
    Ok(scylla::client::session::OpenSsl010Config::new(b))
}

fn runtime() -> Result<tokio::runtime::Runtime, StoreError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("scylla")
        .enable_all()
        .build()
        .map_err(StoreError::Io)
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// The keyspace and every migration as one CQL script:
/// `karpoosheh migrate --print`.
pub fn schema_cql(cfg: &ScyllaConfig) -> String {
    let mut out = format!(
        "-- Karpoosheh schema version {} for keyspace {}\n{};\nUSE {};\n{};\n",
        karpoosheh_schemas::cql_schema_version(),
        cfg.keyspace,
        schema::create_keyspace_cql(&cfg.keyspace, &cfg.replication),
        cfg.keyspace,
        schema::MIGRATIONS_TABLE
    );
    for m in karpoosheh_schemas::CQL_MIGRATIONS {
        out.push_str(&format!("\n-- migration {}\n", m.name));
        for st in karpoosheh_schemas::cql_statements(m.cql).unwrap_or_default() {
            out.push_str(&st);
            out.push_str(";\n");
        }
        out.push_str(&format!(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ({}, '{}', '{}', toTimestamp(now()));\n",
            m.version,
            m.name,
            karpoosheh_schemas::cql_checksum(m.cql)
        ));
    }
    out
}

/// Applies the schema migrations: `karpoosheh migrate`.
pub fn migrate(cfg: &ScyllaConfig) -> Result<MigrationReport, StoreError> {
    let rt = runtime()?;
    Ok(rt.block_on(async {
        let session = connect(cfg).await?;
        schema::migrate(&session, cfg).await
    })?)
}

impl ScyllaStore {
    /// Connects, checks (or, with `migrate_on_start`, applies) the schema,
    /// prepares every statement, takes the node lease and reads this
    /// node's high-water marks.
    pub fn open(cfg: ScyllaStoreConfig) -> Result<ScyllaStore, StoreError> {
        let rt = runtime()?;
        let node = cfg.node_id as i16;
        let read_only = cfg.read_only;
        let sc = cfg.scylla.clone();
        let (session, st, lease) = rt.block_on(async {
            let session = connect(&sc).await?;
            if sc.migrate_on_start {
                // Each migration applied is its own event (schema.rs).
                schema::migrate(&session, &sc).await?;
            } else {
                session
                    .use_keyspace(&sc.keyspace, false)
                    .await
                    .map_err(|e| {
                        ScyllaError::Schema(format!(
                            "keyspace {} is not usable ({e}): run `karpoosheh migrate` first",
                            sc.keyspace
                        ))
                    })?;
                schema::check(&session, &sc.keyspace).await?;
            }
            let st = prepare_all(&session).await?;
            let lease = if read_only {
                None
            } else {
                Some(Lease::take(&session, &st.lease, node, host_name()).await?)
            };
            Ok::<_, ScyllaError>((Arc::new(session), st, lease))
        })?;
        let store_state = rt.block_on(async {
            let res = session
                .execute_unpaged(&st.state_get, (node,))
                .await
                .map_err(ScyllaError::request("reading node state"))?;
            collect::<(String, i64)>(res, "node_state")
        })?;
        let state: HashMap<String, i64> = store_state.into_iter().collect();
        let now_ms = Utc::now().timestamp_millis();
        let outbox_lw = state
            .get(OUTBOX_LOW_WATER)
            .map(|&h| h as i32)
            .unwrap_or_else(|| hour_of(now_ms));
        // The first mark is written at once, so a restart never starts
        // after receipts this run writes before moving it.
        if !state.contains_key(OUTBOX_LOW_WATER) && !read_only {
            rt.block_on(
                session.execute_unpaged(&st.state_put, (node, OUTBOX_LOW_WATER, outbox_lw as i64)),
            )
            .map_err(ScyllaError::request("writing node state"))?;
        }
        // Outbox IDs continue above the highest one still waiting, even if
        // the clock went back since the last run.
        let last_outbox_id = rt.block_on(async {
            let mut h = hour_of(now_ms) + 1;
            while h >= outbox_lw {
                let res = session
                    .execute_unpaged(&st.outbox_last, (node, h))
                    .await
                    .map_err(ScyllaError::request("reading the outbox"))?;
                if let Some((id,)) = collect::<(i64,)>(res, "outbox")?.into_iter().next() {
                    return Ok::<_, ScyllaError>(id as u64);
                }
                h -= 1;
            }
            Ok(0)
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        if let Some(l) = &lease {
            l.spawn_renewal(&rt, session.clone(), st.lease.renew.clone(), stop.clone());
        }
        let disk_bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        if !read_only {
            size::spawn(
                &rt,
                session.clone(),
                cfg.scylla.keyspace.clone(),
                cfg.scylla
                    .replication
                    .values()
                    .map(|&rf| u64::from(rf))
                    .sum(),
                disk_bytes.clone(),
                stop.clone(),
            );
        }
        let traffic_ttl = cfg
            .scylla
            .traffic_retention
            .0
            .as_secs()
            .min(rows::MAX_TTL_SECS as u64) as i32;
        Ok(ScyllaStore {
            node,
            concurrency: cfg.scylla.max_concurrency,
            record_retention_secs: cfg.record_retention.as_secs().min(i64::MAX as u64) as i64,
            traffic_ttl,
            keyspace: cfg.scylla.keyspace.clone(),
            writer: tokio::sync::Mutex::new(WriterState {
                last_tracking: state.get(LAST_TRACKING).map(|&v| v as u64),
                last_traffic_id: state.get(LAST_TRAFFIC_ID).map_or(0, |&v| v as u64),
                days: HashSet::new(),
                failed: None,
            }),
            outbox: Mutex::new(OutboxState {
                last_id: last_outbox_id
                    .max(TrackingCode::from_parts(now_ms, node as u16, 0).as_u64()),
                in_flight: BTreeSet::new(),
                removed_upto: TrackingCode::from_parts(hour_start_ms(outbox_lw), 0, 0)
                    .as_u64()
                    .saturating_sub(1),
                low_water_hour: outbox_lw,
            }),
            timer_state: Mutex::new(TimerState {
                hours: HashSet::new(),
                behind: [i64::MIN; TIMER_SLOTS as usize],
            }),
            hours_lock: RwLock::new(()),
            read_only,
            lease,
            stop,
            disk_bytes,
            rt,
            session,
            st,
        })
    }

    /// The keyspace this store works in.
    pub fn keyspace(&self) -> &str {
        &self.keyspace
    }

    /// Runs futures with at most `max_concurrency` in flight, in order.
    async fn all<T, F>(&self, futs: impl IntoIterator<Item = F>) -> Result<Vec<T>, ScyllaError>
    where
        F: std::future::Future<Output = Result<T, ScyllaError>>,
    {
        stream::iter(futs)
            .buffered(self.concurrency)
            .try_collect()
            .await
    }

    async fn exec(
        &self,
        st: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
        what: &'static str,
    ) -> Result<QueryResult, ScyllaError> {
        self.session
            .execute_unpaged(st, values)
            .await
            .map_err(ScyllaError::request(what))
    }

    async fn put_event(
        &self,
        code: TrackingCode,
        e: &crate::model::StoredEvent,
        ttl: i32,
    ) -> Result<(), ScyllaError> {
        self.exec(
            &self.st.event_put,
            (
                code_col(code),
                e.seq as i32,
                e.prev.to_vec(),
                e.hash.to_vec(),
                String::from_utf8_lossy(&e.bytes).into_owned(),
                ttl,
            ),
            "appending a notice event",
        )
        .await
        .map(drop)
    }

    /// A notice's events: the stored rows, led by event 1 derived from the
    /// notice's row while that exists (see `chain::lacks_first`).
    async fn read_events(
        &self,
        code: TrackingCode,
    ) -> Result<Vec<crate::model::StoredEvent>, ScyllaError> {
        let mut out = self.stored_events(code).await?;
        if chain::lacks_first(&out) {
            if let Some(n) = self.read_notice(code).await? {
                out.insert(0, chain::first_event(&n));
            }
        }
        Ok(out)
    }

    /// A notice's event rows, as stored.
    async fn stored_events(
        &self,
        code: TrackingCode,
    ) -> Result<Vec<crate::model::StoredEvent>, ScyllaError> {
        let res = self
            .exec(
                &self.st.events_get,
                (code_col(code),),
                "reading notice events",
            )
            .await?;
        collect::<(i32, Vec<u8>, Vec<u8>, String)>(res, "notice_events")?
            .into_iter()
            .map(|(seq, prev, hash, event)| {
                let bad = |what: &str| ScyllaError::Rows {
                    what: "notice_events".into(),
                    message: format!("event {seq} of {code}: {what} is not 32 bytes"),
                };
                Ok(crate::model::StoredEvent {
                    seq: seq as u32,
                    prev: prev.try_into().map_err(|_| bad("prev"))?,
                    hash: hash.try_into().map_err(|_| bad("hash"))?,
                    bytes: event.into_bytes(),
                })
            })
            .collect()
    }

    async fn read_notice(
        &self,
        code: TrackingCode,
    ) -> Result<Option<crate::model::StoredNotice>, ScyllaError> {
        let res = self
            .exec(&self.st.notice_get, (code_col(code),), "reading a notice")
            .await?;
        match collect::<NoticeRow>(res, "notices")?.into_iter().next() {
            Some(row) => row.into_stored().map(Some).map_err(|e| ScyllaError::Rows {
                what: "notices".into(),
                message: e.to_string(),
            }),
            None => Ok(None),
        }
    }

    fn record_ttl(&self, rec: &DeliveryRecord, now: DateTime<Utc>) -> i32 {
        ttl_until(
            rec.expires_at,
            now,
            self.record_retention_secs
                .saturating_add(NOTICE_TTL_SLACK_SECS),
        )
    }

    /// Writes timers, grouped into one unlogged batch per partition,
    /// after making sure `timer_hours` lists every hour they go into. Holds
    /// the hours lock shared meanwhile (see `hours_lock`), then notes this
    /// node's timers for the next scan of their shard. Called once per
    /// store call: the lock is not reentrant.
    // The lock is held across the writes on purpose; the future runs
    // under `block_on` on the calling thread, and the I/O on the runtime's
    // workers, which never take it.
    #[allow(clippy::await_holding_lock)]
    async fn put_timers(&self, timers: &[Timer]) -> Result<(), ScyllaError> {
        if timers.is_empty() {
            return Ok(());
        }
        let _shared = self.hours_lock.read().unwrap_or_else(|p| p.into_inner());
        let key = |t: &Timer| (self.node_of(t.code), t.slot as i8, hour_of(t.due_ms));
        let missing: BTreeSet<(i16, i8, i32)> = {
            let ts = self.timer_state.lock().unwrap_or_else(|p| p.into_inner());
            timers
                .iter()
                .map(key)
                .filter(|k| !ts.hours.contains(k))
                .collect()
        };
        self.all(
            missing
                .iter()
                .map(|k| self.exec(&self.st.timer_hour_put, *k, "indexing a timer hour")),
        )
        .await?;
        self.timer_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .hours
            .extend(missing);
        let mut by_partition: BTreeMap<(i16, i8, i32), Vec<&Timer>> = BTreeMap::new();
        for t in timers {
            by_partition.entry(key(t)).or_default().push(t);
        }
        let mut batches = Vec::new();
        for ((node, shard, hour), ts) in by_partition {
            for chunk in ts.chunks(BATCH_MAX) {
                let mut b = Batch::new(BatchType::Unlogged);
                b.set_is_idempotent(true);
                let values: Vec<(i16, i8, i32, i64, i64, i8)> = chunk
                    .iter()
                    .map(|t| {
                        b.append_statement(self.st.timer_put.clone());
                        (node, shard, hour, t.due_ms, code_col(t.code), t.kind as i8)
                    })
                    .collect();
                batches.push((b, values));
            }
        }
        self.all(batches.iter().map(|(b, v)| async move {
            self.session
                .batch(b, v)
                .await
                .map_err(ScyllaError::request("writing timers"))
        }))
        .await?;
        // Durable now: the next scan of the shard looks back this far.
        let mut ts = self.timer_state.lock().unwrap_or_else(|p| p.into_inner());
        for t in timers.iter().filter(|t| self.node_of(t.code) == self.node) {
            let slot = &mut ts.behind[t.slot as usize];
            *slot = (*slot).min(t.due_ms);
        }
        Ok(())
    }

    /// Drops an hour from `timer_hours` if it is still empty, with no
    /// timer write in progress (only for hours wholly in the past, which
    /// nothing is written into but a delayed write, which would wait).
    #[allow(clippy::await_holding_lock)]
    async fn forget_hour(&self, shard: i8, hour: i32) -> Result<(), ScyllaError> {
        let _exclusive = self.hours_lock.write().unwrap_or_else(|p| p.into_inner());
        let res = self
            .exec(
                &self.st.timers_any,
                (self.node, shard, hour),
                "checking a timer hour",
            )
            .await?;
        if !collect::<(i64,)>(res, "timers")?.is_empty() {
            return Ok(());
        }
        self.exec(
            &self.st.timer_hour_delete,
            (self.node, shard, hour),
            "dropping an empty timer hour",
        )
        .await?;
        self.timer_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .hours
            .remove(&(self.node, shard, hour));
        Ok(())
    }

    /// Whose timers and outbox a notice belongs to: the issuing node's.
    fn node_of(&self, code: TrackingCode) -> i16 {
        code.node() as i16
    }

    async fn delete_timer(&self, t: &Timer) -> Result<QueryResult, ScyllaError> {
        self.exec(
            &self.st.timer_delete,
            (
                self.node_of(t.code),
                t.slot as i8,
                hour_of(t.due_ms),
                t.due_ms,
                code_col(t.code),
                t.kind as i8,
            ),
            "removing a timer",
        )
        .await
    }

    /// Writes the rows of an accepted notice (all upserts): the notice,
    /// its mailbox entry and month, and — with `record` — its first
    /// delivery record. Returns the initial timers for the caller to write
    /// with every other timer of the call (after the record: a timer
    /// without its record is dropped by the scheduler, a record without
    /// its timers would wait forever).
    async fn put_notice_rows(
        &self,
        n: &crate::model::NewNotice,
        code: TrackingCode,
        accepted_at: DateTime<Utc>,
        record: bool,
    ) -> Result<Vec<Timer>, ScyllaError> {
        let now = Utc::now();
        let row = NoticeRow::from_notice(code, accepted_at, &n.content_hash, &n.notice);
        let ttl = ttl_until(n.notice.expires_at, now, NOTICE_TTL_SLACK_SECS);
        let mut rec = DeliveryRecord::new(
            code,
            &n.notice,
            accepted_at,
            n.priority,
            n.deliver_at,
            n.respond_by,
        );
        rec.queue = n.queue;
        let mb = MailboxRow::new(&row, ttl);
        let put_record = async {
            if !record {
                return Ok(());
            }
            let json = serde_json::to_string(&rec).expect("delivery records serialise");
            self.exec(
                &self.st.delivery_put,
                (
                    row.tracking_code,
                    rec.state.name(),
                    json,
                    self.record_ttl(&rec, now),
                ),
                "writing a delivery record",
            )
            .await
            .map(drop)
        };
        // The chain's first event, `accepted`, is the notice row itself
        // (see `read_events`): nothing more on the ingest path.
        let (a, b, c, d) = tokio::join!(
            self.exec(
                &self.st.notice_put,
                NoticeValues::new(&row, ttl),
                "writing a notice"
            ),
            self.exec(&self.st.mailbox_put, &mb, "writing a mailbox entry"),
            self.exec(
                &self.st.month_put,
                (&row.mailbox_id, mb.month),
                "writing a mailbox month"
            ),
            put_record,
        );
        a?;
        b?;
        c?;
        d?;
        Ok(rec.initial_timers())
    }

    /// Completes a notice whose claim already stood — a retry of this very
    /// entry, or a re-send of an original whose first write may have been
    /// interrupted — without undoing a follow-up already under way: the
    /// rows are written again (same values); the record and its first
    /// timers only while the record is missing or untouched. Another
    /// node's notice also gets a timer due now, which makes its owner act
    /// on the record whatever happened to the first timers.
    async fn complete_notice(
        &self,
        n: &crate::model::NewNotice,
        code: TrackingCode,
        accepted_at: DateTime<Utc>,
    ) -> Result<Vec<Timer>, ScyllaError> {
        let res = self
            .exec(
                &self.st.delivery_get,
                (code_col(code),),
                "checking a notice's record",
            )
            .await?;
        let stored: Option<DeliveryRecord> = match collect::<(Option<String>,)>(res, "deliveries")?
            .into_iter()
            .next()
        {
            Some((Some(json),)) => {
                Some(serde_json::from_str(&json).map_err(|e| ScyllaError::Rows {
                    what: "deliveries".into(),
                    message: format!("delivery record {code}: {e}"),
                })?)
            }
            _ => None,
        };
        let untouched = |r: &DeliveryRecord| {
            use crate::model::{Action, DeliveryState};
            r.rounds.is_empty()
                && r.confirmations.is_empty()
                && match (r.state, r.next.map(|p| p.action)) {
                    (DeliveryState::Scheduled, Some(Action::Round { round: 1, retry: 0 })) => true,
                    // A scheduled send still held.
                    (DeliveryState::Held { .. }, Some(Action::Release)) => true,
                    _ => false,
                }
        };
        let mut timers = match &stored {
            None => {
                StoreRepaired::InterruptedWrite {
                    tracking_code: &code,
                }
                .emit();
                self.put_notice_rows(n, code, accepted_at, true).await?
            }
            Some(r) => {
                self.put_notice_rows(n, code, accepted_at, false).await?;
                if untouched(r) {
                    r.initial_timers()
                } else {
                    Vec::new()
                }
            }
        };
        if self.node_of(code) != self.node && !timers.is_empty() {
            // In the stored record's queue (a re-send may come on another
            // lane).
            let queue = stored.as_ref().map_or_else(
                || crate::model::Queue::stored(n.priority, &n.notice.agency, n.queue),
                |r| r.queue(),
            );
            timers.push(Timer::next(code, queue, Utc::now().timestamp_millis()));
        }
        Ok(timers)
    }

    /// How long a reference's claim and its source position live: as long
    /// as the notice's delivery record.
    fn reference_ttl(&self, n: &crate::model::NewNotice, now: DateTime<Utc>) -> i32 {
        ttl_until(
            n.notice.expires_at,
            now,
            self.record_retention_secs
                .saturating_add(NOTICE_TTL_SLACK_SECS),
        )
    }

    /// Records `source` as the position that first stored `n`.
    async fn put_source(
        &self,
        n: &crate::model::NewNotice,
        source: String,
        now: DateTime<Utc>,
    ) -> Result<(), ScyllaError> {
        self.exec(
            &self.st.source_put,
            (
                n.notice.agency.as_str(),
                &n.notice.reference,
                source,
                self.reference_ttl(n, now),
            ),
            "writing a notice's source position",
        )
        .await
        .map(drop)
    }

    /// The ID of a rejection or dead letter saying the same kept from this
    /// source position before, if one was.
    async fn kept_before(
        &self,
        source: Option<&(String, [u8; 16])>,
    ) -> Result<Option<u64>, ScyllaError> {
        let Some((source, fp)) = source else {
            return Ok(None);
        };
        let res = self
            .exec(
                &self.st.kept_get,
                (source.as_str(),),
                "reading a kept record's source position",
            )
            .await?;
        Ok(
            collect::<(Option<Vec<u8>>, Option<i64>)>(res, "kept_sources")?
                .into_iter()
                .next()
                .and_then(|(f, id)| Some((f?, id?)))
                .filter(|(f, _)| f == fp.as_slice())
                .map(|(_, id)| id as u64),
        )
    }

    /// Whether the rejection row `id` of `r`'s agency is there.
    async fn rejection_kept(&self, r: &NewRejection, id: u64) -> Result<bool, ScyllaError> {
        let agency = r.agency.as_ref().map_or(UNATTRIBUTED, |a| a.as_str());
        let res = self
            .exec(
                &self.st.rejection_has,
                (agency, day_of(id_ms(id)), bucket_of(id), id as i64),
                "reading a kept rejection",
            )
            .await?;
        Ok(!collect::<(i64,)>(res, "rejections")?.is_empty())
    }

    /// Whether the dead-letter row `id` is there.
    async fn dead_letter_kept(&self, id: u64) -> Result<bool, ScyllaError> {
        let res = self
            .exec(
                &self.st.dead_letter_has,
                (day_of(id_ms(id)), bucket_of(id), id as i64),
                "reading a kept dead letter",
            )
            .await?;
        Ok(!collect::<(i64,)>(res, "dead_letters")?.is_empty())
    }

    async fn put_rejection(&self, r: &NewRejection, id: u64) -> Result<(), ScyllaError> {
        let agency = r.agency.as_ref().map_or(UNATTRIBUTED, |a| a.as_str());
        let reasons: Vec<&str> = r.problems.iter().map(|p| p.reason.code()).collect();
        self.exec(
            &self.st.rejection_put,
            (
                agency,
                day_of(id_ms(id)),
                bucket_of(id),
                id as i64,
                r.at,
                r.reference.as_deref(),
                reasons,
                serde_json::to_string(r).expect("rejections serialise"),
                self.traffic_ttl,
            ),
            "writing a rejection",
        )
        .await?;
        Ok(())
    }

    async fn put_dead_letter(&self, d: &DeadLetter, id: u64) -> Result<(), ScyllaError> {
        let reasons: Vec<&str> = d.problems.iter().map(|p| p.reason.code()).collect();
        self.exec(
            &self.st.dead_letter_put,
            (
                day_of(id_ms(id)),
                bucket_of(id),
                id as i64,
                d.at,
                d.agency.as_ref().map(|a| a.as_str()),
                reasons,
                serde_json::to_string(d).expect("dead letters serialise"),
                self.traffic_ttl,
            ),
            "writing a dead letter",
        )
        .await?;
        Ok(())
    }

    /// Records of one traffic kind, as `read` asks: the oldest after an
    /// ID, or (rejections only) the newest first. Walks the days that hold
    /// any, in that order, reading a day's buckets in parallel and merging
    /// them by ID.
    async fn traffic(
        &self,
        kind: &'static str,
        agency: &str,
        read: TrafficRead,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, ScyllaError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        debug_assert!(kind == "r" || read != TrafficRead::Newest);
        let from_day = match read {
            TrafficRead::After(after) if after != 0 => day_of(id_ms(after)),
            _ => day_of(0),
        };
        let res = self
            .exec(
                &self.st.days,
                (kind, agency, from_day),
                "listing traffic days",
            )
            .await?;
        let mut days = collect::<(NaiveDate,)>(res, "traffic_days")?;
        days.sort();
        if read == TrafficRead::Newest {
            days.reverse();
        }
        let mut out: Vec<(u64, String)> = Vec::new();
        let lim = limit.min(i32::MAX as usize) as i32;
        for (day,) in days {
            if out.len() >= limit {
                break;
            }
            let reads = (0..TRAFFIC_BUCKETS as i8).map(|bucket| async move {
                let res = match read {
                    TrafficRead::After(after) if kind == "r" => {
                        self.exec(
                            &self.st.rejection_read,
                            (agency, day, bucket, after as i64, lim),
                            "reading rejections",
                        )
                        .await?
                    }
                    TrafficRead::After(after) => {
                        self.exec(
                            &self.st.dead_letter_read,
                            (day, bucket, after as i64, lim),
                            "reading dead letters",
                        )
                        .await?
                    }
                    TrafficRead::Newest => {
                        self.exec(
                            &self.st.rejection_latest,
                            (agency, day, bucket, lim),
                            "reading rejections",
                        )
                        .await?
                    }
                };
                collect::<(i64, String)>(res, "traffic")
            });
            let mut merged: Vec<(u64, String)> = self
                .all(reads)
                .await?
                .into_iter()
                .flatten()
                .map(|(id, rec)| (id as u64, rec))
                .collect();
            merged.sort_by_key(|(id, _)| *id);
            if read == TrafficRead::Newest {
                merged.reverse();
            }
            out.extend(merged.into_iter().take(limit - out.len()));
        }
        Ok(out)
    }

    async fn note_day(
        &self,
        w: &mut WriterState,
        kind: &'static str,
        agency: &str,
        day: NaiveDate,
    ) -> Result<(), ScyllaError> {
        if w.days.insert((kind, agency.to_owned(), day)) {
            if let Err(e) = self
                .exec(
                    &self.st.day_put,
                    // A day past the last row it may index.
                    (kind, agency, day, self.traffic_ttl.saturating_add(86_400)),
                    "indexing a traffic day",
                )
                .await
            {
                w.days.remove(&(kind, agency.to_owned(), day));
                return Err(e);
            }
        }
        Ok(())
    }

    /// Every outbox ID up to `id` is published and removed, or was never
    /// issued: reads start after it, and a new hour becomes the low-water
    /// mark (losing that write only re-reads an hour after a restart).
    fn outbox_read_to(&self, id: u64) {
        let moved = {
            let mut o = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
            o.removed_upto = o.removed_upto.max(id);
            let h = hour_of(id_ms(o.removed_upto));
            (h > o.low_water_hour).then(|| {
                o.low_water_hour = h;
                h
            })
        };
        if let Some(h) = moved {
            let _ = self.rt.block_on(self.exec(
                &self.st.state_put,
                (self.node, OUTBOX_LOW_WATER, h as i64),
                "moving the outbox low-water mark",
            ));
        }
    }

    fn guard(&self) -> Result<(), StoreError> {
        match &self.lease {
            Some(l) => Ok(l.check()?),
            None => Err(ScyllaError::ReadOnly.into()),
        }
    }
}

impl Drop for ScyllaStore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let Some(lease) = &self.lease else { return };
        // A clean stop frees the node ID at once for the next start.
        let (session, st, node) = (&self.session, &self.st, self.node);
        let released = self.rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(5),
                session.execute_unpaged(&st.lease.release, (node, &lease.holder)),
            )
            .await
        });
        if !matches!(released, Ok(Ok(_))) {
            LeaseFailed {
                node,
                kind: "release",
                error: None,
            }
            .emit();
        }
    }
}

/// Traffic IDs for one write: a retry's own IDs first, then new ones.
struct Ids {
    reuse: std::collections::VecDeque<u64>,
    used: Vec<u64>,
    node: u16,
    now_ms: i64,
}

impl Ids {
    fn next(&mut self, last: &mut u64) -> u64 {
        let id = match self.reuse.pop_front() {
            Some(id) => id,
            None => next_id(last, self.node, self.now_ms),
        };
        self.used.push(id);
        id
    }
}

impl ScyllaStore {
    async fn write_entries(
        &self,
        w: &mut WriterState,
        entries: &[Entry],
        ids: &mut Ids,
    ) -> Result<Vec<Outcome>, ScyllaError> {
        let now = Utc::now();
        // The high-water mark first: a write that stops after it leaves the
        // mark above what was stored, never below it.
        let max_new = entries
            .iter()
            .filter_map(|e| match e {
                Entry::Notice(n) => Some(n.tracking_code.as_u64()),
                _ => None,
            })
            .max();
        let max_tracking = match (w.last_tracking, max_new) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if max_tracking != w.last_tracking {
            if let Some(m) = max_tracking {
                self.exec(
                    &self.st.state_put,
                    (self.node, LAST_TRACKING, m as i64),
                    "writing the tracking high-water mark",
                )
                .await?;
            }
            w.last_tracking = max_tracking;
        }
        // The first entry for each reference claims it; later ones in the
        // same call are judged against it, in order.
        let mut first: HashMap<(&str, &str), usize> = HashMap::new();
        let mut claims = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if let Entry::Notice(n) = e {
                let k = (n.notice.agency.as_str(), n.notice.reference.as_str());
                if let std::collections::hash_map::Entry::Vacant(v) = first.entry(k) {
                    v.insert(i);
                    claims.push(i);
                }
            }
        }
        let results = self
            .all(claims.iter().map(|&i| async move {
                let Entry::Notice(n) = &entries[i] else {
                    unreachable!()
                };
                let ttl = self.reference_ttl(n, now);
                let res = self
                    .exec(
                        &self.st.claim,
                        (
                            n.notice.agency.as_str(),
                            &n.notice.reference,
                            code_col(n.tracking_code),
                            n.content_hash.as_slice(),
                            n.accepted_at,
                            ttl,
                        ),
                        "claiming a reference",
                    )
                    .await?;
                let (applied, cols) = lwt_outcome(res, "agency_refs")?;
                if applied {
                    return Ok(Claim::New);
                }
                let code = cols
                    .get("tracking_code")
                    .and_then(CqlValue::as_bigint)
                    .map(code_of)
                    .ok_or_else(|| ScyllaError::Rows {
                        what: "agency_refs".into(),
                        message: "a claim was refused without naming its holder".into(),
                    })?;
                Ok::<_, ScyllaError>(Claim::Held {
                    code,
                    hash: cols
                        .get("content_hash")
                        .and_then(CqlValue::as_blob)
                        .cloned()
                        .unwrap_or_default(),
                    accepted_at: cols
                        .get("accepted_at")
                        .and_then(CqlValue::as_cql_timestamp)
                        .and_then(|t| DateTime::from_timestamp_millis(t.0))
                        .unwrap_or_else(|| {
                            DateTime::from_timestamp_millis(code.unix_ms()).unwrap_or(now)
                        }),
                })
            }))
            .await?;
        let claim_of: HashMap<usize, Claim> = claims.into_iter().zip(results).collect();

        let mut outcomes = Vec::with_capacity(entries.len());
        // Entries that hold their reference: their source position is
        // written with their rows. Exact re-sends of a held reference:
        // (outcome index, entry index), to be told apart from
        // re-deliveries by the source position that first stored it.
        let mut own_sources: Vec<usize> = Vec::new();
        let mut resends: Vec<(usize, usize)> = Vec::new();
        // (entry, code, accepted at, whether the claim is new)
        let mut to_write: Vec<(usize, TrackingCode, DateTime<Utc>, bool)> = Vec::new();
        // Each with the index of its outcome (`None`: a reference
        // conflict, which stays one).
        let mut rejections: Vec<(NewRejection, u64, Option<usize>)> = Vec::new();
        let mut dead: Vec<(&DeadLetter, u64, usize)> = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            match e {
                Entry::Notice(n) => {
                    let fi = first[&(n.notice.agency.as_str(), n.notice.reference.as_str())];
                    let Entry::Notice(f) = &entries[fi] else {
                        unreachable!()
                    };
                    // The notice that holds the reference, and its content.
                    let (orig, orig_hash, orig_at, new) = match &claim_of[&fi] {
                        Claim::New => (
                            f.tracking_code,
                            f.content_hash.to_vec(),
                            f.accepted_at,
                            true,
                        ),
                        Claim::Held {
                            code,
                            hash,
                            accepted_at,
                        } => (*code, hash.clone(), *accepted_at, false),
                    };
                    if fi == i && (new || orig == n.tracking_code) {
                        // Ours: new, or this entry's own claim from an
                        // attempt that failed after it.
                        to_write.push((i, n.tracking_code, n.accepted_at, new));
                        own_sources.push(i);
                        outcomes.push(Outcome::Stored);
                    } else if orig_hash == n.content_hash {
                        if fi == i {
                            to_write.push((i, orig, orig_at, false));
                            resends.push((outcomes.len(), i));
                        }
                        outcomes.push(Outcome::Duplicate {
                            original: orig,
                            redelivery: false,
                        });
                    } else {
                        let id = ids.next(&mut w.last_traffic_id);
                        rejections.push((
                            NewRejection {
                                agency: Some(n.notice.agency.clone()),
                                reference: Some(n.notice.reference.clone()),
                                problems: vec![Problem::new(
                                    Reason::ReferenceConflict,
                                    "reference".to_owned(),
                                    format!("reference was already used for notice {orig} with different content; the original is kept"),
                                )],
                                position: n.position.clone(),
                                at: n.accepted_at,
                            },
                            id,
                            None,
                        ));
                        outcomes.push(Outcome::Conflict { original: orig });
                    }
                }
                Entry::Rejection(r) => {
                    let id = ids.next(&mut w.last_traffic_id);
                    rejections.push((r.clone(), id, Some(outcomes.len())));
                    outcomes.push(Outcome::Kept);
                }
                Entry::DeadLetter(d) => {
                    let id = ids.next(&mut w.last_traffic_id);
                    dead.push((d, id, outcomes.len()));
                    outcomes.push(Outcome::Kept);
                }
            }
        }

        let timers = self
            .all(to_write.iter().map(|&(i, code, at, new)| async move {
                let Entry::Notice(n) = &entries[i] else {
                    unreachable!()
                };
                if new {
                    self.put_notice_rows(n, code, at, true).await
                } else {
                    self.complete_notice(n, code, at).await
                }
            }))
            .await?;
        let timers: Vec<Timer> = timers.into_iter().flatten().collect();
        self.put_timers(&timers).await?;
        self.all(own_sources.iter().map(|&i| async move {
            let Entry::Notice(n) = &entries[i] else {
                unreachable!()
            };
            self.put_source(n, crate::model::position_id(&n.position), now)
                .await
        }))
        .await?;
        let firsts = self
            .all(resends.iter().map(|&(_, i)| async move {
                let Entry::Notice(n) = &entries[i] else {
                    unreachable!()
                };
                let res = self
                    .exec(
                        &self.st.source_get,
                        (n.notice.agency.as_str(), &n.notice.reference),
                        "reading a notice's source position",
                    )
                    .await?;
                let first = collect::<(Option<String>,)>(res, "reference_sources")?
                    .into_iter()
                    .next()
                    .and_then(|(s,)| s);
                let here = crate::model::position_id(&n.position);
                match first {
                    Some(first) => Ok(first == here),
                    None => {
                        // The first write stopped between its claim and its
                        // source (which is written last, before any
                        // receipt): the agency was never answered, so this
                        // record is answered as the notice's first, and
                        // its position is the notice's source from now on.
                        self.put_source(n, here, now).await?;
                        Ok::<_, ScyllaError>(true)
                    }
                }
            }))
            .await?;
        for (&(oi, _), again) in resends.iter().zip(firsts) {
            if let Outcome::Duplicate { redelivery, .. } = &mut outcomes[oi] {
                *redelivery = again;
            }
        }

        // Records that came again (a crash or rebalance before their offsets
        // were committed): kept already, under the ID their source notes.
        let sources: Vec<Option<(String, [u8; 16])>> = rejections
            .iter()
            .map(|(r, ..)| r.kept_source())
            .chain(
                dead.iter()
                    .map(|(d, ..)| crate::model::dead_letter_source(d)),
            )
            .collect();
        let ids: Vec<u64> = rejections
            .iter()
            .map(|(_, id, _)| *id)
            .chain(dead.iter().map(|(_, id, _)| *id))
            .collect();
        let before = self
            .all(sources.iter().map(|s| self.kept_before(s.as_ref())))
            .await?;
        // Per entry: `None` new; `Some(Some(id))` kept before as `id`;
        // `Some(None)` a second copy in this very batch.
        let mut in_batch = HashSet::new();
        let again: Vec<Option<Option<u64>>> = sources
            .iter()
            .zip(before)
            .map(|(s, before)| match before {
                Some(id) => Some(Some(id)),
                None if s.as_ref().is_some_and(|s| !in_batch.insert(s.clone())) => Some(None),
                None => None,
            })
            .collect();
        let (again_r, again_d) = again.split_at(rejections.len());
        let mut repair_r: Vec<(NewRejection, u64)> = Vec::new();
        let mut repair_d: Vec<(&DeadLetter, u64)> = Vec::new();
        let mut keep = again_r.iter();
        rejections.retain(|(r, _, oi)| {
            let again = keep.next().expect("one per rejection");
            if let Some(first) = again {
                if let Some(oi) = oi {
                    outcomes[*oi] = Outcome::Again;
                }
                if let Some(id) = first {
                    repair_r.push((r.clone(), *id));
                }
            }
            again.is_none()
        });
        let mut keep = again_d.iter();
        dead.retain(|(d, _, oi)| {
            let again = keep.next().expect("one per dead letter");
            if let Some(first) = again {
                outcomes[*oi] = Outcome::Again;
                if let Some(id) = first {
                    repair_d.push((*d, *id));
                }
            }
            again.is_none()
        });
        let kept: Vec<(String, [u8; 16], u64)> = sources
            .into_iter()
            .zip(again.iter())
            .zip(ids)
            .filter_map(|((s, a), id)| match (s, a) {
                (Some((source, fp)), None) => Some((source, fp, id)),
                _ => None,
            })
            .collect();
        // A source is written before its row, so a crash between them
        // leaves a source whose row is missing: the record, when it comes
        // again, writes the row under the source's ID (read first; rare).
        let have_r = self
            .all(repair_r.iter().map(|(r, id)| self.rejection_kept(r, *id)))
            .await?;
        let have_d = self
            .all(repair_d.iter().map(|(_, id)| self.dead_letter_kept(*id)))
            .await?;
        for ((r, id), have) in repair_r.into_iter().zip(have_r) {
            if !have {
                rejections.push((r, id, None));
            }
        }
        for ((d, id), have) in repair_d.into_iter().zip(have_d) {
            if !have {
                dead.push((d, id, usize::MAX));
            }
        }

        // Traffic: the days first (so a listing finds them), the sources,
        // then the rows.
        for (r, id, _) in &rejections {
            let agency = r
                .agency
                .as_ref()
                .map_or(UNATTRIBUTED, |a| a.as_str())
                .to_owned();
            self.note_day(w, "r", &agency, day_of(id_ms(*id))).await?;
        }
        for (_, id, _) in &dead {
            self.note_day(w, "d", DEAD_LETTER_DAYS, day_of(id_ms(*id)))
                .await?;
        }
        self.all(kept.iter().map(|(source, fp, id)| {
            self.exec(
                &self.st.kept_put,
                (source.as_str(), fp.as_slice(), *id as i64, self.traffic_ttl),
                "writing a kept record's source position",
            )
        }))
        .await?;
        self.all(
            rejections
                .iter()
                .map(|(r, id, _)| self.put_rejection(r, *id)),
        )
        .await?;
        self.all(dead.iter().map(|(d, id, _)| self.put_dead_letter(d, *id)))
            .await?;
        if !rejections.is_empty() || !dead.is_empty() {
            self.exec(
                &self.st.state_put,
                (self.node, LAST_TRAFFIC_ID, w.last_traffic_id as i64),
                "writing high-water marks",
            )
            .await?;
        }
        Ok(outcomes)
    }
}

/// How a claim came out.
enum Claim {
    /// Applied: the reference is this entry's.
    New,
    /// Already held: by this very entry (a retry) or another notice.
    Held {
        code: TrackingCode,
        hash: Vec<u8>,
        accepted_at: DateTime<Utc>,
    },
}

#[cfg(test)]
mod tests;
