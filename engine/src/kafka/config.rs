//! `[kafka]`: brokers, topics, the consumer group, back-pressure, and any
//! librdkafka option passed through (SASL, TLS, tuning).

use std::collections::BTreeMap;
use std::time::Duration;

use karpoosheh_schemas::HumanDuration;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: comma-separated host:port list.
    pub brokers: String,
    /// The consumer group every engine node of the fleet shares.
    pub group_id: String,
    /// Notice topics are `<prefix><agency>`; the engine subscribes to all
    /// of them by pattern, so a new agency's topic is picked up without a
    /// restart.
    pub notice_topic_prefix: String,
    /// Receipts go to `<prefix><agency>`.
    pub receipt_topic_prefix: String,
    /// Undecodable records go here, with their bytes and source position.
    pub dead_letter_topic: String,
    /// The compacted topic of mailbox profiles; empty to not consume it.
    pub registry_topic: String,
    /// Consumer group of the registry reader. Empty means
    /// `<group_id>.registry.<node_id>`: every node reads the whole
    /// registry (into its own store, or into the shared ScyllaDB store,
    /// where the newest profile wins whatever the order) and starts the
    /// rounds of its own notices waiting for an activation. Keep it so.
    pub registry_group_id: String,
    /// A profile whose `updated_at` lies further than this ahead of the
    /// engine's clock is refused (`profile_from_future`, kept as a dead
    /// letter): the newest profile wins, so a future-dated one would pin
    /// the mailbox against every later correction.
    pub registry_max_future_skew: HumanDuration,
    /// Recipients' confirmations (art. 29); empty to not consume them.
    pub acks_topic: String,
    /// Where the node publishes its audit log's signed tree heads (every
    /// `evidence.tree_head_interval`), keyed by `node_id`; empty to only
    /// keep them in the store.
    pub audit_topic: String,
    /// Consumer group of the confirmations reader. Empty means
    /// `<group_id>.acks.<node_id>`: every node reads every confirmation and
    /// applies those for the notices it issued (the tracking code names
    /// the node), with either store. A group shared by nodes would skip
    /// the others' confirmations: keep it per node.
    pub acks_group_id: String,
    /// Records of one partition read but not yet durable before the
    /// partition is paused; it is resumed below half of this. 0: never
    /// pause (back-pressure through the pipeline's bounded queues).
    pub max_in_flight_per_partition: usize,
    /// How often durable progress is committed to the group (and always
    /// on rebalance and shutdown).
    pub commit_interval: HumanDuration,
    /// After SIGTERM/SIGINT, how long the node may take to finish and
    /// commit what it read before it exits anyway (nothing is lost then:
    /// what was not committed is re-delivered).
    pub shutdown_timeout: HumanDuration,
    /// librdkafka options for every client (consumers and producer), e.g.
    /// `"security.protocol" = "SASL_SSL"`, `"sasl.mechanism" = "SCRAM-SHA-512"`.
    /// Secret values (passwords, client secrets, keys) are masked by
    /// `karpoosheh config`.
    #[serde(serialize_with = "crate::secret::serialize_masked_options")]
    pub options: BTreeMap<String, String>,
    /// librdkafka options for the consumers only.
    #[serde(serialize_with = "crate::secret::serialize_masked_options")]
    pub consumer_options: BTreeMap<String, String>,
    /// librdkafka options for the receipts and dead-letter producer only.
    #[serde(serialize_with = "crate::secret::serialize_masked_options")]
    pub producer_options: BTreeMap<String, String>,
    /// librdkafka options for every client whose values are read from
    /// files when the configuration is loaded, e.g.
    /// `{ "sasl.password" = "/etc/karpoosheh/kafka-password" }`: the secret
    /// stays out of the configuration and the environment.
    pub secret_files: BTreeMap<String, std::path::PathBuf>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            group_id: "karpoosheh".into(),
            notice_topic_prefix: "karpoosheh.notices.".into(),
            receipt_topic_prefix: "karpoosheh.receipts.".into(),
            dead_letter_topic: "karpoosheh.dlq".into(),
            registry_topic: "karpoosheh.registry".into(),
            registry_group_id: String::new(),
            // Clocks of the identity side and the engine agree within
            // seconds (NTP); minutes leave room for a slow one.
            registry_max_future_skew: HumanDuration(Duration::from_secs(5 * 60)),
            acks_topic: "karpoosheh.acks".into(),
            audit_topic: "karpoosheh.audit".into(),
            acks_group_id: String::new(),
            // Off: the pipeline's bounded queues and byte budget already
            // hold the source back. (Records once lost with it on were
            // lost by tansu 0.6's memory engine, which skips the rest of a
            // stored batch when a fetch starts inside it: BENCHMARKS.md,
            // scripts/repro-pause-resume.py. Untested against Apache Kafka.)
            max_in_flight_per_partition: 0,
            // A crash re-delivers at most about this much traffic.
            commit_interval: HumanDuration(Duration::from_secs(1)),
            shutdown_timeout: HumanDuration(Duration::from_secs(30)),
            options: BTreeMap::new(),
            consumer_options: BTreeMap::new(),
            producer_options: BTreeMap::new(),
            secret_files: BTreeMap::new(),
        }
    }
}

