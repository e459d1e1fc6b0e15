//! The receipts outbox: delivery events are written to the store together
//! with the state change that caused them, then published to the sinks in
//! order and only then removed. A crash re-publishes what was not yet
//! removed: receipts are at least once, with stable `receipt_id`s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::evidence::seal::Sealer;
use crate::internal_events::{OutboxPublishFailed, OutboxStarted, ReceiptsPublished};
use crate::sink::{AcceptedOut, Sink, SinkError};
use crate::store::{Store, StoreError};

/// Why publishing stopped for now.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The audit log refused the receipts' batch: they are not published.
    #[error("{0}")]
    Audit(String),
}

/// Publishes the store's outbox to sinks.
pub struct Outbox {
    pub store: Arc<dyn Store>,
    pub sinks: Vec<Box<dyn Sink>>,
    /// Receipts per publish.
    pub batch: usize,
    /// Signs the receipts with the node's key, in batches (evidence::seal).
    pub sealer: Option<Sealer>,
    /// With Kafka: which of this node's notices have their `accepted`
    /// receipt out. A later event of one of its notices waits until that
    /// notice's `accepted` is out (they go through different producers; an
    /// agency reads a notice's receipts in order). Events of other nodes'
    /// notices (an inbox act served here) are not held.
    pub gate: Option<Arc<AcceptedOut>>,
}

impl Outbox {
    /// Publishes up to one batch; returns how many receipts went out.
    pub fn publish_once(&mut self) -> Result<usize, OutboxError> {
        // Its error counter shows 0 from the first pass (one handle lookup
        // per pass, at most one pass per idle interval or batch).
        OutboxStarted.emit();
        let mut items = self.store.outbox(None, self.batch)?;
        if let Some(out) = &self.gate {
            out.tick();
            // In order: everything from the first held event waits (the
            // store forgets the outbox up to what was published).
            if let Some(i) = items.iter().position(|(_, r)| {
                crate::evidence::chain::code_of(r).is_some_and(|c| !out.is_out(c))
            }) {
                items.truncate(i);
            }
        }
        if items.is_empty() {
            return Ok(0);
        }
        let mut receipts: Vec<_> = items.iter().map(|(_, r)| r.clone()).collect();
        let batches = match &self.sealer {
            Some(s) => s
                .seal(receipts.iter_mut())
                .map_err(|e| OutboxError::Audit(e.to_string()))?,
            None => Vec::new(),
        };
        // Each batch's signed head first, acknowledged (`events` settles),
        // then its receipts: no receipt is out without its batch.
        for s in &mut self.sinks {
            s.events(&batches)?;
            s.events(&receipts)?;
        }
        let ids: Vec<u64> = items.iter().map(|(id, _)| *id).collect();
        self.store.outbox_remove(&ids)?;
        ReceiptsPublished { count: ids.len() }.emit();
        Ok(ids.len())
    }

    /// Publishes until the outbox is empty.
    pub fn drain(&mut self) -> Result<usize, OutboxError> {
        let mut n = 0;
        loop {
            let k = self.publish_once()?;
            if k == 0 {
                return Ok(n);
            }
            n += k;
        }
    }

    /// Publishes on a thread until `shutdown`, then drains once more.
    pub fn spawn(
        mut self,
        shutdown: Arc<AtomicBool>,
        idle: Duration,
    ) -> std::thread::JoinHandle<()> {
        std::thread::Builder::new()
            .name("outbox".into())
            .spawn(move || {
                let mut backoff = idle;
                loop {
                    let stopping = shutdown.load(Ordering::SeqCst);
                    match self.publish_once() {
                        Ok(0) if stopping => break,
                        Ok(0) => std::thread::sleep(idle),
                        Ok(_) => backoff = idle,
                        Err(e) => {
                            OutboxPublishFailed { error: &e }.emit();
                            if stopping {
                                break;
                            }
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                        }
                    }
                }
                for s in &mut self.sinks {
                    let _ = s.finish();
                }
            })
            .expect("spawning the outbox thread")
    }
}
