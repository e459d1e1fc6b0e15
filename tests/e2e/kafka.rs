//! The Kafka front door, end to end: a real Kafka-protocol broker (tansu,
//! started on a free loopback port per test), the real `karpoosheh run`
//! binary, and agencies played by an rdkafka producer.
//!
//! Each test uses its own topic prefix and consumer group. When tansu is
//! not installed the tests say so and pass, unless
//! `KARPOOSHEH_REQUIRE_TANSU=1` (set by `scripts/test`, which installs it).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use karpoosheh_engine::keys::SigningKey;
use karpoosheh_engine::{
    b64url, jws, FjallStore, FjallStoreConfig, NoticeStore, ProfileStore, SignedKind,
};
use karpoosheh_schemas::{AgencyId, MailboxId, Reason};
use karpoosheh_tests::{envelope, person};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

// ---------------------------------------------------------------- broker

fn tansu_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("KARPOOSHEH_TANSU") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let cands = [
        PathBuf::from(home).join(".cargo/bin/tansu"),
        PathBuf::from("/usr/local/bin/tansu"),
    ];
    if let Some(p) = cands.into_iter().find(|p| p.exists()) {
        return Some(p);
    }
    let out = Command::new("sh")
        .args(["-c", "command -v tansu"])
        .output()
        .ok()?;
    let p = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!p.is_empty()).then(|| PathBuf::from(p))
}

/// The broker, or `None` (the test is skipped) when tansu is missing.
pub(crate) fn broker_or_skip(test: &str, storage: Storage) -> Option<Broker> {
    match tansu_bin() {
        Some(bin) => Some(Broker::start(bin, storage)),
        None => {
            assert!(
                std::env::var("KARPOOSHEH_REQUIRE_TANSU").is_err(),
                "tansu is required (KARPOOSHEH_REQUIRE_TANSU) but not installed: run scripts/tansu.sh"
            );
            eprintln!("SKIPPED {test}: tansu not installed (scripts/tansu.sh installs it)");
            None
        }
    }
}

