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
//! - `handled` returns only when the broker has acknowledged every
//!   message of the batch, so the pipeline commits the source's offsets
//!   only after the receipts are out: a crash re-sends receipts (at least
//!   once; agencies deduplicate by `receipt_id`) and never loses one.
//!   Failed deliveries are produced again until they succeed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use karpoosheh_schemas::SourcePosition;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use super::{Handled, Sink, SinkError};
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
}

/// Collects delivery failures of the batch in flight.
pub struct DeliveryContext {
    failed: Mutex<Vec<(Box<Outgoing>, KafkaError)>>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Outgoing>;

    fn delivery(&self, result: &DeliveryResult<'_>, msg: Box<Outgoing>) {
        if let Err((e, _)) = result {
            self.failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((msg, e.clone()));
        }
    }
}

/// The receipts and dead-letter sink.
pub struct KafkaSink {
    producer: ThreadedProducer<DeliveryContext>,
    /// The `batch_signed` receipts of the ingest path, acknowledged before
    /// the receipts that name them are sent (they go to other partitions,
    /// so one producer's order would not hold across them).
    batch_producer: ThreadedProducer<DeliveryContext>,
    receipt_prefix: String,
    dead_letter_topic: String,
    shutdown: Arc<std::sync::atomic::AtomicBool>,
    agencies: AgencyRegistry,
    /// Sent since the last settle: counted in
    /// `karpoosheh_receipts_produced_total` only once `settle` has seen
    /// the broker acknowledge them.
    unsettled: Unsettled,
}

/// Receipts and dead letters handed to the producer since the last settle.
#[derive(Default)]
struct Unsettled {
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
    ) -> Result<Self, KafkaError> {
        client.set("enable.idempotence", "true");
        set_default(&mut client, "linger.ms", "5");
        set_default(&mut client, "compression.type", "lz4");
        // Retry for as long as it takes: a receipt must never be dropped.
        // The sink re-produces whatever still fails, too.
        set_default(&mut client, "message.timeout.ms", "0");
        let producer = client.create_with_context(DeliveryContext {
            failed: Mutex::new(Vec::new()),
        })?;
        let batch_producer = client.create_with_context(DeliveryContext {
            failed: Mutex::new(Vec::new()),
        })?;
        Ok(KafkaSink {
            producer,
            batch_producer,
            receipt_prefix: cfg.receipt_topic_prefix.clone(),
            dead_letter_topic: cfg.dead_letter_topic.clone(),
            shutdown,
            agencies,
            unsettled: Unsettled::default(),
        })
    }

    fn send(&self, msg: Outgoing) {
        self.send_on(&self.producer, msg)
    }

    fn send_on(&self, producer: &ThreadedProducer<DeliveryContext>, msg: Outgoing) {
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
            match producer.send(record) {
                Ok(()) => return,
                Err((e, record)) => {
                    msg = record.delivery_opaque;
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) {
                        // The producer's own queue is the bound; wait for
                        // deliveries to make room.
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
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

    /// Waits until every message is acknowledged, re-producing failures.
    fn settle_all(&self) -> Result<(), SinkError> {
        self.settle_on(&self.producer)
    }

    fn settle_on(&self, producer: &ThreadedProducer<DeliveryContext>) -> Result<(), SinkError> {
        let mut delay = Duration::from_millis(100);
        loop {
            // Flush returns early only on timeout; loop until it is empty.
            while producer.in_flight_count() > 0 {
                let _ = producer.flush(Duration::from_secs(1));
            }
            let failed: Vec<_> = std::mem::take(
                &mut *producer
                    .context()
                    .failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()),
            );
            if failed.is_empty() {
                return Ok(());
            }
            for (msg, e) in failed {
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
                self.send_on(producer, *msg);
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(5));
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
                let value = serde_json::to_vec(r).expect("receipts serialise");
                *self
                    .unsettled
                    .receipts
                    .entry(agency_label(Some(&r.agency)))
                    .or_default() += 1;
                self.send(Outgoing {
                    topic: format!("{}{}", self.receipt_prefix, r.agency),
                    key: r.reference.clone().unwrap_or_else(|| r.receipt_id.clone()),
                    value,
                    headers: vec![],
                });
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
                });
            }
        }
        Ok(())
    }

    fn batches(&mut self, batches: &[karpoosheh_schemas::Receipt]) -> Result<(), SinkError> {
        // Not counted as receipts: `receipts_produced_total` counts the
        // events of notices and rejections, one per handled record. Only
        // for registered agencies, as `handled` sends their receipts; and
        // acknowledged before `handled` sends the receipts, so that no
        // receipt is out without its batch.
        let mut sent = false;
        for b in batches
            .iter()
            .filter(|b| self.agencies.status(&b.agency).is_some())
        {
            self.send_on(
                &self.batch_producer,
                Outgoing {
                    topic: format!("{}{}", self.receipt_prefix, b.agency),
                    key: b.receipt_id.clone(),
                    value: serde_json::to_vec(b).expect("receipts serialise"),
                    headers: vec![],
                },
            );
            sent = true;
        }
        if sent {
            self.settle_on(&self.batch_producer)?;
        }
        Ok(())
    }

    fn events(&mut self, receipts: &[karpoosheh_schemas::Receipt]) -> Result<(), SinkError> {
        self.unsettled.since.get_or_insert_with(Instant::now);
        for r in receipts {
            // Same topic and key as the notice's `accepted`: an agency reads
            // one notice's events in order. A signed batch is keyed by its
            // own ID and not counted as a receipt.
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
            self.send(Outgoing {
                topic: format!("{}{}", self.receipt_prefix, r.agency),
                key: r.reference.clone().unwrap_or_else(|| r.receipt_id.clone()),
                value: serde_json::to_vec(r).expect("receipts serialise"),
                headers: vec![],
            });
        }
        self.settle()
    }

    fn settle(&mut self) -> Result<(), SinkError> {
        match self.settle_all() {
            Ok(()) => {
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
