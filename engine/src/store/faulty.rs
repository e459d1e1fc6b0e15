//! A store that fails on purpose, for tests of what the engine does when
//! its store fails: it forwards everything to a real store, except the
//! failures it was told to return first.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use karpoosheh_schemas::{MailboxId, MailboxProfile, Receipt, TrackingCode};

use super::*;

pub struct Faulty {
    inner: Arc<dyn Store>,
    /// Returned by the next `write` calls, one per call, in order.
    write_errors: Mutex<VecDeque<fn() -> StoreError>>,
    /// `write` calls that reached the real store.
    pub writes: AtomicU64,
    /// How many `write_delivery` calls still fail (one per call), as a
    /// cluster's writes do while a node restarts.
    delivery_failures: AtomicU32,
    /// Every `write_delivery` fails as a poisoned fjall store's do.
    delivery_poisoned: AtomicBool,
    /// `write` panics (a bug in a store), instead of returning.
    write_panics: AtomicBool,
    /// How many `append_log` calls still fail (one per call).
    audit_failures: AtomicU32,
    /// Delivery records that read back as corrupt.
    corrupt_deliveries: Mutex<Vec<TrackingCode>>,
    /// `write` takes this long per entry first (a busy store).
    write_delay_per_entry: Mutex<std::time::Duration>,
}

impl Faulty {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Faulty {
            inner,
            write_errors: Mutex::new(VecDeque::new()),
            writes: AtomicU64::new(0),
            delivery_failures: AtomicU32::new(0),
            delivery_poisoned: AtomicBool::new(false),
            write_panics: AtomicBool::new(false),
            audit_failures: AtomicU32::new(0),
            corrupt_deliveries: Mutex::new(Vec::new()),
            write_delay_per_entry: Mutex::new(std::time::Duration::ZERO),
        }
    }

    /// Every `write` first sleeps `d` per entry, as a busy store is slow.
    pub fn slowed_writes(self, d: std::time::Duration) -> Self {
        *self.write_delay_per_entry.lock().unwrap() = d;
        self
    }

    /// The delivery record of `code` reads back as corrupt.
    pub fn corrupt_delivery(&self, code: TrackingCode) {
        self.corrupt_deliveries.lock().unwrap().push(code);
    }

    /// The next `n` `append_log` calls fail with an I/O error.
    pub fn failing_audit_appends(self, n: u32) -> Self {
        self.audit_failures.store(n, Ordering::SeqCst);
        self
    }

    /// Every `write` panics.
    pub fn panicking_writes(self) -> Self {
        self.write_panics.store(true, Ordering::SeqCst);
        self
    }

    /// The next `write` calls fail with these errors, one per call.
    pub fn failing_writes(self, errors: impl IntoIterator<Item = fn() -> StoreError>) -> Self {
        self.write_errors.lock().unwrap().extend(errors);
        self
    }

    /// Failures still to be returned by `write`.
    pub fn pending_write_errors(&self) -> usize {
        self.write_errors.lock().unwrap().len()
    }

    /// The next `n` `write_delivery` calls fail with an I/O error.
    pub fn failing_delivery_writes(self, n: u32) -> Self {
        self.delivery_failures.store(n, Ordering::SeqCst);
        self
    }

    /// Every `write_delivery` call fails, as on a fjall store poisoned by a
    /// failed journal write (a full disk): the error no retry gets past.
    pub fn poisoned_delivery_writes(self) -> Self {
        self.delivery_poisoned.store(true, Ordering::SeqCst);
        self
    }
}

