//! Receipts and dead letters out to Kafka: a [`Sink`] with one idempotent
//! producer.
//!
//! - Every receipt of a registered agency (approved, suspended or
//!   dissolved) goes to `<receipt_prefix><agency>`, keyed by the
//!   agency's reference (or the receipt ID when the envelope had none),
//!   so one notice's receipts land in one partition, in order.
//! - Every dead letter goes to the dead-letter topic as the JSON
//!   [`DeadLetter`] record (bytes in base64, topic/partition/offset,
//!   reasons), keyed by its source position, with the same facts in
//!   headers for tools that read headers only.
//! - A write's signed batch heads (`batches`) and receipts (`handled`)
//!   are handed to the producer together; `settle` returns only when the
//!   broker has acknowledged every message handed over since the last
//!   settle, and the pipeline commits the source's offsets only after
//!   that: a crash re-sends receipts (at least once; agencies deduplicate
//!   by `receipt_id`) and never loses one.
//!   Failed deliveries are produced again until they succeed -- except
//!   those an agency's topic refuses (missing, not authorised, refusing
//!   the record): that agency is parked (`super::parking`) and its
//!   receipts wait in the store, so it never holds up the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use karpoosheh_schemas::{AgencyId, Receipt, SourcePosition};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use super::parking::{ParkReason, Parking};
use super::{AcceptedOut, Handled, Sink, SinkError};
use crate::agencies::AgencyRegistry;
use crate::internal_events::{agency_label, KafkaProduceFailed, KafkaProduced};

use crate::kafka::{set_default, KafkaConfig};

/// One message to deliver; kept until the broker acknowledges it.
#[derive(Clone)]
pub struct Outgoing {
    topic: String,
    key: String,
    value: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    /// The agency a receipt is for; `None` for dead letters. A receipt its
    /// topic refuses is parked, not retried.
    agency: Option<AgencyId>,
    /// When its record arrived (a notice's or rejection's own receipt).
    arrived: Option<Instant>,
}

/// Collects delivery failures of the batch in flight.
#[derive(Default)]
pub struct DeliveryContext {
    failed: Mutex<Vec<(Box<Outgoing>, KafkaError)>>,
    /// Delivery reports served, and a signal for each: what `settle`
    /// waits on (see [`wait_delivered`]).
    delivered: (Mutex<u64>, std::sync::Condvar),
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Outgoing>;

    fn delivery(&self, result: &DeliveryResult<'_>, msg: Box<Outgoing>) {
        match result {
            Err((e, _)) => self
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((msg, e.clone())),
            Ok(_) => {
                if let Some(received) = msg.arrived {
                    crate::internal_events::ReceiptDelivered { received }.emit();
                }
            }
        }
        *self.delivered.0.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.delivered.1.notify_all();
    }
}

