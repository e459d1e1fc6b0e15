//! The durable scheduler: scans the store's timers for due work, sends the
//! rounds through the channels, records what happened, and applies
//! confirmations and activations.
//!
//! Every change to one notice's follow-up is made by the worker that owns
//! the notice's timer shard, so a round, a confirmation and an expiry of
//! the same notice never race: confirmations and activations are handed to
//! that worker as commands. A worker's scan of due timers and the commands
//! it took are recorded in one durable store write. Each worker has a
//! second thread for its urgent notices' timers (`urgent_worker`): a
//! command for an urgent notice whose round that thread is sending waits
//! for its write; inbox acts are merged into every scan's write.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crossbeam_channel::{bounded, Receiver, Sender};
use karpoosheh_schemas::{
    Channel, Confirmation, MailboxId, MailboxProfile, MailboxStatus, Priority, Reason,
    ReceiptEvent, TrackingCode,
};

use super::acts::{apply_act, apply_cancel, ActOutcome, CancelOutcome, InboxAct};
use super::confirm::{apply_confirmation, ConfirmOutcome};
use super::{add, reschedule, Clock, DeliveryConfig, QuietHours};
use crate::channel::{channel_label, Delivery, Notification, Target};
use crate::internal_events::{
    ConfirmationApplied, ConfirmationsInterrupted, DeliveryOutcome, LaneLag, NoticesResumed,
    RoundFinished, SchedulerScanned, SchedulerStarted, SchedulerStoreFailed, StoreRetry,
};
use crate::model::{
    may_confirm_for, timer_slot, Action, DeliveryRecord, DeliveryState, DeliveryWrite, Pending,
    Queue, RoundDelivery, RoundRecord, Timer, TimerKind, AGENCY_QUEUES, TIMER_SHARDS, TIMER_SLOTS,
};
use crate::store::{Store, StoreError};

/// Sends one notification to one person over their channels (the
/// channels' `Dispatcher`, or a test double).
pub trait Notify: Send + Sync {
    fn deliver(&self, n: &Notification, targets: &[Target]) -> Delivery;
}

impl Notify for crate::channel::Dispatcher {
    fn deliver(&self, n: &Notification, targets: &[Target]) -> Delivery {
        crate::channel::Dispatcher::deliver(self, n, targets)
    }
}

/// Where the scheduler reads mailbox profiles.
pub trait Registry: Send + Sync {
    fn profile(&self, id: MailboxId) -> Result<Option<MailboxProfile>, StoreError>;
}

/// The store's own registry: profiles consumed from `karpoosheh.registry`.
pub struct StoreRegistry(pub Arc<dyn Store>);

impl Registry for StoreRegistry {
    fn profile(&self, id: MailboxId) -> Result<Option<MailboxProfile>, StoreError> {
        self.0.profile(id)
    }
}

/// A notification a channel accepted, after it was recorded durably (the
/// demo's simulated recipients listen to these).
#[derive(Debug, Clone)]
pub struct SentNotification {
    pub code: TrackingCode,
    pub recipient: MailboxId,
    pub round: u8,
    pub to_representative: bool,
    pub channel: Channel,
    pub at: DateTime<Utc>,
}

/// Work handed to the worker owning a notice.
enum Command {
    Confirm(
        Vec<Confirmation>,
        Sender<Vec<(usize, ConfirmOutcome)>>,
        Vec<usize>,
    ),
    Activate(Vec<TrackingCode>, Sender<()>),
    /// The sending agency cancels a scheduled send; answered with the
    /// notice's recipient, from the record the decision read.
    Cancel(TrackingCode, Sender<(CancelOutcome, Option<MailboxId>)>),
}

/// What one worker's write lock guards.
#[derive(Default)]
struct OwnerState {
    /// Notices of its shards that an inbox act changed since the worker's
    /// thread last wrote a scan (see [`SchedulerHandle::act`]).
    changed: std::collections::HashSet<TrackingCode>,
    /// The same since its urgent thread last wrote a scan.
    changed_urgent: std::collections::HashSet<TrackingCode>,
    /// Urgent notices the urgent thread has read and not yet written:
    /// a command (confirmation, activation) for one waits for that write.
    in_flight: std::collections::HashSet<TrackingCode>,
}

/// One worker's write lock: held to write, never while a round is sent.
#[derive(Default)]
struct Owner {
    state: Mutex<OwnerState>,
    /// Told when the urgent thread's notices in flight are written.
    written: std::sync::Condvar,
}

fn lock(o: &Owner) -> std::sync::MutexGuard<'_, OwnerState> {
    o.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// The urgent thread's notices in flight, taken out of the set (and the
/// waiting commands told) when the scan ends, written or failed.
struct InFlight<'a> {
    owner: &'a Owner,
    codes: Vec<TrackingCode>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut st = lock(self.owner);
        for c in &self.codes {
            st.in_flight.remove(c);
        }
        drop(st);
        self.owner.written.notify_all();
    }
}

/// Every so often a worker scans a shard from its start. Timers this
/// process writes behind a cursor (a notice accepted a moment before the
/// scan that moved the cursor past it) come back with the next scan anyway
/// (see `Store::due_timers`); this is the net for what another process
/// wrote (a node completing another's interrupted notice on a shared
/// store).
const FULL_SCAN_EVERY: Duration = Duration::from_secs(60);

/// A slot whose last scan found nothing due is read again after this
/// long, or at once when the store says a timer was written into it
/// (round 1 of a notice just accepted). A lane has seven agencies'
/// queues, most of them idle most of the time: on ScyllaDB each read is a
/// query. A timer written long before it falls due (a later round, an
/// expiry) is then at most this late.
const IDLE_RESCAN: Duration = Duration::from_secs(1);

/// Where each slot's next scan starts: just after what was last handled,
/// so a scan does not walk the deleted timers at the head of the slot.
struct Cursor {
    from_ms: i64,
    last_full: Option<Instant>,
    /// How late the oldest timer of the slot's last scan was; `None`
    /// when it found none due.
    lag: Option<Duration>,
    /// When a scan last found nothing due, if the last scan did.
    idle_since: Option<Instant>,
}

/// The lag of `lane` over `shards` in the last pass: the largest of
/// their slots' (zero when none had a timer due), as a gauge.
fn lane_lag(worker: usize, lane: Priority, shards: &[u8], cursors: &[Cursor]) {
    let lag = shards
        .iter()
        .flat_map(|&s| Queue::all(lane).map(move |q| timer_slot(s, q)))
        .filter_map(|slot| cursors[slot as usize].lag)
        .max()
        .unwrap_or(Duration::ZERO);
    LaneLag { worker, lane, lag }.emit();
}

const QUEUES: usize = AGENCY_QUEUES as usize;

/// How many due timers each agencies' queue of a lane may take in one
/// pass over a shard: `base` shared in proportion to the weights of the
/// queues that had rounds due there in the last pass, each queue counting
/// itself — a queue alone takes all of `base`, so a lone campaign goes at
/// full speed, and none takes less than one.
fn queue_limits(base: usize, weights: &[u64; QUEUES], had: &[bool; QUEUES]) -> [usize; QUEUES] {
    let busy: u64 = (0..QUEUES).filter(|&q| had[q]).map(|q| weights[q]).sum();
    std::array::from_fn(|q| {
        let total = busy + if had[q] { 0 } else { weights[q] };
        ((base as u64 * weights[q]).div_ceil(total.max(1)) as usize).max(1)
    })
}

