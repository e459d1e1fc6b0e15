//! The Kafka source: one consumer in the fleet's group, subscribed by
//! pattern to every agency's notice topic.
//!
//! Guarantees:
//! - **Offsets follow durability.** Each partition is a lane; a record's
//!   sequence is its offset. The offset committed for a partition is the
//!   lowest offset read but not yet durably handled (or the next offset
//!   when all are): never past a record the store has not made durable.
//!   Offsets may have gaps (compaction, transaction markers), so progress is
//!   tracked over the offsets actually delivered, not assumed contiguous.
//! - **Back-pressure.** The pipeline's queues are bounded: when they are
//!   full this thread waits, and librdkafka's prefetch is bounded too
//!   (`queued.max.messages.kbytes`), so memory stays flat whatever the
//!   backlog. Optionally (`max_in_flight_per_partition` > 0) a partition
//!   with that many records in flight is paused and resumed (with a seek to
//!   the next record) below half of it. Off by default. It once lost
//!   records in the benchmark; the cause was the broker: tansu 0.6's
//!   memory engine answers a fetch that starts inside a stored batch from
//!   the next batch, skipping the rest — after a pause, a seek, a restart
//!   or a rebalance alike. A bare librdkafka consumer pausing like this
//!   one loses the same there and nothing on tansu's SQLite engine
//!   (scripts/repro-pause-resume.py). Not yet tried on Apache Kafka.
//! - **Rebalances.** Before partitions are revoked, what is durable is
//!   committed synchronously; their in-flight records are dropped from
//!   tracking (the pipeline still stores them; the new owner re-delivers
//!   them, and the store's idempotency on (agency, reference) absorbs the
//!   copy). A re-assigned partition gets a fresh lane, so late acks of the
//!   old assignment can never move the new one's offsets.
//! - **One member per group on per-node stores.** With the embedded
//!   store ([`KafkaSource::exclusive_group`]) every node keeps its own
//!   store, so a partition handed from one member to another would have
//!   its unacknowledged records stored twice, with two tracking codes. A
//!   node that joins a group and is given only part of the notice
//!   partitions (someone else holds the rest) stops before it hands on a
//!   single record, saying so; the member already there goes on. A node
//!   restarted after a crash is given everything once its dead self's
//!   session has lapsed, and goes on.
//! - **Priority lanes.** `<prefix><agency>.urgent` and
//!   `<prefix><agency>.bulk` are read too: once a partition of one has
//!   given its first record, it gets its own queue (librdkafka's
//!   partition queue, with a seek to the next record so that nothing
//!   fetched before is handed out twice or skipped), and every poll takes
//!   urgent queues first, then the normal topics, then bulk: an urgent
//!   record never waits behind a prefetched backlog, and
//!   [`Source::poll_urgent`] reads urgent queues alone while the pipeline
//!   takes nothing else.
//! - **Sender identity from the topic.** A record on
//!   `<prefix><agency>` speaks for that agency; an envelope naming another
//!   is rejected (`agency_mismatch`), and an agency that is not approved
//!   in the operator's registry is refused (`agency_unknown`,
//!   `agency_not_allowed`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use karpoosheh_schemas::{AgencyId, Priority, Problem, Reason, SourcePosition};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};

use crate::agencies::AgencyRegistry;
use crate::health::Health;
use crate::internal_events::{
    agency_label, BulkDeferred, BulkDeferredLanes, KafkaBacklog, KafkaBrokers, KafkaClientError,
    KafkaClosing, KafkaCommitted, KafkaGroupShared, KafkaLag, KafkaPaused, KafkaRebalance,
    KafkaStarted,
};
use crate::source::{AckToken, Poll, Record, Source, SourceError};

use crate::kafka::{set_default, KafkaConfig};

/// The reason `/health/ready` gives while no broker answers.
pub const NOT_READY_BROKERS: &str = "kafka brokers unreachable";

/// One assigned partition's progress.
struct Lane {
    topic: String,
    partition: i32,
    agency: Option<AgencyId>,
    /// Offsets handed out and not yet durable, in order, with a done flag;
    /// the front is always not done.
    inflight: VecDeque<(i64, bool)>,
    /// The offset after the last one handed out; -1 before the first.
    next: i64,
    /// The last offset committed (next to read); -1 if none.
    committed: i64,
    paused: bool,
    /// From the topic's suffix.
    priority: Priority,
    /// Read from its own partition queue (urgent and bulk lanes, after
    /// their first record).
    split: bool,
    /// A bulk lane whose agency spent its day's quota and defers the rest
    /// (`over_quota = "defer"`): paused, its next record unread, until
    /// then (the next Tehran midnight).
    deferred_until: Option<Instant>,
}

/// Reports each agency's deferred lanes (`over_quota = "defer"`) where
/// the count changed since `reported`, 0 for those with none left.
fn report_deferred(lanes: &HashMap<u32, Lane>, reported: &mut BTreeMap<AgencyId, usize>) {
    let mut now: BTreeMap<AgencyId, usize> = BTreeMap::new();
    for l in lanes.values().filter(|l| l.deferred_until.is_some()) {
        if let Some(a) = &l.agency {
            *now.entry(a.clone()).or_default() += 1;
        }
    }
    for a in reported.keys().filter(|a| !now.contains_key(*a)) {
        BulkDeferredLanes {
            agency: a,
            lanes: 0,
        }
        .emit();
    }
    for (a, &n) in &now {
        if reported.get(a) != Some(&n) {
            BulkDeferredLanes {
                agency: a,
                lanes: n,
            }
            .emit();
        }
    }
    *reported = now;
}

