//! `karpoosheh demo` without a terminal, as CI and a newcomer run it: every
//! record accounted for, and the article-29 follow-up reaching an outcome
//! for every stored notice.

use karpoosheh_tests::run;

#[test]
fn demo_accounts_for_everything_and_serves_notices() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let out = run(
        &[
            "demo",
            "--notices",
            "4000",
            "--quiet",
            "--dir",
            data.to_str().unwrap(),
            "--set",
            "metrics.listen=\"127.0.0.1:0\"",
            "--set",
            "delivery.round_intervals=[\"0s\", \"3s\", \"3s\"]",
            "--set",
            "delivery.not_served_after=\"3s\"",
        ],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("all 4,000 records accounted for"),
        "{stdout}"
    );
    assert!(
        stdout.contains("every stored notice reached an outcome"),
        "the follow-up did not settle:\n{stdout}"
    );
    let count = |label: &str| -> u64 {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} line in:\n{stdout}"));
        line.trim_start()[label.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .replace(',', "")
            .parse()
            .unwrap()
    };
    let stored = count("stored ");
    let served = count("served ");
    let not_served = count("not served ");
    assert!(
        served > stored / 3,
        "simulated recipients confirm most notices: {served} of {stored}"
    );
    assert!(not_served > 0, "some are never confirmed twice");
    assert!(
        count("notifications ") >= served,
        "every served notice was notified"
    );
    // The legal history is there to inspect.
    let code_line = stdout
        .lines()
        .find(|l| l.contains("--data-dir") && l.contains(" notice "))
        .expect("an example notice command");
    let code = code_line.split_whitespace().last().unwrap();
    let shown = run(
        &["--data-dir", data.to_str().unwrap(), "notice", code],
        None,
    );
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{text}");
    assert!(text.contains("legal outcome"), "{text}");
}
