//! The embedded store on `fjall`, an LSM tree like ScyllaDB's own storage.
//!
//! Layout (one keyspace each; see docs/storage.md for the reasoning):
//! - `notices`: tracking code (u64, big-endian) → the full record. Tracking
//!   codes are time-ordered, so the biggest values arrive in key order and
//!   the LSM tree appends instead of rewriting: write amplification stays
//!   near 1 for the bulk of the bytes.
//! - `mailbox`: mailbox key (9 bytes) ‖ !tracking code → empty. The only
//!   randomly-ordered index, and it holds 17-byte keys and no values, so
//!   compaction rewrites little. Inverting the code lists newest first.
//! - `refs`: agency ‖ 0 ‖ reference → tracking code ‖ content hash, for
//!   idempotency.
//! - `rejections`: agency ‖ 0 ‖ id → rejection; `dead_letters`: id → record.
//! - `profiles`: mailbox key (9 bytes) → mailbox profile (JSON), from the
//!   registry topic.
//! - `meta`: high-water marks (last tracking code, last IDs).
//! - `delivery`: tracking code → the article-29 delivery record (small,
//!   time-ordered like `notices`).
//! - `timers`: shard ‖ due ms ‖ tracking code ‖ kind → empty. Ordered by
//!   due time within a shard, so "what is due" is one short range scan and
//!   ten million pending timers cost 18-byte keys on disk, nothing in RAM.
//! - `outbox`: id → receipt, published in order then removed.
//! - `confirmations`: confirmation ID → tracking code (deduplication).
//! - `awaiting`: mailbox key ‖ code →
//!   empty, the notices waiting for a mailbox to be activated.
//! - `events`: tracking code ‖ seq → a notice's hash-chained event.
//! - `audit_log`, `audit_leaves`: log ‖ index → a signed receipt batch's
//!   head, and its leaf hashes; `audit_events`: tracking code ‖ seq →
//!   log ‖ index of the batch that carried the event; `audit_heads`:
//!   log ‖ size → the signed tree heads. All appended, time-ordered.
//! - `access`, `access_by_mailbox`: traffic data, by time (for the purge)
//!   and by mailbox, newest first (for `karpoosheh access-log`), in a
//!   database of their own under `traffic/` (its own journal).
//! - `parked`: agency ‖ 0 ‖ ID → a receipt the agency's topic refused,
//!   kept until delivered (`sink::parking`).
//! - `quarantine`: ID → a record that could not be read back, set aside
//!   (`store::set_aside`).
//!
//! One write = one fjall batch across keyspaces = one journal append and,
//! with `durability = "sync_data"`, one `fdatasync`: group commit.

mod access;
mod check;
pub use self::check::CheckReport;
mod audit;
mod delivery;
mod hint;
mod notices;
mod parking;
mod profiles;
mod quarantine;

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ::fjall::config::{FilterPolicy, PartitioningPolicy, PinningPolicy};
use ::fjall::{AbstractTree, Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use karpoosheh_schemas::{
    AgencyId, DeadLetter, MailboxId, MailboxProfile, Problem, Reason, Receipt, TrackingCode,
};

use crate::evidence::chain;
use crate::model::{
    DeliveryRecord, DeliveryWrite, Entry, MailboxPage, NewRejection, Outcome, StoredEvent,
    StoredNotice, StoredRejection, Timer, TimerKind,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use super::{AuditStore, DeliveryStore, NoticeStore, ProfileStore, StoreError, StoreStats};

/// Value formats, the first byte of every stored value: postcard for the
/// hot, fixed-shape notice records; JSON for the rarer rejection and
/// dead-letter records, whose tagged enums need a self-describing format.
const FORMAT: u8 = 1;
const FORMAT_JSON: u8 = 2;
/// Delivery records with the notice's title (format 3), since the inbox
/// API with openings and shares (format 4), and since priority lanes with
/// the notice's lane and whether its round has its agency's slot (format
/// 5), since response deadlines with `respond_by` and `reminded` (format
/// 6), and since agencies' queues with the notice's queue (format 7); the
/// older formats are still read, their queue 0 (where their timers are).
const FORMAT_DELIVERY_V2: u8 = 3;
const FORMAT_DELIVERY_V3: u8 = 4;
const FORMAT_DELIVERY_V4: u8 = 5;
const FORMAT_DELIVERY_V5: u8 = 6;
const FORMAT_DELIVERY_V6: u8 = 7;
/// Flushed tables merged at a time into the first level of the index
/// keyspaces whose writes spread over their whole key range (`FjallStore::open`).
const SPREAD_L0_TABLES: u8 = 8;
const UNATTRIBUTED: &[u8] = b"_unattributed";
const META_LAST_TRACKING: &[u8] = b"last_tracking_code";
/// The mark of `NoticeStore::mark_accepted_out`.
const META_ACCEPTED_OUT: &[u8] = b"accepted_out";
const META_LAST_REJECTION: &[u8] = b"last_rejection_id";
/// How many delivery writes the store has made (the durable hint's count).
const META_DELIVERY_WRITES: &[u8] = b"delivery_writes";

/// When a write counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// `fdatasync` the journal before acknowledging: survives power loss.
    #[default]
    SyncData,
    /// `fsync` (data and metadata) before acknowledging.
    SyncAll,
    /// Only hand the journal to the OS: survives a process crash, not a
    /// power loss or kernel panic. For tests and benchmarks.
    Buffered,
}

impl Durability {
    fn persist_mode(self) -> PersistMode {
        match self {
            Durability::SyncData => PersistMode::SyncData,
            Durability::SyncAll => PersistMode::SyncAll,
            Durability::Buffered => PersistMode::Buffer,
        }
    }
}

/// Tuning of the embedded store.
#[derive(Debug, Clone)]
pub struct FjallStoreConfig {
    pub path: PathBuf,
    pub durability: Durability,
    pub cache_bytes: u64,
    pub memtable_bytes: u64,
    pub max_journal_bytes: u64,
    /// All memtables together (active and sealed, every keyspace): above
    /// this a write first waits for flushes, and starts one if none is
    /// running (0: only fjall's own per-keyspace limits).
    pub write_buffer_bytes: u64,
}

/// Defaults of `store.cache_size`, `store.memtable_size` and
/// `store.max_journal_size` (the configuration's defaults come from here;
/// the reasons are beside `StoreConfig::default`).
pub const DEFAULT_CACHE_BYTES: u64 = 4 << 20;
pub const DEFAULT_MEMTABLE_BYTES: u64 = 16 << 20;
pub const DEFAULT_MAX_JOURNAL_BYTES: u64 = 128 << 20;
pub const DEFAULT_WRITE_BUFFER_BYTES: u64 = 48 << 20;
/// The longest a write waits for the write buffer to drain. Flushes take
/// tens to hundreds of milliseconds; past this the write goes ahead over
/// the budget (and the wait is counted) rather than stopping ingest
/// behind a flush that cannot finish.
const WRITE_BUFFER_MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl FjallStoreConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FjallStoreConfig {
            path: path.into(),
            durability: Durability::SyncData,
            cache_bytes: DEFAULT_CACHE_BYTES,
            memtable_bytes: DEFAULT_MEMTABLE_BYTES,
            max_journal_bytes: DEFAULT_MAX_JOURNAL_BYTES,
            write_buffer_bytes: DEFAULT_WRITE_BUFFER_BYTES,
        }
    }
}

/// Serialises exactly like [`StoredNotice`] without copying the notice.
#[derive(Serialize)]
struct StoredNoticeRef<'a> {
    tracking_code: TrackingCode,
    #[serde(serialize_with = "karpoosheh_schemas::rfc3339::serialize_ref")]
    accepted_at: &'a chrono::DateTime<chrono::Utc>,
    content_hash: &'a [u8; 32],
    notice: &'a karpoosheh_schemas::Notice,
}

