//! Which of this node's notices have their `accepted` receipt out, so that
//! the outbox holds a notice's later events until then: the two go
//! through different producers, and an agency reads a notice's receipts in
//! order (agency-integration.md).
//!
//! While the node runs, its pipeline issues tracking codes in order and
//! its receipts sink settles them in order, so one number says it: every
//! code up to `up_to` is out. The sink marks that number in the store as
//! it settles, before the source may commit the records' offsets.
//!
//! A crash can leave notices stored whose `accepted` never went out: the
//! codes above the store's mark and up to its last tracking code. Their
//! records' offsets were not committed, so they come again, and each is
//! answered then with the receipt it would have had (the same receipt ID
//! and code). Until that answer is out, those notices' events wait too;
//! the hold ends for all of them once the source has committed every
//! partition it is assigned to its end (nothing more can come again), or
//! [`RESTART_HOLD`] after a broker first answered (a record answered on
//! another node of a fleet, one the topic no longer holds, or one judged
//! otherwise this time -- its agency suspended meanwhile). While it lasts,
//! the mark stays below the held notices.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use karpoosheh_schemas::TrackingCode;

use crate::source::SourceSignals;
use crate::store::{Store, StoreError};

/// How long a restarted node holds the events of notices stored before it
/// stopped with no answer out, at most, from when a broker first answers:
/// its partitions come back within the group's session timeout (10 s),
/// and their records at once.
pub const RESTART_HOLD: Duration = Duration::from_secs(60);

pub struct AcceptedOut {
    node: u16,
    up_to: AtomicU64,
    restart: Option<Restart>,
    store: Option<Arc<dyn Store>>,
    /// The last mark written to the store.
    marked: Mutex<u64>,
    /// From the source: when a broker first answered (the hold's clock),
    /// and whether its partitions are committed to their end (the hold is
    /// over).
    signals: Arc<SourceSignals>,
}

/// Notices stored before a restart, perhaps with no answer out.
struct Restart {
    /// Codes above `after` and up to `through`.
    after: u64,
    through: u64,
    /// How long, from when a broker first answered.
    hold: Duration,
    answered: Mutex<HashSet<u64>>,
}

impl std::fmt::Debug for AcceptedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptedOut")
            .field("node", &self.node)
            .field("up_to", &self.up_to())
            .field("holding", &self.holding())
            .finish()
    }
}

impl AcceptedOut {
    /// Everything of node `node` up to `up_to` is out; kept in memory only.
    pub fn new(node: u16, up_to: u64) -> Self {
        AcceptedOut {
            node,
            up_to: AtomicU64::new(up_to),
            restart: None,
            store: None,
            marked: Mutex::new(up_to),
            signals: Arc::default(),
        }
    }

    /// From the store's mark and last tracking code, holding what a crash
    /// may have left unanswered for at most `hold`; marks the store as
    /// receipts settle. A store with no mark yet is marked at once: a new
    /// store at 0 (a crash before its first answer holds what it stored),
    /// one written before marks existed at its last code (as before).
    pub fn open(node: u16, store: Arc<dyn Store>, hold: Duration) -> Result<Self, StoreError> {
        let last = store.last_tracking_code()?.map_or(0, |c| c.as_u64());
        let mark = match store.accepted_out()? {
            Some(c) => c.as_u64(),
            None => {
                store.mark_accepted_out(TrackingCode::from_u64(last))?;
                last
            }
        };
        let restart = (mark < last).then(|| Restart {
            after: mark,
            through: last,
            hold,
            answered: Mutex::new(HashSet::new()),
        });
        if let Some(r) = &restart {
            crate::internal_events::UnansweredAtStart {
                after: r.after,
                through: r.through,
                hold,
            }
            .emit();
        }
        Ok(AcceptedOut {
            node,
            up_to: AtomicU64::new(last),
            restart,
            store: Some(store),
            marked: Mutex::new(mark),
            signals: Arc::default(),
        })
    }

    /// What the Kafka source reports to (`KafkaSource::with_signals`):
    /// the hold's clock starts when a broker first answers, and it ends
    /// once the partitions are committed to their end.
    pub fn signals(&self) -> Arc<SourceSignals> {
        self.signals.clone()
    }

