//! Engine configuration: defaults that need no file, a TOML file,
//! environment overrides and `--set` flags, in that order of precedence
//! (later wins). Unknown keys are refused with the key's full path.
//!
//! Environment: `KARPOOSHEH__<SECTION>__<KEY>=value`, e.g.
//! `KARPOOSHEH__PIPELINE__BATCH_MAX_NOTICES=5000`. Values are read as TOML
//! (numbers, booleans, arrays) and fall back to a plain string.
//! Every option is documented in docs/configuration.md; a test checks
//! that page against [`Config::default`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use karpoosheh_schemas::{ByteSize, HumanDuration, Limits, MAX_NODE};
use serde::{Deserialize, Serialize};

pub use crate::agencies::AgenciesConfig;
use crate::channel::ChannelsConfig;
pub use crate::kafka::KafkaConfig;
use crate::store::scylla::ScyllaConfig;
use crate::store::{
    Durability, DEFAULT_CACHE_BYTES, DEFAULT_MAX_JOURNAL_BYTES, DEFAULT_MEMTABLE_BYTES,
    DEFAULT_WRITE_BUFFER_BYTES,
};

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "KARPOOSHEH__";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This engine node's number, 0-1023, unique in the fleet: it is part
    /// of every tracking code the node issues.
    pub node_id: u16,
    pub store: StoreConfig,
    pub pipeline: PipelineConfig,
    pub limits: Limits,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    /// The article-29 follow-up: rounds, verdicts, retention.
    pub delivery: crate::delivery::DeliveryConfig,
    /// Notification channels (art. 29): gateways, rate limits, retries.
    pub channels: ChannelsConfig,
    /// The Kafka front door (`karpoosheh run`).
    pub kafka: KafkaConfig,
    /// The registry of agencies allowed to send.
    pub agencies: AgenciesConfig,
    /// The ScyllaDB cluster, when `store.backend = "scylla"`.
    pub scylla: ScyllaConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Where mailboxes live: `embedded` (fjall, on this machine; the
    /// default) or `scylla` (a ScyllaDB cluster shared by the fleet,
    /// configured in `[scylla]`).
    pub backend: StoreBackend,
    /// Directory of the embedded store; created if missing.
    pub path: PathBuf,
    /// When a write counts as durable: `sync_data` (fdatasync, default),
    /// `sync_all` (fsync) or `buffered` (no sync: loses the last writes on
    /// power loss; tests and benchmarks only).
    pub durability: Durability,
    /// Block cache for reads.
    pub cache_size: ByteSize,
    /// Memtable size per keyspace; larger means fewer, bigger flushes.
    pub memtable_size: ByteSize,
    /// Journal size after which memtables are flushed to free it.
    pub max_journal_size: ByteSize,
    /// All memtables together, every keyspace: above it, writes wait for
    /// flushes. 0 turns the bound off (fjall's per-keyspace limits only).
    pub write_buffer_size: ByteSize,
}

