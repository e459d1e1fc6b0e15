//! The operator's registry of agencies allowed to send (art. 3.1, 5, 6,
//! 13, 26): a TOML file, re-read when it changes, so approving or
//! suspending an agency needs no restart.
//!
//! ```toml
//! [agency.tax]
//! status = "approved"        # approved | suspended | dissolved
//! name = "Iranian National Tax Administration"
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
    inner: Arc<Reloaded<HashMap<String, AgencyStatus>>>,
}

fn load(path: &Path) -> Result<HashMap<String, AgencyStatus>, AgencyRegistryError> {
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
        out.insert(id, entry.status);
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
            .with(|agencies| agencies.get(agency.as_str()).copied())
    }

    /// Why `agency` may not send, or `None` when it may.
    pub fn refusal(&self, agency: &AgencyId) -> Option<Problem> {
        match self.status(agency) {
            Some(AgencyStatus::Approved) => None,
            None => Some(Problem::new(
                Reason::AgencyUnknown,
                "agency".to_owned(),
                format!(
                    "agency {:?} is not in the operator's registry of approved agencies",
                    agency.as_str()
                ),
            )),
            Some(status @ (AgencyStatus::Suspended | AgencyStatus::Dissolved)) => {
                Some(Problem::new(
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
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn statuses_map_to_reasons_and_reload_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agencies.toml");
        std::fs::write(
            &file,
            "[agency.tax]\nstatus = \"approved\"\nname = \"Tax\"\n[agency.old]\nstatus = \"dissolved\"\n[agency.paused]\nstatus = \"suspended\"\n",
        )
        .unwrap();
        let cfg = AgenciesConfig {
            file: file.clone(),
            reload_interval: HumanDuration(Duration::ZERO),
        };
        let reg = AgencyRegistry::open(&cfg).unwrap();
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
    fn a_missing_or_invalid_file_is_refused_at_start() {
        assert!(AgencyRegistry::open(&AgenciesConfig::default())
            .err()
            .unwrap()
            .to_string()
            .contains("agencies.file"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.toml");
        std::fs::write(&file, "[agency.Tax]\nstatus = \"approved\"\n").unwrap();
        let cfg = AgenciesConfig {
            file,
            ..Default::default()
        };
        assert!(AgencyRegistry::open(&cfg).is_err(), "invalid agency ID");
    }
}