impl Lane {
    /// Where the group may resume this partition: nothing before it is
    /// pending.
    fn durable_position(&self) -> Option<i64> {
        match self.inflight.front() {
            Some(&(offset, _)) => Some(offset),
            None if self.next >= 0 => Some(self.next),
            None => None,
        }
    }

    fn ack(&mut self, offset: i64) -> bool {
        let Ok(i) = self.inflight.binary_search_by_key(&offset, |e| e.0) else {
            return false;
        };
        if self.inflight[i].1 {
            return false;
        }
        self.inflight[i].1 = true;
        while self.inflight.front().is_some_and(|e| e.1) {
            self.inflight.pop_front();
        }
        true
    }
}

#[derive(Default)]
struct Lanes {
    next_lane: u32,
    by_partition: HashMap<(String, i32), u32>,
    lanes: HashMap<u32, Lane>,
}

impl Lanes {
    /// The commits due: (topic, partition, offset) past what was committed.
    fn due(&self, only: Option<&TopicPartitionList>) -> Vec<(u32, String, i32, i64)> {
        let wanted = |t: &str, p: i32| only.is_none_or(|l| l.find_partition(t, p).is_some());
        self.lanes
            .iter()
            .filter(|(_, l)| wanted(&l.topic, l.partition))
            .filter_map(|(&id, l)| {
                let pos = l.durable_position()?;
                (pos > l.committed).then(|| (id, l.topic.clone(), l.partition, pos))
            })
            .collect()
    }
}

/// The consumer's context: rebalance callbacks, statistics, errors. Runs
/// on the thread that polls the consumer.
pub struct SourceContext {
    lanes: Mutex<Lanes>,
    brokers_up: AtomicBool,
    prefix: String,
    /// Set by a rebalance (a non-empty assignment or a revocation), taken
    /// by the exclusive-group check.
    assigned: AtomicBool,
    /// What the rest of the node learns from the statistics
    /// ([`KafkaSource::with_signals`]).
    signals: std::sync::OnceLock<Arc<SourceSignals>>,
}

/// What the Kafka source tells the rest of the node about where it is,
/// from librdkafka's statistics (every second).
#[derive(Debug, Default)]
pub struct SourceSignals {
    /// When a broker first answered.
    pub brokers_up_at: std::sync::OnceLock<std::time::Instant>,
    /// Set once every notice partition the node is assigned is committed
    /// to its end (or is empty and was never committed): every record in
    /// them was answered, by this node or an earlier life of it (offsets
    /// are committed only over answered records). Never cleared.
    pub caught_up: AtomicBool,
}

fn commit(
    consumer: &BaseConsumer<SourceContext>,
    lanes: &mut Lanes,
    due: Vec<(u32, String, i32, i64)>,
    mode: CommitMode,
) -> KafkaResult<usize> {
    if due.is_empty() {
        return Ok(0);
    }
    let mut tpl = TopicPartitionList::new();
    for (_, topic, partition, offset) in &due {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    let result = consumer.commit(&tpl, mode);
    KafkaCommitted {
        partitions: due.len(),
        error: result.as_ref().err().map(|e| e as &dyn std::error::Error),
    }
    .emit();
    result?;
    for (id, _, _, offset) in &due {
        if let Some(l) = lanes.lanes.get_mut(id) {
            l.committed = l.committed.max(*offset);
        }
    }
    Ok(due.len())
}

/// librdkafka's own log lines, into the engine's log.
pub(crate) fn rdkafka_log(level: RDKafkaLogLevel, fac: &str, message: &str) {
    use RDKafkaLogLevel as L;
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => {
            tracing::error!(target: "librdkafka", fac, "{message}")
        }
        L::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
        L::Notice | L::Info => tracing::info!(target: "librdkafka", fac, "{message}"),
        L::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
    }
}

impl ClientContext for SourceContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        rdkafka_log(level, fac, message);
    }

    fn stats(&self, stats: Statistics) {
        let up = stats
            .brokers
            .values()
            .any(|b| b.nodeid >= 0 && b.state == "UP");
        if self.brokers_up.swap(up, Ordering::SeqCst) != up {
            KafkaBrokers { up }.emit();
        }
        // In the same walk: whether every assigned partition is committed
        // to its end. Lag is the partition's end less its committed offset
        // (-1 while either is unknown, as for a partition never committed:
        // caught up when it is empty).
        let mut lag: HashMap<String, i64> = HashMap::new();
        let mut backlog = [0i64; 3];
        let (mut assigned, mut caught_up) = (false, true);
        for (topic, t) in &stats.topics {
            let Some((agency, priority)) = topic_lane(&self.prefix, topic) else {
                continue;
            };
            let label = agency_label(agency.as_ref());
            let sum = lag.entry(label).or_default();
            for p in t.partitions.values().filter(|p| p.partition >= 0) {
                *sum += p.consumer_lag.max(0);
                backlog[priority as usize] += p.consumer_lag.max(0);
                if p.desired {
                    assigned = true;
                    caught_up &= p.consumer_lag == 0
                        || (p.committed_offset < 0
                            && p.hi_offset >= 0
                            && p.hi_offset == p.lo_offset);
                }
            }
        }
        KafkaLag(lag.into_iter().collect()).emit();
        KafkaBacklog(backlog).emit();
        if let Some(signals) = self.signals.get() {
            if up {
                signals.brokers_up_at.get_or_init(std::time::Instant::now);
            }
            if assigned && caught_up {
                signals.caught_up.store(true, Ordering::Release);
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown)
            && self.brokers_up.swap(false, Ordering::SeqCst)
        {
            KafkaBrokers { up: false }.emit();
        }
        KafkaClientError {
            kind: "client",
            error: &format_args!("{error} ({reason})"),
            partition: None,
            log: true,
        }
        .emit();
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            if let Rebalance::Error(e) = rebalance {
                KafkaClientError {
                    kind: "rebalance",
                    error: e,
                    partition: None,
                    log: true,
                }
                .emit();
            }
            return;
        };
        // The group changed: an exclusive group is checked again.
        self.assigned.store(true, Ordering::SeqCst);
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        // A lost assignment (session timed out) may already belong to
        // someone else: committing would overwrite their progress.
        let lost = consumer.assignment_lost();
        let committed = if lost {
            "skipped: assignment lost".to_owned()
        } else {
            let due = lanes.due(Some(revoked));
            match commit(consumer, &mut lanes, due, CommitMode::Sync) {
                Ok(n) => format!("{n} partition(s)"),
                Err(e) => format!("failed: {e}"),
            }
        };
        for e in revoked.elements() {
            if let Some(id) = lanes
                .by_partition
                .remove(&(e.topic().to_owned(), e.partition()))
            {
                lanes.lanes.remove(&id);
            }
        }
        let assigned = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        KafkaRebalance {
            kind: if lost { "lost" } else { "revoke" },
            partitions: revoked.count(),
            owned: assigned.saturating_sub(revoked.count()),
            committed: Some(&committed),
        }
        .emit();
        KafkaPaused {
            paused: lanes.lanes.values().filter(|l| l.paused).count(),
        }
        .emit();
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            if assigned.count() > 0 {
                self.assigned.store(true, Ordering::SeqCst);
            }
            let owned = consumer.assignment().map(|a| a.count()).unwrap_or(0);
            KafkaRebalance {
                kind: "assign",
                partitions: assigned.count(),
                owned,
                committed: None,
            }
            .emit();
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            KafkaCommitted {
                partitions: offsets.count(),
                error: Some(&e),
            }
            .emit();
        }
    }
}

