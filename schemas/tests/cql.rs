//! Checks of the ScyllaDB schema text shipped in the crate.

use karpoosheh_schemas::CQL_SCHEMA;

/// Splits CQL into statements (each without its `;`) and whatever follows
/// the last `;`. `--` comments are dropped; `;` and `--` inside
/// single-quoted strings are text.
fn statements(cql: &str) -> (Vec<String>, String) {
    let mut stmts = Vec::new();
    let mut cur = String::new();
    let mut chars = cql.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_string = !in_string; // '' inside a string toggles twice
                cur.push(c);
            }
            '-' if !in_string && chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        cur.push('\n');
                        break;
                    }
                }
            }
            ';' if !in_string => stmts.push(std::mem::take(&mut cur).trim().to_owned()),
            _ => cur.push(c),
        }
    }
    assert!(!in_string, "an unterminated string literal");
    (stmts, cur.trim().to_owned())
}

#[test]
fn the_splitter_respects_strings_and_comments() {
    let (stmts, rest) =
        statements("CREATE A (x) WITH comment = 'a; b -- c'; -- d; e\nCREATE B;\nCREATE C");
    assert_eq!(
        stmts,
        vec!["CREATE A (x) WITH comment = 'a; b -- c'", "CREATE B"]
    );
    assert_eq!(rest, "CREATE C");
}

#[test]
fn every_statement_ends_with_a_semicolon() {
    let (stmts, rest) = statements(CQL_SCHEMA);
    assert!(
        rest.is_empty(),
        "text after the last ';' (a statement without one?): {rest:?}"
    );
    assert!(
        stmts.len() >= 9,
        "expected the type and eight tables, found {} statements",
        stmts.len()
    );
    for s in &stmts {
        assert!(!s.is_empty(), "an empty statement (';;')");
        assert!(s.starts_with("CREATE "), "not a CREATE statement: {s:.60}");
        // `karpoosheh migrate` applies the file on every start.
        assert!(s.contains("IF NOT EXISTS"), "not idempotent: {s:.60}");
        // The keyspace is the session's, chosen by configuration.
        assert!(
            !s.contains("karpoosheh."),
            "a keyspace-qualified name: {s:.60}"
        );
    }
}

#[test]
fn every_table_is_created() {
    let (stmts, _) = statements(CQL_SCHEMA);
    for table in [
        "mailbox_notices",
        "notices_by_tracking",
        "agency_refs",
        "rejections",
        "dead_letters",
        "timers",
        "deliveries",
        "confirmations",
    ] {
        let create = format!("CREATE TABLE IF NOT EXISTS {table} (");
        assert!(
            stmts.iter().any(|s| s.starts_with(&create)),
            "no `{create}` statement"
        );
    }
}

#[test]
fn partition_keys_are_bounded() {
    let (stmts, _) = statements(CQL_SCHEMA);
    let table = |name: &str| {
        stmts
            .iter()
            .find(|s| s.starts_with(&format!("CREATE TABLE IF NOT EXISTS {name} (")))
            .unwrap_or_else(|| panic!("no table {name}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(table("mailbox_notices").contains("PRIMARY KEY ((mailbox_id, month), tracking_code)"));
    assert!(table("mailbox_notices").contains("CLUSTERING ORDER BY (tracking_code DESC)"));
    assert!(table("notices_by_tracking").contains("tracking_code bigint PRIMARY KEY"));
    assert!(table("agency_refs").contains("PRIMARY KEY ((agency, reference))"));
    assert!(table("timers").contains("PRIMARY KEY ((shard, due_bucket), due_at, tracking_code"));
    for traffic in ["rejections", "dead_letters"] {
        assert!(
            table(traffic).contains("default_time_to_live = 31536000"),
            "{traffic} has no retention TTL"
        );
    }
}
