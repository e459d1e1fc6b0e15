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

use karpoosheh_schemas::{
    parse_recipient, Confirmation, Problem, Reason, SourcePosition, SCHEMA_VERSION,
};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;

use crate::delivery::{ConfirmOutcome, SchedulerHandle};
use crate::evidence::trust::Trust;
use crate::evidence::SignedKind;
use crate::internal_events::{ReaderApplied, ReaderFailed, ReaderRunning};
use crate::model::Entry;
use crate::store::Store;

/// Confirmations read per durable write.
const BATCH: usize = 2000;

/// Reads one record: a confirmation, or why it cannot be one. The value
/// must be signed (a JWS) by a key the trust file allows for
/// confirmations, and the record's key must name the confirming mailbox
/// (`<id>` or `<id>@iran`).
pub(crate) fn read(
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    trust: &Trust,
) -> Result<Confirmation, Problem> {
    let payload = payload
        .ok_or_else(|| Problem::new(Reason::EmptyPayload, None, "a record without a value"))?;
    let verified = trust.verify(SignedKind::Confirmation, payload)?;
    let text = std::str::from_utf8(&verified.payload).map_err(|_| {
        Problem::new(
            Reason::InvalidUtf8,
            None,
            "the signed payload is not valid UTF-8",
        )
    })?;
    let c: Confirmation = serde_json::from_str(text).map_err(|e| {
        let reason = if e.is_data() {
            Reason::WrongType
        } else {
            Reason::MalformedJson
        };
        Problem::new(reason, None, format!("not a confirmation: {e}"))
    })?;
    if c.schema_version != SCHEMA_VERSION {
        return Err(Problem::new(
            Reason::UnsupportedSchemaVersion,
            "schema_version".to_owned(),
            format!(
                "schema_version {} is not {SCHEMA_VERSION}",
                c.schema_version
            ),
        ));
    }
    if c.confirmation_id.is_empty() || c.confirmation_id.len() > 128 {
        return Err(Problem::new(
            Reason::MissingField,
            "confirmation_id".to_owned(),
            "confirmation_id must be 1-128 bytes",
        ));
    }
    let key_id = key
        .and_then(|k| std::str::from_utf8(k).ok())
        .and_then(|k| parse_recipient(k.trim()).ok());
    if key_id != Some(c.confirmed_by) {
        return Err(Problem::new(
            Reason::KeyMismatch,
            "confirmed_by".to_owned(),
            "the record's key is not the confirming mailbox (confirmed_by)",
        ));
    }
    Ok(c)
}