/// The Kafka source.
pub struct KafkaSource {
    /// The urgent and bulk partitions read apart (before `consumer`: a
    /// partition queue must go before its consumer).
    queues: Vec<SplitQueue>,
    consumer: Arc<BaseConsumer<SourceContext>>,
    agencies: AgencyRegistry,
    /// Where a record over its agency's daily quota is looked up by its
    /// reference: one stored already (a record read again after a crash
    /// or a rebalance, an exact re-send) is not refused, so it gets the
    /// answer it had.
    known: Option<Arc<dyn crate::store::Store>>,
    health: Health,
    max_in_flight: usize,
    payload_limit: usize,
    commit_interval: Duration,
    last_commit: Instant,
    describe: String,
    last_error_log: Option<Instant>,
    /// The lane of the last record: records come in runs per partition,
    /// so this spares a map lookup (and a key allocation) per record.
    last_lane: Option<(String, i32, u32)>,
    /// Some lane may be deferred ([`Self::defer`]): only then does a poll
    /// look through the lanes for one whose day has turned.
    any_deferred: bool,
    /// Deferred lanes per agency, as last reported.
    deferred_reported: BTreeMap<AgencyId, usize>,
    group: String,
    prefix: String,
    /// One member per group (the embedded store).
    exclusive: bool,
    /// This node has owned every notice partition since it started.
    had_everything: bool,
    /// Since when a newcomer has seen a whole notice topic not its own.
    unowned_since: std::cell::Cell<Option<Instant>>,
}

/// A partition read from its own queue. Kept for the consumer's life,
/// across revocations: librdkafka never forwards a split partition's
/// records to the shared queue again, not even when the partition is
/// assigned anew, so its records come here from then on, for whichever
/// lane it is then.
struct SplitQueue {
    topic: String,
    partition: i32,
    priority: Priority,
    queue: Arc<PartitionQueue<SourceContext>>,
}

/// While urgent or bulk partitions have their own queues, a wait on the
/// others is cut into slices this long, so that what comes into theirs is
/// seen within one.
const SPLIT_SLICE: Duration = Duration::from_millis(2);

/// What [`KafkaSource::poll`] has gathered so far.
struct Gathered {
    out: Vec<Record>,
    bytes: usize,
    max: usize,
    max_bytes: usize,
    to_pause: Vec<(String, i32)>,
    /// Lanes that gave their first record from the shared queue and are to
    /// be read apart from now on.
    to_split: Vec<(u32, String, i32, Priority, i64)>,
}

impl Gathered {
    fn new(max: usize, max_bytes: usize) -> Self {
        Gathered {
            out: Vec::with_capacity(max.min(4096)),
            bytes: 0,
            max,
            max_bytes,
            to_pause: Vec::new(),
            to_split: Vec::new(),
        }
    }

    fn full(&self) -> bool {
        self.out.len() >= self.max || (!self.out.is_empty() && self.bytes >= self.max_bytes)
    }
}

/// How long a newcomer waits for its subscription to catch up with a
/// notice topic it owns nothing of, before it counts it as another
/// member's (a little over the subscription's metadata refresh).
const UNOWNED_TOPIC_GRACE: Duration = Duration::from_secs(15);

/// What an exclusive group's check found.
enum GroupCheck {
    /// No metadata yet.
    Unknown,
    /// This node owns every notice partition.
    Alone,
    /// Someone else owns some.
    Shared { owned: usize, total: usize },
}

