//! The ingest pipeline of one engine node:
//!
//! ```text
//! source ─chunks─► decode + validate (rayon) ─► shard batcher ─batches─► committer ─► store (durable)
//!   ▲                                                                        │
//!   └──────────────────────────── acks ◄── sinks (receipts) ◄────────────────┘
//! ```
//!
//! Records are sharded by source lane (a Kafka partition — agencies key
//! by recipient, so a partition is a set of mailboxes — or a file) and
//! batched per shard by size and by time. Order within a lane is kept all
//! the way to the store, so idempotency decisions follow the source's order.
//!
//! Three threads joined by bounded channels, so memory is bounded by
//! `queue_depth × (decode_chunk + batch_max_notices)` records whatever the
//! backlog, and by `max_bytes_in_flight` of payload read and not yet
//! acknowledged whatever the records' sizes (the source stage stops
//! reading at the budget until acknowledgements give bytes back). The order is fixed: a record is acknowledged to its source only
//! after the store write holding it (or its rejection) returned durable and
//! every sink has seen it. A crash at any point therefore re-delivers
//! instead of losing, and re-deliveries are absorbed by the store's
//! idempotency on (agency, reference).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use crossbeam_channel::{
    bounded, never, unbounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender,
};
use karpoosheh_schemas::{
    decode_envelope, AgencyId, Envelope, Limits, Notice, Priority, Problem, Reason, Receipt,
    Rejection, SourcePosition, TrackingCode,
};
use rayon::prelude::*;

mod config;

pub use self::config::PipelineConfig;

use crate::evidence::chain;
use crate::evidence::log::LogError;
use crate::evidence::seal::Sealer;
use crate::health::Health;
use crate::internal_events::{
    agency_label, stage, BatchOutcomes, BytesInFlight, ChunkDecoded, IngestLatencies,
    PipelineStarted, QueueDepth, RecordsReceived, SourceFinished, StageTime, StoreSize,
    StoreWriteFailed, StoreWritten,
};
use crate::model::{dead_letter, position_id, Entry, NewNotice, NewRejection, Outcome};
use crate::sink::{Handled, HandledKind, Sink, SinkError};
use crate::source::{AckToken, Poll, Record, Source, SourceError};
use crate::store::{Store, StoreError, StoreStats};

/// The readiness reason once the source has ended by itself.
pub const SOURCE_FINISHED: &str = "source finished";

/// Why a pipeline run stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("the store kept failing and the engine is shutting down: {0}")]
    Store(String),
    /// A write failed and the store refuses every later one (fjall poisons
    /// itself after a failed journal write or flush).
    #[error(
        "the store refuses all further writes after a failed write ({0}); nothing in flight \
         was acknowledged: fix the cause (disk space, disk errors) and start the engine \
         again -- it recovers from its journal, and the sources re-deliver what was not \
         acknowledged"
    )]
    StoreFailed(String),
    #[error("a pipeline thread panicked: {0}")]
    Panicked(String),
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub records: u64,
    pub elapsed: Duration,
}

/// Everything a pipeline run needs. Built by [`Pipeline::new`] (a node
/// builds it from its whole configuration in `crate::node`); readiness and
/// the stop flag default to fresh ones.
pub struct Pipeline {
    config: PipelineConfig,
    limits: Limits,
    node_id: u16,
    store: Arc<dyn Store>,
    sinks: Vec<Box<dyn Sink>>,
    health: Health,
    /// Set to stop: the source stops reading, what was read is finished.
    shutdown: Arc<AtomicBool>,
    /// Signs the receipts (evidence::seal); none: they carry their chain
    /// links only.
    sealer: Option<Sealer>,
    /// The agency registry, for the agencies' queue each new notice is
    /// stored in (its `queue`); none: the hash of the agency's ID.
    agencies: Option<crate::agencies::AgencyRegistry>,
}

enum ItemBody {
    Notice {
        notice: Box<Notice>,
        hash: [u8; 32],
        /// A scheduled send (the envelope's `deliver_at`).
        deliver_at: Option<chrono::DateTime<Utc>>,
        /// The response deadline (the envelope's `respond_by`).
        respond_by: Option<chrono::DateTime<Utc>>,
    },
    Rejected(Rejection),
    Dead(Rejection, Vec<u8>, u64),
}

struct Item {
    token: AckToken,
    received: Instant,
    position: SourcePosition,
    /// The source's agency, if it speaks for one.
    source_agency: Option<AgencyId>,
    /// The lane it came in on; a stored notice keeps it for its rounds.
    priority: Priority,
    payload_bytes: usize,
    body: ItemBody,
}

enum ToDecode {
    Chunk(Vec<Record>),
    End,
}

/// What the ack stage needs of a record once it is durable.
struct Meta {
    token: AckToken,
    received: Instant,
    position: SourcePosition,
    payload_bytes: usize,
}

/// Entries ready to write, with their records' metadata, in source order.
#[derive(Default)]
struct Batch {
    entries: Vec<Entry>,
    meta: Vec<Meta>,
    /// The records' payload bytes as read.
    bytes: usize,
    /// When it was handed to the committer (the earliest, once merged).
    handed: Option<Instant>,
}

