//! The metrics and health endpoints: `/metrics` (Prometheus text format),
//! `/health/live` (the process answers) and `/health/ready` (the store is
//! open and the pipeline takes traffic; 503 with the reason otherwise).
//!
//! A small blocking server on its own threads: scrapes are rare and tiny,
//! and it must keep answering while the pipeline is saturated.

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
            let latency_buckets = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
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
        m::DECODE_SECONDS,
        Unit::Seconds,
        "Time to decode and validate one chunk."
    );
    describe_gauge!(m::QUEUE_DEPTH, "Items waiting between pipeline stages.");
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
        m::KAFKA_ASSIGNED_PARTITIONS,
        "Notice partitions this node owns."
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
    describe_gauge!(
        m::AUDIT_PUBLISHED_ENTRIES,
        "Batches under the last published tree head of the audit log (its size)."
    );
    describe_gauge!(
        m::AUDIT_LAST_TREE_HEAD,
        "When the last published tree head of the audit log was signed, Unix seconds."
    );
}

/// The running endpoint server.
pub struct HttpServer {
    pub addr: SocketAddr,
    server: Arc<tiny_http::Server>,
}

impl HttpServer {
    /// Binds `listen` and serves on two background threads; `jwks`, the
    /// node's public keys (a JWK Set), at `/.well-known/jwks.json`;
    /// `documents`, inquiries about printed notices at `/v1/documents/`.
    pub fn start(
        listen: &str,
        handle: PrometheusHandle,
        health: Health,
        jwks: Option<Arc<str>>,
        documents: Option<Documents>,
    ) -> std::io::Result<HttpServer> {
        let server = tiny_http::Server::http(listen)
            .map_err(|e| std::io::Error::other(format!("cannot listen on {listen}: {e}")))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other("metrics listener is not an IP socket"))?;
        let server = Arc::new(server);
        for i in 0..2 {
            let server = server.clone();
            let handle = handle.clone();
            let health = health.clone();
            let jwks = jwks.clone();
            let documents = documents.clone();
            std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || {
                    for mut req in server.incoming_requests() {
                        let (status, ctype, body) = match (&documents, req.url()) {
                            (Some(d), url) if url.starts_with("/v1/documents/") => {
                                d.answer(&mut req)
                            }
                            _ => route(req.url(), &handle, &health, jwks.as_deref()),
                        };
                        let header = tiny_http::Header::from_bytes("Content-Type", ctype)
                            .expect("static header");
                        let _ = req.respond(
                            tiny_http::Response::from_string(body)
                                .with_status_code(status)
                                .with_header(header),
                        );
                    }
                })?;
        }
        HttpServing {
            addr: Some(addr),
            error: None,
        }
        .emit();
        Ok(HttpServer { addr, server })
    }
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

/// Token buckets: one for the node, one per client address.
struct Limiter {
    per_second: f64,
    per_client_per_minute: f64,
    total: (f64, Instant),
    clients: HashMap<std::net::IpAddr, (f64, Instant)>,
}

impl Limiter {
    fn allow(&mut self, client: Option<std::net::IpAddr>) -> bool {
        let now = Instant::now();
        let refill = |b: &mut (f64, Instant), rate_per_sec: f64, burst: f64| {
            b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * rate_per_sec).min(burst);
            b.1 = now;
        };
        let (ps, pcm) = (self.per_second, self.per_client_per_minute);
        refill(&mut self.total, ps, ps.max(1.0));
        if self.total.0 < 1.0 {
            return false;
        }
        if let Some(ip) = client {
            if self.clients.len() > 100_000 {
                // A flood of addresses: forget the full buckets.
                self.clients
                    .retain(|_, b| now.duration_since(b.1).as_secs_f64() * pcm / 60.0 + b.0 < pcm);
            }
            let b = self.clients.entry(ip).or_insert((pcm, now));
            refill(b, pcm / 60.0, pcm.max(1.0));
            if b.0 < 1.0 {
                return false;
            }
            b.0 -= 1.0;
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
            limiter: Arc::new(Mutex::new(Limiter {
                per_second,
                per_client_per_minute,
                total: (per_second.max(1.0), Instant::now()),
                clients: HashMap::new(),
            })),
        }
    }

    fn answer(&self, req: &mut tiny_http::Request) -> (u16, &'static str, String) {
        const JSON: &str = "application/json";
        // IPv6 clients by their /64: one host holds a whole /64.
        let client = req.remote_addr().map(|a| match a.ip() {
            std::net::IpAddr::V6(v6) => {
                let s = v6.segments();
                std::net::IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            v4 => v4,
        });
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
        let path = req.url().split('?').next().unwrap_or("").to_owned();
        let parts: Vec<&str> = path["/v1/documents/".len()..].split('/').collect();
        let [code, vcode] = parts[..] else {
            DocumentInquired {
                result: "bad_request",
            }
            .emit();
            return (
                400,
                JSON,
                "{\"error\":\"ask /v1/documents/<tracking-code>/<verification-code>\"}\n".into(),
            );
        };
        let document = if *req.method() == tiny_http::Method::Post {
            let mut body = Vec::new();
            use std::io::Read;
            if req
                .as_reader()
                .take(1 << 20)
                .read_to_end(&mut body)
                .is_err()
            {
                DocumentInquired {
                    result: "bad_request",
                }
                .emit();
                return (
                    400,
                    JSON,
                    "{\"error\":\"the body could not be read\"}\n".into(),
                );
            }
            Some(body)
        } else {
            None
        };
        match crate::documents::inquire(self.store.as_ref(), code, vcode, document.as_deref()) {
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
        self.server.unblock();
    }
}

fn route(
    url: &str,
    handle: &PrometheusHandle,
    health: &Health,
    jwks: Option<&str>,
) -> (u16, &'static str, String) {
    match url.split('?').next().unwrap_or("") {
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
        let mut l = Limiter {
            per_second: 5.0,
            per_client_per_minute: 3.0,
            total: (5.0, Instant::now()),
            clients: HashMap::new(),
        };
        let a: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let b: std::net::IpAddr = "10.0.0.2".parse().unwrap();
        assert!((0..3).all(|_| l.allow(Some(a))), "a client's burst");
        assert!(!l.allow(Some(a)), "then that client waits");
        assert!(l.allow(Some(b)), "another client does not");
        assert!(l.allow(None));
        assert!(!l.allow(None), "the node's total is spent (5 per second)");
    }
}
