//! `[scylla]`: where the cluster is, how the keyspace is replicated, how
//! the engine talks to it (consistency, timeouts, concurrency, TLS,
//! authentication), and how long traffic data is kept.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use karpoosheh_schemas::HumanDuration;
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The ScyllaDB store backend's configuration (used when
/// `store.backend = "scylla"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScyllaConfig {
    /// Contact points, `host:port`; the driver discovers the rest of the
    /// cluster from them.
    pub nodes: Vec<String>,
    /// The keyspace holding every table.
    pub keyspace: String,
    /// This engine's data centre: requests go to its replicas first and
    /// `LOCAL_*` consistency counts only them. Required when
    /// `replication` names several; empty only for a one-data-centre
    /// cluster.
    pub local_datacenter: String,
    /// Replication factor per data centre, for `karpoosheh migrate` to
    /// create the keyspace with NetworkTopologyStrategy: the main, mirror
    /// and disaster data centres are all required (1401 art. 24).
    pub replication: BTreeMap<String, u8>,
    /// Consistency of reads and writes: `local_quorum` (default),
    /// `quorum`, `each_quorum`, `local_one`, `one`, `all`.
    pub consistency: ConsistencyName,
    /// Consistency of the lightweight transactions (the reference claim,
    /// the node lease): `local_serial` (default) or `serial`.
    pub serial_consistency: SerialName,
    /// How long one request may take before it fails (and the write is
    /// retried by the pipeline).
    pub request_timeout: HumanDuration,
    /// How long connecting to a node may take.
    pub connect_timeout: HumanDuration,
    /// Requests in flight at once per store call; bounds the load one
    /// engine puts on the cluster and the memory it holds.
    pub max_concurrency: usize,
    /// Speculative execution for idempotent reads and writes: after this
    /// delay without an answer, the same request also goes to another
    /// replica. `0s` (default) is off: it multiplies load on a cluster that
    /// is slow because it is loaded.
    pub speculative_delay: HumanDuration,
    /// Extra speculative attempts, when `speculative_delay` is set.
    pub speculative_max: u8,
    /// Username for password authentication; empty for none.
    pub username: String,
    /// Password for password authentication.
    pub password: Secret,
    /// TLS to the cluster.
    pub tls: ScyllaTls,
    /// Apply pending schema migrations when the engine starts. Off by
    /// default: in production the schema changes only through
    /// `karpoosheh migrate`; `karpoosheh demo` and tests turn it on.
    pub migrate_on_start: bool,
    /// How long rejections and dead letters are kept (traffic data: at
    /// least six months, 1401 art. 10.3).
    pub traffic_retention: HumanDuration,
}

/// TLS to the cluster (through OpenSSL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ScyllaTls {
    pub enabled: bool,
    /// PEM file of the CA(s) that signed the nodes' certificates; empty
    /// uses the system's trust store.
    pub ca_file: PathBuf,
    /// PEM client certificate and key, when the cluster requires mutual TLS.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Check that a node's certificate names the address it is reached on
    /// (the driver connects by IP address, so certificates need IP SANs).
    /// Off only checks the chain to the CA.
    pub verify_hostname: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConsistencyName {
    One,
    LocalOne,
    Quorum,
    #[default]
    LocalQuorum,
    EachQuorum,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SerialName {
    #[default]
    LocalSerial,
    Serial,
}

impl ConsistencyName {
    pub fn to_driver(self) -> scylla::statement::Consistency {
        use scylla::statement::Consistency as C;
        match self {
            ConsistencyName::One => C::One,
            ConsistencyName::LocalOne => C::LocalOne,
            ConsistencyName::Quorum => C::Quorum,
            ConsistencyName::LocalQuorum => C::LocalQuorum,
            ConsistencyName::EachQuorum => C::EachQuorum,
            ConsistencyName::All => C::All,
        }
    }
}

impl SerialName {
    pub fn to_driver(self) -> scylla::statement::SerialConsistency {
        use scylla::statement::SerialConsistency as S;
        match self {
            SerialName::LocalSerial => S::LocalSerial,
            SerialName::Serial => S::Serial,
        }
    }
}

const DAY: u64 = 24 * 3600;

impl Default for ScyllaConfig {
    fn default() -> Self {
        ScyllaConfig {
            nodes: vec!["127.0.0.1:9042".into()],
            keyspace: "karpoosheh".into(),
            local_datacenter: "dc_main".into(),
            // Three copies in each of the three data centres: a quorum
            // survives one node down in every one of them.
            replication: BTreeMap::from([
                ("dc_main".to_owned(), 3),
                ("dc_mirror".to_owned(), 3),
                ("dc_dr".to_owned(), 3),
            ]),
            consistency: ConsistencyName::LocalQuorum,
            serial_consistency: SerialName::LocalSerial,
            // ScyllaDB's own write timeout is 2 s; a little above it lets
            // the server answer with its own error first.
            request_timeout: HumanDuration(Duration::from_secs(5)),
            connect_timeout: HumanDuration(Duration::from_secs(5)),
            // A few hundred requests in flight keep a small cluster busy
            // without queueing far beyond its shards.
            max_concurrency: 256,
            speculative_delay: HumanDuration(Duration::ZERO),
            speculative_max: 1,
            username: String::new(),
            password: Secret::default(),
            tls: ScyllaTls {
                verify_hostname: true,
                ..ScyllaTls::default()
            },
            migrate_on_start: false,
            // A year: over the six-month minimum, with room for disputes.
            traffic_retention: HumanDuration(Duration::from_secs(365 * DAY)),
        }
    }
}

impl ScyllaConfig {
    /// Refuses settings that cannot work, naming what to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.nodes.is_empty() {
            return Err("scylla.nodes must name at least one contact point (host:port)".into());
        }
        for n in &self.nodes {
            let ok = n
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(format!(
                    "scylla.nodes entry {n:?} is not host:port (e.g. 10.0.0.5:9042)"
                ));
            }
        }
        if !valid_identifier(&self.keyspace) {
            return Err(format!(
                "scylla.keyspace {:?} must be 1-48 letters, digits or underscores, starting with a letter",
                self.keyspace
            ));
        }
        if self.replication.is_empty() {
            return Err(
                "scylla.replication must give a replication factor for at least one data centre"
                    .into(),
            );
        }
        for (dc, rf) in &self.replication {
            if *rf == 0
                || dc.is_empty()
                || !dc
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            {
                return Err(format!(
                    "scylla.replication: {dc:?} = {rf} is not a data centre name with a factor of 1 or more"
                ));
            }
        }
        if self.local_datacenter.is_empty() && self.replication.len() > 1 {
            return Err("scylla.local_datacenter must name the data centre this engine runs in (one of scylla.replication's): with several, LOCAL_QUORUM means nothing without it".into());
        }
        if !self.local_datacenter.is_empty()
            && !self.replication.contains_key(&self.local_datacenter)
        {
            return Err(format!(
                "scylla.local_datacenter {:?} is not one of the data centres in scylla.replication",
                self.local_datacenter
            ));
        }
        if self.max_concurrency == 0 {
            return Err("scylla.max_concurrency must be above zero".into());
        }
        if self.request_timeout.0.is_zero() || self.connect_timeout.0.is_zero() {
            return Err(
                "scylla.request_timeout and scylla.connect_timeout must be above zero".into(),
            );
        }
        if self.username.is_empty() != self.password.is_empty() {
            return Err("scylla.username and scylla.password are set together (or neither)".into());
        }
        let t = &self.tls;
        if !t.enabled && (!t.ca_file.as_os_str().is_empty() || !t.cert_file.as_os_str().is_empty())
        {
            return Err(
                "scylla.tls.ca_file or cert_file is set but scylla.tls.enabled is false".into(),
            );
        }
        if t.cert_file.as_os_str().is_empty() != t.key_file.as_os_str().is_empty() {
            return Err(
                "scylla.tls.cert_file and scylla.tls.key_file are set together (or neither)".into(),
            );
        }
        if self.traffic_retention.0 < Duration::from_secs(180 * DAY) {
            return Err("scylla.traffic_retention must be at least 180 days (1401 art. 10.3: traffic data are kept at least six months)".into());
        }
        Ok(())
    }
}

