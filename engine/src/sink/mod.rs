//! Sinks for what happened to each record once it is durable: receipts
//! for agencies (the Kafka receipts topics, [`KafkaSink`]; an NDJSON file
//! for `karpoosheh ingest`, [`NdjsonReceipts`]) and observers such as the
//! run reports' [`TallySink`]. The pipeline calls every
//! sink before it acknowledges the source, so a receipt is never lost to
//! a crash — it may be sent twice (at least once), which is why receipts
//! carry a stable `receipt_id`.

mod accepted_out;
mod file;
mod kafka;
mod parking;
mod tally;
mod tree_heads;

use std::path::PathBuf;
use std::time::Duration;

use karpoosheh_schemas::{DeadLetter, Reason, Receipt};

pub use self::file::NdjsonReceipts;
pub use self::kafka::KafkaSink;
pub use self::parking::{spawn_deliverer, Parking};
pub use self::tally::{DeliveryTally, Tally, TallySink};
pub use self::tree_heads::TreeHeadProducer;

pub use self::accepted_out::{AcceptedOut, RESTART_HOLD};

/// What became of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandledKind {
    Stored,
    Duplicate,
    Rejected(Reason),
    DeadLetter(Reason),
}

/// One durably handled record.
#[derive(Debug, Clone)]
pub struct Handled {
    pub kind: HandledKind,
    /// The agency's receipt; `None` for dead letters, which no agency can
    /// be told about reliably.
    pub receipt: Option<Receipt>,
    /// Arrival to durable write.
    pub latency: Duration,
    /// When the record arrived, for its receipt's latency to the broker's
    /// acknowledgement (`karpoosheh_receipt_latency_seconds`).
    pub received: std::time::Instant,
    /// Payload bytes of the record.
    pub payload_bytes: usize,
    /// The dead letter as stored (bytes, source position, reasons), for
    /// sinks that forward it, such as the Kafka dead-letter topic.
    pub dead_letter: Option<Box<DeadLetter>>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    #[error("cannot write receipts to {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Receipts an agency's topic refused could not be written to the
    /// parking lot: nothing is acknowledged to the source.
    #[error("cannot park receipts: {0}")]
    Park(crate::store::StoreError),
}

/// Receives every durably handled record, in batches.
pub trait Sink: Send {
    /// Hands a batch over. A sink may return before the batch has
    /// reached its destination; the pipeline calls [`Sink::settle`]
    /// before it acknowledges these records to the source.
    fn handled(&mut self, batch: &[Handled]) -> Result<(), SinkError>;
    /// Blocks until everything handed over so far has reached its
    /// destination (for Kafka: every receipt acknowledged by the broker).
    /// The pipeline calls it once for several batches while writes keep
    /// coming, so waiting on the destination overlaps the following writes.
    fn settle(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// Receipts of later delivery events (rounds, confirmations, served,
    /// not served, expired), from the outbox, in order.
    fn events(&mut self, receipts: &[Receipt]) -> Result<(), SinkError> {
        let _ = receipts;
        Ok(())
    }
    /// The `batch_signed` receipts of the batches the receipts handed
    /// over next by `handled` were sealed in (wire contract, "Receipt
    /// evidence"): for the agencies, like receipts. Every batch is in the
    /// audit log before the sinks have it; a sink may deliver it beside
    /// the receipts and settle them together (Kafka: an agency holds a
    /// receipt until its batch comes). (The outbox hands its batches to
    /// `events`, which settles, ahead of its receipts.)
    fn batches(&mut self, batches: &[Receipt]) -> Result<(), SinkError> {
        let _ = batches;
        Ok(())
    }
    /// Called once at the end of a run.
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
