//! The registry reader: mailbox profiles from the compacted
//! `karpoosheh.registry` topic (key: mailbox ID; value: a
//! [`MailboxProfile`]; no value: the profile is removed) into the store.
//!
//! Its own consumer on its own thread, so a burst of registrations never
//! holds up notices. Each polled batch is written durably before its
//! offsets are committed; a re-delivered profile is harmless, since the
//! store never lets an older `updated_at` replace a newer one. A profile
//! that cannot be read or fails validation is kept as a dead letter in the
//! store (`karpoosheh dead-letters`), with its reasons and position.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use karpoosheh_schemas::{
    parse_recipient, validate_profile, DeadLetter, MailboxId, MailboxProfile, MailboxStatus,
    Problem, Reason, SourcePosition,
};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;

use crate::delivery::{SchedulerError, SchedulerHandle};
use crate::evidence::trust::Trust;
use crate::evidence::SignedKind;
use crate::internal_events::{ProfilesRead, ReaderApplied, ReaderFailed, ReaderRunning};
use crate::model::Entry;
use crate::store::Store;

/// Profiles read per durable write.
const BATCH: usize = 2000;

enum Op {
    Put(MailboxProfile),
    Dead(DeadLetter),
}

/// Reads one registry record into an operation. The value must be signed
/// (a JWS) by a key the trust file allows for profiles. `latest` is the
/// newest `updated_at` accepted: the engine's clock plus
/// `kafka.registry_max_future_skew`.
fn read(
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    position: SourcePosition,
    latest: DateTime<Utc>,
    trust: &Trust,
) -> Op {
    let key_id = key
        .and_then(|k| std::str::from_utf8(k).ok())
        .and_then(|k| parse_recipient(k.trim()).ok());
    let Some(payload) = payload else {
        // A tombstone carries no signature, so anyone able to write the
        // topic could remove anyone's mailbox with one: the identity side
        // changes a mailbox with a signed profile (its status), never by
        // deleting it.
        return Op::Dead(super::refused(
            b"",
            position,
            vec![Problem::new(
                Reason::Unsigned,
                None,
                "a tombstone (a record without a value) cannot be signed and removes nothing: send a signed profile with the mailbox's new status instead".to_owned(),
            )],
        ));
    };
    let verified = match trust.verify(SignedKind::Profile, payload) {
        Ok(v) => v,
        Err(problem) => return Op::Dead(super::refused(payload, position, vec![problem])),
    };
    let profile: MailboxProfile = match std::str::from_utf8(&verified.payload) {
        Err(_) => {
            return Op::Dead(super::refused(
                payload,
                position,
                vec![Problem::new(
                    Reason::InvalidUtf8,
                    None,
                    "the signed profile is not valid UTF-8".to_owned(),
                )],
            ))
        }
        Ok(text) => match serde_json::from_str(text) {
            Ok(p) => p,
            Err(e) => {
                let reason = if e.is_data() {
                    Reason::WrongType
                } else {
                    Reason::MalformedJson
                };
                return Op::Dead(super::refused(
                    payload,
                    position,
                    vec![Problem::new(
                        reason,
                        None,
                        format!("not a mailbox profile: {e}"),
                    )],
                ));
            }
        },
    };
    let mut problems = validate_profile(&profile);
    if key_id != Some(profile.id) {
        problems.push(Problem::new(
            Reason::InvalidAddress,
            "id".to_owned(),
            "the record's key is not the profile's mailbox ID".to_owned(),
        ));
    }
    if profile.updated_at > latest {
        problems.push(Problem::new(
            Reason::ProfileFromFuture,
            "updated_at".to_owned(),
            format!(
                "updated_at {} is ahead of the engine's clock by more than kafka.registry_max_future_skew",
                profile.updated_at.to_rfc3339()
            ),
        ));
    }
    if problems.is_empty() {
        Op::Put(profile)
    } else {
        Op::Dead(super::refused(payload, position, problems))
    }
}

