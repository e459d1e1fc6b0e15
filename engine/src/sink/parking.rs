//! Parking: one agency whose receipt topic refuses its receipts never
//! holds up the others.
//!
//! A receipt is produced to `<receipt_prefix><agency>`. When the broker
//! refuses it for a reason that belongs to that topic -- the topic is
//! missing or was deleted, this node may not write it (ACL), or it refuses
//! the record (too large for the topic's `max.message.bytes`, a policy) --
//! retrying would hold every agency's receipts behind it (the sinks settle
//! before the source's offsets are committed). Instead the agency is
//! **parked**:
//!
//! - its refused receipts, and every later one while it is parked, are
//!   written to the store's parking lot ([`ParkingStore`]) before the
//!   sink settles, so the source goes on and nothing is lost;
//! - a deliverer thread ([`spawn_deliverer`]) tries the topic with
//!   backoff (1 s doubling to 30 s) by delivering the lot's oldest
//!   receipts: once the topic takes them it delivers the lot in order, oldest first, removing what the broker acknowledged,
//!   and when the lot is empty the agency is unparked and its receipts
//!   flow directly again;
//! - `karpoosheh_agency_parked{agency}` is 1 meanwhile, and
//!   `karpoosheh_receipts_parked{agency}` counts what waits (alert
//!   KarpooshehAgencyParked).
//!
//! Receipts stay in order per agency while it is parked and while its lot
//! is delivered. Only at the moment its lot empties can a receipt the sink
//! had already set aside arrive after a newer one sent directly (it is
//! parked again and delivered at once); agencies order by the receipt's
//! event and time, and deduplicate by `receipt_id` (agency-integration.md).
//!
//! Failures that belong to no single agency -- the brokers unreachable,
//! the dead-letter topic -- are not parked: the sink retries them, and the
//! node stops taking records until they are delivered, as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use karpoosheh_schemas::{AgencyId, Receipt, ReceiptEvent};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use crate::internal_events::{
    agency_label, AgencyUnparked, KafkaProduced, ParkedStillRefused, ParkingStarted,
    ReceiptsParked, ReceiptsUnparked,
};
use crate::kafka::set_default;
use crate::store::{Store, StoreError};

/// Why an agency's receipts are parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkReason {
    /// The receipt topic does not exist (never created, or deleted).
    TopicMissing,
    /// This node may not write the topic (ACL).
    NotAuthorized,
    /// The topic refuses the record (size, policy, invalid record).
    Refused,
    /// Sent while the agency was parked: behind the others.
    Held,
}

impl ParkReason {
    pub fn code(self) -> &'static str {
        match self {
            ParkReason::TopicMissing => "topic_missing",
            ParkReason::NotAuthorized => "not_authorized",
            ParkReason::Refused => "refused",
            ParkReason::Held => "held",
        }
    }

    /// The reason, if a delivery error belongs to the topic (and so to one
    /// agency); `None` for errors of the brokers or the producer.
    pub fn of(e: &KafkaError) -> Option<ParkReason> {
        Self::of_code(e.rdkafka_error_code()?)
    }

    fn of_code(code: RDKafkaErrorCode) -> Option<ParkReason> {
        match code {
            RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownPartition
            | RDKafkaErrorCode::InvalidTopic => Some(ParkReason::TopicMissing),
            RDKafkaErrorCode::TopicAuthorizationFailed => Some(ParkReason::NotAuthorized),
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::PolicyViolation
            | RDKafkaErrorCode::InvalidRecord => Some(ParkReason::Refused),
            _ => None,
        }
    }
}

/// One parked agency.
struct Lot {
    since: Instant,
    /// Receipts waiting (counted here; read from the store at start).
    waiting: u64,
    next_try: Instant,
    backoff: Duration,
}

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The node's parked agencies, shared by its receipt sinks and the
/// deliverer.
pub struct Parking {
    store: Arc<dyn Store>,
    lots: Mutex<HashMap<AgencyId, Lot>>,
    /// How often each receipt was refused on its own (agency, lot ID).
    refusals: Mutex<HashMap<(AgencyId, u64), u32>>,
    /// Any agency parked: the sinks' fast path skips the lock.
    any: AtomicBool,
}