    /// Marks the store if a hold has just ended with no answer since (an
    /// idle node): the outbox calls it on each pass.
    pub fn tick(&self) {
        if self.restart.is_some() {
            self.mark_unless_holding();
        }
    }

    /// Whether `code`'s `accepted` is out, so its later events may follow.
    /// Other nodes' notices are not this gate's to hold.
    pub fn is_out(&self, code: TrackingCode) -> bool {
        if code.node() != self.node {
            return true;
        }
        let c = code.as_u64();
        if c > self.up_to() {
            return false;
        }
        match &self.restart {
            Some(r) if c > r.after && c <= r.through && self.holding() => r
                .answered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&c),
            _ => true,
        }
    }

    /// The `accepted` receipts of `codes` are out (acknowledged by the
    /// broker, or parked durably), and with them everything before.
    pub fn advance(&self, codes: &[u64]) {
        let own = || {
            codes
                .iter()
                .copied()
                .filter(|&c| TrackingCode::from_u64(c).node() == self.node)
        };
        if let Some(max) = own().max() {
            self.up_to.fetch_max(max, Ordering::AcqRel);
        }
        if let Some(r) = &self.restart {
            r.answered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(own().filter(|&c| c > r.after && c <= r.through));
        }
        self.mark_unless_holding();
    }

    /// Marks the store up to `up_to`, unless notices from before the
    /// restart may still be unanswered: then the mark stays below them,
    /// and a second crash holds them again.
    fn mark_unless_holding(&self) {
        if !self.holding() {
            self.mark(self.up_to());
        }
    }

    fn mark(&self, up_to: u64) {
        let Some(store) = &self.store else { return };
        let mut marked = self.marked.lock().unwrap_or_else(|p| p.into_inner());
        if up_to <= *marked {
            return;
        }
        match store.mark_accepted_out(TrackingCode::from_u64(up_to)) {
            Ok(()) => *marked = up_to,
            // Not marked: a restart holds more than it needs to.
            Err(e) => crate::internal_events::AcceptedMarkFailed { error: &e }.emit(),
        }
    }

    pub fn up_to(&self) -> u64 {
        self.up_to.load(Ordering::Acquire)
    }

    /// Whether notices from before a restart may still be held: until
    /// the source is caught up, or the hold's time since a broker first
    /// answered is over (held while none has: nothing could come again).
    fn holding(&self) -> bool {
        self.restart.as_ref().is_some_and(|r| {
            !self.signals.caught_up.load(Ordering::Acquire)
                && self
                    .signals
                    .brokers_up_at
                    .get()
                    .is_none_or(|t| t.elapsed() < r.hold)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::fjall_store;
    use std::time::Instant;

    fn code(node: u16, seq: u16) -> TrackingCode {
        TrackingCode::from_parts(1_800_000_000_000, node, seq)
    }

    #[test]
    fn in_memory_everything_up_to_the_mark_is_out_and_other_nodes_pass() {
        let out = AcceptedOut::new(3, code(3, 10).as_u64());
        assert!(out.is_out(code(3, 10)));
        assert!(!out.is_out(code(3, 11)));
        assert!(out.is_out(code(4, 500)), "another node's notice");
        // Another node's code never moves this node's gate.
        out.advance(&[code(4, 900).as_u64()]);
        assert!(!out.is_out(code(3, 11)));
        out.advance(&[code(3, 12).as_u64()]);
        assert!(out.is_out(code(3, 11)) && out.is_out(code(3, 12)));
        assert!(!out.is_out(code(3, 13)));
    }

    fn code_of(e: &crate::model::Entry) -> TrackingCode {
        match e {
            crate::model::Entry::Notice(n) => n.tracking_code,
            _ => unreachable!(),
        }
    }

    /// After a crash: the notices above the store's mark were stored with
    /// no answer known to be out. Each one's events wait until its
    /// `accepted` is out again; the mark stays below them meanwhile.
    #[test]
    fn after_a_crash_the_unanswered_notices_wait_for_their_answer() {
        let dir = tempfile::tempdir().unwrap();
        let store = fjall_store(dir.path());
        let entries = crate::store::conformance::sample_entries(5);
        store.write(&entries).unwrap();
        let codes: Vec<TrackingCode> = entries.iter().map(code_of).collect();
        let node = codes[0].node();
        store.mark_accepted_out(codes[1]).unwrap();
        let out = AcceptedOut::open(node, store.clone(), Duration::from_secs(600)).unwrap();
        assert!(out.is_out(codes[0]) && out.is_out(codes[1]), "marked out");
        for c in &codes[2..] {
            assert!(!out.is_out(*c), "stored with no answer out: held");
        }
        // The third comes again and is answered; a new notice too.
        let new = TrackingCode::from_parts(1_900_000_000_000, node, 1);
        assert!(!out.is_out(new), "not answered yet");
        out.advance(&[codes[2].as_u64(), new.as_u64()]);
        assert!(out.is_out(codes[2]) && out.is_out(new));
        assert!(!out.is_out(codes[3]) && !out.is_out(codes[4]), "still held");
        assert_eq!(
            store.accepted_out().unwrap(),
            Some(codes[1]),
            "the mark stays below the unanswered ones"
        );
        // Another node's notices are never held.
        assert!(out.is_out(TrackingCode::from_parts(1_800_000_000_000, node + 1, 9)));
    }

    /// The hold is bounded: a record answered elsewhere (another node of a
    /// fleet) or gone from its topic never holds the outbox for good. Once
    /// over, the mark moves with the answers again.
    #[test]
    fn the_hold_after_a_restart_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = fjall_store(dir.path());
        let entries = crate::store::conformance::sample_entries(3);
        store.write(&entries).unwrap();
        let codes: Vec<TrackingCode> = entries.iter().map(code_of).collect();
        let node = codes[0].node();
        store.mark_accepted_out(codes[0]).unwrap();
        let out = AcceptedOut::open(node, store.clone(), Duration::from_millis(50)).unwrap();
        assert!(!out.is_out(codes[1]), "held while no broker has answered");
        std::thread::sleep(Duration::from_millis(100));
        assert!(!out.is_out(codes[1]), "its clock starts with the brokers");
        out.signals().brokers_up_at.get_or_init(Instant::now);
        assert!(!out.is_out(codes[1]), "held");
        std::thread::sleep(Duration::from_millis(100));
        assert!(codes.iter().all(|c| out.is_out(*c)), "the hold is over");
        out.tick();
        assert_eq!(
            store.accepted_out().unwrap(),
            Some(codes[2]),
            "marked when it ends, with no answer since"
        );
        let new = TrackingCode::from_parts(1_900_000_000_000, node, 1);
        out.advance(&[new.as_u64()]);
        assert_eq!(store.accepted_out().unwrap(), Some(new));
    }

    /// A store written before the mark existed holds nothing (as before),
    /// and is marked at its last code.
    #[test]
    fn a_store_without_a_mark_holds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = fjall_store(dir.path());
        let entries = crate::store::conformance::sample_entries(2);
        store.write(&entries).unwrap();
        let node = code_of(&entries[0]).node();
        let out = AcceptedOut::open(node, store.clone(), Duration::from_secs(600)).unwrap();
        assert!(entries.iter().all(|e| out.is_out(code_of(e))));
        assert_eq!(store.accepted_out().unwrap(), Some(code_of(&entries[1])));
    }

    /// A new store is marked at 0 when the node first starts: a crash
    /// before its first answer went out holds everything it stored (the
    /// kill campaign found this: a kill within a second of the first
    /// start).
    #[test]
    fn a_crash_before_the_first_answer_holds_what_was_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = fjall_store(dir.path());
        let node = 1;
        let first = AcceptedOut::open(node, store.clone(), Duration::from_secs(600)).unwrap();
        assert_eq!(
            store.accepted_out().unwrap(),
            Some(TrackingCode::from_u64(0))
        );
        let entries = crate::store::conformance::sample_entries(2);
        assert_eq!(code_of(&entries[0]).node(), node);
        store.write(&entries).unwrap();
        drop(first); // killed: nothing answered
        let out = AcceptedOut::open(node, store.clone(), Duration::from_secs(600)).unwrap();
        assert!(entries.iter().all(|e| !out.is_out(code_of(e))), "held");
        // The source caught up: whatever was not answered here never will be.
        out.signals().caught_up.store(true, Ordering::Release);
        assert!(entries.iter().all(|e| out.is_out(code_of(e))), "released");
        out.advance(&[]);
        assert_eq!(
            store.accepted_out().unwrap(),
            Some(code_of(&entries[1])),
            "marked again"
        );
    }
}
