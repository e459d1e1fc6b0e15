//! The node's HTTP server: `/metrics` (Prometheus text format),
//! `/health/live` (the process answers), `/health/ready` (the store is
//! open and the pipeline takes traffic; 503 with the reason otherwise),
//! `/.well-known/jwks.json` (the node's public keys) and
//! `/v1/documents/…` (article 15 inquiries, public).
//!
//! axum's router on hyper, on a small runtime of its own (two worker
//! threads, so it keeps answering while the pipeline is saturated),
//! behind our own accept loop: a client gets [`HEADER_TIMEOUT`] to send
//! its request head, a connection lives at most [`CONNECTION_LIFETIME`],
//! a request is answered within [`REQUEST_TIMEOUT`] (503 otherwise), and
//! at most [`MAX_CONNECTIONS`] are open; more are closed at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::health::Health;
use crate::internal_events::{DocumentInquired, HttpServing};
use crate::metric_names as m;

/// Installs the Prometheus recorder once per process and returns its handle.
pub fn install_recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Fine below 25 ms, where an answer's stages are measured
            // (issue 25: a receipt in 10 ms, an fsync or a broker round
            // trip in one or two).
            let latency_buckets = [
                0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25,
                0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ];
            let size_buckets = [
                1.0, 10.0, 100.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                    &latency_buckets,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full(m::STORE_WRITE_RECORDS.into()),
                        &size_buckets,
                    )
                })
                .expect("static bucket lists are non-empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (e.g. by a test
            // harness); the handle still renders what this one records.
            let _ = metrics::set_global_recorder(recorder);
            describe_all();
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                })
                .expect("spawn metrics upkeep");
            handle
        })
        .clone()
}