/// Runs `f` on every item on up to `threads` threads (a notice's step
/// mostly waits on a gateway), results in the items' order. Plain threads
/// that block while they wait: a work-stealing pool's idle threads spin,
/// and dozens of them spinning starve two cores.
fn fan_out<T: Sync, R: Send>(threads: usize, items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let n = threads.min(items.len());
    if n <= 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        mine.push((i, f(item)));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// Keeps in `rec` the openings and shares an inbox act wrote to `stored`
/// after `rec` was read: both only grow (a share is withdrawn by setting
/// its `revoked_at`, never removed).
fn keep_acts(rec: &mut DeliveryRecord, stored: &DeliveryRecord) {
    for o in &stored.opened {
        if !rec
            .opened
            .iter()
            .any(|x| x.by_representative == o.by_representative)
        {
            rec.opened.push(o.clone());
        }
    }
    for sh in &stored.shares {
        match rec.shares.iter_mut().find(|x| x.share_id == sh.share_id) {
            Some(x) => {
                if x.revoked_at.is_none() {
                    x.revoked_at = sh.revoked_at;
                }
            }
            None => rec.shares.push(sh.clone()),
        }
    }
}

/// Runs a worker's loop `f` until shutdown. A store error (a cluster node
/// restarting, a timeout) interrupts one pass, never the worker: back off,
/// then scan from the start of every slot, since a failed pass may have
/// left timers behind its cursors. A store that refuses every write
/// (fjall after a failed journal write) ends the worker: no retry gets
/// past it, and the node watching `failed()` stops for a restart.
fn supervise(
    w: usize,
    lane: &'static str,
    shutdown: &AtomicBool,
    mut f: impl FnMut() -> Result<(), StoreError>,
) {
    let mut backoff = Duration::from_millis(100);
    while !shutdown.load(Ordering::SeqCst) {
        match f() {
            Ok(()) => return,
            Err(e) if e.is_fatal() => {
                SchedulerStoreFailed {
                    worker: w,
                    lanes: lane,
                    error: &e,
                }
                .emit();
                return;
            }
            Err(e) => {
                StoreRetry {
                    worker: w,
                    lanes: lane,
                    error: &e,
                    after: backoff,
                }
                .emit();
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The scheduler's parts.
pub struct Scheduler {
    pub config: DeliveryConfig,
    pub store: Arc<dyn Store>,
    pub notifier: Arc<dyn Notify>,
    pub registry: Arc<dyn Registry>,
    pub clock: Arc<dyn Clock>,
    /// Told about accepted notifications after they are recorded.
    pub observer: Option<Sender<Vec<SentNotification>>>,
    /// The agency registry, for each agency's `rounds_per_second`; `None`:
    /// rounds are not paced per agency.
    pub agencies: Option<crate::agencies::AgencyRegistry>,
}

/// One per timer slot (a shard in a queue), indexed by slot.
fn cursors() -> Vec<Cursor> {
    (0..TIMER_SLOTS)
        .map(|_| Cursor {
            from_ms: i64::MIN,
            last_full: None,
            lag: None,
            idle_since: None,
        })
        .collect()
}

/// A running scheduler: send it confirmations and activations; stop it.
pub struct SchedulerHandle {
    commands: Vec<Sender<Command>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    shutdown: Arc<AtomicBool>,
    workers: usize,
    acts: Option<Sender<ActRequest>>,
}

/// An inbox act handed to the acts thread, with where its outcome goes.
type ActRequest = (
    TrackingCode,
    InboxAct,
    Sender<Result<ActOutcome, StoreError>>,
);

/// Why the scheduler could not take work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchedulerError {
    #[error("the scheduler has stopped (shutdown)")]
    Stopped,
    /// A store error interrupted this work; it was not (wholly) applied
    /// and may be handed in again (confirmations and activations are
    /// idempotent).
    #[error("a store error interrupted the scheduler's work; retry it")]
    Interrupted,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The worker (of `workers`) that owns `code`'s timer shard.
fn owner_of(code: TrackingCode, workers: usize) -> usize {
    Timer::shard_of(code) as usize % workers
}

impl SchedulerHandle {
    fn worker_of(&self, code: TrackingCode) -> usize {
        owner_of(code, self.workers)
    }

    /// Applies confirmations; returns one outcome per confirmation, in
    /// order, once they are durable.
    pub fn confirm(&self, batch: Vec<Confirmation>) -> Result<Vec<ConfirmOutcome>, SchedulerError> {
        let n = batch.len();
        let mut per: Vec<(Vec<Confirmation>, Vec<usize>)> = vec![Default::default(); self.workers];
        for (i, c) in batch.into_iter().enumerate() {
            let w = self.worker_of(c.tracking_code);
            per[w].0.push(c);
            per[w].1.push(i);
        }
        let (tx, rx) = bounded(self.workers);
        let mut asked = 0;
        for (w, (cs, idx)) in per.into_iter().enumerate() {
            if cs.is_empty() {
                continue;
            }
            self.commands[w]
                .send(Command::Confirm(cs, tx.clone(), idx))
                .map_err(|_| SchedulerError::Stopped)?;
            asked += 1;
        }
        let mut out = vec![ConfirmOutcome::Duplicate; n];
        for _ in 0..asked {
            for (i, o) in rx.recv().map_err(|_| self.dropped())? {
                out[i] = o;
            }
        }
        Ok(out)
    }

    /// Cancels a scheduled send for its agency, by the worker owning the
    /// notice (a state change: it must not race the notice's release);
    /// returns once it is durable, with the notice's recipient (`None`
    /// when there is no such notice).
    pub fn cancel(
        &self,
        code: TrackingCode,
    ) -> Result<(CancelOutcome, Option<MailboxId>), SchedulerError> {
        let (tx, rx) = bounded(1);
        self.commands[self.worker_of(code)]
            .send(Command::Cancel(code, tx))
            .map_err(|_| SchedulerError::Stopped)?;
        rx.recv().map_err(|_| self.dropped())
    }

    /// Records an inbox app's act on a notice ([`InboxAct`]); returns
    /// once it is durable. It does not wait for the worker that owns the
    /// notice to finish its scan batch (rounds wait on gateways): the acts
    /// thread writes it, with every other act waiting then, in one durable
    /// write (a group commit), under the owning workers' write locks, which
    /// a worker holds only to write; it marks the notices changed, and the
    /// worker's next write re-reads a changed notice's openings and shares
    /// and keeps them (they only grow), so neither write is lost.
    pub fn act(&self, code: TrackingCode, act: InboxAct) -> Result<ActOutcome, SchedulerError> {
        let (tx, rx) = bounded(1);
        self.acts
            .as_ref()
            .ok_or(SchedulerError::Stopped)?
            .send((code, act, tx))
            .map_err(|_| SchedulerError::Stopped)?;
        match rx.recv() {
            Ok(Ok(o)) => Ok(o),
            Ok(Err(e)) => Err(SchedulerError::Store(e)),
            Err(_) => Err(self.dropped()),
        }
    }

    /// [`SchedulerHandle::confirm`], retried while a store error interrupts
    /// it (confirmations are idempotent by ID) until `stop` is set. False
    /// when the scheduler stopped or `stop` was set first.
    pub fn confirm_until_done(&self, batch: Vec<Confirmation>, stop: &AtomicBool) -> bool {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.confirm(batch.clone()) {
                Ok(_) => return true,
                Err(SchedulerError::Interrupted) if !stop.load(Ordering::SeqCst) => {
                    ConfirmationsInterrupted { retry_in: backoff }.emit();
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(_) => return false,
            }
        }
    }

    /// Starts the rounds of notices waiting for these mailboxes, if their
    /// profiles (already stored) now make them reachable. Returns once done.
    pub fn profiles_updated(
        &self,
        store: &dyn Store,
        ids: &[MailboxId],
    ) -> Result<(), SchedulerError> {
        let mut per: Vec<Vec<TrackingCode>> = vec![Vec::new(); self.workers];
        for &id in ids {
            loop {
                let codes = store.awaiting_activation(id, 10_000)?;
                let full = codes.len() == 10_000;
                for c in codes {
                    per[self.worker_of(c)].push(c);
                }
                if !full {
                    break;
                }
                // Very rare: flush this much before reading on.
                self.activate(std::mem::replace(&mut per, vec![Vec::new(); self.workers]))?;
            }
        }
        self.activate(per)
    }

    fn activate(&self, per: Vec<Vec<TrackingCode>>) -> Result<(), SchedulerError> {
        let (tx, rx) = bounded(self.workers);
        let mut asked = 0;
        for (w, codes) in per.into_iter().enumerate() {
            if codes.is_empty() {
                continue;
            }
            self.commands[w]
                .send(Command::Activate(codes, tx.clone()))
                .map_err(|_| SchedulerError::Stopped)?;
            asked += 1;
        }
        for _ in 0..asked {
            rx.recv().map_err(|_| self.dropped())?;
        }
        Ok(())
    }

    /// A worker dropped a command without answering: it is stopping, or a
    /// store error interrupted the command (the worker retries on its own).
    fn dropped(&self) -> SchedulerError {
        if self.shutdown.load(Ordering::SeqCst) {
            SchedulerError::Stopped
        } else {
            SchedulerError::Interrupted
        }
    }

    /// Whether a worker has ended before it was stopped: it panicked, or
    /// the store refuses every write ([`StoreError::is_fatal`]; other store
    /// errors are retried). The node should stop: `karpoosheh run` and the
    /// demo watch this.
    pub fn failed(&self) -> bool {
        !self.shutdown.load(Ordering::SeqCst) && self.threads.iter().any(|t| t.is_finished())
    }

    /// Stops the workers after their current batch.
    pub fn stop(mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.commands.clear();
        // The acts thread ends when its channel closes.
        self.acts = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Scheduler {
    /// Starts `config.workers` worker threads.
    pub fn start(self) -> std::io::Result<SchedulerHandle> {
        let workers = self.config.workers;
        SchedulerStarted { workers }.emit();
        let shared = Arc::new(self);
        let shutdown = Arc::new(AtomicBool::new(false));
        let owners: Arc<Vec<Owner>> = Arc::new((0..workers).map(|_| Owner::default()).collect());
        let mut commands = Vec::new();
        let mut threads = Vec::new();
        for w in 0..workers {
            let (tx, rx) = bounded::<Command>(64);
            commands.push(tx);
            let shards: Vec<u8> = (0..TIMER_SHARDS)
                .filter(|s| *s as usize % workers == w)
                .collect();
            let fan = shared.config.concurrency;
            {
                let (me, shutdown, owners, shards) = (
                    shared.clone(),
                    shutdown.clone(),
                    owners.clone(),
                    shards.clone(),
                );
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("scheduler-{w}"))
                        .spawn(move || {
                            supervise(w, "normal and bulk", &shutdown, || {
                                me.worker(w, &shards, &rx, fan, &shutdown, &owners[w])
                            })
                        })?,
                );
            }
            let (me, shutdown, owners) = (shared.clone(), shutdown.clone(), owners.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("scheduler-{w}-urgent"))
                    .spawn(move || {
                        supervise(w, "urgent", &shutdown, || {
                            me.urgent_worker(w, &shards, fan, &shutdown, &owners[w])
                        })
                    })?,
            );
        }
        let (acts_tx, acts_rx) = bounded::<ActRequest>(4096);
        {
            let me = shared.clone();
            let owners = owners.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("scheduler-acts".into())
                    .spawn(move || me.acts(&acts_rx, &owners, workers))?,
            );
        }
        Ok(SchedulerHandle {
            commands,
            threads,
            shutdown,
            workers,
            acts: Some(acts_tx),
        })
    }

    fn worker(
        &self,
        worker: usize,
        shards: &[u8],
        commands: &Receiver<Command>,
        threads: usize,
        shutdown: &AtomicBool,
        owner: &Owner,
    ) -> Result<(), StoreError> {
        let poll = self.config.poll_interval.0;
        let mut cursors: Vec<Cursor> = cursors();
        let mut normal_due = [false; TIMER_SHARDS as usize];
        // Commands first, and again before each shard's scan: a
        // confirmation, or a person opening a notice in their app, waits
        // for at most one scan batch of rounds, not a pass over every shard.
        let take = |did: &mut usize| -> Result<(), StoreError> {
            let mut cmds = Vec::new();
            while let Ok(c) = commands.try_recv() {
                cmds.push(c);
                if cmds.len() >= 1024 {
                    break;
                }
            }
            if !cmds.is_empty() {
                *did += self.run_commands(cmds, owner)?;
            }
            Ok(())
        };
        let batch = self.config.batch;
        // A bulk batch while normal work is due: a quarter of one, so
        // normal notices go first without a campaign ever stopping.
        let bulk_behind_normal = (batch / 4).max(1);
        // Per lane (normal, bulk) and shard: which agencies' queues had
        // rounds due in the last pass (they share the lane's batch).
        let mut had = vec![[false; QUEUES]; 2 * TIMER_SHARDS as usize];
        while !shutdown.load(Ordering::SeqCst) {
            let mut did = 0;
            let weights = self.queue_weights();
            // The urgent slots are the urgent thread's (`urgent_worker`).
            for &shard in shards {
                for (i, lane) in [Priority::Normal, Priority::Bulk].into_iter().enumerate() {
                    let base = if lane == Priority::Bulk && normal_due[shard as usize] {
                        bulk_behind_normal
                    } else {
                        batch
                    };
                    let had = &mut had[i * TIMER_SHARDS as usize + shard as usize];
                    let limits = queue_limits(base, &weights, had);
                    for q in Queue::all(lane) {
                        take(&mut did)?;
                        let slot = timer_slot(shard, q);
                        let qi = q.index as usize;
                        let n = self.scan(
                            slot,
                            limits[qi],
                            threads,
                            &mut cursors[slot as usize],
                            false,
                            owner,
                            false,
                        )?;
                        had[qi] = n > 0;
                        did += n;
                    }
                    if lane == Priority::Normal {
                        normal_due[shard as usize] = had.iter().any(|&h| h);
                    }
                }
            }
            lane_lag(worker, Priority::Normal, shards, &cursors);
            lane_lag(worker, Priority::Bulk, shards, &cursors);
            if did == 0 {
                // No scan of this thread in flight: the marks can go.
                lock(owner).changed.clear();
                match commands.recv_timeout(poll) {
                    Ok(c) => {
                        self.run_commands(vec![c], owner)?;
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                        std::thread::sleep(poll);
                    }
                }
            }
        }
        Ok(())
    }

    /// The acts thread: takes every act waiting (up to 1024), writes them
    /// in one durable write under the write locks of the workers owning
    /// their notices, answers each. Ends when the handle is gone.
    fn acts(&self, rx: &Receiver<ActRequest>, owners: &[Owner], workers: usize) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < 1024 {
                match rx.try_recv() {
                    Ok(a) => batch.push(a),
                    Err(_) => break,
                }
            }
            // Locks in worker order: no two lockers wait on each other.
            let mut wanted: Vec<usize> = batch
                .iter()
                .map(|(c, _, _)| owner_of(*c, workers))
                .collect();
            wanted.sort_unstable();
            wanted.dedup();
            let mut guards: Vec<_> = wanted.iter().map(|&w| (w, lock(&owners[w]))).collect();
            let now = self.clock.now();
            let mut work: BTreeMap<TrackingCode, (DeliveryRecord, DeliveryWrite)> = BTreeMap::new();
            let mut answers = Vec::with_capacity(batch.len());
            let mut failed = None;
            for (code, act, reply) in batch {
                let o = (|| {
                    let notice = match act {
                        InboxAct::Share { .. } => self.store.notice(code)?,
                        _ => None,
                    };
                    let (rec, w) = match work.entry(code) {
                        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::btree_map::Entry::Vacant(v) => {
                            match self.store.delivery(code)? {
                                None => return Ok(ActOutcome::Missing),
                                Some(rec) => v.insert((rec, DeliveryWrite::default())),
                            }
                        }
                    };
                    Ok(apply_act(rec, w, &act, notice.as_ref(), now))
                })();
                match o {
                    Ok(o) => answers.push((reply, Ok(o))),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            let writes: Vec<DeliveryWrite> = work
                .into_iter()
                .filter(|(_, (_, w))| !w.receipts.is_empty())
                .map(|(code, (rec, mut w))| {
                    for (wk, g) in guards.iter_mut() {
                        if *wk == owner_of(code, workers) {
                            g.changed.insert(code);
                            g.changed_urgent.insert(code);
                        }
                    }
                    w.record = Some(rec);
                    w
                })
                .collect();
            if !writes.is_empty() {
                if let Err(e) = self.store.write_delivery(&writes) {
                    failed = Some(e);
                }
            }
            drop(guards);
            for (reply, o) in answers {
                let _ = reply.send(match &failed {
                    None => o,
                    // Not applied: the caller may try again (acts are
                    // idempotent).
                    Some(e) => Err(StoreError::Io(std::io::Error::other(e.to_string()))),
                });
            }
        }
    }

    /// Processes every due timer now, on the calling thread, until none is
    /// left; for tests and benchmarks driven by a manual clock. Returns the
    /// number of timers handled.
    pub fn run_due(&self) -> Result<usize, StoreError> {
        SchedulerStarted { workers: 1 }.emit();
        let threads = self.config.concurrency.min(8);
        let mut cursors: Vec<Cursor> = cursors();
        let mut total = 0;
        let mut full = false;
        let owner = Owner::default();
        let mut had = vec![[false; QUEUES]; Priority::ALL.len() * TIMER_SHARDS as usize];
        loop {
            let mut n = 0;
            let weights = self.queue_weights();
            // Urgent first, then normal, then bulk; each lane's agencies'
            // queues sharing its batch as the workers' passes do.
            for (i, lane) in Priority::ALL.into_iter().enumerate() {
                for shard in 0..TIMER_SHARDS {
                    let had = &mut had[i * TIMER_SHARDS as usize + shard as usize];
                    let limits = queue_limits(self.config.batch, &weights, had);
                    for q in Queue::all(lane) {
                        let slot = timer_slot(shard, q);
                        let c = &mut cursors[slot as usize];
                        let qi = q.index as usize;
                        let got = self.scan(slot, limits[qi], threads, c, full, &owner, false)?;
                        had[qi] = got > 0;
                        n += got;
                    }
                }
            }
            total += n;
            match (n, full) {
                (0, true) => return Ok(total),
                // Nothing after the cursors: one pass from the start of
                // every shard before saying nothing is due.
                (0, false) => full = true,
                _ => full = false,
            }
        }
    }

    /// Applies confirmations directly (no running workers); for tests.
    pub fn confirm_now(&self, batch: Vec<Confirmation>) -> Result<Vec<ConfirmOutcome>, StoreError> {
        let (tx, rx) = bounded(1);
        let idx = (0..batch.len()).collect();
        self.run_commands(vec![Command::Confirm(batch, tx, idx)], &Owner::default())?;
        let mut out: Vec<(usize, ConfirmOutcome)> = rx.recv().unwrap_or_default();
        out.sort_by_key(|x| x.0);
        Ok(out.into_iter().map(|x| x.1).collect())
    }

    /// Cancels a scheduled send directly (no running workers); for tests.
    pub fn cancel_now(&self, code: TrackingCode) -> Result<CancelOutcome, StoreError> {
        let (tx, rx) = bounded(1);
        self.run_commands(vec![Command::Cancel(code, tx)], &Owner::default())?;
        Ok(rx.recv().map_or(CancelOutcome::Missing, |(o, _)| o))
    }

    /// Activates waiting notices directly (no running workers); for tests.
    pub fn activate_now(&self, ids: &[MailboxId]) -> Result<(), StoreError> {
        let mut codes = Vec::new();
        for &id in ids {
            codes.extend(self.store.awaiting_activation(id, usize::MAX)?);
        }
        let (tx, _rx) = bounded(1);
        self.run_commands(vec![Command::Activate(codes, tx)], &Owner::default())?;
        Ok(())
    }

    /// Applies commands under the worker's write lock: from the records'
    /// reads to their write, no inbox act comes between.
    fn run_commands(&self, cmds: Vec<Command>, owner: &Owner) -> Result<usize, StoreError> {
        let codes: Vec<TrackingCode> = cmds
            .iter()
            .flat_map(|c| match c {
                Command::Confirm(cs, _, _) => cs.iter().map(|c| c.tracking_code).collect(),
                Command::Activate(codes, _) => codes.clone(),
                Command::Cancel(code, _) => vec![*code],
            })
            .collect();
        // An urgent notice whose round is being sent is written first.
        let mut writing = lock(owner);
        while codes.iter().any(|c| writing.in_flight.contains(c)) {
            writing = owner
                .written
                .wait(writing)
                .unwrap_or_else(|p| p.into_inner());
        }
        let now = self.clock.now();
        let mut work: BTreeMap<TrackingCode, (DeliveryRecord, DeliveryWrite)> = BTreeMap::new();
        let mut replies_c = Vec::new();
        let mut replies_a = Vec::new();
        let mut replies_x = Vec::new();
        let mut cancelled = Vec::new();
        let mut n = 0;
        for cmd in cmds {
            match cmd {
                Command::Confirm(cs, reply, idx) => {
                    let mut outs = Vec::with_capacity(cs.len());
                    let mut seen_ids = std::collections::HashSet::new();
                    for (c, i) in cs.into_iter().zip(idx) {
                        n += 1;
                        let dup = !seen_ids.insert(c.confirmation_id.clone())
                            || self.store.confirmation(&c.confirmation_id)?.is_some();
                        let o = if dup {
                            ConfirmOutcome::Duplicate
                        } else {
                            let entry = match work.get_mut(&c.tracking_code) {
                                Some(e) => Some(e),
                                None => match self.store.delivery(c.tracking_code)? {
                                    Some(r) => Some(
                                        work.entry(c.tracking_code)
                                            .or_insert((r, DeliveryWrite::default())),
                                    ),
                                    None => None,
                                },
                            };
                            match entry {
                                None => ConfirmOutcome::Rejected(Reason::UnknownNotice),
                                Some((rec, w)) => {
                                    let profile = self.registry.profile(rec.recipient)?;
                                    let status = profile.as_ref().map(|p| p.status);
                                    // Representatives whose delegation lets
                                    // them confirm this agency's notices now.
                                    let reps: Vec<MailboxId> = profile
                                        .as_ref()
                                        .map(|p| {
                                            p.representatives
                                                .iter()
                                                .copied()
                                                .filter(|&r| {
                                                    may_confirm_for(p, r, &rec.agency, now)
                                                })
                                                .collect()
                                        })
                                        .unwrap_or_default();
                                    let o = apply_confirmation(rec, w, &c, &reps, status, now);
                                    if matches!(o, ConfirmOutcome::Applied { .. }) {
                                        ConfirmationApplied {
                                            agency: &rec.agency,
                                        }
                                        .emit();
                                    }
                                    o
                                }
                            }
                        };
                        o.emit();
                        outs.push((i, o));
                    }
                    replies_c.push((reply, outs));
                }
                Command::Activate(codes, reply) => {
                    for code in codes {
                        n += 1;
                        let entry = match work.get_mut(&code) {
                            Some(e) => Some(e),
                            None => self
                                .store
                                .delivery(code)?
                                .map(|r| work.entry(code).or_insert((r, DeliveryWrite::default()))),
                        };
                        if let Some((rec, w)) = entry {
                            resume(rec, w, now);
                        }
                    }
                    replies_a.push(reply);
                }
                Command::Cancel(code, reply) => {
                    n += 1;
                    let entry = match work.get_mut(&code) {
                        Some(e) => Some(e),
                        None => self
                            .store
                            .delivery(code)?
                            .map(|r| work.entry(code).or_insert((r, DeliveryWrite::default()))),
                    };
                    let o = match entry {
                        None => (CancelOutcome::Missing, None),
                        Some((rec, w)) => {
                            let o = apply_cancel(rec, w, now);
                            if let CancelOutcome::Cancelled { new: true, .. } = o {
                                cancelled.push(rec.agency.clone());
                            }
                            (o, Some(rec.recipient))
                        }
                    };
                    replies_x.push((reply, o));
                }
            }
        }
        let writes: Vec<DeliveryWrite> = work
            .into_values()
            .map(|(rec, mut w)| {
                w.record = Some(rec);
                w
            })
            .collect();
        self.store.write_delivery(&writes)?;
        for (reply, outs) in replies_c {
            let _ = reply.send(outs);
        }
        for reply in replies_a {
            let _ = reply.send(());
        }
        for agency in cancelled {
            DeliveryOutcome::Cancelled { agency }.emit();
        }
        for (reply, o) in replies_x {
            let _ = reply.send(o);
        }
        Ok(n)
    }

    /// A worker's urgent lane, on a thread of its own: scans the urgent
    /// slots of `shards` while the worker's thread is busy with a batch of
    /// the other lanes — at a gateway's rate limit that batch takes
    /// seconds, and an urgent round must not wait for it. Its notices are
    /// marked in flight from their read to their write: a confirmation or
    /// an activation of one (applied by the worker's thread) waits for the
    /// write, and an inbox act's openings and shares are kept as in the
    /// worker's own scans. The lock itself is held only to mark and to
    /// write, never while a round is sent. The worker's own batches touch
    /// only normal and bulk notices.
    fn urgent_worker(
        &self,
        worker: usize,
        shards: &[u8],
        threads: usize,
        shutdown: &AtomicBool,
        owner: &Owner,
    ) -> Result<(), StoreError> {
        let poll = self.config.poll_interval.0;
        let mut cursors: Vec<Cursor> = cursors();
        while !shutdown.load(Ordering::SeqCst) {
            let mut did = 0;
            for &shard in shards {
                let slot = timer_slot(shard, Priority::Urgent);
                let c = &mut cursors[slot as usize];
                did += self.scan(slot, self.config.batch, threads, c, false, owner, true)?;
            }
            lane_lag(worker, Priority::Urgent, shards, &cursors);
            if did == 0 {
                // No scan of this thread in flight: the marks can go.
                lock(owner).changed_urgent.clear();
                std::thread::sleep(poll);
            }
        }
        Ok(())
    }

    /// One batch of at most `limit` due timers of one slot; returns how
    /// many were handled. The records are read without the worker's lock
    /// and written under it, keeping what an inbox act changed meanwhile.
    /// `urgent`: the urgent thread's scan, whose notices are marked in
    /// flight so that a command for one waits for the write (the worker's
    /// thread applies commands between its own scans).
    #[allow(clippy::too_many_arguments)]
    fn scan(
        &self,
        slot: u8,
        limit: usize,
        threads: usize,
        cursor: &mut Cursor,
        force_full: bool,
        owner: &Owner,
        urgent: bool,
    ) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let full = force_full
            || cursor
                .last_full
                .is_none_or(|t| t.elapsed() >= FULL_SCAN_EVERY);
        if !full
            && cursor.idle_since.is_some_and(|t| t.elapsed() < IDLE_RESCAN)
            && !self.store.timers_written(slot)
        {
            return Ok(0);
        }
        let from = if full { i64::MIN } else { cursor.from_ms };
        if full {
            cursor.last_full = Some(Instant::now());
        }
        let timers = self
            .store
            .due_timers(slot, from, now.timestamp_millis(), limit)?;
        let Some(last) = timers.last() else {
            cursor.lag = None;
            cursor.idle_since = Some(Instant::now());
            return Ok(0);
        };
        cursor.idle_since = None;
        // Earliest first: everything before `last` is handled (deleted or
        // moved) by this scan.
        cursor.from_ms = last.due_ms;
        let started = Instant::now();
        let oldest_due = timers.iter().map(|t| t.due_ms).min().unwrap_or(0);
        cursor.lag = Some(Duration::from_millis(
            (now.timestamp_millis() - oldest_due).max(0) as u64,
        ));
        let mut by_code: BTreeMap<TrackingCode, Vec<Timer>> = BTreeMap::new();
        for t in &timers {
            by_code.entry(t.code).or_default().push(*t);
        }
        let groups: Vec<(TrackingCode, Vec<Timer>)> = by_code.into_iter().collect();
        // Before the records are read: a command applied after this waits
        // for the write; one applied before is in what is read.
        let _in_flight = urgent.then(|| {
            let codes: Vec<TrackingCode> = groups.iter().map(|g| g.0).collect();
            lock(owner).in_flight.extend(codes.iter().copied());
            InFlight { owner, codes }
        });
        let results: Vec<Result<Step, StoreError>> =
            fan_out(threads, &groups, |(code, ts)| self.step(*code, ts, now));
        let mut writes = Vec::with_capacity(results.len());
        let mut sent = Vec::new();
        let mut outcomes = Vec::new();
        for r in results {
            let s = r?;
            writes.push(s.write);
            sent.extend(s.sent);
            outcomes.extend(s.outcomes);
        }
        {
            // The records were read before the rounds went out: an inbox
            // act may have written one since. Its openings and shares are
            // kept (they only grow). Each thread clears its own marks: a
            // mark matters only to a scan in flight, and each thread has
            // one at a time.
            let mut st = lock(owner);
            let st = &mut *st;
            let changed = if urgent {
                &mut st.changed_urgent
            } else {
                &mut st.changed
            };
            for w in &mut writes {
                if let Some(rec) = w.record.as_mut() {
                    if changed.contains(&rec.tracking_code) {
                        if let Some(stored) = self.store.delivery(rec.tracking_code)? {
                            keep_acts(rec, &stored);
                        }
                    }
                }
            }
            self.store.write_delivery(&writes)?;
            changed.clear();
        }
        drop(_in_flight);
        self.recheck_waiting(&writes, owner)?;
        for o in outcomes {
            o.emit();
        }
        SchedulerScanned {
            timers: timers.len(),
            lag: Duration::from_millis((now.timestamp_millis() - oldest_due).max(0) as u64),
            elapsed: started.elapsed(),
        }
        .emit();
        if let Some(obs) = &self.observer {
            if !sent.is_empty() {
                // Observers (the demo's simulated recipients) may lag; wait a
                // little rather than drop what they should hear about.
                let _ = obs.send_timeout(sent, Duration::from_secs(1));
            }
        }
        Ok(timers.len())
    }

    /// Notices this pass has just indexed as waiting for their mailbox
    /// (not activated, or unreachable) are checked once more, now that
    /// the index holds them: the registry reader stores a profile, then
    /// looks in that index, so a profile stored between this pass's read
    /// and its write would find nothing there, and the notice would wait
    /// for a registration that has already happened. Either this read sees
    /// the profile, or the reader's look finds the notice. Those reachable
    /// now have their rounds resumed at once.
    fn recheck_waiting(&self, writes: &[DeliveryWrite], owner: &Owner) -> Result<(), StoreError> {
        let mut again = Vec::new();
        for w in writes {
            let Some(rec) = w.record.as_ref() else {
                continue;
            };
            if w.awaiting != Some(true)
                || !matches!(
                    rec.state,
                    DeliveryState::AwaitingActivation | DeliveryState::Unreachable { .. }
                )
            {
                continue;
            }
            if reachable(self.registry.profile(rec.recipient)?.as_ref()) {
                again.push(rec.tracking_code);
            }
        }
        if again.is_empty() {
            return Ok(());
        }
        NoticesResumed { count: again.len() }.emit();
        let (tx, _rx) = bounded(1);
        self.run_commands(vec![Command::Activate(again, tx)], owner)?;
        Ok(())
    }

    /// The weight of each agencies' queue (all 1 without a registry).
    fn queue_weights(&self) -> [u64; QUEUES] {
        self.agencies
            .as_ref()
            .map_or([1; QUEUES], |a| a.queue_weights())
    }

    /// How long a round of `rec` must wait for its agency's next slot
    /// (`rounds_per_second`), the slot then taken; `None`: it starts now.
    /// Urgent notices are never paced, and a round put off to its slot
    /// already has it.
    fn pace(&self, rec: &DeliveryRecord) -> Option<Duration> {
        if rec.paced || rec.priority == Priority::Urgent {
            return None;
        }
        self.agencies
            .as_ref()?
            .round_slot(&rec.agency, Instant::now())
    }

    /// What is due for one notice: its timers, in kind order.
    fn step(
        &self,
        code: TrackingCode,
        timers: &[Timer],
        now: DateTime<Utc>,
    ) -> Result<Step, StoreError> {
        let mut w = DeliveryWrite::default();
        let mut step = Step::default();
        let rec = match self.store.delivery(code) {
            Err(e @ StoreError::Corrupt(_)) => {
                // A record that cannot be read would fail this shard's
                // every pass: its timers are taken off the schedule (kept
                // in the quarantine entry) and the record stays as it is.
                let detail = format!(
                    "timers taken off the schedule: {}",
                    timers
                        .iter()
                        .map(|t| format!("{:?}@{}", t.kind, t.due_ms))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                crate::store::set_aside(
                    self.store.as_ref(),
                    "delivery_record",
                    code.to_string(),
                    &e,
                    &[],
                    detail,
                )?;
                w.remove_timers.extend_from_slice(timers);
                step.write = w;
                return Ok(step);
            }
            other => other?,
        };
        let Some(mut rec) = rec else {
            // A timer whose record is gone (purged): drop it.
            w.remove_timers.extend_from_slice(timers);
            step.write = w;
            return Ok(step);
        };
        // A timer in another slot than its record's queue (a repair that
        // chose the wrong lane, or a timer stored before agencies' queues)
        // is moved to the record's queue and acted on there: the urgent
        // thread and the worker's own never both handle one notice, and a
        // round's rescheduling removes the timer it names. Nothing else of
        // the record is written here then.
        let home = rec.timer_slot();
        let (mut ts, strays): (Vec<Timer>, Vec<Timer>) =
            timers.iter().partition(|t| t.slot == home);
        let mut from = std::collections::BTreeSet::new();
        for t in strays {
            w.remove_timers.push(t);
            w.add_timers.push(Timer { slot: home, ..t });
            from.insert(t.slot);
        }
        // The record's other timers move with it from where the stray
        // was (a store written before agencies' queues kept all of a
        // notice's timers in one slot): its expiry must stay ahead of a
        // later round in one queue's due order. Removing a key that is
        // not there is nothing.
        for slot in from {
            let mut moved = Vec::new();
            if let Some(p) = rec.next {
                moved.push(Timer {
                    slot,
                    ..rec.next_timer(p.due_ms)
                });
            }
            if !rec.purged {
                moved.push(Timer {
                    slot,
                    ..Timer::expire(code, rec.queue(), rec.expires_at.timestamp_millis())
                });
            }
            for t in moved {
                if !w.remove_timers.contains(&t) {
                    w.remove_timers.push(t);
                    w.add_timers.push(Timer { slot: home, ..t });
                }
            }
        }
        if ts.is_empty() {
            step.write = w;
            return Ok(step);
        }
        // The end of retention and expiry first: after a long outage a
        // round may be due together with the expiry, and must not go out.
        ts.sort_by_key(|t| {
            let rank = match t.kind {
                TimerKind::Purge => 0,
                TimerKind::Expire => 1,
                TimerKind::Next => 2,
                TimerKind::Remind => 3,
            };
            (rank, t.due_ms)
        });
        for t in ts {
            match t.kind {
                TimerKind::Purge => {
                    w.remove_timers.push(t);
                    if let Some(p) = rec.next.take() {
                        w.remove_timers.push(rec.next_timer(p.due_ms));
                    }
                    w.delete_record = Some(rec);
                    w.record = None;
                    step.write = w;
                    return Ok(step);
                }
                TimerKind::Expire => {
                    w.remove_timers.push(t);
                    self.expire(&mut rec, &mut w, &mut step, now);
                }
                TimerKind::Remind => {
                    w.remove_timers.push(t);
                    self.remind(&mut rec, &mut w, &mut step, now)?;
                }
                TimerKind::Next => {
                    match rec.next.map(|p| p.due_ms) {
                        Some(due) if due == t.due_ms => {}
                        // Another timer, while the record's own action is
                        // due: a nudge (a store completing an interrupted
                        // write puts one), so do that action now; its own
                        // timer goes with the reschedule.
                        Some(due) if due <= now.timestamp_millis() => {
                            w.remove_timers.push(t);
                        }
                        _ => {
                            w.remove_timers.push(t); // stale: superseded
                            continue;
                        }
                    }
                    match rec.next.map(|p| p.action) {
                        // Past the notice's expiry no round goes out,
                        // whichever timer comes first: it expires now.
                        Some(Action::Round { .. }) if now >= rec.expires_at => {
                            self.expire(&mut rec, &mut w, &mut step, now);
                            reschedule(&mut rec, &mut w, None);
                        }
                        Some(Action::Round { round, retry }) => match self.pace(&rec) {
                            Some(wait) => {
                                // Its agency's next slot: put off to it,
                                // once (the slot is taken).
                                let at = now + chrono::Duration::from_std(wait).unwrap_or_default();
                                reschedule(
                                    &mut rec,
                                    &mut w,
                                    Some(Pending {
                                        due_ms: at
                                            .timestamp_millis()
                                            .max(now.timestamp_millis() + 1),
                                        action: Action::Round { round, retry },
                                    }),
                                );
                                rec.paced = true;
                                step.outcomes.push(DeliveryOutcome::Paced {
                                    agency: rec.agency.clone(),
                                });
                            }
                            None => {
                                rec.paced = false;
                                self.round(&mut rec, &mut w, &mut step, round, retry, now)?
                            }
                        },
                        Some(Action::Release) => {
                            if let DeliveryState::Held { .. } = rec.state {
                                // Lands now, by the engine's clock (the
                                // legal time), and round 1 follows at once.
                                rec.state = DeliveryState::Scheduled;
                                w.receipts.push(rec.receipt(
                                    "released",
                                    now,
                                    ReceiptEvent::Released {
                                        tracking_code: code,
                                    },
                                ));
                                step.outcomes.push(DeliveryOutcome::Released {
                                    agency: rec.agency.clone(),
                                });
                                reschedule(
                                    &mut rec,
                                    &mut w,
                                    Some(Pending {
                                        due_ms: now.timestamp_millis(),
                                        action: Action::Round { round: 1, retry: 0 },
                                    }),
                                );
                            } else {
                                reschedule(&mut rec, &mut w, None);
                            }
                        }
                        Some(Action::Verdict) => {
                            reschedule(&mut rec, &mut w, None);
                            if rec.state == DeliveryState::Scheduled {
                                rec.state = DeliveryState::NotServed { at: now };
                                w.receipts.push(rec.receipt(
                                    "not-served",
                                    now,
                                    ReceiptEvent::NotServed {
                                        tracking_code: code,
                                    },
                                ));
                                step.outcomes.push(DeliveryOutcome::NotServed {
                                    agency: rec.agency.clone(),
                                });
                            }
                        }
                        None => {}
                    }
                }
            }
        }
        w.record = Some(rec);
        step.write = w;
        Ok(step)
    }

    fn expire(
        &self,
        rec: &mut DeliveryRecord,
        w: &mut DeliveryWrite,
        step: &mut Step,
        now: DateTime<Utc>,
    ) {
        if rec.purged {
            return;
        }
        rec.purged = true;
        w.purge_notice = true;
        reschedule(rec, w, None);
        if !matches!(
            rec.state,
            DeliveryState::Served { .. }
                | DeliveryState::NotServed { .. }
                | DeliveryState::Cancelled { .. }
        ) {
            rec.state = DeliveryState::Expired { at: now };
            w.receipts.push(rec.receipt(
                "expired",
                now,
                ReceiptEvent::Expired {
                    tracking_code: rec.tracking_code,
                },
            ));
            step.outcomes.push(DeliveryOutcome::Expired {
                agency: rec.agency.clone(),
            });
        }
        // The legal history outlives the notice by the retention period.
        let purge_at = add(now, self.config.record_retention.0);
        w.add_timers.push(Timer::purge(
            rec.tracking_code,
            rec.queue(),
            purge_at.timestamp_millis(),
        ));
    }

    fn round(
        &self,
        rec: &mut DeliveryRecord,
        w: &mut DeliveryWrite,
        step: &mut Step,
        round: u8,
        retry: u8,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if rec.state != DeliveryState::Scheduled {
            reschedule(rec, w, None);
            return Ok(());
        }
        let code = rec.tracking_code;
        if let Ok(Some(q)) = QuietHours::parse(&self.config.quiet_hours) {
            let allowed = q.next_allowed(now);
            if allowed > now {
                reschedule(
                    rec,
                    w,
                    Some(Pending {
                        due_ms: allowed.timestamp_millis(),
                        action: Action::Round { round, retry },
                    }),
                );
                return Ok(());
            }
        }
        let profile = self.registry.profile(rec.recipient)?;
        let status = profile
            .as_ref()
            .map(|p| p.status)
            .unwrap_or(MailboxStatus::NotActivated);
        let reps: Vec<MailboxId> = profile
            .as_ref()
            .map(|p| p.representatives.clone())
            .unwrap_or_default();
        let unreachable =
            |rec: &mut DeliveryRecord, w: &mut DeliveryWrite, step: &mut Step, status| {
                reschedule(rec, w, None);
                // Indexed either way: a registration, or a corrected
                // profile (a wrong death record, a guardian appointed),
                // finds the notice and resumes its rounds.
                w.awaiting = Some(true);
                rec.state = if status == MailboxStatus::NotActivated {
                    DeliveryState::AwaitingActivation
                } else {
                    DeliveryState::Unreachable { status }
                };
                w.receipts.push(rec.receipt(
                    &format!("unreachable-{}", rec.rounds.len()),
                    now,
                    ReceiptEvent::MailboxUnreachable {
                        tracking_code: code,
                        status,
                    },
                ));
                step.outcomes.push(DeliveryOutcome::Unreachable { status });
            };
        let to_recipient = match status {
            MailboxStatus::Active => true,
            MailboxStatus::Incapacitated if !reps.is_empty() => {
                // The guardian acts for them (art. 31): representatives only.
                if round == 1 && retry == 0 {
                    w.receipts.push(rec.receipt(
                        "incapacitated",
                        now,
                        ReceiptEvent::MailboxUnreachable {
                            tracking_code: code,
                            status,
                        },
                    ));
                    step.outcomes.push(DeliveryOutcome::Unreachable { status });
                }
                false
            }
            other => {
                unreachable(rec, w, step, other);
                return Ok(());
            }
        };
        let profile = profile.expect("an active or incapacitated mailbox has a profile");
        if !rec.access_reported && profile.access_level < rec.min_access_level {
            rec.access_reported = true;
            w.receipts.push(rec.receipt(
                "access",
                now,
                ReceiptEvent::AccessLevelInsufficient {
                    tracking_code: code,
                    required: rec.min_access_level,
                    held: profile.access_level,
                },
            ));
        }
        if round == 1 && retry == 0 && rec.rounds.is_empty() {
            self.plan_reminder(rec, w, now);
        }
        let title = if rec.title.is_empty() {
            // A record from before titles were kept with it.
            self.store
                .notice(code)?
                .map(|n| n.notice.title)
                .unwrap_or_default()
        } else {
            rec.title.clone()
        };
        let notification = |to_representative: bool, who: usize, kind| Notification {
            recipient_kind: kind,
            tracking_code: code,
            round,
            agency: rec.agency.clone(),
            title: title.clone(),
            to_representative,
            idempotency_key: Notification::idempotency_key_for(code, round, who),
            priority: rec.priority,
            reminder: None,
        };

        let mut record = RoundRecord {
            round,
            retry,
            at: now,
            deliveries: Vec::new(),
        };
        let mut primary: Option<Delivery> = None;
        if to_recipient {
            let d = self.notifier.deliver(
                &notification(false, 0, rec.recipient.kind()),
                &Target::from_profile(&profile),
            );
            record.deliveries.push(round_delivery(false, &d));
            primary = Some(d);
        }
        // Representatives get each round once, on its first attempt.
        if retry == 0 {
            for (i, rep) in reps.iter().enumerate() {
                let d = match self.registry.profile(*rep)? {
                    Some(p) if p.status == MailboxStatus::Active => self.notifier.deliver(
                        &notification(true, i + 1, rep.kind()),
                        &Target::from_profile(&p),
                    ),
                    _ => Delivery::Failed {
                        reason: "representative_unreachable",
                        transient: false,
                        attempts: 0,
                    },
                };
                record.deliveries.push(round_delivery(true, &d));
                if !to_recipient
                    && primary
                        .as_ref()
                        .is_none_or(|p| !matches!(p, Delivery::Accepted { .. }))
                {
                    primary = Some(d);
                }
            }
        }
        for (i, d) in record.deliveries.iter().enumerate() {
            if let Some(channel) = d.channel {
                w.receipts.push(rec.receipt(
                    &format!("r{round}-{retry}-{i}"),
                    now,
                    ReceiptEvent::NotificationSent {
                        tracking_code: code,
                        round,
                        channel,
                        to_representative: d.to_representative,
                    },
                ));
                step.sent.push(SentNotification {
                    code,
                    recipient: rec.recipient,
                    round,
                    to_representative: d.to_representative,
                    channel,
                    at: now,
                });
            }
        }
        step.outcomes.push(DeliveryOutcome::Round(round_finished(
            &rec.agency,
            &record,
            retry,
        )));
        rec.rounds.push(record);

        let next_round = |rec: &mut DeliveryRecord, w: &mut DeliveryWrite| {
            let next = if (round as usize) < self.config.round_intervals.len() {
                Pending {
                    due_ms: add(now, self.config.round_intervals[round as usize].0)
                        .timestamp_millis(),
                    action: Action::Round {
                        round: round + 1,
                        retry: 0,
                    },
                }
            } else {
                Pending {
                    due_ms: add(now, self.config.not_served_after.0).timestamp_millis(),
                    action: Action::Verdict,
                }
            };
            reschedule(rec, w, Some(next));
        };
        match primary {
            Some(Delivery::Accepted { .. }) | None => next_round(rec, w),
            Some(Delivery::Failed {
                reason, transient, ..
            }) => {
                if transient && retry < self.config.round_max_retries {
                    let due = add(now, self.config.round_retry_after.0).timestamp_millis();
                    reschedule(
                        rec,
                        w,
                        Some(Pending {
                            due_ms: due,
                            action: Action::Round {
                                round,
                                retry: retry + 1,
                            },
                        }),
                    );
                } else {
                    w.receipts.push(rec.receipt(
                        &format!("r{round}-failed"),
                        now,
                        ReceiptEvent::NotificationFailed {
                            tracking_code: code,
                            round,
                            reason: reason.to_owned(),
                        },
                    ));
                    next_round(rec, w);
                }
            }
        }
        Ok(())
    }
}

impl Scheduler {
    /// Puts the reminder of a response deadline on its timer, when the
    /// notice's first round goes out (it is in the mailbox by then): at
    /// `respond_by - delivery.reminder_before`, if that is still ahead
    /// (a deadline nearer than that is told by the round itself).
    fn plan_reminder(&self, rec: &DeliveryRecord, w: &mut DeliveryWrite, now: DateTime<Utc>) {
        let (Some(by), None) = (rec.respond_by, rec.reminded) else {
            return;
        };
        if self.config.reminder_before.0.is_zero() {
            return;
        }
        let at = by - chrono::Duration::from_std(self.config.reminder_before.0).unwrap_or_default();
        if at > now {
            w.add_timers.push(Timer::remind(
                rec.tracking_code,
                rec.queue(),
                at.timestamp_millis(),
            ));
        }
    }

    /// The reminder's time: the recipient is reminded of the deadline
    /// unless they (or, for an incapacitated person, a representative)
    /// opened or confirmed the notice, it is no longer followed (served,
    /// expired, unreachable), or the deadline passed. Once per notice; no
    /// retries (the dispatcher's own attempts apply).
    fn remind(
        &self,
        rec: &mut DeliveryRecord,
        w: &mut DeliveryWrite,
        step: &mut Step,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Some(by) = rec.respond_by.filter(|_| rec.reminded.is_none()) else {
            return Ok(());
        };
        let followed = matches!(
            rec.state,
            DeliveryState::Scheduled | DeliveryState::NotServed { .. }
        );
        if !followed || rec.purged || now >= by {
            rec.reminded = Some(now);
            step.outcomes
                .push(DeliveryOutcome::Reminder { outcome: "skipped" });
            return Ok(());
        }
        if let Ok(Some(q)) = QuietHours::parse(&self.config.quiet_hours) {
            let allowed = q.next_allowed(now);
            if allowed > now && allowed < by {
                w.add_timers.push(Timer::remind(
                    rec.tracking_code,
                    rec.queue(),
                    allowed.timestamp_millis(),
                ));
                return Ok(());
            }
        }
        let profile = self.registry.profile(rec.recipient)?;
        let (to_representative, people): (bool, Vec<MailboxId>) = match &profile {
            Some(p) if p.status == MailboxStatus::Active => (false, vec![rec.recipient]),
            Some(p) if p.status == MailboxStatus::Incapacitated => {
                (true, p.representatives.clone())
            }
            _ => (false, Vec::new()),
        };
        let acted = !rec.confirmations.is_empty()
            || rec
                .opened
                .iter()
                .any(|o| o.by_representative == to_representative);
        rec.reminded = Some(now);
        if acted || people.is_empty() {
            step.outcomes
                .push(DeliveryOutcome::Reminder { outcome: "skipped" });
            return Ok(());
        }
        let code = rec.tracking_code;
        let mut failure = None;
        for (i, who) in people.iter().enumerate() {
            let p = if *who == rec.recipient {
                profile.clone()
            } else {
                self.registry.profile(*who)?
            };
            let Some(p) = p.filter(|p| p.status == MailboxStatus::Active) else {
                failure.get_or_insert("representative_unreachable");
                continue;
            };
            let n = Notification {
                recipient_kind: who.kind(),
                tracking_code: code,
                round: 0,
                agency: rec.agency.clone(),
                title: rec.title.clone(),
                to_representative,
                idempotency_key: format!("{code}-reminder-{i}"),
                priority: rec.priority,
                reminder: Some(by),
            };
            match self.notifier.deliver(&n, &Target::from_profile(&p)) {
                Delivery::Accepted { channel, .. } => {
                    w.receipts.push(rec.receipt(
                        &format!("reminder-{i}"),
                        now,
                        ReceiptEvent::ReminderSent {
                            tracking_code: code,
                            channel,
                            to_representative,
                            respond_by: by,
                        },
                    ));
                    step.outcomes
                        .push(DeliveryOutcome::Reminder { outcome: "sent" });
                    // One person reached is the reminder; representatives
                    // of an incapacitated person are tried in order.
                    return Ok(());
                }
                Delivery::Failed { reason, .. } => {
                    failure = Some(reason);
                }
            }
        }
        w.receipts.push(rec.receipt(
            "reminder-failed",
            now,
            ReceiptEvent::ReminderFailed {
                tracking_code: code,
                reason: failure.unwrap_or("no_channel").to_owned(),
            },
        ));
        step.outcomes
            .push(DeliveryOutcome::Reminder { outcome: "failed" });
        Ok(())
    }
}

#[derive(Default)]
struct Step {
    write: DeliveryWrite,
    sent: Vec<SentNotification>,
    outcomes: Vec<DeliveryOutcome>,
}

fn round_delivery(to_representative: bool, d: &Delivery) -> RoundDelivery {
    match d {
        Delivery::Accepted { channel, attempts } => RoundDelivery {
            to_representative,
            channel: Some(*channel),
            failure: None,
            attempts: *attempts,
        },
        Delivery::Failed {
            reason, attempts, ..
        } => RoundDelivery {
            to_representative,
            channel: None,
            failure: Some((*reason).to_owned()),
            attempts: *attempts,
        },
    }
}

/// A recorded round as its event: labels and flags, no record.
fn round_finished(
    agency: &karpoosheh_schemas::AgencyId,
    r: &RoundRecord,
    retry: u8,
) -> RoundFinished {
    RoundFinished {
        agency: agency.clone(),
        round: r.round,
        retry,
        deliveries: r
            .deliveries
            .iter()
            .map(|d| {
                (
                    d.channel.map(channel_label).unwrap_or("none"),
                    d.channel.is_some(),
                    d.to_representative,
                )
            })
            .collect(),
    }
}

/// Resumes a notice whose mailbox has become reachable: one waiting for
/// its activation starts at round 1; one found unreachable (deceased,
/// dissolved, incapacitated without a guardian) and since corrected goes
/// on with the round after the last one it had, or its verdict after three.
/// Anything else is left as it is (the profile update was not about it).
/// Whether a round can reach anyone for this mailbox: the person
/// (active), or a guardian for an incapacitated one (art. 31).
fn reachable(profile: Option<&MailboxProfile>) -> bool {
    match profile {
        Some(p) => match p.status {
            MailboxStatus::Active => true,
            MailboxStatus::Incapacitated => !p.representatives.is_empty(),
            _ => false,
        },
        None => false,
    }
}

fn resume(rec: &mut DeliveryRecord, w: &mut DeliveryWrite, now: DateTime<Utc>) {
    if !matches!(
        rec.state,
        DeliveryState::AwaitingActivation | DeliveryState::Unreachable { .. }
    ) {
        return;
    }
    let next_round = rec
        .rounds
        .iter()
        .map(|r| r.round)
        .max()
        .map_or(1, |r| r + 1);
    let action = if next_round > 3 {
        Action::Verdict
    } else {
        Action::Round {
            round: next_round,
            retry: 0,
        }
    };
    rec.state = DeliveryState::Scheduled;
    w.awaiting = Some(false);
    reschedule(
        rec,
        w,
        Some(Pending {
            due_ms: now.timestamp_millis(),
            action,
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lanes_batch_is_shared_by_the_weights_of_the_queues_with_work() {
        let w = [1, 1, 1, 1, 1, 1, 3];
        let none = [false; QUEUES];
        // Alone, each queue may take the whole batch.
        assert_eq!(queue_limits(40, &w, &none), [40; QUEUES]);
        let mut busy = none;
        busy[6] = true;
        let l = queue_limits(40, &w, &busy);
        assert_eq!(l[6], 40, "a lone campaign at full speed");
        assert_eq!(l[3], 10, "a newcomer counts itself: 40 x 1/4");
        busy[3] = true;
        let l = queue_limits(40, &w, &busy);
        assert_eq!((l[6], l[3]), (30, 10));
        // Never none at all.
        assert_eq!(
            queue_limits(1, &[1000, 1, 1, 1, 1, 1, 1], &[true; QUEUES])[1],
            1
        );
    }

    #[test]
    fn a_lanes_lag_is_the_largest_of_its_slots_and_zero_when_none_was_due() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let mut cs = cursors();
        cs[timer_slot(0, Priority::Urgent) as usize].lag = Some(Duration::from_secs(5));
        cs[timer_slot(1, Priority::Urgent) as usize].lag = Some(Duration::from_secs(2));
        // Another lane's and another worker's shard do not count.
        cs[timer_slot(0, Priority::Bulk) as usize].lag = Some(Duration::from_secs(900));
        cs[timer_slot(2, Priority::Urgent) as usize].lag = Some(Duration::from_secs(60));
        metrics::with_local_recorder(&recorder, || {
            lane_lag(3, Priority::Urgent, &[0, 1], &cs);
            lane_lag(3, Priority::Normal, &[0, 1], &cs);
        });
        let text = handle.render();
        let line = |lane: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with("karpoosheh_scheduler_lane_lag_seconds")
                        && l.contains(&format!("priority=\"{lane}\""))
                        && l.contains("worker=\"3\"")
                })
                .unwrap_or_else(|| panic!("no {lane} line in {text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_owned()
        };
        assert_eq!(line("urgent"), "5");
        assert_eq!(line("normal"), "0");
    }
}
