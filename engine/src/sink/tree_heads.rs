//! The audit log's signed tree heads out to Kafka (`kafka.audit_topic`),
//! keyed by the log (the node ID) so one node's heads stay in order in
//! one partition. A head counts as published once the broker has
//! acknowledged it; until then it is produced again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use crate::evidence::log::TreeHeadMessage;
use crate::kafka::set_default;

/// Remembers the delivery result of the head in flight.
#[derive(Default)]
pub struct HeadDelivery {
    result: Mutex<Option<Result<(), String>>>,
}

impl ClientContext for HeadDelivery {}

impl ProducerContext for HeadDelivery {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        *self.result.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(result.as_ref().map(drop).map_err(|(e, _)| e.to_string()));
    }
}

/// Produces tree heads to the audit topic, one at a time.
pub struct TreeHeadProducer {
    producer: BaseProducer<HeadDelivery>,
    topic: String,
}

/// How long one head may take to be acknowledged before it is tried again.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

impl TreeHeadProducer {
    pub fn new(topic: &str, mut client: ClientConfig) -> Result<Self, KafkaError> {
        client.set("enable.idempotence", "true");
        set_default(&mut client, "message.timeout.ms", "30000");
        Ok(TreeHeadProducer {
            producer: client.create_with_context(HeadDelivery::default())?,
            topic: topic.to_owned(),
        })
    }

    /// Produces `msg` and waits for the broker's acknowledgement.
    pub fn publish(&self, msg: &TreeHeadMessage) -> Result<(), String> {
        let value = serde_json::to_vec(msg).expect("a tree head serialises");
        let key = msg.head.log.to_string();
        *self
            .producer
            .context()
            .result
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        self.producer
            .send(BaseRecord::to(&self.topic).key(&key).payload(&value))
            .map_err(|(e, _)| e.to_string())?;
        let start = Instant::now();
        loop {
            self.producer.poll(Duration::from_millis(100));
            if let Some(r) = self
                .producer
                .context()
                .result
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
            {
                return r.map_err(|e| format!("producing to {}: {e}", self.topic));
            }
            if start.elapsed() > HEAD_TIMEOUT {
                // Let the message time out in librdkafka before the next.
                let _ = self.producer.flush(Duration::from_secs(35));
                return Err(format!("producing to {}: no acknowledgement", self.topic));
            }
        }
    }
}