/// The store backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    #[default]
    Embedded,
    Scylla,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Embedded,
            path: PathBuf::from("./karpoosheh-data"),
            durability: Durability::SyncData,
            // Holds the index and filter blocks that bulk ingest reads
            // (reference checks); the OS page cache holds every block as
            // well, outside the engine's RSS. Against 64 MiB: the same
            // ingest and scheduler rates, and full within the first
            // million or two notices instead of slowly filling for twenty
            // million, the largest term of the 5M demo's growth
            // (BENCHMARKS.md, "Memory").
            cache_size: ByteSize(DEFAULT_CACHE_BYTES),
            // 16 MiB holds ~10k notices. Against 64 MiB: the same or a
            // higher ingest rate at about half the peak RSS (BENCHMARKS.md).
            memtable_size: ByteSize(DEFAULT_MEMTABLE_BYTES),
            max_journal_size: ByteSize(DEFAULT_MAX_JOURNAL_BYTES),
            // The memtables are the store's largest buffer and, without a
            // bound on their sum, grew with the tree's depth: flushes queue
            // behind longer compactions (BENCHMARKS.md, "Memory").
            write_buffer_size: ByteSize(DEFAULT_WRITE_BUFFER_BYTES),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Batch buffers. Each source lane (Kafka partition, file) maps to one
    /// shard, whose order is kept to the store.
    pub shards: usize,
    /// A shard's batch is written when it holds this many records...
    pub batch_max_notices: usize,
    /// ...or when its oldest record has waited this long.
    pub batch_linger: HumanDuration,
    /// The committer merges ready batches into one durable write of at most
    /// this many records (group commit: one fsync for all of them).
    pub group_max_notices: usize,
    /// Records read from the source and decoded in parallel at a time.
    pub decode_chunk: usize,
    /// Chunks and batches waiting between stages; with the sizes above
    /// this bounds the pipeline's memory, whatever the source's backlog.
    pub queue_depth: usize,
    /// Threads decoding and validating; 0 means one per core.
    pub decode_threads: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            shards: 4,
            // 1000-2000 records per fsync amortise its ~1-5 ms cost to a few
            // microseconds per notice.
            batch_max_notices: 2000,
            // Low traffic still sees its receipt within tens of milliseconds.
            batch_linger: HumanDuration(std::time::Duration::from_millis(20)),
            group_max_notices: 4000,
            decode_chunk: 2048,
            queue_depth: 4,
            decode_threads: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the metrics and health endpoints (`/metrics`,
    /// `/health/live`, `/health/ready`); empty to disable.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a full filter such as
    /// `info,karpoosheh_engine=debug`. `RUST_LOG` wins when set.
    pub level: String,
    /// `text` for people, `json` for log shippers.
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        // The storage engine's own info lines (flushes, compactions) are
        // noise for operators; its warnings still show.
        LogConfig {
            level: "info,lsm_tree=warn,fjall=warn".into(),
            format: LogFormat::Text,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

fn parse_value(raw: &str) -> toml::Value {
    // A bare TOML value (number, bool, array, quoted string); otherwise the
    // text itself, so `store.path=/data` works without quotes.
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn set_path(
    root: &mut toml::Table,
    path: &[&str],
    value: toml::Value,
    origin: &str,
) -> Result<(), ConfigError> {
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut t = root;
    for p in parents {
        let entry = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        t = entry.as_table_mut().ok_or_else(|| ConfigError::Invalid {
            origin: origin.to_owned(),
            message: format!("{p} is a value, not a section"),
        })?;
    }
    t.insert(last.to_string(), value);
    Ok(())
}

impl Config {
    /// Loads the configuration: defaults, then `file` (if any), then
    /// environment overrides from `env`, then `sets` (`section.key=value`).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        sets: &[String],
    ) -> Result<Config, ConfigError> {
        let mut table = toml::Table::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            table = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        }
        let mut env: Vec<_> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        env.sort();
        for (k, v) in env {
            let path: Vec<String> = k[ENV_PREFIX.len()..]
                .split("__")
                .map(|s| s.to_ascii_lowercase())
                .collect();
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            if path.iter().any(|p| p.is_empty()) {
                return Err(ConfigError::Invalid {
                    origin: format!("environment {k}"),
                    message: "empty key segment".into(),
                });
            }
            set_path(
                &mut table,
                &path,
                parse_value(&v),
                &format!("environment {k}"),
            )?;
        }
        for s in sets {
            let (k, v) = s.split_once('=').ok_or_else(|| ConfigError::Invalid {
                origin: format!("--set {s}"),
                message: "expected section.key=value".into(),
            })?;
            let path: Vec<&str> = k.trim().split('.').collect();
            if path.iter().any(|p| p.is_empty()) {
                return Err(ConfigError::Invalid {
                    origin: format!("--set {s}"),
                    message: "empty key segment".into(),
                });
            }
            set_path(
                &mut table,
                &path,
                parse_value(v.trim()),
                &format!("--set {s}"),
            )?;
        }
        let origin = match file {
            Some(p) => format!("configuration (file {} and overrides)", p.display()),
            None => "configuration (defaults and overrides)".to_owned(),
        };
        let cfg: Config =
            Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Invalid {
                origin: origin.clone(),
                message: e.to_string(),
            })?;
        cfg.validate()
            .map_err(|message| ConfigError::Invalid { origin, message })?;
        Ok(cfg)
    }

    /// Refuses combinations that cannot work, with what to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.node_id > MAX_NODE {
            return Err(format!(
                "node_id {} is above the maximum {MAX_NODE}",
                self.node_id
            ));
        }
        self.delivery.validate()?;
        let p = &self.pipeline;
        if p.shards == 0 || p.shards > 1024 {
            return Err("pipeline.shards must be 1-1024".into());
        }
        if p.batch_max_notices == 0 || p.decode_chunk == 0 || p.queue_depth == 0 {
            return Err(
                "pipeline.batch_max_notices, decode_chunk and queue_depth must be above zero"
                    .into(),
            );
        }
        if p.group_max_notices < p.batch_max_notices {
            return Err(format!(
                "pipeline.group_max_notices ({}) must be at least pipeline.batch_max_notices ({})",
                p.group_max_notices, p.batch_max_notices
            ));
        }
        if p.batch_linger.0.is_zero() {
            return Err("pipeline.batch_linger must be above zero (e.g. \"20ms\")".into());
        }
        if self.store.memtable_size.0 < 1 << 20 {
            return Err("store.memtable_size must be at least 1MiB".into());
        }
        let wb = self.store.write_buffer_size.0;
        if wb != 0 && wb < 2 * self.store.memtable_size.0 {
            return Err(format!(
                "store.write_buffer_size ({}) must be 0 (no bound) or at least twice \
                 store.memtable_size ({}): one memtable filling while another is flushed",
                self.store.write_buffer_size, self.store.memtable_size
            ));
        }
        if self.store.max_journal_size.0 < 64 << 20 {
            return Err("store.max_journal_size must be at least 64MiB".into());
        }
        if !self.metrics.listen.is_empty() && self.metrics.listen.parse::<SocketAddr>().is_err() {
            return Err(format!(
                "metrics.listen {:?} is not host:port (e.g. 127.0.0.1:9464), nor empty",
                self.metrics.listen
            ));
        }
        self.channels.validate()?;
        self.kafka.validate()?;
        if self.store.backend == StoreBackend::Scylla {
            self.scylla.validate()?;
        }
        self.limits.validate()
    }

    /// Every leaf option as `section.key`, for the documentation check.
    pub fn option_paths() -> Vec<String> {
        // Options whose value is a map with keys of the user's choosing.
        const MAPS: &[&str] = &["scylla.replication"];
        fn walk(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
            match v {
                toml::Value::Table(t) if !MAPS.contains(&prefix) => {
                    for (k, v) in t {
                        let p = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        walk(&p, v, out);
                    }
                }
                _ => out.push(prefix.to_owned()),
            }
        }
        let v = toml::Value::try_from(Config::default()).expect("defaults serialise");
        let mut out = Vec::new();
        walk("", &v, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> Vec<(String, String)> {
        vec![]
    }

    #[test]
    fn defaults_need_no_file_and_are_valid() {
        let c = Config::load(None, no_env(), &[]).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn file_env_and_flags_layer_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k.toml");
        std::fs::write(
            &f,
            "[pipeline]\nshards = 8\nbatch_max_notices = 100\n[store]\npath = \"/from/file\"\n",
        )
        .unwrap();
        let env = vec![
            ("KARPOOSHEH__PIPELINE__SHARDS".to_string(), "16".to_string()),
            (
                "KARPOOSHEH__STORE__PATH".to_string(),
                "/from/env".to_string(),
            ),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let c = Config::load(
            Some(&f),
            env,
            &[
                "store.path=/from/flag".into(),
                "limits.max_body_bytes=\"32KiB\"".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.pipeline.shards, 16, "env beats file");
        assert_eq!(c.pipeline.batch_max_notices, 100, "file beats default");
        assert_eq!(c.store.path, PathBuf::from("/from/flag"), "flag beats env");
        assert_eq!(c.limits.max_body_bytes, ByteSize::kib(32));
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = Config::load(None, no_env(), &["pipeline.shardz=3".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("shardz"), "{err}");
        let err = Config::load(
            None,
            vec![("KARPOOSHEH__STORAGE__PATH".into(), "/x".into())],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("storage"), "{err}");
    }

    #[test]
    fn bad_values_are_refused_clearly() {
        let err = Config::load(None, no_env(), &["pipeline.batch_linger=\"soon\"".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("duration"), "{err}");
        let err = Config::load(None, no_env(), &["pipeline.group_max_notices=10".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("group_max_notices"), "{err}");
        let err = Config::load(None, no_env(), &["metrics.listen=nowhere".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("metrics.listen"), "{err}");
        let err = Config::load(None, no_env(), &["node_id=5000".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("node_id"), "{err}");
        // fjall panics below 64 MiB; the engine refuses it instead.
        let err = Config::load(None, no_env(), &["store.max_journal_size=\"32MiB\"".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("store.max_journal_size"), "{err}");
        // A budget that cannot hold a memtable filling beside one flushing.
        let err = Config::load(
            None,
            no_env(),
            &["store.write_buffer_size=\"24MiB\"".into()],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("store.write_buffer_size"), "{err}");
        let cfg = Config::load(None, no_env(), &["store.write_buffer_size=0".into()]).unwrap();
        assert_eq!(cfg.store.write_buffer_size.0, 0);
    }

    #[test]
    fn every_option_is_documented() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/configuration.md"
        ))
        .expect("docs/configuration.md exists");
        let missing: Vec<_> = Config::option_paths()
            .into_iter()
            .filter(|p| !doc.contains(&format!("`{p}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "options missing from docs/configuration.md: {missing:?}"
        );
    }
}
