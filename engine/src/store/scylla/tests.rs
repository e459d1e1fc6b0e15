//! The conformance suite on a real ScyllaDB cluster, when
//! `KARPOOSHEH_SCYLLA_NODES` names one (comma-separated `host:port`);
//! each case gets its own keyspace, dropped afterwards. Without it the
//! test says plainly that it was skipped.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::store::conformance;

/// The cluster to test against, or `None` (and a note) when none is set.
pub(crate) fn test_cluster(test: &str) -> Option<ScyllaConfig> {
    let Ok(nodes) = std::env::var("KARPOOSHEH_SCYLLA_NODES") else {
        assert!(
            std::env::var("KARPOOSHEH_REQUIRE_CQL").is_err(),
            "{test}: a CQL cluster is required (KARPOOSHEH_REQUIRE_CQL) but KARPOOSHEH_SCYLLA_NODES is not set: run the suite with scripts/test, which starts one"
        );
        eprintln!("SKIPPED {test}: set KARPOOSHEH_SCYLLA_NODES=host:port[,host:port] to run it against a ScyllaDB cluster");
        return None;
    };
    let mut c = ScyllaConfig {
        nodes: nodes
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        migrate_on_start: true,
        ..ScyllaConfig::default()
    };
    // A test cluster is one data centre; KARPOOSHEH_SCYLLA_DC names it.
    let dc = std::env::var("KARPOOSHEH_SCYLLA_DC").unwrap_or_else(|_| "datacenter1".into());
    let rf = std::env::var("KARPOOSHEH_SCYLLA_RF")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    c.replication = BTreeMap::from([(dc.clone(), rf)]);
    c.local_datacenter = dc;
    c.consistency = if rf >= 3 {
        ConsistencyName::LocalQuorum
    } else {
        ConsistencyName::LocalOne
    };
    if let Ok(u) = std::env::var("KARPOOSHEH_SCYLLA_USERNAME") {
        c.username = u;
        c.password = crate::secret::Secret::new(
            std::env::var("KARPOOSHEH_SCYLLA_PASSWORD").unwrap_or_default(),
        );
    }
    Some(c)
}

/// A keyspace name no other test run uses.
pub(crate) fn unique_keyspace(case: &str) -> String {
    let tag: String = case
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(20)
        .collect();
    format!(
        "kt_{}_{:08x}",
        tag.to_ascii_lowercase(),
        rand::random::<u32>()
    )
}

/// Drops its keyspace when the case is over.
struct KeyspaceGuard(ScyllaConfig);

impl Drop for KeyspaceGuard {
    fn drop(&mut self) {
        let cfg = self.0.clone();
        let rt = runtime().expect("a runtime");
        let dropped = rt.block_on(async {
            let s = connect(&cfg).await?;
            s.query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", cfg.keyspace), ())
                .await
                .map_err(ScyllaError::request("dropping a test keyspace"))
        });
        if let Err(e) = dropped {
            eprintln!("could not drop test keyspace {}: {e}", cfg.keyspace);
        }
    }
}

pub(crate) fn open_test_store(
    cfg: &ScyllaConfig,
    case: &str,
) -> (Box<dyn crate::store::Store>, Box<dyn std::any::Any>) {
    let mut cfg = cfg.clone();
    cfg.keyspace = unique_keyspace(case);
    let store = ScyllaStore::open(ScyllaStoreConfig {
        scylla: cfg.clone(),
        node_id: 1,
        record_retention: Duration::from_secs(186 * 24 * 3600),
        read_only: false,
    })
    .unwrap_or_else(|e| panic!("opening a store in {}: {e}", cfg.keyspace));
    (Box::new(store), Box::new(KeyspaceGuard(cfg)))
}

#[test]
fn conformance_on_scylla() {
    let Some(cfg) = test_cluster("conformance_on_scylla") else {
        return;
    };
    conformance::run_all(&mut |case| open_test_store(&cfg, case));
}