fn describe_all() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(m::RECORDS_RECEIVED, "Records read from sources.");
    describe_counter!(m::NOTICES_STORED, "Notices stored for the first time.");
    describe_counter!(
        m::NOTICES_DUPLICATE,
        "Exact re-sends absorbed (same agency, reference and content)."
    );
    describe_counter!(
        m::NOTICES_REJECTED,
        "Notices rejected and kept for the agency, by reason."
    );
    describe_counter!(
        m::DEAD_LETTERS,
        "Records that could not be decoded at all, by reason."
    );
    describe_counter!(
        m::STORED_BYTES,
        Unit::Bytes,
        "Payload bytes of stored notices."
    );
    describe_counter!(m::STORE_WRITES, "Durable store writes (group commits).");
    describe_counter!(
        m::STORE_WRITE_ERRORS,
        "Failed store writes; retried, never acknowledged."
    );
    describe_histogram!(
        m::STORE_WRITE_SECONDS,
        Unit::Seconds,
        "Time of one durable store write, fsync included."
    );
    describe_histogram!(
        m::STORE_WRITE_RECORDS,
        "Records in one durable store write."
    );
    describe_histogram!(
        m::INGEST_LATENCY_SECONDS,
        Unit::Seconds,
        "Arrival to durable write, per record."
    );
    describe_histogram!(
        m::RECEIPT_LATENCY_SECONDS,
        Unit::Seconds,
        "Arrival of a record to its receipt acknowledged by the broker, per receipt sent."
    );
    describe_histogram!(
        m::PIPELINE_STAGE_SECONDS,
        Unit::Seconds,
        "Time in one pipeline stage (batch, commit_queue, seal, settle), per batch or write."
    );
    describe_histogram!(
        m::DECODE_SECONDS,
        Unit::Seconds,
        "Time to decode and validate one chunk."
    );
    describe_gauge!(m::QUEUE_DEPTH, "Items waiting between pipeline stages.");
    describe_gauge!(
        m::PIPELINE_BYTES_IN_FLIGHT,
        Unit::Bytes,
        "Payload bytes read from the source and not yet acknowledged (bounded by pipeline.max_bytes_in_flight)."
    );
    describe_gauge!(m::SHARDS, "Shards of this node's pipeline.");
    describe_gauge!(
        m::STORE_DISK_BYTES,
        Unit::Bytes,
        "Approximate bytes of the store on disk."
    );
    describe_gauge!(
        m::STORE_WRITE_BUFFER_BYTES,
        Unit::Bytes,
        "Bytes in the embedded store's memtables, not yet flushed."
    );
    describe_gauge!(
        m::STORE_CACHE_BYTES,
        Unit::Bytes,
        "Bytes in the embedded store's block cache."
    );
    describe_gauge!(
        m::STORE_JOURNAL_FILES,
        "Journal files of the embedded store not yet truncated."
    );
    describe_gauge!(
        m::STORE_PINNED_BYTES,
        Unit::Bytes,
        "Index and filter blocks the embedded store keeps in memory outside its cache."
    );
    describe_gauge!(m::STORE_TABLES, "Table files of the embedded store.");
    describe_histogram!(
        m::STORE_WRITE_BUFFER_WAIT_SECONDS,
        Unit::Seconds,
        "How long store writes waited for memtables to drain under store.write_buffer_size."
    );
    describe_counter!(
        m::STORE_WRITE_BUFFER_OVERRUNS,
        "Store writes that waited the longest allowed and went ahead over store.write_buffer_size."
    );
    describe_gauge!(m::READY, "1 while the engine is ready to take traffic.");
    describe_gauge!(
        m::SOURCE_FINISHED,
        "1 once the source ended by itself (the demo's generator, a finite source, read to its end): not ready for want of traffic, not for a fault."
    );
    describe_gauge!(m::BUILD_INFO, "Build information.");
    describe_counter!(
        m::CHANNEL_ATTEMPTS,
        "Notification attempts at a gateway, by channel, gateway and outcome."
    );
    describe_counter!(
        m::CHANNEL_RETRIES,
        "Notification retries after transient failures."
    );
    describe_gauge!(
        m::CHANNEL_CIRCUIT_STATE,
        "Channel circuit breaker: 0 closed, 1 half-open, 2 open."
    );
    describe_counter!(m::CHANNEL_CIRCUIT_OPENED, "Times a channel breaker opened.");
    describe_histogram!(
        m::CHANNEL_RATE_LIMIT_WAIT_SECONDS,
        Unit::Seconds,
        "How long sends waited for a channel rate-limit token (sends that waited); rate of _sum is saturation."
    );
    describe_counter!(
        m::CHANNEL_RATE_LIMIT_REJECTED,
        "Sends that gave up waiting for a rate-limit token."
    );
    describe_histogram!(
        m::CHANNEL_SEND_SECONDS,
        Unit::Seconds,
        "Time of one notification attempt."
    );
    describe_gauge!(
        m::CHANNEL_GATEWAY_INFO,
        "1 per channel in use, with its gateway (simulated = nobody is notified)."
    );
    // The article-29 follow-up.
    describe_counter!(
        m::NOTIFICATIONS,
        "Notifications by channel, round, outcome and addressee."
    );
    describe_counter!(
        m::AGENCY_NOTIFICATIONS,
        "Notifications by the notice's agency and outcome."
    );
    describe_counter!(
        m::AGENCY_CONFIRMATIONS,
        "Confirmations applied, by the notice's agency."
    );
    describe_counter!(
        m::ROUNDS_PACED,
        "Rounds put off to their agency's next slot (rounds_per_second)."
    );
    describe_counter!(
        m::ROUND_RETRIES,
        "Rounds put off because every channel failed transiently."
    );
    describe_counter!(m::CONFIRMATIONS, "Confirmations by outcome and reason.");
    describe_counter!(
        m::NOTICES_SERVED,
        "Notices legally served (two confirmations)."
    );
    describe_counter!(
        m::NOTICES_NOT_SERVED,
        "Notices not served after every round."
    );
    describe_counter!(
        m::NOTICES_EXPIRED,
        "Notices whose retention expiry passed before they were served."
    );
    describe_counter!(
        m::NOTICES_RELEASED,
        "Scheduled notices (deliver_at) that landed in their mailbox."
    );
    describe_counter!(
        m::NOTICES_CANCELLED,
        "Scheduled notices their agency cancelled before they landed."
    );
    describe_counter!(
        m::REMINDERS,
        "Reminders of a response deadline (respond_by), by outcome: sent, failed, skipped (opened or confirmed already)."
    );
    describe_counter!(
        m::MAILBOX_UNREACHABLE,
        "Notices that found their mailbox unreachable, by mailbox status."
    );
    describe_histogram!(
        m::TIME_TO_SERVED_SECONDS,
        Unit::Seconds,
        "Time from storing a notice to its legal service."
    );
    describe_counter!(m::SCHEDULER_TIMERS, "Due timers handled by the scheduler.");
    describe_gauge!(
        m::SCHEDULER_LAG_SECONDS,
        Unit::Seconds,
        "How late the oldest timer of the last scheduler scan was."
    );
    describe_gauge!(
        m::SCHEDULER_LANE_LAG_SECONDS,
        Unit::Seconds,
        "How late a lane's oldest due timer was in a worker's last pass (0: none due)."
    );
    describe_histogram!(
        m::SCHEDULER_SCAN_SECONDS,
        Unit::Seconds,
        "Time of one scheduler scan, sends and durable write included."
    );
    describe_counter!(
        m::SCHEDULER_STORE_ERRORS,
        "Scheduler passes interrupted by a store error (retried)."
    );
    describe_counter!(
        m::RECEIPTS_PUBLISHED,
        "Receipts of delivery events published from the outbox."
    );
    describe_counter!(
        m::OUTBOX_PUBLISH_ERRORS,
        "Outbox publishing attempts that failed (the receipts stay and are retried)."
    );
    describe_counter!(
        m::KAFKA_CLIENT_ERRORS,
        "Errors of the notice consumer's client, retried by librdkafka, by kind."
    );
    describe_gauge!(m::READER_RUNNING, "1 while a side reader runs.");
    describe_gauge!(
        m::SANDBOX,
        "1 on the agencies' sandbox node (simulated gateways and recipients), 0 on a live node."
    );
    describe_gauge!(
        m::INSECURE_SETTINGS,
        "Settings that send credentials or personal data unencrypted to another machine (logged at start)."
    );
    describe_gauge!(
        m::READER_LAG,
        "Records in a side reader's topic not yet read by it."
    );
    describe_counter!(
        m::READER_APPLIED,
        "Records a side reader applied durably and committed."
    );
    describe_counter!(
        m::RECORDS_QUARANTINED,
        "Stored records that could not be read back, set aside so they block nothing."
    );
    describe_gauge!(
        m::AGENCY_BULK_DEFERRED,
        "An agency's bulk partitions left unread until Tehran midnight: over its daily quota with over_quota = defer."
    );
    describe_gauge!(
        m::AGENCY_PARKED,
        "1 while an agency is parked: its receipt topic refuses its receipts, which wait in the store."
    );
    describe_gauge!(
        m::RECEIPTS_PARKED,
        "Receipts waiting in the store for a parked agency's topic."
    );
    describe_counter!(
        m::RECEIPTS_PARKED_TOTAL,
        "Receipts put in the parking lot, by agency and reason."
    );
    describe_counter!(
        m::RECEIPTS_UNPARKED,
        "Parked receipts delivered once their agency's topic took them again."
    );
    describe_counter!(
        m::READER_ERRORS,
        "Failed steps of a side reader (confirmations, registry), by stage."
    );
    describe_counter!(
        m::CHANNEL_REFUSED,
        "Notifications refused before any gateway was asked (unusable address), by reason."
    );
    // The ScyllaDB backend.
    describe_gauge!(
        m::STORE_LEASE_HELD,
        "1 while this node holds the lease on its node_id in the cluster."
    );
    describe_counter!(
        m::STORE_LEASE_ERRORS,
        "Failed renewals or releases of the node lease."
    );
    describe_counter!(
        m::STORE_MIGRATIONS_APPLIED,
        "Schema migrations applied by this process."
    );
    describe_counter!(
        m::STORE_REPAIRS,
        "Interrupted writes completed and orphan listing entries skipped."
    );
    // The Kafka front door (`karpoosheh run`).
    describe_gauge!(
        m::KAFKA_BROKERS_UP,
        "1 while the consumer reaches at least one broker."
    );
    describe_gauge!(
        m::KAFKA_CONSUMER_LAG,
        "Records in this node's notice partitions not yet read."
    );
    describe_gauge!(
        m::KAFKA_BACKLOG,
        "Records in this node's notice partitions not yet read, by lane (urgent, normal, bulk)."
    );
    describe_gauge!(
        m::KAFKA_ASSIGNED_PARTITIONS,
        "Notice partitions this node owns."
    );
    describe_gauge!(
        m::KAFKA_GROUP_SHARED,
        "1 while another member shares this node's consumer group on the embedded store (the newcomer stops; this node goes on)."
    );
    describe_gauge!(
        m::KAFKA_PAUSED_PARTITIONS,
        "Owned notice partitions paused by back-pressure."
    );
    describe_counter!(m::KAFKA_REBALANCES, "Consumer group rebalances, by kind.");
    describe_counter!(
        m::KAFKA_COMMITS,
        "Offset commits of durable progress, by result."
    );
    describe_counter!(
        m::RECEIPTS_PRODUCED,
        "Receipts delivered to the agencies' receipt topics."
    );
    describe_counter!(
        m::DEAD_LETTERS_PRODUCED,
        "Dead letters delivered to the dead-letter topic."
    );
    describe_counter!(
        m::KAFKA_PRODUCE_ERRORS,
        "Receipt or dead-letter deliveries that failed (retried)."
    );
    describe_counter!(
        m::PROFILES,
        "Mailbox profiles read from the registry topic, by outcome."
    );
    describe_counter!(
        m::AGENCY_REGISTRY_LOADS,
        "Loads of the agency registry file, by result."
    );
    describe_counter!(
        m::SIGNED_INPUTS_REFUSED,
        "Signed inputs (confirmations, mailbox profiles) refused before anything in them was applied, by kind and reason."
    );
    describe_counter!(
        m::DOCUMENT_INQUIRIES,
        "Inquiries about printed notices (article 15), by result."
    );
    describe_counter!(
        m::TRUST_FILE_LOADS,
        "Loads of the trust file of signers, by result."
    );
    describe_gauge!(
        m::AUDIT_LOG_ENTRIES,
        "Signed receipt batches in this node's audit log (its tree size)."
    );
    describe_counter!(
        m::AUDIT_TREE_HEADS,
        "Signed tree heads of the audit log published, or failed and retried, by result."
    );
    describe_counter!(
        m::IDENTITY_KEY_LOADS,
        "Loads of the identity provider's key file, by result."
    );
    describe_counter!(
        m::INBOX_REQUESTS,
        "Inbox API calls answered, by route and HTTP status."
    );
    describe_histogram!(
        m::INBOX_REQUEST_SECONDS,
        Unit::Seconds,
        "Time to answer an inbox API call, by route."
    );
    describe_gauge!(
        m::AUDIT_PUBLISHED_ENTRIES,
        "Batches under the last published tree head of the audit log (its size)."
    );
    describe_gauge!(
        m::AUDIT_LAST_TREE_HEAD,
        "When the last published tree head of the audit log was signed, Unix seconds."
    );
}

