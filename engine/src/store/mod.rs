//! Mailbox stores: where notices, rejections and dead letters are kept.
//!
//! One trait per aggregate -- [`NoticeStore`] (notices, rejections, dead
//! letters), [`DeliveryStore`] (the article-29 follow-up) and
//! [`ProfileStore`] (mailbox profiles) -- which every backend implements
//! over one storage, so together they make a [`Store`]. One folder per
//! backend, one file per aggregate in each: [`FjallStore`] (embedded, one
//! machine) and [`scylla::ScyllaStore`] (a cluster shared by the fleet).
//! Every backend must pass [`conformance`], which pins the semantics the
//! pipeline and the scheduler rely on:
//! - [`NoticeStore::write`], when it returns `Ok`, is durable to the configured
//!   level: the pipeline acknowledges its source only after it. A write
//!   that fails is retried with the same entries; the embedded store's
//!   writes are atomic, a cluster's may be partly applied and then must be
//!   completed by the retry (or, after a crash, by the re-delivery).
//! - Writes are idempotent on (agency, reference): an exact re-send
//!   (same content hash) is absorbed and answered with the original
//!   tracking code; a different content is a conflict, the original is
//!   kept and the conflict is recorded as a rejection for the agency.
//! - Mailbox listings are newest first, paged by tracking code.
//! - A newly stored notice is written together with its delivery record
//!   and its timers (round 1 due at once, and its expiry), so the
//!   article-29 follow-up can never miss a stored notice.
//! - [`DeliveryStore::write_delivery`] is durable like `write`; the receipts it
//!   carries land in an outbox read back in order. A partly applied one
//!   may repeat a round or a receipt when redone, never lose one.
//! - Mailbox profiles (from the compacted registry topic) are kept one per
//!   mailbox; a profile never replaces a stored one with a newer
//!   `updated_at`, so a re-delivered old version cannot undo a new one.

mod config;
pub mod conformance;
#[cfg(test)]
pub(crate) mod faulty;
mod fjall;
pub mod scylla;

use chrono::{DateTime, Utc};
use karpoosheh_schemas::{AgencyId, DeadLetter, MailboxId, MailboxProfile, Receipt, TrackingCode};

use crate::model::{
    DeliveryRecord, DeliveryWrite, Entry, MailboxPage, Outcome, StoredEvent, StoredNotice,
    StoredRejection, Timer,
};

pub use self::config::{StoreBackend, StoreConfig};
pub use self::fjall::{CheckReport, Durability, FjallStore, FjallStoreConfig};

/// Errors of a store backend. Input problems are never errors: they are
/// rejections, kept as data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("embedded store I/O failed: {0} (check disk space and permissions of store.path)")]
    Fjall(#[from] ::fjall::Error),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("a stored record is corrupt or from an unknown format version ({0}); restore from backup or report a bug")]
    Corrupt(String),
    /// The store as a whole is damaged (its journal), or has lost writes
    /// it had acknowledged: it must not be run on. The text says what to do.
    #[error("{0}")]
    Damaged(String),
    #[error("the store at {0} is locked by another karpoosheh process; stop it first or use another store.path")]
    Locked(String),
    #[error(transparent)]
    Scylla(#[from] self::scylla::ScyllaError),
}

impl StoreError {
    /// Whether the store will refuse every later write as well, so that
    /// retrying is pointless and only a restart (which recovers from the
    /// journal) helps. fjall poisons the database when a journal write or
    /// a flush fails -- a full disk, an I/O error -- because after a failed
    /// fsync it can no longer tell what reached the disk.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            StoreError::Fjall(::fjall::Error::Poisoned | ::fjall::Error::Unrecoverable)
        )
    }
}

/// Approximate sizes, for reports and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub disk_bytes: u64,
    pub notices_approx: u64,
    /// Bytes in memtables (active and sealed, not yet flushed), over all
    /// keyspaces; 0 where the backend keeps no write buffer of its own.
    pub write_buffer_bytes: u64,
    /// Bytes held by the block cache (at most `store.cache_size`).
    pub cache_bytes: u64,
    /// Journal files not yet truncated (their memtables wait to be flushed).
    pub journal_files: u64,
    /// Index and filter blocks kept in memory outside the block cache.
    pub pinned_bytes: u64,
    /// Table files over all keyspaces.
    pub tables: u64,
}

/// A page of an agency's (reference, tracking code), and the cursor of
/// the next page (`None`: the end).
pub type ReferencePage = (Vec<(String, TrackingCode)>, Option<String>);