/// What an exclusive group's check means for this node: `Ok(true)` go on,
/// `Ok(false)` not decided yet (read nothing), `Err` stop. The member that
/// owned every partition first goes on; a newcomer sharing the group stops.
fn judge(check: GroupCheck, had_everything: &mut bool, group: &str) -> Result<bool, SourceError> {
    match check {
        GroupCheck::Alone => {
            *had_everything = true;
            Ok(true)
        }
        GroupCheck::Shared { .. } if *had_everything => Ok(true),
        GroupCheck::Shared { owned, total } => Err(SourceError::Refused(format!(
            "another member shares Kafka consumer group {group:?}: this node was given {owned} of the {total} notice partitions. \
             With the embedded store every node keeps its own store, so records passed between members would be stored twice, \
             with two tracking codes and two sets of notifications. Run one node per group on the embedded store, \
             or a fleet on the shared store (store.backend = \"scylla\"). Nothing was read."
        ))),
        GroupCheck::Unknown => Ok(false),
    }
}

/// The agency (if its part of the name is a valid ID) and the lane of a
/// topic under `prefix`; `None` for a topic not under it.
fn topic_lane(prefix: &str, topic: &str) -> Option<(Option<AgencyId>, Priority)> {
    let (agency, priority) = Priority::split_topic_tail(topic.strip_prefix(prefix)?);
    Some((AgencyId::parse(agency).ok(), priority))
}

/// Whether `topic` is a notice topic under `prefix` (what
/// [`notice_pattern`] subscribes to).
fn is_notice_topic(prefix: &str, topic: &str) -> bool {
    topic.strip_prefix(prefix).is_some_and(|tail| {
        let b = Priority::split_topic_tail(tail).0.as_bytes();
        (2..=32).contains(&b.len())
            && b[0].is_ascii_lowercase()
            && b[1..]
                .iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    })
}

