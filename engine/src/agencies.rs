//! The operator's registry of agencies allowed to send (art. 3.1, 5, 6,
//! 13, 26): a TOML file, re-read when it changes, so approving or
//! suspending an agency needs no restart.
//!
//! ```toml
//! [agency.tax]
//! status = "approved"        # approved | suspended | dissolved
//! name = "Iranian National Tax Administration"
//! # SHA-256 (hex) of each key the agency may call its HTTP routes with
//! # (`GET /v1/agency/status`); two while a key is rotated.
//! api_keys_sha256 = ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
//! ```
//!
//! Only an approved agency may send. A suspended one is refused until it
//! is approved again; a dissolved one is refused for good, while what it
//! sent stays readable (art. 8). An agency not in the file is unknown.
//! A file that fails to parse on reload is reported and the previous
//! registry stays in force: a typo must not open or close the door.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use karpoosheh_schemas::{AgencyId, HumanDuration, Problem, Reason};
use serde::{Deserialize, Serialize};

use crate::internal_events::AgencyRegistryLoaded;
use crate::reload::Reloaded;

/// `[agencies]` in the engine configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgenciesConfig {
    /// The registry file; `karpoosheh run` refuses to start without one.
    pub file: PathBuf,
    /// How often the file's modification time is checked for a reload.
    pub reload_interval: HumanDuration,
}

impl Default for AgenciesConfig {
    fn default() -> Self {
        AgenciesConfig {
            // No default file: which agencies may send is the operator's
            // decision, never a default.
            file: PathBuf::new(),
            // Approving an agency takes effect within seconds.
            reload_interval: HumanDuration(Duration::from_secs(5)),
        }
    }
}

/// An agency's standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgencyStatus {
    Approved,
    Suspended,
    Dissolved,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgencyEntry {
    status: AgencyStatus,
    #[serde(default)]
    #[allow(dead_code)]
    name: String,
    #[serde(default)]
    api_keys_sha256: Vec<String>,
    /// Notice records a node takes from the agency's topics per day
    /// (Tehran time); more are answered `quota_exceeded`. None: no quota.
    #[serde(default)]
    notices_per_day: Option<u64>,
    /// Rounds of notification of the agency's normal and bulk notices
    /// started per second (all workers of a node together); more are put
    /// off to the agency's next free slot. None: no limit.
    #[serde(default)]
    rounds_per_second: Option<f64>,
    /// What becomes of its bulk-lane notices over `notices_per_day`:
    /// answered `quota_exceeded` (`refuse`), or left in the topic until
    /// the next day (`defer`). Normal-lane ones are always answered.
    #[serde(default)]
    over_quota: OverQuota,
    /// Its share of the scheduler's rounds while other agencies' rounds
    /// are due too (1-1000; 1 when absent): rounds are taken from each
    /// agency's queue in proportion to its weight.
    #[serde(default)]
    weight: Option<u32>,
    /// Its agencies' queue in the normal and bulk lanes (0-6); absent:
    /// the hash of its ID (`model::agency_queue`). For notices stored from
    /// then on: a stored notice keeps the queue it was stored with.
    #[serde(default)]
    queue: Option<u8>,
}

/// The largest `weight` an agency may have.
pub const MAX_WEIGHT: u32 = 1000;

/// What becomes of an agency's bulk notices over its daily quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverQuota {
    /// Answered `quota_exceeded`, with a receipt: send them again tomorrow.
    #[default]
    Refuse,
    /// Slowed: left in the topic, read from the next Tehran midnight on.
    Defer,
}

/// An agency as the registry holds it.
#[derive(Debug, Clone)]
struct Agency {
    status: AgencyStatus,
    notices_per_day: Option<u64>,
    rounds_per_second: Option<f64>,
    over_quota: OverQuota,
    weight: u32,
    /// Its agencies' queue: the file's `queue`, else the hash of its ID.
    queue: u8,
    /// SHA-256 of each key it may call its HTTP routes with.
    keys: Vec<[u8; 32]>,
}

