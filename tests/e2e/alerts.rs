//! The alert rules operators install (deploy/prometheus/): valid for
//! Prometheus, unit-tested with `promtool test rules`, every metric they
//! read one the engine emits, every alert with a severity and a runbook
//! entry that exists in docs/operations.md.

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

#[test]
fn every_alert_reads_real_metrics_and_has_a_runbook_entry() {
    let text = rules();
    let mut known: Vec<&str> = metric_names::every();
    known.extend(metric_names::KAFKA);
    known.extend(metric_names::IDENTITY);
    known.extend(metric_names::SCYLLA);
    // Every metric name in an expression (histograms by their series).
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
    assert!(used.len() > 20, "{used:?}");
    let unknown: Vec<_> = used
        .iter()
        .filter(|m| !known.contains(&m.as_str()))
        .collect();
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
