//! `karpoosheh demo`: the real pipeline on the embedded store, fed by the
//! load generator in the same process, with live progress and a final
//! report. Also the core of the in-process load test.
//!
//! On a terminal the progress is the operators' dashboard itself:
//! `karpoosheh-monitor`, found next to this binary, runs as a child
//! pointed at the demo's metrics until the demo's work is done (see
//! [`Dashboard`]); without one (or without a terminal) the plain
//! progress lines are printed as before.

use std::io::{IsTerminal, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use karpoosheh_schemas::{MailboxId, Reason, TrackingCode};
use karpoosheh_traffic::{Expect, Traffic, TrafficConfig};

use crate::config::Config;
use crate::delivery::{simulate, Outbox, SchedulerHandle};
use crate::evidence::keys::SigningKey;
use crate::evidence::seal::Sealer;
use crate::health::Health;
use crate::http::{install_recorder, Documents, HttpServer};
use crate::sink::{Tally, TallySink};
use crate::source::MemorySource;
use crate::store::Store;

/// Marks a directory as the demo's own, so it may be wiped on the next run.
pub const DEMO_MARKER: &str = ".karpoosheh-demo";

/// Options of one in-process run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub notices: u64,
    pub bad_ratio: f64,
    pub duplicate_ratio: f64,
    pub seed: u64,
    /// Records per second to offer; 0 for as fast as the engine takes them.
    pub rate: u64,
    /// Progress lines on stderr.
    pub progress: bool,
    /// Serve /metrics and health while running.
    pub serve_metrics: bool,
    /// Follow the stored notices through article 29 (rounds, simulated
    /// recipients' confirmations, served / not served) after ingest.
    pub follow_up: bool,
    /// Give up waiting for the follow-up to settle after this long.
    pub follow_up_timeout: Duration,
    /// Show the dashboard (`karpoosheh-monitor`) instead of the progress
    /// lines when stdout and stderr are a terminal, the metrics are served
    /// and `KARPOOSHEH_DEMO_DASHBOARD` is not `0`.
    pub dashboard: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            notices: 1_000_000,
            bad_ratio: 0.03,
            duplicate_ratio: 0.01,
            seed: 42,
            rate: 0,
            progress: true,
            serve_metrics: true,
            follow_up: true,
            follow_up_timeout: Duration::from_secs(600),
            dashboard: true,
        }
    }
}

/// Expected outcomes, counted by the generator as it generates.
#[derive(Debug, Default, Clone)]
pub struct Expected {
    pub stored: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub dead_letters: u64,
}

/// What a run did.
pub struct DemoReport {
    /// Records the run was asked for.
    pub offered: u64,
    /// Records actually read (fewer when stopped early).
    pub records: u64,
    pub elapsed: Duration,
    pub tally: Tally,
    pub expected: Expected,
    pub store_disk_bytes: u64,
    pub data_dir: PathBuf,
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// A mailbox and one of its tracking codes, to try the inspection
    /// commands on.
    pub example: Option<(MailboxId, TrackingCode)>,
    pub peak_rss_bytes: Option<u64>,
    /// Bytes the process wrote to storage over the whole run (journal,
    /// flushes, compactions, audit log; `/proc/self/io`).
    pub disk_written_bytes: Option<u64>,
    /// The follow-up phase, when it ran: its length and whether every
    /// stored notice reached an outcome before the timeout.
    pub follow_up: Option<(Duration, bool)>,
    /// Where the demo's own log lines went while the dashboard had the
    /// screen.
    pub dashboard_log: Option<PathBuf>,
    /// Tokens and curl lines for the demo's inbox API, when it served one.
    pub inbox_try: Option<PathBuf>,
}

/// The issuer of the demo's own identity provider.
pub const DEMO_ISSUER: &str = "https://idp.demo.karpoosheh.invalid";

/// Makes the demo's identity provider: a key for this run, its public half
/// written where `identity.jwks_file` says. `None` when that file exists
/// already (an operator's own provider: the demo cannot sign for it).
fn demo_identity(cfg: &Config) -> anyhow::Result<Option<SigningKey>> {
    let path = &cfg.identity.jwks_file;
    if path.as_os_str().is_empty() || path.exists() {
        return Ok(None);
    }
    let key = SigningKey::generate("demo-idp")?;
    std::fs::write(path, key.public_jwks_json() + "\n")?;
    Ok(Some(key))
}