impl Batch {
    fn len(&self) -> usize {
        self.entries.len()
    }
    fn push(&mut self, entry: Entry, meta: Meta) {
        self.bytes += meta.token.bytes as usize;
        self.entries.push(entry);
        self.meta.push(meta);
    }
    fn append(&mut self, mut other: Batch) {
        self.entries.append(&mut other.entries);
        self.meta.append(&mut other.meta);
        self.bytes += other.bytes;
        self.handed = match (self.handed, other.handed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

enum ToCommit {
    Batch(Batch),
    End,
}

enum ToAck {
    Written {
        batch: Batch,
        outcomes: Vec<Outcome>,
        at: Instant,
    },
    End,
}

fn decode_record(r: Record, limits: &Limits, now: chrono::DateTime<Utc>) -> Item {
    let payload_bytes = r.oversize.map_or(r.payload.len(), |n| n as usize);
    let body = if let Some(size) = r.oversize {
        let rej = Rejection {
            agency: None,
            reference: None,
            problems: vec![Problem::new(
                Reason::PayloadTooLarge,
                None,
                format!(
                    "the message has {size} bytes; the limit is {}",
                    limits.max_payload_bytes
                ),
            )],
        };
        ItemBody::Dead(rej, r.payload, size)
    } else {
        match decode_envelope(&r.payload, limits, now) {
            // The source refuses the sender (art. 26): rejected whatever the
            // envelope says, with the sender's problem first.
            Ok(Envelope { notice, .. }) if r.refused.is_some() => {
                let mut problems: Vec<Problem> = r.refused.clone().into_iter().collect();
                if let Some(src) = r.agency.as_ref().filter(|a| **a != notice.agency) {
                    problems.push(mismatch(src, &notice.agency));
                }
                ItemBody::Rejected(Rejection {
                    agency: Some(notice.agency.to_string()),
                    reference: Some(notice.reference.clone()),
                    problems,
                })
            }
            Err(mut rej) if r.refused.is_some() && !rej.is_undecodable() => {
                rej.problems.insert(0, r.refused.clone().expect("checked"));
                ItemBody::Rejected(rej)
            }
            Ok(Envelope {
                notice,
                deliver_at,
                respond_by,
            }) => match &r.agency {
                Some(src) if *src != notice.agency => ItemBody::Rejected(Rejection {
                    agency: Some(notice.agency.to_string()),
                    reference: Some(notice.reference.clone()),
                    problems: vec![mismatch(src, &notice.agency)],
                }),
                _ => {
                    let hash = notice.content_hash();
                    ItemBody::Notice {
                        notice: Box::new(notice),
                        hash,
                        deliver_at,
                        respond_by,
                    }
                }
            },
            Err(rej) if rej.is_undecodable() => {
                let size = r.payload.len() as u64;
                ItemBody::Dead(rej, r.payload, size)
            }
            Err(rej) => ItemBody::Rejected(rej),
        }
    };
    Item {
        token: r.token,
        received: r.received,
        position: r.position,
        source_agency: r.agency,
        priority: r.priority,
        payload_bytes,
        body,
    }
}

fn mismatch(source: &AgencyId, named: &AgencyId) -> Problem {
    Problem::new(
        Reason::AgencyMismatch,
        "agency".to_owned(),
        format!(
            "the envelope names agency {:?} but arrived on {:?}'s channel",
            named.as_str(),
            source.as_str()
        ),
    )
}

/// Tracking codes for this node: time-ordered, never repeated, even when
/// the clock steps back or more than 4096 codes are issued in a millisecond
/// (the millisecond part then runs ahead of the clock for a moment).
pub struct TrackingCodes {
    node: u16,
    last: u64,
}

impl TrackingCodes {
    pub fn new(node: u16, last_issued: Option<TrackingCode>) -> Self {
        TrackingCodes {
            node,
            last: last_issued.map_or(0, |c| c.as_u64()),
        }
    }

    pub fn next(&mut self, now_ms: i64) -> TrackingCode {
        let candidate = TrackingCode::from_parts(now_ms, self.node, 0).as_u64();
        let next = if candidate > self.last {
            candidate
        } else {
            // Same or earlier millisecond: bump the sequence; on overflow the
            // carry moves into the node bits, so skip to the next ms instead.
            let bumped = TrackingCode::from_u64(self.last + 1);
            if bumped.node() == self.node {
                bumped.as_u64()
            } else {
                TrackingCode::from_parts(
                    TrackingCode::from_u64(self.last).unix_ms() + 1,
                    self.node,
                    0,
                )
                .as_u64()
            }
        };
        self.last = next;
        TrackingCode::from_u64(next)
    }
}

impl Pipeline {
    /// A pipeline of node `node_id` writing to `store` and handing every
    /// durably handled record to `sinks`, in order.
    pub fn new(
        config: PipelineConfig,
        limits: Limits,
        node_id: u16,
        store: Arc<dyn Store>,
        sinks: Vec<Box<dyn Sink>>,
    ) -> Pipeline {
        Pipeline {
            config,
            limits,
            node_id,
            store,
            sinks,
            health: Health::default(),
            shutdown: Arc::new(AtomicBool::new(false)),
            sealer: None,
            agencies: None,
        }
    }

    /// Stores each new notice in its agency's queue as `agencies` has it
    /// (`queue` in the registry); without, the hash of the agency's ID.
    pub fn with_agencies(mut self, agencies: Option<crate::agencies::AgencyRegistry>) -> Pipeline {
        self.agencies = agencies;
        self
    }

    /// Signs every receipt with the node's key, in batches.
    pub fn with_sealer(mut self, sealer: Option<Sealer>) -> Pipeline {
        self.sealer = sealer;
        self
    }

    /// Reports readiness into `health` (shared with the HTTP endpoint).
    pub fn with_health(mut self, health: Health) -> Pipeline {
        self.health = health;
        self
    }

    /// Stops reading once `shutdown` is set, and finishes what was read.
    pub fn with_shutdown(mut self, shutdown: Arc<AtomicBool>) -> Pipeline {
        self.shutdown = shutdown;
        self
    }

    /// Runs until the source is finished or `shutdown` is set, then drains:
    /// everything read is durably handled and acknowledged before it returns.
    pub fn run(self, mut source: Box<dyn Source>) -> Result<RunSummary, PipelineError> {
        let started = Instant::now();
        let cfg = self.config.clone();
        PipelineStarted {
            node: self.node_id,
            shards: cfg.shards,
            source: source.describe(),
        }
        .emit();
        let last = self
            .store
            .last_tracking_code()
            .map_err(|e| PipelineError::Store(e.to_string()))?;
        let codes = TrackingCodes::new(self.node_id, last);

        let (decode_tx, decode_rx) = bounded::<ToDecode>(cfg.queue_depth);
        let (commit_tx, commit_rx) = bounded::<ToCommit>(cfg.queue_depth);
        // Urgent records' own queues (a priority lane), taken first by the
        // stage at the other end.
        let (urgent_decode_tx, urgent_decode_rx) = bounded::<ToDecode>(cfg.queue_depth);
        let (urgent_commit_tx, urgent_commit_rx) = bounded::<ToCommit>(cfg.queue_depth);
        // One written group may wait for the ack stage while the next is written:
        // enough to overlap the two, and it keeps decoded notices in flight low.
        let (ack_stage_tx, ack_stage_rx) = bounded::<ToAck>(1);
        let (ack_tx, ack_rx) = unbounded::<Vec<AckToken>>();
        let failed = Arc::new(AtomicBool::new(false));

        let spawn = |name: &str, f: Box<dyn FnOnce() -> Result<(), PipelineError> + Send>| {
            let failed = failed.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    // Set unless the stage returns Ok: an error or a panic.
                    struct Failed(Arc<AtomicBool>, bool);
                    impl Drop for Failed {
                        fn drop(&mut self) {
                            if !self.1 {
                                self.0.store(true, Ordering::SeqCst);
                            }
                        }
                    }
                    let mut guard = Failed(failed, false);
                    let r = f();
                    guard.1 = r.is_ok();
                    r
                })
                .expect("spawn pipeline thread")
        };
        // Whether the committer is writing: while it is not, a batch need
        // not linger (nothing would share its fsync).
        let writing = Arc::new(AtomicBool::new(false));
        let decoder = {
            let (cfg, limits, writing) = (cfg.clone(), self.limits.clone(), writing.clone());
            let agencies = self.agencies.clone();
            spawn(
                "decode",
                Box::new(move || {
                    decode_stage(
                        cfg,
                        limits,
                        decode_rx,
                        urgent_decode_rx,
                        commit_tx,
                        urgent_commit_tx,
                        &writing,
                        agencies,
                    )
                }),
            )
        };
        let committer = {
            let (cfg, store, health, shutdown) = (
                cfg.clone(),
                self.store.clone(),
                self.health.clone(),
                self.shutdown.clone(),
            );
            spawn(
                "commit",
                Box::new(move || {
                    commit_stage(
                        cfg,
                        store,
                        codes,
                        health,
                        shutdown,
                        commit_rx,
                        urgent_commit_rx,
                        ack_stage_tx,
                        &writing,
                    )
                }),
            )
        };
        let acker = {
            let (store, sinks, sealer) = (self.store.clone(), self.sinks, self.sealer);
            let (health, shutdown) = (self.health.clone(), self.shutdown.clone());
            spawn(
                "ack",
                Box::new(move || {
                    ack_stage(store, sinks, sealer, health, shutdown, ack_stage_rx, ack_tx)
                }),
            )
        };

        self.health.set(true, "running");
        let source_result = source_stage(
            &mut *source,
            &cfg,
            &self.shutdown,
            &failed,
            decode_tx,
            urgent_decode_tx,
            ack_rx,
        );

        let join = |h: std::thread::JoinHandle<Result<(), PipelineError>>| {
            h.join().map_err(|p| {
                PipelineError::Panicked(
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default(),
                )
            })?
        };
        let results = [join(decoder), join(committer), join(acker)];
        // The depths are sampled as chunks go in; with every stage ended
        // the queues are empty, whatever the last sample said.
        for stage in ["decode", "commit"] {
            QueueDepth { stage, depth: 0 }.emit();
        }
        // Decided once every stage has ended, so that a stage's failure
        // (an error or a panic) is known. A source that ended by itself (a
        // finite one: the demo's generator) with everything read acknowledged
        // has nothing more to give: not ready, but not a fault either, and
        // the gauge says so. It is set before readiness drops, so no
        // scrape sees the one without the other.
        let all_ok = results.iter().all(Result::is_ok);
        match &source_result {
            Ok(end) if end.finished && all_ok => {
                SourceFinished { records: end.read }.emit();
                self.health.set(false, SOURCE_FINISHED);
            }
            // Not ready already, for a reason of its own (a failed stage's,
            // "store failed; restart needed"): keep it.
            _ if failed.load(Ordering::SeqCst) && !self.health.ready().0 => {}
            _ => self.health.set(false, "stopped"),
        }
        for r in results {
            r?;
        }
        let records = source_result?.read;
        store_size(self.store.stats()).emit();
        Ok(RunSummary {
            records,
            elapsed: started.elapsed(),
        })
    }
}

/// How the source stage ended.
struct SourceEnd {
    /// Records read.
    read: u64,
    /// The source said it had no more, and every record read was
    /// acknowledged (not: stopped, a stage gone, or records left over).
    finished: bool,
}

/// Reads the source, forwards chunks, applies acks. Returns once every
/// record read is acknowledged, or a later stage has stopped.
fn source_stage(
    source: &mut dyn Source,
    cfg: &PipelineConfig,
    shutdown: &AtomicBool,
    failed: &AtomicBool,
    decode_tx: Sender<ToDecode>,
    urgent_tx: Sender<ToDecode>,
    ack_rx: Receiver<Vec<AckToken>>,
) -> Result<SourceEnd, PipelineError> {
    let kind = source.kind();
    let mut read: u64 = 0;
    let mut ended = false;
    let mut acked: u64 = 0;
    // Payload bytes read and not yet acknowledged, against the budget.
    let budget = cfg.max_bytes_in_flight.0 as usize;
    // Urgent records are read past the budget by up to an eighth of it:
    // a backlog that has spent the budget does not hold them back.
    let urgent_budget = budget + (budget / 8).max(1);
    let mut in_flight: usize = 0;
    let apply_acks = |source: &mut dyn Source,
                      tokens: Vec<AckToken>,
                      acked: &mut u64,
                      in_flight: &mut usize|
     -> Result<(), PipelineError> {
        *acked += tokens.len() as u64;
        let bytes: usize = tokens.iter().map(|t| t.bytes as usize).sum();
        *in_flight = in_flight.saturating_sub(bytes);
        source.ack(&tokens)?;
        Ok(())
    };
    let count = |records: &[Record], read: &mut u64, in_flight: &mut usize| {
        *read += records.len() as u64;
        *in_flight += records
            .iter()
            .map(|r| r.token.bytes as usize)
            .sum::<usize>();
        RecordsReceived {
            source: kind,
            count: records.len() as u64,
        }
        .emit();
    };
    // Reads what urgent records the source has, within their budget, and
    // hands them to the decoder's urgent queue. False once the decoder
    // has stopped.
    let urgent = |source: &mut dyn Source,
                  read: &mut u64,
                  in_flight: &mut usize|
     -> Result<bool, PipelineError> {
        if *in_flight >= urgent_budget {
            return Ok(true);
        }
        let records = source.poll_urgent(cfg.decode_chunk, urgent_budget - *in_flight)?;
        if records.is_empty() {
            return Ok(true);
        }
        count(&records, read, in_flight);
        Ok(urgent_tx.send(ToDecode::Chunk(records)).is_ok())
    };
    BytesInFlight(0).emit();
    let mut last_gauge = Instant::now();
    'read: loop {
        while let Ok(tokens) = ack_rx.try_recv() {
            apply_acks(source, tokens, &mut acked, &mut in_flight)?;
        }
        if last_gauge.elapsed() >= Duration::from_millis(250) {
            BytesInFlight(in_flight).emit();
            last_gauge = Instant::now();
        }
        if shutdown.load(Ordering::SeqCst) || failed.load(Ordering::SeqCst) {
            break;
        }
        if in_flight >= budget {
            // At the budget: nothing more is read until acknowledgements
            // give bytes back (the later stages are working through it),
            // except urgent records.
            if !urgent(source, &mut read, &mut in_flight)? {
                break;
            }
            match ack_rx.recv_timeout(URGENT_LOOK) {
                Ok(tokens) => apply_acks(source, tokens, &mut acked, &mut in_flight)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            continue;
        }
        let room = budget - in_flight;
        match source.poll(cfg.decode_chunk, room, Duration::from_millis(50))? {
            Poll::Records(records) => {
                count(&records, &mut read, &mut in_flight);
                QueueDepth {
                    stage: "decode",
                    depth: decode_tx.len(),
                }
                .emit();
                // A source lane is all of one priority, so splitting a
                // chunk keeps every lane's order.
                let (first, rest): (Vec<Record>, Vec<Record>) = records
                    .into_iter()
                    .partition(|r| r.priority == Priority::Urgent);
                if !first.is_empty() && urgent_tx.send(ToDecode::Chunk(first)).is_err() {
                    break; // the decoder stopped: it failed, and says why
                }
                if rest.is_empty() {
                    continue;
                }
                // While the decoder's queue is full, urgent records still
                // go by, on their own queue.
                let mut chunk = ToDecode::Chunk(rest);
                loop {
                    match decode_tx.send_timeout(chunk, URGENT_LOOK) {
                        Ok(()) => break,
                        Err(SendTimeoutError::Disconnected(_)) => break 'read,
                        Err(SendTimeoutError::Timeout(c)) => {
                            chunk = c;
                            while let Ok(tokens) = ack_rx.try_recv() {
                                apply_acks(source, tokens, &mut acked, &mut in_flight)?;
                            }
                            if !urgent(source, &mut read, &mut in_flight)? {
                                break 'read;
                            }
                        }
                    }
                }
            }
            Poll::Idle => {}
            Poll::Finished => {
                ended = true;
                break;
            }
        }
    }
    let _ = decode_tx.send(ToDecode::End);
    drop(decode_tx);
    drop(urgent_tx);
    // Drain: every record read gets its ack before the run ends.
    while acked < read {
        match ack_rx.recv() {
            Ok(tokens) => apply_acks(source, tokens, &mut acked, &mut in_flight)?,
            Err(_) => break, // a later stage stopped; its error is reported
        }
    }
    BytesInFlight(in_flight).emit();
    Ok(SourceEnd {
        read,
        finished: ended && acked == read,
    })
}

/// How often a stage that waits for the others looks for urgent work.
const URGENT_LOOK: Duration = Duration::from_millis(2);

/// Turns a decoded record into what the store writes. Its tracking code
/// is issued by the committer, in the order of the writes
/// ([`issue_codes`]).
fn prepare(
    item: Item,
    now: chrono::DateTime<Utc>,
    agencies: Option<&crate::agencies::AgencyRegistry>,
) -> (Entry, Meta) {
    let Item {
        token,
        received,
        position,
        source_agency,
        priority,
        payload_bytes,
        body,
    } = item;
    let entry = match body {
        ItemBody::Notice {
            notice,
            hash,
            deliver_at,
            respond_by,
        } => Entry::Notice(NewNotice {
            queue: agencies.and_then(|a| a.queue_of(&notice.agency)),
            tracking_code: TrackingCode::from_u64(0),
            // To the millisecond, as every store keeps it (a CQL timestamp
            // has no finer unit): the `accepted` receipt, the notice's first
            // event, is rebuilt from the stored time and must hash the same.
            accepted_at: crate::model::to_millis(now),
            content_hash: hash,
            notice: *notice,
            position: position.clone(),
            priority,
            deliver_at,
            respond_by,
        }),
        ItemBody::Rejected(rej) => Entry::Rejection(NewRejection {
            agency: rejection_agency(&source_agency, &rej),
            reference: rej.reference,
            problems: rej.problems,
            position: position.clone(),
            at: now,
        }),
        ItemBody::Dead(rej, payload, size) => Entry::DeadLetter(dead_letter(
            &payload,
            size,
            position.clone(),
            source_agency,
            rej.problems,
            now,
        )),
    };
    (
        entry,
        Meta {
            token,
            received,
            position,
            payload_bytes,
        },
    )
}

/// The decode stage's state: its thread pool, the shards' batches, and
/// the committer's two queues.
struct Decoder<'a> {
    cfg: PipelineConfig,
    limits: Limits,
    pool: rayon::ThreadPool,
    shards: Vec<(Batch, Option<Instant>)>,
    tx: Sender<ToCommit>,
    urgent_rx: Receiver<ToDecode>,
    urgent_tx: Sender<ToCommit>,
    writing: &'a AtomicBool,
    agencies: Option<crate::agencies::AgencyRegistry>,
}