/// Notices, rejections and dead letters: what ingest writes and the read
/// path lists. Implementations are shared between threads; `write` calls
/// are serialised by the pipeline's single committer, but a backend must
/// stay correct if they are not.
pub trait NoticeStore: Send + Sync {
    /// Writes entries atomically and durably; see the module docs for the
    /// idempotency rules. Returns one outcome per entry, in order.
    fn write(&self, entries: &[Entry]) -> Result<Vec<Outcome>, StoreError>;

    /// A notice by tracking code.
    fn notice(&self, code: TrackingCode) -> Result<Option<StoredNotice>, StoreError>;

    /// A mailbox's notices, newest first: up to `limit` notices older than
    /// `before` (or the newest when `None`).
    fn mailbox(
        &self,
        id: MailboxId,
        before: Option<TrackingCode>,
        limit: usize,
    ) -> Result<MailboxPage, StoreError>;

    /// The tracking code stored for an agency's reference.
    fn reference(
        &self,
        agency: &AgencyId,
        reference: &str,
    ) -> Result<Option<TrackingCode>, StoreError>;

    /// An agency's references and their tracking codes ([`ReferencePage`]),
    /// a page of at most
    /// `limit` from the opaque cursor `after` (the `next` of the previous
    /// page; `None`: from the start), and the next page's cursor (`None`:
    /// the end). For `receipts replay`: the embedded store reads the
    /// agency's own index; ScyllaDB, whose references are keyed by
    /// (agency, reference), walks the whole table's token ranges.
    fn agency_references(
        &self,
        agency: &AgencyId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ReferencePage, StoreError>;

    /// Kept rejections for an agency (`None`: unattributed), oldest first,
    /// after the rejection ID `after`.
    fn rejections(
        &self,
        agency: Option<&AgencyId>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredRejection>, StoreError>;

    /// The newest kept rejections for an agency (`None`: unattributed),
    /// newest first, at most `limit`: what an operator looking at an
    /// agency's rejections now wants to see.
    fn latest_rejections(
        &self,
        agency: Option<&AgencyId>,
        limit: usize,
    ) -> Result<Vec<StoredRejection>, StoreError>;

    /// Kept dead letters, oldest first, after the ID `after`.
    fn dead_letters(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, DeadLetter)>, StoreError>;

    /// The highest tracking code ever stored, so a restarted node never
    /// issues a code twice even if its clock went back.
    fn last_tracking_code(&self) -> Result<Option<TrackingCode>, StoreError>;

    /// The highest tracking code of this node whose `accepted` receipt is
    /// known to be out (`sink::AcceptedOut`), as last marked; `None`
    /// before the first mark. After a crash, the notices above it and up
    /// to [`Self::last_tracking_code`] may be stored with no answer yet.
    fn accepted_out(&self) -> Result<Option<TrackingCode>, StoreError>;

    /// Marks `code` as the highest whose `accepted` is out. Not synced on
    /// its own (the next durable write syncs it): a mark lost with the
    /// machine is lower, which only holds events longer after a restart.
    fn mark_accepted_out(&self, code: TrackingCode) -> Result<(), StoreError>;

    /// Removes the rejections and dead letters kept from before `before`
    /// (traffic data: `store.traffic_retention`); how many. A backend
    /// whose rows expire on their own (ScyllaDB's TTL) removes none here.
    fn purge_traffic(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Approximate sizes.
    fn stats(&self) -> StoreStats;
}

/// The article-29 follow-up (see `crate::delivery`): delivery records,
/// durable timers, the receipts outbox and applied confirmations.
pub trait DeliveryStore: Send + Sync {
    /// Timers of timer slot `slot` (a shard in a queue, `model::timer_slot`)
    /// due from `from_ms` up to and including `now_ms`, earliest first, at
    /// most `limit`. (`from_ms` lets the scheduler skip the head of a slot
    /// it has just emptied: an LSM range scan otherwise walks every deleted
    /// timer there.) `from_ms = i64::MIN` reads the whole slot. The answer
    /// also holds the timers due before `from_ms` that this store wrote
    /// since its previous call for the slot (the first call after opening
    /// reads the whole slot), so a scan from a cursor sees a timer written
    /// behind it.
    fn due_timers(
        &self,
        slot: u8,
        from_ms: i64,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<Timer>, StoreError>;

    /// Whether this store has written a timer into `slot` since its last
    /// [`DeliveryStore::due_timers`] call for the slot (or had none yet):
    /// the scheduler reads an idle slot at once only then. `true` when a
    /// store cannot tell.
    fn timers_written(&self, slot: u8) -> bool {
        let _ = slot;
        true
    }

    /// A notice's delivery record.
    fn delivery(&self, code: TrackingCode) -> Result<Option<DeliveryRecord>, StoreError>;

    /// Applies follow-up changes atomically and durably. Each write's
    /// receipts are events of its notice: they are appended to the
    /// notice's hash chain (evidence::chain) in the same write, and go to
    /// the outbox with their chain link.
    fn write_delivery(&self, writes: &[DeliveryWrite]) -> Result<(), StoreError>;

    /// A notice's events, in order: its hash chain (the first, `accepted`,
    /// is appended with the notice; the others by [`Self::write_delivery`]).
    /// Kept as long as the delivery record, then removed with it.
    fn events(&self, code: TrackingCode) -> Result<Vec<StoredEvent>, StoreError>;

    /// Receipts waiting to be published, oldest first, after outbox ID `after`.
    fn outbox(&self, after: Option<u64>, limit: usize) -> Result<Vec<(u64, Receipt)>, StoreError>;

    /// Forgets published receipts.
    fn outbox_remove(&self, ids: &[u64]) -> Result<(), StoreError>;

    /// The notice a confirmation ID was applied to, if it was.
    fn confirmation(&self, id: &str) -> Result<Option<TrackingCode>, StoreError>;

    /// Notices of a mailbox waiting for it to become reachable (activated,
    /// or its profile corrected after it was found unreachable), oldest
    /// first: those this node follows up (on a store shared by a fleet, the ones
    /// whose tracking code it issued; each node activates its own).
    fn awaiting_activation(
        &self,
        id: MailboxId,
        limit: usize,
    ) -> Result<Vec<TrackingCode>, StoreError>;
}

/// Mailbox profiles from the registry topic, one per mailbox.
pub trait ProfileStore: Send + Sync {
    /// Writes mailbox profiles atomically and durably (like [`NoticeStore::write`]).
    /// A profile replaces the stored one for its mailbox unless the stored
    /// one has a newer `updated_at` (equal times: the later write wins).
    /// Of several profiles for one mailbox in one call, the same rule
    /// applies in order. Returns, per profile, whether it was applied.
    fn put_profiles(&self, profiles: &[MailboxProfile]) -> Result<Vec<bool>, StoreError>;

    /// Removes mailboxes' profiles (a tombstone on the registry topic,
    /// with the tombstone's time), durably: a profile is removed unless its
    /// `updated_at` is newer than the removal, so a late tombstone cannot
    /// erase a later registration, whatever order the nodes of a fleet
    /// apply them in. Removing an absent profile is not an error.
    fn delete_profiles(&self, ids: &[(MailboxId, DateTime<Utc>)]) -> Result<(), StoreError>;

    /// A mailbox's profile, if the registry has sent one.
    fn profile(&self, id: MailboxId) -> Result<Option<MailboxProfile>, StoreError>;
}

/// The node's audit log (evidence::log): the signed receipt batches in
/// the order the node signed them, an index from each notice event to
/// the batch that carried it, and the signed tree heads. Append-only and
/// kept for good: retention never removes it.
pub trait AuditStore: Send + Sync {
    /// Writes `entries` (numbered by the caller, consecutively) to log
    /// `log`, with the index of their events. Durable like
    /// [`NoticeStore::write`] when it returns `Ok`; a retry with the same
    /// numbers overwrites what a failed call left.
    fn append_log(
        &self,
        log: u16,
        entries: &[crate::evidence::log::LogEntry],
    ) -> Result<(), StoreError>;

    /// Entries from index `from`, in order, at most `limit`, without their
    /// leaves and events.
    fn log_entries(
        &self,
        log: u16,
        from: u64,
        limit: usize,
    ) -> Result<Vec<crate::evidence::log::LogEntry>, StoreError>;

    /// One entry with its leaves.
    fn log_entry(
        &self,
        log: u16,
        index: u64,
    ) -> Result<Option<crate::evidence::log::LogEntry>, StoreError>;

    /// The entry (log, index) that carried event `seq` of a notice; the
    /// latest when its receipt was sealed again (re-sent after a crash).
    fn event_entry(&self, code: TrackingCode, seq: u32) -> Result<Option<(u16, u64)>, StoreError>;

    /// Keeps a signed tree head, as published (with its consistency proof).
    fn put_tree_head(&self, head: &crate::evidence::log::TreeHeadMessage)
        -> Result<(), StoreError>;

    /// Notes that the head of `size` batches was published (acknowledged
    /// on the audit topic): the next head proves consistency from it.
    fn mark_published(&self, log: u16, size: u64) -> Result<(), StoreError>;

    /// The size of the last head of a log that was published.
    fn last_published(&self, log: u16) -> Result<Option<u64>, StoreError>;

    /// The largest signed tree head of a log.
    fn last_tree_head(
        &self,
        log: u16,
    ) -> Result<Option<crate::evidence::log::TreeHeadMessage>, StoreError>;
}

/// How long traffic data is kept: the 1401 requirement's six months, as
/// 186 days, and no longer (it is personal data).
pub const ACCESS_RETENTION: std::time::Duration = std::time::Duration::from_secs(186 * 86_400);

/// Traffic data: every inbox API call that touched a mailbox, kept for
/// [`ACCESS_RETENTION`] and then purged.
pub trait AccessStore: Send + Sync {
    /// Keeps `records`. Written to the journal (not synced on its own:
    /// the next durable write syncs it), so a call costs no fsync.
    fn record_access(&self, records: &[crate::model::AccessRecord]) -> Result<(), StoreError>;

    /// A mailbox's records, newest first, at most `limit`.
    fn access_log(
        &self,
        mailbox: MailboxId,
        limit: usize,
    ) -> Result<Vec<crate::model::AccessRecord>, StoreError>;

    /// Removes the records from before `before`; how many. (A backend
    /// whose rows expire on their own removes none here.)
    fn purge_access(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Receipts an agency's receipt topic refused (missing, not authorised,
/// too large: `sink::parking`), kept on this node until the topic takes
/// them again, so that one failing agency never holds up the others.
/// Per node (on a shared store each node drains its own), oldest first
/// per agency, kept until delivered: they are receipts owed to an agency.
pub trait ParkingStore: Send + Sync {
    /// Appends `receipts` for `agency`, in order, durably (like
    /// [`NoticeStore::write`]) when it returns `Ok`.
    fn park(&self, agency: &AgencyId, receipts: &[Receipt]) -> Result<(), StoreError>;

    /// The oldest parked receipts of `agency`, at most `limit`, with their IDs.
    fn parked(&self, agency: &AgencyId, limit: usize) -> Result<Vec<(u64, Receipt)>, StoreError>;

    /// The oldest parked receipt of `agency`, for operators, read only:
    /// `None` when the lot is empty or that receipt cannot be read (the
    /// deliverer sets such a one aside, not a reader).
    fn oldest_parked(&self, agency: &AgencyId) -> Result<Option<Receipt>, StoreError>;

    /// Forgets delivered receipts.
    fn unpark(&self, agency: &AgencyId, ids: &[u64]) -> Result<(), StoreError>;

    /// The agencies with receipts parked on this node, and how many each.
    fn parked_agencies(&self) -> Result<Vec<(AgencyId, u64)>, StoreError>;
}

/// Stored records that could not be read back, set aside so that they
/// block nothing (the outbox and the scheduler go on past them). Per node,
/// oldest first, kept until an operator removes the node's store.
pub trait QuarantineStore: Send + Sync {
    /// Keeps `q` (its `id` is assigned here), durably.
    fn quarantine(&self, q: &crate::model::Quarantined) -> Result<(), StoreError>;

    /// What was set aside, oldest first, at most `limit`.
    fn quarantined(&self, limit: usize) -> Result<Vec<crate::model::Quarantined>, StoreError>;
}

/// Sets a record that cannot be read (or, a receipt, that its topic
/// refuses for good) aside: kept, counted and logged.
pub(crate) fn set_aside(
    store: &dyn QuarantineStore,
    kind: &'static str,
    key: String,
    error: &dyn std::fmt::Display,
    bytes: &[u8],
    detail: String,
) -> Result<(), StoreError> {
    use base64::Engine as _;
    let q = crate::model::Quarantined {
        id: 0,
        at: Utc::now(),
        kind: kind.to_owned(),
        key,
        error: error.to_string(),
        bytes_b64: base64::engine::general_purpose::STANDARD.encode(bytes),
        detail,
    };
    store.quarantine(&q)?;
    crate::internal_events::RecordQuarantined {
        kind,
        key: &q.key,
        error: &q.error,
    }
    .emit();
    Ok(())
}

/// A mailbox store backend: all four aggregates over one storage, so a
/// notice, its delivery record and its first timers are written together.
/// Every backend implements the three traits and gets this one.
pub trait Store:
    NoticeStore
    + DeliveryStore
    + ProfileStore
    + AuditStore
    + AccessStore
    + ParkingStore
    + QuarantineStore
{
}

impl<
        T: NoticeStore
            + DeliveryStore
            + ProfileStore
            + AuditStore
            + AccessStore
            + ParkingStore
            + QuarantineStore
            + ?Sized,
    > Store for T
{
}
