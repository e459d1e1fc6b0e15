//! The keyspace and its schema migrations: created and applied by
//! `karpoosheh migrate` (or at start-up with `scylla.migrate_on_start`),
//! checked by every engine at start-up. An engine never runs against a
//! schema older than the one it was built for.

use std::collections::BTreeMap;

use karpoosheh_schemas::{cql_checksum, cql_schema_version, cql_statements, CQL_MIGRATIONS};
use scylla::client::session::Session;

use super::config::ScyllaConfig;
use super::ScyllaError;
use crate::internal_events::MigrationApplied;

/// Where the applied migrations are recorded (in the keyspace itself).
pub(crate) const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version     int PRIMARY KEY,
    name        text,
    checksum    text,
    applied_at  timestamp
) WITH comment = 'Schema migrations applied by karpoosheh migrate.'";

/// Tablets are turned off for the keyspace: ScyllaDB versions that create
/// keyspaces with tablets by default do not support lightweight
/// transactions on them, and the reference claims need those.
const NO_TABLETS: &str = " AND tablets = {'enabled': false}";

/// `CREATE KEYSPACE` with NetworkTopologyStrategy and one replication
/// factor per data centre. Names were validated with the configuration.
pub(crate) fn create_keyspace_cql(keyspace: &str, replication: &BTreeMap<String, u8>) -> String {
    let dcs: Vec<String> = replication
        .iter()
        .map(|(dc, rf)| format!("'{}': {rf}", dc.replace('\'', "''")))
        .collect();
    format!(
        "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {{'class': 'NetworkTopologyStrategy', {}}} AND durable_writes = true",
        dcs.join(", ")
    )
}

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub keyspace: String,
    /// Versions applied by this run, in order.
    pub applied: Vec<u32>,
    /// The schema version after the run.
    pub version: u32,
    /// Set when the keyspace already existed with another replication than
    /// `scylla.replication` (migrate never changes it: that is an
    /// `ALTER KEYSPACE` and a repair, by the DBA).
    pub replication_note: Option<String>,
}

/// How the keyspace's replication differs from the configured one, if it
/// does.
async fn replication_differs(
    session: &Session,
    keyspace: &str,
    want: &BTreeMap<String, u8>,
) -> Result<Option<String>, ScyllaError> {
    let res = session
        .query_unpaged(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (keyspace,),
        )
        .await
        .map_err(ScyllaError::request("reading the keyspace's replication"))?;
    let rows = super::collect::<(BTreeMap<String, String>,)>(res, "system_schema.keyspaces")?;
    let Some((have,)) = rows.into_iter().next() else {
        return Ok(None);
    };
    Ok(replication_mismatch(&have, want))
}

fn replication_mismatch(
    have: &BTreeMap<String, String>,
    want: &BTreeMap<String, u8>,
) -> Option<String> {
    let factors: BTreeMap<String, u8> = have
        .iter()
        .filter(|(k, _)| k.as_str() != "class")
        .filter_map(|(k, v)| Some((k.clone(), v.parse().ok()?)))
        .collect();
    let class_ok = have
        .get("class")
        .is_some_and(|c| c.ends_with("NetworkTopologyStrategy"));
    (!class_ok || factors != *want).then(|| {
        format!("the keyspace is replicated as {have:?}, not as scylla.replication says ({want:?}); change it with ALTER KEYSPACE and a repair")
    })
}

/// The applied versions and their checksums.
async fn applied(session: &Session) -> Result<BTreeMap<u32, String>, ScyllaError> {
    let rows = session
        .query_unpaged("SELECT version, checksum FROM schema_migrations", ())
        .await
        .map_err(ScyllaError::request("reading schema_migrations"))?
        .into_rows_result()
        .map_err(ScyllaError::rows("schema_migrations"))?;
    let mut out = BTreeMap::new();
    for r in rows
        .rows::<(i32, Option<String>)>()
        .map_err(ScyllaError::rows("schema_migrations"))?
    {
        let (v, sum) = r.map_err(ScyllaError::rows("schema_migrations"))?;
        out.insert(v.max(0) as u32, sum.unwrap_or_default());
    }
    Ok(out)
}

/// Creates the keyspace if needed, then applies every migration not yet
/// recorded, in order. A migration interrupted half-way is re-run from its
/// start (every statement is `IF NOT EXISTS`). A recorded migration whose
/// text changed is refused: migrations are append-only.
pub(crate) async fn migrate(
    session: &Session,
    cfg: &ScyllaConfig,
) -> Result<MigrationReport, ScyllaError> {
    let ks = &cfg.keyspace;
    let create = create_keyspace_cql(ks, &cfg.replication);
    if let Err(e) = session
        .query_unpaged(format!("{create}{NO_TABLETS}"), ())
        .await
    {
        // A ScyllaDB older than tablets does not know the option.
        if !e.to_string().to_ascii_lowercase().contains("tablets") {
            return Err(ScyllaError::request("creating the keyspace")(e));
        }
        session
            .query_unpaged(create, ())
            .await
            .map_err(ScyllaError::request("creating the keyspace"))?;
    }
    let replication_note = replication_differs(session, ks, &cfg.replication).await?;
    session
        .use_keyspace(ks, false)
        .await
        .map_err(|e| ScyllaError::Schema(format!("cannot use keyspace {ks}: {e}")))?;
    session
        .query_unpaged(MIGRATIONS_TABLE, ())
        .await
        .map_err(ScyllaError::request("creating schema_migrations"))?;
    let done = applied(session).await?;
    check_checksums(&done)?;
    let mut report = MigrationReport {
        keyspace: ks.clone(),
        applied: Vec::new(),
        version: 0,
        replication_note,
    };
    for m in CQL_MIGRATIONS {
        if done.contains_key(&m.version) {
            continue;
        }
        let stmts =
            cql_statements(m.cql).map_err(|e| ScyllaError::Schema(format!("{}: {e}", m.name)))?;
        let statements = stmts.len();
        for s in stmts {
            session
                .query_unpaged(s, ())
                .await
                .map_err(ScyllaError::request(m.name))?;
        }
        session
            .query_unpaged(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, toTimestamp(now()))",
                (m.version as i32, m.name, cql_checksum(m.cql)),
            )
            .await
            .map_err(ScyllaError::request("recording a migration"))?;
        MigrationApplied {
            keyspace: ks,
            migration: m.name,
            statements,
        }
        .emit();
        report.applied.push(m.version);
    }
    session.await_schema_agreement().await.map_err(|e| {
        ScyllaError::Schema(format!("the cluster did not agree on the new schema: {e}"))
    })?;
    report.version = cql_schema_version();
    Ok(report)
}

