//! The engine's floors, checked: every module imports only modules of a
//! lower floor (docs/architecture.md draws them). Where a floor works with
//! something built higher up, it takes a trait object the node hands it:
//! the pipeline a `Box<dyn Source>` and `Box<dyn Sink>`s, the scheduler an
//! `Arc<dyn Notify>` and an `Arc<dyn Registry>`. `anyhow` is for the node
//! and the binary only.
//!
//! The check reads the sources as text: every path to another top-level
//! module (`crate::x`, a macro's `$crate::x`, or `super::x` from a file
//! whose `super` is the crate root), outside comments, literals and test
//! code, in every file of a module's folder.

use std::path::{Path, PathBuf};

/// The floors, lowest first. A module may name only modules before it.
const FLOORS: &[&str] = &[
    // Records and the small shared pieces: depend on nothing in the crate.
    "model",
    "secret",
    "internal_events",
    "process_metrics",
    "health",
    "reload",
    // Adapters and their configuration, by role.
    "agencies",
    "evidence",
    "identity",
    "kafka",
    "store",
    "audit",
    "channel",
    "documents",
    "status",
    "http",
    "source",
    "sink",
    // The two engines of a node: ingest and the article-29 follow-up.
    "pipeline",
    "delivery",
    // The inbox API: reads the store, writes through the scheduler.
    "inbox",
    // The operators' endpoint: the store's reads for a running node.
    "operator",
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

/// The text with comments removed and string and character literals
/// emptied (newlines kept), so that neither a brace in a literal nor a
/// path in a comment is read as code.
fn strip(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut it = text.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '/' if it.peek() == Some(&'/') => {
                for c in it.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if it.peek() == Some(&'*') => {
                it.next();
                let mut prev = ' ';
                for c in it.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            // Raw strings: r"..." and r#"..."#.
            'r' if matches!(it.peek(), Some('"') | Some('#'))
                && !out.ends_with(|p: char| p.is_alphanumeric() || p == '_') =>
            {
                let mut hashes = 0;
                while it.peek() == Some(&'#') {
                    it.next();
                    hashes += 1;
                }
                if it.next() != Some('"') {
                    continue;
                }
                out.push_str("\"\"");
                let mut closing = 0;
                let mut in_quote = false;
                for c in it.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    if in_quote && c == '#' {
                        closing += 1;
                    } else {
                        in_quote = c == '"';
                        closing = 0;
                    }
                    if in_quote && hashes == 0 || closing == hashes && hashes > 0 {
                        break;
                    }
                }
            }
            '"' => {
                out.push_str("\"\"");
                let mut escaped = false;
                for c in it.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
            }
            // A character literal ('{', '"', '\''), not a lifetime ('a).
            '\'' => {
                let rest: String = it.clone().take(4).collect();
                let len = if let Some(escaped) = rest.strip_prefix('\\') {
                    escaped.find('\'').map(|i| i + 2)
                } else if rest.chars().nth(1) == Some('\'') {
                    Some(rest.chars().next().map_or(1, char::len_utf8) + 1)
                } else {
                    None
                };
                match len {
                    Some(n) => {
                        out.push_str("' '");
                        for _ in 0..rest[..n].chars().count() {
                            it.next();
                        }
                    }
                    None => out.push('\''),
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// The code of a file without comments, literals and test code: test
/// files, and every `#[cfg(test)]` item (a test module, a test-only
/// function or re-export) to the end of its braces or its `;`.
fn production_code(path: &Path, text: &str) -> String {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    // Declared `#[cfg(test)] mod tests;` / `mod faulty;` where they are used.
    if name == "tests.rs" || name == "faulty.rs" || name == "layers.rs" {
        return String::new();
    }
    let stripped = strip(text);
    let lines: Vec<&str> = stripped.lines().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim_start();
        if let Some(rest) = l.strip_prefix("#[cfg(test)]") {
            // The item may start on the attribute's line or the next.
            let mut depth = 0i32;
            let mut first = Some(rest);
            i += 1;
            loop {
                let code = match first.take() {
                    Some(r) if !r.trim().is_empty() => r,
                    Some(_) => continue,
                    None if i < lines.len() => {
                        i += 1;
                        lines[i - 1]
                    }
                    None => break,
                };
                depth += code.matches('{').count() as i32 - code.matches('}').count() as i32;
                if depth <= 0 && (code.contains('}') || code.trim_end().ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        out.push_str(l);
        out.push('\n');
        i += 1;
    }
    out
}

/// The first names in a `use` tree's braces (`{a::b, c, d::{e, f}}` gives
/// a, c, d), reading from just after the `{`.
fn braced_names(body: &str, found: &mut Vec<String>) {
    let mut depth = 0;
    let mut item = String::new();
    for c in body.chars() {
        match c {
            '{' => {
                depth += 1;
                item.push(c);
            }
            '}' if depth == 0 => break,
            '}' => {
                depth -= 1;
                item.push(c);
            }
            ',' if depth == 0 => {
                push_first(&item, found);
                item.clear();
            }
            c => item.push(c),
        }
    }
    push_first(&item, found);
}

fn push_first(item: &str, found: &mut Vec<String>) {
    let name = item.trim().split("::").next().unwrap_or("").trim();
    if !name.is_empty() && name != "self" {
        found.push(name.to_owned());
    }
}

/// The top-level modules a piece of code names: through `crate::` (and a
/// macro's `$crate::`), and through as many `super::` as lead from the
/// file's module (`depth` deep) up to the crate root.
fn named_modules(code: &str, depth: usize) -> Vec<String> {
    let mut found = Vec::new();
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let before = code[..i].chars().next_back();
        let at_path_start = !before.is_some_and(|c| ident(c) || c == ':');
        let after_root = if rest.starts_with("crate::") && at_path_start {
            Some(&rest["crate::".len()..])
        } else if rest.starts_with("super::") && at_path_start {
            let mut k = 0;
            let mut r = rest;
            while let Some(next) = r.strip_prefix("super::") {
                k += 1;
                r = next;
            }
            i += rest.len() - r.len() - 1;
            (k >= depth).then_some(r)
        } else {
            None
        };
        if let Some(r) = after_root {
            if let Some(body) = r.strip_prefix('{') {
                braced_names(body, &mut found);
            } else {
                let end = r.find(|c: char| !ident(c)).unwrap_or(r.len());
                if end > 0 {
                    found.push(r[..end].to_owned());
                }
            }
        }
        i += 1;
        while i < code.len() && !code.is_char_boundary(i) {
            i += 1;
        }
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
        // How deep the file's module is: `x.rs` and `x/mod.rs` 1, `x/y.rs` 2.
        let parts = rel.components().count();
        let depth = if rel.ends_with("mod.rs") {
            parts - 1
        } else {
            parts
        };
        for name in named_modules(&code, depth) {
            if name == top || EXTERNAL.contains(&name.as_str()) {
                continue;
            }
            match FLOORS.iter().position(|f| *f == name) {
                Some(f) if f < floor => {}
                Some(_) => broken.push(format!(
                    "{}: `{top}` imports `{name}`, which is on its own floor or above",
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
    // Paths, nested braces, `super::` up to the root; comments, literals
    // and test code not.
    let code = production_code(
        Path::new("x.rs"),
        "use crate::store::Store;\n\
         use crate::{model::{Entry, Outcome}, health};\n\
         let x = crate::node::run; // crate::config\n\
         let s = \"crate::sink {\"; let c = '{';\n\
         use super::readers::x;\n\
         #[cfg(test)] fn only_in_tests() { crate::kafka::x(); }\n\
         #[cfg(test)]\n\
         mod tests {\n    use crate::config;\n    let t = \"}\";\n}\n\
         use crate::delivery;\n",
    );
    assert_eq!(
        named_modules(&code, 1),
        vec!["store", "model", "health", "node", "readers", "delivery"],
        "{code}"
    );
    // Two levels down, `super::` is the parent module and `super::super::` the root.
    assert_eq!(
        named_modules("use super::fjall::X; use super::super::node::Y;", 2),
        vec!["node"]
    );
}
