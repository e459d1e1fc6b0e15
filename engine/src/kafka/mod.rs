//! The Kafka front door (`karpoosheh run`): agencies' notice topics in,
//! receipts and dead letters out, mailbox profiles from the registry
//! topic into the store.
//!
//! - [`KafkaSource`] (`source.rs`): the consumer behind the [`Source`]
//!   trait — group, pattern subscription, per-partition lanes, offsets
//!   committed only over durable records, back-pressure, rebalances.
//! - [`KafkaSink`] (`producer.rs`): receipts and dead letters, delivered
//!   before the source is acknowledged.
//! - `registry.rs`: mailbox profiles into the store (and activations
//!   into the scheduler).
//! - `acks.rs`: recipients' confirmations into the scheduler.
//! - The article-29 scheduler runs beside them; its receipts leave the
//!   store's outbox through a second [`KafkaSink`].
//!
//! Nothing here depends on which broker it talks to: any Kafka-protocol
//! broker, with any librdkafka option passed through configuration.
//!
//! [`Source`]: crate::source::Source

mod acks;
mod config;
mod producer;
mod registry;
mod source;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use rdkafka::config::ClientConfig;

pub use self::config::KafkaConfig;
pub use self::producer::KafkaSink;
pub use self::source::{notice_pattern, KafkaSource, NOT_READY_BROKERS};

use crate::agencies::AgencyRegistry;
use crate::http::{install_recorder, Health, HttpServer};
use crate::{Config, Pipeline, RunSummary};

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
) -> Result<rdkafka::consumer::BaseConsumer, rdkafka::error::KafkaError> {
    use rdkafka::consumer::Consumer;
    client
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "true");
    set_default(&mut client, "auto.offset.reset", "earliest");
    let consumer: rdkafka::consumer::BaseConsumer = client.create()?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

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

/// Runs the engine on Kafka until `shutdown` is set, then finishes what
/// was read, commits and returns.
pub fn run(cfg: &Config, shutdown: Arc<AtomicBool>) -> anyhow::Result<RunSummary> {
    let health = Health::default();
    health.set(false, "starting");
    // The recorder first, so start-up events are counted too.
    let recorder = (!cfg.metrics.listen.is_empty()).then(install_recorder);
    let agencies = AgencyRegistry::open(&cfg.agencies)?;
    let store = crate::open_store(cfg)?;
    let _server = match recorder {
        None => None,
        Some(recorder) => {
            let s = HttpServer::start(&cfg.metrics.listen, recorder, health.clone())
                .context("starting the metrics endpoint (metrics.listen)")?;
            // Tests and supervisors read the bound address (port 0 picks one).
            eprintln!("karpoosheh: metrics on http://{}/metrics", s.addr);
            Some(s)
        }
    };
    let k = &cfg.kafka;
    let sink = KafkaSink::new(
        k,
        client_config(k, &k.producer_options),
        shutdown.clone(),
        agencies.clone(),
    )
    .context("creating the receipts producer")?;
    // The article-29 follow-up: rounds through the channels, receipts from
    // the outbox to the agencies' receipt topics, confirmations from the
    // acks topic, activations from the registry.
    let follow = if cfg.delivery.enabled {
        let scheduler = crate::delivery::Scheduler {
            config: cfg.delivery.clone(),
            store: store.clone(),
            notifier: crate::delivery::notifier_for(cfg)
                .context("setting up the notification channels")?,
            registry: Arc::new(crate::delivery::StoreRegistry(store.clone())),
            clock: Arc::new(crate::delivery::SystemClock),
            observer: None,
        }
        .start()
        .context("starting the scheduler")?;
        let scheduler = Arc::new(scheduler);
        let events = KafkaSink::new(
            k,
            client_config(k, &k.producer_options),
            shutdown.clone(),
            agencies.clone(),
        )
        .context("creating the delivery-events producer")?;
        let outbox = crate::delivery::Outbox {
            store: store.clone(),
            sinks: vec![Box::new(events)],
            batch: 2000,
        }
        .spawn(shutdown.clone(), std::time::Duration::from_millis(50));
        let acks = if k.acks_topic.is_empty() {
            None
        } else {
            let group = if k.acks_group_id.is_empty() {
                format!("{}.acks.{}", k.group_id, cfg.node_id)
            } else {
                k.acks_group_id.clone()
            };
            Some(
                acks::spawn(
                    &k.acks_topic,
                    &group,
                    cfg.node_id,
                    client_config(k, &k.consumer_options),
                    scheduler.clone(),
                    shutdown.clone(),
                )
                .context("starting the confirmations reader")?,
            )
        };
        Some((scheduler, outbox, acks))
    } else {
        None
    };
    let registry = if k.registry_topic.is_empty() {
        None
    } else {
        let group = if k.registry_group_id.is_empty() {
            format!("{}.registry.{}", k.group_id, cfg.node_id)
        } else {
            k.registry_group_id.clone()
        };
        Some(
            registry::spawn(
                &k.registry_topic,
                &group,
                client_config(k, &k.consumer_options),
                store.clone(),
                follow.as_ref().map(|f| f.0.clone()),
                shutdown.clone(),
            )
            .context("starting the registry reader")?,
        )
    };
    let source = KafkaSource::new(
        k,
        client_config(k, &k.consumer_options),
        agencies,
        health.clone(),
        cfg.limits.max_payload_bytes.as_u64() as usize,
    )
    .context("creating the Kafka consumer")?;
    let pipeline = Pipeline {
        config: cfg.pipeline.clone(),
        limits: cfg.limits.clone(),
        node_id: cfg.node_id,
        store,
        sinks: vec![Box::new(sink)],
        health,
        shutdown: shutdown.clone(),
    };
    // A scheduler that ended on its own (a store that refuses writes, a
    // panic) stops the node, as a failed pipeline does: a node that only
    // ingests while nobody is notified would look healthy and serve no one.
    let watcher = follow.as_ref().map(|(scheduler, _, _)| {
        let (scheduler, shutdown) = (scheduler.clone(), shutdown.clone());
        std::thread::Builder::new()
            .name("scheduler-watch".into())
            .spawn(move || {
                while !shutdown.load(Ordering::SeqCst) {
                    if scheduler.failed() {
                        shutdown.store(true, Ordering::SeqCst);
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            })
    });
    let result = pipeline.run(Box::new(source));
    // The pipeline stops on its own only when it failed: stop the rest too.
    shutdown.store(true, Ordering::SeqCst);
    if let Some(Ok(w)) = watcher {
        let _ = w.join();
    }
    // Asked before the scheduler is stopped, which ends its workers too.
    let scheduler_failed = follow.as_ref().is_some_and(|(s, _, _)| s.failed());
    if let Some(r) = registry {
        let _ = r.join();
    }
    if let Some((scheduler, outbox, acks)) = follow {
        if let Some(a) = acks {
            let _ = a.join();
        }
        if let Ok(s) = Arc::try_unwrap(scheduler) {
            s.stop();
        }
        let _ = outbox.join();
    }
    let summary = result?;
    if scheduler_failed {
        anyhow::bail!(
            "the article-29 scheduler stopped (the store refuses writes, or a worker panicked; the log says which): restart the engine once the cause is fixed"
        );
    }
    Ok(summary)
}
