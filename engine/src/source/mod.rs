//! Sources of raw records: one trait, one file per kind (in-process,
//! NDJSON files, and the agencies' Kafka topics).
//!
//! A source hands out records with an [`AckToken`] and is told, through
//! [`Source::ack`], which records are durably handled (stored, or rejected
//! and kept, or dead-lettered). It must never consider a record done
//! before that: this is what makes a crash lose nothing.

mod file;
mod kafka;
mod memory;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use karpoosheh_schemas::{AgencyId, Priority, Problem, SourcePosition};

pub use file::FileSource;
pub use kafka::{KafkaSource, SourceSignals};
pub use memory::{MemorySender, MemorySource};

/// Identifies one record for acknowledgement: a lane (a Kafka partition,
/// a file) and the record's sequence number within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AckToken {
    pub lane: u32,
    pub seq: u64,
    /// The record's payload size as read: what its acknowledgement gives
    /// back to the pipeline's byte budget (`pipeline.max_bytes_in_flight`).
    pub bytes: u32,
}

/// One raw record from a source.
#[derive(Debug)]
pub struct Record {
    /// The bytes as received (cut at the payload limit when `oversize`).
    pub payload: Vec<u8>,
    /// The original size when the record was larger than the limit and was
    /// not read in full.
    pub oversize: Option<u64>,
    pub position: SourcePosition,
    /// The agency this source speaks for (a topic's or a batch file's), if
    /// any: an envelope naming another agency is rejected.
    pub agency: Option<AgencyId>,
    /// Set when the source refuses the sender itself (an agency that is
    /// not approved, or suspended): a decodable envelope is then rejected
    /// with this problem first, an undecodable one is still dead-lettered.
    pub refused: Option<Problem>,
    pub token: AckToken,
    /// When the record entered the engine, for latency.
    pub received: Instant,
    /// Its lane (a Kafka topic's suffix; normal elsewhere). Every record
    /// of one source lane has the same.
    pub priority: Priority,
}

/// What a poll produced.
#[derive(Debug)]
pub enum Poll {
    Records(Vec<Record>),
    /// Nothing right now; poll again.
    Idle,
    /// The source is exhausted (a file's end; never for Kafka).
    Finished,
}

/// Why a source failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The source cannot go on safely; the node stops (the message says
    /// why and what to change).
    #[error("{0}")]
    Refused(String),
}

/// A source of raw records.
pub trait Source: Send {
    /// The source kind, for metric labels: `memory`, `file`, `kafka`.
    fn kind(&self) -> &'static str;
    /// A description for logs (never containing personal data).
    fn describe(&self) -> String;
    /// Up to `max` records and, past the first, `max_bytes` of payload,
    /// waiting at most `wait` for the first.
    fn poll(&mut self, max: usize, max_bytes: usize, wait: Duration) -> Result<Poll, SourceError>;
    /// Marks records durably handled, in any order.
    fn ack(&mut self, tokens: &[AckToken]) -> Result<(), SourceError>;
    /// Urgent records only, without waiting: what the pipeline reads while
    /// it takes nothing else (its byte budget spent, its queue full), so
    /// that urgent work never waits behind a backlog. `poll` hands out
    /// urgent records first as well. Sources without lanes have none.
    fn poll_urgent(&mut self, max: usize, max_bytes: usize) -> Result<Vec<Record>, SourceError> {
        let _ = (max, max_bytes);
        Ok(Vec::new())
    }
}

/// Tracks acknowledgements that arrive out of order and yields, per lane,
/// the watermark below which every record is done — what a Kafka offset
/// commit or a file checkpoint may advance to.
#[derive(Debug, Default)]
pub struct AckTracker {
    lanes: Vec<LaneAcks>,
}

#[derive(Debug, Default)]
struct LaneAcks {
    /// Every seq below this is done.
    watermark: u64,
    /// Done seqs at or above the watermark.
    done: BTreeSet<u64>,
}

impl AckTracker {
    /// Starts a lane at `first` (the first seq it will hand out).
    pub fn start_lane(&mut self, lane: u32, first: u64) {
        let lane = lane as usize;
        if self.lanes.len() <= lane {
            self.lanes.resize_with(lane + 1, Default::default);
        }
        self.lanes[lane] = LaneAcks {
            watermark: first,
            done: BTreeSet::new(),
        };
    }

    /// Records acks; returns how many were new.
    pub fn ack(&mut self, tokens: &[AckToken]) -> usize {
        let mut new = 0;
        for t in tokens {
            let Some(lane) = self.lanes.get_mut(t.lane as usize) else {
                continue;
            };
            if t.seq < lane.watermark || !lane.done.insert(t.seq) {
                continue;
            }
            new += 1;
            while lane.done.first() == Some(&lane.watermark) {
                lane.done.pop_first();
                lane.watermark += 1;
            }
        }
        new
    }

    /// Every seq below the returned value is done.
    pub fn watermark(&self, lane: u32) -> u64 {
        self.lanes.get(lane as usize).map_or(0, |l| l.watermark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_advances_only_over_contiguous_acks() {
        let mut t = AckTracker::default();
        t.start_lane(0, 10);
        let tok = |seq| AckToken {
            lane: 0,
            seq,
            bytes: 0,
        };
        assert_eq!(t.ack(&[tok(12), tok(11)]), 2);
        assert_eq!(t.watermark(0), 10, "10 not done yet");
        assert_eq!(t.ack(&[tok(10)]), 1);
        assert_eq!(t.watermark(0), 13);
        assert_eq!(
            t.ack(&[tok(11), tok(5)]),
            0,
            "repeats and old acks are ignored"
        );
        assert_eq!(t.watermark(0), 13);
    }
}
