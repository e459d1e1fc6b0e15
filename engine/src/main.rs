//! `karpoosheh`: the engine and the operators' commands.

// The pipeline allocates and frees millions of small buffers across
// threads. jemalloc, side by side with mimalloc (which measured 1.14x the
// ingest rate of glibc malloc), held the demo's peak RSS 15-40 MB lower at
// 1M and 5M notices and ingested 5-8% faster (BENCHMARKS.md, "Memory").
// `--features dhat-heap` swaps it for dhat's profiling allocator (where
// the heap is at its peak), and `--features jemalloc-prof` builds
// jemalloc's sampling heap profiler in, which runs at nearly full speed.
// jemalloc's own settings come from `_RJEM_MALLOC_CONF` (operations.md).
#[cfg(not(feature = "dhat-heap"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static GLOBAL: dhat::Alloc = dhat::Alloc;

use std::io::{BufRead, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use karpoosheh_engine::demo::{self, DemoOptions};
use karpoosheh_engine::{
    hex, ingest, open_store_read_only, render_chain, render_history, Config, LogFormat,
};
use karpoosheh_schemas::{AgencyId, MailboxKind, TrackingCode};

#[derive(Parser)]
#[command(
    name = "karpoosheh",
    version,
    about = "Karpoosheh: the delivery engine of the national e-inbox",
    max_term_width = 100
)]
struct Cli {
    /// Configuration file (TOML). Without one, defaults apply; see docs/configuration.md.
    #[arg(long, global = true, env = "KARPOOSHEH_CONFIG")]
    config: Option<PathBuf>,
    /// Override one option, e.g. --set pipeline.shards=8 (repeatable; beats file and environment).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Shortcut for --set store.path=DIR.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the real engine on the embedded store, fed by the load generator, with live progress.
    Demo {
        /// Notices to generate.
        #[arg(long, default_value_t = 1_000_000)]
        notices: u64,
        /// Share of deliberately bad input.
        #[arg(long, default_value_t = 0.03)]
        bad_ratio: f64,
        /// Share of exact re-sends.
        #[arg(long, default_value_t = 0.01)]
        duplicate_ratio: f64,
        /// Offer at most this many records per second (0: as fast as the engine takes them).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Generator seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Store directory (default ./karpoosheh-demo; a previous demo's is wiped).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// No progress lines.
        #[arg(long)]
        quiet: bool,
        /// Only ingest: skip the article-29 follow-up (rounds, confirmations, served).
        #[arg(long)]
        no_follow_up: bool,
        /// Plain progress lines even on a terminal, instead of the dashboard.
        #[arg(long)]
        no_dashboard: bool,
        /// After ingest, wait at most this long for every notice's legal outcome.
        #[arg(long, value_name = "DURATION",
              default_value_t = karpoosheh_schemas::HumanDuration(DemoOptions::default().follow_up_timeout))]
        follow_up_timeout: karpoosheh_schemas::HumanDuration,
    },
    /// Run the engine: consume the agencies' Kafka topics until SIGTERM/SIGINT
    /// (see docs/operations.md and the [kafka] and [agencies] options).
    Run,
    /// Ingest an NDJSON batch file (one notice envelope per line) into the store.
    Ingest {
        /// The NDJSON file.
        #[arg(long)]
        file: PathBuf,
        /// The agency the file is sent for: every envelope must name it, and
        /// it must be approved in the agency registry (`agencies.file`).
        #[arg(long)]
        agency: String,
        /// Write a receipt per record (NDJSON) to this file.
        #[arg(long)]
        receipts: Option<PathBuf>,
    },
    /// List a mailbox, newest first.
    Mailbox {
        /// National code (10 digits) or legal national ID (11 digits), or <id>@iran.
        id: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Show notices older than this tracking code (the "next" of a previous page).
        #[arg(long)]
        before: Option<String>,
        /// One JSON object per notice.
        #[arg(long)]
        json: bool,
    },
    /// Show one notice by tracking code.
    Notice {
        tracking_code: String,
        #[arg(long)]
        json: bool,
    },
    /// What happened to an agency's notice, by the agency's reference: its
    /// tracking code, lane and state, every receipt in order (with the
    /// receipt IDs the agency got), and the rejections kept for the
    /// reference. Exits 1 when the engine knows nothing of it.
    Status {
        /// The agency ID.
        #[arg(long)]
        agency: String,
        /// The agency's reference, as sent.
        #[arg(long)]
        reference: String,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Show the rejections kept for an agency (or unattributed ones).
    Rejections {
        /// Agency ID; omit for rejections that could not be attributed to one.
        #[arg(long)]
        agency: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Show rejections after this ID.
        #[arg(long, conflicts_with = "latest")]
        after: Option<u64>,
        /// The newest first, instead of the oldest after --after.
        #[arg(long)]
        latest: bool,
    },
    /// Show records that could not be decoded at all.
    DeadLetters {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        after: Option<u64>,
    },
    /// Show stored records that could not be read back and were set aside
    /// (quarantined) so that they block nothing, oldest first: one JSON
    /// object per line, with the error and the stored bytes.
    Quarantine {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show this node's parking lots: agencies whose receipt topic refused
    /// receipts, with how many wait and since when (one JSON object per line).
    Parked,
    /// The embedded store itself.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Check national codes / legal IDs: arguments, or one per line on stdin.
    /// Prints `ID<TAB>valid<TAB>person|legal` or `ID<TAB>invalid<TAB>reason`.
    CheckId {
        ids: Vec<String>,
        /// Add the human explanation as a fourth column.
        #[arg(long)]
        explain: bool,
        /// Exit with status 1 if any ID is invalid.
        #[arg(long)]
        strict: bool,
    },
    /// Print the effective configuration (defaults, file, environment, flags) as TOML.
    Config,
    /// A mailbox's traffic data, newest first: every inbox API call that
    /// touched it (who, when, what, which app), kept 186 days.
    AccessLog {
        /// The mailbox: a national code or legal national ID.
        mailbox: String,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Check a bearer token of the identity provider as the node would
    /// (`[identity]`): prints the session it names (the subject masked),
    /// or why it is refused, with the reason code; exits 1 when refused.
    TokenCheck {
        /// The token; `-` or nothing reads it from stdin.
        token: Option<String>,
    },
    /// Print shell completions for `karpoosheh` (bash, zsh, fish, elvish,
    /// powershell), e.g. `karpoosheh completions bash >
    /// /usr/share/bash-completion/completions/karpoosheh`.
    Completions { shell: clap_complete::Shell },
    /// Print the manual page, karpoosheh(1), in roff: `karpoosheh manpage
    /// > karpoosheh.1; man ./karpoosheh.1`.
    Manpage,
    /// Print a notice's proof bundle: its content hash, its events in order
    /// with their chain, the node's signature over the chain's last event
    /// (evidence.key_file) with the public key, and each event's signed
    /// batch and place in the node's audit log under its last tree head.
    /// Check it with `verify`.
    Proof {
        tracking_code: String,
        /// Write it to this file instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Check this node's audit log in its store against the last tree head
    /// it signed (what the node does at start) and print the log's size and
    /// that head; `--json` prints the head as published, to publish it out
    /// of band. Exits 1 when the log no longer matches the head.
    AuditLog {
        #[arg(long)]
        json: bool,
    },
    /// Check a proof bundle offline, with public keys only, and say in plain
    /// words what holds and what does not; exits 1 if anything does not.
    Verify {
        /// The bundle (from `karpoosheh proof`).
        bundle: PathBuf,
        /// The node keys you trust (a JWK Set, e.g. from the node's
        /// /.well-known/jwks.json); without it the bundle's own key is used
        /// and the report says so.
        #[arg(long, value_name = "FILE")]
        jwks: Option<PathBuf>,
        /// The notice's JSON, to check it is the document accepted.
        #[arg(long, value_name = "FILE")]
        document: Option<PathBuf>,
    },
    /// Is a printed notice genuine (art. 15)? From the tracking code and the
    /// verification code on the paper: prints the agency, kind and issue
    /// date, or says it is not; exits 1 when it is not (or the document
    /// does not match). A running node answers the same at
    /// /v1/documents/<tracking-code>/<verification-code>.
    VerifyDocument {
        tracking_code: String,
        verification_code: String,
        /// The electronic document (the notice's JSON) to compare too.
        #[arg(long, value_name = "FILE")]
        document: Option<PathBuf>,
    },
    /// An agency's receipts: send them again from the store
    /// (docs/operations.md, "Replaying an agency's receipts").
    Receipts {
        #[command(subcommand)]
        action: ReceiptsCommand,
    },
    /// Ed25519 keys: make a key pair, list the trusted keys, sign a message
    /// (docs/operations.md, "Trust file and keys").
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
    /// Create the ScyllaDB keyspace (NetworkTopologyStrategy with
    /// scylla.replication) and apply the schema migrations it lacks, in order.
    /// Engines never do this themselves unless scylla.migrate_on_start is set.
    Migrate {
        /// Print the CQL instead (keyspace and every migration), for a DBA to
        /// review or apply; connects to nothing.
        #[arg(long)]
        print: bool,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Read every record of the embedded store back (fjall checks every
    /// block), decode the engine's own records, and check the high-water
    /// marks: says what is wrong and where, changes nothing. Exit status 1
    /// if anything is. Run it on a stopped node.
    Check {
        /// How many problems to describe.
        #[arg(long, default_value_t = 20)]
        show: usize,
    },
}

#[derive(Subcommand)]
enum ReceiptsCommand {
    /// Re-send an agency's receipts of events from --since to --until (the
    /// engine's times; until defaults to now), with the same receipt IDs
    /// and chain links, sealed in new signed batches, to its receipts
    /// topic. Through a running node's operators' endpoint when
    /// operator.listen is set (its outbox sends them); otherwise into the
    /// store's outbox, sent when a node next runs on it.
    Replay {
        /// The agency ID.
        #[arg(long)]
        agency: String,
        /// RFC 3339, e.g. 2026-12-01T00:00:00+03:30.
        #[arg(long)]
        since: String,
        /// RFC 3339; default now.
        #[arg(long)]
        until: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a new Ed25519 key pair: the private JWK goes to --out (mode 0600,
    /// never overwritten); the public key is printed as a trust-file entry.
    Generate {
        /// The key ID (1-64 of A-Z a-z 0-9 . _ -), unique in the trust file;
        /// a date in it makes rotation readable, e.g. inbox-web-2026-12.
        #[arg(long)]
        kid: String,
        /// Where to write the private key (a JSON Web Key).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// List the trust file's signers and keys (trust.file, or --file).
    List {
        /// The trust file to read instead of trust.file.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Print the active keys as a JSON Web Key Set (RFC 7517, RFC 8037).
        #[arg(long)]
        jwks: bool,
        /// Print this node's receipt-signing public key (evidence.key_file)
        /// as a JSON Web Key Set instead: what agencies verify receipts with.
        #[arg(long, conflicts_with_all = ["file", "jwks"])]
        node: bool,
    },
    /// Sign messages for a topic that takes signed input: one JSON message
    /// per line in (FILE or stdin), one signed message (JWS) per line out.
    Sign {
        /// The private key file (from `keys generate`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// What the messages are: confirmation or profile.
        #[arg(long)]
        kind: String,
        /// NDJSON input; stdin when absent.
        input: Option<PathBuf>,
    },
    /// Check signed messages against the trust file (trust.file, or --file),
    /// one per line (FILE or stdin): prints `ok<TAB>signer<TAB>kid<TAB>payload`
    /// or `refused<TAB>reason<TAB>message` per line; exits 1 if any is refused.
    Verify {
        /// What the messages must be: confirmation or profile.
        #[arg(long)]
        kind: String,
        /// The trust file to read instead of trust.file.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// NDJSON input; stdin when absent.
        input: Option<PathBuf>,
    },
}

/// Where a notice's events are in the audit log that carried their
/// receipts, under the log's last signed tree head; `None` when no head
/// covers them yet.
fn audit_proof(
    store: &dyn karpoosheh_engine::Store,
    code: TrackingCode,
    events: &[karpoosheh_engine::StoredEvent],
) -> Result<Option<karpoosheh_engine::proof::AuditProof>> {
    // Events whose batch cannot be found (an index entry left by a
    // re-sent receipt, a store that lost one) are left out: `verify` then
    // says they are not under the head, and the rest still count.
    let mut placed = Vec::new();
    let mut log = None;
    for e in events {
        let Ok(Some((l, index))) = store.event_entry(code, e.seq) else {
            continue;
        };
        if *log.get_or_insert(l) != l {
            continue;
        }
        if let Ok(Some(entry)) = store.log_entry(l, index) {
            placed.push((e.seq, e.hash, entry));
        }
    }
    let Some(log) = log else { return Ok(None) };
    // The tree, checked against the last head as the node does at start.
    let (tree, head) = karpoosheh_engine::AuditLog::check(store, log)?;
    let Some(head) = head else { return Ok(None) };
    Ok(Some(karpoosheh_engine::proof::audit_proof(
        &placed, &tree, &head.head,
    )))
}

fn keys_command(cfg: &Config, action: KeysCommand) -> Result<()> {
    use karpoosheh_engine::keys::SigningKey;
    use karpoosheh_engine::{jws, trust, SignedKind};
    match action {
        KeysCommand::Generate { kid, out } => {
            let key = SigningKey::generate(&kid)?;
            key.save(&out)?;
            let public = key.public_jwk();
            eprintln!(
                "karpoosheh: private key written to {} (keep it secret; only its owner signs with it)",
                out.display()
            );
            println!("# Add under the signer's [signer.<id>] table in the trust file:");
            println!("[[signer.<id>.keys]]");
            println!("kid = {}", toml_string(&public.kid));
            println!("public_key = {}", toml_string(&public.x));
            println!("status = \"active\"");
            Ok(())
        }
        KeysCommand::List { node: true, .. } => {
            if cfg.evidence.key_file.as_os_str().is_empty() {
                bail!("no node key: set evidence.key_file");
            }
            let key = SigningKey::load(&cfg.evidence.key_file)?;
            let set = serde_json::json!({ "keys": [key.public_jwk()] });
            println!("{}", serde_json::to_string_pretty(&set)?);
            Ok(())
        }
        KeysCommand::List { file, jwks, .. } => {
            let path = file.unwrap_or_else(|| cfg.trust.file.clone());
            if path.as_os_str().is_empty() {
                bail!("no trust file: pass --file or set trust.file");
            }
            let keys = trust::load_file(&path)?;
            if jwks {
                let set: Vec<_> = keys
                    .iter()
                    .filter(|k| {
                        k.status == trust::KeyStatus::Active
                            && k.signer_status == trust::SignerStatus::Active
                    })
                    .map(|k| {
                        serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": k.kid, "x": k.public_key, "use": "sig", "alg": "EdDSA"})
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "keys": set }))?
                );
                return Ok(());
            }
            println!("SIGNER\tSIGNER_STATUS\tMAY_SIGN\tKID\tKEY_STATUS\tPUBLIC_KEY");
            for k in keys {
                let may: Vec<_> = k.may_sign.iter().map(|m| m.as_str()).collect();
                println!(
                    "{}\t{:?}\t{}\t{}\t{:?}\t{}",
                    k.signer,
                    k.signer_status,
                    may.join(","),
                    k.kid,
                    k.status,
                    k.public_key
                );
            }
            Ok(())
        }
        KeysCommand::Sign { key, kind, input } => {
            let kind = SignedKind::parse(&kind)
                .ok_or_else(|| anyhow::anyhow!("--kind {kind:?}: confirmation or profile"))?;
            let key = SigningKey::load(&key)?;
            let reader: Box<dyn BufRead> = match input {
                Some(p) => Box::new(std::io::BufReader::new(std::fs::File::open(p)?)),
                None => Box::new(std::io::stdin().lock()),
            };
            let mut out = BufWriter::new(std::io::stdout().lock());
            for (n, line) in reader.lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                if serde_json::from_str::<serde_json::Value>(&line).is_err() {
                    bail!("line {}: not JSON; nothing after it was signed", n + 1);
                }
                out.write_all(&jws::sign(kind, line.trim().as_bytes(), &key))?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            Ok(())
        }
        KeysCommand::Verify { kind, file, input } => {
            let kind = SignedKind::parse(&kind)
                .ok_or_else(|| anyhow::anyhow!("--kind {kind:?}: confirmation or profile"))?;
            let path = file.unwrap_or_else(|| cfg.trust.file.clone());
            if path.as_os_str().is_empty() {
                bail!("no trust file: pass --file or set trust.file");
            }
            let trust = trust::Trust::fixed(&trust::load_file(&path)?);
            let reader: Box<dyn BufRead> = match input {
                Some(p) => Box::new(std::io::BufReader::new(std::fs::File::open(p)?)),
                None => Box::new(std::io::stdin().lock()),
            };
            let mut out = BufWriter::new(std::io::stdout().lock());
            let mut refused = 0u64;
            for line in reader.lines() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                match trust.verify(kind, line.trim().as_bytes()) {
                    Ok(v) => writeln!(
                        out,
                        "ok\t{}\t{}\t{}",
                        v.signer,
                        v.kid,
                        String::from_utf8_lossy(&v.payload)
                    )?,
                    Err(p) => {
                        refused += 1;
                        writeln!(out, "refused\t{}\t{}", p.reason, p.message)?;
                    }
                }
            }
            out.flush()?;
            if refused > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log.level));
    // A log line that cannot be written (a full disk under a redirected
    // stderr) is dropped: tracing-subscriber's default is to report it with
    // eprintln!, which panics when stderr cannot be written either -- it
    // took a pipeline thread down once the demo's disk filled.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let _ = match cfg.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

fn shutdown_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while draining exits at once.
        signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone())?;
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(flag)
}

fn main() {
    #[cfg(not(feature = "dhat-heap"))]
    karpoosheh_engine::jemalloc_is_the_allocator();
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    #[cfg(feature = "dhat-heap")]
    let profiler = dhat::Profiler::new_heap();
    let result = run(cli);
    #[cfg(feature = "dhat-heap")]
    drop(profiler); // writes dhat-heap.json
    if let Err(e) = result {
        eprintln!("karpoosheh: error: {e:#}");
        std::process::exit(2);
    }
}

/// Transparent huge pages off for this process: a 2 MiB page that holds one
/// live block counts whole in RSS. With them (under mimalloc, which asked
/// for them), the demo's peak RSS was 305 MB at 1M notices and 383 MB at
/// 5M (114-133 MB of it huge pages); without, 273 and 320 MB, at the same
/// ingest rate (BENCHMARKS.md, "Memory"). jemalloc does not ask for them,
/// but a host whose THP setting is `always` gives them anyway;
/// `PR_SET_THP_DISABLE` covers that. Inherited by child processes.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE takes integer arguments only
    // and changes nothing but this process's THP flag.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// What the operators' commands read: the store, or, while a running
/// node holds it, that node's operator endpoint (`[operator]`).
/// One JSON object per line on stdout; `none` on stderr when there are none.
fn json_lines<T: serde::Serialize>(items: &[T], none: &str) -> Result<()> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    for item in items {
        serde_json::to_writer(&mut out, item)?;
        writeln!(out)?;
    }
    out.flush()?;
    if items.is_empty() {
        eprintln!("{none}");
    }
    Ok(())
}

fn inspect(cfg: &Config) -> Result<Box<dyn karpoosheh_engine::Inspect>> {
    match open_store_read_only(cfg) {
        Ok(s) => Ok(Box::new(s)),
        Err(karpoosheh_engine::StoreError::Locked(path)) if !cfg.operator.listen.is_empty() => {
            eprintln!(
                "karpoosheh: {path} is held by a running node; asking its operator endpoint at {}",
                cfg.operator.listen
            );
            Ok(Box::new(
                karpoosheh_engine::Remote::new(&cfg.operator).map_err(anyhow::Error::msg)?,
            ))
        }
        Err(karpoosheh_engine::StoreError::Locked(path)) => bail!(
            "{path} is held by a running node: set operator.listen and operator.token_file to ask it (docs/operations.md, \"Looking inside a running node\")"
        ),
        Err(e) => Err(e.into()),
    }
}

fn run(cli: Cli) -> Result<()> {
    // Generated from the command's own definition; no configuration read.
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "karpoosheh", &mut std::io::stdout());
            return Ok(());
        }
        Command::Manpage => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
            return Ok(());
        }
        _ => {}
    }
    let mut sets = cli.sets.clone();
    if let Some(d) = &cli.data_dir {
        sets.push(format!(
            "store.path={}",
            toml_string(&d.display().to_string())
        ));
    }
    if let Command::Demo { dir, .. } = &cli.command {
        // The demo compresses article 29's days into seconds (rounds 5 s
        // apart, verdict 5 s after the last, no quiet hours); the user's own
        // --set flags, applied after these, still win.
        let demo_time = [
            "delivery.round_intervals=[\"0s\", \"5s\", \"5s\"]",
            "delivery.not_served_after=\"5s\"",
            "delivery.quiet_hours=\"\"",
            // Simulated gateways answer in ~2 ms with the demo's contracted
            // throughput, so a million notices' rounds take minutes, not days.
            "channels.sms.simulated.latency=\"2ms\"",
            "channels.sms.simulated.latency_jitter=\"1ms\"",
            "channels.push.simulated.latency=\"2ms\"",
            "channels.push.simulated.latency_jitter=\"1ms\"",
            "channels.email.simulated.latency=\"5ms\"",
            "channels.email.simulated.latency_jitter=\"2ms\"",
            "channels.sms.policy.rate_per_sec=20000",
            "channels.sms.policy.burst=2000",
            "channels.push.policy.rate_per_sec=20000",
            "channels.push.policy.burst=2000",
            "channels.email.policy.rate_per_sec=5000",
            "channels.email.policy.burst=500",
            "channels.sms.simulated.slowdown_every=\"40s\"",
            "channels.sms.simulated.slowdown_for=\"4s\"",
            "delivery.round_retry_after=\"2s\"",
        ];
        for (i, s) in demo_time.iter().enumerate() {
            sets.insert(i, (*s).to_owned());
        }
        let dir = dir
            .clone()
            .or(cli.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("./karpoosheh-demo"));
        sets.push(format!(
            "store.path={}",
            toml_string(&dir.display().to_string())
        ));
        // The inbox API for citizens' apps, with the demo's own identity
        // provider (its key made for the run, in the demo's directory);
        // before the user's --set flags, which still win.
        let idp = [
            "inbox.listen=\"127.0.0.1:9465\"".to_owned(),
            // The operators' endpoint, so that `karpoosheh mailbox` and
            // `notice` work while the demo holds its store.
            "operator.listen=\"127.0.0.1:9466\"".to_owned(),
            format!(
                "operator.token_file={}",
                toml_string(&dir.join("operator.token").display().to_string())
            ),
            format!(
                "identity.jwks_file={}",
                toml_string(&dir.join("demo-identity.jwks.json").display().to_string())
            ),
            format!("identity.issuer={}", toml_string(demo::DEMO_ISSUER)),
        ];
        for (i, s) in idp.into_iter().enumerate() {
            sets.insert(i, s);
        }
        // The demo wipes its store: it runs on the embedded one only.
        sets.push("store.backend=\"embedded\"".to_owned());
    }
    let cfg = Config::load(cli.config.as_deref(), std::env::vars(), &sets)?;
    init_logging(&cfg);

    match cli.command {
        Command::Demo {
            notices,
            bad_ratio,
            duplicate_ratio,
            rate,
            seed,
            quiet,
            no_follow_up,
            no_dashboard,
            follow_up_timeout,
            ..
        } => {
            if !(0.0..=0.5).contains(&bad_ratio) || !(0.0..=0.5).contains(&duplicate_ratio) {
                bail!("--bad-ratio and --duplicate-ratio must be between 0 and 0.5");
            }
            demo::prepare_data_dir(&cfg.store.path)?;
            let opts = DemoOptions {
                notices,
                bad_ratio,
                duplicate_ratio,
                seed,
                rate,
                progress: !quiet,
                serve_metrics: true,
                follow_up: !no_follow_up,
                dashboard: !no_dashboard,
                follow_up_timeout: follow_up_timeout.0,
            };
            eprintln!(
                "karpoosheh demo: {} notices into {} (durability {:?}); metrics on http://{}/metrics; Ctrl-C stops cleanly",
                demo::group(notices),
                cfg.store.path.display(),
                cfg.store.durability,
                cfg.metrics.listen
            );
            let report = demo::run(&cfg, &opts, shutdown_flag()?)?;
            println!("{}", report.render());
            if !report.accounted() && report.records == notices {
                bail!("not every record was accounted for as generated (see the report)");
            }
            Ok(())
        }
        Command::Run => {
            let shutdown = shutdown_flag()?;
            let timeout = cfg.kafka.shutdown_timeout.0;
            {
                // Bounded shutdown: past the timeout, exit anyway (what was
                // not committed is re-delivered, so nothing is lost).
                let shutdown = shutdown.clone();
                std::thread::spawn(move || {
                    while !shutdown.load(std::sync::atomic::Ordering::SeqCst) {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    std::thread::sleep(timeout);
                    eprintln!("karpoosheh: shutdown took longer than kafka.shutdown_timeout; exiting (uncommitted records will be re-delivered)");
                    std::process::exit(3);
                });
            }
            let summary = karpoosheh_engine::run(&cfg, shutdown)?;
            eprintln!(
                "karpoosheh: stopped after {} records in {:.1}s; everything read was stored and committed",
                summary.records,
                summary.elapsed.as_secs_f64()
            );
            Ok(())
        }
        Command::Ingest {
            file,
            agency,
            receipts,
        } => {
            let agency = AgencyId::parse(&agency)
                .map_err(|e| anyhow::anyhow!("--agency {agency:?}: {e}"))?;
            let (summary, t) = ingest(&cfg, &file, agency, receipts.as_deref(), shutdown_flag()?)?;
            println!(
                "{}: {} records in {:.2}s — stored {}, duplicates {}, rejected {}, dead-lettered {}",
                file.display(),
                summary.records,
                summary.elapsed.as_secs_f64(),
                t.stored,
                t.duplicates,
                t.rejected_total(),
                t.dead_letters_total()
            );
            for (r, n) in t.rejected.iter().chain(t.dead_letters.iter()) {
                println!("  {:<30} {n}", r.code());
            }
            if let Some(r) = receipts {
                println!("receipts: {}", r.display());
            }
            Ok(())
        }
        Command::Mailbox {
            id,
            limit,
            before,
            json,
        } => {
            let id = karpoosheh_schemas::parse_recipient(id.trim())
                .map_err(|e| anyhow::anyhow!("{id:?}: {e}"))?;
            let before = before
                .map(|b| {
                    TrackingCode::parse(&b).map_err(|e| anyhow::anyhow!("--before {b:?}: {e}"))
                })
                .transpose()?;
            let store = inspect(&cfg)?;
            let page = store
                .mailbox(id, before, limit)
                .map_err(anyhow::Error::msg)?;
            let mut out = BufWriter::new(std::io::stdout().lock());
            if json {
                for n in &page.notices {
                    serde_json::to_writer(
                        &mut out,
                        &serde_json::json!({
                            "tracking_code": n.tracking_code, "accepted_at": n.accepted_at, "notice": n.notice
                        }),
                    )?;
                    writeln!(out)?;
                }
            } else {
                writeln!(
                    out,
                    "mailbox {} ({}) — {} notice(s), newest first",
                    id.address(),
                    kind_name(id.kind()),
                    page.notices.len()
                )?;
                for n in &page.notices {
                    writeln!(
                        out,
                        "{}  {}  {:<16} {:<15} {}",
                        n.tracking_code,
                        n.accepted_at.format("%Y-%m-%d %H:%M:%S"),
                        n.notice.agency,
                        n.notice.kind,
                        truncate(&n.notice.title, 60)
                    )?;
                }
                if let Some(next) = page.next {
                    writeln!(out, "more: karpoosheh mailbox {id} --before {next}")?;
                }
            }
            Ok(())
        }
        Command::Notice {
            tracking_code,
            json,
        } => {
            let code = TrackingCode::parse(&tracking_code)
                .map_err(|e| anyhow::anyhow!("{tracking_code:?}: {e}"))?;
            let store = inspect(&cfg)?;
            let view = match store.notice(code) {
                Ok(v) => v,
                Err(e) if e.contains("404") => bail!("no notice with tracking code {code}"),
                Err(e) => bail!("{e}"),
            };
            let (n, delivery, events) = (view.notice, view.delivery, view.events);
            if n.is_none() && delivery.is_none() {
                bail!("no notice with tracking code {code}")
            }
            let chain = karpoosheh_engine::chain::verify(&events);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "tracking_code": code,
                        "accepted_at": n.as_ref().map(|n| n.accepted_at),
                        "content_sha256": n.as_ref().map(|n| hex(&n.content_hash)),
                        "notice": n.as_ref().map(|n| &n.notice),
                        "delivery": delivery,
                        "events": events.iter().map(|e| serde_json::json!({
                            "seq": e.seq,
                            "prev": karpoosheh_engine::b64url(&e.prev),
                            "hash": karpoosheh_engine::b64url(&e.hash),
                            "event": serde_json::from_slice::<serde_json::Value>(&e.bytes).ok(),
                        })).collect::<Vec<_>>(),
                        "chain": match &chain {
                            Ok(head) => serde_json::json!({"intact": true, "head": karpoosheh_engine::b64url(head)}),
                            Err(b) => serde_json::json!({"intact": false, "broken_at": b.seq, "problem": b.problem}),
                        },
                    }))?
                );
                return Ok(());
            }
            if let Some(n) = &n {
                let v = &n.notice;
                println!("tracking code   {}", n.tracking_code);
                println!("accepted at     {}", n.accepted_at.to_rfc3339());
                println!("agency          {} (reference {})", v.agency, v.reference);
                println!("recipient       {}", v.recipient.address());
                println!("kind            {} / life event {}", v.kind, v.life_event);
                println!("access level    {} or higher to open", v.min_access_level);
                println!("sent at         {}", v.sent_at.to_rfc3339());
                println!("expires at      {}", v.expires_at.to_rfc3339());
                if let Some(b) = &v.batch_id {
                    println!("batch           {b}");
                }
                println!("content sha256  {}", hex(&n.content_hash));
                println!("title           {}", v.title);
                for a in &v.attachments {
                    println!(
                        "attachment      {} ({}, {} bytes, sha256 {})",
                        a.name, a.media_type, a.size, a.sha256
                    );
                }
            } else if let Some(d) = &delivery {
                println!("tracking code   {code}");
                println!("accepted at     {}", d.accepted_at.to_rfc3339());
                println!("agency          {} (reference {})", d.agency, d.reference);
                println!("recipient       {}", d.recipient.address());
            }
            if let Some(d) = &delivery {
                println!("\n{}", render_history(d).trim_end());
            }
            println!("\n{}", render_chain(&events).trim_end());
            if let Some(n) = &n {
                println!("\n{}", n.notice.body);
            }
            Ok(())
        }
        Command::Receipts {
            action:
                ReceiptsCommand::Replay {
                    agency,
                    since,
                    until,
                },
        } => {
            let agency = AgencyId::parse(&agency).map_err(anyhow::Error::msg)?;
            let time = |s: &str| -> Result<chrono::DateTime<chrono::Utc>> {
                Ok(chrono::DateTime::parse_from_rfc3339(s)
                    .with_context(|| {
                        format!("{s:?} is not an RFC 3339 time (e.g. 2026-12-01T00:00:00+03:30)")
                    })?
                    .with_timezone(&chrono::Utc))
            };
            let since = time(&since)?;
            let until = match until {
                Some(u) => time(&u)?,
                None => chrono::Utc::now(),
            };
            if since >= until {
                bail!("--since must be before --until");
            }
            let done = if cfg.operator.listen.is_empty() {
                let store = karpoosheh_engine::open_store(&cfg).map_err(|e| match e {
                    karpoosheh_engine::StoreError::Locked(path) => anyhow::anyhow!(
                        "{path} is held by a running node: set operator.listen and operator.token_file to have it replay (docs/operations.md)"
                    ),
                    e => e.into(),
                })?;
                karpoosheh_engine::replay_receipts(store.as_ref(), &agency, since, until)?
            } else {
                eprintln!(
                    "karpoosheh: asking the node at {} to replay",
                    cfg.operator.listen
                );
                karpoosheh_engine::Remote::new(&cfg.operator)
                    .map_err(anyhow::Error::msg)?
                    .replay(&agency, since, until)
                    .map_err(anyhow::Error::msg)?
            };
            println!(
                "{agency}: {} receipts of {} notices and {} rejections put in the outbox, {} to {}",
                done.receipts,
                done.notices,
                done.rejections,
                since.to_rfc3339(),
                until.to_rfc3339()
            );
            Ok(())
        }
        Command::Status {
            agency,
            reference,
            json,
        } => {
            let agency = AgencyId::parse(&agency).map_err(anyhow::Error::msg)?;
            let st = inspect(&cfg)?
                .status(&agency, &reference)
                .map_err(anyhow::Error::msg)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                print!("{}", karpoosheh_engine::render_status(&st));
            }
            if !st.found() {
                // 1: a plain answer ("not known"), apart from errors (2).
                eprintln!(
                    "karpoosheh: {agency} has no notice and no kept rejection with reference {reference:?}"
                );
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Rejections {
            agency,
            limit,
            after,
            latest,
        } => {
            let agency = agency
                .map(|a| AgencyId::parse(&a).map_err(anyhow::Error::msg))
                .transpose()?;
            let store = inspect(&cfg)?;
            let list = if latest {
                store.latest_rejections(agency.as_ref(), limit)
            } else {
                store.rejections(agency.as_ref(), after, limit)
            }
            .map_err(anyhow::Error::msg)?;
            let mut out = BufWriter::new(std::io::stdout().lock());
            for r in &list {
                serde_json::to_writer(
                    &mut out,
                    &serde_json::json!({ "id": r.id, "rejection": r.rejection }),
                )?;
                writeln!(out)?;
            }
            if list.len() == limit && !latest {
                if let Some(last) = list.last() {
                    eprintln!("more: add --after {}", last.id);
                }
            }
            Ok(())
        }
        Command::DeadLetters { limit, after } => {
            let store = inspect(&cfg)?;
            let list = store
                .dead_letters(after, limit)
                .map_err(anyhow::Error::msg)?;
            let mut out = BufWriter::new(std::io::stdout().lock());
            for (id, d) in &list {
                serde_json::to_writer(
                    &mut out,
                    &serde_json::json!({ "id": id, "dead_letter": d }),
                )?;
                writeln!(out)?;
            }
            Ok(())
        }
        Command::Quarantine { limit } => {
            let store = inspect(&cfg)?;
            let list = store.quarantined(limit).map_err(anyhow::Error::msg)?;
            json_lines(&list, "nothing set aside")
        }
        Command::Parked => {
            let store = inspect(&cfg)?;
            let lots = store.parked().map_err(anyhow::Error::msg)?;
            json_lines(&lots, "no receipts parked on this node")
        }
        Command::Store {
            command: StoreCommand::Check { show },
        } => {
            if cfg.store.backend != karpoosheh_engine::StoreBackend::Embedded {
                bail!("store check reads the embedded store; on a CQL cluster use the cluster's own tools (nodetool verify, scrub)");
            }
            let store = karpoosheh_engine::FjallStore::open(cfg.store.fjall()).map_err(|e| match e {
                karpoosheh_engine::StoreError::Locked(path) => anyhow::anyhow!(
                    "{path} is held by a running node: stop it first (the check reads the whole store)"
                ),
                other => anyhow::Error::new(other),
            })?;
            let report = store.check(show);
            let mut out = BufWriter::new(std::io::stdout().lock());
            writeln!(
                out,
                "{:<20} {:>12} {:>11}",
                "keyspace", "records", "unreadable"
            )?;
            for k in &report.keyspaces {
                writeln!(out, "{:<20} {:>12} {:>11}", k.name, k.records, k.unreadable)?;
            }
            for p in &report.problems {
                writeln!(out, "problem: {p}")?;
            }
            out.flush()?;
            if report.problem_count > 0 {
                bail!(
                    "{} problem(s) in the store at {}: keep a copy of it and restore from a backup, or see docs/operations.md (\"Data\")",
                    report.problem_count,
                    cfg.store.path.display()
                );
            }
            eprintln!("the store at {} reads back whole", cfg.store.path.display());
            Ok(())
        }
        Command::CheckId {
            ids,
            explain,
            strict,
        } => {
            let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
            let mut invalid = 0u64;
            let mut check = |raw: &str, out: &mut BufWriter<_>| -> std::io::Result<()> {
                let id = raw.trim();
                match karpoosheh_schemas::parse_recipient(id) {
                    Ok(m) => writeln!(out, "{id}\tvalid\t{}", kind_name(m.kind())),
                    Err(e) => {
                        invalid += 1;
                        if explain {
                            writeln!(out, "{id}\tinvalid\t{}\t{e}", e.reason().code())
                        } else {
                            writeln!(out, "{id}\tinvalid\t{}", e.reason().code())
                        }
                    }
                }
            };
            if ids.is_empty() {
                let stdin = std::io::stdin();
                let mut line = Vec::new();
                let mut reader = stdin.lock();
                loop {
                    line.clear();
                    if reader.read_until(b'\n', &mut line)? == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end_matches(['\n', '\r']);
                    if text.trim().is_empty() {
                        continue;
                    }
                    check(text, &mut out)?;
                }
            } else {
                for id in &ids {
                    check(id, &mut out)?;
                }
            }
            out.flush()?;
            if strict && invalid > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::AccessLog { mailbox, limit } => {
            let id = karpoosheh_schemas::MailboxId::parse(&mailbox)
                .map_err(|e| anyhow::anyhow!("{mailbox:?}: {e}"))?;
            let store = inspect(&cfg)?;
            for r in store.access_log(id, limit).map_err(anyhow::Error::msg)? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    r.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    r.actor.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
                    r.action,
                    r.tracking_code
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "-".into()),
                    r.client.as_deref().unwrap_or("-"),
                    r.status,
                    r.address.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
        Command::Completions { .. } | Command::Manpage => Ok(()), // answered above
        Command::TokenCheck { token } => {
            let token = match token.as_deref() {
                None | Some("-") => {
                    let mut t = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)?;
                    t
                }
                Some(t) => t.to_owned(),
            };
            let token = token.trim();
            let token = token.strip_prefix("Bearer ").unwrap_or(token);
            if !cfg.identity.has_keys() {
                bail!(
                    "neither identity.jwks_file nor identity.jwks_url is set: one names the identity provider's public keys"
                );
            }
            let verifier = karpoosheh_engine::Verifier::open(&cfg.identity)?;
            match verifier.verify(token, chrono::Utc::now()) {
                Ok(s) => {
                    let id = s.subject.to_string();
                    let masked = format!(
                        "{}{}",
                        "*".repeat(id.len().saturating_sub(4)),
                        &id[id.len().saturating_sub(4)..]
                    );
                    println!("token           valid");
                    println!("subject         {masked} ({})", s.subject.kind().as_str());
                    println!("access level    {}", s.level);
                    println!("expires         {}", s.expires_at.to_rfc3339());
                    if let Some(c) = &s.client {
                        println!("client          {c}");
                    }
                    Ok(())
                }
                Err(e) => {
                    println!("token           REFUSED: {} ({e})", e.reason());
                    std::process::exit(1);
                }
            }
        }
        Command::Config => {
            print!("{}", toml::to_string_pretty(&cfg)?);
            Ok(())
        }
        Command::Keys { action } => keys_command(&cfg, action),
        Command::Proof { tracking_code, out } => {
            use karpoosheh_engine::proof;
            let code = TrackingCode::parse(&tracking_code)
                .map_err(|e| anyhow::anyhow!("{tracking_code:?}: {e}"))?;
            if cfg.evidence.key_file.as_os_str().is_empty() {
                bail!("a proof is signed with the node's key: set evidence.key_file");
            }
            let key = karpoosheh_engine::keys::SigningKey::load(&cfg.evidence.key_file)?;
            let store = open_store_read_only(&cfg)?;
            let events = store.events(code)?;
            if events.is_empty() {
                bail!("no notice with tracking code {code} (or none kept any more)");
            }
            let mut bundle =
                proof::make(&code.to_string(), &events, &key).map_err(anyhow::Error::msg)?;
            bundle.audit = audit_proof(store.as_ref(), code, &events)?;
            let text = serde_json::to_string_pretty(&bundle)? + "\n";
            match out {
                Some(p) => std::fs::write(p, text)?,
                None => print!("{text}"),
            }
            Ok(())
        }
        Command::AuditLog { json } => {
            let store = open_store_read_only(&cfg)?;
            let (tree, head) = match karpoosheh_engine::AuditLog::check(store.as_ref(), cfg.node_id)
            {
                Ok(x) => x,
                Err(e) => {
                    println!("audit log       NOT CONSISTENT: {e}");
                    std::process::exit(1);
                }
            };
            if json {
                match &head {
                    Some(h) => println!("{}", serde_json::to_string(h)?),
                    None => bail!("node {} has signed no tree head yet", cfg.node_id),
                }
                return Ok(());
            }
            println!("audit log       node {}", cfg.node_id);
            println!("entries         {} signed receipt batches", tree.size());
            match &head {
                Some(h) => {
                    println!(
                        "last tree head  size {}, signed {} by {}, root {}",
                        h.head.size,
                        h.head.timestamp.to_rfc3339(),
                        h.head.kid,
                        h.head.root
                    );
                    println!(
                        "consistent      yes: the log's first {} entries make that head's root",
                        h.head.size
                    );
                }
                None => println!("last tree head  none signed yet"),
            }
            Ok(())
        }
        Command::Verify {
            bundle,
            jwks,
            document,
        } => {
            use karpoosheh_engine::proof;
            let b: proof::Bundle = serde_json::from_slice(&std::fs::read(&bundle)?)
                .map_err(|e| anyhow::anyhow!("{}: not a proof bundle: {e}", bundle.display()))?;
            let trusted: Option<proof::Jwks> = jwks
                .map(|p| -> Result<proof::Jwks> { Ok(serde_json::from_slice(&std::fs::read(p)?)?) })
                .transpose()?;
            let doc = document.map(std::fs::read).transpose()?;
            let checks = proof::check(&b, trusted.as_ref(), doc.as_deref());
            for c in &checks {
                println!("{}  {}", if c.ok { "ok  " } else { "FAIL" }, c.what);
            }
            if checks.iter().all(|c| c.ok) {
                println!("the proof of {} holds", b.tracking_code);
                Ok(())
            } else {
                println!("the proof of {} does NOT hold", b.tracking_code);
                std::process::exit(1);
            }
        }
        Command::VerifyDocument {
            tracking_code,
            verification_code,
            document,
        } => {
            let store = open_store_read_only(&cfg)?;
            let doc = document.map(std::fs::read).transpose()?;
            let a = karpoosheh_engine::inquire(
                store.as_ref(),
                &tracking_code,
                &verification_code,
                doc.as_deref(),
            )?;
            if !a.genuine {
                println!("NOT GENUINE: no notice in this system has that tracking code and verification code");
                std::process::exit(1);
            }
            println!("genuine         a notice stored in this system");
            println!("agency          {}", a.agency.as_deref().unwrap_or("?"));
            println!("kind            {}", a.kind.as_deref().unwrap_or("?"));
            if let Some(at) = a.issued_at {
                println!("issued at       {}", at.to_rfc3339());
            }
            match a.document_matches {
                Some(true) => println!("document        matches the stored notice's content hash"),
                Some(false) => {
                    println!("document        DOES NOT MATCH the stored notice (edited, or another notice)");
                    std::process::exit(1);
                }
                None => {}
            }
            Ok(())
        }
        Command::Migrate { print } => {
            use karpoosheh_engine::scylla;
            if print {
                print!("{}", scylla::schema_cql(&cfg.scylla));
                return Ok(());
            }
            cfg.scylla.validate().map_err(anyhow::Error::msg)?;
            let r = scylla::migrate(&cfg.scylla)?;
            if let Some(note) = &r.replication_note {
                eprintln!("karpoosheh: warning: {note}");
            }
            if r.applied.is_empty() {
                println!(
                    "keyspace {}: schema version {}, nothing to apply",
                    r.keyspace, r.version
                );
            } else {
                println!(
                    "keyspace {}: applied migration(s) {:?}; schema version {}",
                    r.keyspace, r.applied, r.version
                );
            }
            Ok(())
        }
    }
}

fn kind_name(k: MailboxKind) -> &'static str {
    k.as_str()
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn truncate(s: &str, n: usize) -> String {
    let mut out: String = s.chars().take(n).collect();
    if s.chars().count() > n {
        out.push('…');
    }
    out
}