impl Parking {
    /// Opens the parking lot: agencies with receipts left from before a
    /// restart are parked until their lots are delivered. `agencies` get
    /// their metrics at 0.
    pub fn open(store: Arc<dyn Store>, agencies: &[AgencyId]) -> Result<Arc<Parking>, StoreError> {
        let labels: Vec<String> = agencies.iter().map(|a| agency_label(Some(a))).collect();
        ParkingStarted { agencies: &labels }.emit();
        let now = Instant::now();
        let mut lots = HashMap::new();
        for (agency, waiting) in store.parked_agencies()? {
            ReceiptsParked {
                agency: &agency_label(Some(&agency)),
                reason: ParkReason::Held.code(),
                count: 0,
                waiting,
                newly: true,
                error: Some("left from before a restart"),
            }
            .emit();
            lots.insert(
                agency,
                Lot {
                    since: now,
                    waiting,
                    next_try: now,
                    backoff: FIRST_BACKOFF,
                },
            );
        }
        Ok(Arc::new(Parking {
            store,
            any: AtomicBool::new(!lots.is_empty()),
            lots: Mutex::new(lots),
            refusals: Mutex::new(HashMap::new()),
        }))
    }

    fn lots(&self) -> std::sync::MutexGuard<'_, HashMap<AgencyId, Lot>> {
        self.lots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `agency`'s receipts go to the parking lot.
    pub fn is_parked(&self, agency: &AgencyId) -> bool {
        self.any.load(Ordering::Acquire) && self.lots().contains_key(agency)
    }

    /// Writes `receipts` of `agency` to the parking lot, durably, and parks
    /// the agency (if it was not).
    pub fn park(
        &self,
        agency: &AgencyId,
        reason: ParkReason,
        error: Option<&str>,
        receipts: &[Receipt],
    ) -> Result<(), StoreError> {
        if receipts.is_empty() {
            return Ok(());
        }
        self.store.park(agency, receipts)?;
        let now = Instant::now();
        let mut lots = self.lots();
        let newly = !lots.contains_key(agency);
        let lot = lots.entry(agency.clone()).or_insert(Lot {
            since: now,
            waiting: 0,
            next_try: now + FIRST_BACKOFF,
            backoff: FIRST_BACKOFF,
        });
        lot.waiting += receipts.len() as u64;
        self.any.store(true, Ordering::Release);
        ReceiptsParked {
            agency: &agency_label(Some(agency)),
            reason: reason.code(),
            count: receipts.len(),
            waiting: lot.waiting,
            newly,
            error,
        }
        .emit();
        Ok(())
    }

    /// Parked agencies due for a try.
    fn due(&self, now: Instant) -> Vec<AgencyId> {
        self.lots()
            .iter()
            .filter(|(_, l)| l.next_try <= now)
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// The topic still refuses: try again after a longer wait.
    fn refused(&self, agency: &AgencyId, reason: ParkReason, error: &str) {
        let mut lots = self.lots();
        let Some(lot) = lots.get_mut(agency) else {
            return;
        };
        let retry_in = lot.backoff;
        lot.next_try = Instant::now() + retry_in;
        lot.backoff = (lot.backoff * 2).min(MAX_BACKOFF);
        ParkedStillRefused {
            agency: &agency_label(Some(agency)),
            reason: reason.code(),
            error,
            retry_in,
        }
        .emit();
    }

    fn delivered(&self, agency: &AgencyId, n: usize) {
        let mut lots = self.lots();
        let Some(lot) = lots.get_mut(agency) else {
            return;
        };
        lot.waiting = lot.waiting.saturating_sub(n as u64);
        lot.backoff = FIRST_BACKOFF;
        ReceiptsUnparked {
            agency: &agency_label(Some(agency)),
            count: n,
            waiting: lot.waiting,
        }
        .emit();
    }

    /// Unparks `agency` if its lot is empty, read under the lock: a
    /// `park` writes the store before it takes the lock, so a receipt
    /// parked before this read is seen (and the agency stays parked), and
    /// one parked after it parks the agency again. A busy agency is
    /// unparked as soon as its lot is empty, however often it parks.
    fn unpark_if_empty(&self, agency: &AgencyId) -> Result<bool, StoreError> {
        let mut lots = self.lots();
        if !self.store.parked(agency, 1)?.is_empty() {
            return Ok(false);
        }
        if let Some(l) = lots.remove(agency) {
            self.any.store(!lots.is_empty(), Ordering::Release);
            AgencyUnparked {
                agency: &agency_label(Some(agency)),
                parked_for: l.since.elapsed(),
            }
            .emit();
        }
        Ok(true)
    }
}

/// Collects the deliverer's failed deliveries.
struct LotContext {
    failed: Mutex<Vec<KafkaError>>,
}

impl ClientContext for LotContext {}

impl ProducerContext for LotContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(e.clone());
        }
    }
}

