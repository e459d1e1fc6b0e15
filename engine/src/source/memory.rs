//! The in-process source: records handed over by the load generator in
//! the same process (the demo, benchmarks, tests). The channel is bounded,
//! so a fast generator waits for the engine instead of filling memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use karpoosheh_schemas::{AgencyId, Priority, SourcePosition};

use super::{AckToken, AckTracker, Poll, Record, Source, SourceError};

/// The producing end, for the generator.
#[derive(Clone)]
pub struct MemorySender {
    tx: Sender<Vec<(Vec<u8>, Instant)>>,
}

impl MemorySender {
    /// Hands over one chunk of payloads; blocks while the engine is behind.
    /// Returns false when the engine has stopped.
    pub fn send(&self, payloads: Vec<Vec<u8>>) -> bool {
        let now = Instant::now();
        self.tx
            .send(payloads.into_iter().map(|p| (p, now)).collect())
            .is_ok()
    }
}

/// The consuming end, given to the pipeline. Closing every sender ends it.
pub struct MemorySource {
    rx: Receiver<Vec<(Vec<u8>, Instant)>>,
    pending: std::collections::VecDeque<(Vec<u8>, Instant)>,
    agency: Option<AgencyId>,
    next_seq: u64,
    acks: AckTracker,
    acked: Arc<AtomicU64>,
}

impl MemorySource {
    /// A source and its sender; `capacity` chunks may wait in between.
    /// `agency`: the agency every record must come from, if one.
    pub fn channel(capacity: usize, agency: Option<AgencyId>) -> (MemorySender, MemorySource) {
        let (tx, rx) = bounded(capacity);
        let mut acks = AckTracker::default();
        acks.start_lane(0, 0);
        (
            MemorySender { tx },
            MemorySource {
                rx,
                pending: Default::default(),
                agency,
                next_seq: 0,
                acks,
                acked: Arc::new(AtomicU64::new(0)),
            },
        )
    }

    /// How many records (from the first) are durably handled, live.
    pub fn acked_counter(&self) -> Arc<AtomicU64> {
        self.acked.clone()
    }
}

impl Source for MemorySource {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn describe(&self) -> String {
        "in-process generator".into()
    }

    fn poll(&mut self, max: usize, max_bytes: usize, wait: Duration) -> Result<Poll, SourceError> {
        if self.pending.is_empty() {
            match self.rx.recv_timeout(wait) {
                Ok(chunk) => self.pending.extend(chunk),
                Err(RecvTimeoutError::Timeout) => return Ok(Poll::Idle),
                Err(RecvTimeoutError::Disconnected) => return Ok(Poll::Finished),
            }
        }
        let mut n = 0;
        let mut bytes = 0;
        for (payload, _) in self.pending.iter().take(max) {
            if n > 0 && bytes >= max_bytes {
                break;
            }
            bytes += payload.len();
            n += 1;
        }
        let records = self
            .pending
            .drain(..n)
            .map(|(payload, received)| {
                let len = payload.len() as u32;
                let seq = self.next_seq;
                self.next_seq += 1;
                Record {
                    payload,
                    oversize: None,
                    position: SourcePosition::InProcess { sequence: seq },
                    agency: self.agency.clone(),
                    refused: None,
                    token: AckToken {
                        lane: 0,
                        seq,
                        bytes: len,
                    },
                    received,
                    priority: Priority::Normal,
                }
            })
            .collect();
        Ok(Poll::Records(records))
    }

    fn ack(&mut self, tokens: &[AckToken]) -> Result<(), SourceError> {
        self.acks.ack(tokens);
        self.acked.store(self.acks.watermark(0), Ordering::Release);
        Ok(())
    }
}
