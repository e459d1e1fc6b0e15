//! `karpoosheh-monitor` against real engines: what it reads is what they
//! emit (names, types, labels), and its plain mode, as a log would take it,
//! summarises a live demo and a node that does not answer.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use karpoosheh_monitor::{parse_metrics, reads, Emitter, Kind};
use karpoosheh_schemas::metric_names;
use karpoosheh_tests::{free_port, monitor_bin};

/// Every metric the monitor reads from every node is in `text` (a real
/// engine's /metrics after traffic and the article-29 follow-up), declared
/// with the type the monitor reads it as, carrying every label the monitor
/// groups by, and — for histograms — with buckets. Kafka-only metrics must
/// be in `metric_names::KAFKA`, which the Kafka end-to-end test proves
/// emitted by `karpoosheh run`.
pub fn assert_emits_what_the_monitor_reads(text: &str) {
    let expo = parse_metrics(text).expect("the engine's /metrics parses");
    assert_eq!(expo.errors, 0, "{:?}", expo.first_error);
    let mut problems = Vec::new();
    for r in reads() {
        if r.emitter == Emitter::Kafka {
            if !metric_names::KAFKA.contains(&r.name) {
                problems.push(format!(
                    "{}: Kafka-only but not in metric_names::KAFKA",
                    r.name
                ));
            }
            continue;
        }
        // Proved emitted by the demo's inbox API (tests/e2e/demo.rs).
        if r.emitter == Emitter::Inbox {
            if !metric_names::IDENTITY.contains(&r.name) {
                problems.push(format!(
                    "{}: inbox-only but not in metric_names::IDENTITY",
                    r.name
                ));
            }
            continue;
        }
        let Some(family) = expo.family(r.name) else {
            problems.push(format!("{}: not emitted", r.name));
            continue;
        };
        if family.kind != r.kind.prometheus_type() {
            problems.push(format!(
                "{}: declared {}, the monitor reads a {}",
                r.name,
                family.kind,
                r.kind.prometheus_type()
            ));
        }
        // Whatever was counted must carry the labels the monitor groups
        // by (a zero-initialised unlabelled series is fine: nothing to
        // attribute).
        let counted: Vec<_> = family.samples.iter().filter(|s| s.value != 0.0).collect();
        for label in r.labels {
            if let Some(s) = counted
                .iter()
                .find(|s| s.label(label).is_none_or(|v| v.is_empty()))
            {
                problems.push(format!(
                    "{}: a counted sample lacks label {label:?}: {:?}",
                    r.name, s.labels
                ));
            }
        }
        if r.kind == Kind::Histogram
            && !family
                .samples
                .iter()
                .any(|s| s.suffix == "_bucket" && s.label("le") == Some("+Inf"))
        {
            problems.push(format!(
                "{}: no buckets (a summary has no window quantile)",
                r.name
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the monitor would read nothing for:\n{}",
        problems.join("\n")
    );
}

/// A `karpoosheh demo` offering traffic slowly enough to be watched, with
/// its metrics on a known port; killed when dropped.
struct Demo {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Demo {
    fn start() -> Demo {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = karpoosheh_tests::karpoosheh_command()
            // Far more than a test watches (it is killed when dropped): on a
            // busy machine the first scrape can come late, and an ingest
            // that had already ended would show no traffic. No follow-up:
            // these tests watch ingest, and it would only load the machine.
            .args(["demo", "--notices", "20000000", "--rate", "4000"])
            .args(["--no-follow-up", "--no-dashboard", "--dir"])
            .arg(dir.path().join("demo"))
            .args(["--set", &format!("metrics.listen=\"127.0.0.1:{port}\"")])
            // Small chunks: records arrive every 64 ms, not every half second.
            .args(["--set", "pipeline.decode_chunk=256"])
            .env_remove("KARPOOSHEH_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the demo");
        let demo = Demo {
            child,
            port,
            _dir: dir,
        };
        // Up, and reading records (a debug build on a busy machine takes a while).
        let deadline = Instant::now() + Duration::from_secs(120);
        while !demo.receiving() {
            assert!(
                Instant::now() < deadline,
                "the demo's metrics never showed traffic"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        demo
    }

    fn receiving(&self) -> bool {
        use std::io::Write;
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        let body = text.split_once("\r\n\r\n").map_or("", |b| b.1);
        parse_metrics(body)
            .ok()
            .and_then(|e| {
                let f = e.family(metric_names::RECORDS_RECEIVED)?;
                Some(f.samples.iter().map(|s| s.value).sum::<f64>() > 0.0)
            })
            .unwrap_or(false)
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn once_summarises_a_live_demo_and_a_node_that_does_not_answer() {
    let demo = Demo::start();
    let dead = free_port();
    let out = Command::new(monitor_bin())
        // Records arrive in chunks of 256 (every 64 ms at 4,000/s): any
        // window the monitor can compute holds several, even when a loaded
        // machine delays a few.
        .args(["--once", "--interval", "1s", "--rate-window", "5s"])
        .arg(format!("http://127.0.0.1:{}/metrics", demo.port))
        .arg(format!("127.0.0.1:{dead}"))
        .output()
        .expect("run the monitor");
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{line}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(line.lines().count(), 1, "one line: {line}");
    assert!(line.contains("fleet 1/2 up"), "{line}");
    let received = line
        .split("received ")
        .nth(1)
        .and_then(|s| s.split("/s").next())
        .unwrap_or("–");
    let rate: f64 = received.replace(',', "").parse().unwrap_or(0.0);
    assert!(
        rate > 0.0,
        "the demo offers 4,000/s; the monitor saw {received}: {line}"
    );
    assert!(
        line.contains(&format!("127.0.0.1:{dead} down"))
            || line.contains(&format!("127.0.0.1:{dead}")),
        "the dead node is named: {line}"
    );
}

#[test]
fn without_a_terminal_it_logs_one_line_per_interval() {
    let demo = Demo::start();
    let mut child = Command::new(monitor_bin())
        .args(["--interval", "500ms", "--rate-window", "1s"])
        .arg(format!("127.0.0.1:{}", demo.port))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the monitor");
    std::thread::sleep(Duration::from_millis(2800));
    let _ = child.kill();
    let mut text = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let _ = child.wait();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        (4..=7).contains(&lines.len()),
        "about one line per 500ms: {text}"
    );
    for l in &lines {
        assert!(l.contains("fleet 1/1 up") && l.contains("| alerts"), "{l}");
        assert!(
            !l.contains('\x1b'),
            "plain lines carry no escape codes: {l:?}"
        );
    }
}

#[test]
fn a_bad_configuration_is_refused_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("monitor.toml");
    std::fs::write(&cfg, "[alerts]\nrejection_ratio = 0.1\n").unwrap();
    let out = Command::new(monitor_bin())
        .arg("--config")
        .arg(&cfg)
        .arg("--once")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("rejection_ratio"), "{err}");
}
