//! Kafka drivers: act as the agencies (produce realistic notices and
//! registrations to a real broker, read the receipt topics back, report
//! end-to-end latency and throughput), and a bare consumer (`drain`) that
//! measures the raw consume rate of the same topics for the benchmark.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use karpoosheh_schemas::{MailboxProfile, MailboxStatus, SCHEMA_VERSION};
use karpoosheh_traffic::{Expect, Traffic, TrafficConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use serde::Serialize;

/// Where and how to talk to the broker.
#[derive(Debug, Clone)]
pub struct KafkaTarget {
    pub brokers: String,
    pub notice_prefix: String,
    pub receipt_prefix: String,
    pub registry_topic: String,
    pub dead_letter_topic: String,
    /// Extra librdkafka options (`key=value`).
    pub options: Vec<(String, String)>,
}

impl KafkaTarget {
    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.options {
            c.set(k, v);
        }
        c
    }
}

/// Creates topics that do not exist yet (existing ones are left alone).
pub fn create_topics(target: &KafkaTarget, topics: &[String], partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = target.client().create()?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results =
        futures_executor::block_on(admin.create_topics(&new, &opts)).context("creating topics")?;
    for r in results {
        if let Err((topic, code)) = r {
            if code != RDKafkaErrorCode::TopicAlreadyExists {
                bail!("cannot create topic {topic}: {code}");
            }
        }
    }
    Ok(())
}

/// What to produce.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    pub traffic: TrafficConfig,
    /// Records per second; 0 for flat out.
    pub rate: u64,
    /// Mailbox profiles to send to the registry topic first.
    pub registrations: u64,
    /// Signs the profiles (the identity side's key).
    pub signing_key: Option<std::sync::Arc<karpoosheh_engine::keys::SigningKey>>,
    /// Wait for receipts (and dead letters) of everything produced.
    pub wait_receipts: Option<Duration>,
    /// Partitions for topics created on the way.
    pub partitions: i32,
    /// The producer's `linger.ms`.
    pub linger_ms: u64,
    /// The receipt reader's `fetch.wait.max.ms`.
    pub fetch_wait_ms: u64,
    /// The engine's metrics endpoint (`host:port`): its stage histograms
    /// are read before and after, and summarised in the report.
    pub engine_metrics: Option<String>,
    /// The lane the notices go on: the suffix of their topics.
    pub lane: karpoosheh_schemas::Priority,
    /// Only these agencies' notices are sent (the others the model makes
    /// are skipped), and only their receipts read; all when empty.
    pub agencies: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct KafkaReport {
    pub produced: u64,
    pub registrations: u64,
    pub produce_seconds: f64,
    pub produce_per_sec: f64,
    pub expected: HashMap<String, u64>,
    pub receipts: HashMap<String, u64>,
    pub duplicate_receipts_seen: u64,
    pub dead_letters_seen: u64,
    /// Produced → `accepted` receipt read back, milliseconds.
    pub latency_ms: HashMap<String, f64>,
    /// Records fully answered (receipt or dead letter) per second, from
    /// the first produce to the last answer.
    pub end_to_end_per_sec: f64,
    pub complete: bool,
    /// The engine's own side of the run, from its `/metrics` (with
    /// `--engine-metrics`): per stage (`receipt`: arrival → receipt
    /// acknowledged; `stage_*`: the pipeline's stages), what was recorded
    /// during the run, as bucket upper bounds.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub engine: BTreeMap<String, crate::engine_metrics::Summary>,
}

#[derive(serde::Deserialize)]
struct ReceiptView {
    receipt_id: String,
    agency: String,
    reference: Option<String>,
    event: String,
}

#[derive(serde::Deserialize)]
struct RefView {
    reference: Option<serde_json::Value>,
}

fn bare_consumer(target: &KafkaTarget, group: &str) -> Result<BaseConsumer> {
    let mut c = target.client();
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    Ok(c.create()?)
}

fn escape(prefix: &str) -> String {
    prefix
        .chars()
        .flat_map(|c| {
            let esc = (!c.is_ascii_alphanumeric()).then_some('\\');
            esc.into_iter().chain(std::iter::once(c))
        })
        .collect()
}