/// A real Apache Kafka broker (`scripts/kafka`: one KRaft node from Maven
/// Central's jars), for what the test broker cannot do (deleting a topic
/// under a running engine), or `None` (the test is skipped) when Java or
/// the jars are missing, unless `KARPOOSHEH_REQUIRE_APACHE_KAFKA=1` (set
/// by `scripts/test`, which fetches them).
pub(crate) fn apache_kafka_or_skip(test: &str) -> Option<Broker> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka");
    let required = std::env::var("KARPOOSHEH_REQUIRE_APACHE_KAFKA").is_ok();
    // Java 17 or later (`java -version` says `version "17.0.x"` on stderr),
    // and python3 for the script's readiness check.
    let java = Command::new("java")
        .arg("-version")
        .output()
        .is_ok_and(|o| {
            let text = String::from_utf8_lossy(&o.stderr).into_owned();
            let major = text
                .split('"')
                .nth(1)
                .and_then(|v| v.split('.').next())
                .and_then(|m| m.parse::<u32>().ok());
            o.status.success() && major.is_some_and(|m| m >= 17)
        });
    let python = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let fetched = java
        && python
        && Command::new(&script)
            .arg("lib")
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success());
    if !fetched {
        assert!(
            !required,
            "Apache Kafka is required (KARPOOSHEH_REQUIRE_APACHE_KAFKA) but Java 17, python3 or `scripts/kafka lib` is missing"
        );
        eprintln!(
            "SKIPPED {test}: no Java 17, python3 or Kafka jars (scripts/kafka lib fetches them)"
        );
        return None;
    }
    let dir = tempfile::tempdir().expect("broker directory");
    // A free port (and the next, for its controller) can be taken by
    // someone else before the JVM binds it: a few tries, each afresh.
    for attempt in 1..=3 {
        let port = free_port();
        let db = dir.path().join(format!("kafka-{attempt}"));
        let out = Command::new(&script)
            .args([
                "start",
                db.to_str().unwrap(),
                "127.0.0.1",
                &port.to_string(),
            ])
            .env("KARPOOSHEH_KAFKA_WATCH_PID", std::process::id().to_string())
            .output()
            .expect("scripts/kafka start");
        if out.status.success() {
            return Some(Broker {
                bin: script,
                port,
                db,
                child: None,
                _dir: Some(dir),
                apache: true,
            });
        }
        let _ = Command::new(&script)
            .args(["stop", db.to_str().unwrap(), "--kill"])
            .output();
        assert!(
            attempt < 3,
            "Apache Kafka did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "{test}: Apache Kafka did not start on port {port} (try {attempt}), trying another: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    unreachable!()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where the test broker keeps its records. Always tansu's SQLite engine:
/// its memory engine (tansu-storage 0.6 `dynostore`) answers a fetch that
/// starts inside a stored batch from the next batch, skipping the rest
/// (BENCHMARKS.md, "The cause"; scripts/repro-pause-resume.py) — so a
/// restarted consumer resuming from a committed offset misses records.
/// The SIGKILL test failed 2 of 4 runs on it beside four busy loops (708
/// and ~400 receipts never read) and passed 4 of 4 on SQLite in the same
/// sitting (28 s against 21 s a run).
#[derive(Clone)]
pub(crate) enum Storage {
    /// A database in a temporary directory of the broker's own.
    Fresh,
    /// Kept across broker restarts, at this path.
    Sqlite(PathBuf),
}

pub(crate) struct Broker {
    bin: PathBuf,
    port: u16,
    /// The SQLite database the broker keeps its records in.
    db: PathBuf,
    child: Option<Child>,
    /// The `Fresh` database's directory, removed with the broker.
    _dir: Option<tempfile::TempDir>,
    /// Apache Kafka: `bin` is `scripts/kafka`, `db` the broker's folder.
    apache: bool,
}

impl Broker {
    fn start(bin: PathBuf, storage: Storage) -> Broker {
        let (db, dir) = match storage {
            Storage::Fresh => {
                let dir = tempfile::tempdir().expect("broker directory");
                (dir.path().join("tansu.db"), Some(dir))
            }
            Storage::Sqlite(p) => (p, None),
        };
        let mut b = Broker {
            bin,
            port: free_port(),
            db,
            child: None,
            _dir: dir,
            apache: false,
        };
        b.restart();
        b
    }

    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        if self.apache {
            let dir = self.db.to_str().unwrap();
            let port = self.port.to_string();
            let out = Command::new(&self.bin)
                .args(["start", dir, "127.0.0.1", &port])
                .env("KARPOOSHEH_KAFKA_WATCH_PID", std::process::id().to_string())
                .output()
                .expect("scripts/kafka start");
            assert!(
                out.status.success(),
                "Apache Kafka did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        let url = format!("tcp://127.0.0.1:{}", self.port);
        // tansu reads a sqlite URL's path relative to its working directory.
        let engine = format!(
            "sqlite://{}",
            self.db.file_name().unwrap().to_str().unwrap()
        );
        let cwd = self.db.parent().unwrap();
        let child = Command::new(&self.bin)
            .current_dir(cwd)
            .args([
                "broker",
                "--kafka-listener-url",
                &url,
                "--kafka-advertised-listener-url",
                &url,
                "--storage-engine",
                &engine,
            ])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(self.addr()).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if self.apache {
            let _ = Command::new(&self.bin)
                .args(["stop", self.db.to_str().unwrap()])
                .output();
            return;
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.addr());
        c
    }

    pub(crate) fn create_topics(&self, topics: &[&str], partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.client().create().unwrap();
        let new: Vec<_> = topics
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for r in futures_executor::block_on(admin.create_topics(&new, &opts)).unwrap() {
            if let Err((t, e)) = r {
                panic!("create topic {t}: {e}");
            }
        }
    }

    pub(crate) fn delete_topics(&self, topics: &[&str]) {
        let admin: AdminClient<DefaultClientContext> = self.client().create().unwrap();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for r in futures_executor::block_on(admin.delete_topics(topics, &opts)).unwrap() {
            if let Err((t, e)) = r {
                panic!("delete topic {t}: {e}");
            }
        }
    }

    pub(crate) fn producer(&self) -> BaseProducer {
        let mut c = self.client();
        c.set("enable.idempotence", "true").set("linger.ms", "5");
        c.create().unwrap()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn produce(p: &BaseProducer, topic: &str, key: &str, payload: &[u8]) {
    loop {
        match p.send(BaseRecord::to(topic).key(key).payload(payload)) {
            Ok(()) => return,
            Err((e, _)) => {
                assert!(format!("{e}").contains("Queue full"), "produce failed: {e}");
                p.poll(Duration::from_millis(10));
            }
        }
    }
}

// ---------------------------------------------------------------- engine

/// A test's names: topics and group, unique per test.
pub(crate) struct Names {
    pub(crate) prefix: String,
}

impl Names {
    pub(crate) fn new(test: &str) -> Names {
        Names {
            prefix: format!("t{}{}", test.replace('_', "-"), std::process::id()),
        }
    }
    pub(crate) fn notices(&self, agency: &str) -> String {
        format!("{}.notices.{agency}", self.prefix)
    }
    pub(crate) fn receipts(&self, agency: &str) -> String {
        format!("{}.receipts.{agency}", self.prefix)
    }
    fn dlq(&self) -> String {
        format!("{}.dlq", self.prefix)
    }
    fn registry(&self) -> String {
        format!("{}.registry", self.prefix)
    }
    fn acks(&self) -> String {
        format!("{}.acks", self.prefix)
    }
    fn audit(&self) -> String {
        format!("{}.audit", self.prefix)
    }
    /// Creates notice and receipt topics for `agencies`, the DLQ and the
    /// registry.
    pub(crate) fn create(&self, broker: &Broker, agencies: &[&str], partitions: i32) {
        let mut topics: Vec<String> = agencies
            .iter()
            .flat_map(|a| [self.notices(a), self.receipts(a)])
            .collect();
        topics.push(self.dlq());
        topics.push(self.registry());
        topics.push(self.acks());
        topics.push(self.audit());
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        broker.create_topics(&refs, partitions);
    }
}

/// Sum of a metric's samples in a `/metrics` text whose label text
/// contains `filter`.
fn metric_in(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub(crate) struct Engine {
    child: Child,
    metrics: SocketAddr,
    log: Arc<Mutex<String>>,
}

/// The test's signers: the inbox app (confirmations; a current and an
/// older key, both active: a rotation in progress) and the identity side
/// (profiles). Fixed seeds: every test's trust file is the same.
fn inbox_key() -> SigningKey {
    SigningKey::from_seed("inbox-2026-12", [11; 32]).unwrap()
}
fn inbox_old_key() -> SigningKey {
    SigningKey::from_seed("inbox-2026-06", [12; 32]).unwrap()
}
fn identity_key() -> SigningKey {
    SigningKey::from_seed("identity-1", [13; 32]).unwrap()
}

fn trust_file(old_inbox_key_status: &str) -> String {
    format!(
        "[signer.inbox]\nstatus = \"active\"\nmay_sign = [\"confirmation\"]\n\
         [[signer.inbox.keys]]\nkid = \"{}\"\npublic_key = \"{}\"\nstatus = \"active\"\n\
         [[signer.inbox.keys]]\nkid = \"{}\"\npublic_key = \"{}\"\nstatus = \"{old_inbox_key_status}\"\n\
         [signer.identity]\nstatus = \"active\"\nmay_sign = [\"profile\"]\n\
         [[signer.identity.keys]]\nkid = \"{}\"\npublic_key = \"{}\"\nstatus = \"active\"\n",
        inbox_key().kid(),
        b64url(inbox_key().public_key()),
        inbox_old_key().kid(),
        b64url(inbox_old_key().public_key()),
        identity_key().kid(),
        b64url(identity_key().public_key()),
    )
}

/// Sends mailbox `id`'s profile (`json`, signed) to the registry topic and
/// waits until the engine has applied it: the engine's first profile.
pub(crate) fn register(engine: &Engine, p: &BaseProducer, names: &Names, id: &str, json: &str) {
    produce(p, &names.registry(), id, &signed_profile(json));
    p.flush(Duration::from_secs(30)).unwrap();
    engine.wait_for("the profile", Duration::from_secs(60), |e| {
        e.metric("karpoosheh_profiles_total", "applied") >= 1.0
    });
}

/// A mailbox profile as the identity side sends it: signed.
fn signed_profile(json: &str) -> Vec<u8> {
    jws::sign(SignedKind::Profile, json.as_bytes(), &identity_key())
}

const AGENCIES_FILE: &str = "[agency.tax]\nstatus = \"approved\"\n[agency.judiciary]\nstatus = \"approved\"\n[agency.utilities]\nstatus = \"approved\"\n[agency.old-ministry]\nstatus = \"dissolved\"\n[agency.paused]\nstatus = \"suspended\"\n";

impl Engine {
    pub(crate) fn start(
        broker: &Broker,
        names: &Names,
        dir: &Path,
        node: u16,
        extra: &[&str],
    ) -> Engine {
        let data = dir.join(format!("node{node}"));
        let agencies = dir.join("agencies.toml");
        if !agencies.exists() {
            std::fs::write(&agencies, AGENCIES_FILE).unwrap();
        }
        let trust = dir.join("trust.toml");
        if !trust.exists() {
            std::fs::write(&trust, trust_file("active")).unwrap();
        }
        let mut args: Vec<String> = vec![
            "run".into(),
            "--data-dir".into(),
            data.display().to_string(),
        ];
        let sets = [
            format!("node_id={node}"),
            "metrics.listen=\"127.0.0.1:0\"".into(),
            "store.durability=buffered".into(),
            format!("agencies.file={:?}", agencies.display().to_string()),
            format!("trust.file={:?}", trust.display().to_string()),
            "trust.reload_interval=\"0s\"".into(),
            format!("kafka.brokers={:?}", broker.addr()),
            format!("kafka.group_id={:?}", format!("{}-group", names.prefix)),
            format!("kafka.notice_topic_prefix={:?}", format!("{}.notices.", names.prefix)),
            format!("kafka.receipt_topic_prefix={:?}", format!("{}.receipts.", names.prefix)),
            format!("kafka.dead_letter_topic={:?}", names.dlq()),
            format!("kafka.registry_topic={:?}", names.registry()),
            format!("kafka.acks_topic={:?}", names.acks()),
            format!("kafka.audit_topic={:?}", names.audit()),
            "evidence.tree_head_interval=\"300ms\"".into(),
            // The ingest tests count `accepted` receipts only; the
            // article-29 test turns the follow-up on.
            "delivery.enabled=false".into(),
            "kafka.commit_interval=\"200ms\"".into(),
            "kafka.shutdown_timeout=\"20s\"".into(),
            // Faster group and metadata reactions than production defaults.
            "kafka.consumer_options={\"session.timeout.ms\" = \"6000\", \"heartbeat.interval.ms\" = \"500\", \"topic.metadata.refresh.interval.ms\" = \"1000\", \"reconnect.backoff.max.ms\" = \"1000\"}".into(),
        ];
        for s in sets.iter().map(String::as_str).chain(extra.iter().copied()) {
            args.push("--set".into());
            args.push(s.to_owned());
        }
        let mut child = karpoosheh_tests::karpoosheh_command()
            .args(&args)
            .env_remove("KARPOOSHEH_CONFIG")
            .env(
                "RUST_LOG",
                std::env::var("KARPOOSHEH_TEST_ENGINE_LOG")
                    .unwrap_or_else(|_| "info,lsm_tree=warn,fjall=warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start karpoosheh run");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let stderr = child.stderr.take().unwrap();
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(rest) = line.strip_prefix("karpoosheh: metrics on http://") {
                        let addr = rest.trim_end_matches("/metrics").to_owned();
                        let _ = tx.send(addr);
                    }
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                panic!("engine did not start:\n{}", log.lock().unwrap());
            }
        };
        Engine {
            child,
            metrics: addr,
            log,
        }
    }

    pub(crate) fn get(&self, path: &str) -> (u16, String) {
        let Ok(mut s) = TcpStream::connect(self.metrics) else {
            return (0, String::new());
        };
        let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
        let mut buf = String::new();
        let _ = s.read_to_string(&mut buf);
        let status = buf
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = buf
            .split_once("\r\n\r\n")
            .map(|x| x.1.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// Sum of a metric's samples whose label text contains `filter`.
    pub(crate) fn metric(&self, name: &str, filter: &str) -> f64 {
        metric_in(&self.get("/metrics").1, name, filter)
    }

    /// Records durably handled: stored + duplicates + rejected + dead.
    fn handled(&self) -> f64 {
        self.metric("karpoosheh_notices_stored_total", "")
            + self.metric("karpoosheh_notices_duplicate_total", "")
            + self.metric("karpoosheh_notices_rejected_total", "")
            + self.metric("karpoosheh_dead_letters_total", "")
    }

    pub(crate) fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Engine) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !f(self) {
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; engine log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM; returns the exit status and how long it took.
    pub(crate) fn terminate(mut self) -> (Option<i32>, Duration, String) {
        let t = Instant::now();
        unsafe_kill(self.child.id(), "TERM");
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        (status.code(), t.elapsed(), self.log())
    }

    /// Waits for the engine to exit by itself: (exit code, log).
    pub(crate) fn wait_exit(mut self, timeout: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(200));
                return (status.code(), self.log());
            }
            if Instant::now() > deadline {
                panic!("the engine did not exit; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn kill9(mut self) -> String {
        unsafe_kill(self.child.id(), "KILL");
        let _ = self.child.wait();
        self.log()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_kill(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

pub(crate) fn open_store(data: &Path) -> FjallStore {
    FjallStore::open(FjallStoreConfig::new(data)).unwrap()
}

// ---------------------------------------------------------------- receipts

/// One receipt read back: (event, tracking code if any, duplicate?).
pub(crate) type Receipt = (String, Option<String>, bool);

#[derive(Default, Debug)]
pub(crate) struct Answers {
    /// (agency, reference) → (event, tracking code if any, duplicate?)
    pub(crate) receipts: HashMap<(String, String), Vec<Receipt>>,
    pub(crate) receipt_ids: HashSet<String>,
    /// Every receipt as received (first delivery of each), for verifiers,
    /// `batch_signed` ones included.
    pub(crate) raw: Vec<String>,
    /// Of those, `batch_signed` receipts.
    pub(crate) batches: usize,
    pub(crate) repeats: usize,
    /// Dead letters: (reason, source topic, source offset).
    dead: Vec<(String, String, i64)>,
}

impl Answers {
    /// The events of `agency`'s reference, in the order received (first
    /// deliveries).
    pub(crate) fn events(&self, agency: &str, reference: &str) -> Vec<String> {
        self.receipts
            .get(&(agency.to_owned(), reference.to_owned()))
            .map(|v| v.iter().map(|x| x.0.clone()).collect())
            .unwrap_or_default()
    }
}

/// Reads the receipt topics and the DLQ from the start until `until`
/// holds, or `timeout` passes.
///
/// One pass is one consumer reading every partition from its beginning to
/// its high watermark; what it saw is returned as soon as `until` holds.
/// A pass that reaches the end without it starts again from the beginning
/// with a new consumer: tansu's memory engine (no longer used here, see
/// `Storage`) could make a reader pass over a batch for good, and the
/// passes cost nothing when nothing is missing. A produce there takes its
/// offsets (the partition's high watermark) before it writes the batch, and a fetch lists the
/// batches present below the watermark and returns those at or after the
/// asked offset (tansu-storage 0.6, `dynostore.rs` `produce`/`fetch`), so a
/// fetch between another batch's write and this one's skips it. A Kafka
/// broker never shows offsets past an unfinished write. Every pass that
/// missed something is logged, so a broker that loses records (not just
/// shows them late) still fails the caller's assertions.
pub(crate) fn read_answers(
    broker: &Broker,
    names: &Names,
    until: impl Fn(&Answers) -> bool,
    timeout: Duration,
) -> Answers {
    let deadline = Instant::now() + timeout;
    let mut pass = 0;
    // At the deadline, the fullest pass: the last one may have been cut
    // short by the deadline itself, and would report everything missing.
    let mut best: Option<Answers> = None;
    let size = |a: &Answers| a.receipt_ids.len() + a.dead.len();
    loop {
        pass += 1;
        let (a, done) = read_pass(broker, names, &until, deadline);
        if done {
            return a;
        }
        if Instant::now() >= deadline {
            return match best {
                Some(b) if size(&b) > size(&a) => b,
                _ => a,
            };
        }
        eprintln!(
            "read_answers ({}): pass {pass} read every partition to its end and found {} receipts and {} dead letters, not all expected; reading again from the start",
            names.prefix,
            a.receipt_ids.len(),
            a.dead.len()
        );
        if best.as_ref().is_none_or(|b| size(&a) > size(b)) {
            best = Some(a);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// One consumer, every partition of the receipt topics and the DLQ from
/// the beginning: (what it read, whether `until` held).
fn read_pass(
    broker: &Broker,
    names: &Names,
    until: &impl Fn(&Answers) -> bool,
    deadline: Instant,
) -> (Answers, bool) {
    let mut c = broker.client();
    c.set(
        "group.id",
        format!("{}-reader-{}", names.prefix, rand_suffix()),
    )
    .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = c.create().unwrap();
    let receipts = format!("{}.receipts.", names.prefix);
    let dlq = names.dlq();
    let mut a = Answers::default();
    let Ok(md) = consumer.fetch_metadata(None, Duration::from_secs(10)) else {
        return (a, false);
    };
    let mut tpl = TopicPartitionList::new();
    for t in md.topics() {
        if t.name().starts_with(&receipts) || t.name() == dlq {
            for p in t.partitions() {
                tpl.add_partition_offset(t.name(), p.id(), Offset::Beginning)
                    .unwrap();
            }
        }
    }
    consumer.assign(&tpl).unwrap();
    // `until` may be costly (it looks at every expected reference): ask it
    // only when the topics are quiet or every few thousand records.
    let mut since_check = 0;
    while Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
            if until(&a) {
                return (a, true);
            }
            if at_end(&consumer, &tpl) {
                return (a, false);
            }
            continue;
        };
        since_check += 1;
        if since_check >= 5000 {
            since_check = 0;
            if until(&a) {
                return (a, true);
            }
        }
        record_answer(&mut a, &m, &dlq);
    }
    let done = until(&a);
    (a, done)
}

/// Whether the consumer has read every assigned partition to its high
/// watermark.
fn at_end(consumer: &BaseConsumer, tpl: &TopicPartitionList) -> bool {
    let Ok(pos) = consumer.position() else {
        return false;
    };
    tpl.elements().iter().all(|e| {
        let Ok((low, high)) =
            consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(5))
        else {
            return false;
        };
        if high <= low {
            return true;
        }
        match pos
            .find_partition(e.topic(), e.partition())
            .map(|p| p.offset())
        {
            Some(Offset::Offset(o)) => o >= high,
            _ => false,
        }
    })
}

fn record_answer(a: &mut Answers, m: &rdkafka::message::BorrowedMessage<'_>, dlq: &str) {
    let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
    if m.topic() == dlq {
        let h = m.headers().expect("dead letters carry headers");
        let header = |k: &str| {
            h.iter()
                .find(|x| x.key == k)
                .map(|x| String::from_utf8_lossy(x.value.unwrap()).to_string())
                .unwrap_or_default()
        };
        assert_eq!(
            v["source"]["topic"].as_str().unwrap(),
            header("karpoosheh.source.topic")
        );
        a.dead.push((
            v["problems"][0]["reason"].as_str().unwrap().to_owned(),
            header("karpoosheh.source.topic"),
            header("karpoosheh.source.offset").parse().unwrap(),
        ));
        return;
    }
    let id = v["receipt_id"].as_str().unwrap().to_owned();
    if !a.receipt_ids.insert(id) {
        a.repeats += 1;
        return;
    }
    a.raw
        .push(String::from_utf8_lossy(m.payload().unwrap()).into_owned());
    if v["event"] == "batch_signed" {
        assert_eq!(
            m.key().map(|k| String::from_utf8_lossy(k).to_string()),
            v["receipt_id"].as_str().map(str::to_owned),
            "a signed batch is keyed by its receipt ID"
        );
        a.batches += 1;
        return;
    }
    // Keyed by the agency's reference; a receipt with none (a document
    // another agency shared with this one) by its own ID.
    assert_eq!(
        m.key().map(|k| String::from_utf8_lossy(k).to_string()),
        v["reference"]
            .as_str()
            .or(v["receipt_id"].as_str())
            .map(str::to_owned),
        "receipts are keyed by the agency's reference"
    );
    let key = (
        v["agency"].as_str().unwrap().to_owned(),
        v["reference"].as_str().unwrap_or("").to_owned(),
    );
    let reason = v["problems"][0]["reason"].as_str().map(str::to_owned);
    a.receipts.entry(key).or_default().push((
        if v["event"] == "rejected" {
            format!("rejected:{}", reason.unwrap_or_default())
        } else {
            v["event"].as_str().unwrap().to_owned()
        },
        v["tracking_code"].as_str().map(str::to_owned),
        v["duplicate"].as_bool().unwrap_or(false),
    ));
}

/// Every receipt in `raw`, checked by the independent Python verifier
/// with the node keys `jwks`: its report, once it says all hold; `None`
/// (SKIPPED) without Python's `cryptography`.
pub(crate) fn verify_receipts(dir: &Path, jwks: &str, raw: &[String]) -> Option<serde_json::Value> {
    let python = karpoosheh_tests::python_with_cryptography("kafka_receipts_python")?;
    let jwks_file = dir.join("jwks.json");
    std::fs::write(&jwks_file, jwks).unwrap();
    let out = karpoosheh_tests::pipe(
        Command::new(python)
            .arg(karpoosheh_tests::python_script("receipts.py"))
            .arg(&jwks_file),
        (raw.join("\n") + "\n").as_bytes(),
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{report}");
    Some(report)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

pub(crate) fn mailbox(id: &str) -> MailboxId {
    karpoosheh_schemas::parse_recipient(id).unwrap()
}

// ---------------------------------------------------------------- tests

#[test]
fn kafka_mixed_agencies_all_accounted_spoof_rejected_registry_stored() {
    let Some(broker) = broker_or_skip("kafka_mixed", Storage::Fresh) else {
        return;
    };
    let names = Names::new("mixed");
    let agencies = [
        "tax",
        "judiciary",
        "utilities",
        "evil",
        "paused",
        "old-ministry",
    ];
    names.create(&broker, &agencies, 2);
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::start(&broker, &names, dir.path(), 1, &[]);

    let p = broker.producer();
    // expected outcome per (agency topic, reference)
    let mut expect: HashMap<(String, String), &str> = HashMap::new();
    let mut produced = 0u64;
    let mut dead_expected = 0u64;
    for (ai, agency) in ["tax", "judiciary", "utilities"].iter().enumerate() {
        for i in 0..100 {
            let r = format!("{agency}-{i}");
            let id = person(100_000_000 + (ai as u32) * 1_000_000 + i * 97);
            produce(
                &p,
                &names.notices(agency),
                &id,
                envelope(agency, &r, &id, "اخطاریه").as_bytes(),
            );
            expect.insert((agency.to_string(), r), "accepted");
            produced += 1;
        }
        // Rejected: a bad national code.
        let r = format!("{agency}-bad-id");
        produce(
            &p,
            &names.notices(agency),
            "x",
            envelope(agency, &r, "1234567890", "t").as_bytes(),
        );
        expect.insert((agency.to_string(), r), "rejected:bad_check_digit");
        // Rejected: the envelope names another agency than its topic.
        let r = format!("{agency}-other");
        let id = person(700_000_000 + ai as u32);
        produce(
            &p,
            &names.notices(agency),
            &id,
            envelope("social-security", &r, &id, "t").as_bytes(),
        );
        expect.insert((agency.to_string(), r), "rejected:agency_mismatch");
        // Dead letters: not JSON, not UTF-8, empty.
        for bad in [&b"{not json"[..], &b"\xff\xfe\xfd"[..], &b""[..]] {
            produce(&p, &names.notices(agency), "x", bad);
            dead_expected += 1;
        }
        produced += 5;
    }
    // A spoofed sender: the "evil" topic is not an approved agency; it
    // pretends to be "tax".
    for i in 0..10 {
        let id = person(800_000_000 + i * 13);
        let r = format!("spoof-{i}");
        produce(
            &p,
            &names.notices("evil"),
            &id,
            envelope("tax", &r, &id, "جعلی").as_bytes(),
        );
        expect.insert(("evil".into(), r), "none: kept in the store only");
        produced += 1;
    }
    // Suspended and dissolved agencies may not send.
    for agency in ["paused", "old-ministry"] {
        let id = person(900_000_000);
        let r = format!("{agency}-1");
        produce(
            &p,
            &names.notices(agency),
            &id,
            envelope(agency, &r, &id, "t").as_bytes(),
        );
        expect.insert((agency.to_string(), r), "rejected:agency_not_allowed");
        produced += 1;
    }
    // Registry: two signed profiles, one broken and one unsigned.
    let reg_a = person(612_000_000);
    let profile = |id: &str, status: &str| {
        serde_json::json!({"schema_version": 1, "id": id, "status": status, "access_level": 2,
            "mobile": "09121234567", "push": true, "updated_at": "2026-01-01T00:00:00Z"})
        .to_string()
    };
    produce(
        &p,
        &names.registry(),
        &reg_a,
        &signed_profile(&profile(&reg_a, "active")),
    );
    let reg_b = person(613_000_000);
    produce(
        &p,
        &names.registry(),
        &reg_b,
        &signed_profile(&profile(&reg_b, "deceased")),
    );
    produce(&p, &names.registry(), &reg_b, b"{broken");
    let reg_c = person(614_000_000);
    produce(
        &p,
        &names.registry(),
        &reg_c,
        profile(&reg_c, "active").as_bytes(),
    );
    p.flush(Duration::from_secs(30)).unwrap();

    engine.wait_for("every record handled", Duration::from_secs(90), |e| {
        e.handled() >= produced as f64
    });
    engine.wait_for("profiles", Duration::from_secs(30), |e| {
        e.metric("karpoosheh_profiles_total", "applied") >= 2.0
            && e.metric("karpoosheh_profiles_total", "invalid") >= 2.0
    });
    assert_eq!(
        engine.metric(
            "karpoosheh_signed_inputs_refused_total",
            "kind=\"profile\",reason=\"unsigned\""
        ),
        1.0,
        "the unsigned profile refused (the broken one is malformed JSON)"
    );
    let received = engine.metric("karpoosheh_records_received_total", "kafka");
    assert_eq!(received, produced as f64, "every record consumed once");
    assert_eq!(engine.metric("karpoosheh_notices_stored_total", ""), 300.0);
    assert_eq!(
        engine.metric("karpoosheh_dead_letters_total", ""),
        dead_expected as f64
    );
    assert_eq!(
        engine.metric("karpoosheh_notices_rejected_total", ""),
        (produced - 300 - dead_expected) as f64,
        "stored + rejected + dead-lettered = produced"
    );
    assert_eq!(
        engine.metric(
            "karpoosheh_notices_rejected_total",
            "reason=\"agency_unknown\""
        ),
        10.0
    );
    // Lag comes with librdkafka's statistics, once a second.
    engine.wait_for("every Kafka metric emitted", Duration::from_secs(30), |e| {
        let text = e.get("/metrics").1;
        karpoosheh_engine::metric_names::KAFKA
            .iter()
            .all(|m| text.contains(*m))
    });
    let (status, text) = engine.get("/metrics");
    assert_eq!(status, 200);
    assert!(!text.contains(&reg_a), "no national ID in metrics");
    // The binary allocates with jemalloc, and says how much it holds
    // (read from one scrape; a missing metric reads 0 and fails below).
    let value = |name: &str| metric_in(&text, name, "");
    let allocated = value(karpoosheh_engine::metric_names::ALLOCATOR_ALLOCATED);
    let resident = value(karpoosheh_engine::metric_names::ALLOCATOR_RESIDENT);
    let rss = value(karpoosheh_engine::metric_names::PROCESS_RESIDENT_MEMORY);
    assert!(
        allocated > 1e6 && resident >= allocated && rss > 1e6,
        "allocated {allocated}, allocator resident {resident}, process RSS {rss}"
    );
    for m in karpoosheh_engine::metric_names::ALLOCATOR {
        assert!(text.contains(m), "{m} not emitted");
    }
    assert_eq!(engine.get("/health/ready").0, 200, "ready while consuming");

    // Every notice answered on its agency's receipt topic; dead letters
    // on the DLQ with their source position.
    let answers = read_answers(
        &broker,
        &names,
        |a| a.receipts.len() >= expect.len() - 10 && a.dead.len() as u64 >= dead_expected,
        Duration::from_secs(60),
    );
    for (k, want) in &expect {
        if want.starts_with("none") {
            assert!(
                !answers.receipts.contains_key(k),
                "an unregistered agency gets no receipt topic: {k:?}"
            );
            continue;
        }
        let got = answers
            .receipts
            .get(k)
            .unwrap_or_else(|| panic!("no receipt for {k:?}"));
        assert_eq!(got[0].0, *want, "receipt for {k:?}");
        if *want == "accepted" {
            assert!(
                got[0].1.is_some(),
                "accepted receipts carry the tracking code"
            );
        }
    }
    assert_eq!(answers.dead.len() as u64, dead_expected);
    let reasons: HashSet<_> = answers.dead.iter().map(|d| d.0.as_str()).collect();
    assert_eq!(
        reasons,
        HashSet::from(["malformed_json", "invalid_utf8", "empty_payload"])
    );
    assert!(answers
        .dead
        .iter()
        .all(|d| d.1.starts_with(&names.prefix) && d.2 >= 0));

    // A clean stop: exit 0 within the bound, then the store has it all.
    let (code, took, log) = engine.terminate();
    assert_eq!(code, Some(0), "clean exit on SIGTERM:\n{log}");
    assert!(took < Duration::from_secs(20), "stopped in {took:?}");
    assert!(!log.contains(&reg_a), "no national ID in logs");
    let store = open_store(&dir.path().join("node1"));
    for ((agency, r), want) in &expect {
        let code = store
            .reference(&AgencyId::parse(agency).unwrap(), r)
            .unwrap();
        assert_eq!(
            code.is_some(),
            *want == "accepted",
            "{agency}/{r} stored iff accepted"
        );
    }
    let a = store
        .profile(mailbox(&reg_a))
        .unwrap()
        .expect("profile stored");
    assert_eq!(a.status, karpoosheh_schemas::MailboxStatus::Active);
    assert!(store.profile(mailbox(&reg_b)).unwrap().is_some());
    assert!(
        store.profile(mailbox(&reg_c)).unwrap().is_none(),
        "the unsigned profile was never applied"
    );
    let spoofed = store
        .rejections(Some(&AgencyId::parse("evil").unwrap()), None, 100)
        .unwrap();
    assert_eq!(
        spoofed.len(),
        10,
        "the spoofed notices are kept as rejections"
    );
    for r in &spoofed {
        let reasons: Vec<_> = r.rejection.problems.iter().map(|p| p.reason).collect();
        assert_eq!(reasons, [Reason::AgencyUnknown, Reason::AgencyMismatch]);
    }
}

/// Produces `n` notices of agency "tax", one recipient each; returns
/// (reference, recipient) pairs.
pub(crate) fn produce_batch(
    broker: &Broker,
    names: &Names,
    from: u32,
    n: u32,
) -> Vec<(String, String)> {
    let p = broker.producer();
    let mut out = Vec::new();
    for i in from..from + n {
        let id = person(200_000_000 + i * 53);
        let r = format!("bulk-{i}");
        produce(
            &p,
            &names.notices("tax"),
            &id,
            envelope("tax", &r, &id, "اخطاریه").as_bytes(),
        );
        out.push((r, id));
    }
    p.flush(Duration::from_secs(60)).unwrap();
    out
}

/// Every reference has accepted receipts, all with one tracking code.
pub(crate) fn assert_all_accepted_once(answers: &Answers, refs: &[(String, String)]) {
    let missing: Vec<_> = refs
        .iter()
        .map(|(r, _)| r)
        .filter(|r| {
            !answers
                .receipts
                .contains_key(&("tax".to_owned(), (*r).clone()))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "no receipt for {} of {} references (first: {:?}); {} receipts read",
        missing.len(),
        refs.len(),
        &missing[..missing.len().min(10)],
        answers.receipt_ids.len()
    );
    for (r, _) in refs {
        let got = &answers.receipts[&("tax".to_owned(), r.clone())];
        let codes: HashSet<_> = got.iter().map(|g| g.1.clone()).collect();
        assert!(got.iter().all(|g| g.0 == "accepted"), "{r}: {got:?}");
        assert_eq!(
            codes.len(),
            1,
            "{r}: re-deliveries answer with the original code: {got:?}"
        );
        // Sent once by the agency: a re-delivery after a crash or a
        // rebalance is answered with exactly the receipt it got the first
        // time (same receipt_id, so it reads as one), never as a re-send.
        assert!(
            got.len() == 1 && !got[0].2,
            "{r}: one receipt, not a re-send's: {got:?}"
        );
    }
}

#[test]
fn kafka_sigkill_mid_batch_then_restart_stores_everything_exactly_once() {
    let Some(broker) = broker_or_skip("kafka_sigkill", Storage::Fresh) else {
        return;
    };
    let names = Names::new("kill");
    names.create(&broker, &["tax"], 4);
    let refs = produce_batch(&broker, &names, 0, 30_000);
    let dir = tempfile::tempdir().unwrap();
    // Small batches so the kill lands between many durable writes.
    let small = [
        "pipeline.batch_max_notices=500",
        "pipeline.group_max_notices=1000",
    ];
    let engine = Engine::start(&broker, &names, dir.path(), 1, &small);
    engine.wait_for("part of the batch stored", Duration::from_secs(120), |e| {
        e.metric("karpoosheh_notices_stored_total", "") >= 3000.0
    });
    let stored_before = engine.metric("karpoosheh_notices_stored_total", "");
    engine.kill9();
    assert!(
        stored_before < 30_000.0,
        "killed mid-batch ({stored_before} stored)"
    );

    let restarted = Instant::now();
    let engine = Engine::start(&broker, &names, dir.path(), 1, &small);
    engine.wait_for("its partitions back", Duration::from_secs(90), |e| {
        e.metric("karpoosheh_kafka_assigned_partitions", "") >= 4.0
    });
    // Its dead self's session lapses after `session.timeout.ms` (10 s by
    // the engine's default, librdkafka's 45 s would fail this).
    let back = restarted.elapsed();
    eprintln!("kafka_sigkill: the restarted node had its partitions back after {back:?}");
    assert!(
        back < Duration::from_secs(30),
        "partitions back after {back:?}"
    );
    engine.wait_for("the rest handled", Duration::from_secs(180), |e| {
        e.metric("karpoosheh_notices_stored_total", "")
            + e.metric("karpoosheh_notices_duplicate_total", "")
            >= 30_000.0 - stored_before
    });
    // Every record the restarted node handled has had its receipt
    // acknowledged by the broker (`receipts_produced` counts a receipt once
    // the broker has acknowledged it, which is before the source is):
    // read them then, so a pass of the reader seldom races a write.
    engine.wait_for("every receipt produced", Duration::from_secs(120), |e| {
        e.metric("karpoosheh_receipts_produced_total", "")
            >= e.metric("karpoosheh_notices_stored_total", "")
                + e.metric("karpoosheh_notices_duplicate_total", "")
    });
    let all_answered = |a: &Answers| {
        refs.iter()
            .all(|(r, _)| a.receipts.contains_key(&("tax".to_owned(), r.clone())))
    };
    let answers = read_answers(&broker, &names, all_answered, Duration::from_secs(120));
    if !all_answered(&answers) {
        // Which side lost them: the node (never handled, or receipts never
        // acknowledged) or the broker (acknowledged, never read back)?
        let m = |n: &str| engine.metric(n, "");
        eprintln!(
            "kafka_sigkill: receipts missing; restarted node: stored {} duplicates {} receipts acknowledged {} lag {} (first node stored >= {stored_before})",
            m("karpoosheh_notices_stored_total"),
            m("karpoosheh_notices_duplicate_total"),
            m("karpoosheh_receipts_produced_total"),
            m("karpoosheh_kafka_consumer_lag_records"),
        );
    }
    eprintln!(
        "kafka_sigkill: the restarted node absorbed {} re-delivered records; {} receipts read twice",
        engine.metric("karpoosheh_notices_duplicate_total", ""),
        answers.repeats
    );
    assert_all_accepted_once(&answers, &refs);
    // Receipts from both lives of the node, re-sent ones included, carry
    // evidence that holds.
    let (status, jwks) = engine.get("/.well-known/jwks.json");
    assert_eq!(status, 200);
    if let Some(report) = verify_receipts(dir.path(), &jwks, &answers.raw) {
        assert_eq!(
            report["verified"],
            answers.raw.len() - answers.batches,
            "{report}"
        );
        assert!(answers.batches > 0, "{report}");
    }
    let (code, _, log) = engine.terminate();
    assert_eq!(code, Some(0), "{log}");
    let store = open_store(&dir.path().join("node1"));
    let tax = AgencyId::parse("tax").unwrap();
    for (r, id) in &refs {
        assert!(store.reference(&tax, r).unwrap().is_some(), "{r} stored");
        let page = store.mailbox(mailbox(id), None, 10).unwrap();
        assert_eq!(page.notices.len(), 1, "{r} stored exactly once");
    }
    check_audit_log(&broker, &names, dir.path(), &jwks, &answers.raw, &store);
}

/// Issue 21, item 5: the tree heads a node published across a SIGKILL
/// and a restart are each signed and consistent with the one before
/// (checked here and by the independent Python verifier); after a clean
/// stop the last one covers the node's whole log; and the batch of every
/// receipt an agency got is in that log.
fn check_audit_log(
    broker: &Broker,
    names: &Names,
    dir: &Path,
    jwks: &str,
    receipts: &[String],
    store: &FjallStore,
) {
    use karpoosheh_engine::log::{verify_message, Tree, TreeHead, TreeHeadMessage};
    use karpoosheh_engine::AuditStore;
    let raw = read_topic(broker, &names.audit());
    let set: karpoosheh_engine::proof::Jwks = serde_json::from_str(jwks).unwrap();
    let public = karpoosheh_engine::from_b64url(&set.keys[0].x).unwrap();
    let mut last: Option<TreeHead> = None;
    let mut distinct = 0;
    for line in &raw {
        let m: TreeHeadMessage = serde_json::from_str(line).unwrap();
        if last.as_ref() == Some(&m.head) {
            continue; // published again after the restart
        }
        verify_message(&m, last.as_ref(), &public)
            .unwrap_or_else(|e| panic!("head of size {}: {e}", m.head.size));
        distinct += 1;
        last = Some(m.head);
    }
    let last = last.expect("tree heads on the audit topic");
    assert!(
        distinct >= 2,
        "heads from both lives of the node ({distinct})"
    );
    let entries = store.log_entries(1, 0, usize::MAX).unwrap();
    assert_eq!(
        last.size,
        entries.len() as u64,
        "the last head covers the whole log"
    );
    let mut tree = Tree::default();
    let mut leaves = std::collections::HashSet::new();
    for e in &entries {
        tree.push(e.leaf_hash());
        leaves.insert(e.leaf_hash());
    }
    assert_eq!(
        Some(karpoosheh_engine::b64url(&tree.root(last.size).unwrap())),
        Some(last.root.clone())
    );
    let mut batches = 0;
    let parsed: Vec<karpoosheh_schemas::Receipt> = receipts
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
    // Every receipt with its batch, by the engine's own verifier too.
    let by_id: HashMap<&str, &karpoosheh_schemas::Receipt> =
        parsed.iter().map(|r| (r.receipt_id.as_str(), r)).collect();
    for r in parsed
        .iter()
        .filter(|r| !r.receipt_id.starts_with("batch:"))
    {
        let root = &r.evidence.as_ref().unwrap().batch.as_ref().unwrap().root;
        let batch = by_id[format!("batch:{root}").as_str()];
        karpoosheh_engine::seal::verify_receipt(r, batch, &public)
            .unwrap_or_else(|e| panic!("receipt {}: {e}", r.receipt_id));
    }
    for r in parsed {
        if let karpoosheh_schemas::ReceiptEvent::BatchSigned {
            kid,
            signed_at,
            size,
            root,
            ..
        } = &r.event
        {
            batches += 1;
            let head = karpoosheh_engine::seal::head_bytes(kid, root, signed_at, *size);
            assert!(
                leaves.contains(&karpoosheh_engine::merkle::leaf_hash(&head)),
                "the signed batch {} is in the audit log",
                r.receipt_id
            );
        }
    }
    assert!(batches > 0, "signed batches among the receipts");
    if let Some(python) = karpoosheh_tests::python_with_cryptography("kafka_audit_python") {
        let jwks_file = dir.join("jwks.json");
        std::fs::write(&jwks_file, jwks).unwrap();
        let out = karpoosheh_tests::pipe(
            Command::new(python)
                .arg(karpoosheh_tests::python_script("audit.py"))
                .arg(&jwks_file),
            (raw.join("\n") + "\n").as_bytes(),
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(out.status.success(), "{report}");
        assert_eq!(report["size"], last.size, "{report}");
        assert_eq!(report["heads"], distinct, "{report}");
    }
}

/// Every message of `topic`, partition by partition, from the beginning.
fn read_topic(broker: &Broker, topic: &str) -> Vec<String> {
    let mut c = broker.client();
    c.set("group.id", format!("{topic}-reader-{}", rand_suffix()))
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = c.create().unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(t.name(), p.id(), Offset::Beginning)
                .unwrap();
        }
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap()),
            _ if at_end(&consumer, &tpl) => break,
            _ => {}
        }
    }
    out
}

/// Issue 23, "nothing twice": with the embedded store each node keeps its
/// own store, so two members of one group would store the records passed
/// between them twice. A node that joins a group someone already reads
/// stops before it reads anything, and says why; the node already there
/// takes its partitions back and stores everything once. (A fleet shares
/// the ScyllaDB store: tests/e2e/cql.rs.)
#[test]
fn kafka_a_second_embedded_node_in_a_group_stops_before_reading_and_the_first_goes_on() {
    let Some(broker) = broker_or_skip("kafka_two_nodes", Storage::Fresh) else {
        return;
    };
    let names = Names::new("pair");
    names.create(&broker, &["tax"], 4);
    let dir = tempfile::tempdir().unwrap();
    let first = produce_batch(&broker, &names, 0, 2000);
    let b = Engine::start(&broker, &names, dir.path(), 2, &[]);
    b.wait_for("B alone owns the group", Duration::from_secs(60), |e| {
        e.metric("karpoosheh_kafka_assigned_partitions", "") >= 4.0
    });
    let a = Engine::start(&broker, &names, dir.path(), 1, &[]);
    let (code, log) = a.wait_exit(Duration::from_secs(90));
    assert_ne!(code, Some(0), "the newcomer refuses to run:\n{log}");
    assert!(
        log.contains("another member shares Kafka consumer group")
            && log.contains("store.backend = \"scylla\""),
        "it says why and what to do:\n{log}"
    );
    // B saw the newcomer (karpoosheh_kafka_group_shared was 1 meanwhile)
    // and went on.
    b.wait_for("B noticed the newcomer", Duration::from_secs(30), |e| {
        e.log()
            .contains("another member joined this consumer group")
    });
    let second = produce_batch(&broker, &names, 2000, 2000);
    b.wait_for(
        "B owns every partition again",
        Duration::from_secs(60),
        |e| e.metric("karpoosheh_kafka_assigned_partitions", "") >= 4.0,
    );
    let all: Vec<_> = first.into_iter().chain(second).collect();
    let answers = read_answers(
        &broker,
        &names,
        |a| {
            all.iter()
                .all(|(r, _)| a.receipts.contains_key(&("tax".to_owned(), r.clone())))
        },
        Duration::from_secs(120),
    );
    assert_all_accepted_once(&answers, &all);
    b.wait_for("B alone again", Duration::from_secs(30), |e| {
        e.metric("karpoosheh_kafka_group_shared", "") == 0.0
    });
    let (code, _, log) = b.terminate();
    assert_eq!(code, Some(0), "{log}");
    // Everything in B's store, once; nothing in A's.
    let sb = open_store(&dir.path().join("node2"));
    let tax = AgencyId::parse("tax").unwrap();
    for (r, id) in &all {
        assert!(sb.reference(&tax, r).unwrap().is_some(), "{r} stored by B");
        assert_eq!(sb.mailbox(mailbox(id), None, 10).unwrap().notices.len(), 1);
    }
    let node1 = dir.path().join("node1");
    if node1.exists() {
        let sa = open_store(&node1);
        for (r, _) in &all {
            assert!(sa.reference(&tax, r).unwrap().is_none(), "{r} stored by A");
        }
    }
}

/// Issue 23, maximum-size records: a notice of exactly the payload limit
/// (256 KiB, its body at its own 64 KiB limit) is stored; one byte more is
/// dead-lettered `payload_too_large` with where it came from, and the
/// records around it flow.
#[test]
fn kafka_records_at_and_over_the_size_limit() {
    let Some(broker) = broker_or_skip("kafka_size_limit", Storage::Fresh) else {
        return;
    };
    let names = Names::new("size");
    names.create(&broker, &["tax"], 1);
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::start(&broker, &names, dir.path(), 1, &[]);
    const LIMIT: usize = 256 * 1024;
    let id = person(630_000_000);
    let sized = |reference: &str, size: usize| {
        let mut v: serde_json::Value =
            serde_json::from_str(&envelope("tax", reference, &id, "ابلاغیه")).unwrap();
        v["body"] = serde_json::Value::String("ب".repeat(32 * 1024)); // 64 KiB
        let mut text = v.to_string();
        assert!(text.len() <= size);
        // JSON whitespace up to the size: still one valid envelope.
        text.insert_str(1, &" ".repeat(size - text.len()));
        assert_eq!(text.len(), size);
        text
    };
    let p = broker.producer();
    produce(
        &p,
        &names.notices("tax"),
        &id,
        envelope("tax", "before", &id, "x").as_bytes(),
    );
    produce(
        &p,
        &names.notices("tax"),
        &id,
        sized("at-limit", LIMIT).as_bytes(),
    );
    produce(
        &p,
        &names.notices("tax"),
        &id,
        sized("over-limit", LIMIT + 1).as_bytes(),
    );
    produce(
        &p,
        &names.notices("tax"),
        &id,
        envelope("tax", "after", &id, "x").as_bytes(),
    );
    p.flush(Duration::from_secs(30)).unwrap();
    let a = read_answers(
        &broker,
        &names,
        |a| {
            ["before", "at-limit", "after"]
                .iter()
                .all(|r| a.receipts.contains_key(&("tax".to_owned(), r.to_string())))
                && !a.dead.is_empty()
        },
        Duration::from_secs(60),
    );
    for r in ["before", "at-limit", "after"] {
        let got = &a.receipts[&("tax".to_owned(), r.to_owned())];
        assert_eq!(got[0].0, "accepted", "{r}: {got:?}");
    }
    assert!(
        !a.receipts
            .contains_key(&("tax".to_owned(), "over-limit".to_owned())),
        "over the limit: no envelope was read, so no receipt"
    );
    assert_eq!(a.dead.len(), 1, "{:?}", a.dead);
    let (reason, topic, offset) = &a.dead[0];
    assert_eq!(reason, "payload_too_large");
    assert_eq!(topic, &names.notices("tax"));
    assert_eq!(*offset, 2, "the third record of the partition");
    let (code, _, log) = engine.terminate();
    assert_eq!(code, Some(0), "{log}");
    let store = open_store(&dir.path().join("node1"));
    let tax = AgencyId::parse("tax").unwrap();
    let code = store.reference(&tax, "at-limit").unwrap().expect("stored");
    let n = store.notice(code).unwrap().unwrap();
    assert_eq!(n.notice.body.len(), 64 * 1024, "the body whole");
}

#[test]
fn kafka_broker_unreachable_engine_waits_not_ready_then_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut broker) = broker_or_skip(
        "kafka_broker_down",
        Storage::Sqlite(dir.path().join("tansu.db")),
    ) else {
        return;
    };
    let names = Names::new("down");
    names.create(&broker, &["tax"], 2);
    let engine = Engine::start(&broker, &names, dir.path(), 1, &[]);
    let first = produce_batch(&broker, &names, 0, 200);
    engine.wait_for("first batch", Duration::from_secs(60), |e| {
        e.metric("karpoosheh_notices_stored_total", "") >= 200.0
    });
    engine.wait_for("ready", Duration::from_secs(30), |e| {
        e.get("/health/ready").0 == 200
    });

    broker.stop();
    engine.wait_for(
        "not ready while the broker is down",
        Duration::from_secs(60),
        |e| {
            let (s, body) = e.get("/health/ready");
            s == 503 && body.contains("kafka brokers unreachable")
        },
    );
    assert_eq!(engine.metric("karpoosheh_kafka_brokers_up", ""), 0.0);
    std::thread::sleep(Duration::from_secs(3));
    assert!(engine.get("/health/live").0 == 200, "alive and waiting");

    broker.restart();
    let second = produce_batch(&broker, &names, 200, 200);
    engine.wait_for("ready again", Duration::from_secs(60), |e| {
        e.get("/health/ready").0 == 200
    });
    engine.wait_for("resumed", Duration::from_secs(90), |e| {
        e.metric("karpoosheh_notices_stored_total", "") >= 400.0
    });
    let all: Vec<_> = first.into_iter().chain(second).collect();
    let answers = read_answers(
        &broker,
        &names,
        |a| {
            all.iter()
                .all(|(r, _)| a.receipts.contains_key(&("tax".to_owned(), r.clone())))
        },
        Duration::from_secs(60),
    );
    assert_all_accepted_once(&answers, &all);
    let (code, _, log) = engine.terminate();
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn kafka_article_29_rounds_confirmations_served_and_activation() {
    let Some(broker) = broker_or_skip("kafka_article_29", Storage::Fresh) else {
        return;
    };
    let names = Names::new("art29");
    names.create(&broker, &["tax"], 1);
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::start(
        &broker,
        &names,
        dir.path(),
        4,
        &[
            "delivery.enabled=true",
            "channels.allow_simulated=true",
            "delivery.quiet_hours=\"\"",
            "delivery.round_intervals=[\"0s\", \"30s\", \"30s\"]",
            "delivery.reminder_before=\"5s\"",
            "channels.sms.simulated.transient_failure_rate=0.0",
            "channels.sms.simulated.permanent_failure_rate=0.0",
            "channels.sms.simulated.slowdown_every=\"0s\"",
        ],
    );
    let p = broker.producer();
    let profile = |id: &str, status: &str, at: &str| {
        serde_json::json!({"schema_version": 1, "id": id, "status": status, "access_level": 2,
            "mobile": "09121234567", "push": false, "updated_at": at})
        .to_string()
    };
    let active = person(620_000_000);
    let later = person(621_000_000);
    register(
        &engine,
        &p,
        &names,
        &active,
        &profile(&active, "active", "2026-01-01T00:00:00Z"),
    );
    produce(
        &p,
        &names.notices("tax"),
        &active,
        envelope("tax", "a29-active", &active, "ابلاغیه").as_bytes(),
    );
    produce(
        &p,
        &names.notices("tax"),
        &later,
        envelope("tax", "a29-later", &later, "ابلاغیه").as_bytes(),
    );
    // A scheduled send to the active person, due in 12 s (in Tehran's
    // offset): accepted at once, held, then released and notified; its
    // response deadline 10 s later brings a reminder 5 s before it.
    let deliver_at =
        chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() + 12, 0).unwrap();
    let mut scheduled: serde_json::Value =
        serde_json::from_str(&envelope("tax", "a29-scheduled", &active, "ابلاغیه")).unwrap();
    scheduled["deliver_at"] = serde_json::json!(deliver_at
        .with_timezone(&chrono::FixedOffset::east_opt(12_600).unwrap())
        .to_rfc3339());
    scheduled["respond_by"] =
        serde_json::json!((deliver_at + chrono::Duration::seconds(10)).to_rfc3339());
    produce(
        &p,
        &names.notices("tax"),
        &active,
        scheduled.to_string().as_bytes(),
    );
    p.flush(Duration::from_secs(30)).unwrap();

    let events = |a: &Answers, r: &str| a.events("tax", r);
    let a = read_answers(
        &broker,
        &names,
        |a| {
            events(a, "a29-active").contains(&"notification_sent".to_owned())
                && events(a, "a29-later").contains(&"mailbox_unreachable".to_owned())
        },
        Duration::from_secs(90),
    );
    let active_events = events(&a, "a29-active");
    assert_eq!(
        active_events[..2],
        ["accepted", "notification_sent"],
        "{active_events:?}"
    );
    assert_eq!(
        events(&a, "a29-later")[..2],
        ["accepted", "mailbox_unreachable"]
    );
    // Read a second before its time (by this machine's clock, which is
    // the engine's): accepted, nothing else.
    if chrono::Utc::now() < deliver_at - chrono::Duration::seconds(1) {
        assert_eq!(events(&a, "a29-scheduled"), ["accepted"], "held");
    }
    let code = a.receipts[&("tax".to_owned(), "a29-active".to_owned())][0]
        .1
        .clone()
        .unwrap();

    let ack = |cid: &str| {
        serde_json::json!({"schema_version": 1, "confirmation_id": cid, "tracking_code": code,
            "confirmed_by": active, "confirmed_at": chrono::Utc::now()})
        .to_string()
    };
    let sign =
        |json: &str, key: &SigningKey| jws::sign(SignedKind::Confirmation, json.as_bytes(), key);
    // First what must never count: unsigned, signed by a stranger, by a
    // stranger under the inbox's key ID, by the identity side (not allowed
    // to confirm), a profile signature, the right signature under someone
    // else's record key, and a signed message edited after signing.
    let stranger = SigningKey::from_seed("stranger", [99; 32]).unwrap();
    let impostor = SigningKey::from_seed(inbox_key().kid(), [98; 32]).unwrap();
    let (f7, f8) = (ack("f7"), ack("f8"));
    let edited = String::from_utf8(sign(&f7, &inbox_key()))
        .unwrap()
        .replace(&b64url(f7.as_bytes()), &b64url(f8.as_bytes()));
    assert_ne!(edited.as_bytes(), sign(&f7, &inbox_key()), "edited");
    let forged: Vec<(&str, Vec<u8>)> = vec![
        (&active, ack("f1").into_bytes()),
        (&active, sign(&ack("f2"), &stranger)),
        (&active, sign(&ack("f3"), &impostor)),
        (&active, sign(&ack("f4"), &identity_key())),
        (
            &active,
            jws::sign(SignedKind::Profile, ack("f5").as_bytes(), &identity_key()),
        ),
        (&later, sign(&ack("f6"), &inbox_key())),
        (&active, edited.into_bytes()),
    ];
    for (key, value) in &forged {
        produce(&p, &names.acks(), key, value);
    }
    p.flush(Duration::from_secs(30)).unwrap();
    engine.wait_for(
        "the forged confirmations refused",
        Duration::from_secs(60),
        |e| {
            e.metric("karpoosheh_confirmations_total", "outcome=\"rejected\"")
                >= forged.len() as f64
        },
    );
    for (reason, n) in [
        ("unsigned", 1.0),
        ("unknown_key", 1.0),
        ("bad_signature", 2.0),
        ("signer_not_allowed", 1.0),
        ("wrong_message_kind", 1.0),
    ] {
        assert_eq!(
            engine.metric(
                "karpoosheh_signed_inputs_refused_total",
                &format!("kind=\"confirmation\",reason=\"{reason}\"")
            ),
            n,
            "{reason}"
        );
    }
    assert_eq!(
        engine.metric("karpoosheh_confirmations_total", "reason=\"key_mismatch\""),
        1.0
    );

    // Two confirmations from the inbox app, one with the key being rotated
    // out (both active), and a re-delivered one (a replay).
    for (cid, key) in [
        ("k1", inbox_old_key()),
        ("k1", inbox_old_key()),
        ("k2", inbox_key()),
    ] {
        produce(&p, &names.acks(), &active, &sign(&ack(cid), &key));
    }
    // The second person registers.
    produce(
        &p,
        &names.registry(),
        &later,
        &signed_profile(&profile(&later, "active", "2026-02-01T00:00:00Z")),
    );
    p.flush(Duration::from_secs(30)).unwrap();
    let a = read_answers(
        &broker,
        &names,
        |a| {
            events(a, "a29-active").contains(&"served".to_owned())
                && events(a, "a29-later").contains(&"notification_sent".to_owned())
                && events(a, "a29-scheduled").contains(&"reminder_sent".to_owned())
        },
        Duration::from_secs(90),
    );
    assert_eq!(
        events(&a, "a29-scheduled")[..4],
        ["accepted", "released", "notification_sent", "reminder_sent"],
        "landed at its time, then round 1, then the reminder (neither opened nor confirmed)"
    );
    let released: serde_json::Value = serde_json::from_str(
        a.raw
            .iter()
            .find(|r| r.contains("\"event\":\"released\""))
            .expect("the released receipt"),
    )
    .unwrap();
    let landed: chrono::DateTime<chrono::Utc> = released["at"].as_str().unwrap().parse().unwrap();
    assert!(landed >= deliver_at, "not before its time: {landed}");
    let active_events = events(&a, "a29-active");
    assert_eq!(
        active_events,
        [
            "accepted",
            "notification_sent",
            "confirmed",
            "confirmed",
            "served"
        ],
        "the duplicate confirmation counted once"
    );
    assert_eq!(
        events(&a, "a29-later"),
        ["accepted", "mailbox_unreachable", "notification_sent"]
    );
    assert_eq!(
        engine.metric("karpoosheh_confirmations_total", "duplicate"),
        1.0
    );
    assert_eq!(engine.metric("karpoosheh_notices_served_total", "tax"), 1.0);
    assert_eq!(
        engine.metric("karpoosheh_notices_released_total", "tax"),
        1.0
    );
    // The side readers say what they applied and that nothing waits
    // unread (librdkafka's lag, every second).
    engine.wait_for("the side readers caught up", Duration::from_secs(30), |e| {
        e.metric("karpoosheh_reader_applied_total", "\"confirmations\"") >= 3.0
            && e.metric("karpoosheh_reader_applied_total", "\"registry\"") >= 2.0
    });
    let text = engine.get("/metrics").1;
    for reader in ["confirmations", "registry"] {
        assert!(
            text.contains(&format!(
                "karpoosheh_reader_lag_records{{reader=\"{reader}\"}}"
            )),
            "{reader}'s lag is reported"
        );
    }
    engine.wait_for("no side reader lags", Duration::from_secs(30), |e| {
        e.metric("karpoosheh_reader_lag_records", "") == 0.0
    });

    // Every receipt, as the agency got it, verifies with an independent
    // verifier and the node's public key from its JWKS endpoint: chain,
    // its leaf in its signed batch, the batch signature; the active
    // notice's five events link.
    let (status, jwks) = engine.get("/.well-known/jwks.json");
    assert_eq!(status, 200);
    assert!(jwks.contains(karpoosheh_tests::NODE_PUBLIC_KEY), "{jwks}");
    if let Some(report) = verify_receipts(dir.path(), &jwks, &a.raw) {
        assert_eq!(report["verified"], a.raw.len() - a.batches, "{report}");
        assert_eq!(
            report["chained"],
            a.raw.len() - a.batches,
            "every one an event: {report}"
        );
        assert!(
            a.raw
                .iter()
                .any(|r| r.contains("\"event\":\"served\"") && r.contains("\"seq\":5")),
            "served is the active notice's fifth event"
        );
    }

    // A printed copy of the served notice checks out at the node's public
    // endpoint; a wrong code does not; nothing about the recipient shows.
    let accepted: serde_json::Value = serde_json::from_str(
        a.raw
            .iter()
            .find(|r| r.contains("\"event\":\"accepted\"") && r.contains(&code))
            .unwrap(),
    )
    .unwrap();
    let vcode = accepted["verification_code"].as_str().unwrap();
    let (status, body) = engine.get(&format!("/v1/documents/{code}/{vcode}"));
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["genuine"], true);
    assert_eq!(answer["agency"], "tax");
    assert!(!body.contains(&active), "{body}");
    let (status, body) = engine.get(&format!("/v1/documents/{code}/AAAA-AAAA"));
    assert_eq!((status, body.trim()), (404, "{\"genuine\":false}"));
    assert_eq!(
        engine.metric(
            "karpoosheh_document_inquiries_total",
            "result=\"not_genuine\""
        ),
        1.0
    );

    // The rotation ends: the old key is revoked in the trust file (read
    // again within the reload interval, 0 s here), and what it signs now
    // is refused.
    std::fs::write(dir.path().join("trust.toml"), trust_file("revoked")).unwrap();
    let f = std::fs::File::options()
        .write(true)
        .open(dir.path().join("trust.toml"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    produce(
        &p,
        &names.acks(),
        &active,
        &sign(&ack("k3"), &inbox_old_key()),
    );
    p.flush(Duration::from_secs(30)).unwrap();
    // Counted once kept in the store.
    engine.wait_for("the revoked key refused", Duration::from_secs(60), |e| {
        e.metric("karpoosheh_confirmations_total", "reason=\"key_revoked\"") >= 1.0
    });
    // Every refused confirmation is kept for the operator.
    drop(engine);
    let out = karpoosheh_tests::karpoosheh_command()
        .args(["dead-letters", "--limit", "100", "--data-dir"])
        .arg(dir.path().join("node4"))
        .env_remove("KARPOOSHEH_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for reason in [
        "unsigned",
        "unknown_key",
        "bad_signature",
        "signer_not_allowed",
        "wrong_message_kind",
        "key_mismatch",
        "key_revoked",
    ] {
        assert!(text.contains(reason), "{reason} kept: {text}");
    }
    assert!(
        !text.contains(&active),
        "no national ID printed in clear: {text}"
    );
}

/// A citizen's app on the inbox API of a node on Kafka: opening the notice,
/// confirming it twice (a retried call counted once) and sharing it with
/// another agency reach the agencies on their receipts topics -- `opened`,
/// `confirmed`, `served`, `shared` to the sender, `document_shared` with
/// the document to the other -- and every receipt verifies with the
/// independent verifier.
#[test]
fn kafka_inbox_api_open_confirm_share_reach_the_agencies() {
    let Some(broker) = broker_or_skip("kafka_inbox", Storage::Fresh) else {
        return;
    };
    let names = Names::new("inbox");
    names.create(&broker, &["tax", "utilities"], 1);
    let dir = tempfile::tempdir().unwrap();
    // The identity provider's key, and its JWK Set for the node.
    let idp = SigningKey::from_seed("idp-2026", [61; 32]).unwrap();
    let jwks_file = dir.path().join("idp.jwks.json");
    std::fs::write(&jwks_file, idp.public_jwks_json()).unwrap();
    let engine = Engine::start(
        &broker,
        &names,
        dir.path(),
        5,
        &[
            "delivery.enabled=true",
            "channels.allow_simulated=true",
            "delivery.quiet_hours=\"\"",
            "delivery.round_intervals=[\"0s\", \"60s\", \"60s\"]",
            "channels.sms.simulated.transient_failure_rate=0.0",
            "channels.sms.simulated.permanent_failure_rate=0.0",
            "inbox.listen=\"127.0.0.1:0\"",
            &format!("identity.jwks_file={:?}", jwks_file.display().to_string()),
            "identity.issuer=\"https://sso.example.ir\"",
        ],
    );
    engine.wait_for("the inbox API", Duration::from_secs(30), |e| {
        e.log().contains("karpoosheh: inbox API on http://")
    });
    let api: std::net::SocketAddr = engine
        .log()
        .lines()
        .find_map(|l| {
            l.strip_prefix("karpoosheh: inbox API on http://")?
                .strip_suffix("/v1/")
        })
        .unwrap()
        .parse()
        .unwrap();
    let citizen = person(630_000_000);
    let p = broker.producer();
    register(
        &engine,
        &p,
        &names,
        &citizen,
        &serde_json::json!({"schema_version": 1, "id": citizen, "status": "active",
            "access_level": 2, "mobile": "09121234567", "updated_at": "2026-01-01T00:00:00Z"})
        .to_string(),
    );
    produce(
        &p,
        &names.notices("tax"),
        &citizen,
        envelope("tax", "inbox-1", &citizen, "ابلاغیه").as_bytes(),
    );
    p.flush(Duration::from_secs(30)).unwrap();
    let events = |a: &Answers, agency: &str, r: &str| -> Vec<String> {
        a.receipts
            .get(&(agency.to_owned(), r.to_owned()))
            .map(|v| v.iter().map(|x| x.0.clone()).collect())
            .unwrap_or_default()
    };
    let a = read_answers(
        &broker,
        &names,
        |a| !events(a, "tax", "inbox-1").is_empty(),
        Duration::from_secs(60),
    );
    let code = a.receipts[&("tax".to_owned(), "inbox-1".to_owned())][0]
        .1
        .clone()
        .unwrap();

    // The app, with the person's token.
    let now = chrono::Utc::now().timestamp();
    let token = karpoosheh_engine::sign_token(
        &idp,
        &serde_json::json!({"iss": "https://sso.example.ir", "aud": "karpoosheh",
            "sub": citizen, "acr": 2, "azp": "inbox-web", "exp": now + 600}),
    );
    let call = |method: &str, path: &str, extra: &str, body: &str| -> (u16, serde_json::Value) {
        let mut s = TcpStream::connect(api).unwrap();
        let len = if body.is_empty() {
            String::new()
        } else {
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )
        };
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{extra}{len}Connection: close\r\n\r\n{body}"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
        let json = out
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or_default();
        (status, json)
    };
    let (status, opened) = call("GET", &format!("/v1/notices/{code}"), "", "");
    assert_eq!(status, 200, "{opened}");
    assert_eq!(opened["title"], "ابلاغیه");
    assert!(opened["body"].as_str().is_some_and(|b| !b.is_empty()));
    let confirm = |key: &str| {
        call(
            "POST",
            &format!("/v1/notices/{code}/confirmations"),
            &format!("Idempotency-Key: {key}\r\n"),
            "",
        )
    };
    assert_eq!(confirm("tap-1").1["confirmations"], 1);
    assert_eq!(confirm("tap-1").1["outcome"], "duplicate", "a retried call");
    let (_, second) = confirm("tap-2");
    assert_eq!(
        (second["confirmations"].as_u64(), second["served"].as_bool()),
        (Some(2), Some(true))
    );
    let (status, shared) = call(
        "POST",
        &format!("/v1/notices/{code}/shares"),
        "",
        r#"{"agency": "utilities"}"#,
    );
    assert_eq!(status, 201, "{shared}");

    let a = read_answers(
        &broker,
        &names,
        |a| {
            events(a, "tax", "inbox-1").contains(&"shared".to_owned())
                && a.receipts.keys().any(|(agency, _)| agency == "utilities")
        },
        Duration::from_secs(90),
    );
    let tax = events(&a, "tax", "inbox-1");
    for e in ["accepted", "opened", "confirmed", "served", "shared"] {
        assert!(tax.contains(&e.to_owned()), "{e} missing from {tax:?}");
    }
    assert_eq!(
        tax.iter().filter(|e| *e == "confirmed").count(),
        2,
        "{tax:?}"
    );
    let doc: serde_json::Value = serde_json::from_str(
        a.raw
            .iter()
            .find(|r| r.contains("\"event\":\"document_shared\""))
            .expect("the document on the utilities' receipts topic"),
    )
    .unwrap();
    assert_eq!(doc["agency"], "utilities");
    assert_eq!(doc["from"], "tax");
    assert_eq!(doc["tracking_code"], code.as_str());
    assert_eq!(
        doc["document"]["body"], opened["body"],
        "the document as stored"
    );
    assert!(
        doc["reference"].is_null(),
        "the other agency has no reference of its own"
    );
    let (status, jwks) = engine.get("/.well-known/jwks.json");
    assert_eq!(status, 200);
    if let Some(report) = verify_receipts(dir.path(), &jwks, &a.raw) {
        assert_eq!(report["verified"], a.raw.len() - a.batches, "{report}");
    }
    // The citizen's calls are traffic data of their mailbox, not log lines.
    assert!(!engine.log().contains(&citizen), "a national ID in the log");
}
