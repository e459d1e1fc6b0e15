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

use karpoosheh_schemas::{Limits, MAX_NODE};
use serde::{Deserialize, Serialize};

pub use crate::agencies::AgenciesConfig;
use crate::channel::ChannelsConfig;
pub use crate::evidence::trust::TrustConfig;
pub use crate::evidence::EvidenceConfig;
pub use crate::kafka::KafkaConfig;
pub use crate::pipeline::PipelineConfig;
use crate::store::scylla::ScyllaConfig;
pub use crate::store::{StoreBackend, StoreConfig};

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
    /// The trust file: who may sign confirmations and mailbox profiles.
    pub trust: TrustConfig,
    /// The node's signing key: every receipt is signed with it.
    pub evidence: EvidenceConfig,
    /// The national identity provider whose tokens name the caller.
    pub identity: crate::identity::IdentityConfig,
    /// The inbox API for citizens' apps.
    pub inbox: crate::inbox::InboxConfig,
    /// The operators' endpoint of a running node.
    pub operator: crate::operator::OperatorConfig,
    /// The ScyllaDB cluster, when `store.backend = "scylla"`.
    pub scylla: ScyllaConfig,
    /// The agencies' sandbox: simulated gateways and recipients.
    pub sandbox: crate::delivery::sandbox::SandboxConfig,
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
        let mut cfg: Config =
            Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Invalid {
                origin: origin.clone(),
                message: e.to_string(),
            })?;
        cfg.validate()
            .and_then(|()| cfg.kafka.read_secret_files())
            .map_err(|message| ConfigError::Invalid { origin, message })?;
        Ok(cfg)
    }

    /// Settings that work but send credentials or personal data where
    /// anyone on the path can read them: `run` warns of each at start.
    pub fn insecure(&self) -> Vec<String> {
        let mut out = self.kafka.insecure();
        if self.store.backend == StoreBackend::Scylla
            && !self.scylla.username.is_empty()
            && !self.scylla.tls.enabled
        {
            out.push("scylla: a password is sent without TLS (scylla.tls.enabled = false): anyone on the path reads it, and every notice; enable TLS".into());
        }
        out.extend(self.channels.insecure());
        out
    }

    /// A sandbox node (`sandbox.enabled`) must not be able to reach
    /// anything real: every enabled channel simulated, the follow-up on,
    /// no real registry or confirmations read; its notice, receipt,
    /// dead-letter and audit topics, its consumer group and (on a cluster)
    /// its keyspace sandbox ones (their names contain `sandbox`), so that
    /// it never reads an agency's live notices, answers on its live
    /// receipts topic, joins the live group or writes a live mailbox; and
    /// an inbox API only for a sandbox identity provider. (Its signing key
    /// must say `sandbox` too: checked where the key is read, in `run`.)
    fn check_sandbox(&self) -> Result<(), String> {
        let cfg = self;
        if !self.sandbox.enabled {
            return Ok(());
        }
        let real: Vec<&str> = [
            (crate::channel::ChannelKind::Sms, "channels.sms.gateway"),
            (crate::channel::ChannelKind::Email, "channels.email.gateway"),
            (crate::channel::ChannelKind::Push, "channels.push.gateway"),
        ]
        .into_iter()
        .filter(|(k, name)| {
            cfg.channels.enabled(*k) && !cfg.channels.simulated_in_use().iter().any(|s| s == name)
        })
        .map(|(_, name)| name)
        .collect();
        if !real.is_empty() {
            return Err(format!(
                "sandbox.enabled: {} names a real gateway; a sandbox only simulates (\"simulated\", or disable the channel)",
                real.join(" and ")
            ));
        }
        if !cfg.delivery.enabled {
            return Err("sandbox.enabled needs delivery.enabled: the sandbox plays the rounds and the recipients".into());
        }
        let k = &cfg.kafka;
        if !k.acks_topic.is_empty() || !k.registry_topic.is_empty() {
            return Err("sandbox.enabled: set kafka.acks_topic = \"\" and kafka.registry_topic = \"\" (the sandbox plays the recipients and the registry; it must never read real ones)".into());
        }
        let mut names = vec![
            ("kafka.notice_topic_prefix", &k.notice_topic_prefix),
            ("kafka.receipt_topic_prefix", &k.receipt_topic_prefix),
            ("kafka.dead_letter_topic", &k.dead_letter_topic),
            ("kafka.group_id", &k.group_id),
        ];
        if !k.audit_topic.is_empty() {
            names.push(("kafka.audit_topic", &k.audit_topic));
        }
        if cfg.store.backend == StoreBackend::Scylla {
            names.push(("scylla.keyspace", &cfg.scylla.keyspace));
        }
        if !cfg.inbox.listen.is_empty() {
            names.push(("identity.issuer", &cfg.identity.issuer));
        }
        for (name, value) in names {
            if !value.contains("sandbox") {
                return Err(format!(
                    "sandbox.enabled: {name} = {value:?} is not a sandbox one; use one whose name says so (e.g. \"karpoosheh.sandbox.notices.\", \"karpoosheh_sandbox\")"
                ));
            }
        }
        Ok(())
    }

    /// Refuses combinations that cannot work, with what to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.node_id > MAX_NODE {
            return Err(format!(
                "node_id {} is above the maximum {MAX_NODE}",
                self.node_id
            ));
        }
        // First: a sandbox that could reach something real says so before
        // any other complaint about its settings.
        self.check_sandbox()?;
        self.delivery.validate()?;
        self.pipeline.validate()?;
        self.store.validate()?;
        if !self.metrics.listen.is_empty() && self.metrics.listen.parse::<SocketAddr>().is_err() {
            return Err(format!(
                "metrics.listen {:?} is not host:port (e.g. 127.0.0.1:9464), nor empty",
                self.metrics.listen
            ));
        }
        self.channels.validate()?;
        self.kafka.validate()?;
        self.evidence.validate()?;
        self.identity.validate()?;
        self.inbox.validate()?;
        self.operator.validate()?;
        if !self.inbox.listen.is_empty() && !self.identity.has_keys() {
            return Err(
                "inbox.listen is set: identity.jwks_file or identity.jwks_url must name the identity provider's keys"
                    .into(),
            );
        }
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
    use karpoosheh_schemas::ByteSize;

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

    /// Secrets: masked by `karpoosheh config` (librdkafka passwords too),
    /// read from files when asked, and a file every user may read refused.
    #[test]
    fn secrets_are_masked_and_may_come_from_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let secret = |name: &str, text: &str, mode: u32| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p.display().to_string()
        };
        let kafka_pw = secret("kafka", "k-pass-123\n", 0o600);
        let db_pw = secret("db", "db-pass-456", 0o640);
        let sets = [
            "kafka.options={\"security.protocol\" = \"SASL_SSL\", \"sasl.mechanism\" = \"SCRAM-SHA-512\", \"sasl.username\" = \"k\", \"ssl.key.password\" = \"inline-789\"}".to_owned(),
            format!("kafka.secret_files={{\"sasl.password\" = {kafka_pw:?}}}"),
            "scylla.username=\"karpoosheh\"".to_owned(),
            format!("scylla.password={{file = {db_pw:?}}}"),
        ];
        let c = Config::load(None, no_env(), &sets).unwrap();
        assert_eq!(
            c.kafka.options["sasl.password"], "k-pass-123",
            "read, line end dropped"
        );
        assert_eq!(c.scylla.password.expose(), "db-pass-456");
        let printed = toml::to_string_pretty(&c).unwrap();
        for hidden in ["k-pass-123", "db-pass-456", "inline-789"] {
            assert!(!printed.contains(hidden), "{hidden} printed:\n{printed}");
        }
        assert!(printed.contains("\"sasl.password\" = \"***\""), "{printed}");
        assert!(printed.contains("SASL_SSL") && printed.contains("sasl.username"));
        assert!(printed.contains(&kafka_pw), "the file's path is shown");
        // Readable by every user: refused, saying how to fix it.
        let open = secret("open", "x", 0o644);
        let err = Config::load(
            None,
            no_env(),
            &[format!("scylla.password={{file = {open:?}}}")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("readable by every user") && err.contains("chmod"),
            "{err}"
        );
        let err = Config::load(
            None,
            no_env(),
            &[format!(
                "kafka.secret_files={{\"sasl.password\" = {:?}}}",
                dir.path().join("none").display()
            )],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("kafka.secret_files"), "{err}");
        // Given twice: refused.
        let err = Config::load(
            None,
            no_env(),
            &[
                "kafka.options={\"sasl.password\" = \"a\"}".to_owned(),
                format!("kafka.secret_files={{\"sasl.password\" = {kafka_pw:?}}}"),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("give it once"), "{err}");
    }

    /// Settings that send credentials or personal data in the clear to
    /// another machine are named (run warns of each); safe ones are not.
    #[test]
    fn insecure_combinations_are_named() {
        let warn = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            Config::load(None, no_env(), &sets).unwrap().insecure()
        };
        assert!(warn(&[]).is_empty(), "{:?}", warn(&[]));
        let w = warn(&["kafka.options={\"security.protocol\" = \"SASL_PLAINTEXT\", \"sasl.mechanism\" = \"PLAIN\", \"sasl.password\" = \"p\"}"]);
        assert!(
            w.len() == 1 && w[0].contains("SASL_PLAINTEXT") && w[0].contains("password"),
            "{w:?}"
        );
        assert!(warn(&[
            "kafka.options={\"security.protocol\" = \"SASL_SSL\", \"sasl.password\" = \"p\"}"
        ])
        .is_empty());
        let w = warn(&[
            "store.backend=\"scylla\"",
            "scylla.replication={dc_main = 3}",
            "scylla.username=\"u\"",
            "scylla.password=\"p\"",
        ]);
        assert!(w.iter().any(|x| x.starts_with("scylla:")), "{w:?}");
        let sms = |url: &str| {
            warn(&[
                "channels.sms.gateway=\"http\"",
                &format!("channels.sms.http.url={url:?}"),
                "channels.sms.http.bearer_token=\"t\"",
            ])
        };
        let w = sms("http://sms.example.ir/send");
        assert!(w.len() == 1 && w[0].contains("credentials"), "{w:?}");
        assert!(sms("https://sms.example.ir/send").is_empty());
        assert!(sms("http://127.0.0.1:8080/send").is_empty(), "loopback");
        let w = warn(&[
            "channels.email.enabled=true",
            "channels.order=[\"sms\", \"email\", \"push\"]",
            "channels.email.gateway=\"smtp\"",
            "channels.email.smtp.host=\"relay.example.ir\"",
            "channels.email.smtp.tls=\"none\"",
        ]);
        assert!(w.iter().any(|x| x.contains("channels.email.smtp")), "{w:?}");
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