impl Decoder<'_> {
    /// Decodes and validates a chunk in parallel.
    fn decode(&mut self, records: Vec<Record>) -> Vec<(Entry, Meta)> {
        let t = Instant::now();
        let now_utc = Utc::now();
        let limits = &self.limits;
        let items: Vec<Item> = self.pool.install(|| {
            records
                .into_par_iter()
                .map(|r| decode_record(r, limits, now_utc))
                .collect()
        });
        ChunkDecoded {
            elapsed: t.elapsed(),
        }
        .emit();
        items
            .into_iter()
            .map(|item| prepare(item, now_utc, self.agencies.as_ref()))
            .collect()
    }

    /// Urgent chunks waiting, if any: each decoded and handed to the
    /// committer's urgent queue at once, as one batch (no linger). False
    /// once the committer has stopped.
    fn urgent(&mut self) -> bool {
        while let Ok(msg) = self.urgent_rx.try_recv() {
            if !self.urgent_chunk(msg) {
                return false;
            }
        }
        true
    }

    fn urgent_chunk(&mut self, msg: ToDecode) -> bool {
        let ToDecode::Chunk(records) = msg else {
            return true;
        };
        let mut batch = Batch::default();
        for (entry, meta) in self.decode(records) {
            batch.push(entry, meta);
        }
        batch.handed = Some(Instant::now());
        StageTime {
            stage: stage::BATCH,
            elapsed: Duration::ZERO,
        }
        .emit();
        self.urgent_tx.send(ToCommit::Batch(batch)).is_ok()
    }

    /// Hands a shard's batch to the committer, with how long its first
    /// record waited in it. While the committer's queue is full, urgent
    /// chunks still go by. False once the committer has stopped.
    fn send(&mut self, mut batch: Batch, since: Option<Instant>) -> bool {
        QueueDepth {
            stage: "commit",
            depth: self.tx.len(),
        }
        .emit();
        let now = Instant::now();
        if let Some(t) = since {
            StageTime {
                stage: stage::BATCH,
                elapsed: now.duration_since(t),
            }
            .emit();
        }
        batch.handed = Some(now);
        let mut msg = ToCommit::Batch(batch);
        loop {
            match self.tx.send_timeout(msg, URGENT_LOOK) {
                Ok(()) => return true,
                Err(SendTimeoutError::Disconnected(_)) => return false,
                Err(SendTimeoutError::Timeout(m)) => {
                    msg = m;
                    if !self.urgent() {
                        return false;
                    }
                }
            }
        }
    }

    /// Batches a decoded chunk into its shards; full batches go.
    fn batch(&mut self, records: Vec<Record>) -> bool {
        let batch_bytes = (self.cfg.max_bytes_in_flight.0 as usize / 8).max(1);
        for (entry, meta) in self.decode(records) {
            // A source lane (a Kafka partition, which agencies key by
            // recipient; a file) always maps to the same shard, and
            // shards are FIFO: each lane's order is kept to the store,
            // so the earlier of two envelopes with one reference wins.
            let i = meta.token.lane as usize % self.cfg.shards;
            let shard = &mut self.shards[i];
            shard.1.get_or_insert_with(Instant::now);
            shard.0.push(entry, meta);
            if shard.0.len() >= self.cfg.batch_max_notices || shard.0.bytes >= batch_bytes {
                let (b, since) = (std::mem::take(&mut shard.0), shard.1.take());
                if !self.send(b, since) {
                    return false;
                }
            }
        }
        true
    }

    /// Sends the batches that are due: all of them when `all`.
    fn flush(&mut self, all: bool) -> bool {
        // Group commit without waiting: while the committer is idle and
        // nothing is queued for it, what is here goes at once (a trickle
        // is answered in milliseconds, not after the linger); while it
        // writes, batches fill up to the linger or their size, and go
        // together in its next write.
        let idle =
            self.cfg.write_when_idle && !self.writing.load(Ordering::Acquire) && self.tx.is_empty();
        let now = Instant::now();
        let linger = self.cfg.batch_linger.0;
        for i in 0..self.shards.len() {
            let due = self.shards[i].0.len() > 0
                && (all
                    || self.shards[i]
                        .1
                        .is_some_and(|t| idle || now.duration_since(t) >= linger));
            if due {
                let (b, since) = (
                    std::mem::take(&mut self.shards[i].0),
                    self.shards[i].1.take(),
                );
                if !self.send(b, since) {
                    return false;
                }
            }
        }
        true
    }
}