/// Time a client has to send a request's head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest one connection stays open (keep-alive included).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// The longest a request may take, its body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Connections open at once; more are closed as they come.
pub const MAX_CONNECTIONS: usize = 256;

/// The server's bounds (the constants above, smaller in tests).
#[derive(Debug, Clone, Copy)]
struct Bounds {
    header_timeout: Duration,
    connection_lifetime: Duration,
    max_connections: usize,
}

const BOUNDS: Bounds = Bounds {
    header_timeout: HEADER_TIMEOUT,
    connection_lifetime: CONNECTION_LIFETIME,
    max_connections: MAX_CONNECTIONS,
};
/// The largest request body read (a notice's JSON for an inquiry).
const MAX_BODY: usize = 1 << 20;

/// The running endpoint server; stops when dropped.
pub struct HttpServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Clone)]
struct AppState {
    handle: PrometheusHandle,
    health: Health,
    jwks: Option<Arc<str>>,
    documents: Option<Documents>,
}

type Answer = (u16, &'static str, String);

fn respond((status, ctype, body): Answer) -> axum::response::Response {
    let mut r = axum::response::Response::new(axum::body::Body::from(body));
    *r.status_mut() =
        axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK);
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(ctype),
    );
    r
}

impl HttpServer {
    /// Binds `listen` and serves in the background; `jwks`, the node's
    /// public keys (a JWK Set), at `/.well-known/jwks.json`; `documents`,
    /// inquiries about printed notices at `/v1/documents/`.
    pub fn start(
        listen: &str,
        handle: PrometheusHandle,
        health: Health,
        jwks: Option<Arc<str>>,
        documents: Option<Documents>,
    ) -> std::io::Result<HttpServer> {
        Self::start_bounded(listen, handle, health, jwks, documents, BOUNDS)
    }