/// A CQL identifier we can use unquoted.
pub(crate) fn valid_identifier(s: &str) -> bool {
    (1..=48).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_need_three_data_centres() {
        let c = ScyllaConfig::default();
        c.validate().unwrap();
        assert_eq!(
            c.replication.len(),
            3,
            "main, mirror and disaster (1401 art. 24)"
        );
        assert_eq!(c.consistency, ConsistencyName::LocalQuorum);
        assert!(!c.migrate_on_start, "production never migrates implicitly");
        assert!(
            c.speculative_delay.0.is_zero(),
            "speculative execution off by default"
        );
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        let refused = |f: &dyn Fn(&mut ScyllaConfig)| {
            let mut c = ScyllaConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(refused(&|c| c.nodes.clear()).contains("scylla.nodes"));
        assert!(refused(&|c| c.nodes = vec!["db1".into()]).contains("host:port"));
        assert!(refused(&|c| c.keyspace = "drop table x".into()).contains("scylla.keyspace"));
        assert!(refused(&|c| c.keyspace = "1ks".into()).contains("scylla.keyspace"));
        assert!(refused(&|c| {
            c.replication.insert("dc_x".into(), 0);
        })
        .contains("dc_x"));
        assert!(refused(&|c| c.local_datacenter = "elsewhere".into()).contains("local_datacenter"));
        assert!(refused(&|c| c.local_datacenter.clear()).contains("LOCAL_QUORUM"));
        assert!(refused(&|c| c.username = "karpoosheh".into()).contains("password"));
        assert!(refused(&|c| c.tls.ca_file = "/ca.pem".into()).contains("tls.enabled"));
        assert!(refused(&|c| {
            c.tls.enabled = true;
            c.tls.cert_file = "/c.pem".into();
        })
        .contains("key_file"));
        assert!(
            refused(&|c| c.traffic_retention = HumanDuration(Duration::from_secs(DAY)))
                .contains("six months")
        );
        assert!(refused(&|c| c.max_concurrency = 0).contains("max_concurrency"));
    }

    #[test]
    fn consistency_names_map_to_the_driver() {
        use scylla::statement::{Consistency, SerialConsistency};
        assert_eq!(
            ConsistencyName::LocalQuorum.to_driver(),
            Consistency::LocalQuorum
        );
        assert_eq!(
            ConsistencyName::EachQuorum.to_driver(),
            Consistency::EachQuorum
        );
        assert_eq!(
            SerialName::LocalSerial.to_driver(),
            SerialConsistency::LocalSerial
        );
        let c: ScyllaConfig =
            toml::from_str("consistency = \"quorum\"\nserial_consistency = \"serial\"").unwrap();
        assert_eq!(c.consistency, ConsistencyName::Quorum);
        assert_eq!(c.serial_consistency, SerialName::Serial);
    }
}