#[allow(clippy::too_many_arguments)]
fn decode_stage(
    cfg: PipelineConfig,
    limits: Limits,
    rx: Receiver<ToDecode>,
    urgent_rx: Receiver<ToDecode>,
    tx: Sender<ToCommit>,
    urgent_tx: Sender<ToCommit>,
    writing: &AtomicBool,
    agencies: Option<crate::agencies::AgencyRegistry>,
) -> Result<(), PipelineError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.decode_threads)
        .thread_name(|i| format!("decode-{i}"))
        .build()
        .map_err(|e| PipelineError::Panicked(format!("cannot start decode threads: {e}")))?;
    let linger = cfg.batch_linger.0;
    let shards = (0..cfg.shards).map(|_| (Batch::default(), None)).collect();
    let mut d = Decoder {
        cfg,
        limits,
        pool,
        shards,
        tx,
        urgent_rx,
        urgent_tx,
        writing,
        agencies,
    };
    loop {
        // Urgent chunks first, whatever waits in the other queue.
        if !d.urgent() {
            return Ok(());
        }
        let now = Instant::now();
        // With records waiting and `write_when_idle`, look again within a
        // millisecond: they go as soon as the committer is free (below).
        let wait = d
            .shards
            .iter()
            .filter_map(|s| s.1.map(|t| (t + linger).saturating_duration_since(now)))
            .min()
            .map_or(Duration::from_millis(200), |w| {
                if d.cfg.write_when_idle {
                    w.min(Duration::from_millis(1))
                } else {
                    w
                }
            });
        let urgent_rx = d.urgent_rx.clone();
        crossbeam_channel::select! {
            recv(urgent_rx) -> msg => match msg {
                Ok(msg) => {
                    if !d.urgent_chunk(msg) {
                        return Ok(());
                    }
                }
                // The source stage has ended: only the other queue now.
                Err(_) => d.urgent_rx = never(),
            },
            recv(rx) -> msg => match msg {
                Ok(ToDecode::Chunk(records)) => {
                    if !d.batch(records) {
                        return Ok(());
                    }
                }
                Ok(ToDecode::End) | Err(_) => {
                    // Urgent chunks read before the end go first.
                    if !d.urgent() || !d.flush(true) {
                        return Ok(());
                    }
                    let _ = d.tx.send(ToCommit::End);
                    return Ok(());
                }
            },
            default(wait) => {}
        }
        if !d.flush(false) {
            return Ok(());
        }
    }
}

/// The agency a rejection is filed under: the source's, else the
/// envelope's when it is a valid ID.
fn rejection_agency(source_agency: &Option<AgencyId>, rej: &Rejection) -> Option<AgencyId> {
    source_agency
        .clone()
        .or_else(|| rej.agency.as_deref().and_then(|a| AgencyId::parse(a).ok()))
}