#[test]
fn the_statements_name_only_tables_the_schema_creates() {
    let schema: Vec<String> = karpoosheh_schemas::CQL_MIGRATIONS
        .iter()
        .flat_map(|m| karpoosheh_schemas::cql_statements(m.cql).unwrap())
        .collect();
    let tables: Vec<&str> = schema
        .iter()
        .filter_map(|s| s.strip_prefix("CREATE TABLE IF NOT EXISTS "))
        .filter_map(|s| s.split_whitespace().next())
        .collect();
    for (name, cql, _) in CQL {
        let table = cql
            .split_whitespace()
            .skip_while(|w| !matches!(*w, "INTO" | "FROM" | "UPDATE"))
            .nth(1)
            .or_else(|| {
                cql.strip_prefix("UPDATE ")
                    .and_then(|s| s.split_whitespace().next())
            })
            .unwrap_or_else(|| panic!("{name}: no table in {cql}"));
        assert!(
            tables.contains(&table),
            "{name} uses {table}, which no migration creates"
        );
        assert!(!cql.contains(';'), "{name}: one statement each");
    }
}

#[test]
fn only_lightweight_transactions_are_not_idempotent() {
    for (name, cql, idempotent) in CQL {
        let lwt = cql.contains(" IF ");
        assert_eq!(
            !lwt, *idempotent,
            "{name}: a retry may repeat it only if it is not a LWT"
        );
        // No statement reads a whole table or filters server-side.
        assert!(!cql.contains("ALLOW FILTERING"), "{name}");
        if cql.starts_with("SELECT") {
            assert!(
                cql.contains(" WHERE "),
                "{name} reads without a partition key"
            );
        }
    }
}

#[test]
fn lwt_tables_take_no_plain_writes() {
    // ScyllaDB's guidance: a table written by LWT is written only by LWT.
    for table in ["agency_refs", "node_leases"] {
        for (name, cql, idempotent) in CQL {
            let writes = cql.starts_with(&format!("INSERT INTO {table} "))
                || cql.starts_with(&format!("UPDATE {table} "))
                || cql.starts_with(&format!("DELETE FROM {table} "));
            if writes {
                assert!(
                    !idempotent && cql.contains(" IF "),
                    "{name} writes {table} without a condition"
                );
            }
        }
    }
}

#[test]
fn the_printed_schema_is_a_script_a_dba_can_apply() {
    let script = schema_cql(&ScyllaConfig::default());
    let stmts = karpoosheh_schemas::cql_statements(&script).expect("it splits into statements");
    assert!(stmts[0].starts_with("CREATE KEYSPACE IF NOT EXISTS karpoosheh WITH replication = {'class': 'NetworkTopologyStrategy'"));
    assert_eq!(stmts[1], "USE karpoosheh");
    for m in karpoosheh_schemas::CQL_MIGRATIONS {
        let n = karpoosheh_schemas::cql_statements(m.cql).unwrap().len();
        assert!(n > 0);
        assert!(script.contains(&format!(
            "VALUES ({}, '{}', '{}'",
            m.version,
            m.name,
            karpoosheh_schemas::cql_checksum(m.cql)
        )));
    }
}

#[test]
fn a_node_id_is_held_by_one_engine_and_readers_need_no_lease() {
    let Some(mut cfg) = test_cluster("a_node_id_is_held_by_one_engine_and_readers_need_no_lease")
    else {
        return;
    };
    cfg.keyspace = unique_keyspace("lease");
    let _guard = KeyspaceGuard(cfg.clone());
    let open = |read_only| {
        ScyllaStore::open(ScyllaStoreConfig {
            scylla: cfg.clone(),
            node_id: 7,
            record_retention: Duration::from_secs(186 * 24 * 3600),
            read_only,
        })
    };
    let writer = open(false).expect("the first engine takes node_id 7");
    let reader = open(true).expect("an inspection command needs no lease");
    assert!(matches!(
        reader.write(&conformance::sample_entries(1)),
        Err(StoreError::Scylla(ScyllaError::ReadOnly))
    ));
    // A second engine with the same node_id waits for the lease to lapse,
    // and the live one keeps renewing it.
    match open(false) {
        Err(StoreError::Scylla(ScyllaError::LeaseHeld { node: 7, .. })) => {}
        Err(e) => panic!("expected LeaseHeld, got {e}"),
        Ok(_) => panic!("two engines held node_id 7"),
    }
    assert!(
        writer.write(&conformance::sample_entries(1)).is_ok(),
        "the holder still writes"
    );
    // A clean stop frees the node ID at once.
    drop(writer);
    let again = open(false).expect("a released node_id is free");
    drop(again);
}

