//! Counting sinks for run reports (the demo, `ingest`, the benchmarks):
//! outcomes with a latency histogram, and delivery events from receipts.

use karpoosheh_schemas::{Reason, Receipt};

use super::{Handled, HandledKind, Sink, SinkError};

/// Counts outcomes and keeps a latency histogram (microseconds), for run
/// reports.
pub struct Tally {
    pub stored: u64,
    pub duplicates: u64,
    pub rejected: std::collections::BTreeMap<Reason, u64>,
    pub dead_letters: std::collections::BTreeMap<Reason, u64>,
    pub stored_payload_bytes: u64,
    pub latency_us: hdrhistogram::Histogram<u64>,
    /// Later delivery events, from the outbox.
    pub delivery: DeliveryTally,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            stored: 0,
            duplicates: 0,
            rejected: Default::default(),
            dead_letters: Default::default(),
            stored_payload_bytes: 0,
            latency_us: hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("valid bounds"),
            delivery: DeliveryTally::default(),
        }
    }
}

impl Tally {
    pub fn add(&mut self, batch: &[Handled]) {
        for h in batch {
            match h.kind {
                HandledKind::Stored => {
                    self.stored += 1;
                    self.stored_payload_bytes += h.payload_bytes as u64;
                }
                HandledKind::Duplicate => self.duplicates += 1,
                HandledKind::Rejected(r) => *self.rejected.entry(r).or_default() += 1,
                HandledKind::DeadLetter(r) => *self.dead_letters.entry(r).or_default() += 1,
            }
            let _ = self
                .latency_us
                .record((h.latency.as_micros() as u64).max(1));
        }
    }

    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    pub fn dead_letters_total(&self) -> u64 {
        self.dead_letters.values().sum()
    }

    pub fn total(&self) -> u64 {
        self.stored + self.duplicates + self.rejected_total() + self.dead_letters_total()
    }
}

/// A sink that tallies into a shared [`Tally`].
pub struct TallySink(pub std::sync::Arc<std::sync::Mutex<Tally>>);

impl Sink for TallySink {
    fn handled(&mut self, batch: &[Handled]) -> Result<(), SinkError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).add(batch);
        Ok(())
    }

    fn events(&mut self, receipts: &[Receipt]) -> Result<(), SinkError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .delivery
            .add(receipts);
        Ok(())
    }
}

/// Delivery events counted from receipts, for the demo's report.
#[derive(Debug, Clone)]
pub struct DeliveryTally {
    /// Notifications sent, by channel, to recipients / representatives.
    pub sent: std::collections::BTreeMap<(karpoosheh_schemas::Channel, bool), u64>,
    pub rounds_failed: u64,
    pub confirmations: u64,
    pub served: u64,
    pub not_served: u64,
    pub expired: u64,
    /// Scheduled notices cancelled by their agency before they landed.
    pub cancelled: u64,
    pub unreachable: std::collections::BTreeMap<&'static str, u64>,
    pub access_insufficient: u64,
    /// Notices opened in an inbox app (first openings).
    pub opened: u64,
    /// Shares with other agencies (article 27), and their revocations.
    pub shared: u64,
    pub share_revoked: u64,
    /// Unreachable receipts that end the follow-up.
    pub unreachable_final: u64,
    /// Storing to legal service, milliseconds.
    pub time_to_served_ms: hdrhistogram::Histogram<u64>,
}

impl Default for DeliveryTally {
    fn default() -> Self {
        DeliveryTally {
            sent: Default::default(),
            rounds_failed: 0,
            confirmations: 0,
            served: 0,
            not_served: 0,
            expired: 0,
            cancelled: 0,
            unreachable: Default::default(),
            access_insufficient: 0,
            opened: 0,
            shared: 0,
            share_revoked: 0,
            unreachable_final: 0,
            time_to_served_ms: hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("valid histogram bounds"),
        }
    }
}

impl DeliveryTally {
    pub fn add(&mut self, receipts: &[Receipt]) {
        use karpoosheh_schemas::{MailboxStatus as S, ReceiptEvent as E};
        for r in receipts {
            match &r.event {
                E::NotificationSent {
                    channel,
                    to_representative,
                    ..
                } => *self.sent.entry((*channel, *to_representative)).or_default() += 1,
                E::NotificationFailed { .. } => self.rounds_failed += 1,
                E::Confirmed { .. } => self.confirmations += 1,
                E::Served {
                    tracking_code,
                    served_at,
                } => {
                    self.served += 1;
                    let ms = (served_at.timestamp_millis() - tracking_code.unix_ms()).max(1) as u64;
                    let _ = self.time_to_served_ms.record(ms.min(3_600_000_000));
                }
                E::NotServed { .. } => self.not_served += 1,
                E::Expired { .. } => self.expired += 1,
                E::Cancelled { .. } => self.cancelled += 1,
                // A scheduled notice landing: its rounds follow.
                E::Released { .. } => {}
                E::ReminderSent { .. } | E::ReminderFailed { .. } => {}
                E::MailboxUnreachable { status, .. } => {
                    let s = match status {
                        S::Active => "active",
                        S::NotActivated => "not_activated",
                        S::Deceased => "deceased",
                        S::Incapacitated => "incapacitated",
                        S::Dissolved => "dissolved",
                    };
                    *self.unreachable.entry(s).or_default() += 1;
                    if !r.receipt_id.ends_with("-incapacitated") {
                        self.unreachable_final += 1;
                    }
                }
                E::AccessLevelInsufficient { .. } => self.access_insufficient += 1,
                E::Opened { .. } => self.opened += 1,
                E::Shared { .. } => self.shared += 1,
                E::ShareRevoked { .. } => self.share_revoked += 1,
                // The other agency's side of a share; not the sender's.
                E::DocumentShared { .. } | E::ShareWithdrawn { .. } => {}
                E::Accepted { .. } | E::Rejected { .. } | E::BatchSigned { .. } => {}
            }
        }
    }

    /// Notices whose follow-up has an outcome: served, not served, or a
    /// final unreachable state, or cancelled before it landed. (An incapacitated person with a guardian
    /// is reported but goes on through the guardian: receipt IDs ending in
    /// `-incapacitated` are not final.) A late confirmation can serve a
    /// notice already reported not served, so this may exceed the stored
    /// count slightly.
    pub fn settled(&self) -> u64 {
        self.served + self.not_served + self.unreachable_final + self.cancelled
    }

    /// Rounds sent to recipients (not representatives).
    pub fn sent_to_recipients(&self) -> u64 {
        self.sent
            .iter()
            .filter(|((_, rep), _)| !rep)
            .map(|(_, n)| n)
            .sum()
    }
}