impl NoticeStore for Faulty {
    fn write(&self, e: &[Entry]) -> Result<Vec<Outcome>, StoreError> {
        assert!(
            !self.write_panics.load(Ordering::SeqCst),
            "store write panicked, as asked"
        );
        if let Some(err) = self.write_errors.lock().unwrap().pop_front() {
            return Err(err());
        }
        let delay = *self.write_delay_per_entry.lock().unwrap();
        if !delay.is_zero() {
            std::thread::sleep(delay * e.len() as u32);
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.write(e)
    }

    fn notice(&self, c: TrackingCode) -> Result<Option<StoredNotice>, StoreError> {
        self.inner.notice(c)
    }

    fn mailbox(
        &self,
        id: MailboxId,
        b: Option<TrackingCode>,
        l: usize,
    ) -> Result<MailboxPage, StoreError> {
        self.inner.mailbox(id, b, l)
    }

    fn reference(
        &self,
        a: &karpoosheh_schemas::AgencyId,
        r: &str,
    ) -> Result<Option<TrackingCode>, StoreError> {
        self.inner.reference(a, r)
    }

    fn agency_references(
        &self,
        a: &karpoosheh_schemas::AgencyId,
        after: Option<&str>,
        l: usize,
    ) -> Result<ReferencePage, StoreError> {
        self.inner.agency_references(a, after, l)
    }

    fn rejections(
        &self,
        a: Option<&karpoosheh_schemas::AgencyId>,
        after: Option<u64>,
        l: usize,
    ) -> Result<Vec<StoredRejection>, StoreError> {
        self.inner.rejections(a, after, l)
    }

    fn latest_rejections(
        &self,
        a: Option<&karpoosheh_schemas::AgencyId>,
        l: usize,
    ) -> Result<Vec<StoredRejection>, StoreError> {
        self.inner.latest_rejections(a, l)
    }

    fn dead_letters(
        &self,
        after: Option<u64>,
        l: usize,
    ) -> Result<Vec<(u64, karpoosheh_schemas::DeadLetter)>, StoreError> {
        self.inner.dead_letters(after, l)
    }

    fn last_tracking_code(&self) -> Result<Option<TrackingCode>, StoreError> {
        self.inner.last_tracking_code()
    }

    fn accepted_out(&self) -> Result<Option<TrackingCode>, StoreError> {
        self.inner.accepted_out()
    }

    fn mark_accepted_out(&self, code: TrackingCode) -> Result<(), StoreError> {
        self.inner.mark_accepted_out(code)
    }

    fn purge_traffic(&self, before: chrono::DateTime<chrono::Utc>) -> Result<u64, StoreError> {
        self.inner.purge_traffic(before)
    }

    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
}

impl DeliveryStore for Faulty {
    fn due_timers(&self, s: u8, f: i64, n: i64, l: usize) -> Result<Vec<Timer>, StoreError> {
        self.inner.due_timers(s, f, n, l)
    }

    fn timers_written(&self, s: u8) -> bool {
        self.inner.timers_written(s)
    }

    fn delivery(&self, c: TrackingCode) -> Result<Option<DeliveryRecord>, StoreError> {
        if self.corrupt_deliveries.lock().unwrap().contains(&c) {
            return Err(StoreError::Corrupt(
                "delivery record: unexpected end of input".into(),
            ));
        }
        self.inner.delivery(c)
    }

    fn events(&self, c: TrackingCode) -> Result<Vec<crate::model::StoredEvent>, StoreError> {
        self.inner.events(c)
    }

    fn write_delivery(&self, w: &[DeliveryWrite]) -> Result<(), StoreError> {
        if self.delivery_poisoned.load(Ordering::SeqCst) {
            return Err(StoreError::Fjall(::fjall::Error::Poisoned));
        }
        if self
            .delivery_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| f.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::Io(std::io::Error::other(
                "the cluster is restarting",
            )));
        }
        self.inner.write_delivery(w)
    }

    fn outbox(&self, after: Option<u64>, l: usize) -> Result<Vec<(u64, Receipt)>, StoreError> {
        self.inner.outbox(after, l)
    }

    fn outbox_remove(&self, ids: &[u64]) -> Result<(), StoreError> {
        self.inner.outbox_remove(ids)
    }

    fn confirmation(&self, id: &str) -> Result<Option<TrackingCode>, StoreError> {
        self.inner.confirmation(id)
    }

    fn awaiting_activation(
        &self,
        id: MailboxId,
        l: usize,
    ) -> Result<Vec<TrackingCode>, StoreError> {
        self.inner.awaiting_activation(id, l)
    }
}