/// Writes groups of batches durably, one write (one fsync) per group, and
/// hands them to the ack stage — which builds receipts while the next
/// write is under way.
#[allow(clippy::too_many_arguments)]
fn commit_stage(
    cfg: PipelineConfig,
    store: Arc<dyn Store>,
    mut codes: TrackingCodes,
    health: Health,
    shutdown: Arc<AtomicBool>,
    rx: Receiver<ToCommit>,
    mut urgent_rx: Receiver<ToCommit>,
    tx: Sender<ToAck>,
    writing: &AtomicBool,
) -> Result<(), PipelineError> {
    let mut ended = false;
    while !ended {
        writing.store(false, Ordering::Release);
        // Urgent batches first, written on their own: a small write, at
        // once, not behind a group of thousands.
        let (mut group, urgent) = match urgent_rx.try_recv() {
            Ok(ToCommit::Batch(b)) => (b, true),
            _ => {
                let next = crossbeam_channel::select! {
                    recv(urgent_rx) -> m => match m {
                        Ok(ToCommit::Batch(b)) => Some((b, true)),
                        Ok(ToCommit::End) => None,
                        Err(_) => {
                            // The decoder has ended: only the other queue now.
                            urgent_rx = never();
                            None
                        }
                    },
                    recv(rx) -> m => match m {
                        Ok(ToCommit::Batch(b)) => Some((b, false)),
                        Ok(ToCommit::End) | Err(_) => {
                            // Urgent batches handed over before the end
                            // are written before it.
                            ended = true;
                            let mut last = Batch::default();
                            take_waiting(&urgent_rx, &mut last, usize::MAX);
                            (last.len() > 0).then_some((last, true))
                        }
                    },
                };
                match next {
                    Some(g) => g,
                    None if ended => break,
                    None => continue,
                }
            }
        };
        writing.store(true, Ordering::Release);
        if let Some(t) = group.handed {
            StageTime {
                stage: stage::COMMIT_QUEUE,
                elapsed: t.elapsed(),
            }
            .emit();
        }
        // Group commit: take every batch already waiting, up to the cap
        // (urgent ones only with urgent ones).
        while !urgent && group.len() < cfg.group_max_notices {
            if let Ok(ToCommit::Batch(b)) = urgent_rx.try_recv() {
                group.append(b);
                continue;
            }
            match rx.try_recv() {
                Ok(ToCommit::Batch(b)) => group.append(b),
                Ok(ToCommit::End) => {
                    // Urgent batches handed over before the end go in.
                    take_waiting(&urgent_rx, &mut group, usize::MAX);
                    ended = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if urgent {
            take_waiting(&urgent_rx, &mut group, cfg.group_max_notices);
        }
        issue_codes(&mut codes, &mut group.entries);
        // Durable write, retried until it succeeds (`until_durable`).
        let t = Instant::now();
        let outcomes = until_durable(
            &health,
            &shutdown,
            group.len(),
            StoreError::is_fatal,
            || store.write(&group.entries),
        )?;
        StoreWritten {
            records: group.len(),
            elapsed: t.elapsed(),
        }
        .emit();
        if tx
            .send(ToAck::Written {
                batch: group,
                outcomes,
                at: Instant::now(),
            })
            .is_err()
        {
            break;
        }
    }
    let _ = tx.send(ToAck::End);
    Ok(())
}

/// Adds the batches already waiting in `rx` to `group`, while it holds
/// fewer than `cap` records.
fn take_waiting(rx: &Receiver<ToCommit>, group: &mut Batch, cap: usize) {
    while group.len() < cap {
        match rx.try_recv() {
            Ok(ToCommit::Batch(b)) => group.append(b),
            _ => break,
        }
    }
}

/// Issues the new notices' tracking codes, in the order of the writes:
/// urgent writes go before bulk ones decoded earlier, and the receipts
/// sink counts on codes being answered in increasing order
/// (`sink::accepted_out`). A write that is retried keeps its codes.
fn issue_codes(codes: &mut TrackingCodes, entries: &mut [Entry]) {
    let now = Utc::now().timestamp_millis();
    for e in entries {
        if let Entry::Notice(n) = e {
            n.tracking_code = codes.next(now);
        }
    }
}

/// Runs a durable write until it succeeds: nothing is acknowledged
/// before, so giving up would only mean re-delivery after a restart. A
/// store that refuses all further writes (`fatal`) stops the pipeline at
/// once: retrying could never succeed. Readiness says so meanwhile.
fn until_durable<T, E: std::error::Error>(
    health: &Health,
    shutdown: &AtomicBool,
    records: usize,
    fatal: impl Fn(&E) -> bool,
    mut write: impl FnMut() -> Result<T, E>,
) -> Result<T, PipelineError> {
    let mut attempt = 0u32;
    loop {
        match write() {
            Ok(v) => {
                if attempt > 0 {
                    health.set(true, "running");
                }
                return Ok(v);
            }
            Err(e) => {
                attempt += 1;
                let fatal = fatal(&e);
                StoreWriteFailed {
                    error: &e,
                    attempt,
                    records,
                    fatal,
                }
                .emit();
                if fatal {
                    health.set(false, "store failed; restart needed");
                    return Err(PipelineError::StoreFailed(e.to_string()));
                }
                health.set(false, "store writes failing");
                if shutdown.load(Ordering::SeqCst) && attempt >= 3 {
                    return Err(PipelineError::Store(e.to_string()));
                }
                std::thread::sleep(Duration::from_millis((100u64 << attempt.min(6)).min(5_000)));
            }
        }
    }
}

/// Turns durable writes into receipts, metrics and sink calls, then
/// acknowledges the records to the source — in that order.
#[allow(clippy::too_many_arguments)]
fn ack_stage(
    store: Arc<dyn Store>,
    mut sinks: Vec<Box<dyn Sink>>,
    sealer: Option<Sealer>,
    health: Health,
    shutdown: Arc<AtomicBool>,
    rx: Receiver<ToAck>,
    ack_tx: Sender<Vec<AckToken>>,
) -> Result<(), PipelineError> {
    let mut writes: u64 = 0;
    // Handed to the sinks, not yet settled: acknowledged to the source
    // only after every sink has settled them.
    let mut unsettled = Unsettled::default();
    let settle = |sinks: &mut Vec<Box<dyn Sink>>,
                  unsettled: &mut Unsettled|
     -> Result<bool, PipelineError> {
        for sink in sinks.iter_mut() {
            sink.settle()?;
        }
        if let Some(t) = unsettled.handed.take() {
            StageTime {
                stage: stage::SETTLE,
                elapsed: t.elapsed(),
            }
            .emit();
        }
        Ok(ack_tx.send(std::mem::take(&mut unsettled.tokens)).is_ok())
    };
    loop {
        // Settled once no write has come for SETTLE_IDLE (or at
        // SETTLE_MAX_RECORDS): the receipts are on their way meanwhile.
        let next = if unsettled.tokens.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(SETTLE_IDLE)
        };
        let (batch, outcomes, done) = match next {
            Ok(ToAck::Written {
                batch,
                outcomes,
                at,
            }) => (batch, outcomes, at),
            Err(RecvTimeoutError::Timeout) => {
                if !settle(&mut sinks, &mut unsettled)? {
                    break;
                }
                continue;
            }
            Ok(ToAck::End) | Err(RecvTimeoutError::Disconnected) => break,
        };
        let now = Utc::now();
        let n = batch.len();
        let mut handled = Vec::with_capacity(n);
        let mut tokens = Vec::with_capacity(n);
        let mut latencies = Vec::with_capacity(n);
        let mut counts = Counts::default();
        for ((entry, outcome), meta) in batch.entries.into_iter().zip(outcomes).zip(batch.meta) {
            let Meta {
                token,
                received,
                position,
                payload_bytes,
            } = meta;
            let latency = done.duration_since(received);
            latencies.push(latency.as_secs_f64());
            tokens.push(token);
            let mut dead_letter = None;
            let (kind, receipt) = match (entry, outcome) {
                (Entry::Notice(n), Outcome::Stored) => {
                    counts.stored(&n.notice.agency, payload_bytes);
                    // The notice's first event, as the store chained it.
                    let mut receipt = n.accepted_receipt();
                    chain::append(0, chain::GENESIS, &mut receipt);
                    (HandledKind::Stored, Some(receipt))
                }
                (
                    Entry::Notice(n),
                    Outcome::Duplicate {
                        original,
                        redelivery,
                    },
                ) => {
                    counts.duplicate(&n.notice.agency);
                    // This very record again: the receipt it got the first
                    // time, rebuilt from the stored notice (same ID, time
                    // and chain link), not a re-send's.
                    let first = if redelivery {
                        match store.notice(original) {
                            Ok(Some(stored)) => {
                                let mut r = crate::model::accepted_receipt(
                                    stored.tracking_code,
                                    stored.accepted_at,
                                    &stored.notice,
                                    &stored.content_hash,
                                );
                                chain::append(0, chain::GENESIS, &mut r);
                                Some(r)
                            }
                            _ => None,
                        }
                    } else {
                        None
                    };
                    let receipt = first.unwrap_or_else(|| {
                        Receipt::new(
                            format!("duplicate:{original}:{}", position_id(&position)),
                            n.notice.agency,
                            Some(n.notice.reference),
                            now,
                            // An exact re-send: the original's content.
                            crate::model::accepted_event(original, &n.content_hash, true),
                        )
                    });
                    (HandledKind::Duplicate, Some(receipt))
                }
                (Entry::Notice(n), Outcome::Conflict { original }) => {
                    counts.rejected(Some(&n.notice.agency), Reason::ReferenceConflict);
                    let receipt = crate::model::rejected_receipt(
                        &position,
                        n.notice.agency,
                        Some(n.notice.reference),
                        now,
                        vec![Problem::new(
                            Reason::ReferenceConflict,
                            "reference".to_owned(),
                            format!("reference was already used for notice {original} with different content; the original is kept"),
                        )],
                    );
                    (
                        HandledKind::Rejected(Reason::ReferenceConflict),
                        Some(receipt),
                    )
                }
                (Entry::Rejection(r), _) => {
                    let reason = r.problems[0].reason;
                    counts.rejected(r.agency.as_ref(), reason);
                    let receipt = r.agency.map(|agency| {
                        crate::model::rejected_receipt(
                            &position,
                            agency,
                            r.reference,
                            now,
                            r.problems,
                        )
                    });
                    (HandledKind::Rejected(reason), receipt)
                }
                (Entry::DeadLetter(d), _) => {
                    let reason = d.problems[0].reason;
                    counts.dead(reason);
                    dead_letter = Some(Box::new(d));
                    (HandledKind::DeadLetter(reason), None)
                }
                (Entry::Notice(_), Outcome::Kept | Outcome::Again) => {
                    unreachable!("a notice is stored, absorbed or in conflict")
                }
            };
            handled.push(Handled {
                kind,
                receipt,
                latency,
                received,
                payload_bytes,
                dead_letter,
            });
        }
        // The batch must be in the audit log before its receipts leave:
        // retried like the store write (nothing is acknowledged meanwhile).
        let sealing = Instant::now();
        let batches = match &sealer {
            Some(s) => {
                let b = until_durable(
                    &health,
                    &shutdown,
                    handled.len(),
                    |e: &LogError| e.fatal,
                    || s.seal(handled.iter_mut().filter_map(|h| h.receipt.as_mut())),
                )?;
                StageTime {
                    stage: stage::SEAL,
                    elapsed: sealing.elapsed(),
                }
                .emit();
                b
            }
            None => Vec::new(),
        };
        IngestLatencies(&latencies).emit();
        counts.into_event().emit();
        for sink in &mut sinks {
            // Each batch's signed head goes out with its receipts.
            sink.batches(&batches)?;
            sink.handled(&handled)?;
        }
        unsettled.handed.get_or_insert(sealing);
        unsettled.tokens.extend(tokens);
        // Settle when enough has piled up, or (above) when no write has
        // come for a moment; meanwhile the next writes' receipts are
        // produced while the earlier ones are in flight.
        if unsettled.tokens.len() >= SETTLE_MAX_RECORDS && !settle(&mut sinks, &mut unsettled)? {
            break;
        }
        writes += 1;
        if writes % 64 == 0 {
            store_size(store.stats()).emit();
        }
    }
    if !unsettled.tokens.is_empty() {
        settle(&mut sinks, &mut unsettled)?;
    }
    for sink in &mut sinks {
        sink.finish()?;
    }
    Ok(())
}

/// Records handed to the sinks before the ack stage waits for them to
/// settle, while writes keep coming.
const SETTLE_MAX_RECORDS: usize = 16_384;

/// No write for this long, and the ack stage settles what it handed over.
///
/// A settle waits for the broker (every receipt acknowledged), and
/// nothing else goes out meanwhile. Settling whenever no write happened to
/// wait (as before issue 25's second round) stopped the stage for a round
/// trip between most writes at 2,000 notices/s -- writes of one or two
/// notices, as they come -- and the receipts behind it waited. Under load
/// an answer does not wait for a settle (its receipt goes when the
/// producer's linger has passed); the source's offsets and the notices'
/// later events do. A lone notice's receipt goes at its settle, 2 ms
/// after it is sealed, or when the linger has passed if that is sooner.
/// With this and the batch heads beside their receipts, 2,000 notices/s
/// were answered at p50 7.4 ms instead of 11.3 (BENCHMARKS.md, "Latency,
/// stage by stage").
const SETTLE_IDLE: Duration = Duration::from_millis(2);

/// Records whose receipts are with the sinks and not yet settled: their
/// acknowledgements for the source, and when the oldest was handed over
/// (sealing included).
#[derive(Default)]
struct Unsettled {
    tokens: Vec<AckToken>,
    handed: Option<Instant>,
}

/// Per-write counters, aggregated before they touch the metrics registry.
#[derive(Default)]
struct Counts {
    stored: std::collections::HashMap<String, u64>,
    duplicates: std::collections::HashMap<String, u64>,
    rejected: std::collections::HashMap<(String, Reason), u64>,
    dead: std::collections::HashMap<Reason, u64>,
    bytes: u64,
}

impl Counts {
    fn stored(&mut self, agency: &AgencyId, bytes: usize) {
        *self.stored.entry(agency.as_str().to_owned()).or_default() += 1;
        self.bytes += bytes as u64;
    }
    fn duplicate(&mut self, agency: &AgencyId) {
        *self
            .duplicates
            .entry(agency.as_str().to_owned())
            .or_default() += 1;
    }
    fn rejected(&mut self, agency: Option<&AgencyId>, reason: Reason) {
        *self
            .rejected
            .entry((
                agency.map(|a| a.as_str().to_owned()).unwrap_or_default(),
                reason,
            ))
            .or_default() += 1;
    }
    fn dead(&mut self, reason: Reason) {
        *self.dead.entry(reason).or_default() += 1;
    }
    fn into_event(self) -> BatchOutcomes {
        let label = |a: String| {
            if a.is_empty() {
                agency_label(None)
            } else {
                agency_label(AgencyId::parse(&a).ok().as_ref())
            }
        };
        BatchOutcomes {
            stored: self
                .stored
                .into_iter()
                .map(|(a, n)| (label(a), n))
                .collect(),
            duplicates: self
                .duplicates
                .into_iter()
                .map(|(a, n)| (label(a), n))
                .collect(),
            rejected: self
                .rejected
                .into_iter()
                .map(|((a, r), n)| ((label(a), r), n))
                .collect(),
            dead_letters: self.dead.into_iter().collect(),
            stored_bytes: self.bytes,
        }
    }
}

/// The store's sizes as their event.
fn store_size(s: StoreStats) -> StoreSize {
    StoreSize {
        disk_bytes: s.disk_bytes,
        write_buffer_bytes: s.write_buffer_bytes,
        cache_bytes: s.cache_bytes,
        journal_files: s.journal_files,
        pinned_bytes: s.pinned_bytes,
        tables: s.tables,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NoticeStore, StoreError};
    use karpoosheh_schemas::TRACKING_EPOCH_MS;

    /// `nt` sent now and expiring in a year: valid on arrival.
    pub(super) fn current(mut nt: karpoosheh_schemas::Notice) -> karpoosheh_schemas::Notice {
        nt.sent_at = Utc::now();
        nt.expires_at = Utc::now() + chrono::Duration::days(365);
        nt
    }

    /// A valid notice envelope from `agency` to `recipient`, as a source
    /// delivers it.
    pub(super) fn envelope(
        agency: &str,
        reference: &str,
        recipient: karpoosheh_schemas::MailboxId,
    ) -> Vec<u8> {
        let nt = crate::store::conformance::notice(agency, reference, recipient, "b");
        serde_json::to_vec(&current(nt)).unwrap()
    }

    #[test]
    fn tracking_codes_never_repeat_even_when_the_clock_steps_back() {
        let mut g = TrackingCodes::new(3, None);
        let t = TRACKING_EPOCH_MS + 1_000_000;
        let mut seen = std::collections::HashSet::new();
        let mut last = 0;
        for i in 0..10_000 {
            // 10k codes in "one millisecond", then the clock goes back.
            let now = if i < 9_000 { t } else { t - 5_000 };
            let c = g.next(now);
            assert!(c.as_u64() > last, "codes increase");
            assert_eq!(c.node(), 3, "node bits intact");
            last = c.as_u64();
            assert!(seen.insert(c));
        }
        // After a restart, the high-water mark from the store continues.
        let mut g2 = TrackingCodes::new(3, Some(TrackingCode::from_u64(last)));
        assert!(g2.next(t - 60_000).as_u64() > last);
    }

    /// Runs `n` valid notices through a pipeline on `store`, on another
    /// thread so that a pipeline that never stops fails the test instead
    /// of hanging it. Returns the run's result and how many records the
    /// source saw acknowledged.
    fn run_on(store: Arc<dyn Store>, n: usize) -> (Result<RunSummary, PipelineError>, u64) {
        let (result, acked, _) = run_with(store, n, false);
        (result, acked)
    }

    /// [`run_on`], with `shutdown` set before the run if asked, and the
    /// node's readiness (flag, reason) once the run returned.
    fn run_with(
        store: Arc<dyn Store>,
        n: usize,
        shutdown: bool,
    ) -> (Result<RunSummary, PipelineError>, u64, (bool, &'static str)) {
        use crate::source::MemorySource;
        use crate::store::conformance::person;
        let payloads: Vec<Vec<u8>> = (0..n)
            .map(|i| envelope("tax", &format!("r-{i}"), person(300_100_000 + i as u32 * 7)))
            .collect();
        let (tx, source) = MemorySource::channel(4, None);
        let acked = source.acked_counter();
        assert!(tx.send(payloads));
        drop(tx);
        let health = Health::default();
        let pipeline = Pipeline::new(
            PipelineConfig::default(),
            Limits::default(),
            0,
            store,
            vec![],
        )
        .with_health(health.clone())
        .with_shutdown(Arc::new(AtomicBool::new(shutdown)));
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let _ = done_tx.send(pipeline.run(Box::new(source)));
        });
        let result = done_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the pipeline stopped within a minute");
        (result, acked.load(Ordering::SeqCst), health.ready())
    }

    /// An envelope's `deliver_at` reaches the stored delivery record: the
    /// notice is stored at once and held until then; one without is not.
    #[test]
    fn a_scheduled_send_is_stored_at_once_and_held_until_its_time() {
        use crate::source::MemorySource;
        use crate::store::conformance::{notice, person};
        let dir = tempfile::tempdir().unwrap();
        let store = fjall_store(dir.path());
        let at = crate::model::to_millis(Utc::now() + chrono::Duration::days(3));
        let payloads: Vec<Vec<u8>> = ["later", "now"]
            .iter()
            .map(|r| {
                let nt = current(notice("tax", r, person(300_200_101), "b"));
                let mut v = serde_json::to_value(&nt).unwrap();
                if *r == "later" {
                    // In Tehran's offset: the same instant.
                    v["deliver_at"] = serde_json::json!(at
                        .with_timezone(&chrono::FixedOffset::east_opt(12_600).unwrap())
                        .to_rfc3339());
                }
                serde_json::to_vec(&v).unwrap()
            })
            .collect();
        let (tx, source) = MemorySource::channel(4, None);
        assert!(tx.send(payloads));
        drop(tx);
        let pipeline = Pipeline::new(
            PipelineConfig::default(),
            Limits::default(),
            0,
            store.clone(),
            vec![],
        );
        let summary = pipeline.run(Box::new(source)).unwrap();
        assert_eq!(summary.records, 2);
        let tax = AgencyId::parse("tax").unwrap();
        let state = |r: &str| {
            let code = store.reference(&tax, r).unwrap().expect("stored at once");
            store.delivery(code).unwrap().unwrap().state
        };
        assert_eq!(
            state("later"),
            crate::model::DeliveryState::Held { until: at }
        );
        assert_eq!(state("now"), crate::model::DeliveryState::Scheduled);
    }

    /// A new notice is stored in its agency's queue as the registry has
    /// it (`queue`), else by the hash of its ID; without a registry, the
    /// hash.
    #[test]
    fn a_notice_is_stored_in_the_queue_its_registry_gives_its_agency() {
        use crate::source::MemorySource;
        use crate::store::conformance::person;
        let (_reg_dir, file) = crate::agencies::tests::registry_file(
            "[agency.tax]\nstatus = \"approved\"\nqueue = 2\n\
             [agency.customs]\nstatus = \"approved\"\n",
        );
        let registry = crate::agencies::tests::open_file(&file).unwrap();
        let run = |agencies: Option<crate::agencies::AgencyRegistry>| {
            let dir = tempfile::tempdir().unwrap();
            let store = fjall_store(dir.path());
            let payloads: Vec<Vec<u8>> = ["tax", "customs"]
                .iter()
                .map(|a| envelope(a, "r-1", person(300_200_301)))
                .collect();
            let (tx, source) = MemorySource::channel(4, None);
            assert!(tx.send(payloads));
            drop(tx);
            let summary = Pipeline::new(
                PipelineConfig::default(),
                Limits::default(),
                0,
                store.clone(),
                vec![],
            )
            .with_agencies(agencies)
            .run(Box::new(source))
            .unwrap();
            assert_eq!(summary.records, 2);
            ["tax", "customs"].map(|a| {
                let a = AgencyId::parse(a).unwrap();
                let code = store.reference(&a, "r-1").unwrap().unwrap();
                let rec = store.delivery(code).unwrap().unwrap();
                (rec.queue, rec.queue().index)
            })
        };
        assert_eq!(run(Some(registry)), [(Some(2), 2), (Some(3), 3)]);
        assert_eq!(run(None), [(None, 6), (None, 3)], "the hash");
    }

    /// One record on an idle pipeline is written at once, not after the
    /// batch linger (here a minute); with `write_when_idle = false` it
    /// waits for the linger.
    #[test]
    fn an_idle_pipeline_writes_a_lone_record_without_waiting_for_the_linger() {
        use crate::source::MemorySource;
        use crate::store::conformance::person;
        for idle_writes in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let store = fjall_store(dir.path());
            let (tx, source) = MemorySource::channel(4, None);
            let acked = source.acked_counter();
            let cfg = PipelineConfig {
                batch_linger: karpoosheh_schemas::HumanDuration(Duration::from_secs(60)),
                write_when_idle: idle_writes,
                ..PipelineConfig::default()
            };
            let pipeline = Pipeline::new(cfg, Limits::default(), 0, store.clone(), vec![]);
            let run = std::thread::spawn(move || pipeline.run(Box::new(source)));
            assert!(tx.send(vec![envelope("tax", "lone", person(300_200_001))]));
            let t = Instant::now();
            let wait = Duration::from_secs(if idle_writes { 20 } else { 2 });
            while acked.load(Ordering::SeqCst) == 0 && t.elapsed() < wait {
                std::thread::sleep(Duration::from_millis(5));
            }
            if idle_writes {
                assert_eq!(acked.load(Ordering::SeqCst), 1, "written and acknowledged");
                assert!(
                    store
                        .reference(&AgencyId::parse("tax").unwrap(), "lone")
                        .unwrap()
                        .is_some(),
                    "stored"
                );
            } else {
                assert_eq!(acked.load(Ordering::SeqCst), 0, "held for its linger");
            }
            drop(tx); // the end: whatever waits is written
            run.join().unwrap().unwrap();
            assert_eq!(acked.load(Ordering::SeqCst), 1);
        }
    }

    #[test]
    fn readiness_tells_a_finished_source_from_a_stop_and_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (result, acked, health) = run_with(fjall_store(&dir.path().join("a")), 20, false);
        assert_eq!(result.unwrap().records, 20);
        assert_eq!(acked, 20);
        assert_eq!(health, (false, SOURCE_FINISHED), "read to its end");

        let (result, _, health) = run_with(fjall_store(&dir.path().join("b")), 20, true);
        assert!(result.is_ok());
        assert_eq!(health, (false, "stopped"), "asked to stop");

        use crate::store::faulty::Faulty;
        let poisoned = || StoreError::Fjall(::fjall::Error::Poisoned);
        let store = Arc::new(
            Faulty::new(fjall_store(&dir.path().join("c")))
                .failing_writes([poisoned as fn() -> StoreError; 1]),
        );
        let (result, _, health) = run_with(store, 20, false);
        assert!(result.is_err());
        assert_eq!(
            health,
            (false, "store failed; restart needed"),
            "the failure's own reason stays"
        );

        // A stage that panics has not finished the source, though the
        // source stage itself ended without an error.
        let store = Arc::new(Faulty::new(fjall_store(&dir.path().join("d"))).panicking_writes());
        let (result, acked, health) = run_with(store, 20, false);
        assert!(
            matches!(result, Err(PipelineError::Panicked(_))),
            "{result:?}"
        );
        assert_eq!(acked, 0);
        assert_eq!(health, (false, "stopped"), "not finished: a stage died");
    }

    use crate::store::conformance::fjall_store;

    #[test]
    fn a_poisoned_store_stops_the_pipeline_and_nothing_is_acknowledged() {
        use crate::store::faulty::Faulty;
        let dir = tempfile::tempdir().unwrap();
        let poisoned = || StoreError::Fjall(::fjall::Error::Poisoned);
        let store = Arc::new(
            Faulty::new(fjall_store(dir.path()))
                .failing_writes([poisoned as fn() -> StoreError; 100]),
        );
        let (result, acked) = run_on(store.clone(), 50);
        match result {
            Err(PipelineError::StoreFailed(why)) => assert!(why.contains("Poisoned"), "{why}"),
            other => panic!("expected StoreFailed, got {other:?}"),
        }
        assert_eq!(acked, 0, "nothing acknowledged to the source");
        assert_eq!(store.writes.load(Ordering::SeqCst), 0);
        // Stopped at the first failure, not after retries.
        assert_eq!(store.pending_write_errors(), 99);
    }

    #[test]
    fn a_failing_store_write_is_retried_until_it_succeeds() {
        use crate::store::faulty::Faulty;
        let dir = tempfile::tempdir().unwrap();
        let full = || StoreError::Io(std::io::Error::other("no space left on device"));
        let store = Arc::new(
            Faulty::new(fjall_store(dir.path())).failing_writes([full as fn() -> StoreError; 2]),
        );
        let (result, acked) = run_on(store.clone(), 50);
        assert_eq!(result.expect("the run succeeds").records, 50);
        assert_eq!(acked, 50, "everything acknowledged once written");
        assert_eq!(store.pending_write_errors(), 0, "both failures were met");
        let agency = AgencyId::parse("tax").unwrap();
        for i in 0..50 {
            assert!(
                store
                    .reference(&agency, &format!("r-{i}"))
                    .unwrap()
                    .is_some(),
                "r-{i} stored"
            );
        }
    }
}