/// An identity-provider token for `who` (level 3, two hours), as the
/// national provider would issue one.
fn demo_token(cfg: &Config, key: &SigningKey, who: MailboxId) -> String {
    let now = chrono::Utc::now().timestamp();
    crate::identity::sign_token(
        key,
        &serde_json::json!({"iss": cfg.identity.issuer, "aud": cfg.identity.audience,
            "sub": who.to_string(), cfg.identity.level_claim.clone(): 3, "azp": "karpoosheh-demo",
            "iat": now, "exp": now + 7200}),
    )
}

/// The text of `inbox-try.txt`: tokens and curl lines for a few people.
fn try_lines(
    cfg: &Config,
    key: &SigningKey,
    addr: std::net::SocketAddr,
    people: &[MailboxId],
) -> String {
    let mut out = format!(
        "# The demo's inbox API (docs/inbox-api.md), while the demo runs, with tokens of\n\
         # the demo's own identity provider (valid two hours, access level 3). Paste into\n\
         # another terminal. The OpenAPI document: curl -s http://{addr}/v1/openapi.json\n\n"
    );
    for (i, who) in people.iter().enumerate() {
        let n = i + 1;
        out += &format!(
            "# person {n}\nexport T{n}='{}'\n\
             curl -s -H \"Authorization: Bearer $T{n}\" 'http://{addr}/v1/mailbox?limit=5'\n\
             C{n}=$(curl -s -H \"Authorization: Bearer $T{n}\" 'http://{addr}/v1/mailbox?limit=1' | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"notices\"][0][\"tracking_code\"])')\n\
             curl -s -H \"Authorization: Bearer $T{n}\" http://{addr}/v1/notices/$C{n}\n\
             curl -s -X POST -H \"Authorization: Bearer $T{n}\" -H 'Idempotency-Key: demo-{n}-a' http://{addr}/v1/notices/$C{n}/confirmations\n\n",
            demo_token(cfg, key, *who)
        );
    }
    out
}

/// Prepares the demo's data directory: wipes a previous demo's, refuses
/// anything else that is not empty.
pub fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !empty {
            if !dir.join(DEMO_MARKER).exists() {
                anyhow::bail!(
                    "{} exists and was not made by `karpoosheh demo`; refusing to delete it. Pass --data-dir with a new or demo directory.",
                    dir.display()
                );
            }
            std::fs::remove_dir_all(dir)?;
        }
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join(DEMO_MARKER),
        "made by karpoosheh demo; deleted by the next demo run\n",
    )?;
    Ok(())
}