impl ProfileStore for Faulty {
    fn put_profiles(&self, p: &[MailboxProfile]) -> Result<Vec<bool>, StoreError> {
        self.inner.put_profiles(p)
    }

    fn delete_profiles(&self, ids: &[(MailboxId, DateTime<Utc>)]) -> Result<(), StoreError> {
        self.inner.delete_profiles(ids)
    }

    fn profile(&self, id: MailboxId) -> Result<Option<MailboxProfile>, StoreError> {
        self.inner.profile(id)
    }
}

impl AuditStore for Faulty {
    fn append_log(
        &self,
        log: u16,
        entries: &[crate::evidence::log::LogEntry],
    ) -> Result<(), StoreError> {
        if self
            .audit_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::Io(std::io::Error::other(
                "injected audit log failure",
            )));
        }
        self.inner.append_log(log, entries)
    }

    fn log_entries(
        &self,
        log: u16,
        from: u64,
        limit: usize,
    ) -> Result<Vec<crate::evidence::log::LogEntry>, StoreError> {
        self.inner.log_entries(log, from, limit)
    }

    fn log_entry(
        &self,
        log: u16,
        index: u64,
    ) -> Result<Option<crate::evidence::log::LogEntry>, StoreError> {
        self.inner.log_entry(log, index)
    }

    fn event_entry(&self, code: TrackingCode, seq: u32) -> Result<Option<(u16, u64)>, StoreError> {
        self.inner.event_entry(code, seq)
    }

    fn put_tree_head(
        &self,
        head: &crate::evidence::log::TreeHeadMessage,
    ) -> Result<(), StoreError> {
        self.inner.put_tree_head(head)
    }

    fn last_tree_head(
        &self,
        log: u16,
    ) -> Result<Option<crate::evidence::log::TreeHeadMessage>, StoreError> {
        self.inner.last_tree_head(log)
    }

    fn mark_published(&self, log: u16, size: u64) -> Result<(), StoreError> {
        self.inner.mark_published(log, size)
    }

    fn last_published(&self, log: u16) -> Result<Option<u64>, StoreError> {
        self.inner.last_published(log)
    }
}

impl AccessStore for Faulty {
    fn record_access(&self, records: &[crate::model::AccessRecord]) -> Result<(), StoreError> {
        self.inner.record_access(records)
    }

    fn access_log(
        &self,
        mailbox: MailboxId,
        limit: usize,
    ) -> Result<Vec<crate::model::AccessRecord>, StoreError> {
        self.inner.access_log(mailbox, limit)
    }

    fn purge_access(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner.purge_access(before)
    }
}

impl ParkingStore for Faulty {
    fn park(&self, agency: &AgencyId, receipts: &[Receipt]) -> Result<(), StoreError> {
        self.inner.park(agency, receipts)
    }

    fn oldest_parked(&self, agency: &AgencyId) -> Result<Option<Receipt>, StoreError> {
        self.inner.oldest_parked(agency)
    }

    fn parked(&self, agency: &AgencyId, limit: usize) -> Result<Vec<(u64, Receipt)>, StoreError> {
        self.inner.parked(agency, limit)
    }

    fn unpark(&self, agency: &AgencyId, ids: &[u64]) -> Result<(), StoreError> {
        self.inner.unpark(agency, ids)
    }

    fn parked_agencies(&self) -> Result<Vec<(AgencyId, u64)>, StoreError> {
        self.inner.parked_agencies()
    }
}

impl QuarantineStore for Faulty {
    fn quarantine(&self, q: &crate::model::Quarantined) -> Result<(), StoreError> {
        self.inner.quarantine(q)
    }

    fn quarantined(&self, limit: usize) -> Result<Vec<crate::model::Quarantined>, StoreError> {
        self.inner.quarantined(limit)
    }
}
