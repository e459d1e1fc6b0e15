//! The node floor: the only code that sees the whole [`Config`]. It opens
//! the store, builds the pipeline, the notifier and the scheduler from the
//! configuration, and assembles them into the node's commands as siblings:
//! [`run`] (agencies' Kafka topics, with the article-29 follow-up and the
//! side readers), [`demo`] (the generated load in the same process) and
//! [`ingest`] (one batch file). Everything below this floor takes the part
//! of the configuration it needs and returns typed errors; `anyhow` is
//! used here and in `main.rs` only.

pub mod demo;
mod ingest;
mod run;

use std::sync::Arc;

use crate::audit::AuditLog;
use crate::channel::{ChannelError, Dispatcher};
use crate::config::Config;
use crate::delivery::{
    Notify, Registry, Scheduler, SchedulerHandle, SentNotification, SystemClock,
};
use crate::evidence::keys::SigningKey;
use crate::evidence::seal::Sealer;
use crate::pipeline::Pipeline;
use crate::sink::Sink;
use crate::store::scylla::{ScyllaStore, ScyllaStoreConfig};
use crate::store::{FjallStore, Store, StoreBackend, StoreError};

pub use self::ingest::ingest;
pub use self::run::run;
pub use crate::operator::render::{render_chain, render_history, render_status};

/// Opens the store the configuration names, to write.
pub fn open_store(cfg: &Config) -> Result<Arc<dyn Store>, StoreError> {
    open(cfg, false)
}

/// Opens the store to read only (the inspection commands): on a cluster
/// this takes no node lease, so it runs beside the live engine of the same
/// `node_id`; any write is refused. The embedded store allows one process
/// either way.
pub fn open_store_read_only(cfg: &Config) -> Result<Arc<dyn Store>, StoreError> {
    open(cfg, true)
}

fn open(cfg: &Config, read_only: bool) -> Result<Arc<dyn Store>, StoreError> {
    match cfg.store.backend {
        StoreBackend::Embedded => Ok(Arc::new(FjallStore::open(cfg.store.fjall())?)),
        StoreBackend::Scylla => Ok(Arc::new(ScyllaStore::open(ScyllaStoreConfig {
            scylla: cfg.scylla.clone(),
            node_id: cfg.node_id,
            record_retention: cfg.delivery.record_retention.0,
            read_only,
        })?)),
    }
}

/// The ingest pipeline of this node: its `[pipeline]` sizes, `[limits]`
/// and `node_id`, writing to `store` and handing every durably handled
/// record to `sinks`. The one constructor `run`, `demo`, `ingest`, the
/// benchmarks and the tests share; set readiness and the stop flag with
/// [`Pipeline::with_health`] and [`Pipeline::with_shutdown`].
pub fn pipeline(cfg: &Config, store: Arc<dyn Store>, sinks: Vec<Box<dyn Sink>>) -> Pipeline {
    Pipeline::new(
        cfg.pipeline.clone(),
        cfg.limits.clone(),
        cfg.node_id,
        store,
        sinks,
    )
}

/// The receipt signer of this node, from `evidence.key_file`; `None`
/// when none is configured (the callers that publish receipts refuse).
pub fn sealer(cfg: &Config) -> anyhow::Result<Option<Sealer>> {
    use anyhow::Context;
    if cfg.evidence.key_file.as_os_str().is_empty() {
        return Ok(None);
    }
    let key = SigningKey::load(&cfg.evidence.key_file).context("reading evidence.key_file")?;
    Ok(Some(Sealer::new(Arc::new(key))))
}

/// Like [`sealer`], but a node that publishes receipts must sign them.
pub fn required_sealer(cfg: &Config) -> anyhow::Result<Sealer> {
    sealer(cfg)?.ok_or_else(|| {
        anyhow::anyhow!(
            "evidence.key_file is not set: every receipt is signed with the node's key; make one with `karpoosheh keys generate --kid node-{}-<yyyy-mm> --out FILE` and set evidence.key_file (docs/operations.md, \"Trust file and keys\")",
            cfg.node_id
        )
    })
}

/// The node's audit log on `store`, checked against the last tree head
/// it signed, and `sealer` appending every batch to it.
pub fn audited(
    cfg: &Config,
    store: &Arc<dyn Store>,
    sealer: Sealer,
) -> anyhow::Result<(Sealer, Arc<AuditLog>)> {
    let log = Arc::new(AuditLog::open(
        store.clone(),
        cfg.node_id,
        sealer.key_handle(),
    )?);
    Ok((sealer.with_log(log.clone()), log))
}