/// Produces the traffic, then (optionally) reads every answer back.
pub fn run(target: &KafkaTarget, opts: &ProduceOptions) -> Result<KafkaReport> {
    let traffic = Arc::new(Traffic::new(opts.traffic.clone()));
    let total = opts.traffic.notices;
    let included = |a: &str| opts.agencies.is_empty() || opts.agencies.iter().any(|x| x == a);
    let agencies: Vec<&str> = Traffic::agencies()
        .iter()
        .map(|a| a.0)
        .filter(|a| included(a))
        .collect();
    if agencies.is_empty() {
        anyhow::bail!("--agencies names none of the model's agencies");
    }
    let mut topics: Vec<String> = agencies
        .iter()
        .flat_map(|a| {
            [
                format!("{}{a}{}", target.notice_prefix, opts.lane.topic_suffix()),
                format!("{}{a}", target.receipt_prefix),
            ]
        })
        .collect();
    topics.push(target.dead_letter_topic.clone());
    if opts.registrations > 0 {
        topics.push(target.registry_topic.clone());
    }
    create_topics(target, &topics, opts.partitions)?;

    // Answers are read from before the first record is produced.
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    // Every (agency, reference) this run sends: receipts of others (another
    // run on the same receipt topics) are not this run's answers.
    let ours: Arc<Mutex<HashSet<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let mut report = KafkaReport::default();
    // Counted as records are sent (an agency filter skips some).
    let mut expected_answers = 0u64;
    let reader = opts.wait_receipts.map(|_| {
        let target = target.clone();
        let (sent, stop, answered) = (sent.clone(), stop.clone(), answered.clone());
        let (ready, ours) = (ready.clone(), ours.clone());
        let fetch_wait = opts.fetch_wait_ms;
        let agencies: Vec<String> = agencies.iter().map(|a| a.to_string()).collect();
        std::thread::spawn(move || {
            read_answers(
                &target, &agencies, ready, sent, ours, stop, answered, fetch_wait,
            )
        })
    });
    if reader.is_some() {
        // Let the reader join its group and take its positions first.
        while !ready.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
            if reader.as_ref().is_some_and(|r| r.is_finished()) {
                break;
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }

    let engine_before = match &opts.engine_metrics {
        Some(addr) => Some(crate::engine_metrics::scrape(addr)?),
        None => None,
    };
    let mut pc = target.client();
    pc.set("enable.idempotence", "true")
        .set("linger.ms", opts.linger_ms.to_string())
        .set("compression.type", "lz4");
    let producer: ThreadedProducer<DefaultProducerContext> = pc.create()?;
    let send = |topic: &str, key: &[u8], payload: &[u8]| {
        send_waiting(&producer, BaseRecord::to(topic).key(key).payload(payload))
    };
    let started = Instant::now();
    for i in 0..opts.registrations {
        let Some(id) = traffic.recipient_of(i) else {
            continue;
        };
        let p = MailboxProfile {
            schema_version: SCHEMA_VERSION,
            id,
            status: MailboxStatus::Active,
            access_level: 2,
            mobile: Some(format!("0912{:07}", i % 10_000_000)),
            email: None,
            push: i % 2 == 0,
            representatives: vec![],
            delegations: vec![],
            updated_at: chrono::Utc::now(),
        };
        let json = serde_json::to_vec(&p)?;
        let signed = match &opts.signing_key {
            Some(k) => {
                karpoosheh_engine::jws::sign(karpoosheh_engine::SignedKind::Profile, &json, k)
            }
            None => anyhow::bail!("registrations need a signing key"),
        };
        send(&target.registry_topic, id.to_string().as_bytes(), &signed);
        report.registrations += 1;
    }
    let mut i = 0;
    let mut sent_n = 0u64;
    while i < total {
        let end = (i + 4096).min(total);
        for (n, g) in (i..end).zip(traffic.chunk(i, end)) {
            if !included(g.agency) {
                continue;
            }
            let k = match traffic.expect_of(n) {
                Expect::Stored | Expect::Duplicate => "accepted",
                Expect::Rejected(_) => "rejected",
                Expect::DeadLetter(_) => "dead_letter",
            };
            *report.expected.entry(k.to_owned()).or_default() += 1;
            expected_answers += 1;
            if opts.rate > 0 {
                let due = started + Duration::from_secs_f64(sent_n as f64 / opts.rate as f64);
                if let Some(w) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(w);
                }
            }
            let topic = format!(
                "{}{}{}",
                target.notice_prefix,
                g.agency,
                opts.lane.topic_suffix()
            );
            let key = traffic
                .recipient_of(n)
                .map(|r| r.to_string())
                .unwrap_or_else(|| format!("r{n}"));
            if reader.is_some() {
                if let Ok(RefView {
                    reference: Some(serde_json::Value::String(r)),
                }) = serde_json::from_slice::<RefView>(&g.payload)
                {
                    let key = format!("{}\0{r}", g.agency);
                    ours.lock().unwrap().insert(key.clone());
                    if g.expect != Expect::Duplicate {
                        sent.lock().unwrap().entry(key).or_insert_with(Instant::now);
                    }
                }
            }
            send(&topic, key.as_bytes(), &g.payload);
            sent_n += 1;
        }
        i = end;
    }
    producer.flush(Duration::from_secs(120))?;
    report.produced = sent_n;
    report.produce_seconds = started.elapsed().as_secs_f64();
    report.produce_per_sec = sent_n as f64 / report.produce_seconds;
    eprintln!(
        "produced {total} notices ({} registrations) in {:.1}s: {:.0}/s",
        report.registrations, report.produce_seconds, report.produce_per_sec
    );

    if let (Some(reader), Some(wait)) = (reader, opts.wait_receipts) {
        let deadline = Instant::now() + wait;
        let mut last = Instant::now();
        while answered.load(Ordering::SeqCst) < expected_answers && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            if last.elapsed() > Duration::from_secs(5) {
                eprintln!(
                    "answers: {} of {expected_answers}",
                    answered.load(Ordering::SeqCst)
                );
                last = Instant::now();
            }
        }
        let done_at = started.elapsed();
        stop.store(true, Ordering::SeqCst);
        let answers = reader.join().expect("reader thread")?;
        report.receipts = answers.events;
        report.duplicate_receipts_seen = answers.repeated;
        report.dead_letters_seen = answers.dead_letters;
        let lat: Vec<f64> = answers
            .latency_us
            .iter()
            .map(|&us| us as f64 / 1000.0)
            .collect();
        report.latency_ms.extend(quantiles_ms(lat));
        report.complete = answered.load(Ordering::SeqCst) >= expected_answers;
        report.end_to_end_per_sec = sent_n as f64 / done_at.as_secs_f64();
    }
    if let (Some(addr), Some(before)) = (&opts.engine_metrics, engine_before) {
        // The engine records a receipt's latency from the broker's
        // acknowledgement, which can come a moment after the reader saw it.
        std::thread::sleep(Duration::from_millis(300));
        report.engine =
            crate::engine_metrics::summarise(&before, &crate::engine_metrics::scrape(addr)?);
        for (series, s) in &report.engine {
            let ms = |v: Option<f64>| v.map_or("> max".to_owned(), |v| format!("≤ {v} ms"));
            eprintln!(
                "engine {series:20} {:>8} observed   p50 {:>11}   p90 {:>11}   p99 {:>11}",
                s.count,
                ms(s.p50_ms_le),
                ms(s.p90_ms_le),
                ms(s.p99_ms_le)
            );
        }
    }
    Ok(report)
}