/// Traffic data carry a TTL (`scylla.traffic_retention`): the cluster
/// itself forgets them when it ends, with no sweeper of ours. Shown here
/// with a retention of two seconds, which configuration refuses (180 days
/// at least) but the store takes from a test.
#[test]
fn traffic_data_expire_by_themselves_when_their_retention_ends() {
    let Some(mut cfg) = test_cluster("traffic_data_expire_by_themselves_when_their_retention_ends")
    else {
        return;
    };
    cfg.keyspace = unique_keyspace("ttl");
    cfg.traffic_retention = karpoosheh_schemas::HumanDuration(Duration::from_secs(2));
    let _guard = KeyspaceGuard(cfg.clone());
    let store = ScyllaStore::open(ScyllaStoreConfig {
        scylla: cfg.clone(),
        node_id: 3,
        record_retention: Duration::from_secs(186 * 24 * 3600),
        read_only: false,
    })
    .expect("open");
    let tax = AgencyId::parse("tax").unwrap();
    let mut entries = conformance::sample_entries(1);
    entries.push(conformance::rejection(
        Some("tax"),
        "ref-ttl",
        Reason::BadCheckDigit,
    ));
    store.write(&entries).expect("write");
    let kept = store.rejections(Some(&tax), None, 10).unwrap();
    assert_eq!(kept.len(), 1, "the rejection is readable at once");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        if store.rejections(Some(&tax), None, 10).unwrap().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rejection outlived its two-second retention by 30 s"
        );
    }
    // The notice itself is legal evidence and has no TTL.
    assert!(
        store.reference(&tax, "ref-0").unwrap().is_some(),
        "the notice is kept"
    );
}

/// An outbox receipt that no longer decodes is set aside and removed; the
/// receipts around it are read.
#[test]
fn an_unreadable_outbox_receipt_is_quarantined_on_scylla() {
    use crate::model::DeliveryWrite;
    use crate::store::{DeliveryStore, QuarantineStore};
    let Some(mut cfg) = test_cluster("an_unreadable_outbox_receipt_is_quarantined_on_scylla")
    else {
        return;
    };
    cfg.keyspace = unique_keyspace("quarantine");
    let _guard = KeyspaceGuard(cfg.clone());
    let store = ScyllaStore::open(ScyllaStoreConfig {
        scylla: cfg.clone(),
        node_id: 4,
        record_retention: Duration::from_secs(186 * 24 * 3600),
        read_only: false,
    })
    .expect("open");
    let receipt = |i: u8| conformance::receipt("tax", i);
    store
        .write_delivery(&[DeliveryWrite {
            receipts: vec![receipt(1), receipt(2), receipt(3)],
            ..Default::default()
        }])
        .unwrap();
    let ids: Vec<u64> = store
        .outbox(None, 10)
        .unwrap()
        .iter()
        .map(|x| x.0)
        .collect();
    assert_eq!(ids.len(), 3);
    store
        .rt
        .block_on(store.exec(
            &store.st.outbox_put,
            (
                store.node,
                hour_of(id_ms(ids[1])),
                ids[1] as i64,
                "{x".to_owned(),
            ),
            "corrupting a receipt",
        ))
        .unwrap();
    let got: Vec<String> = store
        .outbox(None, 10)
        .unwrap()
        .into_iter()
        .map(|x| x.1.receipt_id)
        .collect();
    assert_eq!(got, ["tax-r1", "tax-r3"], "the others are read");
    assert_eq!(
        store.outbox(None, 10).unwrap().len(),
        2,
        "gone from the outbox"
    );
    let q = store.quarantined(10).unwrap();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0].kind, "outbox_receipt");
    assert_eq!(q[0].key, ids[1].to_string());
    assert_eq!(q[0].bytes_b64, "e3g=", "the stored text, base64");
}