/// The subscription regex for notice topics: the prefix, a valid agency
/// ID and the lane's suffix (none, `.urgent`, `.bulk`), so a topic that
/// does not name an agency is never read.
pub fn notice_pattern(prefix: &str) -> String {
    let mut escaped = String::new();
    for c in prefix.chars() {
        if !c.is_ascii_alphanumeric() {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    format!("^{escaped}[a-z][a-z0-9-]{{1,31}}(\\.urgent|\\.bulk)?$")
}

impl KafkaSource {
    /// Connects and subscribes; it does not wait for the brokers (while
    /// none answers, `/health/ready` says so and the source stays idle).
    pub fn new(
        cfg: &KafkaConfig,
        client: ClientConfig,
        agencies: AgencyRegistry,
        health: Health,
        payload_limit: usize,
    ) -> Result<Self, KafkaError> {
        let mut client = client;
        client
            .set("group.id", &cfg.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        for (k, v) in [
            ("auto.offset.reset", "earliest"),
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("statistics.interval.ms", "1000"),
            // Bounded prefetch: the memory a backlog of millions may take
            // on this side of the pipeline.
            ("queued.max.messages.kbytes", "65536"),
            // A trickle of notices gets its receipts in tens of milliseconds,
            // not after a broker's full fetch wait (500 ms by default).
            ("fetch.wait.max.ms", "100"),
            // New agencies' topics are picked up within seconds.
            ("topic.metadata.refresh.interval.ms", "10000"),
            // A node restarted after a crash waits for its dead self's
            // session to lapse before it is given its partitions back:
            // 10 s, not librdkafka's 45 s. Heartbeats come from librdkafka's
            // own thread, so a busy pipeline does not miss them (a stalled
            // one is bounded by `max.poll.interval.ms` instead).
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "1000"),
        ] {
            set_default(&mut client, k, v);
        }
        let ctx = SourceContext {
            lanes: Mutex::new(Lanes::default()),
            brokers_up: AtomicBool::new(false),
            prefix: cfg.notice_topic_prefix.clone(),
            assigned: AtomicBool::new(false),
            signals: std::sync::OnceLock::new(),
        };
        let consumer: Arc<BaseConsumer<SourceContext>> = Arc::new(client.create_with_context(ctx)?);
        let pattern = notice_pattern(&cfg.notice_topic_prefix);
        consumer.subscribe(&[&pattern])?;
        KafkaStarted {
            brokers: &cfg.brokers,
            group: &cfg.group_id,
            pattern: &pattern,
        }
        .emit();
        KafkaClientError::register();
        BulkDeferredLanes::started(&agencies.ids());
        Ok(KafkaSource {
            queues: Vec::new(),
            consumer,
            agencies,
            known: None,
            health,
            max_in_flight: cfg.max_in_flight_per_partition,
            payload_limit,
            commit_interval: cfg.commit_interval.0,
            last_commit: Instant::now(),
            describe: format!(
                "kafka group {} topics {} on {}",
                cfg.group_id, pattern, cfg.brokers
            ),
            last_error_log: None,
            last_lane: None,
            any_deferred: false,
            deferred_reported: BTreeMap::new(),
            group: cfg.group_id.clone(),
            prefix: cfg.notice_topic_prefix.clone(),
            exclusive: false,
            had_everything: false,
            unowned_since: std::cell::Cell::new(None),
        })
    }

    /// Reports to `signals` when a broker first answers and when the
    /// node's partitions are committed to their end: a restarted node's
    /// `AcceptedOut` holds events for notices that may be unanswered from
    /// the first, and stops at the second.
    pub fn with_signals(self, signals: Arc<SourceSignals>) -> Self {
        let _ = self.consumer.context().signals.set(signals);
        self
    }

    /// Looks a record over its agency's daily quota up in `store` by its
    /// reference: a stored one is not refused `quota_exceeded`.
    pub fn with_known_references(mut self, store: Arc<dyn crate::store::Store>) -> Self {
        self.known = Some(store);
        self
    }

    /// Whether `payload`'s reference of `agency` is stored already. An
    /// envelope that does not parse, or a store that does not answer, is
    /// not (the quota's refusal stands; the record is rejected anyway).
    fn stored_already(&self, agency: &AgencyId, payload: &[u8]) -> bool {
        #[derive(serde::Deserialize)]
        struct Reference {
            reference: Option<String>,
        }
        // An oversized record is rejected for its size whatever its
        // reference: it is not parsed.
        let Some(store) = self
            .known
            .as_ref()
            .filter(|_| payload.len() <= self.payload_limit)
        else {
            return false;
        };
        let Ok(Reference { reference: Some(r) }) = serde_json::from_slice(payload) else {
            return false;
        };
        matches!(store.reference(agency, &r), Ok(Some(_)))
    }

    /// Requires this node to be the group's only member (the embedded
    /// store): see the module's guarantees.
    pub fn exclusive_group(mut self) -> Self {
        self.exclusive = true;
        self
    }

    /// After an assignment, with an exclusive group: how much of the
    /// notice partitions this node owns.
    fn group_check(&self) -> GroupCheck {
        let md = match self.consumer.fetch_metadata(None, Duration::from_secs(5)) {
            Ok(md) => md,
            Err(e) => {
                KafkaClientError {
                    kind: "metadata",
                    error: &e,
                    partition: None,
                    log: true,
                }
                .emit();
                return GroupCheck::Unknown;
            }
        };
        let assignment = self.consumer.assignment().unwrap_or_default();
        let mut owned_of: HashMap<String, usize> = HashMap::new();
        for e in assignment.elements() {
            *owned_of.entry(e.topic().to_owned()).or_default() += 1;
        }
        let (mut total, mut part_owned, mut unowned) = (0, false, false);
        for t in md
            .topics()
            .iter()
            .filter(|t| is_notice_topic(&self.prefix, t.name()))
        {
            let n = t.partitions().len();
            total += n;
            match owned_of.get(t.name()).copied().unwrap_or(0) {
                0 if n > 0 => unowned = true,
                o if o < n => part_owned = true,
                _ => {}
            }
        }
        let owned = assignment.count();
        if !part_owned && unowned && !self.had_everything {
            // A whole topic not ours: held by another member, or created
            // after this consumer last refreshed its subscription. Wait for
            // a refresh (topic.metadata.refresh.interval.ms) before judging.
            let since = self.unowned_since.get().unwrap_or_else(Instant::now);
            self.unowned_since.set(Some(since));
            if since.elapsed() < UNOWNED_TOPIC_GRACE {
                return GroupCheck::Unknown;
            }
        }
        self.unowned_since.set(None);
        KafkaGroupShared {
            group: &self.group,
            owned,
            total,
            newcomer: !self.had_everything,
        }
        .emit();
        if part_owned || unowned {
            GroupCheck::Shared { owned, total }
        } else {
            GroupCheck::Alone
        }
    }

    /// Reads the queues of `priority`'s lanes, without waiting.
    fn drain_split(&mut self, priority: Priority, g: &mut Gathered) {
        // By index: `take` needs `self`, so each queue is held by a clone of
        // its handle (split queues are only added in `finish_poll`).
        for i in 0..self.queues.len() {
            if self.queues[i].priority != priority {
                continue;
            }
            let q = self.queues[i].queue.clone();
            while !g.full() {
                match q.poll(Duration::ZERO) {
                    None => break,
                    Some(Ok(msg)) => self.take(&msg, g),
                    Some(Err(e)) => {
                        self.consume_error(&e);
                        break;
                    }
                }
            }
        }
    }

    /// Reads the consumer's shared queue (waiting up to `timeout` for the
    /// first record) until `g` is full or the queue is empty. False when
    /// the poll must end here (an exclusive group's check is undecided).
    fn drain_shared(
        &mut self,
        mut timeout: Duration,
        g: &mut Gathered,
    ) -> Result<bool, SourceError> {
        let consumer = self.consumer.clone();
        // At least once, even when urgent records filled `g`: polling the
        // shared queue is what serves rebalances and commit callbacks (one
        // record over `max` at most).
        let mut once = true;
        while once || !g.full() {
            once = false;
            let msg = match consumer.poll(timeout) {
                None => break,
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    self.consume_error(&e);
                    break;
                }
            };
            timeout = Duration::ZERO;
            if self.exclusive
                && consumer.context().assigned.swap(false, Ordering::SeqCst)
                && !judge(self.group_check(), &mut self.had_everything, &self.group)?
            {
                // Not decided: this record waits, and the check runs
                // again at the next poll.
                consumer.context().assigned.store(true, Ordering::SeqCst);
                let (partition, offset) = (msg.partition(), msg.offset());
                let topic = msg.topic().to_owned();
                drop(msg);
                let _ = consumer.seek(
                    &topic,
                    partition,
                    Offset::Offset(offset),
                    Duration::from_secs(5),
                );
                return Ok(false);
            }
            self.take(&msg, g);
        }
        Ok(true)
    }

    fn consume_error(&mut self, e: &KafkaError) {
        let log = self
            .last_error_log
            .is_none_or(|t| t.elapsed() > Duration::from_secs(10));
        KafkaClientError {
            kind: "consume",
            error: e,
            partition: None,
            log,
        }
        .emit();
        if log {
            self.last_error_log = Some(Instant::now());
        }
    }

    /// Hands out one fetched record (or skips it: fetched again after a
    /// pause or a split, already handed out).
    fn take(&mut self, msg: &BorrowedMessage<'_>, g: &mut Gathered) {
        let ctx = self.consumer.context();
        if !ctx.brokers_up.swap(true, Ordering::SeqCst) {
            KafkaBrokers { up: true }.emit();
        }
        let (topic, partition, offset) = (msg.topic(), msg.partition(), msg.offset());
        let mut lanes = ctx.lanes.lock().unwrap_or_else(|p| p.into_inner());
        let cached = self
            .last_lane
            .as_ref()
            .filter(|(t, p, id)| *p == partition && t == topic && lanes.lanes.contains_key(id))
            .map(|c| c.2);
        let id = match cached.or_else(|| {
            lanes
                .by_partition
                .get(&(topic.to_owned(), partition))
                .copied()
        }) {
            Some(id) => id,
            None => {
                let id = lanes.next_lane;
                lanes.next_lane = lanes.next_lane.wrapping_add(1);
                let (agency, priority) =
                    topic_lane(&ctx.prefix, topic).unwrap_or((None, Priority::Normal));
                lanes.by_partition.insert((topic.to_owned(), partition), id);
                lanes.lanes.insert(
                    id,
                    Lane {
                        topic: topic.to_owned(),
                        partition,
                        agency,
                        inflight: VecDeque::new(),
                        next: -1,
                        committed: -1,
                        paused: false,
                        priority,
                        split: false,
                        deferred_until: None,
                    },
                );
                id
            }
        };
        if cached.is_none() {
            self.last_lane = Some((topic.to_owned(), partition, id));
        }
        let lane = lanes.lanes.get_mut(&id).expect("lane just found");
        if offset < lane.next {
            return; // fetched again after a pause or a split: already handed out
        }
        if lane.deferred_until.is_some() {
            return; // read again from its deferred record when the day turns
        }
        lane.next = offset + 1;
        lane.inflight.push_back((offset, false));
        if self.max_in_flight > 0 && !lane.paused && lane.inflight.len() >= self.max_in_flight {
            lane.paused = true;
            g.to_pause.push((lane.topic.clone(), partition));
        }
        if lane.priority != Priority::Normal && !lane.split {
            lane.split = true;
            // Split in an earlier assignment: its records come by its own
            // queue already.
            let known = self
                .queues
                .iter()
                .any(|q| q.partition == partition && q.topic == topic);
            if !known {
                g.to_split
                    .push((id, lane.topic.clone(), partition, lane.priority, lane.next));
            }
        }
        let (agency, priority) = (lane.agency.clone(), lane.priority);
        drop(lanes);
        let refused = match &agency {
            // Urgent notices are not counted against the day's quota: a
            // campaign that spent it must not hold back a court's summons.
            Some(a) if priority == Priority::Urgent => self.agencies.refusal(a),
            Some(a) => match self.agencies.admit(a, chrono::Utc::now()) {
                Some(p)
                    if p.reason == Reason::QuotaExceeded
                        && self.stored_already(a, msg.payload().unwrap_or_default()) =>
                {
                    None
                }
                other => other,
            },
            None => Some(Problem::new(
                Reason::AgencyUnknown,
                "agency".to_owned(),
                "the topic does not name an agency".to_owned(),
            )),
        };
        if let (Some(p), Some(a)) = (&refused, &agency) {
            if p.reason == Reason::QuotaExceeded
                && priority == Priority::Bulk
                && self.agencies.over_quota(a) == crate::agencies::OverQuota::Defer
            {
                self.defer(id, offset, a, g);
                return;
            }
        }
        let payload = msg.payload().unwrap_or_default();
        let oversize = (payload.len() > self.payload_limit).then_some(payload.len() as u64);
        let kept = payload.len().min(self.payload_limit);
        g.bytes += kept;
        g.out.push(Record {
            payload: payload[..kept].to_vec(),
            oversize,
            position: SourcePosition::Kafka {
                topic: topic.to_owned(),
                partition,
                offset,
            },
            agency,
            refused,
            token: AckToken {
                lane: id,
                seq: offset as u64,
                bytes: kept as u32,
            },
            received: Instant::now(),
            priority,
        });
    }

    /// Leaves a bulk lane's record at `offset`, over its agency's quota,
    /// unread: the lane goes back to it and is paused until the next
    /// Tehran midnight ([`Self::resume_deferred`]). Nothing is lost: the
    /// group's position stays at or before it.
    fn defer(&mut self, id: u32, offset: i64, agency: &AgencyId, g: &mut Gathered) {
        let ctx = self.consumer.context();
        let mut lanes = ctx.lanes.lock().unwrap_or_else(|p| p.into_inner());
        let Some(lane) = lanes.lanes.get_mut(&id) else {
            return;
        };
        if lane.inflight.back().is_some_and(|e| e.0 == offset) {
            lane.inflight.pop_back();
        }
        lane.next = offset;
        self.any_deferred = true;
        let wait = crate::agencies::until_tehran_midnight(chrono::Utc::now());
        lane.deferred_until = Some(Instant::now() + wait);
        if !lane.paused {
            lane.paused = true;
            g.to_pause.push((lane.topic.clone(), lane.partition));
        }
        BulkDeferred {
            agency,
            partition: lane.partition,
            wait,
        }
        .emit();
        report_deferred(&lanes.lanes, &mut self.deferred_reported);
    }

    /// Resumes deferred bulk lanes whose day has turned, at their first
    /// unread record.
    fn resume_deferred(&mut self) {
        if !self.any_deferred {
            return;
        }
        let now = Instant::now();
        let mut due = Vec::new();
        {
            let ctx = self.consumer.context();
            let mut lanes = ctx.lanes.lock().unwrap_or_else(|p| p.into_inner());
            for lane in lanes.lanes.values_mut() {
                if lane.deferred_until.is_some_and(|t| t <= now) {
                    lane.deferred_until = None;
                    lane.paused = false;
                    due.push((lane.topic.clone(), lane.partition, lane.next));
                }
            }
            // A lane revoked by a rebalance takes its mark with it.
            self.any_deferred = lanes.lanes.values().any(|l| l.deferred_until.is_some());
            report_deferred(&lanes.lanes, &mut self.deferred_reported);
        }
        for (topic, partition, next) in due {
            self.resume_at(&topic, partition, next);
        }
    }

    /// Resumes a paused partition at `next`, its first record not handed
    /// out. librdkafka drops what it had prefetched for a paused partition
    /// and resumes at the first record it has not delivered, which is this
    /// one (scripts/repro-pause-resume.py); the seek makes that explicit,
    /// whatever a client version does.
    fn resume_at(&self, topic: &str, partition: i32, next: i64) {
        // A failure is reported; librdkafka resumes there anyway (above).
        let _ = self.seek(topic, partition, next);
        self.set_paused(topic, partition, false);
    }

    /// Sets the partition's next record to `next`; a failure is reported
    /// as a client error, and returned.
    fn seek(&self, topic: &str, partition: i32, next: i64) -> Result<(), KafkaError> {
        self.consumer
            .seek(
                topic,
                partition,
                Offset::Offset(next),
                Duration::from_secs(5),
            )
            .inspect_err(|e| {
                KafkaClientError {
                    kind: "seek",
                    error: e,
                    partition: Some((topic, partition)),
                    log: true,
                }
                .emit()
            })
    }

    /// Pauses what [`Self::take`] found over its bound, and gives the lanes
    /// that are to be read apart their own queues.
    fn finish_poll(&mut self, g: &mut Gathered) -> Result<(), SourceError> {
        for (lane, topic, partition, priority, next) in std::mem::take(&mut g.to_split) {
            // A rebalance while this poll read the shared queue may have
            // taken the partition away: its next owner reads it.
            if self.lane_is_assigned(lane) {
                self.split(lane, &topic, partition, priority, next)?;
            }
        }
        if !g.to_pause.is_empty() {
            for (topic, partition) in &g.to_pause {
                self.set_paused(topic, *partition, true);
            }
            let lanes = self
                .consumer
                .context()
                .lanes
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            KafkaPaused {
                paused: lanes.lanes.values().filter(|l| l.paused).count(),
            }
            .emit();
        }
        Ok(())
    }

    /// From now on `lane` is read from its own queue. What the shared queue
    /// already holds of it is dropped by librdkafka once the seek to
    /// `next` (the first record not handed out) has made it outdated, and
    /// is fetched again into the new queue: nothing is handed out twice
    /// or skipped. A seek that keeps failing would leave that in doubt, so
    /// the node stops then (nothing is lost: offsets are committed only
    /// over what was handed out and durable).
    fn split(
        &mut self,
        lane: u32,
        topic: &str,
        partition: i32,
        priority: Priority,
        next: i64,
    ) -> Result<(), SourceError> {
        let Some(queue) = self.consumer.split_partition_queue(topic, partition) else {
            // Not a partition librdkafka knows: it stays in the shared queue.
            let lanes = &self.consumer.context().lanes;
            if let Some(l) = lanes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .lanes
                .get_mut(&lane)
            {
                l.split = false;
            }
            return Ok(());
        };
        let mut last = None;
        for attempt in 0..3 {
            match self.seek(topic, partition, next) {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) => {
                    last = Some(e);
                    std::thread::sleep(Duration::from_millis(100 << attempt));
                }
            }
        }
        // From here its records come only by this queue, whatever the seek
        // did: kept.
        self.queues.push(SplitQueue {
            topic: topic.to_owned(),
            partition,
            priority,
            queue: Arc::new(queue),
        });
        if let Some(e) = last {
            if !self.lane_is_assigned(lane) {
                // Revoked meanwhile: fetching resumes from the committed
                // offset, into the queue, when it is assigned again.
                return Ok(());
            }
            return Err(SourceError::Refused(format!(
                "cannot read {topic} [{partition}] from its own queue: the seek to offset {next} failed ({e}); \
                 stopping so that no record of it is skipped (they are read again after the restart)"
            )));
        }
        Ok(())
    }

    fn lane_is_assigned(&self, lane: u32) -> bool {
        self.consumer
            .context()
            .lanes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lanes
            .contains_key(&lane)
    }

    fn update_health(&self) {
        let up = self.consumer.context().brokers_up.load(Ordering::SeqCst);
        let (ready, why) = self.health.ready();
        if !up && ready {
            self.health.set(false, NOT_READY_BROKERS);
        } else if up && !ready && why == NOT_READY_BROKERS {
            self.health.set(true, "running");
        }
    }

    fn commit_due(&mut self, mode: CommitMode) {
        let ctx = self.consumer.context();
        let mut lanes = ctx.lanes.lock().unwrap_or_else(|p| p.into_inner());
        let due = lanes.due(None);
        // Errors are reported by the event; the next commit covers them.
        let _ = commit(&self.consumer, &mut lanes, due, mode);
        self.last_commit = Instant::now();
    }

    fn set_paused(&self, topic: &str, partition: i32, pause: bool) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let r = if pause {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        if let Err(e) = r {
            KafkaClientError {
                kind: "pause_resume",
                error: &e,
                partition: Some((topic, partition)),
                log: true,
            }
            .emit();
        }
    }
}