struct Answers {
    events: HashMap<String, u64>,
    repeated: u64,
    dead_letters: u64,
    latency_us: Vec<u64>,
}

#[allow(clippy::too_many_arguments)]
fn read_answers(
    target: &KafkaTarget,
    agencies: &[String],
    ready: Arc<AtomicBool>,
    sent: Arc<Mutex<HashMap<String, Instant>>>,
    ours: Arc<Mutex<HashSet<String>>>,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    fetch_wait_ms: u64,
) -> Result<Answers> {
    let group = format!("karpoosheh-loadtest-{}", std::process::id());
    let mut c = target.client();
    // Only this run's answers: from the end of the topics as they are now.
    c.set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string());
    let consumer: BaseConsumer = c.create()?;
    let pattern = format!(
        "^{}({})$",
        escape(&target.receipt_prefix),
        agencies
            .iter()
            .map(|a| escape(a))
            .collect::<Vec<_>>()
            .join("|")
    );
    consumer.subscribe(&[&pattern, &target.dead_letter_topic])?;
    let joined = Instant::now();
    while consumer.assignment().map_or(0, |a| a.count()) == 0 {
        consumer.poll(Duration::from_millis(100));
        if joined.elapsed() > Duration::from_secs(30) {
            bail!("the receipt reader got no partitions within 30 s");
        }
    }
    ready.store(true, Ordering::SeqCst);
    let mut seen = HashSet::new();
    let mut out = Answers {
        events: HashMap::new(),
        repeated: 0,
        dead_letters: 0,
        latency_us: Vec::new(),
    };
    while !stop.load(Ordering::SeqCst) {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let now = Instant::now();
        let payload = m.payload().unwrap_or_default();
        if m.topic() == target.dead_letter_topic {
            out.dead_letters += 1;
            answered.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        let Ok(r) = serde_json::from_slice::<ReceiptView>(payload) else {
            continue;
        };
        // A signed batch's head, not an answer to a record.
        if r.event == "batch_signed" {
            continue;
        }
        if let Some(reference) = &r.reference {
            if !ours
                .lock()
                .unwrap()
                .contains(&format!("{}\0{reference}", r.agency))
            {
                continue; // another run's
            }
        }
        if !seen.insert(r.receipt_id.clone()) {
            out.repeated += 1; // at-least-once: deduplicated by receipt_id
            continue;
        }
        *out.events.entry(r.event.clone()).or_default() += 1;
        answered.fetch_add(1, Ordering::SeqCst);
        if r.event == "accepted" {
            if let Some(reference) = &r.reference {
                let key = format!("{}\0{reference}", r.agency);
                if let Some(t) = sent.lock().unwrap().remove(&key) {
                    out.latency_us
                        .push(now.duration_since(t).as_micros() as u64);
                }
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Serialize)]
pub struct DrainReport {
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
}

/// Reads `records` records from the notice topics with a bare consumer
/// that does nothing with them, timed from the first record to the last.
pub fn drain(target: &KafkaTarget, records: u64, idle: Duration) -> Result<DrainReport> {
    let group = format!(
        "karpoosheh-drain-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let consumer = bare_consumer(target, &group)?;
    let pattern = format!("^{}[a-z][a-z0-9-]{{1,31}}$", escape(&target.notice_prefix));
    consumer.subscribe(&[&pattern])?;
    let (mut n, mut bytes) = (0u64, 0u64);
    let mut first = None;
    let mut last = Instant::now();
    while n < records {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                last = Instant::now();
                n += 1;
                bytes += m.payload_len() as u64;
            }
            _ => {
                if first.is_some() && last.elapsed() > idle {
                    break;
                }
                if first.is_none() && last.elapsed() > Duration::from_secs(60) {
                    bail!("no record within 60 s");
                }
            }
        }
    }
    let seconds = first
        .map_or(0.0, |f| last.duration_since(f).as_secs_f64())
        .max(1e-9);
    Ok(DrainReport {
        records: n,
        bytes,
        seconds,
        records_per_sec: n as f64 / seconds,
        mb_per_sec: bytes as f64 / seconds / 1e6,
    })
}

/// What a bare client waits for through the broker alone (issue 25): one
/// trip, produce → consumed by another client.
#[derive(Debug, Serialize)]
pub struct BrokerLatency {
    pub records: u64,
    pub rate: u64,
    /// Produce → read back by the consumer, milliseconds: p50, p90, p99, max.
    pub read_ms: BTreeMap<String, f64>,
    /// Produce → the producer's delivery report (`acks = all`), milliseconds.
    pub acked_ms: BTreeMap<String, f64>,
}

/// Records the delivery reports' latency; the opaque is the send time.
#[derive(Default)]
struct AckTimes(Mutex<Vec<f64>>);

impl rdkafka::ClientContext for AckTimes {}

impl rdkafka::producer::ProducerContext for AckTimes {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, r: &rdkafka::message::DeliveryResult<'_>, sent: Box<Instant>) {
        if r.is_ok() {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(sent.elapsed().as_secs_f64() * 1e3);
        }
    }
}