/// The disk gauge: every node's estimate of the keyspace (its
/// `system.size_estimates`), summed. Data still in memtables is not in
/// the estimates: the tables are flushed each second here, and the test
/// cluster refreshes its estimates every 10 s (scripts/cassandra).
#[test]
fn the_disk_gauge_is_the_cluster_s_estimate_of_the_keyspace() {
    let Some(mut cfg) = test_cluster("the_disk_gauge_is_the_cluster_s_estimate_of_the_keyspace")
    else {
        return;
    };
    cfg.keyspace = unique_keyspace("size");
    let _guard = KeyspaceGuard(cfg.clone());
    let store = ScyllaStore::open(ScyllaStoreConfig {
        scylla: cfg.clone(),
        node_id: 5,
        record_retention: Duration::from_secs(186 * 24 * 3600),
        read_only: false,
    })
    .expect("open");
    // A fresh keyspace holds only the store's own few rows (its schema
    // version, the node's lease), which an estimate refreshed in the
    // meantime may count: far below the 200 KB the notices below take,
    // and far below the other test keyspaces this cluster holds.
    let empty = store.size_estimate().expect("every node answers");
    assert!(empty < 64 * 1024, "a fresh keyspace: {empty} bytes");
    for table in ["notices", "mailbox_notices", "deliveries"] {
        store
            .rt
            .block_on(store.session.query_unpaged(
                format!(
                    "ALTER TABLE {}.{table} WITH memtable_flush_period_in_ms = 1000",
                    cfg.keyspace
                ),
                (),
            ))
            .expect("flushing each second");
    }
    let entries: Vec<_> = (0..200u16)
        .map(|i| {
            conformance::new_notice(
                conformance::notice(
                    "tax",
                    &format!("size-{i}"),
                    conformance::person(500_000_000 + u32::from(i)),
                    &"متن ".repeat(200),
                ),
                i + 1,
            )
        })
        .collect();
    store.write(&entries).expect("write");
    // Every node's estimate must be in (a cluster of several refreshes
    // them one by one): until the sum covers the bodies.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let one_copy = loop {
        let n = store.size_estimate().expect("every node answers");
        if n >= 200 * 1000 {
            break n;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no estimate of 200 notices after 90 s"
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    eprintln!("size estimate: {one_copy} bytes for 200 notices");
    // 200 bodies of about 1.4 KB each, in `notices` alone.
    assert!(
        one_copy >= 200 * 1000,
        "{one_copy} bytes estimated for 200 notices of 1.4 KB"
    );
    assert!(
        one_copy < 200 * 1_000_000,
        "{one_copy} bytes: not an estimate of these"
    );
}

/// A crash between a kept rejection's source and its row (the source is
/// written first): the record, when it comes again, writes the row under
/// the source's ID, once.
#[test]
fn a_rejection_whose_row_a_crash_took_is_kept_when_it_comes_again() {
    let Some(mut cfg) =
        test_cluster("a_rejection_whose_row_a_crash_took_is_kept_when_it_comes_again")
    else {
        return;
    };
    cfg.keyspace = unique_keyspace("keptrepair");
    let _guard = KeyspaceGuard(cfg.clone());
    let store = ScyllaStore::open(ScyllaStoreConfig {
        scylla: cfg.clone(),
        node_id: 6,
        record_retention: Duration::from_secs(186 * 24 * 3600),
        read_only: false,
    })
    .expect("open");
    let Entry::Rejection(mut r) =
        conformance::rejection(Some("tax"), "lost", Reason::BadCheckDigit)
    else {
        unreachable!()
    };
    r.position = karpoosheh_schemas::SourcePosition::Kafka {
        topic: "karpoosheh.notices.tax".into(),
        partition: 0,
        offset: 41,
    };
    // What the crash left: the source, under an ID, and no row.
    let (source, fp) = r.kept_source().unwrap();
    let id = TrackingCode::from_parts(chrono::Utc::now().timestamp_millis(), 6, 3).as_u64();
    store
        .rt
        .block_on(store.exec(
            &store.st.kept_put,
            (source.as_str(), fp.as_slice(), id as i64, 3600),
            "a source without its row",
        ))
        .unwrap();
    let tax = AgencyId::parse("tax").unwrap();
    assert!(store.rejections(Some(&tax), None, 10).unwrap().is_empty());
    let entry = Entry::Rejection(r);
    assert_eq!(
        store.write(std::slice::from_ref(&entry)).unwrap(),
        vec![Outcome::Again]
    );
    let kept = store.rejections(Some(&tax), None, 10).unwrap();
    assert_eq!(kept.len(), 1, "the row is written");
    assert_eq!(kept[0].id, id, "under the source's ID");
    assert_eq!(store.write(&[entry]).unwrap(), vec![Outcome::Again]);
    assert_eq!(
        store.rejections(Some(&tax), None, 10).unwrap().len(),
        1,
        "once"
    );
}