impl Source for KafkaSource {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn poll(&mut self, max: usize, max_bytes: usize, wait: Duration) -> Result<Poll, SourceError> {
        self.agencies.maybe_reload();
        self.resume_deferred();
        self.update_health();
        if self.last_commit.elapsed() >= self.commit_interval {
            self.commit_due(CommitMode::Async);
        }
        // A rebalance since the last poll is judged before anything is
        // read (and again at the first record, if one comes with it).
        if self.exclusive
            && self
                .consumer
                .context()
                .assigned
                .swap(false, Ordering::SeqCst)
            && !judge(self.group_check(), &mut self.had_everything, &self.group)?
        {
            self.consumer
                .context()
                .assigned
                .store(true, Ordering::SeqCst);
        }
        let mut g = Gathered::new(max, max_bytes);
        let deadline = Instant::now() + wait;
        loop {
            // Urgent first, then the shared queue (normal lanes, and the
            // first records of the others), then bulk.
            self.drain_split(Priority::Urgent, &mut g);
            let split = !self.queues.is_empty();
            let remaining = deadline.saturating_duration_since(Instant::now());
            let timeout = match (g.out.is_empty(), split) {
                (false, _) => Duration::ZERO,
                (true, false) => remaining,
                (true, true) => remaining.min(SPLIT_SLICE),
            };
            if !self.drain_shared(timeout, &mut g)? {
                break;
            }
            self.drain_split(Priority::Bulk, &mut g);
            if !g.out.is_empty() || Instant::now() >= deadline {
                break;
            }
        }
        self.finish_poll(&mut g)?;
        if g.out.is_empty() {
            return Ok(Poll::Idle);
        }
        Ok(Poll::Records(g.out))
    }