/// librdkafka options the engine sets itself: its guarantees depend on them.
const RESERVED: &[&str] = &[
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "group.id",
];

impl KafkaConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("kafka.brokers must name at least one broker (host:port)".into());
        }
        if self.group_id.is_empty() {
            return Err("kafka.group_id must not be empty".into());
        }
        for (name, prefix) in [
            ("kafka.notice_topic_prefix", &self.notice_topic_prefix),
            ("kafka.receipt_topic_prefix", &self.receipt_topic_prefix),
        ] {
            if prefix.is_empty()
                || !prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return Err(format!(
                    "{name} {prefix:?} must be a non-empty topic-name prefix (a-z, 0-9, '.', '_', '-')"
                ));
            }
        }
        if self.notice_topic_prefix == self.receipt_topic_prefix {
            return Err(
                "kafka.notice_topic_prefix and kafka.receipt_topic_prefix must differ".into(),
            );
        }
        if self.dead_letter_topic.is_empty() {
            return Err("kafka.dead_letter_topic must not be empty".into());
        }
        if self.max_in_flight_per_partition == 1 {
            return Err("kafka.max_in_flight_per_partition must be 0 (off) or at least 2".into());
        }
        if self.commit_interval.0.is_zero() {
            return Err("kafka.commit_interval must be above zero".into());
        }
        for (section, map) in [
            ("kafka.options", &self.options),
            ("kafka.consumer_options", &self.consumer_options),
            ("kafka.producer_options", &self.producer_options),
        ] {
            if let Some(k) = map.keys().find(|k| RESERVED.contains(&k.as_str())) {
                return Err(format!(
                    "{section}: {k:?} is set by the engine (its delivery guarantees depend on it); remove it"
                ));
            }
        }
        if let Some(k) = self
            .secret_files
            .keys()
            .find(|k| RESERVED.contains(&k.as_str()) || self.options.contains_key(*k))
        {
            return Err(format!(
                "kafka.secret_files: {k:?} is set by the engine or also in kafka.options; give it once"
            ));
        }
        Ok(())
    }

    /// Reads `secret_files` into `options` (once, when the configuration
    /// is loaded).
    pub fn read_secret_files(&mut self) -> Result<(), String> {
        for (k, path) in &self.secret_files {
            let v = crate::secret::read_secret_file(path)
                .map_err(|e| format!("kafka.secret_files {k:?}: {e}"))?;
            self.options.insert(k.clone(), v);
        }
        Ok(())
    }

    /// Settings that send credentials where anyone on the path can read
    /// them, in words for a warning.
    pub fn insecure(&self) -> Vec<String> {
        let mut out = Vec::new();
        let get = |k: &str| {
            self.options
                .get(k)
                .or_else(|| self.consumer_options.get(k))
                .or_else(|| self.producer_options.get(k))
                .map(|v| v.to_ascii_lowercase())
        };
        let protocol = get("security.protocol").unwrap_or_else(|| "plaintext".into());
        let mechanism = get("sasl.mechanism").unwrap_or_else(|| "gssapi".into());
        if protocol == "sasl_plaintext" {
            out.push(format!(
                "kafka: SASL ({mechanism}) over plain TCP (security.protocol = SASL_PLAINTEXT): {} and every notice and receipt cross the network unencrypted; use SASL_SSL",
                if mechanism == "plain" { "the password" } else { "the session" }
            ));
        } else if protocol == "plaintext" && get("sasl.password").is_some() {
            out.push("kafka: sasl.password is set but security.protocol is PLAINTEXT: the password is unused and traffic is unencrypted; use SASL_SSL".into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_the_guarantees_depend_on_cannot_be_overridden() {
        assert!(KafkaConfig::default().validate().is_ok());
        let mut c = KafkaConfig::default();
        c.consumer_options
            .insert("enable.auto.commit".into(), "true".into());
        let err = c.validate().unwrap_err();
        assert!(err.contains("enable.auto.commit"), "{err}");
        let mut c = KafkaConfig::default();
        c.receipt_topic_prefix = c.notice_topic_prefix.clone();
        assert!(
            c.validate().is_err(),
            "receipts must not land on notice topics"
        );
        let mut c = KafkaConfig::default();
        c.options
            .insert("security.protocol".into(), "SASL_SSL".into());
        assert!(c.validate().is_ok(), "security options pass through");
    }
}
