//! The engine's floors, checked: every module imports only modules of a
//! lower floor (docs/architecture.md draws them). A module that needs
//! something from above owns a trait for it instead (the scheduler's
//! `Notify`, the pipeline's `Source` and `Sink`), and the node wires the
//! implementation in. `anyhow` is for the node and the binary only.
//!
//! The check reads the sources as text: every `crate::<module>` path
//! outside comments and test code, in every file of a module's folder.

use std::path::{Path, PathBuf};

/// The floors, lowest first. A module may name only modules before it.
const FLOORS: &[&str] = &[
    // Records and the small shared pieces: depend on nothing in the crate.
    "model",
    "secret",
    "internal_events",
    "process_metrics",
    "health",
    // Adapters and their configuration, by role.
    "agencies",
    "kafka",
    "store",
    "channel",
    "http",
    "source",
    "sink",
    // The two engines of a node: ingest and the article-29 follow-up.
    "pipeline",
    "delivery",
    // Kafka consumers beside the notice source, feeding the follow-up.
    "readers",
    // The whole configuration, then the node that assembles everything.
    "config",
    "node",
];

/// Names reached through `crate::` that are not modules of this crate:
/// the wire contract's metric names, re-exported at the root.
const EXTERNAL: &[&str] = &["metric_names"];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("engine/src is readable") {
        let p = e.expect("directory entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its test modules and comments.
fn production_code(path: &Path, text: &str) -> String {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name == "tests.rs" || name == "faulty.rs" || name == "layers.rs" {
        return String::new();
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim_start();
        // A `#[cfg(test)]` item (a test module, a test-only function or
        // re-export) is skipped to its end: the braces it opens balanced.
        if l.starts_with("#[cfg(test)]") {
            i += 1;
            let mut depth = 0i32;
            while i < lines.len() {
                let code = lines[i].split("//").next().unwrap_or("");
                depth += code.matches('{').count() as i32 - code.matches('}').count() as i32;
                i += 1;
                if depth <= 0 && (code.contains('}') || code.trim_end().ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        let code = l.split("//").next().unwrap_or("");
        out.push_str(code);
        out.push('\n');
        i += 1;
    }
    out
}

/// The modules a piece of code names through `crate::`.
fn named_modules(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        // `karpoosheh_engine::crate::` cannot occur; `$crate::` is a macro's.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let first = match rest.find(|c: char| !(c.is_alphanumeric() || c == '_')) {
            Some(end) => &rest[..end],
            None => rest,
        };
        if first.is_empty() {
            // `use crate::{a, b}`: every name in the braces.
            if let Some(body) = rest.strip_prefix('{') {
                let end = body.find('}').unwrap_or(body.len());
                for part in body[..end].split(',') {
                    let name = part.trim().split("::").next().unwrap_or("").trim();
                    if !name.is_empty() {
                        found.push(name.to_owned());
                    }
                }
            }
            continue;
        }
        found.push(first.to_owned());
    }
    found
}

#[test]
fn every_module_imports_only_lower_floors() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut broken = Vec::new();
    let mut seen_modules = std::collections::BTreeSet::new();
    for path in &files {
        let rel = path.strip_prefix(&src).expect("under src");
        let top = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or("")
            .trim_end_matches(".rs")
            .to_owned();
        // The crate's face and the binary sit above every floor.
        if top == "lib" || top == "main" || top == "layers" {
            continue;
        }
        seen_modules.insert(top.clone());
        let Some(floor) = FLOORS.iter().position(|f| *f == top) else {
            broken.push(format!(
                "{}: module `{top}` is on no floor; add it to FLOORS in layers.rs",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(path).expect("readable source");
        let code = production_code(path, &text);
        for name in named_modules(&code) {
            if name == top || EXTERNAL.contains(&name.as_str()) {
                continue;
            }
            match FLOORS.iter().position(|f| *f == name) {
                Some(f) if f < floor => {}
                Some(_) => broken.push(format!(
                    "{}: `{top}` imports `crate::{name}`, which is on its own floor or above",
                    rel.display()
                )),
                None => broken.push(format!(
                    "{}: `{top}` names `crate::{name}`, a root re-export: import it from its module",
                    rel.display()
                )),
            }
        }
        if (top != "node") && code.contains("anyhow") {
            broken.push(format!(
                "{}: `anyhow` outside the node: return a typed error that says what to do",
                rel.display()
            ));
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
    for f in FLOORS {
        assert!(
            seen_modules.contains(*f),
            "FLOORS names `{f}`, which is no module of engine/src: keep the list true"
        );
    }
}

#[test]
fn the_check_sees_what_it_checks() {
    // Paths, braces, nested braces' first names; comments and tests not.
    let code = production_code(
        Path::new("x.rs"),
        "use crate::store::Store;\nuse crate::{model::Entry, health};\nlet x = crate::node::run; // crate::config\n#[cfg(test)]\nmod tests {\n use crate::config;\n}\n",
    );
    assert_eq!(
        named_modules(&code),
        vec!["store", "model", "health", "node"],
        "{code}"
    );
}
