//! `karpoosheh run`: a node on Kafka. The agencies' notice topics through
//! the pipeline into the store, receipts and dead letters back out, and
//! beside it the article-29 follow-up (scheduler, outbox to the receipt
//! topics), the confirmations and registry readers, and the metrics and
//! health endpoint.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;

use crate::agencies::AgencyRegistry;
use crate::config::Config;
use crate::delivery::sandbox::{self, SandboxRegistry};
use crate::delivery::{Outbox, StoreRegistry};
use crate::evidence::trust::Trust;
use crate::health::Health;
use crate::http::{install_recorder, Documents as HttpDocuments, HttpServer};
use crate::internal_events::SignedInputRefused;
use crate::kafka::client_config;
use crate::pipeline::RunSummary;
use crate::readers;
use crate::sink::{spawn_deliverer, AcceptedOut, KafkaSink, Parking, TreeHeadProducer};
use crate::source::KafkaSource;
use crate::store::StoreBackend;

/// Runs the engine on Kafka until `shutdown` is set, then finishes what
/// was read, commits and returns.
pub fn run(cfg: &Config, shutdown: Arc<AtomicBool>) -> anyhow::Result<RunSummary> {
    let health = Health::default();
    health.set(false, "starting");
    // The recorder first, so start-up events are counted too.
    let recorder = (!cfg.metrics.listen.is_empty()).then(install_recorder);
    crate::internal_events::InsecureSettings {
        warnings: &cfg.insecure(),
    }
    .emit();
    crate::internal_events::SandboxNode {
        enabled: cfg.sandbox.enabled,
    }
    .emit();
    if cfg.delivery.enabled && !cfg.sandbox.enabled {
        // Before anything is opened: a node that would tell agencies of
        // notifications nobody received does not start.
        // (Allowed, each simulated channel still warns as it starts.) A
        // sandbox only simulates (`Config::check_sandbox`).
        cfg.channels.check_live().map_err(anyhow::Error::msg)?;
    }
    let agencies = AgencyRegistry::open(&cfg.agencies)?;
    let k = &cfg.kafka;
    // Confirmations and profiles are applied only when signed by a key
    // the operator trusts: no trust file, no side readers.
    let reads_signed =
        (cfg.delivery.enabled && !k.acks_topic.is_empty()) || !k.registry_topic.is_empty();
    let trust = if reads_signed {
        SignedInputRefused::zero(&["confirmation", "profile"]);
        Some(Trust::open(&cfg.trust).context(
            "kafka.acks_topic or kafka.registry_topic is set, so trust.file must name the trust file of signers (or set both topics to \"\")",
        )?)
    } else {
        None
    };
    let sealer = super::required_sealer(cfg)?;
    if cfg.sandbox.enabled && !sealer.kid().contains("sandbox") {
        // Its receipts must never pass for a live node's evidence.
        anyhow::bail!(
            "sandbox.enabled: the signing key {:?} (evidence.key_file) is not a sandbox key; make one whose kid says so (karpoosheh keys generate --kid sandbox-...)",
            sealer.kid()
        );
    }
    let store = super::open_store(cfg)?;
    // Every batch the node signs is in its audit log before its receipts
    // leave; tree heads go to the audit topic.
    let (sealer, audit) = super::audited(cfg, &store, sealer)?;
    let publish: crate::audit::PublishHead = if k.audit_topic.is_empty() {
        Box::new(|_| Ok(()))
    } else {
        let producer = TreeHeadProducer::new(&k.audit_topic, client_config(k, &k.producer_options))
            .context("creating the tree-head producer")?;
        Box::new(move |m| producer.publish(m))
    };
    // Stopped last, after the outbox: the last batches get under a head.
    let audit_stop = Arc::new(AtomicBool::new(false));
    let publisher = audit
        .clone()
        .spawn_publisher(
            cfg.evidence.tree_head_interval.0,
            audit_stop.clone(),
            publish,
        )
        .context("starting the audit log's publisher")?;
    let _server = match recorder {
        None => None,
        Some(recorder) => {
            let s = HttpServer::start(
                &cfg.metrics.listen,
                recorder,
                health.clone(),
                Some(sealer.jwks().into()),
                Some(HttpDocuments::new(
                    store.clone(),
                    cfg.evidence.inquiries_per_second,
                    cfg.evidence.inquiries_per_client_per_minute,
                )),
            )
            .context("starting the metrics endpoint (metrics.listen)")?;
            // Tests and supervisors read the bound address (port 0 picks one).
            eprintln!("karpoosheh: metrics on http://{}/metrics", s.addr);
            Some(s)
        }
    };
    // Receipts an agency's topic refuses wait in the store (sink::parking)
    // and are delivered once it takes them again; the others flow.
    let parking =
        Parking::open(store.clone(), &agencies.ids()).context("opening the parked receipts")?;
    let parked_receipts = spawn_deliverer(
        parking.clone(),
        client_config(k, &k.producer_options),
        k.receipt_topic_prefix.clone(),
        shutdown.clone(),
    )
    .context("creating the parked receipts' producer")?;
    // Notices stored before this start have had their `accepted` out, or,
    // after a crash, get it when their records come again: until then (at
    // most a minute) their events wait.
    let accepted_out = Arc::new(
        AcceptedOut::open(cfg.node_id, store.clone(), crate::sink::RESTART_HOLD)
            .context("reading which accepted receipts are out")?,
    );
    let sink = KafkaSink::new(
        k,
        client_config(k, &k.producer_options),
        shutdown.clone(),
        agencies.clone(),
        parking.clone(),
    )
    .context("creating the receipts producer")?
    .with_accepted_out(accepted_out.clone());
    // The article-29 follow-up: rounds through the channels, receipts from
    // the outbox to the agencies' receipt topics, confirmations from the
    // acks topic, activations from the registry.
    let follow = if cfg.delivery.enabled {
        // The sandbox plays the registry and the recipients: what its
        // rounds tell, its recipients answer (delivery::sandbox).
        let (registry, observer, told): (Arc<dyn crate::delivery::Registry>, _, _) =
            if cfg.sandbox.enabled {
                let (tx, rx) = crossbeam_channel::bounded(64);
                (Arc::new(SandboxRegistry), Some(tx), Some(rx))
            } else {
                (Arc::new(StoreRegistry(store.clone())), None, None)
            };
        // The sandbox's gateways never fail on their own: an outcome is
        // what its test ID asks for (digit 8 for failures), not chance.
        let reliable;
        let sched_cfg = if cfg.sandbox.enabled {
            let mut c = cfg.clone();
            for s in [
                &mut c.channels.sms.simulated,
                &mut c.channels.email.simulated,
                &mut c.channels.push.simulated,
            ] {
                s.transient_failure_rate = 0.0;
                s.permanent_failure_rate = 0.0;
                s.slowdown_failure_rate = 0.0;
                s.slowdown_every = karpoosheh_schemas::HumanDuration(std::time::Duration::ZERO);
            }
            reliable = c;
            &reliable
        } else {
            cfg
        };
        let scheduler = super::scheduler(
            sched_cfg,
            store.clone(),
            registry,
            observer,
            Some(agencies.clone()),
        )?;
        let scheduler = Arc::new(scheduler);
        if let Some(told) = told {
            sandbox::spawn_recipients(told, scheduler.clone(), shutdown.clone())
                .context("starting the sandbox's recipients")?;
        }
        let events = KafkaSink::new(
            k,
            client_config(k, &k.producer_options),
            shutdown.clone(),
            agencies.clone(),
            parking.clone(),
        )
        .context("creating the delivery-events producer")?;
        let outbox = Outbox {
            store: store.clone(),
            sinks: vec![Box::new(events)],
            batch: 2000,
            sealer: Some(sealer.clone()),
            gate: Some(accepted_out.clone()),
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
                readers::confirmations::spawn(
                    readers::Subscription {
                        topic: &k.acks_topic,
                        group_id: &group,
                        client: client_config(k, &k.consumer_options),
                    },
                    cfg.node_id,
                    scheduler.clone(),
                    store.clone(),
                    trust.clone().expect("opened when acks are read"),
                    shutdown.clone(),
                )
                .context("starting the confirmations reader")?,
            )
        };
        Some((scheduler, outbox, acks))
    } else {
        None
    };
    let _operator = super::operator(cfg, &store)?;
    super::traffic_purge(cfg, &store)?;
    let inbox = super::inbox(
        cfg,
        &store,
        follow.as_ref().map(|f| &f.0),
        Arc::new(StoreRegistry(store.clone())),
        Some(agencies.clone()),
    )?;
    let registry = if k.registry_topic.is_empty() {
        None
    } else {
        let group = if k.registry_group_id.is_empty() {
            format!("{}.registry.{}", k.group_id, cfg.node_id)
        } else {
            k.registry_group_id.clone()
        };
        Some(
            readers::registry::spawn(
                readers::Subscription {
                    topic: &k.registry_topic,
                    group_id: &group,
                    client: client_config(k, &k.consumer_options),
                },
                store.clone(),
                follow.as_ref().map(|f| f.0.clone()),
                k.registry_max_future_skew.0,
                trust.clone().expect("opened when profiles are read"),
                shutdown.clone(),
            )
            .context("starting the registry reader")?,
        )
    };
    let source = KafkaSource::new(
        k,
        client_config(k, &k.consumer_options),
        agencies.clone(),
        health.clone(),
        cfg.limits.max_payload_bytes.as_u64() as usize,
    )
    .context("creating the Kafka consumer")?
    .with_signals(accepted_out.signals())
    .with_known_references(store.clone());
    // Per-node stores: one member per group (see the source's guarantees).
    let source = match cfg.store.backend {
        StoreBackend::Embedded => source.exclusive_group(),
        StoreBackend::Scylla => source,
    };
    let pipeline = super::pipeline(cfg, store, vec![Box::new(sink)])
        .with_agencies(Some(agencies.clone()))
        .with_sealer(Some(sealer))
        .with_health(health)
        .with_shutdown(shutdown.clone());
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
    // It holds the scheduler: stopped first.
    drop(inbox);
    if let Some((scheduler, outbox, acks)) = follow {
        if let Some(a) = acks {
            let _ = a.join();
        }
        if let Ok(s) = Arc::try_unwrap(scheduler) {
            s.stop();
        }
        let _ = outbox.join();
    }
    let _ = parked_receipts.join();
    audit_stop.store(true, Ordering::SeqCst);
    let _ = publisher.join();
    let summary = result?;
    if scheduler_failed {
        anyhow::bail!(
            "the article-29 scheduler stopped (the store refuses writes, or a worker panicked; the log says which): restart the engine once the cause is fixed"
        );
    }
    Ok(summary)
}