    fn start_bounded(
        listen: &str,
        handle: PrometheusHandle,
        health: Health,
        jwks: Option<Arc<str>>,
        documents: Option<Documents>,
        bounds: Bounds,
    ) -> std::io::Result<HttpServer> {
        let listener = std::net::TcpListener::bind(listen)
            .map_err(|e| std::io::Error::other(format!("cannot listen on {listen}: {e}")))?;
        listener.set_nonblocking(true)?;
        let state = AppState {
            handle,
            health,
            jwks,
            documents,
        };
        let router = axum::Router::new()
            .route(
                "/v1/documents/{*rest}",
                axum::routing::get(inquiry).post(inquiry),
            )
            .fallback(plain)
            .with_state(state);
        let server = Self::serve_router(listener, router, bounds, None)?;
        HttpServing {
            addr: Some(server.addr),
            error: None,
        }
        .emit();
        Ok(server)
    }

    /// Serves `router` on `listen` (another API than the metrics one, on
    /// its own address) with the same bounds.
    pub fn start_router(listen: &str, router: axum::Router) -> std::io::Result<HttpServer> {
        let listener = std::net::TcpListener::bind(listen)
            .map_err(|e| std::io::Error::other(format!("cannot listen on {listen}: {e}")))?;
        listener.set_nonblocking(true)?;
        Self::serve_router(listener, router, BOUNDS, None)
    }

