//! Checks of the ScyllaDB schema migrations shipped in the crate.

use karpoosheh_schemas::{cql_checksum, cql_schema_version, cql_statements, CQL_MIGRATIONS};

fn all_statements() -> Vec<String> {
    CQL_MIGRATIONS
        .iter()
        .flat_map(|m| cql_statements(m.cql).unwrap_or_else(|e| panic!("{}: {e}", m.name)))
        .collect()
}

/// A table's CREATE statement with whitespace collapsed.
fn table(name: &str) -> String {
    all_statements()
        .into_iter()
        .find(|s| s.starts_with(&format!("CREATE TABLE IF NOT EXISTS {name} (")))
        .unwrap_or_else(|| panic!("no table {name}"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_splitter_respects_strings_and_comments() {
    assert_eq!(
        cql_statements("CREATE A (x) WITH comment = 'a; b -- c''s'; -- d; e\nCREATE B;\n-- end")
            .unwrap(),
        vec!["CREATE A (x) WITH comment = 'a; b -- c''s'", "CREATE B"]
    );
    assert!(cql_statements("CREATE A; CREATE C")
        .unwrap_err()
        .contains("after the last"));
    assert!(cql_statements("CREATE A;;").unwrap_err().contains("empty"));
    assert!(cql_statements("CREATE A 'open;")
        .unwrap_err()
        .contains("unterminated"));
}

#[test]
fn migrations_are_numbered_in_order_and_idempotent() {
    for (i, m) in CQL_MIGRATIONS.iter().enumerate() {
        assert_eq!(m.version as usize, i + 1, "{} is out of order", m.name);
        assert!(
            m.name.starts_with(&format!("{:03}_", m.version)),
            "{}",
            m.name
        );
    }
    assert_eq!(cql_schema_version(), CQL_MIGRATIONS.len() as u32);
    for s in all_statements() {
        assert!(s.starts_with("CREATE "), "not a CREATE statement: {s:.60}");
        // A migration interrupted half-way is applied again from the start.
        assert!(s.contains("IF NOT EXISTS"), "not idempotent: {s:.60}");
        // The keyspace is the session's, chosen by configuration.
        assert!(
            !s.contains("karpoosheh."),
            "a keyspace-qualified name: {s:.60}"
        );
    }
}

#[test]
fn the_checksum_ignores_comments_and_layout_but_not_statements() {
    let a = "-- one\nCREATE TABLE IF NOT EXISTS t (a int PRIMARY KEY);";
    let b = "CREATE TABLE IF NOT EXISTS t (a  int\n    PRIMARY KEY); -- two";
    let c = "CREATE TABLE IF NOT EXISTS t (a bigint PRIMARY KEY);";
    assert_eq!(cql_checksum(a), cql_checksum(b));
    assert_ne!(cql_checksum(a), cql_checksum(c));
}

#[test]
fn every_table_the_store_uses_is_created() {
    let stmts = all_statements();
    for t in [
        "notices",
        "mailbox_notices",
        "mailbox_months",
        "agency_refs",
        "deliveries",
        "timers",
        "timer_hours",
        "outbox",
        "confirmations",
        "awaiting",
        "profiles",
        "rejections",
        "dead_letters",
        "traffic_days",
        "node_state",
        "node_leases",
    ] {
        let create = format!("CREATE TABLE IF NOT EXISTS {t} (");
        assert!(
            stmts.iter().any(|s| s.starts_with(&create)),
            "no `{create}` statement"
        );
    }
    assert!(stmts
        .iter()
        .any(|s| s.starts_with("CREATE TYPE IF NOT EXISTS attachment (")));
}

#[test]
fn partition_keys_are_bounded() {
    assert!(table("notices").contains("tracking_code bigint PRIMARY KEY"));
    // A mailbox is bucketed by month, newest first.
    assert!(table("mailbox_notices").contains("PRIMARY KEY ((mailbox_id, month), tracking_code)"));
    assert!(table("mailbox_notices").contains("CLUSTERING ORDER BY (tracking_code DESC)"));
    assert!(table("agency_refs").contains("PRIMARY KEY ((agency, reference))"));
    // Queues are bucketed by node, shard and hour, read in due order.
    assert!(table("timers")
        .contains("PRIMARY KEY ((node_id, shard, hour), due_ms, tracking_code, kind)"));
    assert!(table("outbox").contains("PRIMARY KEY ((node_id, hour), id)"));
    assert!(table("timer_hours").contains("PRIMARY KEY ((node_id, shard), hour)"));
    // Traffic data by day and a hash bucket, under time-window compaction.
    assert!(table("rejections").contains("PRIMARY KEY ((agency, day, bucket), id)"));
    assert!(table("dead_letters").contains("PRIMARY KEY ((day, bucket), id)"));
    for t in ["rejections", "dead_letters"] {
        assert!(table(t).contains("TimeWindowCompactionStrategy"), "{t}");
    }
}