#[cfg(test)]
mod settle_tests {
    use super::*;
    use crate::source::MemorySource;
    use crate::store::conformance::{fjall_store, person};
    use std::sync::atomic::AtomicU64;

    /// Counts the pipeline's settles.
    struct Settles(Arc<AtomicU64>);

    impl Sink for Settles {
        fn handled(&mut self, _: &[Handled]) -> Result<(), SinkError> {
            Ok(())
        }
        fn settle(&mut self) -> Result<(), SinkError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    /// The ack stage settles once writes pause (`SETTLE_IDLE`), not only
    /// at the source's end: with the source still open, each burst's
    /// receipts are settled and its records acknowledged.
    #[test]
    fn records_are_acknowledged_when_writes_pause_with_the_source_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = fjall_store(dir.path());
        let (tx, source) = MemorySource::channel(4, None);
        let acked = source.acked_counter();
        let settles = Arc::new(AtomicU64::new(0));
        let pipeline = Pipeline::new(
            PipelineConfig::default(),
            Limits::default(),
            0,
            store,
            vec![Box::new(Settles(settles.clone()))],
        );
        let run = std::thread::spawn(move || pipeline.run(Box::new(source)));
        let mut settled_before = 0;
        for burst in 0..3u32 {
            let payloads = (0..5u32)
                .map(|i| {
                    let n = burst * 5 + i;
                    super::tests::envelope("tax", &format!("s-{n}"), person(300_200_000 + n * 7))
                })
                .collect();
            assert!(tx.send(payloads));
            let want = u64::from(burst + 1) * 5;
            let t = Instant::now();
            while acked.load(Ordering::SeqCst) < want && t.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(2));
            }
            assert_eq!(
                acked.load(Ordering::SeqCst),
                want,
                "burst {burst}: acknowledged while the source is open"
            );
            let settled = settles.load(Ordering::SeqCst);
            assert!(settled > settled_before, "burst {burst}: settled first");
            settled_before = settled;
        }
        drop(tx);
        assert_eq!(run.join().unwrap().unwrap().records, 15);
    }
}