    /// [`HttpServer::start_router`] over TLS (rustls): HTTPS only, with
    /// the certificate chain and key of the PEM files.
    pub fn start_router_tls(
        listen: &str,
        router: axum::Router,
        cert_file: &std::path::Path,
        key_file: &std::path::Path,
    ) -> std::io::Result<HttpServer> {
        let tls = tls_config(cert_file, key_file)?;
        let listener = std::net::TcpListener::bind(listen)
            .map_err(|e| std::io::Error::other(format!("cannot listen on {listen}: {e}")))?;
        listener.set_nonblocking(true)?;
        Self::serve_router(listener, router, BOUNDS, Some(tls))
    }

    fn serve_router(
        listener: std::net::TcpListener,
        router: axum::Router,
        bounds: Bounds,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<HttpServer> {
        let addr = listener.local_addr()?;
        // Calls' blocking work (store reads, a durable act, the traffic
        // record) runs on the blocking pool: 64 at once, so that calls
        // waiting on a durable write (tens of milliseconds while ingest
        // fsyncs) do not hold back the many that only read.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(64)
            .thread_name("http")
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || runtime.block_on(serve(listener, router, stopped, bounds, tls)))?;
        Ok(HttpServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// Accepts connections until `stopped`, each served by hyper with the
/// timeouts above, at most [`MAX_CONNECTIONS`] at once.
/// A rustls server configuration from PEM files: the certificate chain
/// (leaf first) and its private key (PKCS#8, PKCS#1 or SEC1). TLS 1.2
/// and 1.3, no client certificates.
fn tls_config(
    cert_file: &std::path::Path,
    key_file: &std::path::Path,
) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        std::io::Error::other(format!("{what} {}: {e}", path.display()))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| bad("the certificate file", cert_file, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("the certificate file", cert_file, &e))?;
    if certs.is_empty() {
        return Err(bad(
            "the certificate file",
            cert_file,
            &"no certificate in it",
        ));
    }
    let key =
        PrivateKeyDer::from_pem_file(key_file).map_err(|e| bad("the key file", key_file, &e))?;
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            std::io::Error::other(format!(
                "the certificate and key do not make a TLS identity: {e}"
            ))
        })?;
    Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))
}

async fn serve(
    listener: std::net::TcpListener,
    router: axum::Router,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
    bounds: Bounds,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    use tower::ServiceExt as _;
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    let open = Arc::new(tokio::sync::Semaphore::new(bounds.max_connections));
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors and the like: back off a little.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let service = router.clone().map_request(
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            },
        );
        let tls = tls.clone();
        tokio::spawn(async move {
            let http = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(bounds.header_timeout)
                .clone();
            let service = hyper_util::service::TowerToHyperService::new(service);
            match tls {
                None => {
                    let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    let _ = tokio::time::timeout(bounds.connection_lifetime, conn).await;
                }
                Some(acceptor) => {
                    // The handshake within the time a request head has.
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(bounds.header_timeout, acceptor.accept(stream)).await
                    else {
                        drop(permit);
                        return;
                    };
                    let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    let _ = tokio::time::timeout(bounds.connection_lifetime, conn).await;
                }
            }
            drop(permit);
        });
    }
}

/// Every path but the inquiries.
async fn plain(
    axum::extract::State(s): axum::extract::State<AppState>,
    uri: axum::http::Uri,
) -> axum::response::Response {
    respond(route(uri.path(), &s.handle, &s.health, s.jwks.as_deref()))
}

/// `/v1/documents/…`: answered on the blocking pool (the store blocks),
/// within [`REQUEST_TIMEOUT`].
async fn inquiry(
    axum::extract::State(s): axum::extract::State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let Some(documents) = s.documents.clone() else {
        return respond((404, "text/plain; charset=utf-8", "not found\n".into()));
    };
    let path = req.uri().path().to_owned();
    let post = req.method() == axum::http::Method::POST;
    let answer = tokio::time::timeout(REQUEST_TIMEOUT, async move {
        let body = if post {
            match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
                Ok(b) => Some(b),
                Err(_) => return documents.refuse("the body could not be read, or is over 1 MiB"),
            }
        } else {
            None
        };
        tokio::task::spawn_blocking(move || {
            documents.answer(Some(peer.ip()), &path, body.as_deref())
        })
        .await
        .unwrap_or_else(|_| {
            (
                500,
                "application/json",
                "{\"error\":\"internal error\"}\n".into(),
            )
        })
    })
    .await;
    respond(answer.unwrap_or_else(|_| {
        DocumentInquired { result: "error" }.emit();
        (
            503,
            "application/json",
            "{\"error\":\"the store did not answer in time; try again\"}\n".into(),
        )
    }))
}