/// Receipts delivered from a lot per round trip.
const LOT_BATCH: usize = 500;

/// Tries on which a receipt may be refused on its own (its size, the
/// topic's policy) before it is set aside, so the lot behind it flows.
const MAX_REFUSALS: u32 = 3;

/// After a slice was refused for a reason of a record (size, policy,
/// invalid record), its receipts one by one, in order: each delivered
/// leaves the lot; one refused on its own is counted, and set aside
/// (quarantined, kind `refused_receipt`) on its `MAX_REFUSALS`th try; the
/// first other failure, or a refusal below that count, ends the try.
/// Returns how many left the lot, how many of them were delivered receipts
/// that count as produced (not `batch_signed`), and the error that ended
/// the try.
fn one_by_one(
    parking: &Parking,
    agency: &AgencyId,
    slice: &[(u64, Receipt)],
    mut send: impl FnMut(&(u64, Receipt)) -> Result<(), KafkaError>,
) -> (usize, u64, Option<KafkaError>) {
    let mut left = 0;
    let mut produced = 0;
    for item in slice {
        let (id, r) = item;
        match send(item) {
            Ok(()) => {
                if !matches!(r.event, ReceiptEvent::BatchSigned { .. }) {
                    produced += 1;
                }
            }
            Err(e) if ParkReason::of(&e) == Some(ParkReason::Refused) => {
                let tries = {
                    let mut counts = parking.refusals.lock().unwrap_or_else(|p| p.into_inner());
                    let n = counts.entry((agency.clone(), *id)).or_insert(0);
                    *n += 1;
                    *n
                };
                if tries < MAX_REFUSALS {
                    return (left, produced, Some(e));
                }
                let bytes = serde_json::to_vec(r).expect("receipts serialise");
                let why = format!("the topic refused it {tries} times: {e}");
                if crate::store::set_aside(
                    parking.store.as_ref(),
                    "refused_receipt",
                    format!("{agency}:{id}"),
                    &why,
                    &bytes,
                    r.receipt_id.clone(),
                )
                .is_err()
                {
                    return (left, produced, Some(e));
                }
                parking
                    .refusals
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&(agency.clone(), *id));
            }
            Err(e) => return (left, produced, Some(e)),
        }
        if parking.store.unpark(agency, &[*id]).is_err() {
            return (left, produced, None);
        }
        left += 1;
    }
    (left, produced, None)
}