#[cfg(test)]
mod priority_tests {
    use super::*;
    use crate::source::AckTracker;
    use crate::store::conformance::{fjall_store, person};
    use crate::store::faulty::Faulty;
    use crate::store::NoticeStore;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// Two lanes: a bulk backlog on lane 0, and urgent records on lane 1
    /// that come once `release` is set. Records when the last urgent one
    /// was acknowledged, as how many bulk ones were by then.
    struct Laned {
        bulk: VecDeque<Vec<u8>>,
        urgent: VecDeque<Vec<u8>>,
        release: Arc<AtomicBool>,
        seq: [u64; 2],
        acks: AckTracker,
        urgent_total: u64,
        progress: Arc<Mutex<(u64, u64, Option<u64>)>>,
    }

    impl Laned {
        fn take(&mut self, lane: u32, n: usize) -> Vec<Record> {
            let (q, priority) = if lane == 1 {
                (&mut self.urgent, Priority::Urgent)
            } else {
                (&mut self.bulk, Priority::Bulk)
            };
            let mut out = Vec::new();
            while out.len() < n {
                let Some(payload) = q.pop_front() else { break };
                let seq = self.seq[lane as usize];
                self.seq[lane as usize] += 1;
                out.push(Record {
                    token: AckToken {
                        lane,
                        seq,
                        bytes: payload.len() as u32,
                    },
                    payload,
                    oversize: None,
                    position: SourcePosition::InProcess {
                        sequence: seq * 2 + lane as u64,
                    },
                    agency: None,
                    refused: None,
                    received: Instant::now(),
                    priority,
                });
            }
            out
        }
    }