/// The inbox API on `inbox.listen`, when set (issue 22: being built).
pub fn inbox(
    cfg: &Config,
    store: &Arc<dyn Store>,
    scheduler: Option<&Arc<SchedulerHandle>>,
    registry: Arc<dyn Registry>,
    agencies: Option<crate::agencies::AgencyRegistry>,
) -> anyhow::Result<Option<crate::http::HttpServer>> {
    use anyhow::Context;
    if cfg.inbox.listen.is_empty() {
        return Ok(None);
    }
    let Some(scheduler) = scheduler else {
        anyhow::bail!("inbox.listen is set but delivery.enabled is false: opening, confirming and sharing are events the article-29 scheduler records");
    };
    let verifier = Arc::new(
        crate::identity::Verifier::open(&cfg.identity)
            .context("reading the identity provider's keys (identity.jwks_file or jwks_url; inbox.listen is set)")?,
    );
    let parts = crate::inbox::InboxParts {
        store: store.clone(),
        verifier,
        scheduler: scheduler.clone(),
        registry,
        agencies,
        node_id: cfg.node_id,
        max_reference_chars: cfg.limits.max_reference_chars,
    };
    let router = crate::inbox::router(parts, &cfg.inbox);
    let tls = !cfg.inbox.tls_cert_file.as_os_str().is_empty();
    let server = if tls {
        crate::http::HttpServer::start_router_tls(
            &cfg.inbox.listen,
            router,
            &cfg.inbox.tls_cert_file,
            &cfg.inbox.tls_key_file,
        )
    } else {
        crate::http::HttpServer::start_router(&cfg.inbox.listen, router)
    }
    .context("starting the inbox API (inbox.listen)")?;
    // Tests and supervisors read the bound address (port 0 picks one).
    eprintln!(
        "karpoosheh: inbox API on {}://{}/v1/",
        if tls { "https" } else { "http" },
        server.addr
    );
    // Traffic data older than its retention is purged, hourly. (ScyllaDB
    // rows expire by themselves.)
    let store = store.clone();
    std::thread::Builder::new()
        .name("traffic-purge".into())
        .spawn(move || loop {
            let before = chrono::Utc::now()
                - chrono::Duration::from_std(crate::store::ACCESS_RETENTION).expect("186 days fit");
            let _ = store.purge_access(before);
            std::thread::sleep(std::time::Duration::from_secs(3600));
        })
        .context("starting the traffic-data purge")?;
    Ok(Some(server))
}

/// The operators' endpoint, when `operator.listen` is set: the store's
/// reads for `karpoosheh mailbox`, `notice`, `rejections`, `dead-letters`
/// and `access-log` while this node holds the store.
/// Purges the embedded store's rejections and dead letters older than
/// `store.traffic_retention`, hourly, on a thread of its own. (ScyllaDB
/// rows expire by their TTL: nothing to do.)
pub fn traffic_purge(cfg: &Config, store: &Arc<dyn Store>) -> anyhow::Result<()> {
    use anyhow::Context;
    if cfg.store.backend != crate::store::StoreBackend::Embedded {
        return Ok(());
    }
    let retention =
        chrono::Duration::from_std(cfg.store.traffic_retention.0).unwrap_or(chrono::Duration::MAX);
    let store = store.clone();
    std::thread::Builder::new()
        .name("traffic-purge".into())
        .spawn(move || loop {
            let before = chrono::Utc::now()
                .checked_sub_signed(retention)
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
            let started = std::time::Instant::now();
            let result = store.purge_traffic(before);
            crate::internal_events::TrafficPurged {
                result: result.as_ref().map(|n| *n).map_err(|e| e as _),
                elapsed: started.elapsed(),
            }
            .emit();
            std::thread::sleep(std::time::Duration::from_secs(3600));
        })
        .context("starting the purge of rejections and dead letters")?;
    Ok(())
}

pub fn operator(
    cfg: &Config,
    store: &Arc<dyn Store>,
) -> anyhow::Result<Option<crate::http::HttpServer>> {
    use anyhow::Context;
    if cfg.operator.listen.is_empty() {
        return Ok(None);
    }
    let token = cfg.operator.token().map_err(anyhow::Error::msg)?;
    let server = crate::http::HttpServer::start_router(
        &cfg.operator.listen,
        crate::operator::router(store.clone(), &token),
    )
    .context("starting the operators' endpoint (operator.listen)")?;
    eprintln!(
        "karpoosheh: operator endpoint on http://{}/v1/operator/",
        server.addr
    );
    Ok(Some(server))
}

/// The notifier `[channels]` asks for: the channel dispatcher with its
/// gateways, rate limits, retries and breakers.
pub fn notifier(cfg: &Config) -> Result<Arc<dyn Notify>, ChannelError> {
    Ok(Arc::new(Dispatcher::from_config(&cfg.channels)?))
}

/// Starts the article-29 scheduler of this node on the system clock, with
/// the configured channels, mailbox profiles from `registry`, and accepted
/// notifications told to `observer` (the demo's simulated recipients).
pub fn scheduler(
    cfg: &Config,
    store: Arc<dyn Store>,
    registry: Arc<dyn Registry>,
    observer: Option<crossbeam_channel::Sender<Vec<SentNotification>>>,
    agencies: Option<crate::agencies::AgencyRegistry>,
) -> anyhow::Result<SchedulerHandle> {
    use anyhow::Context;
    let notifier = notifier(cfg).context("setting up the notification channels")?;
    Scheduler {
        config: cfg.delivery.clone(),
        store,
        notifier,
        registry,
        clock: Arc::new(SystemClock),
        observer,
        agencies,
    }
    .start()
    .context("starting the scheduler")
}