/// Runs the engine on `cfg` (its store path must be prepared) fed by the
/// generator. `shutdown` stops it early, cleanly.
pub fn run(
    cfg: &Config,
    opts: &DemoOptions,
    shutdown: Arc<AtomicBool>,
) -> anyhow::Result<DemoReport> {
    // Every receipt is signed, as on a real node: with evidence.key_file,
    // or a key made for this run.
    let sealer = match super::sealer(cfg)? {
        Some(s) => s,
        None => Sealer::new(Arc::new(SigningKey::generate(&format!(
            "demo-node-{}",
            cfg.node_id
        ))?)),
    };
    let store = super::open_store(cfg)?;
    // The audit log as on a real node; its tree heads are kept in the
    // store (no audit topic here).
    let (sealer, audit) = super::audited(cfg, &store, sealer)?;
    // The demo's operator credential, made for the run when its file is
    // not there; an endpoint that cannot start leaves the demo without it.
    if !cfg.operator.listen.is_empty() && !cfg.operator.token_file.exists() {
        let mut secret = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .map_err(|_| anyhow::anyhow!("no randomness for the operator credential"))?;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&cfg.operator.token_file)?;
        writeln!(f, "{}", crate::evidence::b64url(&secret))?;
    }
    let operator_server = super::operator(cfg, &store).unwrap_or_else(|e| {
        tracing::warn!(error = %format!("{e:#}"), "the demo goes on without its operators' endpoint");
        None
    });
    let health = Health::default();
    let mut server = None;
    if opts.serve_metrics && !cfg.metrics.listen.is_empty() {
        let handle = install_recorder();
        match HttpServer::start(
            &cfg.metrics.listen,
            handle,
            health.clone(),
            Some(sealer.jwks().into()),
            Some(Documents::new(
                store.clone(),
                cfg.evidence.inquiries_per_second,
                cfg.evidence.inquiries_per_client_per_minute,
            )),
        ) {
            Ok(s) => server = Some(s),
            Err(e) => {
                crate::internal_events::HttpServing {
                    addr: None,
                    error: Some(&e),
                }
                .emit();
            }
        }
    }
    let metrics_addr = server.as_ref().map(|s| s.addr);
    if let Some(addr) = metrics_addr {
        // Tests and supervisors read the bound address (port 0 picks one).
        eprintln!("karpoosheh: metrics on http://{addr}/metrics");
    }
    // Set while the dashboard owns the screen: progress lines stay quiet.
    let screen_taken = Arc::new(AtomicBool::new(false));
    let dashboard_log = cfg.store.path.join("demo.log");
    let dashboard = match metrics_addr {
        Some(addr) if opts.progress && opts.dashboard => {
            let operator = operator_server
                .as_ref()
                .map(|o| (o.addr, cfg.operator.token_file.clone()));
            Dashboard::start(
                addr,
                operator,
                &dashboard_log,
                screen_taken.clone(),
                shutdown.clone(),
            )
        }
        _ => None,
    };
    let dashboard_log = dashboard.as_ref().map(|_| dashboard_log);

    let traffic = Arc::new(Traffic::new(TrafficConfig {
        notices: opts.notices,
        bad_ratio: opts.bad_ratio,
        duplicate_ratio: opts.duplicate_ratio,
        seed: opts.seed,
        ..TrafficConfig::default()
    }));
    let (sender, source) = MemorySource::channel(cfg.pipeline.queue_depth, None);
    let acked = source.acked_counter();
    let expected = Arc::new(Mutex::new(Expected::default()));
    let generated = Arc::new(AtomicU64::new(0));

    let generator = {
        let traffic = traffic.clone();
        let expected = expected.clone();
        let generated = generated.clone();
        let chunk = cfg.pipeline.decode_chunk as u64;
        let rate = opts.rate;
        let total = opts.notices;
        std::thread::Builder::new()
            .name("generator".into())
            .spawn(move || {
                let start = Instant::now();
                let mut i = 0;
                while i < total {
                    let end = (i + chunk).min(total);
                    let records = traffic.chunk(i, end);
                    {
                        let mut e = expected.lock().unwrap_or_else(|p| p.into_inner());
                        for r in &records {
                            match r.expect {
                                Expect::Stored => e.stored += 1,
                                Expect::Duplicate => e.duplicates += 1,
                                Expect::Rejected(_) => e.rejected += 1,
                                Expect::DeadLetter(_) => e.dead_letters += 1,
                            }
                        }
                    }
                    if !sender.send(records.into_iter().map(|g| g.payload).collect()) {
                        break; // the engine stopped
                    }
                    i = end;
                    generated.store(i, Ordering::Relaxed);
                    if rate > 0 {
                        let due = Duration::from_secs_f64(i as f64 / rate as f64);
                        if let Some(wait) = due.checked_sub(start.elapsed()) {
                            std::thread::sleep(wait);
                        }
                    }
                }
            })?
    };

    let tally = Arc::new(Mutex::new(Tally::default()));
    let done = Arc::new(AtomicBool::new(false));
    let progress = if opts.progress {
        let tally = tally.clone();
        let done = done.clone();
        let acked = acked.clone();
        let total = opts.notices;
        let screen_taken = screen_taken.clone();
        Some(
            std::thread::Builder::new()
                .name("progress".into())
                .spawn(move || progress_loop(total, &acked, &tally, &done, &screen_taken))?,
        )
    } else {
        None
    };

    // After the metrics recorder, so its series are there from the start.
    let audit_stop = Arc::new(AtomicBool::new(false));
    let publisher = audit.spawn_publisher(
        cfg.evidence.tree_head_interval.0,
        audit_stop.clone(),
        Box::new(|_| Ok(())),
    )?;

    // The article-29 follow-up runs beside ingest, as on a real node.
    let follow = if opts.follow_up && cfg.delivery.enabled {
        Some(FollowUp::start(
            cfg,
            store.clone(),
            tally.clone(),
            sealer.clone(),
        )?)
    } else {
        None
    };
    let registry: Arc<dyn crate::delivery::Registry> = match &follow {
        Some(f) => f.registry.clone(),
        None => Arc::new(crate::delivery::StoreRegistry(store.clone())),
    };
    // The demo's own identity provider, when its key file is not there
    // yet: it signs tokens for a few of the generated people.
    let idp = if cfg.inbox.listen.is_empty() || follow.is_none() {
        None
    } else {
        demo_identity(cfg)?
    };
    super::traffic_purge(cfg, &store)?;
    // Served beside the follow-up (it records openings and confirmations);
    // a demo that cannot bind its address goes on without it.
    let inbox = match &follow {
        Some(f) if !cfg.inbox.listen.is_empty() => {
            match super::inbox(cfg, &store, Some(&f.scheduler), registry.clone(), None) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "the demo goes on without its inbox API");
                    None
                }
            }
        }
        _ => None,
    };
    let inbox_try = match (&inbox, idp) {
        (Some(server), Some(key)) => {
            let file = cfg.store.path.join("inbox-try.txt");
            let people = (0..opts.notices.min(5000))
                .filter_map(|i| traffic.recipient_of(i))
                .filter(|id| {
                    registry
                        .profile(*id)
                        .ok()
                        .flatten()
                        .is_some_and(|p| p.status == karpoosheh_schemas::MailboxStatus::Active)
                })
                .fold(Vec::new(), |mut v, id| {
                    if v.len() < 3 && !v.contains(&id) {
                        v.push(id);
                    }
                    v
                });
            std::fs::write(&file, try_lines(cfg, &key, server.addr, &people))?;
            // Before the dashboard has the screen, this reaches the
            // terminal; otherwise the demo's log.
            tracing::info!(
                "inbox API on http://{}/v1/: tokens and curl lines to try it in {}",
                server.addr,
                file.display()
            );
            Some(file)
        }
        _ => None,
    };

    let pipeline = super::pipeline(cfg, store.clone(), vec![Box::new(TallySink(tally.clone()))])
        .with_sealer(Some(sealer.clone()))
        .with_health(health)
        .with_shutdown(shutdown.clone());
    let summary = pipeline.run(Box::new(source))?;
    done.store(true, Ordering::SeqCst);
    if let Some(p) = progress {
        let _ = p.join();
    }
    let _ = generator.join();

    let follow_up = follow.map(|f| f.finish(&tally, opts, &shutdown, &screen_taken, inbox));
    audit_stop.store(true, Ordering::SeqCst);
    let _ = publisher.join();
    // The work is done: give the screen back before the report.
    drop(dashboard);

    // An example to inspect: the first valid notice's mailbox.
    let example = (0..opts.notices.min(1000))
        .find_map(|i| traffic.recipient_of(i))
        .and_then(|id| {
            store
                .mailbox(id, None, 1)
                .ok()
                .and_then(|p| p.notices.first().map(|n| (id, n.tracking_code)))
        });

    let tally = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
    let expected = expected.lock().unwrap_or_else(|p| p.into_inner()).clone();
    drop(server);
    Ok(DemoReport {
        offered: opts.notices,
        records: summary.records,
        elapsed: summary.elapsed,
        tally,
        expected,
        store_disk_bytes: store.stats().disk_bytes,
        data_dir: cfg.store.path.clone(),
        metrics_addr,
        example,
        peak_rss_bytes: crate::process_metrics::peak_rss_bytes(),
        disk_written_bytes: crate::process_metrics::read_io().map(|io| io.written),
        follow_up,
        dashboard_log,
        inbox_try,
    })
}