/// The shortest agency key accepted (the secret after `<agency>:`).
pub const MIN_KEY: usize = 32;

/// Why an agency's credential was refused. Unknown agency and wrong key
/// are one answer: nothing tells a caller which agencies exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgencyAuthError {
    #[error("no agency key (Authorization: Bearer <agency>:<key>)")]
    Missing,
    #[error("the credential is not <agency>:<key> with a key of at least {MIN_KEY} characters")]
    Malformed,
    #[error("the agency key is not one the registry holds for that agency")]
    Refused,
}

impl AgencyAuthError {
    /// The stable reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            AgencyAuthError::Missing => "agency_key_missing",
            AgencyAuthError::Malformed => "agency_key_malformed",
            AgencyAuthError::Refused => "agency_key_refused",
        }
    }
}

fn key_digest(hex: &str) -> Option<[u8; 32]> {
    let b = hex.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    agency: HashMap<String, AgencyEntry>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgencyRegistryError {
    #[error("cannot read the agency registry {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the agency registry {path} is invalid: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The registry, shared and reloadable.
#[derive(Clone)]
pub struct AgencyRegistry {
    inner: Arc<Reloaded<HashMap<String, Agency>>>,
    /// Per agency: the Tehran day being counted and the records admitted
    /// on it (this node's count; see [`AgencyRegistry::admit`]).
    today: Arc<std::sync::Mutex<HashMap<String, (i64, u64)>>>,
    /// Per agency with `rounds_per_second`: its balance of round slots
    /// (negative: slots handed out ahead) and when it was last filled.
    pace: Arc<std::sync::Mutex<HashMap<String, (f64, std::time::Instant)>>>,
}

/// The day number of `now` in Tehran (UTC+03:30; Iran keeps no summer
/// time since 2022): quotas turn over at local midnight.
fn tehran_day(now: chrono::DateTime<chrono::Utc>) -> i64 {
    (now.timestamp() + i64::from(karpoosheh_schemas::TEHRAN_UTC_OFFSET_SECS)).div_euclid(86_400)
}

/// How long from `now` to the next Tehran midnight, when quotas turn over.
pub fn until_tehran_midnight(now: chrono::DateTime<chrono::Utc>) -> std::time::Duration {
    let next =
        (tehran_day(now) + 1) * 86_400 - i64::from(karpoosheh_schemas::TEHRAN_UTC_OFFSET_SECS);
    std::time::Duration::from_millis((next * 1000 - now.timestamp_millis()).max(0) as u64)
}

fn load(path: &Path) -> Result<HashMap<String, Agency>, AgencyRegistryError> {
    let read = |source| AgencyRegistryError::Read {
        path: path.to_owned(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(read)?;
    let file: RegistryFile = toml::from_str(&text).map_err(|e| AgencyRegistryError::Invalid {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let mut out = HashMap::with_capacity(file.agency.len());
    for (id, entry) in file.agency {
        AgencyId::parse(&id).map_err(|e| AgencyRegistryError::Invalid {
            path: path.to_owned(),
            message: format!("[agency.{id}]: {e}"),
        })?;
        if let Some(r) = entry.rounds_per_second {
            if !(r.is_finite() && r > 0.0) {
                return Err(AgencyRegistryError::Invalid {
                    path: path.to_owned(),
                    message: format!(
                        "[agency.{id}].rounds_per_second is {r}; it must be a number above 0"
                    ),
                });
            }
        }
        let weight = entry.weight.unwrap_or(1);
        if !(1..=MAX_WEIGHT).contains(&weight) {
            return Err(AgencyRegistryError::Invalid {
                path: path.to_owned(),
                message: format!(
                    "[agency.{id}].weight is {weight}; it must be a whole number from 1 to {MAX_WEIGHT}"
                ),
            });
        }
        let queue = match entry.queue {
            Some(q) if q >= crate::model::AGENCY_QUEUES => {
                return Err(AgencyRegistryError::Invalid {
                    path: path.to_owned(),
                    message: format!(
                        "[agency.{id}].queue is {q}; it must be 0 to {}",
                        crate::model::AGENCY_QUEUES - 1
                    ),
                })
            }
            Some(q) => q,
            None => crate::model::agency_queue(&AgencyId::parse(&id).expect("checked above")),
        };
        let keys = entry
            .api_keys_sha256
            .iter()
            .map(|k| {
                key_digest(k).ok_or_else(|| AgencyRegistryError::Invalid {
                    path: path.to_owned(),
                    message: format!(
                        "[agency.{id}].api_keys_sha256: {k:?} is not a SHA-256 digest (64 hex digits)"
                    ),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.insert(
            id,
            Agency {
                status: entry.status,
                notices_per_day: entry.notices_per_day,
                rounds_per_second: entry.rounds_per_second,
                over_quota: entry.over_quota,
                weight,
                queue,
                keys,
            },
        );
    }
    Ok(out)
}

impl AgencyRegistry {
    /// Loads the file; an unreadable or invalid file is an error.
    pub fn open(cfg: &AgenciesConfig) -> Result<Self, AgencyRegistryError> {
        if cfg.file.as_os_str().is_empty() {
            return Err(AgencyRegistryError::Invalid {
                path: cfg.file.clone(),
                message: "no agency registry configured: set agencies.file to the TOML file of approved agencies (docs/configuration.md)".into(),
            });
        }
        let registry = Reloaded::open(&cfg.file, cfg.reload_interval.0, load)?;
        registry.with(|agencies| {
            AgencyRegistryLoaded {
                agencies: agencies.len(),
                error: None,
            }
            .emit()
        });
        Ok(AgencyRegistry {
            inner: Arc::new(registry),
            today: Default::default(),
            pace: Default::default(),
        })
    }

    /// Re-reads the file if the reload interval has passed and it changed
    /// (a broken file keeps the previous registry). Cheap to call often.
    pub fn maybe_reload(&self) {
        self.inner.maybe_reload(load, |outcome| {
            let (agencies, error) = match outcome {
                Ok(new) => (new.len(), None),
                Err((e, kept)) => (kept.len(), Some(e as &dyn std::error::Error)),
            };
            AgencyRegistryLoaded { agencies, error }.emit();
        });
    }

    /// Every agency in the registry, sorted.
    pub fn ids(&self) -> Vec<AgencyId> {
        let mut ids: Vec<AgencyId> = self.inner.with(|agencies| {
            agencies
                .keys()
                .filter_map(|a| AgencyId::parse(a).ok())
                .collect()
        });
        ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        ids
    }

    /// The agency's standing, if it is in the registry.
    pub fn status(&self, agency: &AgencyId) -> Option<AgencyStatus> {
        self.inner
            .with(|agencies| agencies.get(agency.as_str()).map(|a| a.status))
    }

    /// The agency a bearer credential `<agency>:<key>` speaks for, with
    /// its standing: the key's SHA-256 compared in constant time with each
    /// the registry holds for that agency.
    pub fn authenticate(
        &self,
        credential: &str,
    ) -> Result<(AgencyId, AgencyStatus), AgencyAuthError> {
        if credential.is_empty() {
            return Err(AgencyAuthError::Missing);
        }
        let (id, key) = credential
            .split_once(':')
            .ok_or(AgencyAuthError::Malformed)?;
        if key.len() < MIN_KEY || key.contains(char::is_whitespace) {
            return Err(AgencyAuthError::Malformed);
        }
        let agency = AgencyId::parse(id).map_err(|_| AgencyAuthError::Malformed)?;
        let given = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
        let given = given.as_ref();
        let found = self.inner.with(|agencies| {
            let a = agencies.get(agency.as_str())?;
            // Every key is compared: which one matched takes no less time.
            let mut ok = false;
            for k in &a.keys {
                ok |= crate::secret::digests_equal(k, given);
            }
            ok.then_some(a.status)
        });
        match found {
            Some(status) => Ok((agency, status)),
            None => Err(AgencyAuthError::Refused),
        }
    }

    /// What becomes of `agency`'s bulk notices over its daily quota.
    pub fn over_quota(&self, agency: &AgencyId) -> OverQuota {
        self.inner.with(|agencies| {
            agencies
                .get(agency.as_str())
                .map_or(OverQuota::Refuse, |a| a.over_quota)
        })
    }

    /// Why one more record of `agency` may not be taken at `now`, or
    /// `None` when it may — and then it is counted against the agency's
    /// `notices_per_day`. The count is this node's, kept in memory: a
    /// fleet of N nodes takes up to N quotas a day, and a restarted node
    /// starts the day's count again.
    pub fn admit(&self, agency: &AgencyId, now: chrono::DateTime<chrono::Utc>) -> Option<Problem> {
        // One look at the registry per record: its standing and quota.
        let (status, quota) = self.inner.with(|agencies| {
            agencies
                .get(agency.as_str())
                .map_or((None, None), |a| (Some(a.status), a.notices_per_day))
        });
        if let Some(p) = refusal_of(agency, status) {
            return Some(p);
        }
        let quota = quota?;
        let day = tehran_day(now);
        let mut today = self.today.lock().unwrap_or_else(|p| p.into_inner());
        if !today.contains_key(agency.as_str()) {
            today.insert(agency.as_str().to_owned(), (day, 0));
        }
        let (d, n) = today.get_mut(agency.as_str()).expect("inserted above");
        if *d != day {
            (*d, *n) = (day, 0);
        }
        if *n >= quota {
            return Some(Problem::new(
                Reason::QuotaExceeded,
                "agency".to_owned(),
                format!(
                    "agency {:?} has sent its {quota} notices for today (Tehran time) on this node; send the rest after midnight",
                    agency.as_str()
                ),
            ));
        }
        *n += 1;
        None
    }

    /// A slot for one round of `agency`'s at `now`: `None` to start it
    /// now, or how long after `now` its slot is (the slot is taken: the
    /// round must then start without asking again). Slots come at the
    /// agency's `rounds_per_second`, up to a second's worth at once; an
    /// agency without one always starts now. This node's pace, in memory.
    pub fn round_slot(&self, agency: &AgencyId, now: std::time::Instant) -> Option<Duration> {
        let rate = self.inner.with(|agencies| {
            agencies
                .get(agency.as_str())
                .and_then(|a| a.rounds_per_second)
        })?;
        let burst = rate.max(1.0);
        let mut pace = self.pace.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = pace
            .entry(agency.as_str().to_owned())
            .or_insert((burst, now));
        if now > *last {
            *tokens = (*tokens + (now - *last).as_secs_f64() * rate).min(burst);
            *last = now;
        }
        *tokens -= 1.0;
        if *tokens >= 0.0 {
            None
        } else {
            Some(Duration::from_secs_f64(-*tokens / rate))
        }
    }

    /// The weight of each agencies' queue: the sum of the `weight`s of
    /// the registry's agencies in it (their `queue`, else the hash of
    /// their ID, `model::agency_queue`), and 1 for a
    /// queue no agency of the registry is in (a removed agency's notices
    /// still have their rounds).
    pub fn queue_weights(&self) -> [u64; crate::model::AGENCY_QUEUES as usize] {
        let mut w = [0u64; crate::model::AGENCY_QUEUES as usize];
        self.inner.with(|agencies| {
            for a in agencies.values() {
                w[a.queue as usize] += u64::from(a.weight);
            }
        });
        w.map(|x| x.max(1))
    }

    /// The agencies' queue `agency`'s notices are stored in: its `queue`
    /// in the registry, else the hash of its ID; `None` for an agency the
    /// registry does not hold (its notices are refused anyway).
    pub fn queue_of(&self, agency: &AgencyId) -> Option<u8> {
        self.inner
            .with(|agencies| agencies.get(agency.as_str()).map(|a| a.queue))
    }

    /// Why `agency` may not send, or `None` when it may.
    pub fn refusal(&self, agency: &AgencyId) -> Option<Problem> {
        refusal_of(agency, self.status(agency))
    }
}

/// Why an agency of `status` (`None`: not in the registry) may not send.
fn refusal_of(agency: &AgencyId, status: Option<AgencyStatus>) -> Option<Problem> {
    match status {
        Some(AgencyStatus::Approved) => None,
        None => Some(Problem::new(
            Reason::AgencyUnknown,
            "agency".to_owned(),
            format!(
                "agency {:?} is not in the operator's registry of approved agencies",
                agency.as_str()
            ),
        )),
        Some(status @ (AgencyStatus::Suspended | AgencyStatus::Dissolved)) => Some(Problem::new(
            Reason::AgencyNotAllowed,
            "agency".to_owned(),
            format!(
                "agency {:?} is {} and may not send",
                agency.as_str(),
                if status == AgencyStatus::Suspended {
                    "suspended"
                } else {
                    "dissolved"
                }
            ),
        )),
    }
}

#[cfg(test)]
pub(crate) mod tests {

    #[test]
    fn the_quota_day_turns_at_tehran_midnight() {
        use chrono::TimeZone;
        // 20:29:59 UTC is 23:59:59 in Tehran: a second to go.
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 12, 7, 20, 29, 59)
            .unwrap();
        assert_eq!(until_tehran_midnight(t), std::time::Duration::from_secs(1));
        let next = t + chrono::Duration::seconds(1);
        assert_eq!(tehran_day(next), tehran_day(t) + 1);
        assert_eq!(
            until_tehran_midnight(next),
            std::time::Duration::from_secs(86_400)
        );
    }

    #[test]
    fn over_quota_is_refuse_unless_the_file_says_defer() {
        let (_dir, file) = registry_file(
            "[agency.tax]\nstatus = \"approved\"\nnotices_per_day = 3\nover_quota = \"defer\"\n\
             [agency.judiciary]\nstatus = \"approved\"\n",
        );
        let r = open_file(&file).unwrap();
        let id = |a: &str| AgencyId::parse(a).unwrap();
        assert_eq!(r.over_quota(&id("tax")), OverQuota::Defer);
        assert_eq!(r.over_quota(&id("judiciary")), OverQuota::Refuse);
        let (_dir, bad) =
            registry_file("[agency.tax]\nstatus = \"approved\"\nover_quota = \"drop\"\n");
        assert!(open_file(&bad).is_err());
    }
    use super::*;
    use std::time::SystemTime;

    /// `text` in a registry file of its own, kept while the directory is.
    pub(crate) fn registry_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agencies.toml");
        std::fs::write(&file, text).unwrap();
        (dir, file)
    }

    /// The registry of `file`, read again as soon as it changes.
    pub(crate) fn open_file(file: &Path) -> Result<AgencyRegistry, AgencyRegistryError> {
        AgencyRegistry::open(&AgenciesConfig {
            file: file.to_owned(),
            reload_interval: HumanDuration(Duration::ZERO),
        })
    }

    #[test]
    fn statuses_map_to_reasons_and_reload_follows_the_file() {
        let (_dir, file) = registry_file(
            "[agency.tax]\nstatus = \"approved\"\nname = \"Tax\"\n[agency.old]\nstatus = \"dissolved\"\n[agency.paused]\nstatus = \"suspended\"\n",
        );
        let reg = open_file(&file).unwrap();
        let id = |s| AgencyId::parse(s).unwrap();
        assert_eq!(reg.refusal(&id("tax")), None);
        assert_eq!(
            reg.refusal(&id("old")).unwrap().reason,
            Reason::AgencyNotAllowed
        );
        assert_eq!(
            reg.refusal(&id("paused")).unwrap().reason,
            Reason::AgencyNotAllowed
        );
        assert_eq!(
            reg.refusal(&id("nobody")).unwrap().reason,
            Reason::AgencyUnknown
        );

        // Approve "paused"; mtime granularity can be coarse, so move it on.
        std::fs::write(
            &file,
            "[agency.tax]\nstatus = \"approved\"\n[agency.paused]\nstatus = \"approved\"\n",
        )
        .unwrap();
        let f = std::fs::File::options().write(true).open(&file).unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(10))
            .unwrap();
        reg.maybe_reload();
        assert_eq!(reg.refusal(&id("paused")), None, "reloaded");
        assert!(reg.refusal(&id("old")).is_some(), "removed means unknown");

        // A broken file keeps the previous registry.
        std::fs::write(&file, "[agency.tax]\nstatus = \"maybe\"\n").unwrap();
        let f = std::fs::File::options().write(true).open(&file).unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(20))
            .unwrap();
        reg.maybe_reload();
        assert_eq!(reg.refusal(&id("paused")), None, "previous registry kept");
    }

    #[test]
    fn an_agency_key_is_checked_against_its_own_digests_only() {
        let key = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t";
        // The digest as an operator makes it (`printf %s key | sha256sum`).
        let digest: String = ring::digest::digest(&ring::digest::SHA256, key.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let (_dir, file) = registry_file(&format!(
            "[agency.tax]\nstatus = \"suspended\"\napi_keys_sha256 = [\"{}\"]\n\
             [agency.customs]\nstatus = \"approved\"\n",
            digest.to_uppercase()
        ));
        let reg = open_file(&file).unwrap();
        let (agency, status) = reg.authenticate(&format!("tax:{key}")).unwrap();
        assert_eq!((agency.as_str(), status), ("tax", AgencyStatus::Suspended));
        for (cred, err) in [
            ("", AgencyAuthError::Missing),
            ("tax", AgencyAuthError::Malformed),
            ("tax:short", AgencyAuthError::Malformed),
            (&*format!("Tax:{key}"), AgencyAuthError::Malformed),
            (&*format!("tax:{key}x"), AgencyAuthError::Refused),
            (&*format!("customs:{key}"), AgencyAuthError::Refused),
            (&*format!("unknown:{key}"), AgencyAuthError::Refused),
        ] {
            assert_eq!(reg.authenticate(cred).unwrap_err(), err, "{cred:?}");
        }
        // A digest that is not one makes the file invalid.
        std::fs::write(
            &file,
            "[agency.tax]\nstatus = \"approved\"\napi_keys_sha256 = [\"abc\"]\n",
        )
        .unwrap();
        let e = open_file(&file).err().unwrap().to_string();
        assert!(
            e.contains("api_keys_sha256") && e.contains("64 hex digits"),
            "{e}"
        );
    }

    #[test]
    fn a_quota_refuses_the_records_over_it_until_tehran_midnight() {
        let (_dir, file) = registry_file(
            "[agency.tax]\nstatus = \"approved\"\nnotices_per_day = 3\n\
             [agency.courts]\nstatus = \"approved\"\n",
        );
        let reg = open_file(&file).unwrap();
        let id = |s| AgencyId::parse(s).unwrap();
        // 20:29:59 UTC is 23:59:59 in Tehran; a second later the day turns.
        let evening = "2026-12-07T20:29:59Z".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(reg.admit(&id("tax"), evening), None);
        }
        let p = reg.admit(&id("tax"), evening).expect("over the quota");
        assert_eq!(p.reason, Reason::QuotaExceeded);
        assert!(reg.admit(&id("tax"), evening).is_some(), "still over");
        // No quota: never refused.
        for _ in 0..100 {
            assert_eq!(reg.admit(&id("courts"), evening), None);
        }
        let midnight = "2026-12-07T20:30:00Z".parse().unwrap();
        assert_eq!(reg.admit(&id("tax"), midnight), None, "a new day");
        // Refusals come first and are not counted.
        assert_eq!(
            reg.admit(&id("nobody"), midnight).unwrap().reason,
            Reason::AgencyUnknown
        );
    }

    #[test]
    fn rounds_are_paced_at_the_agencys_rate_in_slots_handed_out_ahead() {
        let (_dir, file) = registry_file(
            "[agency.tax]\nstatus = \"approved\"\nrounds_per_second = 10\n\
             [agency.courts]\nstatus = \"approved\"\n",
        );
        let reg = open_file(&file).unwrap();
        let id = |s| AgencyId::parse(s).unwrap();
        let t0 = std::time::Instant::now();
        // A second's worth at once, then one slot every 100 ms, in order.
        for _ in 0..10 {
            assert_eq!(reg.round_slot(&id("tax"), t0), None);
        }
        for k in 1..=50u32 {
            let wait = reg.round_slot(&id("tax"), t0).unwrap();
            assert!(
                (wait.as_secs_f64() - f64::from(k) * 0.1).abs() < 1e-9,
                "slot {k}: {wait:?}"
            );
        }
        // Those 50 slots are the next five seconds: at t0 + 5 s the next
        // one is 100 ms away, not free.
        let later = t0 + Duration::from_secs(5);
        let wait = reg.round_slot(&id("tax"), later).unwrap();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        // An agency without a pace is never held.
        for _ in 0..1000 {
            assert_eq!(reg.round_slot(&id("courts"), t0), None);
        }
        std::fs::write(
            &file,
            "[agency.tax]\nstatus = \"approved\"\nrounds_per_second = 0\n",
        )
        .unwrap();
        assert!(open_file(&file).is_err());
    }

    #[test]
    fn each_queue_weighs_the_sum_of_its_agencies_weights() {
        // tax and health share queue 6, customs is in 3, judiciary in 1.
        let (_dir, file) = registry_file(
            "[agency.tax]\nstatus = \"approved\"\nweight = 3\n\
             [agency.health]\nstatus = \"approved\"\n\
             [agency.customs]\nstatus = \"suspended\"\nweight = 5\n",
        );
        let reg = open_file(&file).unwrap();
        let id = |a: &str| AgencyId::parse(a).unwrap();
        assert_eq!(reg.queue_weights(), [1, 1, 1, 5, 1, 1, 4]);
        assert_eq!(reg.queue_of(&id("tax")), Some(6), "the hash");
        assert_eq!(reg.queue_of(&id("courts")), None, "not registered");
        for bad in ["0", "1001", "-1", "1.5"] {
            std::fs::write(
                &file,
                format!("[agency.tax]\nstatus = \"approved\"\nweight = {bad}\n"),
            )
            .unwrap();
            assert!(open_file(&file).is_err(), "weight {bad}");
        }
    }

    #[test]
    fn an_agency_given_a_queue_of_its_own_is_weighed_there() {
        // tax and health share queue 6 by their IDs: health is moved.
        let (_dir, file) = registry_file(
            "[agency.tax]\nstatus = \"approved\"\nweight = 3\n\
             [agency.health]\nstatus = \"approved\"\nqueue = 2\n",
        );
        let reg = open_file(&file).unwrap();
        let id = |a: &str| AgencyId::parse(a).unwrap();
        assert_eq!(reg.queue_of(&id("health")), Some(2));
        assert_eq!(reg.queue_weights(), [1, 1, 1, 1, 1, 1, 3]);
        for bad in ["7", "-1", "255"] {
            std::fs::write(
                &file,
                format!("[agency.tax]\nstatus = \"approved\"\nqueue = {bad}\n"),
            )
            .unwrap();
            assert!(open_file(&file).is_err(), "queue {bad}");
        }
    }

    #[test]
    fn a_missing_or_invalid_file_is_refused_at_start() {
        assert!(AgencyRegistry::open(&AgenciesConfig::default())
            .err()
            .unwrap()
            .to_string()
            .contains("agencies.file"));
        let (_dir, file) = registry_file("[agency.Tax]\nstatus = \"approved\"\n");
        assert!(open_file(&file).is_err(), "invalid agency ID");
    }
}