/// Delivers parked agencies' lots once their topics take receipts again,
/// on a thread, until `shutdown`.
pub fn spawn_deliverer(
    parking: Arc<Parking>,
    mut client: ClientConfig,
    receipt_prefix: String,
    shutdown: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, KafkaError> {
    client.set("enable.idempotence", "true");
    set_default(&mut client, "linger.ms", "5");
    set_default(&mut client, "compression.type", "lz4");
    // A try ends: what is not delivered by then stays in the lot.
    client.set("message.timeout.ms", "30000");
    // As the sinks' producer: bounded in bytes; a full queue waits.
    set_default(&mut client, "queue.buffering.max.kbytes", "65536");
    set_default(&mut client, "topic.metadata.propagation.max.ms", "10000");
    let producer: ThreadedProducer<LotContext> = client.create_with_context(LotContext {
        failed: Mutex::new(Vec::new()),
    })?;
    Ok(std::thread::Builder::new()
        .name("parked-receipts".into())
        .spawn(move || {
            while !shutdown.load(Ordering::SeqCst) {
                for agency in parking.due(Instant::now()) {
                    if shutdown.load(Ordering::SeqCst) {
                        break;
                    }
                    deliver_lot(&parking, &producer, &receipt_prefix, &agency);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = producer.flush(Duration::from_secs(5));
        })
        .expect("spawn the parked-receipts thread"))
}

/// One try at an agency's lot: deliver it in order until it is empty
/// (unpark) or the topic refuses (try later).
fn deliver_lot(
    parking: &Parking,
    producer: &ThreadedProducer<LotContext>,
    prefix: &str,
    agency: &AgencyId,
) {
    let topic = super::kafka::receipt_topic(prefix, agency);
    // No metadata request first: the lot's first slice is the probe (a
    // topic still missing fails it after `topic.metadata.propagation.max.ms`,
    // on this thread only).
    loop {
        let lot = match parking.store.parked(agency, LOT_BATCH) {
            Ok(l) => l,
            Err(e) => {
                parking.refused(agency, ParkReason::Held, &e.to_string());
                return;
            }
        };
        if lot.is_empty() {
            match parking.unpark_if_empty(agency) {
                Ok(true) => return,
                // Parked meanwhile (or a slice all set aside as
                // unreadable): go on with what is there now.
                Ok(false) => continue,
                Err(e) => {
                    parking.refused(agency, ParkReason::Held, &e.to_string());
                    return;
                }
            }
        }
        let started = Instant::now();
        // In runs of `batch_signed` receipts and of the others, each
        // acknowledged before the next: a batch's signed head is out
        // before the receipts it carries (they go to other partitions).
        let signed = |r: &Receipt| matches!(r.event, ReceiptEvent::BatchSigned { .. });
        let mut failed = None;
        for run in lot.chunk_by(|a, b| signed(&a.1) == signed(&b.1)) {
            if let Err(e) = deliver_run(producer, &topic, run) {
                failed = Some(e);
                break;
            }
        }
        if let Some(mut e) = failed {
            // Not removed: the slice is delivered again (at least once;
            // agencies deduplicate by receipt_id). Refused for a reason of
            // a record: one by one, so one receipt the topic will never
            // take is found and set aside instead of holding the lot.
            if ParkReason::of(&e) == Some(ParkReason::Refused) {
                let one = Instant::now();
                let (left, produced, ended) = one_by_one(parking, agency, &lot, |item| {
                    deliver_run(producer, &topic, std::slice::from_ref(item))
                });
                if left > 0 {
                    KafkaProduced {
                        receipts: vec![(agency_label(Some(agency)), produced)],
                        dead_letters: 0,
                        elapsed: one.elapsed(),
                    }
                    .emit();
                    parking.delivered(agency, left);
                }
                match ended {
                    None => continue,
                    Some(end) => e = end,
                }
            }
            let reason = ParkReason::of(&e).unwrap_or(ParkReason::Refused);
            parking.refused(agency, reason, &e.to_string());
            return;
        }
        let ids: Vec<u64> = lot.iter().map(|(id, _)| *id).collect();
        if let Err(e) = parking.store.unpark(agency, &ids) {
            parking.refused(agency, ParkReason::Held, &e.to_string());
            return;
        }
        let counted = lot
            .iter()
            .filter(|(_, r)| !matches!(r.event, ReceiptEvent::BatchSigned { .. }))
            .count() as u64;
        KafkaProduced {
            receipts: vec![(agency_label(Some(agency)), counted)],
            dead_letters: 0,
            elapsed: started.elapsed(),
        }
        .emit();
        parking.delivered(agency, lot.len());
    }
}

/// Produces `run` to `topic` and waits until every message is resolved;
/// the first failure, if any.
fn deliver_run(
    producer: &ThreadedProducer<LotContext>,
    topic: &str,
    run: &[(u64, Receipt)],
) -> Result<(), KafkaError> {
    for (_, r) in run {
        let value = serde_json::to_vec(r).expect("receipts serialise");
        // The key the sinks use.
        let key = super::kafka::receipt_key(r);
        let mut record = BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    producer
                        .context()
                        .failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(e);
                    break;
                }
            }
        }
    }
    // Every message resolves within `message.timeout.ms`.
    while producer.in_flight_count() > 0 {
        let _ = producer.flush(Duration::from_secs(1));
    }
    let failed = std::mem::take(
        &mut *producer
            .context()
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    );
    match failed.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{fjall_store, receipt};

    fn refused() -> KafkaError {
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)
    }

    #[test]
    fn a_receipt_its_topic_never_takes_is_set_aside_after_three_tries_and_the_lot_flows() {
        let dir = tempfile::tempdir().unwrap();
        let store = fjall_store(&dir.path().join("store"));
        let tax = AgencyId::parse("tax").unwrap();
        let parking = Parking::open(store.clone(), std::slice::from_ref(&tax)).unwrap();
        let lot: Vec<Receipt> = (1..=4).map(|i| receipt("tax", i)).collect();
        parking
            .park(&tax, ParkReason::Refused, Some("too large"), &lot)
            .unwrap();
        let mut sent = Vec::new();
        let mut send = |(_, r): &(u64, Receipt)| {
            if r.receipt_id == "tax-r2" {
                return Err(refused());
            }
            sent.push(r.receipt_id.clone());
            Ok(())
        };
        // First try: r1 goes, r2 is refused once and ends the try.
        let slice = store.parked(&tax, 10).unwrap();
        let (left, produced, ended) = one_by_one(&parking, &tax, &slice, &mut send);
        assert_eq!((left, produced), (1, 1));
        assert!(ended.is_some());
        // Second: refused again; still waiting, in order.
        let slice = store.parked(&tax, 10).unwrap();
        let (left, _, ended) = one_by_one(&parking, &tax, &slice, &mut send);
        assert_eq!(left, 0);
        assert!(ended.is_some());
        assert!(store.quarantined(10).unwrap().is_empty());
        // Third: set aside, and the rest of the lot is delivered.
        let slice = store.parked(&tax, 10).unwrap();
        let (left, produced, ended) = one_by_one(&parking, &tax, &slice, &mut send);
        assert_eq!((left, produced), (3, 2));
        assert!(ended.is_none());
        assert_eq!(sent, ["tax-r1", "tax-r3", "tax-r4"]);
        assert!(store.parked(&tax, 10).unwrap().is_empty());
        let aside = store.quarantined(10).unwrap();
        assert_eq!(aside.len(), 1);
        assert_eq!(aside[0].kind, "refused_receipt");
        assert_eq!(aside[0].detail, "tax-r2");
        assert!(
            aside[0].error.contains("refused it 3 times"),
            "{}",
            aside[0].error
        );
    }

    #[test]
    fn a_topic_gone_ends_the_try_without_counting_against_a_receipt() {
        let dir = tempfile::tempdir().unwrap();
        let store = fjall_store(&dir.path().join("store"));
        let tax = AgencyId::parse("tax").unwrap();
        let parking = Parking::open(store.clone(), std::slice::from_ref(&tax)).unwrap();
        parking
            .park(&tax, ParkReason::TopicMissing, None, &[receipt("tax", 1)])
            .unwrap();
        for _ in 0..5 {
            let slice = store.parked(&tax, 10).unwrap();
            let (left, _, ended) = one_by_one(&parking, &tax, &slice, |_| {
                Err(KafkaError::MessageProduction(
                    RDKafkaErrorCode::UnknownTopicOrPartition,
                ))
            });
            assert_eq!(left, 0);
            assert!(ended.is_some());
        }
        assert_eq!(store.parked(&tax, 10).unwrap().len(), 1, "still waiting");
        assert!(store.quarantined(10).unwrap().is_empty());
    }
}
