//! What operators install from deploy/: the alert rules (valid for
//! Prometheus, unit-tested with `promtool test rules`, every alert with a
//! severity and a runbook entry in docs/operations.md) and the Grafana
//! dashboard (every query valid PromQL); every metric either reads is one
//! the engine emits (`metric_names`, whose lists the metrics tests prove
//! emitted).

use std::path::PathBuf;
use std::process::Command;

use karpoosheh_schemas::metric_names;

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

fn rules() -> String {
    std::fs::read_to_string(deploy().join("karpoosheh-alerts.yml")).unwrap()
}

/// `promtool`, or None (SKIPPED) unless KARPOOSHEH_REQUIRE_PROMTOOL is set
/// (scripts/test installs Debian's `prometheus` package and sets it).
fn promtool(test: &str) -> Option<&'static str> {
    if Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Some("promtool");
    }
    assert!(
        std::env::var_os("KARPOOSHEH_REQUIRE_PROMTOOL").is_none(),
        "promtool is not installed but KARPOOSHEH_REQUIRE_PROMTOOL is set"
    );
    eprintln!("SKIPPED {test}: promtool (Debian package prometheus) is not installed");
    None
}

#[test]
fn alert_rules_are_valid_and_their_unit_tests_pass() {
    let Some(promtool) = promtool("alert_rules_are_valid_and_their_unit_tests_pass") else {
        return;
    };
    for args in [
        ["check", "rules", "karpoosheh-alerts.yml"],
        ["test", "rules", "karpoosheh-alerts.test.yml"],
    ] {
        let out = Command::new(promtool)
            .args(args)
            .current_dir(deploy())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The metric names in `text` (histograms by their series' base name)
/// that the engine does not define, and how many names there were.
fn unknown_metrics(text: &str) -> (Vec<String>, usize) {
    let mut known: Vec<&str> = metric_names::every();
    known.extend(metric_names::KAFKA);
    known.extend(metric_names::IDENTITY);
    known.extend(metric_names::SCYLLA);
    let mut used = Vec::new();
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("karpoosheh_") || word.starts_with("process_") {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| word.strip_suffix(s))
                .unwrap_or(word);
            used.push(base.to_owned());
        }
    }
    used.sort();
    used.dedup();
    let n = used.len();
    let unknown = used
        .into_iter()
        .filter(|m| !known.contains(&m.as_str()))
        .collect();
    (unknown, n)
}

#[test]
fn every_alert_reads_real_metrics_and_has_a_runbook_entry() {
    let text = rules();
    let (unknown, used) = unknown_metrics(&text);
    assert!(used > 20, "{used}");
    assert!(
        unknown.is_empty(),
        "alert rules read metrics the engine does not emit: {unknown:?}"
    );

    let runbook = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md"),
    )
    .unwrap();
    let alerts: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 25, "{alerts:?}");
    for (i, alert) in alerts.iter().enumerate() {
        let block = text.split("- alert: ").nth(i + 1).unwrap();
        assert!(
            block.contains("severity: critical") || block.contains("severity: warning"),
            "{alert}: no severity"
        );
        let anchor = alert.to_ascii_lowercase();
        assert!(
            block.contains(&format!("runbook_url: docs/operations.md#{anchor}")),
            "{alert}: no runbook_url"
        );
        assert!(
            runbook.contains(&format!("\n#### {alert}\n")),
            "{alert}: no \"#### {alert}\" entry in docs/operations.md's alert runbook"
        );
    }
}

/// The Grafana dashboard: a dashboard Grafana can import (unique panel
/// IDs, every panel placed, a Prometheus data source variable), every
/// query valid PromQL (`promtool check rules` on them as recording rules)
/// over metrics the engine emits.
#[test]
fn the_grafana_dashboard_queries_real_metrics_in_valid_promql() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/karpoosheh.json");
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(d["uid"], "karpoosheh-overview");
    assert!(d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"));
    let panels = d["panels"].as_array().unwrap();
    let mut ids: Vec<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), panels.len(), "panel IDs are unique");
    let mut exprs = Vec::new();
    for p in panels {
        assert!(p["gridPos"]["w"].as_u64().is_some(), "{p}");
        if p["type"] != "row" {
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{}: no query", p["title"]);
            for t in targets {
                exprs.push(t["expr"].as_str().unwrap().to_owned());
            }
        }
    }
    assert!(exprs.len() >= 25, "{}", exprs.len());
    let (unknown, used) = unknown_metrics(&exprs.join("\n"));
    assert!(used >= 25, "{used}");
    assert!(
        unknown.is_empty(),
        "the dashboard reads metrics the engine does not emit: {unknown:?}"
    );
    let Some(promtool) = promtool("the_grafana_dashboard_queries_real_metrics_in_valid_promql")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        // Grafana's variables, as a query would be sent.
        let e = e.replace("$instance", ".*");
        rules += &format!(
            "      - record: dashboard_query_{i}\n        expr: {}\n",
            serde_json::to_string(&e).unwrap()
        );
    }
    std::fs::write(dir.path().join("dashboard.yml"), rules).unwrap();
    let out = Command::new(promtool)
        .args(["check", "rules", "dashboard.yml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