/// The demo's follow-up: the real scheduler with the configured channels
/// (the simulated gateway unless configured otherwise), the simulated
/// registry and recipients, and the outbox publishing to the tally.
struct FollowUp {
    scheduler: Arc<SchedulerHandle>,
    registry: Arc<dyn crate::delivery::Registry>,
    recipients: std::thread::JoinHandle<()>,
    outbox: std::thread::JoinHandle<()>,
    stop: Arc<AtomicBool>,
    started: Instant,
}

impl FollowUp {
    fn start(
        cfg: &Config,
        store: Arc<dyn Store>,
        tally: Arc<Mutex<Tally>>,
        sealer: Sealer,
    ) -> anyhow::Result<FollowUp> {
        let (sent_tx, sent_rx) = crossbeam_channel::bounded(1024);
        let registry = Arc::new(simulate::SimulatedRegistry {
            store: store.clone(),
            seed: 11,
        });
        let scheduler =
            super::scheduler(cfg, store.clone(), registry.clone(), Some(sent_tx), None)?;
        let scheduler = Arc::new(scheduler);
        let stop = Arc::new(AtomicBool::new(false));
        // Recipients react on the scale of the (compressed) round interval.
        let gap = cfg
            .delivery
            .round_intervals
            .get(1)
            .map(|d| d.0)
            .unwrap_or_default();
        let model = simulate::RecipientModel {
            first_delay: gap.mul_f64(0.4).max(Duration::from_millis(50)),
            second_delay: gap.mul_f64(0.3).max(Duration::from_millis(50)),
            ..Default::default()
        };
        let recipients =
            simulate::spawn_recipients(model, sent_rx, scheduler.clone(), stop.clone());
        let outbox = Outbox {
            store,
            sinks: vec![Box::new(TallySink(tally))],
            batch: 4096,
            sealer: Some(sealer),
            // One process, one sink: nothing to wait for.
            gate: None,
        }
        .spawn(stop.clone(), Duration::from_millis(50));
        Ok(FollowUp {
            scheduler,
            registry,
            recipients,
            outbox,
            stop,
            started: Instant::now(),
        })
    }

