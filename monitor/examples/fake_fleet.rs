//! A fleet of fake engine nodes on loopback for measuring the monitor
//! (scripts/bench-monitor): each serves a real `karpoosheh demo` scrape
//! (monitor/fixtures/demo-24s.prom) widened to `--agencies` agencies, with
//! every counter and histogram count growing with time, so the monitor
//! does the work it does against a busy fleet. Loopback only; stops by
//! itself after `--seconds`.
//!
//!     cargo run --release -p karpoosheh-monitor --example fake_fleet -- \
//!         --nodes 8 --port 19600 --agencies 40 --seconds 300

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

const CAPTURE: &str = include_str!("../fixtures/demo-24s.prom");

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
}

/// The capture with `extra` more agencies (copies of `tax`'s series).
fn widen(extra: u64) -> Vec<(String, f64, bool)> {
    let mut counter = false;
    let mut out = Vec::new();
    // The capture was taken after ingest had finished; a busy node is ready.
    let mut capture = CAPTURE.replace("karpoosheh_ready 0", "karpoosheh_ready 1");
    // It predates the per-agency notification and confirmation counters:
    // one series per agency (and outcome), as an engine emits them.
    let agencies: Vec<&str> = CAPTURE
        .lines()
        .filter_map(|l| {
            l.strip_prefix("karpoosheh_notices_stored_total{agency=\"")?
                .split_once('"')
        })
        .map(|(agency, _)| agency)
        .collect();
    capture.push_str("\n# TYPE karpoosheh_agency_notifications_total counter\n");
    for agency in &agencies {
        for (outcome, v) in [("sent", 7000), ("failed", 120)] {
            capture.push_str(&format!(
                "karpoosheh_agency_notifications_total{{agency=\"{agency}\",outcome=\"{outcome}\"}} {v}\n"
            ));
        }
    }
    capture.push_str("\n# TYPE karpoosheh_agency_confirmations_total counter\n");
    for agency in &agencies {
        capture.push_str(&format!(
            "karpoosheh_agency_confirmations_total{{agency=\"{agency}\"}} 230\n"
        ));
    }
    for line in capture.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            counter = t.ends_with(" counter") || t.ends_with(" histogram");
        }
        let sample = !line.starts_with('#') && !line.is_empty();
        let Some((series, value)) = line.rsplit_once(' ').filter(|_| sample) else {
            out.push((line.to_owned(), f64::NAN, false));
            continue;
        };
        let v: f64 = value.parse().unwrap_or(0.0);
        // Counters, and histogram buckets, sums and counts, grow.
        let grows = counter
            || series.contains("_bucket")
            || series.ends_with("_sum")
            || series.ends_with("_count");
        out.push((series.to_owned(), v, grows));
        if series.contains("agency=\"tax\"") {
            for i in 0..extra {
                let s = series.replace("agency=\"tax\"", &format!("agency=\"agency-{i:03}\""));
                out.push((s, v * 0.3, grows));
            }
        }
    }
    out
}

fn render(lines: &[(String, f64, bool)], elapsed: f64, node: u64) -> String {
    // Each node at its own pace, all growing ~1% per second.
    let factor = 1.0 + elapsed * (0.01 + node as f64 * 0.001);
    let mut s = String::with_capacity(lines.len() * 80);
    for (series, v, grows) in lines {
        if v.is_nan() {
            s.push_str(series);
        } else {
            let v = if *grows { (v * factor).round() } else { *v };
            s.push_str(series);
            s.push(' ');
            s.push_str(&v.to_string());
        }
        s.push('\n');
    }
    s
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let nodes = arg(&args, "--nodes", 8);
    let port = arg(&args, "--port", 19600);
    let agencies = arg(&args, "--agencies", 40).saturating_sub(8);
    let seconds = arg(&args, "--seconds", 300);
    let lines = std::sync::Arc::new(widen(agencies));
    let start = Instant::now();
    let size = render(&lines, 0.0, 0).len();
    for n in 0..nodes {
        let listener = TcpListener::bind(("127.0.0.1", (port + n) as u16)).expect("bind loopback");
        let lines = lines.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let lines = lines.clone();
                std::thread::spawn(move || {
                    // Keep-alive: one connection, many scrapes (as the monitor does).
                    let mut buf = [0u8; 4096];
                    while let Ok(k) = conn.read(&mut buf) {
                        if k == 0 {
                            return;
                        }
                        let body = render(&lines, start.elapsed().as_secs_f64(), n);
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        );
                        if conn
                            .write_all(head.as_bytes())
                            .and_then(|_| conn.write_all(body.as_bytes()))
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
    }
    println!(
        "fake fleet: {nodes} nodes on 127.0.0.1:{port}..{}, {} agencies, {size} bytes per /metrics, for {seconds}s",
        port + nodes - 1,
        agencies + 8
    );
    std::thread::sleep(Duration::from_secs(seconds));
}