fn check_checksums(done: &BTreeMap<u32, String>) -> Result<(), ScyllaError> {
    for m in CQL_MIGRATIONS {
        if let Some(sum) = done.get(&m.version) {
            if !sum.is_empty() && *sum != cql_checksum(m.cql) {
                return Err(ScyllaError::Schema(format!(
                    "migration {} was applied with different statements than this build ships (checksum {sum}, expected {}); migrations are append-only: restore the original file or add a new migration",
                    m.name,
                    cql_checksum(m.cql)
                )));
            }
        }
    }
    Ok(())
}

/// Refuses to start on a keyspace whose schema is older (or newer) than
/// this build's, saying what to run.
pub(crate) async fn check(session: &Session, keyspace: &str) -> Result<(), ScyllaError> {
    let need = cql_schema_version();
    let have = match applied(session).await {
        Ok(done) => {
            check_checksums(&done)?;
            done.keys().copied().max().unwrap_or(0)
        }
        // No schema_migrations table: nothing was ever applied.
        Err(ScyllaError::Request { message, .. })
            if message.contains("schema_migrations") || message.contains("unconfigured table") =>
        {
            0
        }
        Err(e) => return Err(e),
    };
    verdict(keyspace, have, need)
}

fn verdict(keyspace: &str, have: u32, need: u32) -> Result<(), ScyllaError> {
    match have.cmp(&need) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(ScyllaError::Schema(format!(
            "keyspace {keyspace} is at schema version {have}, this engine needs {need}: run `karpoosheh migrate` (with the same configuration) first"
        ))),
        std::cmp::Ordering::Greater => Err(ScyllaError::Schema(format!(
            "keyspace {keyspace} is at schema version {have}, newer than this engine's {need}: upgrade the engine"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keyspace_replicates_to_every_data_centre() {
        let cfg = ScyllaConfig::default();
        let cql = create_keyspace_cql(&cfg.keyspace, &cfg.replication);
        assert_eq!(
            cql,
            "CREATE KEYSPACE IF NOT EXISTS karpoosheh WITH replication = {'class': 'NetworkTopologyStrategy', 'dc_dr': 3, 'dc_main': 3, 'dc_mirror': 3} AND durable_writes = true"
        );
        let one = BTreeMap::from([("datacenter1".to_owned(), 1u8)]);
        assert!(create_keyspace_cql("ks_test", &one).contains("'datacenter1': 1}"));
    }

    #[test]
    fn an_engine_refuses_a_schema_it_was_not_built_for() {
        assert!(verdict("ks", 1, 1).is_ok());
        let old = verdict("ks", 0, 1).unwrap_err().to_string();
        assert!(old.contains("karpoosheh migrate"), "{old}");
        let new = verdict("ks", 2, 1).unwrap_err().to_string();
        assert!(new.contains("upgrade the engine"), "{new}");
    }

    #[test]
    fn a_keyspace_replicated_otherwise_is_reported() {
        let want = ScyllaConfig::default().replication;
        let mut have: BTreeMap<String, String> = want
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        have.insert(
            "class".into(),
            "org.apache.cassandra.locator.NetworkTopologyStrategy".into(),
        );
        assert_eq!(replication_mismatch(&have, &want), None);
        have.insert("dc_dr".into(), "1".into());
        assert!(replication_mismatch(&have, &want)
            .unwrap()
            .contains("ALTER KEYSPACE"));
        let simple = BTreeMap::from([
            (
                "class".to_owned(),
                "org.apache.cassandra.locator.SimpleStrategy".to_owned(),
            ),
            ("replication_factor".to_owned(), "3".to_owned()),
        ]);
        assert!(replication_mismatch(&simple, &want).is_some());
    }

    #[test]
    fn an_edited_migration_is_refused() {
        let mut done = BTreeMap::new();
        done.insert(1, cql_checksum(CQL_MIGRATIONS[0].cql));
        check_checksums(&done).unwrap();
        done.insert(1, "0000000000000000".to_owned());
        let e = check_checksums(&done).unwrap_err().to_string();
        assert!(e.contains("append-only"), "{e}");
    }

    #[test]
    fn the_migrations_table_is_idempotent() {
        assert!(MIGRATIONS_TABLE.starts_with("CREATE TABLE IF NOT EXISTS schema_migrations"));
    }
}