    fn poll_urgent(&mut self, max: usize, max_bytes: usize) -> Result<Vec<Record>, SourceError> {
        let mut g = Gathered::new(max, max_bytes);
        self.drain_split(Priority::Urgent, &mut g);
        self.finish_poll(&mut g)?;
        Ok(g.out)
    }

    fn ack(&mut self, tokens: &[AckToken]) -> Result<(), SourceError> {
        let mut to_resume = Vec::new();
        {
            let ctx = self.consumer.context();
            let mut lanes = ctx.lanes.lock().unwrap_or_else(|p| p.into_inner());
            for t in tokens {
                // Acks of a revoked assignment find no lane: ignored.
                if let Some(lane) = lanes.lanes.get_mut(&t.lane) {
                    lane.ack(t.seq as i64);
                }
            }
            for lane in lanes.lanes.values_mut() {
                // A deferred lane waits for its day ([`Self::resume_deferred`]).
                if lane.paused
                    && lane.deferred_until.is_none()
                    && lane.inflight.len() <= self.max_in_flight / 2
                {
                    lane.paused = false;
                    to_resume.push((lane.topic.clone(), lane.partition, lane.next));
                }
            }
            if !to_resume.is_empty() {
                KafkaPaused {
                    paused: lanes.lanes.values().filter(|l| l.paused).count(),
                }
                .emit();
            }
        }
        for (topic, partition, next) in &to_resume {
            self.resume_at(topic, *partition, *next);
        }
        if self.last_commit.elapsed() >= self.commit_interval {
            self.commit_due(CommitMode::Async);
        }
        Ok(())
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        // Everything the pipeline handed back is durable: commit it before
        // leaving the group (closing the consumer then revokes, and the
        // revoke commits anything left).
        self.commit_due(CommitMode::Sync);
        KafkaClosing.emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_topics_are_the_prefix_and_an_agency_id() {
        let p = "karpoosheh.notices.";
        assert!(is_notice_topic(p, "karpoosheh.notices.tax"));
        assert!(is_notice_topic(p, "karpoosheh.notices.social-security"));
        assert!(!is_notice_topic(p, "karpoosheh.notices.t"), "too short");
        assert!(!is_notice_topic(p, "karpoosheh.notices.Tax"));
        assert!(!is_notice_topic(p, "karpoosheh.notices.1tax"));
        assert!(!is_notice_topic(p, "karpoosheh.receipts.tax"));
        assert!(!is_notice_topic(p, &format!("{p}{}", "a".repeat(33))));
        assert!(is_notice_topic(p, &format!("{p}{}", "a".repeat(32))));
        // The lanes' topics.
        assert!(is_notice_topic(p, "karpoosheh.notices.tax.urgent"));
        assert!(is_notice_topic(p, "karpoosheh.notices.tax.bulk"));
        assert!(!is_notice_topic(p, "karpoosheh.notices.tax.later"));
        assert!(
            !is_notice_topic(p, "karpoosheh.notices.t.urgent"),
            "too short"
        );
    }

    #[test]
    fn durable_position_never_passes_a_pending_offset_and_skips_gaps() {
        let mut l = Lane {
            topic: "t".into(),
            partition: 0,
            agency: None,
            inflight: VecDeque::new(),
            next: -1,
            committed: -1,
            paused: false,
            priority: Priority::Normal,
            split: false,
            deferred_until: None,
        };
        assert_eq!(l.durable_position(), None, "nothing read yet");
        for o in [5, 6, 9, 10] {
            // 7 and 8 are a gap (e.g. transaction markers)
            l.inflight.push_back((o, false));
            l.next = o + 1;
        }
        assert!(l.ack(6));
        assert_eq!(l.durable_position(), Some(5), "5 still pending");
        assert!(l.ack(5));
        assert_eq!(l.durable_position(), Some(9), "over the gap");
        assert!(!l.ack(7), "never handed out");
        assert!(l.ack(10));
        assert!(!l.ack(10), "repeat");
        assert!(l.ack(9));
        assert_eq!(l.durable_position(), Some(11), "all done: next offset");
    }

    #[test]
    fn pattern_matches_agency_topics_only() {
        let p = notice_pattern("karpoosheh.notices.");
        assert_eq!(
            p,
            "^karpoosheh\\.notices\\.[a-z][a-z0-9-]{1,31}(\\.urgent|\\.bulk)?$"
        );
    }
}
