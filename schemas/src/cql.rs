//! The ScyllaDB schema as numbered migrations, and a splitter that turns
//! a migration's text into the statements a driver executes one by one.

/// One schema migration: applied once, in `version` order, recorded in
/// the keyspace's `schema_migrations` table by `karpoosheh migrate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub cql: &'static str,
}

/// Every migration, oldest first. Append only: a released migration is
/// never edited (its checksum is recorded), a change is a new one.
pub const CQL_MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "001_init",
        cql: include_str!("../cql/001_init.cql"),
    },
    Migration {
        version: 2,
        name: "002_events",
        cql: include_str!("../cql/002_events.cql"),
    },
    Migration {
        version: 3,
        name: "003_audit",
        cql: include_str!("../cql/003_audit.cql"),
    },
    Migration {
        version: 4,
        name: "004_access",
        cql: include_str!("../cql/004_access.cql"),
    },
    Migration {
        version: 5,
        name: "005_sources",
        cql: include_str!("../cql/005_sources.cql"),
    },
    Migration {
        version: 6,
        name: "006_parked",
        cql: include_str!("../cql/006_parked.cql"),
    },
    Migration {
        version: 7,
        name: "007_quarantine",
        cql: include_str!("../cql/007_quarantine.cql"),
    },
    Migration {
        version: 8,
        name: "008_kept_sources",
        cql: include_str!("../cql/008_kept_sources.cql"),
    },
];

/// The schema version this build of the engine needs.
pub fn cql_schema_version() -> u32 {
    CQL_MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Splits CQL text into statements, each without its `;`. `--` comments
/// are dropped; `;` and `--` inside single-quoted strings are text (`''`
/// is an escaped quote). Text after the last `;` is an error: a statement
/// without its terminator.
pub fn cql_statements(cql: &str) -> Result<Vec<String>, String> {
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
            ';' if !in_string => {
                let s = std::mem::take(&mut cur).trim().to_owned();
                if s.is_empty() {
                    return Err("an empty statement (';;')".into());
                }
                stmts.push(s);
            }
            _ => cur.push(c),
        }
    }
    if in_string {
        return Err("an unterminated string literal".into());
    }
    let rest = cur.trim();
    if !rest.is_empty() {
        return Err(format!(
            "text after the last ';' (a statement without one?): {rest:.60}"
        ));
    }
    Ok(stmts)
}

/// A stable checksum of a migration's statements (FNV-1a over their
/// words, so comments and runs of whitespace may be edited).
pub fn cql_checksum(cql: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for s in cql_statements(cql).unwrap_or_default() {
        for b in s.split_whitespace().flat_map(|w| w.bytes().chain([b' '])) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= b';' as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
