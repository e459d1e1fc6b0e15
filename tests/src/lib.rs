//! Helpers for the end-to-end tests: the real `karpoosheh` binary, built
//! on first use, and sample envelopes.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The `karpoosheh` binary of this workspace, built (debug) on first use.
pub fn karpoosheh_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "karpoosheh-engine",
                "--bin",
                "karpoosheh",
            ])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building karpoosheh failed");
        // target/debug/deps/e2e-… → target/debug/karpoosheh
        let exe = std::env::current_exe().expect("test exe path");
        let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
        let bin = dir.join("karpoosheh");
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
    .clone()
}

/// Runs `karpoosheh` with `args` and optional stdin.
pub fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut child = Command::new(karpoosheh_bin())
        .args(args)
        .env_remove("KARPOOSHEH_CONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn karpoosheh");
    if let Some(input) = stdin {
        let mut s = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = s.write_all(&input);
        });
    }
    child.wait_with_output().expect("karpoosheh output")
}

/// A valid national code made from `body` (the next valid one at or after it).
pub fn person(body: u32) -> String {
    (body..)
        .find_map(karpoosheh_schemas_person)
        .expect("valid code")
}

fn karpoosheh_schemas_person(body: u32) -> Option<String> {
    // The same rule as schemas::national_code_check_digit, restated here so
    // a bug there cannot hide itself in these tests.
    let d: Vec<u32> = format!("{body:09}")
        .bytes()
        .map(|b| (b - b'0') as u32)
        .collect();
    if d.len() != 9 {
        return None;
    }
    let s = (0..9).map(|i| d[i] * (10 - i as u32)).sum::<u32>() % 11;
    let c = if s < 2 { s } else { 11 - s };
    let code = format!("{body:09}{c}");
    let all_same = code.bytes().all(|b| b == code.as_bytes()[0]);
    let zero_serial = code.as_bytes()[3..9].iter().all(|&b| b == b'0');
    (!all_same && !zero_serial).then_some(code)
}

/// One envelope as JSON text.
pub fn envelope(agency: &str, reference: &str, recipient: &str, title: &str) -> String {
    serde_json::json!({
        "schema_version": 1,
        "agency": agency,
        "reference": reference,
        "recipient": recipient,
        "kind": "service_notice",
        "title": title,
        "body": "بدینوسیله به اطلاع می‌رساند پرونده شما در شعبه ۱۲ رسیدگی شد.",
        "life_event": "tax",
        "expires_at": "2031-01-01T00:00:00+03:30",
        "sent_at": "2026-11-23T09:00:00Z",
    })
    .to_string()
}

/// The `karpoosheh-monitor` binary of this workspace, built (debug) on first use.
pub fn monitor_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "karpoosheh-monitor",
                "--bin",
                "karpoosheh-monitor",
            ])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building karpoosheh-monitor failed");
        let exe = std::env::current_exe().expect("test exe path");
        let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
        let bin = dir.join("karpoosheh-monitor");
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
    .clone()
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