struct WriterState {
    /// Delivery writes made (kept in `meta`, for the durable hint).
    delivery_writes: u64,
    /// The last rejection ID known durable (`last_rejection_id` is
    /// advanced while a batch is built, before it commits): for the hint.
    durable_rejection_id: u64,
    /// When the durable hint was last written.
    hint_clock: hint::HintClock,
    last_tracking: Option<u64>,
    last_rejection_id: u64,
    last_dead_letter_id: u64,
    last_outbox_id: u64,
}

/// The embedded mailbox store.
pub struct FjallStore {
    db: Database,
    /// Traffic data, in a database of its own (`<path>/traffic`): its
    /// journal is never held by the main store's fsyncs, so recording an
    /// inbox API call never waits behind a group commit of notices.
    traffic: Database,
    notices: Keyspace,
    mailbox: Keyspace,
    refs: Keyspace,
    rejections: Keyspace,
    dead_letters: Keyspace,
    /// Kept rejections' and dead letters' source positions → ID ‖
    /// fingerprint: a re-delivered record is not kept twice.
    kept_sources: Keyspace,
    profiles: Keyspace,
    meta: Keyspace,
    delivery: Keyspace,
    timers: Keyspace,
    outbox: Keyspace,
    confirmations: Keyspace,
    awaiting: Keyspace,
    /// Each notice's hash chain: (tracking code, seq) → prev, hash, event.
    events: Keyspace,
    /// The audit log: log ‖ index → signed batch head; its leaves; event
    /// (code ‖ seq) → log ‖ index; log ‖ size → signed tree head.
    audit_log: Keyspace,
    audit_leaves: Keyspace,
    audit_events: Keyspace,
    audit_heads: Keyspace,
    /// Traffic data: by time, and by mailbox (newest first).
    access: Keyspace,
    access_by_mailbox: Keyspace,
    access_seq: Mutex<u32>,
    durability: Durability,
    writer: Mutex<WriterState>,
    /// Per timer slot, the earliest due time written since the last
    /// `due_timers` of that shard (`i64::MAX`: none; `i64::MIN` at open,
    /// so the first scan reads the whole shard).
    behind: Mutex<[i64; crate::model::TIMER_SLOTS as usize]>,
    /// The highest outbox ID published and removed: reads start after it,
    /// not at the head of a keyspace full of the removed receipts'
    /// tombstones (IDs are issued and committed in order, under `writer`).
    outbox_removed: Mutex<u64>,
    /// Receipts an agency's topic refused (agency ‖ 0 ‖ ID), and the
    /// highest ID issued.
    parked: Keyspace,
    /// The highest ID issued in `parked` and `quarantine`.
    parked_last: Mutex<u64>,
    /// Records that could not be read back: ID → JSON.
    quarantine: Keyspace,
    write_buffer_bytes: u64,
    path: PathBuf,
}

/// `format` then `v` in postcard (a stored record's encoding) into `buf`,
/// cleared first, its capacity kept: the writer encodes thousands of
/// records per batch, and growing a fresh Vec for each was a tenth of the
/// committer's time (the bytes are copied into the batch anyway).
fn encode_in<'b, T: Serialize>(buf: &'b mut Vec<u8>, format: u8, v: &T) -> &'b [u8] {
    let mut out = std::mem::take(buf);
    out.clear();
    out.push(format);
    // postcard only fails on writer errors, which a Vec never has.
    *buf = postcard::to_extend(v, out).expect("postcard into a Vec cannot fail");
    buf
}

fn encode_json<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_JSON];
    serde_json::to_writer(&mut out, v).expect("serialising stored records into a Vec cannot fail");
    out
}

fn decode<'a, T: Deserialize<'a>>(what: &str, bytes: &'a [u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT, rest)) => {
            postcard::from_bytes(rest).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
        }
        Some((&FORMAT_JSON, rest)) => {
            serde_json::from_slice(rest).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
        }
        Some((v, _)) => Err(StoreError::Corrupt(format!(
            "{what}: unknown format version {v}"
        ))),
        None => Err(StoreError::Corrupt(format!("{what}: empty value"))),
    }
}

fn encode_delivery(rec: &DeliveryRecord) -> Vec<u8> {
    let mut out = Vec::new();
    encode_in(&mut out, FORMAT_DELIVERY_V6, rec);
    out
}

/// A delivery record as format 4 wrote it: [`DeliveryRecord`] without
/// the lane (all were normal) and the pace flag. Field order is the
/// format; never change it.
#[derive(Deserialize)]
struct DeliveryRecordV3 {
    tracking_code: TrackingCode,
    agency: AgencyId,
    reference: String,
    recipient: MailboxId,
    kind: karpoosheh_schemas::NoticeKind,
    title: String,
    min_access_level: karpoosheh_schemas::AccessLevel,
    accepted_at: chrono::DateTime<chrono::Utc>,
    expires_at: chrono::DateTime<chrono::Utc>,
    state: crate::model::DeliveryState,
    next: Option<crate::model::Pending>,
    rounds: Vec<crate::model::RoundRecord>,
    confirmations: Vec<crate::model::ConfirmationRecord>,
    access_reported: bool,
    purged: bool,
    opened: Vec<crate::model::OpenRecord>,
    shares: Vec<crate::model::ShareRecord>,
}

impl From<DeliveryRecordV3> for DeliveryRecord {
    fn from(v3: DeliveryRecordV3) -> Self {
        DeliveryRecord {
            tracking_code: v3.tracking_code,
            agency: v3.agency,
            reference: v3.reference,
            recipient: v3.recipient,
            kind: v3.kind,
            title: v3.title,
            min_access_level: v3.min_access_level,
            accepted_at: v3.accepted_at,
            expires_at: v3.expires_at,
            state: v3.state,
            next: v3.next,
            rounds: v3.rounds,
            confirmations: v3.confirmations,
            access_reported: v3.access_reported,
            purged: v3.purged,
            opened: v3.opened,
            shares: v3.shares,
            priority: karpoosheh_schemas::Priority::Normal,
            paced: false,
            respond_by: None,
            reminded: None,
            queue: Some(0),
        }
    }
}

/// A delivery record as format 3 wrote it: [`DeliveryRecord`] without
/// openings and shares. Field order is the format; never change it.
#[derive(Deserialize)]
struct DeliveryRecordV2 {
    tracking_code: TrackingCode,
    agency: AgencyId,
    reference: String,
    recipient: MailboxId,
    kind: karpoosheh_schemas::NoticeKind,
    title: String,
    min_access_level: karpoosheh_schemas::AccessLevel,
    accepted_at: chrono::DateTime<chrono::Utc>,
    expires_at: chrono::DateTime<chrono::Utc>,
    state: crate::model::DeliveryState,
    next: Option<crate::model::Pending>,
    rounds: Vec<crate::model::RoundRecord>,
    confirmations: Vec<crate::model::ConfirmationRecord>,
    access_reported: bool,
    purged: bool,
}

/// A delivery record as format 1 wrote it: [`DeliveryRecord`] without the
/// title. Field order is the format; never change it.
#[derive(Deserialize)]
struct DeliveryRecordV1 {
    tracking_code: TrackingCode,
    agency: AgencyId,
    reference: String,
    recipient: MailboxId,
    kind: karpoosheh_schemas::NoticeKind,
    min_access_level: karpoosheh_schemas::AccessLevel,
    accepted_at: chrono::DateTime<chrono::Utc>,
    expires_at: chrono::DateTime<chrono::Utc>,
    state: crate::model::DeliveryState,
    next: Option<crate::model::Pending>,
    rounds: Vec<crate::model::RoundRecord>,
    confirmations: Vec<crate::model::ConfirmationRecord>,
    access_reported: bool,
    purged: bool,
}