/// Applies a batch: the profiles in one durable write, the dead letters
/// in another. Also returns the mailboxes that became reachable (active
/// or incapacitated with a representative), whose waiting notices may now
/// start their rounds.
fn apply(
    store: &dyn Store,
    ops: &[Op],
) -> Result<(ProfilesRead, Vec<MailboxId>), crate::store::StoreError> {
    let mut reachable = Vec::new();
    let mut stats = ProfilesRead {
        applied: 0,
        stale: 0,
        deleted: 0,
        invalid: 0,
    };
    let mut puts = Vec::new();
    let mut deads = Vec::new();
    for op in ops {
        match op {
            Op::Put(p) => puts.push(p.clone()),
            Op::Dead(d) => deads.push(Entry::DeadLetter(d.clone())),
        }
    }
    if !puts.is_empty() {
        for (applied, p) in store.put_profiles(&puts)?.into_iter().zip(puts.iter()) {
            if applied {
                if p.status == MailboxStatus::Active
                    || (p.status == MailboxStatus::Incapacitated && !p.representatives.is_empty())
                {
                    reachable.push(p.id);
                }
                stats.applied += 1;
            } else {
                stats.stale += 1;
            }
        }
    }
    if !deads.is_empty() {
        stats.invalid = deads.len() as u64;
        store.write(&deads)?;
    }
    Ok((stats, reachable))
}