/// Inquiries about printed notices (article 15) on the node's HTTP
/// server: `GET /v1/documents/<tracking-code>/<verification-code>`, or
/// `POST` the same with the notice's JSON as the body to check it too.
/// Rate-limited, in total and per client address; every answer counted
/// in `karpoosheh_document_inquiries_total{result}`.
#[derive(Clone)]
pub struct Documents {
    store: Arc<dyn crate::store::Store>,
    limiter: Arc<Mutex<Limiter>>,
}

/// Token buckets by key (a client address, a person), each refilled at
/// `per_minute` and holding at most that many; past `max_keys` the full
/// ones are forgotten (they would allow anyway).
/// The bearer credential of a request (`Authorization: Bearer …`), or
/// `""` when there is none.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> &str {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

pub(crate) struct Buckets<K> {
    per_minute: f64,
    max_keys: usize,
    buckets: HashMap<K, (f64, Instant)>,
}

impl<K: std::hash::Hash + Eq> Buckets<K> {
    pub(crate) fn new(per_minute: f64, max_keys: usize) -> Self {
        Buckets {
            per_minute,
            max_keys,
            buckets: HashMap::new(),
        }
    }

    /// Takes a token of `key`'s bucket, if it has one.
    pub(crate) fn allow(&mut self, key: K) -> bool {
        let now = Instant::now();
        let pm = self.per_minute;
        if self.buckets.len() > self.max_keys {
            self.buckets
                .retain(|_, b| now.duration_since(b.1).as_secs_f64() * pm / 60.0 + b.0 < pm);
        }
        let b = self.buckets.entry(key).or_insert((pm, now));
        b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * pm / 60.0).min(pm.max(1.0));
        b.1 = now;
        if b.0 < 1.0 {
            return false;
        }
        b.0 -= 1.0;
        true
    }
}

/// The key a client is limited by: its address, an IPv6 one by its /64
/// (one host holds a whole /64).
pub(crate) fn client_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            std::net::IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Token buckets: one for the node, one per client address.
struct Limiter {
    per_second: f64,
    total: (f64, Instant),
    clients: Buckets<std::net::IpAddr>,
}

impl Limiter {
    fn new(per_second: f64, per_client_per_minute: f64) -> Limiter {
        Limiter {
            per_second,
            total: (per_second.max(1.0), Instant::now()),
            clients: Buckets::new(per_client_per_minute, 100_000),
        }
    }

    fn allow(&mut self, client: Option<std::net::IpAddr>) -> bool {
        let now = Instant::now();
        let ps = self.per_second;
        let t = &mut self.total;
        t.0 = (t.0 + now.duration_since(t.1).as_secs_f64() * ps).min(ps.max(1.0));
        t.1 = now;
        if self.total.0 < 1.0 {
            return false;
        }
        if let Some(ip) = client {
            if !self.clients.allow(ip) {
                return false;
            }
        }
        self.total.0 -= 1.0;
        true
    }
}

impl Documents {
    pub fn new(
        store: Arc<dyn crate::store::Store>,
        per_second: f64,
        per_client_per_minute: f64,
    ) -> Documents {
        DocumentInquired::zero();
        Documents {
            store,
            limiter: Arc::new(Mutex::new(Limiter::new(per_second, per_client_per_minute))),
        }
    }

    /// A request refused before it was asked (counted as `bad_request`).
    fn refuse(&self, why: &str) -> Answer {
        DocumentInquired {
            result: "bad_request",
        }
        .emit();
        (
            400,
            "application/json",
            serde_json::json!({ "error": why }).to_string() + "\n",
        )
    }

