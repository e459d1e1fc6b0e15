//! Helpers for the end-to-end tests: the real `karpoosheh` binary, built
//! on first use, and sample envelopes.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The `karpoosheh` binary of this workspace, built (debug) on first use.
pub fn karpoosheh_bin() -> PathBuf {
    workspace_bin("karpoosheh")
}

/// Builds the workspace's binaries once per test process, exactly as
/// `scripts/test` does first (so, there, a no-op): building one package
/// alone would resolve its dependencies' features differently and compile
/// them again, over a minute on two cores.
fn workspace_bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "--workspace", "--bins"]);
        // What cargo set for this test (its package, its crate): a build
        // script that watches one (ring: CARGO_MANIFEST_DIR) would see a
        // change and rebuild half the tree. Cargo's own settings stay.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("CARGO_PKG_")
                || k.starts_with("CARGO_MANIFEST_")
                || matches!(
                    &*k,
                    "CARGO_CRATE_NAME"
                        | "CARGO_BIN_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "CARGO_RUSTC_CURRENT_DIR"
                        | "OUT_DIR"
                )
            {
                build.env_remove(&*k);
            }
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "building the workspace's binaries failed");
    });
    // target/debug/deps/e2e-… → target/debug/<name>
    let exe = std::env::current_exe().expect("test exe path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join(name);
    assert!(bin.exists(), "{} missing after build", bin.display());
    bin
}

/// Runs `karpoosheh` with `args` and optional stdin.
pub fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut child = karpoosheh_command()
        .args(args)
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
    workspace_bin("karpoosheh-monitor")
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The test nodes' signing key (RFC 8032's first test key: public, so
/// never for real use), as the JWK file `evidence.key_file` names. Every
/// `karpoosheh` the tests start gets it through
/// `KARPOOSHEH__EVIDENCE__KEY_FILE` ([`run`], [`karpoosheh_command`]).
pub fn node_key_file() -> PathBuf {
    static FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("karpoosheh-test-node-{}.jwk", std::process::id()));
        std::fs::write(
            &path,
            format!(
                r#"{{"kty":"OKP","crv":"Ed25519","kid":"{NODE_KID}","x":"{NODE_PUBLIC_KEY}","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}}"#
            ),
        )
        .expect("writing the test node key");
        path
    })
    .clone()
}

/// The test nodes' key ID and public key (base64url).
pub const NODE_KID: &str = "test-node";
pub const NODE_PUBLIC_KEY: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

/// `karpoosheh` as the tests start it: no configuration file from the
/// environment, the test node key.
pub fn karpoosheh_command() -> Command {
    let mut c = Command::new(karpoosheh_bin());
    c.env_remove("KARPOOSHEH_CONFIG")
        .env("KARPOOSHEH__EVIDENCE__KEY_FILE", node_key_file());
    c
}

/// Python with the `cryptography` package, or None (the test says SKIPPED;
/// scripts/test installs it and sets KARPOOSHEH_REQUIRE_PYTHON=1, which
/// turns a missing one into a failure).
pub fn python_with_cryptography(test: &str) -> Option<&'static str> {
    let ok = std::process::Command::new("python3")
        .args([
            "-c",
            "import cryptography.hazmat.primitives.asymmetric.ed25519",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some("python3");
    }
    if std::env::var_os("KARPOOSHEH_REQUIRE_PYTHON").is_some() {
        panic!("{test}: python3 with the cryptography package is required (Debian: python3-cryptography)");
    }
    eprintln!("SKIPPED {test}: python3 with the cryptography package is not installed");
    None
}

pub fn python_script(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

/// Runs `cmd` with `input` on its stdin (written from a thread, so a
/// child that answers before it has read everything cannot deadlock it)
/// and returns what it printed.
pub fn pipe(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a piped child");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("child output");
    writer
        .join()
        .expect("stdin writer")
        .expect("writing the child's stdin");
    out
}

/// `agencies.file="…"` for `--set`: a registry approving the traffic
/// model's eight agencies, with `paused` suspended and `old-ministry`
/// dissolved (`karpoosheh ingest` requires its agency approved).
pub fn approved_agencies() -> String {
    static FILE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let path = FILE.get_or_init(|| {
        let path = std::env::temp_dir().join(format!(
            "karpoosheh-test-agencies-{}.toml",
            std::process::id()
        ));
        let mut text = String::new();
        for a in [
            "tax",
            "social-security",
            "judiciary",
            "utilities",
            "civil-registry",
            "traffic-police",
            "municipality",
            "insurance",
        ] {
            text.push_str(&format!("[agency.{a}]\nstatus = \"approved\"\n"));
        }
        text.push_str("[agency.paused]\nstatus = \"suspended\"\n");
        text.push_str("[agency.old-ministry]\nstatus = \"dissolved\"\n");
        std::fs::write(&path, text).expect("write the test agency registry");
        path
    });
    format!("agencies.file={:?}", path.display().to_string())
}