/// Starts the reader thread; it stops when `shutdown` is set.
pub fn spawn(
    sub: super::Subscription<'_>,
    store: Arc<dyn Store>,
    scheduler: Option<Arc<SchedulerHandle>>,
    max_future_skew: Duration,
    trust: Trust,
    shutdown: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, KafkaError> {
    let skew = chrono::Duration::from_std(max_future_skew).unwrap_or(chrono::Duration::MAX);
    let consumer = crate::kafka::side_consumer(sub.client, sub.topic, sub.group_id, "registry")?;
    ReaderRunning::started("registry", sub.topic, sub.group_id).emit();
    let handle = std::thread::Builder::new()
        .name("registry".into())
        .spawn(move || {
            while !shutdown.load(Ordering::SeqCst) {
                let mut ops = Vec::new();
                let deadline = Instant::now() + Duration::from_millis(100);
                while ops.len() < BATCH {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    match consumer.poll(wait) {
                        Some(Ok(m)) => ops.push(read(
                            m.key(),
                            m.payload(),
                            SourcePosition::Kafka {
                                topic: m.topic().to_owned(),
                                partition: m.partition(),
                                offset: m.offset(),
                            },
                            Utc::now()
                                .checked_add_signed(skew)
                                .unwrap_or(DateTime::<Utc>::MAX_UTC),
                            &trust,
                        )),
                        Some(Err(e)) => {
                            ReaderFailed {
                                reader: "registry",
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
                if ops.is_empty() {
                    continue;
                }
                // Durable first, then commit; retried until it succeeds.
                let result =
                    super::write_until_done("registry", &shutdown, || apply(store.as_ref(), &ops));
                let Some((stats, reachable)) = result else {
                    break;
                };
                stats.emit();
                // Notices waiting for these mailboxes start their rounds,
                // durably, before the offsets are committed.
                if let (Some(s), false) = (&scheduler, reachable.is_empty()) {
                    let mut delay = Duration::from_millis(100);
                    let started = loop {
                        match s.profiles_updated(store.as_ref(), &reachable) {
                            Ok(()) => break true,
                            // Activations are idempotent: try again.
                            Err(SchedulerError::Stopped) => break false,
                            Err(e) if !shutdown.load(Ordering::SeqCst) => {
                                ReaderFailed {
                                    reader: "registry",
                                    stage: "activate",
                                    error: &e,
                                    retry_in: Some(delay),
                                }
                                .emit();
                                std::thread::sleep(delay);
                                delay = (delay * 2).min(Duration::from_secs(5));
                            }
                            Err(_) => break false,
                        }
                    };
                    if !started {
                        // Stopping: commit nothing, re-read after a restart.
                        break;
                    }
                }
                match consumer.commit_consumer_state(CommitMode::Sync) {
                    Ok(()) => ReaderApplied {
                        reader: "registry",
                        records: ops.len(),
                    }
                    .emit(),
                    Err(e) => ReaderFailed {
                        reader: "registry",
                        stage: "commit",
                        error: &e,
                        retry_in: None,
                    }
                    .emit(),
                }
            }
            ReaderRunning::stopped("registry").emit();
        })
        .expect("spawn registry reader");
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::keys::SigningKey;
    use crate::evidence::{b64url, jws, trust};
    use crate::store::conformance::profile;

    fn far() -> DateTime<Utc> {
        DateTime::<Utc>::MAX_UTC
    }

    fn pos() -> SourcePosition {
        SourcePosition::Kafka {
            topic: "karpoosheh.registry".into(),
            partition: 0,
            offset: 7,
        }
    }

    fn idp() -> SigningKey {
        SigningKey::from_seed("idp-1", [5; 32]).unwrap()
    }

    fn trust() -> Trust {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            format!(
                "[signer.idp]\nstatus = \"active\"\nmay_sign = [\"profile\"]\n[[signer.idp.keys]]\nkid = \"idp-1\"\npublic_key = \"{}\"\nstatus = \"active\"\n",
                b64url(idp().public_key())
            ),
        )
        .unwrap();
        Trust::fixed(&trust::load_file(&path).unwrap())
    }

    fn signed(payload: &[u8]) -> Vec<u8> {
        jws::sign(SignedKind::Profile, payload, &idp())
    }

    #[test]
    fn records_become_puts_or_dead_letters() {
        let t = trust();
        let id = parse_recipient("0499370899").unwrap();
        let p = profile(id, MailboxStatus::Active, 0);
        let json = serde_json::to_vec(&p).unwrap();
        assert!(matches!(
            read(Some(b"0499370899"), Some(&signed(&json)), pos(), far(), &t),
            Op::Put(_)
        ));
        let reason =
            |key: &[u8], payload: Option<&[u8]>| match read(Some(key), payload, pos(), far(), &t) {
                Op::Dead(d) => {
                    assert_eq!(d.source, pos());
                    d.problems[0].reason
                }
                Op::Put(_) => panic!("applied"),
            };
        // A tombstone removes nothing: it cannot be signed.
        assert_eq!(reason(b"0499370899", None), Reason::Unsigned);
        assert_eq!(reason(b"0499370899", Some(&json)), Reason::Unsigned);
        // A key naming another mailbox.
        assert_eq!(
            reason(b"1111111111", Some(&signed(&json))),
            Reason::InvalidAddress
        );
        assert_eq!(
            reason(b"0499370899", Some(&signed(b"{oops"))),
            Reason::MalformedJson
        );
        // Signed by a confirmation signer's kind of envelope.
        let as_confirmation = jws::sign(SignedKind::Confirmation, &json, &idp());
        assert_eq!(
            reason(b"0499370899", Some(&as_confirmation)),
            Reason::WrongMessageKind
        );
    }

    /// A profile read again after a crash that came between its write and
    /// the resumption of its waiting notices (its offset never committed)
    /// is applied again, so its notices are looked for again (issue 23's
    /// kill campaign).
    #[test]
    fn a_profile_read_again_after_a_crash_still_resumes_its_waiting_notices() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::conformance::fjall_store(dir.path());
        let id = parse_recipient("0499370899").unwrap();
        let active = profile(id, MailboxStatus::Active, 10);
        let (stats, reachable) = apply(store.as_ref(), &[Op::Put(active.clone())]).unwrap();
        assert_eq!((stats.applied, reachable.clone()), (1, vec![id]));
        let (stats, reachable) = apply(store.as_ref(), &[Op::Put(active)]).unwrap();
        assert_eq!((stats.applied, reachable), (1, vec![id]), "the same again");
        // An older one is stale: the stored one stands.
        let (stats, reachable) = apply(
            store.as_ref(),
            &[Op::Put(profile(id, MailboxStatus::Deceased, 5))],
        )
        .unwrap();
        assert_eq!((stats.stale, reachable.len()), (1, 0));
    }

    #[test]
    fn a_profile_dated_past_the_allowed_skew_is_refused() {
        let t = trust();
        let id = parse_recipient("0499370899").unwrap();
        // `profile` dates it `minutes` after the conformance epoch.
        let p = profile(id, MailboxStatus::Deceased, 60);
        let json = signed(&serde_json::to_vec(&p).unwrap());
        let at = p.updated_at;
        let latest = at - chrono::Duration::seconds(1);
        let Op::Dead(d) = read(Some(b"0499370899"), Some(&json), pos(), latest, &t) else {
            panic!("a profile from the future would pin the mailbox")
        };
        assert_eq!(d.problems[0].reason, Reason::ProfileFromFuture);
        assert_eq!(d.problems[0].field.as_deref(), Some("updated_at"));
        // Within the skew: applied.
        assert!(matches!(
            read(Some(b"0499370899"), Some(&json), pos(), at, &t),
            Op::Put(_)
        ));
    }
}