    /// Answers an inquiry at `path` from `client`, with the notice's JSON
    /// when it was posted. Blocks on the store.
    fn answer(
        &self,
        client: Option<std::net::IpAddr>,
        path: &str,
        document: Option<&[u8]>,
    ) -> Answer {
        const JSON: &str = "application/json";
        let address = client;
        let client = client.map(client_key);
        let allowed = self
            .limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(client);
        if !allowed {
            DocumentInquired {
                result: "rate_limited",
            }
            .emit();
            return (
                429,
                JSON,
                "{\"error\":\"too many inquiries; try again later\"}\n".into(),
            );
        }
        let parts: Vec<&str> = path
            .strip_prefix("/v1/documents/")
            .unwrap_or("")
            .split('/')
            .collect();
        let [code, vcode] = parts[..] else {
            return self.refuse("ask /v1/documents/<tracking-code>/<verification-code>");
        };
        let answered = crate::documents::inquire(self.store.as_ref(), code, vcode, document)
            .and_then(|a| {
                // A genuine paper's inquiry touched that mailbox: it is in
                // the traffic data (with no caller: anyone holding the
                // paper may ask), before it is answered.
                if let Some(mailbox) = a.mailbox {
                    self.store.record_access(&[crate::model::AccessRecord {
                        at: crate::model::to_millis(chrono::Utc::now()),
                        mailbox,
                        actor: None,
                        action: "document_inquiry".into(),
                        tracking_code: karpoosheh_schemas::TrackingCode::parse(code.trim()).ok(),
                        client: None,
                        status: 200,
                        address: address.map(|c| c.to_string()),
                    }])?;
                }
                Ok(a)
            });
        match answered {
            Ok(a) => {
                DocumentInquired { result: a.result() }.emit();
                let status = if a.genuine { 200 } else { 404 };
                (
                    status,
                    JSON,
                    serde_json::to_string(&a).unwrap_or_default() + "\n",
                )
            }
            Err(_) => {
                DocumentInquired { result: "error" }.emit();
                (
                    503,
                    JSON,
                    "{\"error\":\"the store did not answer; try again\"}\n".into(),
                )
            }
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn route(path: &str, handle: &PrometheusHandle, health: &Health, jwks: Option<&str>) -> Answer {
    match path {
        "/.well-known/jwks.json" => match jwks {
            Some(j) => (200, "application/jwk-set+json", j.to_owned()),
            None => (404, "text/plain; charset=utf-8", "no signing key\n".into()),
        },
        "/metrics" => {
            let mut text = handle.render();
            crate::process_metrics::render(&mut text);
            (200, "text/plain; version=0.0.4; charset=utf-8", text)
        }
        "/health/live" => (200, "text/plain; charset=utf-8", "live\n".into()),
        "/health/ready" => match health.ready() {
            (true, _) => (200, "text/plain; charset=utf-8", "ready\n".into()),
            (false, why) => (
                503,
                "text/plain; charset=utf-8",
                format!("not ready: {why}\n"),
            ),
        },
        "/" => (
            200,
            "text/plain; charset=utf-8",
            "karpoosheh engine: /metrics /health/live /health/ready /.well-known/jwks.json\n"
                .into(),
        ),
        _ => (404, "text/plain; charset=utf-8", "not found\n".into()),
    }
}

#[cfg(test)]
mod limiter_tests {
    use super::*;

    #[test]
    fn inquiries_are_limited_per_client_and_in_total() {
        let mut l = Limiter::new(5.0, 3.0);
        let a: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let b: std::net::IpAddr = "10.0.0.2".parse().unwrap();
        assert!((0..3).all(|_| l.allow(Some(a))), "a client's burst");
        assert!(!l.allow(Some(a)), "then that client waits");
        assert!(l.allow(Some(b)), "another client does not");
        assert!(l.allow(None));
        assert!(!l.allow(None), "the node's total is spent (5 per second)");
    }
}

#[cfg(test)]
mod server_tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// The routes answer; a client that never finishes its request head
    /// is cut off; connections past the bound are closed at once.
    #[test]
    fn routes_answer_and_slow_or_surplus_clients_are_cut_off() {
        let server = HttpServer::start_bounded(
            "127.0.0.1:0",
            install_recorder(),
            Health::default(),
            Some("{\"keys\":[]}".into()),
            None,
            Bounds {
                header_timeout: Duration::from_millis(300),
                connection_lifetime: Duration::from_secs(5),
                max_connections: 2,
            },
        )
        .unwrap();
        let addr = server.addr;
        assert!(get(addr, "/health/live").starts_with("HTTP/1.1 200"));
        let jwks = get(addr, "/.well-known/jwks.json");
        assert!(
            jwks.contains("application/jwk-set+json") && jwks.ends_with("{\"keys\":[]}"),
            "{jwks}"
        );
        assert!(get(addr, "/nope").starts_with("HTTP/1.1 404"));
        assert!(get(addr, "/v1/documents/a/b").starts_with("HTTP/1.1 404"));

        // Half a request head, then nothing: closed after the timeout.
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(slow, "GET /metrics HTTP/1.1\r\nHost:").unwrap();
        let t = Instant::now();
        let mut buf = Vec::new();
        let _ = slow.read_to_end(&mut buf);
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "a slow client holds its connection for {:?}",
            t.elapsed()
        );

        // Two idle connections take the bound; a third is closed at once,
        // and answers resume once they are gone.
        let a = TcpStream::connect(addr).unwrap();
        let b = TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = write!(c, "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
        drop((a, b));
        std::thread::sleep(Duration::from_millis(500));
        assert!(get(addr, "/health/live").starts_with("HTTP/1.1 200"));
    }
}

#[cfg(test)]
mod inquiry_tests {
    use super::*;
    use crate::store::conformance::{new_notice, notice, person};
    use crate::store::{Durability, FjallStore, FjallStoreConfig};

    /// A genuine paper's inquiry is traffic data of that mailbox, with the
    /// asker's address and no caller; a wrong code touches nothing.
    #[test]
    fn a_genuine_inquiry_is_in_the_mailboxs_traffic_data() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = FjallStoreConfig::new(dir.path());
        cfg.durability = Durability::Buffered;
        let store: Arc<dyn crate::store::Store> = Arc::new(FjallStore::open(cfg).unwrap());
        let e = new_notice(notice("tax", "r-1", person(100), "متن"), 1);
        let crate::model::Entry::Notice(n) = &e else {
            unreachable!()
        };
        let (code, hash) = (n.tracking_code, n.content_hash);
        store.write(&[e]).unwrap();
        let docs = Documents::new(store.clone(), 100.0, 100.0);
        let vcode = karpoosheh_schemas::verification_code(&code, &hash);
        let asker: std::net::IpAddr = "198.51.100.9".parse().unwrap();
        let (status, _, body) =
            docs.answer(Some(asker), &format!("/v1/documents/{code}/{vcode}"), None);
        assert_eq!(status, 200, "{body}");
        let (status, _, _) = docs.answer(
            Some(asker),
            &format!("/v1/documents/{code}/AAAA-AAAA"),
            None,
        );
        assert_eq!(status, 404);
        let log = store.access_log(person(100), 10).unwrap();
        assert_eq!(log.len(), 1, "the wrong code touched nothing");
        assert_eq!(
            (
                log[0].action.as_str(),
                log[0].actor,
                log[0].address.as_deref(),
                log[0].tracking_code
            ),
            ("document_inquiry", None, Some("198.51.100.9"), Some(code))
        );
    }
}

#[cfg(test)]
mod tls_tests {
    use super::*;
    use std::io::{Read, Write};