    /// Waits until every stored notice has an outcome (or the timeout, or
    /// Ctrl-C), then stops everything cleanly.
    fn finish(
        self,
        tally: &Mutex<Tally>,
        opts: &DemoOptions,
        shutdown: &AtomicBool,
        screen_taken: &AtomicBool,
        // Served until the follow-up is done; it holds the scheduler.
        inbox: Option<crate::http::HttpServer>,
    ) -> (Duration, bool) {
        let wait_start = Instant::now();
        let mut tty = std::io::stderr().is_terminal();
        let mut last_print = Instant::now();
        let settled = loop {
            let (stored, d) = {
                let t = tally.lock().unwrap_or_else(|p| p.into_inner());
                (t.stored, t.delivery.clone())
            };
            let done = d.settled();
            if done >= stored {
                break true;
            }
            if shutdown.load(Ordering::SeqCst)
                || wait_start.elapsed() > opts.follow_up_timeout
                || self.scheduler.failed()
            {
                break false;
            }
            // Asked each time: stderr is a file while the dashboard has the screen.
            tty = tty || std::io::stderr().is_terminal();
            let every = if tty {
                Duration::from_millis(500)
            } else {
                Duration::from_secs(5)
            };
            if opts.progress
                && !screen_taken.load(Ordering::SeqCst)
                && last_print.elapsed() >= every
            {
                last_print = Instant::now();
                let line = format!(
                    "[follow-up {:>5.1}s] notified {}  confirmations {}  served {}  not served {}  unreachable {}  settled {}/{}",
                    self.started.elapsed().as_secs_f64(),
                    group(d.sent_to_recipients()),
                    group(d.confirmations),
                    group(d.served),
                    group(d.not_served),
                    group(d.unreachable.values().sum()),
                    group(done),
                    group(stored)
                );
                let mut err = std::io::stderr();
                let _ = if tty {
                    write!(err, "\r{line}\x1b[K")
                } else {
                    writeln!(err, "{line}")
                };
                let _ = err.flush();
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if opts.progress && tty && !screen_taken.load(Ordering::SeqCst) {
            eprintln!();
        }
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.recipients.join();
        drop(inbox);
        if let Ok(s) = Arc::try_unwrap(self.scheduler) {
            s.stop();
        }
        let _ = self.outbox.join();
        (self.started.elapsed(), settled)
    }
}

fn progress_loop(
    total: u64,
    acked: &AtomicU64,
    tally: &Mutex<Tally>,
    done: &AtomicBool,
    screen_taken: &AtomicBool,
) {
    let start = Instant::now();
    let mut last = (Instant::now(), 0u64);
    let mut err = std::io::stderr();
    let mut tty = std::io::stderr().is_terminal();
    while !done.load(Ordering::SeqCst) {
        // Asked each time: stderr is a file while the dashboard has the
        // screen, and the terminal again after it closes.
        tty = tty || std::io::stderr().is_terminal();
        let every = if tty {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(5)
        };
        let tick = Instant::now();
        while tick.elapsed() < every && !done.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let n = acked.load(Ordering::Acquire);
        let now = Instant::now();
        if screen_taken.load(Ordering::SeqCst) {
            last = (now, n);
            continue;
        }
        let rate = (n - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-6);
        last = (now, n);
        let (rej, dead, p99) = {
            let t = tally.lock().unwrap_or_else(|p| p.into_inner());
            (
                t.rejected_total(),
                t.dead_letters_total(),
                t.latency_us.value_at_quantile(0.99),
            )
        };
        let line = format!(
            "[{:>6.1}s] {:>10}/{} durable ({:>5.1}%)  {:>8.0}/s  rejected {}  dead-lettered {}  p99 {:.1} ms",
            start.elapsed().as_secs_f64(),
            group(n),
            group(total),
            100.0 * n as f64 / total.max(1) as f64,
            rate,
            group(rej),
            group(dead),
            p99 as f64 / 1000.0
        );
        let _ = if tty {
            write!(err, "\r{line}\x1b[K")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
    if tty && !screen_taken.load(Ordering::SeqCst) {
        let _ = writeln!(err);
    }
}

/// The dashboard as the demo's progress: `karpoosheh-monitor` in a child
/// process on the same terminal, pointed at the demo's metrics.
///
/// While it has the screen the demo's own stderr (log lines) goes to a
/// file, so nothing scribbles over it. When the demo's work ends it is
/// asked to stop (SIGTERM: it restores the terminal itself); whatever
/// happens to it, the terminal modes saved before it started are put back.
/// If the operator quits it early, plain progress resumes; Ctrl-c in it
/// (raw mode turns Ctrl-c into a key, exit status 130) stops the demo as
/// Ctrl-c would have.
struct Dashboard {
    stop: Arc<AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
}

impl Dashboard {
    fn start(
        addr: std::net::SocketAddr,
        operator: Option<(std::net::SocketAddr, PathBuf)>,
        log: &Path,
        screen_taken: Arc<AtomicBool>,
        shutdown: Arc<AtomicBool>,
    ) -> Option<Dashboard> {
        if std::env::var("KARPOOSHEH_DEMO_DASHBOARD").is_ok_and(|v| v == "0")
            || !std::io::stdout().is_terminal()
            || !std::io::stderr().is_terminal()
        {
            return None;
        }
        let exe = std::env::current_exe()
            .ok()?
            .with_file_name("karpoosheh-monitor");
        if !exe.is_file() {
            eprintln!(
                "karpoosheh demo: no dashboard ({} not found; `cargo build -p karpoosheh-monitor` builds it): plain progress instead",
                exe.display()
            );
            return None;
        }
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .ok()?;
        let terminal = SavedTerminal::save();
        let mut command = std::process::Command::new(&exe);
        command
            .arg(format!("http://{addr}/metrics"))
            // The demo is short: scrape often, rates over a few seconds.
            .args(["--interval", "1s", "--rate-window", "5s", "--window", "5m"])
            .args(["--title", "karpoosheh demo"]);
        // Its drill-down views read the demo's operator endpoint.
        if let Some((listen, token_file)) = operator {
            command
                .arg("--operator-endpoint")
                .arg(listen.to_string())
                .arg("--operator-token-file")
                .arg(token_file);
        }
        let child = command.spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "karpoosheh demo: cannot start the dashboard ({e}): plain progress instead"
                );
                return None;
            }
        };
        // SAFETY: dup/dup2 on the process's own stderr; `saved` is closed
        // exactly once, by the watcher after restoring.
        let saved = unsafe { libc::dup(2) };
        if saved >= 0 {
            unsafe { libc::dup2(log_file.as_raw_fd(), 2) };
        }
        screen_taken.store(true, Ordering::SeqCst);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let log = log.to_owned();
        let watcher = std::thread::Builder::new()
            .name("dashboard".into())
            .spawn(move || {
                let pid = child.id() as libc::pid_t;
                let mut asked: Option<Instant> = None;
                let status = loop {
                    match child.try_wait() {
                        Ok(Some(status)) => break Some(status),
                        Ok(None) => {}
                        Err(_) => break None,
                    }
                    if stopping.load(Ordering::SeqCst) {
                        match asked {
                            // SAFETY: signals our own child, still unreaped.
                            None => {
                                unsafe { libc::kill(pid, libc::SIGTERM) };
                                asked = Some(Instant::now());
                            }
                            Some(t) if t.elapsed() > Duration::from_secs(3) => {
                                let _ = child.kill();
                            }
                            Some(_) => {}
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                };
                if saved >= 0 {
                    unsafe {
                        libc::dup2(saved, 2);
                        libc::close(saved);
                    }
                }
                let clean = status.is_some_and(|s| s.code().is_some());
                terminal.restore(!clean);
                screen_taken.store(false, Ordering::SeqCst);
                drop(log_file);
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                if status.and_then(|s| s.code()) == Some(130) {
                    eprintln!("karpoosheh demo: Ctrl-c in the dashboard: stopping cleanly");
                    shutdown.store(true, Ordering::SeqCst);
                } else {
                    eprintln!(
                        "karpoosheh demo: dashboard closed; plain progress follows (log lines meanwhile: {})",
                        log.display()
                    );
                }
            })
            .ok()?;
        Some(Dashboard {
            stop,
            watcher: Some(watcher),
        })
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
    }
}

/// The terminal's modes before the dashboard changed them.
struct SavedTerminal(Option<libc::termios>);

impl SavedTerminal {
    fn save() -> SavedTerminal {
        // SAFETY: tcgetattr fills the struct it is given or fails.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        let ok = unsafe { libc::tcgetattr(1, &mut t) } == 0;
        SavedTerminal(ok.then_some(t))
    }

    /// Puts the modes back; after a child that did not exit by itself,
    /// also leaves the alternate screen and shows the cursor.
    fn restore(&self, reset_screen: bool) {
        if let Some(t) = &self.0 {
            // SAFETY: restores modes read from the same descriptor.
            unsafe { libc::tcsetattr(1, libc::TCSANOW, t) };
        }
        if reset_screen {
            let mut out = std::io::stdout();
            let _ = out.write_all(b"\x1b[?1049l\x1b[?25h");
            let _ = out.flush();
        }
    }
}

/// 1234567 → "1,234,567".
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl DemoReport {
    /// True when every record is accounted for exactly as generated.
    pub fn accounted(&self) -> bool {
        let t = &self.tally;
        t.total() == self.records
            && t.stored == self.expected.stored
            && t.duplicates == self.expected.duplicates
            && t.rejected_total() == self.expected.rejected
            && t.dead_letters_total() == self.expected.dead_letters
    }

    /// The final report, for people.
    pub fn render(&self) -> String {
        let t = &self.tally;
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let q = |p: f64| t.latency_us.value_at_quantile(p) as f64 / 1000.0;
        let mut s = String::new();
        use std::fmt::Write as _;
        let _ = writeln!(s, "\nKarpoosheh demo — final report");
        let _ = writeln!(
            s,
            "  records read          {:>12}   (of {} offered)",
            group(self.records),
            group(self.offered)
        );
        let _ = writeln!(s, "  elapsed               {:>12.2} s", secs);
        let _ = writeln!(
            s,
            "  throughput            {:>12} records/s   ({:.1} MB/s of notices stored)",
            group((self.records as f64 / secs) as u64),
            t.stored_payload_bytes as f64 / secs / 1e6
        );
        let _ = writeln!(s, "  latency (arrival → durable, fsync'd)");
        let _ = writeln!(s, "      p50 {:>8.1} ms   p90 {:>8.1} ms   p99 {:>8.1} ms   p99.9 {:>8.1} ms   max {:>8.1} ms", q(0.5), q(0.9), q(0.99), q(0.999), t.latency_us.max() as f64 / 1000.0);
        let _ = writeln!(s, "  outcomes");
        let _ = writeln!(
            s,
            "      stored            {:>12}   (expected {})",
            group(t.stored),
            group(self.expected.stored)
        );
        let _ = writeln!(
            s,
            "      duplicates        {:>12}   (exact re-sends absorbed; expected {})",
            group(t.duplicates),
            group(self.expected.duplicates)
        );
        let _ = writeln!(
            s,
            "      rejected          {:>12}   (kept for the agency; expected {})",
            group(t.rejected_total()),
            group(self.expected.rejected)
        );
        let _ = writeln!(
            s,
            "      dead-lettered     {:>12}   (undecodable; expected {})",
            group(t.dead_letters_total()),
            group(self.expected.dead_letters)
        );
        let mut reasons: Vec<(Reason, u64, &str)> = t
            .rejected
            .iter()
            .map(|(r, n)| (*r, *n, "rejected"))
            .chain(t.dead_letters.iter().map(|(r, n)| (*r, *n, "dead letter")))
            .collect();
        reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
        if !reasons.is_empty() {
            let _ = writeln!(s, "  rejections by reason");
            for (r, n, what) in reasons {
                let _ = writeln!(
                    s,
                    "      {:<30} {:>10}   {what}: {}",
                    r.code(),
                    group(n),
                    r.describe()
                );
            }
        }
        let verdict = if self.records < self.offered {
            if t.total() == self.records {
                format!(
                    "stopped early: all {} records read were handled durably and acknowledged ({} generated were never read)",
                    group(self.records),
                    group(self.offered - self.records)
                )
            } else {
                format!(
                    "MISMATCH: {} handled of {} read",
                    group(t.total()),
                    group(self.records)
                )
            }
        } else if self.accounted() {
            format!("all {} records accounted for: stored + duplicates + rejected + dead-lettered = offered", group(self.records))
        } else {
            format!(
                "MISMATCH: {} handled of {} offered, or outcomes differ from what was generated",
                group(t.total()),
                group(self.records)
            )
        };
        let _ = writeln!(s, "  check                 {verdict}");
        if let Some((took, settled)) = self.follow_up {
            let d = &t.delivery;
            let _ = writeln!(s, "  legal service (art. 29; SIMULATED gateways and recipients, rounds seconds apart)");
            let sent: Vec<String> = d
                .sent
                .iter()
                .map(|((c, rep), n)| {
                    format!(
                        "{} {}{}",
                        group(*n),
                        crate::channel::channel_label(*c),
                        if *rep { " to representatives" } else { "" }
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                "      notifications     {:>12}   ({})",
                group(d.sent.values().sum()),
                sent.join(", ")
            );
            let _ = writeln!(
                s,
                "      rounds failed     {:>12}   (every channel failed after retries)",
                group(d.rounds_failed)
            );
            let _ = writeln!(s, "      confirmations     {:>12}", group(d.confirmations));
            let pct = |n: u64| 100.0 * n as f64 / t.stored.max(1) as f64;
            let _ = writeln!(
                s,
                "      served            {:>12}   ({:.1}% of stored; two confirmations)",
                group(d.served),
                pct(d.served)
            );
            let _ = writeln!(
                s,
                "      not served        {:>12}   ({:.1}%; the agency falls back to paper)",
                group(d.not_served),
                pct(d.not_served)
            );
            for (status, n) in &d.unreachable {
                let _ = writeln!(
                    s,
                    "      unreachable       {:>12}   (mailbox {status})",
                    group(*n)
                );
            }
            if d.access_insufficient > 0 {
                let _ = writeln!(
                    s,
                    "      access too low    {:>12}   (reported; rounds still sent)",
                    group(d.access_insufficient)
                );
            }
            let q = |p: f64| d.time_to_served_ms.value_at_quantile(p) as f64 / 1000.0;
            if d.served > 0 {
                let _ = writeln!(
                    s,
                    "      stored → served   p50 {:.1} s   p90 {:.1} s   p99 {:.1} s",
                    q(0.5),
                    q(0.9),
                    q(0.99)
                );
            }
            let _ = writeln!(
                s,
                "      follow-up         {:>12.1} s   ({})",
                took.as_secs_f64(),
                if settled {
                    "every stored notice reached an outcome"
                } else {
                    "stopped before every notice reached an outcome"
                }
            );
        }
        let _ = writeln!(
            s,
            "  store on disk         {:>12.1} MB in {}",
            self.store_disk_bytes as f64 / 1e6,
            self.data_dir.display()
        );
        if let Some(w) = self.disk_written_bytes {
            // Write amplification: what reached the disk per byte of
            // notice stored (follow-up writes included when it ran).
            let _ = write!(s, "  written to disk       {:>12.1} MB", w as f64 / 1e6);
            if t.stored_payload_bytes > 0 {
                let _ = write!(
                    s,
                    "   ({:.2} bytes per byte of notice stored)",
                    w as f64 / t.stored_payload_bytes as f64
                );
            }
            let _ = writeln!(s);
        }
        if let Some(rss) = self.peak_rss_bytes {
            let _ = writeln!(s, "  peak memory (RSS)     {:>12.1} MB", rss as f64 / 1e6);
        }
        if let Some(addr) = self.metrics_addr {
            let _ = writeln!(s, "  metrics were at       http://{addr}/metrics");
        }
        if let Some(log) = &self.dashboard_log {
            let _ = writeln!(s, "  log during dashboard  {}", log.display());
        }
        if let Some(f) = &self.inbox_try {
            let _ = writeln!(
                s,
                "  inbox API was tried   with tokens and curl lines in {} (served while the demo ran)",
                f.display()
            );
        }
        if let Some((id, code)) = &self.example {
            let dir = self.data_dir.display();
            let _ = writeln!(s, "\nLook inside:");
            let _ = writeln!(s, "  karpoosheh --data-dir {dir} mailbox {id}");
            let _ = writeln!(s, "  karpoosheh --data-dir {dir} notice {code}");
            let _ = writeln!(
                s,
                "  karpoosheh --data-dir {dir} rejections --agency tax --limit 5"
            );
        }
        s
    }
}