impl From<DeliveryRecordV1> for DeliveryRecordV2 {
    fn from(v1: DeliveryRecordV1) -> Self {
        DeliveryRecordV2 {
            tracking_code: v1.tracking_code,
            agency: v1.agency,
            reference: v1.reference,
            recipient: v1.recipient,
            kind: v1.kind,
            // The scheduler reads it from the notice when empty.
            title: String::new(),
            min_access_level: v1.min_access_level,
            accepted_at: v1.accepted_at,
            expires_at: v1.expires_at,
            state: v1.state,
            next: v1.next,
            rounds: v1.rounds,
            confirmations: v1.confirmations,
            access_reported: v1.access_reported,
            purged: v1.purged,
        }
    }
}

impl From<DeliveryRecordV2> for DeliveryRecord {
    fn from(v2: DeliveryRecordV2) -> Self {
        DeliveryRecord {
            tracking_code: v2.tracking_code,
            agency: v2.agency,
            reference: v2.reference,
            recipient: v2.recipient,
            kind: v2.kind,
            title: v2.title,
            min_access_level: v2.min_access_level,
            accepted_at: v2.accepted_at,
            expires_at: v2.expires_at,
            state: v2.state,
            next: v2.next,
            rounds: v2.rounds,
            confirmations: v2.confirmations,
            access_reported: v2.access_reported,
            purged: v2.purged,
            opened: Vec::new(),
            shares: Vec::new(),
            priority: karpoosheh_schemas::Priority::Normal,
            paced: false,
            respond_by: None,
            reminded: None,
            queue: Some(0),
        }
    }
}

/// A current delivery record from an older format's `rest` and the bytes
/// its newer fields take.
fn with_tail(rest: &[u8], tail: &[u8]) -> Result<DeliveryRecord, StoreError> {
    let mut v = Vec::with_capacity(rest.len() + tail.len());
    v.extend_from_slice(rest);
    v.extend_from_slice(tail);
    postcard::from_bytes(&v).map_err(|e| StoreError::Corrupt(format!("delivery record: {e}")))
}

fn decode_delivery(bytes: &[u8]) -> Result<DeliveryRecord, StoreError> {
    let corrupt = |e: postcard::Error| StoreError::Corrupt(format!("delivery record: {e}"));
    match bytes.split_first() {
        Some((&FORMAT_DELIVERY_V6, rest)) => postcard::from_bytes(rest).map_err(corrupt),
        // Format 7 is format 6 and a trailing option, the queue: `Some(0)`
        // for a record written before agencies' queues (postcard: 1, 0);
        // format 6 is format 5 and two trailing options, both `None` then
        // (a zero byte each).
        Some((&FORMAT_DELIVERY_V5, rest)) => with_tail(rest, &[1, 0]),
        Some((&FORMAT_DELIVERY_V4, rest)) => with_tail(rest, &[0, 0, 1, 0]),
        Some((&FORMAT_DELIVERY_V3, rest)) => {
            let v3: DeliveryRecordV3 = postcard::from_bytes(rest).map_err(corrupt)?;
            Ok(v3.into())
        }
        Some((&FORMAT_DELIVERY_V2, rest)) => {
            let v2: DeliveryRecordV2 = postcard::from_bytes(rest).map_err(corrupt)?;
            Ok(v2.into())
        }
        Some((&FORMAT, rest)) => {
            let v1: DeliveryRecordV1 = postcard::from_bytes(rest).map_err(corrupt)?;
            Ok(DeliveryRecordV2::from(v1).into())
        }
        _ => decode("delivery record", bytes),
    }
}

fn agency_bucket(agency: Option<&AgencyId>) -> &[u8] {
    agency
        .map(|a| a.as_str().as_bytes())
        .unwrap_or(UNATTRIBUTED)
}

fn ref_key(agency: &AgencyId, reference: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(agency.as_str().len() + 1 + reference.len());
    k.extend_from_slice(agency.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(reference.as_bytes());
    k
}

fn mailbox_key(id: MailboxId, code: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..9].copy_from_slice(&id.to_key());
    k[9..].copy_from_slice(&(!code).to_be_bytes());
    k
}

fn rejection_key(agency: Option<&AgencyId>, id: u64) -> Vec<u8> {
    let bucket = agency_bucket(agency);
    let mut k = Vec::with_capacity(bucket.len() + 9);
    k.extend_from_slice(bucket);
    k.push(0);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn timer_key(t: &Timer) -> [u8; 18] {
    let mut k = [0u8; 18];
    k[0] = t.slot;
    // Flip the sign bit so negative times (never expected) still sort.
    k[1..9].copy_from_slice(&((t.due_ms as u64) ^ (1 << 63)).to_be_bytes());
    k[9..17].copy_from_slice(&t.code.as_u64().to_be_bytes());
    k[17] = t.kind as u8;
    k
}

fn timer_of(k: &[u8]) -> Result<Timer, StoreError> {
    if k.len() != 18 {
        return Err(StoreError::Corrupt("timer key has the wrong length".into()));
    }
    Ok(Timer {
        slot: k[0],
        due_ms: (u64_of(&k[1..9])? ^ (1 << 63)) as i64,
        code: TrackingCode::from_u64(u64_of(&k[9..17])?),
        kind: TimerKind::from_u8(k[17])
            .ok_or_else(|| StoreError::Corrupt(format!("unknown timer kind {}", k[17])))?,
    })
}

fn awaiting_key(id: MailboxId, code: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..9].copy_from_slice(&id.to_key());
    k[9..].copy_from_slice(&code.to_be_bytes());
    k
}

/// A notice's event `seq`: its tracking code, then the number, so a
/// notice's chain is one ordered prefix.
fn event_key(code: u64, seq: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&code.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The smallest key after every key starting with `prefix`.
fn after_prefix(prefix: &[u8]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    while let Some(last) = k.pop() {
        if last < 0xff {
            k.push(last + 1);
            return k;
        }
    }
    vec![0xff; prefix.len() + 1]
}

fn u64_of(bytes: &[u8]) -> Result<u64, StoreError> {
    bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt("short u64".into()))
}

/// Time-ordered IDs for rejections and dead letters: milliseconds << 16,
/// bumped past the last one so they are unique and increasing.
fn next_id(last: &mut u64) -> u64 {
    let now = (chrono::Utc::now().timestamp_millis().max(0) as u64) << 16;
    *last = now.max(*last + 1);
    *last
}

impl FjallStore {
    fn keyspaces(&self) -> impl Iterator<Item = &Keyspace> {
        [
            &self.notices,
            &self.mailbox,
            &self.refs,
            &self.rejections,
            &self.dead_letters,
            &self.kept_sources,
            &self.profiles,
            &self.meta,
            &self.delivery,
            &self.timers,
            &self.outbox,
            &self.confirmations,
            &self.awaiting,
            &self.events,
            &self.audit_log,
            &self.audit_leaves,
            &self.audit_events,
            &self.audit_heads,
            &self.access,
            &self.access_by_mailbox,
            &self.parked,
            &self.quarantine,
        ]
        .into_iter()
    }