    /// A self-signed P-256 certificate for 127.0.0.1, as PEM files.
    fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
        use openssl::{asn1, bn, ec, hash, nid, pkey, x509};
        let group = ec::EcGroup::from_curve_name(nid::Nid::X9_62_PRIME256V1).unwrap();
        let key = pkey::PKey::from_ec_key(ec::EcKey::generate(&group).unwrap()).unwrap();
        let mut name = x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "karpoosheh-test").unwrap();
        let name = name.build();
        let mut b = x509::X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&bn::BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
            .unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&asn1::Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&asn1::Asn1Time::days_from_now(2).unwrap())
            .unwrap();
        let san = x509::extension::SubjectAlternativeName::new()
            .ip("127.0.0.1")
            .build(&b.x509v3_context(None, None))
            .unwrap();
        b.append_extension(san).unwrap();
        b.sign(&key, hash::MessageDigest::sha256()).unwrap();
        let cert = b.build();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.to_pem().unwrap()).unwrap();
        std::fs::write(&k, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        (c, k)
    }

    /// HTTPS only: a client that trusts the certificate is answered; one
    /// that speaks plain HTTP is not; files that are no TLS identity stop
    /// the start.
    #[test]
    fn a_router_is_served_over_tls_with_the_certificate_given() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = certificate(dir.path());
        let router = axum::Router::new().route("/v1/ping", axum::routing::get(|| async { "pong" }));
        let server = HttpServer::start_router_tls("127.0.0.1:0", router, &cert, &key).unwrap();
        let mut connector =
            openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client()).unwrap();
        connector.set_ca_file(&cert).unwrap();
        let connector = connector.build();
        let tcp = std::net::TcpStream::connect(server.addr).unwrap();
        let mut tls = connector
            .connect("127.0.0.1", tcp)
            .expect("the handshake verifies");
        write!(
            tls,
            "GET /v1/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        let _ = tls.read_to_string(&mut out);
        assert!(
            out.starts_with("HTTP/1.1 200") && out.ends_with("pong"),
            "{out}"
        );

        let mut plain = std::net::TcpStream::connect(server.addr).unwrap();
        plain
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        write!(plain, "GET /v1/ping HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = Vec::new();
        let _ = plain.read_to_end(&mut buf);
        assert!(
            !String::from_utf8_lossy(&buf).contains("pong"),
            "no answer in the clear"
        );

        let router = axum::Router::new();
        assert!(HttpServer::start_router_tls("127.0.0.1:0", router.clone(), &key, &key).is_err());
        std::fs::write(dir.path().join("other.pem"), "").unwrap();
        assert!(HttpServer::start_router_tls(
            "127.0.0.1:0",
            router,
            &cert,
            &dir.path().join("other.pem")
        )
        .is_err());
    }
}
