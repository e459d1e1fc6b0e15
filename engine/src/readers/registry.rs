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
    parse_recipient, validate_profile, DeadLetter, MailboxId, MailboxProfile, Problem, Reason,
    SourcePosition,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;

use crate::delivery::{SchedulerError, SchedulerHandle};
use crate::internal_events::{ProfilesRead, ReaderFailed, ReaderRunning};
use crate::model::dead_letter;
use crate::model::Entry;
use crate::store::Store;

/// Profiles read per durable write.
const BATCH: usize = 2000;

enum Op {
    Put(MailboxProfile),
    /// A tombstone, with its record's time.
    Delete(MailboxId, DateTime<Utc>),
    Dead(DeadLetter),
}

fn dead(payload: &[u8], position: SourcePosition, problems: Vec<Problem>) -> DeadLetter {
    dead_letter(
        payload,
        payload.len() as u64,
        position,
        None,
        problems,
        Utc::now(),
    )
}

/// Reads one registry record (written at `at`) into an operation.
/// `latest` is the newest `updated_at` accepted: the engine's clock plus
/// `kafka.registry_max_future_skew`.
fn read(
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    at: DateTime<Utc>,
    position: SourcePosition,
    latest: DateTime<Utc>,
) -> Op {
    let key_id = key
        .and_then(|k| std::str::from_utf8(k).ok())
        .and_then(|k| parse_recipient(k.trim()).ok());
    let Some(payload) = payload else {
        return match key_id {
            Some(id) => Op::Delete(id, at),
            None => Op::Dead(dead(
                b"",
                position,
                vec![Problem::new(
                    Reason::EmptyPayload,
                    None,
                    "a tombstone whose key is not a mailbox ID".to_owned(),
                )],
            )),
        };
    };
    let profile: MailboxProfile = match std::str::from_utf8(payload) {
        Err(_) => {
            return Op::Dead(dead(
                payload,
                position,
                vec![Problem::new(
                    Reason::InvalidUtf8,
                    None,
                    "the profile is not valid UTF-8".to_owned(),
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
                return Op::Dead(dead(
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
        Op::Dead(dead(payload, position, problems))
    }
}

/// Applies a batch in order, each run of one kind in one durable write.
/// Also returns the mailboxes that became reachable (active or
/// incapacitated), whose waiting notices may now start their rounds.
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
    let mut deletes = Vec::new();
    let mut deads = Vec::new();
    let mut flush = |puts: &mut Vec<MailboxProfile>,
                     deletes: &mut Vec<(MailboxId, DateTime<Utc>)>,
                     stats: &mut ProfilesRead|
     -> Result<(), crate::store::StoreError> {
        if !puts.is_empty() {
            for (applied, p) in store.put_profiles(puts)?.into_iter().zip(puts.iter()) {
                if applied {
                    // Reachable: active, or incapacitated with a guardian
                    // (a representative) to notify instead.
                    if p.status == karpoosheh_schemas::MailboxStatus::Active
                        || (p.status == karpoosheh_schemas::MailboxStatus::Incapacitated
                            && !p.representatives.is_empty())
                    {
                        reachable.push(p.id);
                    }
                    stats.applied += 1;
                } else {
                    stats.stale += 1;
                }
            }
            puts.clear();
        }
        if !deletes.is_empty() {
            store.delete_profiles(deletes)?;
            stats.deleted += deletes.len() as u64;
            deletes.clear();
        }
        Ok(())
    };
    for op in ops {
        match op {
            Op::Put(p) => {
                if !deletes.is_empty() {
                    flush(&mut puts, &mut deletes, &mut stats)?;
                }
                puts.push(p.clone());
            }
            Op::Delete(id, at) => {
                if !puts.is_empty() {
                    flush(&mut puts, &mut deletes, &mut stats)?;
                }
                deletes.push((*id, *at));
            }
            Op::Dead(d) => deads.push(Entry::DeadLetter(d.clone())),
        }
    }
    flush(&mut puts, &mut deletes, &mut stats)?;
    if !deads.is_empty() {
        stats.invalid = deads.len() as u64;
        store.write(&deads)?;
    }
    Ok((stats, reachable))
}

/// Starts the reader thread; it stops when `shutdown` is set.
pub fn spawn(
    topic: &str,
    group_id: &str,
    client: ClientConfig,
    store: Arc<dyn Store>,
    scheduler: Option<Arc<SchedulerHandle>>,
    max_future_skew: Duration,
    shutdown: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, KafkaError> {
    let skew = chrono::Duration::from_std(max_future_skew).unwrap_or(chrono::Duration::MAX);
    let consumer = crate::kafka::side_consumer(client, topic, group_id)?;
    ReaderRunning::started("registry", topic, group_id).emit();
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
                            // The tombstone's time orders it against
                            // profiles' updated_at (see Store::delete_profiles).
                            m.timestamp()
                                .to_millis()
                                .and_then(DateTime::from_timestamp_millis)
                                .unwrap_or_else(Utc::now),
                            SourcePosition::Kafka {
                                topic: m.topic().to_owned(),
                                partition: m.partition(),
                                offset: m.offset(),
                            },
                            Utc::now()
                                .checked_add_signed(skew)
                                .unwrap_or(DateTime::<Utc>::MAX_UTC),
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
                let mut delay = Duration::from_millis(100);
                let result = loop {
                    match apply(store.as_ref(), &ops) {
                        Ok(s) => break Some(s),
                        Err(e) => {
                            ReaderFailed {
                                reader: "registry",
                                stage: "write",
                                error: &e,
                                retry_in: Some(delay),
                            }
                            .emit();
                            if shutdown.load(Ordering::SeqCst) {
                                break None;
                            }
                            std::thread::sleep(delay);
                            delay = (delay * 2).min(Duration::from_secs(5));
                        }
                    }
                };
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
                if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                    ReaderFailed {
                        reader: "registry",
                        stage: "commit",
                        error: &e,
                        retry_in: None,
                    }
                    .emit();
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
    use crate::store::conformance::profile;
    use karpoosheh_schemas::MailboxStatus;

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

    #[test]
    fn records_become_puts_deletes_or_dead_letters() {
        let id = parse_recipient("0499370899").unwrap();
        let p = profile(id, MailboxStatus::Active, 0);
        let json = serde_json::to_vec(&p).unwrap();
        assert!(matches!(
            read(Some(b"0499370899"), Some(&json), Utc::now(), pos(), far()),
            Op::Put(_)
        ));
        assert!(matches!(
            read(Some(b"0499370899"), None, Utc::now(), pos(), far()),
            Op::Delete(..)
        ));
        let Op::Dead(d) = read(Some(b"1111111111"), Some(&json), Utc::now(), pos(), far()) else {
            panic!("a key naming another mailbox is refused")
        };
        assert_eq!(d.problems[0].reason, Reason::InvalidAddress);
        let Op::Dead(d) = read(
            Some(b"0499370899"),
            Some(b"{oops"),
            Utc::now(),
            pos(),
            far(),
        ) else {
            panic!("malformed JSON is a dead letter")
        };
        assert_eq!(d.problems[0].reason, Reason::MalformedJson);
        assert_eq!(d.source, pos());
    }

    #[test]
    fn a_profile_dated_past_the_allowed_skew_is_refused() {
        let id = parse_recipient("0499370899").unwrap();
        // `profile` dates it `minutes` after the conformance epoch.
        let p = profile(id, MailboxStatus::Deceased, 60);
        let json = serde_json::to_vec(&p).unwrap();
        let at = p.updated_at;
        let latest = at - chrono::Duration::seconds(1);
        let Op::Dead(d) = read(Some(b"0499370899"), Some(&json), at, pos(), latest) else {
            panic!("a profile from the future would pin the mailbox")
        };
        assert_eq!(d.problems[0].reason, Reason::ProfileFromFuture);
        assert_eq!(d.problems[0].field.as_deref(), Some("updated_at"));
        // Within the skew: applied.
        assert!(matches!(
            read(Some(b"0499370899"), Some(&json), at, pos(), at),
            Op::Put(_)
        ));
    }
}