/// p50, p90, p99 and max of latencies in milliseconds (0 when there are
/// none).
fn quantiles_ms(mut v: Vec<f64>) -> BTreeMap<String, f64> {
    v.sort_by(f64::total_cmp);
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)]
        .into_iter()
        .map(|(name, p)| {
            let q = if v.is_empty() {
                0.0
            } else {
                v[((v.len() - 1) as f64 * p) as usize]
            };
            (name.to_owned(), q)
        })
        .collect()
}

/// Produces `record`, waiting while the producer's queue is full.
fn send_waiting<C>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'_, [u8], [u8], C::DeliveryOpaque>,
) where
    C: rdkafka::producer::ProducerContext + 'static,
{
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                record = r;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((e, _)) => panic!("produce failed: {e}"),
        }
    }
}

/// A bare client's trip through the broker, with the agency's settings
/// (`kafka` above): an idempotent producer (`acks = all`, linger
/// `linger_ms`) sends `records` small records to `topic` at `rate` a
/// second, and a consumer (`fetch.wait.max.ms = fetch_wait_ms`) reads them
/// back. An agency's answer is two such trips (its notice in, its receipt
/// out) plus the engine's own share.
pub fn broker_latency(
    target: &KafkaTarget,
    topic: &str,
    records: u64,
    rate: u64,
    linger_ms: u64,
    fetch_wait_ms: u64,
) -> Result<BrokerLatency> {
    use rdkafka::{Offset, TopicPartitionList};
    create_topics(target, &[topic.to_owned()], 4)?;
    let mut cc = target.client();
    cc.set(
        "group.id",
        format!("karpoosheh-broker-latency-{}", std::process::id()),
    )
    .set("enable.auto.commit", "false")
    .set("fetch.wait.max.ms", fetch_wait_ms.to_string());
    let consumer: BaseConsumer = cc.create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..4 {
        tpl.add_partition_offset(topic, p, Offset::End)?;
    }
    consumer.assign(&tpl)?;
    let mut pc = target.client();
    pc.set("enable.idempotence", "true")
        .set("linger.ms", linger_ms.to_string());
    let producer: ThreadedProducer<AckTimes> = pc.create_with_context(AckTimes::default())?;
    // Send times by sequence number, for the reader's side.
    let sent: Mutex<HashMap<u64, Instant>> = Mutex::default();
    let send = |seq: u64| {
        let payload = seq.to_be_bytes();
        let at = Instant::now();
        sent.lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(seq, at);
        let key = (seq % 64).to_string();
        send_waiting(
            &producer,
            BaseRecord::with_opaque_to(topic, Box::new(at))
                .key(key.as_bytes())
                .payload(&payload[..]),
        );
    };
    let mut read = Vec::new();
    // A record of ours read back: its latency into `read`.
    let take = |m: &rdkafka::message::BorrowedMessage<'_>, read: &mut Vec<f64>| -> bool {
        let Some(seq) = m
            .payload()
            .and_then(|p| p.try_into().ok())
            .map(u64::from_be_bytes)
        else {
            return false;
        };
        let Some(at) = sent.lock().unwrap_or_else(|p| p.into_inner()).remove(&seq) else {
            return false;
        };
        read.push(at.elapsed().as_secs_f64() * 1e3);
        true
    };
    // Until the consumer has its positions: warm-up records, not measured,
    // until one comes back.
    let warm = u64::MAX / 2;
    let deadline = Instant::now() + Duration::from_secs(60);
    'warm: for i in 0.. {
        if Instant::now() > deadline {
            bail!("no record came back from {topic} within 60 s");
        }
        send(warm + i);
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) {
                if take(&m, &mut read) {
                    break 'warm;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(10))?;
    while let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
        take(&m, &mut read);
    }
    read.clear();
    producer
        .context()
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    sent.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let started = Instant::now();
    let mut next = 0u64;
    let mut got = 0u64;
    let deadline = started + Duration::from_secs(records / rate.max(1) + 60);
    while got < records && Instant::now() < deadline {
        let due = started + Duration::from_secs_f64(next as f64 / rate.max(1) as f64);
        if next < records && Instant::now() >= due {
            send(next);
            next += 1;
        }
        let wait = if next < records {
            due.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(1))
        } else {
            Duration::from_millis(10)
        };
        if let Some(Ok(m)) = consumer.poll(wait) {
            if take(&m, &mut read) {
                got += 1;
            }
        }
    }
    producer.flush(Duration::from_secs(10))?;
    let acked = std::mem::take(
        &mut *producer
            .context()
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    );
    Ok(BrokerLatency {
        records: got,
        rate,
        read_ms: quantiles_ms(read),
        acked_ms: quantiles_ms(acked),
    })
}
