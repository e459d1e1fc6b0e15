//! Kafka client configuration shared by every Kafka adapter: the brokers
//! and `kafka.options` merged with each role's own options, librdkafka
//! defaults that never override an operator's setting, and the side
//! consumers' group settings. The adapters themselves live by role:
//! the notice source in `crate::source` ([`KafkaSource`]), receipts and
//! dead letters in `crate::sink` ([`KafkaSink`]), confirmations and the
//! registry in `crate::readers`; `crate::node` wires them.
//!
//! Nothing here depends on which broker it talks to: any Kafka-protocol
//! broker, with any librdkafka option passed through configuration.
//!
//! [`KafkaSource`]: crate::source::KafkaSource
//! [`KafkaSink`]: crate::sink::KafkaSink

mod config;

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;

pub use self::config::KafkaConfig;

/// Sets a librdkafka option unless configuration already set it.
pub(crate) fn set_default(client: &mut ClientConfig, key: &str, value: &str) {
    if client.get(key).is_none() {
        client.set(key, value);
    }
}

/// A consumer of one topic in its own group, committing by hand only
/// after what it read is durable, from the earliest offset on first start.
pub(crate) fn side_consumer(
    mut client: ClientConfig,
    topic: &str,
    group_id: &str,
    reader: &'static str,
) -> Result<rdkafka::consumer::BaseConsumer<ReaderContext>, rdkafka::error::KafkaError> {
    use rdkafka::consumer::Consumer;
    client
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "true");
    set_default(&mut client, "auto.offset.reset", "earliest");
    // Its lag, every second (`karpoosheh_reader_lag_records`).
    set_default(&mut client, "statistics.interval.ms", "1000");
    // A restarted node's reader resumes within seconds of its dead self's
    // session (see the notice source).
    set_default(&mut client, "session.timeout.ms", "10000");
    set_default(&mut client, "heartbeat.interval.ms", "1000");
    let consumer: rdkafka::consumer::BaseConsumer<ReaderContext> =
        client.create_with_context(ReaderContext {
            reader,
            topic: topic.to_owned(),
        })?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

/// A side reader's client context: reports its consumer lag.
pub(crate) struct ReaderContext {
    reader: &'static str,
    topic: String,
}

impl rdkafka::client::ClientContext for ReaderContext {
    fn stats(&self, stats: rdkafka::statistics::Statistics) {
        let Some(t) = stats.topics.get(&self.topic) else {
            return;
        };
        let lag = t
            .partitions
            .values()
            .filter(|p| p.partition >= 0)
            .map(|p| p.consumer_lag.max(0))
            .sum();
        crate::internal_events::ReaderLag {
            reader: self.reader,
            records: lag,
        }
        .emit();
    }
}

impl rdkafka::consumer::ConsumerContext for ReaderContext {}

/// A client configuration: the brokers, then `kafka.options`, then the
/// role's own options (later wins).
pub fn client_config(cfg: &KafkaConfig, role: &BTreeMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in cfg.options.iter().chain(role) {
        c.set(k, v);
    }
    c
}