    pub fn open(cfg: FjallStoreConfig) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&cfg.path)?;
        // fjall's journal recovery can panic on some damage (a debug
        // assertion on a length read from the damaged bytes): a clear
        // error instead of a crash.
        let opened = std::panic::catch_unwind(|| {
            Database::builder(&cfg.path)
                .cache_size(cfg.cache_bytes)
                .max_journaling_size(cfg.max_journal_bytes)
                .open()
        })
        .map_err(|panic| {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic while reading it");
            damaged_journal(&cfg.path, why)
        })?;
        let db = opened.map_err(|e| match e {
            ::fjall::Error::Locked => StoreError::Locked(cfg.path.display().to_string()),
            ::fjall::Error::JournalRecovery(e) => damaged_journal(&cfg.path, &format!("{e:?}")),
            other => StoreError::Fjall(other),
        })?;
        let memtable = cfg.memtable_bytes;
        // fjall pins the index and filter blocks of new tables in the first
        // levels (outside the block cache), and a table keeps them when
        // compaction moves it down unchanged. The time-ordered keyspaces'
        // tables are only ever moved, so pinning there grows with the data
        // (about 12 bytes per stored notice): their blocks go through the
        // cache, which is bounded. Randomly keyed keyspaces are rewritten
        // by compaction and keep fjall's pinning.
        //
        // Filters are written in partitions at every level (fjall: from L3
        // on). A table writer otherwise holds an 8-byte hash of every key
        // until the table is finished, in a doubling Vec: the deeper
        // levels' 64 MiB tables of small index entries hold millions of
        // keys, and one compaction held 34 MB of hashes (dhat, 1.5M
        // notices) -- memory that grows as the tree deepens. Partitioned,
        // the writer holds the finished filter bits (~1.25 bytes per key)
        // and a 4 KiB partition's hashes.
        //
        // Indexes are partitioned at every level too (fjall: from L3 on).
        // A full index keeps every data block's end key until the table
        // is finished, and a key read by compaction can be a view into
        // the whole block it came from: one large compaction of a 5M
        // store had 45 MB of read blocks live at the run's peak RSS
        // (jemalloc profile), none with partitioned indexes, which write
        // out each 4 KiB of block handles as they go (BENCHMARKS.md,
        // "Memory").
        let opts = move || {
            KeyspaceCreateOptions::default()
                .max_memtable_size(memtable)
                .filter_block_partitioning_policy(PartitioningPolicy::all(true))
                .index_block_partitioning_policy(PartitioningPolicy::all(true))
        };
        let ordered = move || {
            opts()
                .index_block_pinning_policy(PinningPolicy::all(false))
                .filter_block_pinning_policy(PinningPolicy::all(false))
        };
        // Bloom filters only serve point reads. The keyspaces read only by
        // range or prefix (mailbox listings, the timer wheel, the outbox,
        // rejections, dead letters, accounts awaiting activation) build
        // none: a filter there costs a hash of every key at every flush
        // and compaction, and the writer holds a table's whole filter until
        // the table is finished -- up to 10 MB for a 64 MiB table of
        // 17-byte mailbox keys, live at a 5M run's peak (BENCHMARKS.md,
        // "Memory").
        let ranged = move || opts().filter_policy(FilterPolicy::disabled());
        let ordered_ranged = move || ordered().filter_policy(FilterPolicy::disabled());
        // The index keyspaces whose new keys land all over their key range
        // (a reference, a mailbox, one of 240 timer slots, one of the
        // agencies' rejections): every flushed table overlaps all of the
        // first level, so each merge into it rewrites that whole level,
        // and the more a store holds, the more each merge rewrites. These
        // were all the growth of the bytes written per byte of notice from
        // 1M to 5M notices (the journal, the notices and the delivery
        // records are written the same per notice at any size). Merging 8
        // flushed tables at a time instead of fjall's 4 halves those
        // rewrites (5M notices: 2.59 -> 2.37 bytes per byte; BENCHMARKS.md,
        // "Write amplification"), for up to 8 tables in the first level
        // where a read looks (fjall slows writes at 20). fjall keeps a
        // keyspace's options from its creation: stores created before
        // keep merging 4.
        let spread = move |o: KeyspaceCreateOptions| {
            o.compaction_strategy(Arc::new(
                ::fjall::compaction::Leveled::default().with_l0_threshold(SPREAD_L0_TABLES),
            ))
        };
        let notices = db.keyspace("notices", ordered)?;
        let mailbox = db.keyspace("mailbox", move || spread(ranged()))?;
        let refs = db.keyspace("refs", move || spread(opts()))?;
        let rejections = db.keyspace("rejections", move || spread(ordered_ranged()))?;
        let dead_letters = db.keyspace("dead_letters", ordered_ranged)?;
        let kept_sources = db.keyspace("kept_sources", opts)?;
        let profiles = db.keyspace("profiles", opts)?;
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default)?;
        let delivery = db.keyspace("delivery", ordered)?;
        let timers = db.keyspace("timers", move || spread(ordered_ranged()))?;
        let outbox = db.keyspace("outbox", ordered_ranged)?;
        let confirmations = db.keyspace("confirmations", opts)?;
        let awaiting = db.keyspace("awaiting", ranged)?;
        let events = db.keyspace("events", ordered_ranged)?;
        let audit_log = db.keyspace("audit_log", ordered_ranged)?;
        let audit_leaves = db.keyspace("audit_leaves", ordered)?;
        let audit_events = db.keyspace("audit_events", ordered)?;
        let audit_heads = db.keyspace("audit_heads", ordered_ranged)?;
        let parked = db.keyspace("parked", ranged)?;
        let quarantine = db.keyspace("quarantine", ranged)?;
        let parked_last =
            parking::last_parked_id(&parked)?.max(match quarantine.last_key_value() {
                Some(g) => u64_of(&g.key()?)?,
                None => 0,
            });
        let traffic_path = cfg.path.join("traffic");
        let traffic = Database::builder(&traffic_path)
            .cache_size((cfg.cache_bytes / 16).max(8 << 20))
            .max_journaling_size(cfg.max_journal_bytes.min(64 << 20))
            .open()
            .map_err(|e| match e {
                ::fjall::Error::Locked => StoreError::Locked(traffic_path.display().to_string()),
                other => StoreError::Fjall(other),
            })?;
        let access = traffic.keyspace("access", ordered_ranged)?;
        let access_by_mailbox = traffic.keyspace("access_by_mailbox", ranged)?;
        let last_outbox_id = match outbox.last_key_value() {
            Some(g) => u64_of(&g.key()?)?,
            None => 0,
        };

        let last_tracking = meta
            .get(META_LAST_TRACKING)?
            .map(|v| u64_of(&v))
            .transpose()?;
        let last_rejection_id = meta
            .get(META_LAST_REJECTION)?
            .map(|v| u64_of(&v))
            .transpose()?
            .unwrap_or(0);
        let last_dead_letter_id = match dead_letters.last_key_value() {
            Some(g) => u64_of(&g.key()?)?,
            None => 0,
        };
        let delivery_writes = meta
            .get(META_DELIVERY_WRITES)?
            .map(|v| u64_of(&v))
            .transpose()?
            .unwrap_or(0);
        // A store behind what it had durably written has lost acknowledged
        // writes to a damaged journal (see `hint`): refused.
        if cfg.durability != Durability::Buffered {
            if let Some(h) = hint::read(&cfg.path)? {
                let now = hint::Hint {
                    last_tracking: last_tracking.unwrap_or(0),
                    last_rejection_id,
                    delivery_writes,
                };
                if let Some(lost) = now.behind(&h) {
                    return Err(StoreError::Damaged(format!(
                        "the store at {} has lost writes it had acknowledged ({lost}): its journal was damaged before its end. Do not run on it: it would issue tracking codes again and miss what agencies were told. Keep a copy of the directory for investigation and restore the store from a backup; to open it as it is once you accept the loss, delete {}",
                        cfg.path.display(),
                        cfg.path.join(hint::HINT_FILE).display()
                    )));
                }
            }
        }
        Ok(FjallStore {
            db,
            traffic,
            notices,
            mailbox,
            refs,
            rejections,
            dead_letters,
            kept_sources,
            profiles,
            meta,
            delivery,
            timers,
            outbox,
            confirmations,
            awaiting,
            events,
            audit_log,
            audit_leaves,
            audit_events,
            audit_heads,
            access,
            access_by_mailbox,
            access_seq: Mutex::new(0),
            durability: cfg.durability,
            behind: Mutex::new([i64::MIN; crate::model::TIMER_SLOTS as usize]),
            outbox_removed: Mutex::new(0),
            parked,
            parked_last: Mutex::new(parked_last),
            quarantine,
            write_buffer_bytes: cfg.write_buffer_bytes,
            writer: Mutex::new(WriterState {
                delivery_writes,
                durable_rejection_id: last_rejection_id,
                hint_clock: hint::HintClock(None),
                last_tracking,
                last_rejection_id,
                last_dead_letter_id,
                last_outbox_id,
            }),
            path: cfg.path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the durable hint if it is due (or `force`), from the writer's
    /// state: what it counts was synced when the caller's commit returned.
    fn write_hint(&self, st: &mut WriterState, force: bool) {
        if self.durability == Durability::Buffered || !(force || st.hint_clock.due()) {
            return;
        }
        st.hint_clock.0 = Some(std::time::Instant::now());
        let h = hint::Hint {
            last_tracking: st.last_tracking.unwrap_or(0),
            last_rejection_id: st.durable_rejection_id,
            delivery_writes: st.delivery_writes,
        };
        if let Err(e) = hint::write(&self.path, &h) {
            // The check at open is a safety net, not a write path: the
            // store goes on (the next write tries again).
            tracing::warn!(error = %e, "could not write the store's durable hint");
        }
    }

    /// Flushes every memtable and compacts every keyspace fully, waiting
    /// for both: the store's tables then stay as they are until the next
    /// write. For benchmarks that read a store of a known shape.
    pub fn settle(&self) -> Result<(), StoreError> {
        for k in self.keyspaces() {
            k.rotate_memtable_and_wait()?;
            k.major_compact()?;
        }
        Ok(())
    }

    /// Waits until the memtables of all keyspaces together are within
    /// `write_buffer_bytes`. fjall bounds each keyspace (four sealed
    /// memtables, then it halts writes) but not their sum: while a long
    /// compaction holds one of the two workers, the other flushes keyspace
    /// after keyspace and the rest queue up. Without this bound the 5M
    /// demo's memtables reached 90 MiB against 62 MiB at 1M, most of the
    /// difference in peak RSS (BENCHMARKS.md, "Memory").
    fn hold_write_buffer(&self) {
        let limit = self.write_buffer_bytes;
        if limit == 0 || self.db.write_buffer_size() <= limit {
            return;
        }
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_micros(200);
        let mut overran = false;
        while self.db.write_buffer_size() > limit {
            if started.elapsed() >= WRITE_BUFFER_MAX_WAIT {
                overran = true;
                break;
            }
            // Nothing sealed means nothing will drain: seal the largest
            // memtable (fjall queues its flush), as RocksDB's write buffer
            // manager does.
            if self.keyspaces().all(|k| k.sealed_memtable_count() == 0) {
                if let Some(k) = self
                    .keyspaces()
                    .max_by_key(|k| k.tree.active_memtable().size())
                {
                    // An error here is the store's own failure; the write
                    // that follows reports it.
                    let _ = k.rotate_memtable();
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_millis(5));
        }
        crate::internal_events::WriteBufferWaited {
            waited: started.elapsed(),
            overran,
        }
        .emit();
    }

    /// A reference's claim: (tracking code, content hash, the source
    /// position that first stored it — absent in stores written before
    /// it was kept).
    fn lookup_ref(&self, key: &[u8]) -> Result<Option<RefEntry>, StoreError> {
        match self.refs.get(key)? {
            None => Ok(None),
            Some(v) if v.len() >= 40 => Ok(Some(RefEntry {
                code: u64_of(&v[..8])?,
                hash: v[8..40].try_into().expect("32 bytes"),
                source: (v.len() > 40).then(|| v[40..].to_vec()),
            })),
            Some(_) => Err(StoreError::Corrupt(
                "refs value has the wrong length".into(),
            )),
        }
    }
}

/// A `refs` value: code (8 bytes, big-endian), content hash (32), then the
/// source position's ID (UTF-8, the rest; absent before format 4 stores).
#[derive(Clone)]
pub(super) struct RefEntry {
    pub code: u64,
    pub hash: [u8; 32],
    pub source: Option<Vec<u8>>,
}

impl FjallStore {
    /// Removes every key in the ranges `[lo, hi)`, in slices of 10,000
    /// keys per durable batch; how many.
    fn remove_ranges(
        &self,
        ks: &Keyspace,
        ranges: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<u64, StoreError> {
        let mut n = 0;
        for (lo, hi) in ranges {
            loop {
                let mut batch = self
                    .db
                    .batch()
                    .durability(Some(self.durability.persist_mode()));
                let mut taken = 0;
                for guard in ks.range(lo.clone()..hi.clone()).take(10_000) {
                    batch.remove(ks, guard.key()?.to_vec());
                    taken += 1;
                }
                if taken == 0 {
                    break;
                }
                batch.commit()?;
                n += taken;
            }
        }
        Ok(n)
    }

    /// Notes timers just made durable, for the next `due_timers`.
    fn wrote_timers<'a>(&self, timers: impl IntoIterator<Item = &'a Timer>) {
        let mut b = self.behind.lock().unwrap_or_else(|p| p.into_inner());
        for t in timers {
            let slot = &mut b[t.slot as usize];
            *slot = (*slot).min(t.due_ms);
        }
    }
}

/// The error for a store whose journal cannot be read back.
fn damaged_journal(path: &Path, why: &str) -> StoreError {
    StoreError::Damaged(format!(
        "the store at {} cannot be opened: its journal is damaged ({why}). Do not work around it: keep a copy of the directory for investigation and restore the store from a backup",
        path.display()
    ))
}

impl Drop for FjallStore {
    fn drop(&mut self) {
        // The last durable state, for the check at the next open.
        let mut st = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.write_hint(&mut st, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rejections and dead letters past the retention are purged, every
    /// agency's and the unattributed ones; newer ones stay.
    #[test]
    fn old_rejections_and_dead_letters_are_purged() {
        use crate::store::conformance::rejection;
        use karpoosheh_schemas::SourcePosition;
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(FjallStoreConfig::new(dir.path())).unwrap();
        let dead = |n: u8| {
            Entry::DeadLetter(crate::model::dead_letter(
                &[n],
                1,
                SourcePosition::InProcess { sequence: n as u64 },
                None,
                vec![Problem::new(Reason::MalformedJson, None, "x")],
                chrono::Utc::now(),
            ))
        };
        store
            .write(&[
                rejection(Some("tax"), "old-1", Reason::BadCheckDigit),
                rejection(None, "old-2", Reason::BadCheckDigit),
                dead(1),
            ])
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let cut = chrono::Utc::now();
        std::thread::sleep(std::time::Duration::from_millis(5));
        store
            .write(&[
                rejection(Some("tax"), "new-1", Reason::BadCheckDigit),
                rejection(Some("judiciary"), "new-2", Reason::BadCheckDigit),
                dead(2),
            ])
            .unwrap();
        assert_eq!(store.purge_traffic(cut).unwrap(), 3);
        let refs = |a: Option<&str>| -> Vec<String> {
            let a = a.map(|a| AgencyId::parse(a).unwrap());
            store
                .rejections(a.as_ref(), None, 10)
                .unwrap()
                .into_iter()
                .map(|r| r.rejection.reference.unwrap())
                .collect()
        };
        assert_eq!(refs(Some("tax")), ["new-1"]);
        assert_eq!(refs(Some("judiciary")), ["new-2"]);
        assert!(refs(None).is_empty(), "unattributed ones too");
        let dl = store.dead_letters(None, 10).unwrap();
        assert_eq!(dl.len(), 1);
        assert_eq!(dl[0].1.source, SourcePosition::InProcess { sequence: 2 });
        assert_eq!(
            store.purge_traffic(cut).unwrap(),
            0,
            "nothing left to purge"
        );
    }

    /// A store configuration for `dir` without fsyncs (tests only).
    fn buffered(dir: &Path) -> FjallStoreConfig {
        let mut cfg = FjallStoreConfig::new(dir);
        cfg.durability = Durability::Buffered;
        cfg
    }

    /// Where the journal's batches start: after each batch's end marker
    /// (tag 3, its checksum, fjall's magic bytes `FJL\x03`).
    fn batch_starts(journal: &[u8]) -> Vec<usize> {
        journal
            .windows(4)
            .enumerate()
            .filter(|(i, w)| *w == b"FJL\x03" && *i >= 9 && journal[i - 9] == 3)
            .map(|(i, _)| i + 4)
            .collect()
    }

    /// A journal damaged before its end loses every batch after the damage
    /// (fjall truncates it there, as if it were a torn tail); the store
    /// would open without them. The durable hint catches it: refused,
    /// saying what was lost. An intact store reopens.
    #[test]
    fn a_journal_damaged_in_the_middle_is_refused_at_open() {
        use crate::store::NoticeStore;
        let dir = tempfile::tempdir().unwrap();
        let cfg = FjallStoreConfig::new(dir.path());
        assert_eq!(cfg.durability, Durability::SyncData);
        let entries = crate::store::conformance::sample_entries(3000);
        {
            let store = FjallStore::open(cfg.clone()).unwrap();
            for chunk in entries.chunks(300) {
                store.write(chunk).unwrap();
            }
        }
        // Intact: reopens, as often as asked.
        let mut last = None;
        for _ in 0..2 {
            let store = FjallStore::open(cfg.clone()).expect("an intact store opens");
            last = store.last_tracking_code().unwrap();
        }
        let journal = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "jnl"))
            .expect("a journal");
        let mut bytes = std::fs::read(&journal).unwrap();
        let written = bytes.iter().rposition(|&b| b != 0).expect("written") + 1;
        assert!(
            written > 100_000,
            "the notices are in the journal ({written} bytes)"
        );
        let original = bytes.clone();
        // (a) A value's bytes go bad (a reference inside a stored notice),
        // a third of the way in: its batch no longer checks out, and fjall
        // refuses the journal.
        let at = written / 3
            + bytes[written / 3..written]
                .windows(4)
                .position(|w| w == b"ref-")
                .expect("a reference in the journal's later part");
        for b in &mut bytes[at..at + 4] {
            *b ^= 0x5a;
        }
        std::fs::write(&journal, &bytes).unwrap();
        let err = match FjallStore::open(cfg.clone()) {
            Ok(_) => panic!("a store with a damaged journal opened"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("its journal is damaged"), "{err}");
        assert!(!err.contains("disk space"), "no misleading advice: {err}");
        // (b) The damage is taken for the end of the journal (a batch's
        // start overwritten): fjall truncates there and would open without
        // every later batch. The durable hint catches it.
        let mut bytes = original;
        let starts = batch_starts(&bytes[..written]);
        assert!(starts.len() >= 9, "a batch per write: {}", starts.len());
        let start = starts[3];
        bytes[start..start + 64].fill(0);
        std::fs::write(&journal, &bytes).unwrap();
        let err = match FjallStore::open(cfg.clone()) {
            Ok(_) => panic!("a store that lost acknowledged notices opened"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("has lost writes it had acknowledged"), "{err}");
        assert!(err.contains("notices: it ends at tracking code"), "{err}");
        assert!(
            err.contains("durable-hint"),
            "says how to accept the loss: {err}"
        );
        // Refused again (the hint stays), until the operator deletes it.
        assert!(FjallStore::open(cfg.clone()).is_err());
        std::fs::remove_file(dir.path().join(hint::HINT_FILE)).unwrap();
        let store = FjallStore::open(cfg).expect("accepted as it is");
        // What fjall alone would have opened without a word: the batches
        // before the damage only.
        let now = store.last_tracking_code().unwrap();
        assert!(now.is_some() && now < last, "{now:?} < {last:?}");
    }

    /// A bounded fuzz run in every test run: the stored-record decoders
    /// meet damaged copies of real records (bytes flipped, cut short,
    /// lengthened, the format byte changed) and plain noise. Each answers
    /// a record or an error -- never a panic, never an allocation beyond
    /// the input's means (the test would abort).
    #[test]
    fn stored_record_decoders_survive_damaged_bytes() {
        use crate::model::DeliveryWrite;
        use crate::store::{DeliveryStore, NoticeStore, ParkingStore, QuarantineStore};
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(buffered(dir.path())).unwrap();
        let mut entries = crate::store::conformance::sample_entries(20);
        entries.push(crate::store::conformance::rejection(
            Some("tax"),
            "bad",
            Reason::BadCheckDigit,
        ));
        store.write(&entries).unwrap();
        let receipt = crate::store::conformance::receipt("tax", 1);
        store
            .write_delivery(&[DeliveryWrite {
                receipts: vec![receipt.clone()],
                ..Default::default()
            }])
            .unwrap();
        store.park(&receipt.agency.clone(), &[receipt]).unwrap();
        crate::store::set_aside(
            &store,
            "outbox_receipt",
            "1".into(),
            &StoreError::Corrupt("x".into()),
            b"{x",
            String::new(),
        )
        .unwrap();
        // Real records of every kind the check decodes.
        let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();
        for (name, ks) in [
            ("notices", &store.notices),
            ("delivery", &store.delivery),
            ("outbox", &store.outbox),
            ("rejections", &store.rejections),
            ("quarantine", &store.quarantine),
        ] {
            for g in ks.iter().take(5) {
                seeds.push((name, g.into_inner().unwrap().1.to_vec()));
            }
        }
        assert!(seeds.len() >= 12, "{} seeds", seeds.len());
        let decoder = |name: &str| {
            check::DECODERS
                .iter()
                .find(|d| d.0 == name)
                .map(|d| d.1)
                .unwrap()
        };
        // xorshift64*: the same run every time.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let (mut ok, mut refused) = (0u32, 0u32);
        for _ in 0..100_000 {
            let (name, seed) = &seeds[(next() % seeds.len() as u64) as usize];
            let mut b = seed.clone();
            match next() % 5 {
                0 => {
                    for _ in 0..1 + next() % 4 {
                        let i = (next() % b.len() as u64) as usize;
                        b[i] ^= 1 << (next() % 8);
                    }
                }
                1 => b.truncate((next() % b.len() as u64) as usize),
                2 => {
                    let i = (next() % b.len() as u64) as usize;
                    b.splice(i..i, (0..1 + next() % 16).map(|_| next() as u8));
                }
                3 => b[0] = next() as u8,
                _ => {
                    b = (0..next() % 64).map(|_| next() as u8).collect();
                }
            }
            // Every decoder, not only the record's own: a key space's
            // bytes may meet another's reader after a bug.
            for d in check::DECODERS {
                let _ = d.1(&b);
            }
            match decoder(name)(&b) {
                Ok(()) => ok += 1,
                Err(_) => refused += 1,
            }
        }
        assert!(
            refused > 50_000,
            "most damage is refused ({ok} read, {refused} refused)"
        );
        assert_eq!(store.quarantined(5).unwrap().len(), 1);
    }

    /// `store check` reads everything back: a clean store has no problem;
    /// a notice and a profile that no longer decode, and a high-water mark
    /// below a stored notice, are each named (a profile's key, a
    /// mailbox's, is not shown).
    #[test]
    fn the_check_names_what_does_not_read_back() {
        use crate::store::NoticeStore;
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(buffered(dir.path())).unwrap();
        store
            .write(&crate::store::conformance::sample_entries(50))
            .unwrap();
        let clean = store.check(10);
        assert_eq!(clean.problem_count, 0, "{:?}", clean.problems);
        let notices = clean
            .keyspaces
            .iter()
            .find(|k| k.name == "notices")
            .unwrap();
        assert_eq!((notices.records, notices.unreadable), (50, 0));
        let code = store.last_tracking_code().unwrap().unwrap();
        store
            .notices
            .insert(code.as_u64().to_be_bytes(), [FORMAT, 0xff])
            .unwrap();
        store
            .profiles
            .insert([7u8; 9], [FORMAT_JSON, b'{'])
            .unwrap();
        // The mark falls below the highest notice (as after a bad restore).
        store.writer.lock().unwrap().last_tracking = Some(code.as_u64() - 1);
        let r = store.check(10);
        assert_eq!(r.problem_count, 3, "{:?}", r.problems);
        let text = r.problems.join("\n");
        assert!(
            text.contains(&format!("notices: key {:016x}", code.as_u64())),
            "{text}"
        );
        assert!(
            text.contains("profiles: key (a mailbox's, not shown)"),
            "{text}"
        );
        assert!(!text.contains("070707"), "no mailbox key: {text}");
        assert!(text.contains("codes would be issued twice"), "{text}");
        assert_eq!(
            r.keyspaces
                .iter()
                .find(|k| k.name == "notices")
                .unwrap()
                .unreadable,
            1
        );
        assert_eq!(store.check(1).problems.len(), 1, "at most `show` described");
        assert_eq!(store.check(1).problem_count, 3, "all counted");
    }

    /// An outbox receipt that cannot be read is set aside and removed,
    /// so the receipts behind it are published; it is listed with its
    /// bytes and the error, and survives a restart.
    #[test]
    fn an_unreadable_outbox_receipt_is_quarantined() {
        use crate::model::DeliveryWrite;
        use crate::store::{DeliveryStore, QuarantineStore};
        let dir = tempfile::tempdir().unwrap();
        let cfg = buffered(dir.path());
        let store = FjallStore::open(cfg.clone()).unwrap();
        let receipt = |i: u8| crate::store::conformance::receipt("tax", i);
        store
            .write_delivery(&[DeliveryWrite {
                receipts: vec![receipt(1), receipt(2), receipt(3)],
                ..Default::default()
            }])
            .unwrap();
        let ids: Vec<u64> = store
            .outbox(None, 10)
            .unwrap()
            .iter()
            .map(|x| x.0)
            .collect();
        // The middle one's bytes go bad (a torn write, a flipped bit).
        store
            .outbox
            .insert(ids[1].to_be_bytes(), [FORMAT_JSON, b'{', b'x'])
            .unwrap();
        let out = store.outbox(None, 10).unwrap();
        let got: Vec<_> = out.iter().map(|x| x.1.receipt_id.as_str()).collect();
        assert_eq!(got, ["tax-r1", "tax-r3"], "the others are published");
        assert_eq!(
            store.outbox(None, 10).unwrap().len(),
            2,
            "it is gone from the outbox"
        );
        drop(store);
        let store = FjallStore::open(cfg).unwrap();
        let q = store.quarantined(10).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].kind, "outbox_receipt");
        assert_eq!(q[0].key, ids[1].to_string());
        assert!(q[0].error.contains("outbox receipt"), "{}", q[0].error);
        use base64::Engine as _;
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&q[0].bytes_b64)
                .unwrap(),
            [FORMAT_JSON, b'{', b'x'],
            "kept as it was"
        );
    }

    #[test]
    fn conformance_on_fjall() {
        crate::store::conformance::run_all(&mut |_name| {
            let dir = tempfile::tempdir().unwrap();
            let store = FjallStore::open(buffered(dir.path())).unwrap();
            (
                Box::new(store) as Box<dyn crate::store::Store>,
                Box::new(dir) as Box<dyn std::any::Any>,
            )
        });
    }

    /// Whoever can write the store's files can rewrite an event; the chain
    /// says which one. Here the events are rewritten under the engine's
    /// API, straight into the keyspace, and the store reopened from disk.
    #[test]
    fn a_rewritten_or_removed_event_breaks_the_chain_where_it_was() {
        use crate::model::DeliveryWrite;
        use karpoosheh_schemas::{Receipt, ReceiptEvent};
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let mut cfg = FjallStoreConfig::new(dir.path());
            cfg.durability = Durability::SyncAll;
            FjallStore::open(cfg).unwrap()
        };
        let store = open();
        let entries = crate::store::conformance::sample_entries(1);
        store.write(&entries).unwrap();
        let Entry::Notice(n) = &entries[0] else {
            unreachable!()
        };
        let code = n.tracking_code;
        let receipts = (1..=3)
            .map(|i| {
                Receipt::new(
                    format!("{code}-{i}"),
                    n.notice.agency.clone(),
                    Some(n.notice.reference.clone()),
                    crate::store::conformance::t0(),
                    ReceiptEvent::Confirmed {
                        tracking_code: code,
                        count: i,
                    },
                )
            })
            .collect();
        store
            .write_delivery(&[DeliveryWrite {
                receipts,
                ..Default::default()
            }])
            .unwrap();
        assert!(chain::verify(&store.events(code).unwrap()).is_ok());
        // Event 3's `count` changed from 2 to 1, its bytes only.
        let key = event_key(code.as_u64(), 3);
        let mut v = store.events.get(key).unwrap().unwrap().to_vec();
        let at = v.len() - v[64..].iter().rev().position(|&b| b == b'2').unwrap() - 1;
        v[at] = b'1';
        store.events.insert(key, v.clone()).unwrap();
        store.db.persist(PersistMode::SyncAll).unwrap();
        drop(store);
        let store = open();
        let broken = chain::verify(&store.events(code).unwrap()).unwrap_err();
        assert_eq!(broken.seq, 3, "{broken}");
        assert!(broken.problem.contains("edited"), "{broken}");
        // Its hash recomputed too: then event 4's link breaks.
        let e = StoredEvent::decode(3, &v).unwrap();
        let fixed = StoredEvent {
            hash: chain::link(&e.prev, &e.bytes),
            ..e
        };
        store.events.insert(key, fixed.encode()).unwrap();
        assert_eq!(
            chain::verify(&store.events(code).unwrap()).unwrap_err().seq,
            4
        );
        // Removed: the chain says which number is missing.
        store.events.remove(key).unwrap();
        let broken = chain::verify(&store.events(code).unwrap()).unwrap_err();
        assert_eq!(broken.seq, 3, "{broken}");
        assert!(broken.problem.contains("missing"), "{broken}");
    }

    /// Records encode their timestamps by hand (karpoosheh_schemas::rfc3339);
    /// the stored bytes are the ones chrono's own `Serialize` gave, so
    /// stores written before read the same.
    #[test]
    fn stored_timestamps_are_the_bytes_chrono_wrote() {
        use chrono::{Duration, Utc};
        #[derive(Serialize)]
        struct Fast(
            #[serde(serialize_with = "karpoosheh_schemas::rfc3339::serialize")]
            chrono::DateTime<Utc>,
        );
        let t0 = crate::store::conformance::t0();
        for t in [
            t0,
            t0 + Duration::milliseconds(7),
            t0 + Duration::microseconds(7),
            t0 + Duration::nanoseconds(7),
            Utc::now(),
        ] {
            assert_eq!(
                postcard::to_stdvec(&Fast(t)).unwrap(),
                postcard::to_stdvec(&t).unwrap(),
                "{t:?}"
            );
        }
    }

    #[test]
    fn records_encoded_in_a_reused_buffer_are_the_same_bytes() {
        use crate::store::conformance::{notice, person, t0};
        let n = notice("tax", "r", person(830_000_001), "متن بلندتر از بافر");
        let code = TrackingCode::from_parts(t0().timestamp_millis(), 1, 1);
        let hash = n.content_hash();
        let record = StoredNoticeRef {
            tracking_code: code,
            accepted_at: &t0(),
            content_hash: &hash,
            notice: &n,
        };
        let rec = DeliveryRecord::new(
            code,
            &n,
            t0(),
            karpoosheh_schemas::Priority::Bulk,
            None,
            None,
        );
        let mut buf = vec![0xAA; 3]; // cleared, not appended to
        let whole = [vec![FORMAT], postcard::to_stdvec(&record).unwrap()].concat();
        assert_eq!(encode_in(&mut buf, FORMAT, &record), &whole[..]);
        let whole = [vec![FORMAT_DELIVERY_V6], postcard::to_stdvec(&rec).unwrap()].concat();
        assert_eq!(encode_in(&mut buf, FORMAT_DELIVERY_V6, &rec), &whole[..]);
        // Shorter after longer: the tail of the longer one is gone.
        assert_eq!(encode_in(&mut buf, FORMAT, &1u8), &[FORMAT, 1][..]);
    }

    #[test]
    fn delivery_records_of_format_3_are_still_read() {
        use crate::store::conformance::{notice, person, t0};
        let n = notice("tax", "r", person(830_000_001), "متن");
        let code = TrackingCode::from_parts(t0().timestamp_millis(), 1, 1);
        let rec = DeliveryRecord::new(
            code,
            &n,
            t0(),
            karpoosheh_schemas::Priority::Normal,
            None,
            None,
        );
        // Format 3 is format 7 without the two trailing (empty) lists,
        // each one length byte in postcard, the lane (normal: variant 1),
        // the pace flag (false: 0), the two options of a response
        // deadline (`None`: 0 each) and the queue (`None`: 0); format 4 is
        // format 7 without the lane, the flag and the options; format 5
        // without the options; format 6 without the queue. Each older one
        // reads as queue 0, where its timers were stored.
        let v7 = postcard::to_stdvec(&rec).unwrap();
        assert_eq!(&v7[v7.len() - 7..], &[0, 0, 1, 0, 0, 0, 0]);
        let mut old = rec.clone();
        old.queue = Some(0);
        for (format, cut) in [
            (FORMAT_DELIVERY_V2, 7),
            (FORMAT_DELIVERY_V3, 5),
            (FORMAT_DELIVERY_V4, 3),
            (FORMAT_DELIVERY_V5, 1),
        ] {
            let bytes = [&[format][..], &v7[..v7.len() - cut]].concat();
            assert_eq!(decode_delivery(&bytes).unwrap(), old, "format {format}");
        }
        assert_eq!(decode_delivery(&encode_delivery(&rec)).unwrap(), rec);
        let mut pinned = rec.clone();
        pinned.queue = Some(4);
        assert_eq!(decode_delivery(&encode_delivery(&pinned)).unwrap(), pinned);
        // The lane survives its own format.
        let urgent = DeliveryRecord::new(
            code,
            &n,
            t0(),
            karpoosheh_schemas::Priority::Urgent,
            None,
            None,
        );
        assert_eq!(decode_delivery(&encode_delivery(&urgent)).unwrap(), urgent);
        // And a response deadline its own.
        let mut deadline = rec.clone();
        deadline.respond_by = Some(t0() + chrono::Duration::days(9));
        deadline.reminded = Some(t0() + chrono::Duration::days(7));
        assert_eq!(
            decode_delivery(&encode_delivery(&deadline)).unwrap(),
            deadline
        );
    }

    #[test]
    fn writes_keep_all_memtables_within_the_write_buffer_budget() {
        use crate::store::conformance::{new_notice, notice, person};
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = FjallStoreConfig::new(dir.path());
        cfg.durability = Durability::Buffered;
        // Memtables that never fill on their own here: only the budget
        // (sealing the largest memtable) keeps the sum down.
        cfg.memtable_bytes = 64 << 20;
        cfg.write_buffer_bytes = 2 << 20;
        let s = FjallStore::open(cfg).unwrap();
        let body = "م".repeat(2000); // 4 KB
        let mut highest = 0;
        for b in 0..60u16 {
            let batch: Vec<Entry> = (0..100u16)
                .map(|i| {
                    let seq = b * 100 + i + 1;
                    let n = notice(
                        "tax",
                        &format!("r{seq}"),
                        person(100_000_001 + seq as u32),
                        &body,
                    );
                    new_notice(n, seq)
                })
                .collect();
            let out = s.write(&batch).unwrap();
            assert!(out.iter().all(|o| *o == Outcome::Stored));
            highest = highest.max(s.db.write_buffer_size());
        }
        // 24 MB written; each write starts within the budget and adds one
        // batch (~0.5 MB with its index entries).
        assert!(
            highest <= (2 << 20) + (1 << 20),
            "write buffer reached {highest} bytes against a 2 MiB budget"
        );
        let Entry::Notice(first) = new_notice(notice("tax", "r1", person(100_000_002), &body), 1)
        else {
            unreachable!()
        };
        assert_eq!(
            s.notice(first.tracking_code).unwrap().unwrap().notice.body,
            body
        );
    }

    #[test]
    fn filters_only_where_point_reads_are() {
        use crate::store::conformance::{dead_letter, new_notice, notice, person, rejection};
        let dir = tempfile::tempdir().unwrap();
        let s = FjallStore::open(buffered(dir.path())).unwrap();
        let mut batch: Vec<Entry> = (1..=200u32)
            .map(|i| {
                new_notice(
                    notice("tax", &format!("r{i}"), person(100_000_001 + i), "body"),
                    i as u16,
                )
            })
            .collect();
        batch.push(rejection(Some("tax"), "bad-1", Reason::MalformedJson));
        batch.push(dead_letter(1));
        let outcomes = s.write(&batch).unwrap();
        assert!(outcomes[..200].iter().all(|o| *o == Outcome::Stored));
        // Mailbox listings, the timer wheel, rejections and dead letters
        // are read by range only: no filter to build or hold.
        let ranged = [&s.mailbox, &s.timers, &s.rejections, &s.dead_letters];
        // Reference checks, notice and delivery lookups are point reads.
        let point = [&s.refs, &s.notices, &s.delivery];
        for k in ranged.iter().chain(&point) {
            k.rotate_memtable_and_wait().unwrap();
            assert_eq!(k.table_count(), 1);
        }
        for k in ranged {
            assert_eq!(k.tree.filter_size(), 0, "{} has a filter", k.name());
        }
        for k in point {
            assert!(k.tree.filter_size() > 0, "{} has no filter", k.name());
        }
        // And the listing still works.
        let page = s.mailbox(person(100_000_002), None, 10).unwrap();
        assert_eq!(page.notices.len(), 1);
    }

    #[test]
    fn reopen_keeps_everything_and_high_water_marks() {
        let dir = tempfile::tempdir().unwrap();
        let open = || FjallStore::open(FjallStoreConfig::new(dir.path())).unwrap();
        let entries = crate::store::conformance::sample_entries(3);
        {
            let s = open();
            let out = s.write(&entries).unwrap();
            assert!(out.iter().all(|o| *o == Outcome::Stored));
        }
        let s = open();
        let Entry::Notice(last) = &entries[2] else {
            unreachable!()
        };
        assert_eq!(s.last_tracking_code().unwrap(), Some(last.tracking_code));
        assert_eq!(
            s.notice(last.tracking_code).unwrap().unwrap().notice,
            last.notice
        );
        // A re-send after restart is still recognised.
        let again = s.write(&entries[..1]).unwrap();
        assert!(matches!(again[0], Outcome::Duplicate { .. }));
    }

    #[test]
    fn format_1_delivery_records_are_still_read() {
        let Entry::Notice(n) = &crate::store::conformance::sample_entries(1)[0] else {
            unreachable!()
        };
        let mut rec = n.delivery_record();
        let mut v1 = vec![FORMAT];
        // Format 1 is today's record without the title: serialise a copy
        // with the title field cut out of the postcard bytes.
        let with_title = postcard::to_stdvec(&rec).unwrap();
        let prefix = postcard::to_stdvec(&(
            rec.tracking_code,
            &rec.agency,
            &rec.reference,
            rec.recipient,
            rec.kind,
        ))
        .unwrap();
        let title = postcard::to_stdvec(&rec.title).unwrap();
        v1.extend_from_slice(&with_title[..prefix.len()]);
        v1.extend_from_slice(&with_title[prefix.len() + title.len()..]);
        let old = decode_delivery(&v1).unwrap();
        rec.title.clear();
        // Stored before agencies' queues: in queue 0, where its timers are.
        rec.queue = Some(0);
        assert_eq!(old, rec);
        assert_eq!(decode_delivery(&encode_delivery(&rec)).unwrap(), rec);
    }

    #[test]
    fn second_open_of_same_path_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let _a = FjallStore::open(FjallStoreConfig::new(dir.path())).unwrap();
        match FjallStore::open(FjallStoreConfig::new(dir.path())) {
            Err(StoreError::Locked(p)) => assert!(p.contains(dir.path().to_str().unwrap())),
            Err(other) => panic!("expected Locked, got {other}"),
            Ok(_) => panic!("a second open of a locked store succeeded"),
        }
    }
}
