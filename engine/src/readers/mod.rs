//! Side readers: the Kafka consumers beside the notice source, each on its
//! own thread with its own consumer group, committing only after what it
//! read is applied durably. [`confirmations`] hands recipients'
//! confirmations (`karpoosheh.acks`) to the article-29 scheduler;
//! [`registry`] writes mailbox profiles (`karpoosheh.registry`) to the
//! store and tells the scheduler of activations. `crate::node` starts them.

pub(crate) mod confirmations;
pub(crate) mod registry;

/// Where a side reader reads: its topic, its consumer group, and the
/// client configuration.
pub(crate) struct Subscription<'a> {
    pub topic: &'a str,
    pub group_id: &'a str,
    pub client: rdkafka::config::ClientConfig,
}

/// Runs a side reader's durable write until it succeeds, backing off from
/// 100 ms to 5 s and counting each failure (`stage` "write"); `None` when
/// `shutdown` was set meanwhile: commit nothing, re-read after a restart.
pub(crate) fn write_until_done<T, E: std::error::Error>(
    reader: &'static str,
    shutdown: &std::sync::atomic::AtomicBool,
    mut write: impl FnMut() -> Result<T, E>,
) -> Option<T> {
    let mut delay = std::time::Duration::from_millis(100);
    loop {
        match write() {
            Ok(v) => return Some(v),
            Err(e) => {
                crate::internal_events::ReaderFailed {
                    reader,
                    stage: "write",
                    error: &e,
                    retry_in: Some(delay),
                }
                .emit();
                if shutdown.load(std::sync::atomic::Ordering::SeqCst) {
                    return None;
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
}

/// A side reader's record refused with `problems`, kept for the operator
/// as a dead letter with where it came from.
pub(crate) fn refused(
    payload: &[u8],
    position: karpoosheh_schemas::SourcePosition,
    problems: Vec<karpoosheh_schemas::Problem>,
) -> karpoosheh_schemas::DeadLetter {
    crate::model::dead_letter(
        payload,
        payload.len() as u64,
        position,
        None,
        problems,
        chrono::Utc::now(),
    )
}