    impl Source for Laned {
        fn kind(&self) -> &'static str {
            "memory"
        }
        fn describe(&self) -> String {
            "two lanes".into()
        }
        fn poll(&mut self, max: usize, _: usize, wait: Duration) -> Result<Poll, SourceError> {
            let mut out = if self.release.load(Ordering::SeqCst) {
                self.take(1, max)
            } else {
                Vec::new()
            };
            let n = max - out.len();
            out.extend(self.take(0, n));
            if out.is_empty() {
                if self.bulk.is_empty() && self.urgent.is_empty() {
                    return Ok(Poll::Finished);
                }
                std::thread::sleep(wait.min(Duration::from_millis(5)));
                return Ok(Poll::Idle);
            }
            Ok(Poll::Records(out))
        }
        fn poll_urgent(&mut self, max: usize, _: usize) -> Result<Vec<Record>, SourceError> {
            if !self.release.load(Ordering::SeqCst) {
                return Ok(Vec::new());
            }
            Ok(self.take(1, max))
        }
        fn ack(&mut self, tokens: &[AckToken]) -> Result<(), SourceError> {
            self.acks.ack(tokens);
            let mut p = self.progress.lock().unwrap();
            p.0 = self.acks.watermark(0);
            p.1 = self.acks.watermark(1);
            if p.1 == self.urgent_total && p.2.is_none() {
                p.2 = Some(p.0);
            }
            Ok(())
        }
    }

    /// The `accepted` receipts' tracking codes, in the order the sinks
    /// were handed them.
    struct Codes(Arc<Mutex<Vec<u64>>>);

    impl Sink for Codes {
        fn handled(
            &mut self,
            batch: &[crate::sink::Handled],
        ) -> Result<(), crate::sink::SinkError> {
            let mut codes = self.0.lock().unwrap();
            for h in batch {
                if let Some(karpoosheh_schemas::ReceiptEvent::Accepted { tracking_code, .. }) =
                    h.receipt.as_ref().map(|r| &r.event)
                {
                    codes.push(tracking_code.as_u64());
                }
            }
            Ok(())
        }
    }

    /// With a bulk backlog filling every queue of a busy store, urgent
    /// records overtake it: stored and acknowledged while most of the
    /// backlog still waits. Also with the byte budget spent. Tracking
    /// codes still reach the sinks in increasing order (the receipts sink
    /// counts on it: `sink::accepted_out`).
    #[test]
    fn urgent_records_overtake_a_bulk_backlog_in_every_queue() {
        const BULK: usize = 40_000;
        const URGENT: usize = 20;
        let payload = |i: usize, reference: String| {
            super::tests::envelope("tax", &reference, person(300_300_000 + i as u32 * 7))
        };
        for budget in [
            karpoosheh_schemas::ByteSize::mib(64),
            karpoosheh_schemas::ByteSize::mib(2),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let store = Arc::new(
                Faulty::new(fjall_store(dir.path())).slowed_writes(Duration::from_micros(50)),
            );
            let mut acks = AckTracker::default();
            acks.start_lane(0, 0);
            acks.start_lane(1, 0);
            let release = Arc::new(AtomicBool::new(false));
            let progress = Arc::new(Mutex::new((0, 0, None)));
            let source = Laned {
                bulk: (0..BULK).map(|i| payload(i, format!("bulk-{i}"))).collect(),
                urgent: (0..URGENT)
                    .map(|i| payload(BULK + i, format!("urgent-{i}")))
                    .collect(),
                release: release.clone(),
                seq: [0, 0],
                acks,
                urgent_total: URGENT as u64,
                progress: progress.clone(),
            };
            // Deep queues: without lanes, the urgent records would wait
            // behind all the backlog read before them.
            let cfg = PipelineConfig {
                queue_depth: 16,
                max_bytes_in_flight: budget,
                ..PipelineConfig::default()
            };
            let codes = Arc::new(Mutex::new(Vec::new()));
            let pipeline = Pipeline::new(
                cfg,
                Limits::default(),
                0,
                store.clone(),
                vec![Box::new(Codes(codes.clone()))],
            );
            let run = std::thread::spawn(move || pipeline.run(Box::new(source)));
            let t = Instant::now();
            while progress.lock().unwrap().0 < 3_000 && t.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(2));
            }
            let at_release = progress.lock().unwrap().0;
            release.store(true, Ordering::SeqCst);
            let summary = run.join().unwrap().unwrap();
            assert_eq!(summary.records, (BULK + URGENT) as u64);
            let (bulk, urgent, bulk_when_urgent_done) = *progress.lock().unwrap();
            assert_eq!(
                (bulk, urgent),
                (BULK as u64, URGENT as u64),
                "everything acknowledged"
            );
            let when = bulk_when_urgent_done.expect("the urgent records were acknowledged");
            // Each urgent record waited for at most the writes under way
            // when it came (a group of up to 4,000 notices being written
            // and one being answered), not for the backlog in the queues.
            assert!(
                when <= at_release + 12_000,
                "budget {budget:?}: the urgent records were done when {when} bulk ones were \
                 (released at {at_release}): they waited behind the backlog"
            );
            let agency = AgencyId::parse("tax").unwrap();
            // Stored with their lane, for their rounds.
            let lane = |reference: &str| {
                let code = store.reference(&agency, reference).unwrap().unwrap();
                crate::store::DeliveryStore::delivery(&*store, code)
                    .unwrap()
                    .unwrap()
                    .priority
            };
            for i in 0..URGENT {
                assert_eq!(lane(&format!("urgent-{i}")), Priority::Urgent);
            }
            assert_eq!(lane("bulk-7"), Priority::Bulk);
            let codes = codes.lock().unwrap();
            assert_eq!(codes.len(), BULK + URGENT);
            assert!(
                codes.windows(2).all(|w| w[0] < w[1]),
                "tracking codes reached the sinks out of order"
            );
        }
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;
    use crate::source::MemorySource;
    use crate::store::conformance::fjall_store;
    use std::sync::Mutex;

    /// A source that counts the payload bytes it handed out and not yet
    /// had acknowledged, and the most there ever were.
    struct Counting {
        inner: MemorySource,
        out: Arc<Mutex<(usize, usize)>>,
    }

    impl Source for Counting {
        fn kind(&self) -> &'static str {
            "memory"
        }
        fn describe(&self) -> String {
            "counting".into()
        }
        fn poll(
            &mut self,
            max: usize,
            max_bytes: usize,
            wait: Duration,
        ) -> Result<Poll, SourceError> {
            let p = self.inner.poll(max, max_bytes, wait)?;
            if let Poll::Records(r) = &p {
                let mut o = self.out.lock().unwrap();
                o.0 += r.iter().map(|r| r.payload.len()).sum::<usize>();
                o.1 = o.1.max(o.0);
            }
            Ok(p)
        }
        fn ack(&mut self, tokens: &[AckToken]) -> Result<(), SourceError> {
            self.out.lock().unwrap().0 -= tokens.iter().map(|t| t.bytes as usize).sum::<usize>();
            self.inner.ack(tokens)
        }
    }

    #[test]
    fn large_records_are_held_to_the_byte_budget_and_all_get_through() {
        let dir = tempfile::tempdir().unwrap();
        let store = fjall_store(&dir.path().join("store"));
        // 400 records of 200 KiB (rejected: their body is too large), 80
        // MB in all, against a 2 MiB budget: ten records at a time.
        let record = 200 << 10;
        let payloads: Vec<Vec<u8>> = (0..400)
            .map(|i| {
                let mut v = format!("{{\"reference\":\"big-{i}\",\"body\":\"").into_bytes();
                v.resize(record - 2, b'x');
                v.extend_from_slice(b"\"}");
                v
            })
            .collect();
        let (tx, source) = MemorySource::channel(400, None);
        assert!(tx.send(payloads));
        drop(tx);
        let out = Arc::new(Mutex::new((0, 0)));
        let cfg = PipelineConfig {
            max_bytes_in_flight: karpoosheh_schemas::ByteSize::mib(2),
            ..PipelineConfig::default()
        };
        let pipeline = Pipeline::new(cfg, Limits::default(), 0, store, vec![]);
        let summary = pipeline
            .run(Box::new(Counting {
                inner: source,
                out: out.clone(),
            }))
            .unwrap();
        assert_eq!(summary.records, 400);
        let (left, most) = *out.lock().unwrap();
        assert_eq!(left, 0, "every byte given back");
        assert!(
            most <= (2 << 20) + record,
            "at most the budget and one record in flight: {most}"
        );
        assert!(most >= 2 << 20, "the budget was used: {most}");
    }
}