/// Waits until `producer` has nothing in flight, or `max` has passed.
///
/// Not rdkafka's `flush`: on a `ThreadedProducer` it polls the main queue
/// for up to 100 ms at a time while the producer's own thread is the one
/// serving the delivery reports, so every settle waited 100 ms or more
/// even when the broker answered in 2 ms (issue 25: an idle node's
/// receipts took 100-250 ms from sealing to settled against Apache
/// Kafka).
///
/// librdkafka's own `rd_kafka_flush` is called instead, for its other
/// effect: while it runs, `linger.ms` is treated as already passed, so
/// what waits in the producer's batches goes at once. A settle waits for
/// every message anyway; lingering would only add `linger.ms` to each
/// settle (issue 25: 5 ms on every write's receipts at 2,000 notices/s).
/// Between settles, receipts still linger and batch. In event mode (how
/// rdkafka configures delivery reports) it waits on a condition for the
/// messages to be served, by the producer's own thread. Then each served
/// report wakes the wait below; the count drops just after the report is
/// served, so that wait looks again every millisecond at most.
fn wait_delivered(producer: &ThreadedProducer<DeliveryContext>, max: Duration) {
    let deadline = Instant::now() + max;
    let ms = i32::try_from(max.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: the handle is the live producer's, borrowed for the call;
    // rd_kafka_flush is thread-safe and only reads the handle. Its result
    // (timed out or not) is what the loop below checks again.
    unsafe {
        rdkafka::bindings::rd_kafka_flush(producer.client().native_ptr(), ms);
    }
    let (served, signal) = &producer.context().delivered;
    let mut guard = served.lock().unwrap_or_else(|p| p.into_inner());
    while producer.in_flight_count() > 0 {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        let wait = (deadline - now).min(Duration::from_millis(1));
        guard = signal
            .wait_timeout(guard, wait)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// The receipts and dead-letter sink.
pub struct KafkaSink {
    producer: ThreadedProducer<DeliveryContext>,
    receipt_prefix: String,
    dead_letter_topic: String,
    shutdown: Arc<std::sync::atomic::AtomicBool>,
    agencies: AgencyRegistry,
    /// Parked agencies, shared with the node's other receipt sink and the
    /// deliverer of their lots.
    parking: Arc<Parking>,
    /// Receipts of parked agencies handed over since the last settle, in
    /// order: written to the parking lot when it settles.
    held: Vec<Receipt>,
    /// Receipts the producer refused at once (a topic it knows to be
    /// missing or not writable): parked at the next settle, like those
    /// refused by the broker.
    refused_now: Mutex<Vec<(AgencyId, ParkReason, Receipt)>>,
    /// Advanced past each `accepted` receipt once it is out (the ingest
    /// sink only).
    accepted_out: Option<Arc<AcceptedOut>>,
    /// Sent since the last settle: counted in
    /// `karpoosheh_receipts_produced_total` only once `settle` has seen
    /// the broker acknowledge them.
    unsettled: Unsettled,
}

/// Receipts and dead letters handed to the producer since the last settle.
#[derive(Default)]
struct Unsettled {
    /// The tracking codes of the `accepted` receipts handed over.
    accepted: Vec<u64>,
    receipts: HashMap<String, u64>,
    dead_letters: u64,
    since: Option<Instant>,
}

impl KafkaSink {
    pub fn new(
        cfg: &KafkaConfig,
        mut client: ClientConfig,
        shutdown: Arc<std::sync::atomic::AtomicBool>,
        agencies: AgencyRegistry,
        parking: Arc<Parking>,
    ) -> Result<Self, KafkaError> {
        client.set("enable.idempotence", "true");
        set_default(&mut client, "linger.ms", "5");
        set_default(&mut client, "compression.type", "lz4");
        // Retry for as long as it takes: a receipt must never be dropped.
        // The sink re-produces whatever still fails, too.
        set_default(&mut client, "message.timeout.ms", "0");
        // A receipt topic that does not exist fails its receipts after
        // this long (and its agency is parked): 10 s of waiting for every
        // agency, once, instead of librdkafka's 30 s.
        set_default(&mut client, "topic.metadata.propagation.max.ms", "10000");
        // A receipt topic deleted while in use is noticed at the next
        // metadata refresh (its receipts then fail, and the agency is
        // parked): within seconds, not librdkafka's 5 minutes, during
        // which the deleted topic's receipts would wait in the producer
        // and every agency behind them.
        set_default(&mut client, "topic.metadata.refresh.interval.ms", "10000");
        // The producer's queue bounded in bytes, not only in messages
        // (librdkafka's default is 1 GiB): a full queue makes `send`
        // wait for deliveries (QueueFull, below), it never drops.
        set_default(&mut client, "queue.buffering.max.kbytes", "65536");
        let producer = client.create_with_context(DeliveryContext::default())?;
        Ok(KafkaSink {
            producer,
            receipt_prefix: cfg.receipt_topic_prefix.clone(),
            dead_letter_topic: cfg.dead_letter_topic.clone(),
            shutdown,
            agencies,
            parking,
            accepted_out: None,
            held: Vec::new(),
            refused_now: Mutex::new(Vec::new()),
            unsettled: Unsettled::default(),
        })
    }

    /// Advances `out` past each `accepted` receipt this sink gets out.
    pub fn with_accepted_out(mut self, out: Arc<AcceptedOut>) -> Self {
        self.accepted_out = Some(out);
        self
    }

    /// Sends `r` to its agency's receipt topic -- or, while the agency is
    /// parked, holds it for the lot -- and counts it in
    /// `receipts_produced` unless it is a signed batch (not a notice's
    /// receipt).
    fn receipt(&mut self, r: &Receipt, arrived: Option<Instant>) {
        if self.parking.is_parked(&r.agency) {
            self.held.push(r.clone());
            return;
        }
        if !matches!(
            r.event,
            karpoosheh_schemas::ReceiptEvent::BatchSigned { .. }
        ) {
            *self
                .unsettled
                .receipts
                .entry(agency_label(Some(&r.agency)))
                .or_default() += 1;
        }
        let msg = Outgoing {
            topic: receipt_topic(&self.receipt_prefix, &r.agency),
            key: receipt_key(r),
            value: serde_json::to_vec(r).expect("receipts serialise"),
            headers: vec![],
            agency: Some(r.agency.clone()),
            arrived,
        };
        self.send(msg);
    }

    fn send(&self, msg: Outgoing) {
        let mut msg = Box::new(msg);
        loop {
            let mut headers = OwnedHeaders::new();
            for (k, v) in &msg.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            let topic = msg.topic.clone();
            let key = msg.key.clone();
            // A copy goes out; the original stays with the delivery report
            // so a failure can be produced again.
            let value = msg.value.clone();
            let record = BaseRecord::with_opaque_to(&topic, msg)
                .key(&key)
                .payload(&value)
                .headers(headers);
            match self.producer.send(record) {
                Ok(()) => return,
                Err((e, record)) => {
                    msg = record.delivery_opaque;
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) {
                        // The producer's own queue is the bound; wait for
                        // deliveries to make room.
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    // A topic the producer already knows to be missing or
                    // not writable is refused here, not in a delivery
                    // report: its agency is parked, never retried in line.
                    if let (Some(agency), Some(reason)) = (&msg.agency, ParkReason::of(&e)) {
                        if let Ok(r) = serde_json::from_slice::<Receipt>(&msg.value) {
                            KafkaProduceFailed {
                                topic: &topic,
                                error: &e,
                                retrying: false,
                            }
                            .emit();
                            self.refused_now
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push((agency.clone(), reason, r));
                            return;
                        }
                    }
                    KafkaProduceFailed {
                        topic: &topic,
                        error: &e,
                        retrying: true,
                    }
                    .emit();
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    /// Waits until every message is acknowledged, re-producing failures,
    /// then parks what agencies' topics refused and what was held for
    /// parked agencies.
    fn settle_all(&mut self) -> Result<(), SinkError> {
        let refused = self.settle_producer()?;
        for (agency, _, r) in &refused {
            if !matches!(
                r.event,
                karpoosheh_schemas::ReceiptEvent::BatchSigned { .. }
            ) {
                // Not delivered: counted when the deliverer delivers it.
                if let Some(n) = self.unsettled.receipts.get_mut(&agency_label(Some(agency))) {
                    *n = n.saturating_sub(1);
                }
            }
        }
        self.park(refused)
    }

    /// Writes refused receipts, then those held for parked agencies, to
    /// the parking lot.
    fn park(&mut self, refused: Vec<(AgencyId, ParkReason, Receipt)>) -> Result<(), SinkError> {
        let mut groups: Vec<(AgencyId, ParkReason, Option<String>, Vec<Receipt>)> = Vec::new();
        let held = std::mem::take(&mut self.held)
            .into_iter()
            .map(|r| (r.agency.clone(), ParkReason::Held, r));
        for (agency, reason, r) in refused.into_iter().chain(held) {
            match groups.iter_mut().find(|g| g.0 == agency && g.1 == reason) {
                Some(g) => g.3.push(r),
                None => groups.push((agency, reason, None, vec![r])),
            }
        }
        for (agency, reason, error, receipts) in groups {
            self.parking
                .park(&agency, reason, error.as_deref(), &receipts)
                .map_err(SinkError::Park)?;
        }
        Ok(())
    }

    /// Waits until every message of the producer is acknowledged,
    /// re-producing failures; returns the receipts their agencies' topics
    /// refused (not retried).
    fn settle_producer(&self) -> Result<Vec<(AgencyId, ParkReason, Receipt)>, SinkError> {
        let producer = &self.producer;
        let mut refused = Vec::new();
        let mut delay = Duration::from_millis(100);
        loop {
            refused.append(&mut self.refused_now.lock().unwrap_or_else(|p| p.into_inner()));
            // Until nothing is in flight (each wait is bounded; the
            // producer retries until delivered, message.timeout.ms = 0).
            while producer.in_flight_count() > 0 {
                wait_delivered(producer, Duration::from_secs(1));
            }
            let failed: Vec<_> = std::mem::take(
                &mut *producer
                    .context()
                    .failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()),
            );
            if failed.is_empty() {
                return Ok(refused);
            }
            let mut retried = false;
            for (msg, e) in failed {
                if let (Some(agency), Some(reason)) = (&msg.agency, ParkReason::of(&e)) {
                    if let Ok(r) = serde_json::from_slice::<Receipt>(&msg.value) {
                        KafkaProduceFailed {
                            topic: &msg.topic,
                            error: &e,
                            retrying: false,
                        }
                        .emit();
                        refused.push((agency.clone(), reason, r));
                        continue;
                    }
                }
                retried = true;
                KafkaProduceFailed {
                    topic: &msg.topic,
                    error: &e,
                    retrying: true,
                }
                .emit();
                if self.shutdown.load(std::sync::atomic::Ordering::SeqCst)
                    && delay >= Duration::from_secs(5)
                {
                    // Stopping: nothing of this batch is acknowledged to
                    // the source, so it is all re-delivered after restart.
                    return Err(SinkError::Io {
                        path: msg.topic.clone().into(),
                        source: std::io::Error::other(e.to_string()),
                    });
                }
                self.send(*msg);
            }
            if retried {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }

    /// Counts what was sent since the last settle, now that the broker has
    /// acknowledged it.
    fn count_settled(&mut self) {
        let u = std::mem::take(&mut self.unsettled);
        if let Some(since) = u.since {
            KafkaProduced {
                receipts: u.receipts.into_iter().collect(),
                dead_letters: u.dead_letters,
                elapsed: since.elapsed(),
            }
            .emit();
        }
    }
}

/// An agency's receipt topic.
pub(super) fn receipt_topic(prefix: &str, agency: &AgencyId) -> String {
    format!("{prefix}{agency}")
}

/// A receipt's Kafka key: the agency's reference, so one notice's receipts
/// share a partition; a signed batch (no reference) by its own ID.
pub(super) fn receipt_key(r: &Receipt) -> String {
    r.reference.clone().unwrap_or_else(|| r.receipt_id.clone())
}

fn position_key(p: &SourcePosition) -> String {
    match p {
        SourcePosition::Kafka {
            topic,
            partition,
            offset,
        } => format!("{topic}:{partition}:{offset}"),
        SourcePosition::File { path, line } => format!("file:{path}:{line}"),
        SourcePosition::InProcess { sequence } => format!("memory:{sequence}"),
    }
}

impl Sink for KafkaSink {
    fn handled(&mut self, batch: &[Handled]) -> Result<(), SinkError> {
        // Settled by the pipeline (`Sink::settle`) before the source is
        // acknowledged, once for several batches: counted then.
        self.unsettled.since.get_or_insert_with(Instant::now);
        for h in batch {
            // An agency the operator never registered has no receipt topic
            // to read (and writing one would let anyone create topics by
            // naming them): its rejections are kept in the store only.
            if let Some(r) = h
                .receipt
                .as_ref()
                .filter(|r| self.agencies.status(&r.agency).is_some())
            {
                // A notice's own `accepted` (its first, or the same again
                // for its re-delivered record); not a re-send's `duplicate`,
                // which carries no chain link.
                if let karpoosheh_schemas::ReceiptEvent::Accepted {
                    tracking_code,
                    duplicate: false,
                    ..
                } = &r.event
                {
                    self.unsettled.accepted.push(tracking_code.as_u64());
                }
                self.receipt(r, Some(h.received));
            }
            if let Some(d) = &h.dead_letter {
                self.unsettled.dead_letters += 1;
                let mut headers = vec![
                    ("karpoosheh.reason", d.problems[0].reason.code().to_owned()),
                    ("karpoosheh.payload_size", d.payload_size.to_string()),
                ];
                if let SourcePosition::Kafka {
                    topic,
                    partition,
                    offset,
                } = &d.source
                {
                    headers.push(("karpoosheh.source.topic", topic.clone()));
                    headers.push(("karpoosheh.source.partition", partition.to_string()));
                    headers.push(("karpoosheh.source.offset", offset.to_string()));
                }
                self.send(Outgoing {
                    topic: self.dead_letter_topic.clone(),
                    key: position_key(&d.source),
                    value: serde_json::to_vec(d).expect("dead letters serialise"),
                    headers,
                    agency: None,
                    arrived: None,
                });
            }
        }
        Ok(())
    }

    fn batches(&mut self, batches: &[karpoosheh_schemas::Receipt]) -> Result<(), SinkError> {
        // Not counted as receipts: `receipts_produced_total` counts the
        // events of notices and rejections, one per handled record. Only
        // for registered agencies, as `handled` sends their receipts.
        //
        // Out beside the receipts `handled` sends next, and settled with
        // them: one broker round trip on each answer's path, not the
        // head's and then the receipts' in series (issue 25). Each batch
        // is in the audit log already (sealed before the sinks have it).
        // The head goes to its own partition, so an agency may read a
        // receipt before its batch either way; the agency guide says to
        // hold it until the batch comes. A head the topic refuses parks
        // the agency at the settle, like a refused receipt.
        for b in batches {
            if self.agencies.status(&b.agency).is_some() {
                self.receipt(b, None);
            }
        }
        Ok(())
    }

    fn events(&mut self, receipts: &[karpoosheh_schemas::Receipt]) -> Result<(), SinkError> {
        self.unsettled.since.get_or_insert_with(Instant::now);
        for r in receipts {
            // Same topic and key as the notice's `accepted`: an agency reads
            // one notice's events in order.
            self.receipt(r, None);
        }
        self.settle()
    }

    fn settle(&mut self) -> Result<(), SinkError> {
        let accepted = std::mem::take(&mut self.unsettled.accepted);
        match self.settle_all() {
            Ok(()) => {
                // Out (acknowledged or parked): their notices' later events
                // may follow.
                if let Some(out) = &self.accepted_out {
                    out.advance(&accepted);
                }
                self.count_settled();
                Ok(())
            }
            Err(e) => {
                // Not known to be delivered: whatever is sent again is
                // counted when it is acknowledged.
                self.unsettled = Unsettled::default();
                Err(e)
            }
        }
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.settle()
    }
}