/// Starts the reader thread; it stops when `shutdown` is set.
pub fn spawn(
    sub: super::Subscription<'_>,
    node_id: u16,
    scheduler: Arc<SchedulerHandle>,
    store: Arc<dyn Store>,
    trust: Trust,
    shutdown: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, KafkaError> {
    let consumer =
        crate::kafka::side_consumer(sub.client, sub.topic, sub.group_id, "confirmations")?;
    ReaderRunning::started("confirmations", sub.topic, sub.group_id).emit();
    let handle = std::thread::Builder::new()
        .name("acks".into())
        .spawn(move || {
            while !shutdown.load(Ordering::SeqCst) {
                let mut batch = Vec::new();
                let mut refused = Vec::new();
                let mut reasons = Vec::new();
                let mut polled = 0;
                let deadline = Instant::now() + Duration::from_millis(100);
                while polled < BATCH {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    match consumer.poll(wait) {
                        Some(Ok(m)) => {
                            polled += 1;
                            match read(m.key(), m.payload(), &trust) {
                                Ok(c) if c.tracking_code.node() == node_id => batch.push(c),
                                Ok(_) => {} // another node's notice
                                Err(problem) => {
                                    reasons.push(problem.reason);
                                    // Kept for the operator (`karpoosheh
                                    // dead-letters`), with where it came from.
                                    refused.push(Entry::DeadLetter(super::refused(
                                        m.payload().unwrap_or_default(),
                                        SourcePosition::Kafka {
                                            topic: m.topic().to_owned(),
                                            partition: m.partition(),
                                            offset: m.offset(),
                                        },
                                        vec![problem],
                                    )));
                                }
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
                // Refused records are durable before their offsets commit.
                if !refused.is_empty()
                    && super::write_until_done("confirmations", &shutdown, || store.write(&refused))
                        .is_none()
                {
                    break;
                }
                // Counted once kept.
                for reason in reasons {
                    ConfirmOutcome::Rejected(reason).emit();
                }
                if !batch.is_empty() && !scheduler.confirm_until_done(batch, &shutdown) {
                    // The scheduler stopped: commit nothing, re-read later.
                    break;
                }
                match consumer.commit_consumer_state(CommitMode::Sync) {
                    Ok(()) => ReaderApplied {
                        reader: "confirmations",
                        records: polled,
                    }
                    .emit(),
                    Err(e) => ReaderFailed {
                        reader: "confirmations",
                        stage: "commit",
                        error: &e,
                        retry_in: None,
                    }
                    .emit(),
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
    use crate::evidence::keys::SigningKey;
    use crate::evidence::{jws, trust};

    const OK: &[u8] = br#"{"schema_version":1,"confirmation_id":"c-1","tracking_code":"06YN-3RZS-R000-01","confirmed_by":"0499370899","confirmed_at":"2026-11-23T10:00:00Z"}"#;

    fn app() -> SigningKey {
        SigningKey::from_seed("app-1", [3; 32]).unwrap()
    }

    fn trust() -> Trust {
        let file = format!(
            "[signer.app]\nstatus = \"active\"\nmay_sign = [\"confirmation\"]\n[[signer.app.keys]]\nkid = \"app-1\"\npublic_key = \"{}\"\nstatus = \"active\"\n",
            crate::evidence::b64url(app().public_key())
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, file).unwrap();
        Trust::fixed(&trust::load_file(&path).unwrap())
    }

    fn signed(payload: &[u8]) -> Vec<u8> {
        jws::sign(SignedKind::Confirmation, payload, &app())
    }

    #[test]
    fn confirmations_are_read_or_refused_with_a_reason() {
        let t = trust();
        let c = read(Some(b"0499370899"), Some(&signed(OK)), &t).unwrap();
        assert_eq!(c.confirmation_id, "c-1");
        let reason =
            |payload: Option<&[u8]>| read(Some(b"0499370899"), payload, &t).unwrap_err().reason;
        assert_eq!(reason(None), Reason::EmptyPayload);
        assert_eq!(
            reason(Some(OK)),
            Reason::Unsigned,
            "the plain JSON of before"
        );
        assert_eq!(reason(Some(b"\xff")), Reason::InvalidUtf8);
        assert_eq!(reason(Some(b"{nope")), Reason::MalformedJson);
        assert_eq!(reason(Some(&signed(b"{nope"))), Reason::MalformedJson);
        assert_eq!(
            reason(Some(&signed(br#"{"schema_version":"x"}"#))),
            Reason::WrongType
        );
        let v2 = String::from_utf8(OK.to_vec())
            .unwrap()
            .replace("\"schema_version\":1", "\"schema_version\":2");
        assert_eq!(
            reason(Some(&signed(v2.as_bytes()))),
            Reason::UnsupportedSchemaVersion
        );
        let stranger = SigningKey::from_seed("app-9", [4; 32]).unwrap();
        assert_eq!(
            reason(Some(&jws::sign(SignedKind::Confirmation, OK, &stranger))),
            Reason::UnknownKey
        );
    }

    #[test]
    fn the_record_key_must_name_the_confirming_mailbox() {
        let t = trust();
        let ok = signed(OK);
        assert!(read(Some(b"0499370899@iran"), Some(&ok), &t).is_ok());
        // Someone else's key, no key, or a key that is no mailbox ID.
        for key in [Some(&b"2250153620"[..]), None, Some(&b"tax"[..])] {
            assert_eq!(
                read(key, Some(&ok), &t).unwrap_err().reason,
                Reason::KeyMismatch,
                "{key:?}"
            );
        }
    }
}
