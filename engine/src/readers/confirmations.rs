//! The confirmations reader: recipients' confirmations from
//! `karpoosheh.acks` (key: recipient ID; value: a [`Confirmation`]) into
//! the scheduler, which deduplicates them by `confirmation_id` and makes a
//! notice served at the second (art. 29).
//!
//! Each polled batch is applied durably before its offsets are committed;
//! a re-delivered confirmation is a duplicate and changes nothing. With the
//! embedded store every node reads every confirmation and applies those
//! for the notices it stored (the tracking code names the node). A
//! confirmation that cannot be read, or is refused (unknown, expired or
//! someone else's notice), is counted in `karpoosheh_confirmations_total`
//! with its reason and never applied.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use karpoosheh_schemas::{parse_recipient, Confirmation, Reason, SCHEMA_VERSION};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;

use crate::delivery::{ConfirmOutcome, SchedulerHandle};
use crate::internal_events::{ReaderFailed, ReaderRunning};

/// Confirmations read per durable write.
const BATCH: usize = 2000;

/// Reads one record: a confirmation, or why it cannot be one. The record's
/// key must name the confirming mailbox (`<id>` or `<id>@iran`).
pub(crate) fn read(key: Option<&[u8]>, payload: Option<&[u8]>) -> Result<Confirmation, Reason> {
    let payload = payload.ok_or(Reason::EmptyPayload)?;
    let text = std::str::from_utf8(payload).map_err(|_| Reason::InvalidUtf8)?;
    let c: Confirmation = serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            Reason::WrongType
        } else {
            Reason::MalformedJson
        }
    })?;
    if c.schema_version != SCHEMA_VERSION {
        return Err(Reason::UnsupportedSchemaVersion);
    }
    if c.confirmation_id.is_empty() || c.confirmation_id.len() > 128 {
        return Err(Reason::MissingField);
    }
    let key_id = key
        .and_then(|k| std::str::from_utf8(k).ok())
        .and_then(|k| parse_recipient(k.trim()).ok());
    if key_id != Some(c.confirmed_by) {
        return Err(Reason::KeyMismatch);
    }
    Ok(c)
}

/// Starts the reader thread; it stops when `shutdown` is set.
pub fn spawn(
    topic: &str,
    group_id: &str,
    node_id: u16,
    client: ClientConfig,
    scheduler: Arc<SchedulerHandle>,
    shutdown: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, KafkaError> {
    let consumer = crate::kafka::side_consumer(client, topic, group_id)?;
    ReaderRunning::started("confirmations", topic, group_id).emit();
    let handle = std::thread::Builder::new()
        .name("acks".into())
        .spawn(move || {
            while !shutdown.load(Ordering::SeqCst) {
                let mut batch = Vec::new();
                let mut polled = 0;
                let deadline = Instant::now() + Duration::from_millis(100);
                while polled < BATCH {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    match consumer.poll(wait) {
                        Some(Ok(m)) => {
                            polled += 1;
                            match read(m.key(), m.payload()) {
                                Ok(c) if c.tracking_code.node() == node_id => batch.push(c),
                                Ok(_) => {} // another node's notice
                                Err(reason) => ConfirmOutcome::Rejected(reason).emit(),
                            }
                        }
                        Some(Err(e)) => {
                            ReaderFailed {
                                reader: "confirmations",
                                stage: "consume",
                                error: &e,
                                retry_in: None,
                            }
                            .emit();
                            break;
                        }
                        None => break,
                    }
                }
                if polled == 0 {
                    continue;
                }
                if !batch.is_empty() && !scheduler.confirm_until_done(batch, &shutdown) {
                    // The scheduler stopped: commit nothing, re-read later.
                    break;
                }
                if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                    ReaderFailed {
                        reader: "confirmations",
                        stage: "commit",
                        error: &e,
                        retry_in: None,
                    }
                    .emit();
                }
            }
            ReaderRunning::stopped("confirmations").emit();
        })
        .expect("spawn confirmations reader");
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_are_read_or_refused_with_a_reason() {
        let ok = br#"{"schema_version":1,"confirmation_id":"c-1","tracking_code":"06YN-3RZS-R000-01","confirmed_by":"0499370899","confirmed_at":"2026-11-23T10:00:00Z"}"#;
        let c = read(Some(b"0499370899"), Some(ok)).unwrap();
        assert_eq!(c.confirmation_id, "c-1");
        assert_eq!(read(Some(b"0499370899"), None), Err(Reason::EmptyPayload));
        assert_eq!(
            read(Some(b"0499370899"), Some(b"\xff")),
            Err(Reason::InvalidUtf8)
        );
        assert_eq!(
            read(Some(b"0499370899"), Some(b"{nope")),
            Err(Reason::MalformedJson)
        );
        assert_eq!(
            read(Some(b"0499370899"), Some(br#"{"schema_version":"x"}"#)),
            Err(Reason::WrongType)
        );
        let v2 = String::from_utf8(ok.to_vec())
            .unwrap()
            .replace("\"schema_version\":1", "\"schema_version\":2");
        assert_eq!(
            read(Some(b"0499370899"), Some(v2.as_bytes())),
            Err(Reason::UnsupportedSchemaVersion)
        );
    }

    #[test]
    fn the_record_key_must_name_the_confirming_mailbox() {
        let ok = br#"{"schema_version":1,"confirmation_id":"c-1","tracking_code":"06YN-3RZS-R000-01","confirmed_by":"0499370899","confirmed_at":"2026-11-23T10:00:00Z"}"#;
        assert!(read(Some(b"0499370899@iran"), Some(ok)).is_ok());
        // Someone else's key, no key, or a key that is no mailbox ID.
        for key in [Some(&b"2250153620"[..]), None, Some(&b"tax"[..])] {
            assert_eq!(read(key, Some(ok)), Err(Reason::KeyMismatch), "{key:?}");
        }
    }
}
