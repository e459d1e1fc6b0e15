//! The inbox API under load, beside ingest, on one node: what citizens'
//! apps cost the engine and what they get from it.
//!
//! One process holds a whole node on the embedded store: the pipeline
//! (fed in process by the traffic model), the article-29 scheduler, and
//! the inbox API on a loopback port with an identity provider made for the
//! run. A fill (not measured for the API) stores `fill` notices; then
//! people and their tracking codes are drawn from it, each given a token.
//! The API is driven open-loop at `rate` calls per second over
//! `connections` keep-alive connections (as `oha -q` does): half first
//! pages of a mailbox, half openings of one of its notices; each call's
//! latency counts from when it was *due*, not when it was sent, so a slow
//! server is not hidden by a client that waits for it (coordinated
//! omission).
//!
//! Phases, in one run, so their ratios are fair on a shared machine:
//! ingest alone flat out (A), ingest flat out with the API load (B), then
//! B and A again (ABBA); ingest at half of A's rate with the API load (C:
//! the target's condition); the API alone (D). Each ingest phase stores
//! `phase_notices` new notices.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use karpoosheh_engine::{
    open_store, pipeline, Config, MemorySource, Scheduler, SchedulerHandle, Store, StoreRegistry,
    SystemClock, Tally, TallySink,
};
use karpoosheh_schemas::{MailboxId, TrackingCode};
use karpoosheh_traffic::{Traffic, TrafficConfig};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

pub struct InboxOptions {
    /// API calls per second offered.
    pub rate: f64,
    pub connections: usize,
    /// The share of calls that open a notice (the rest list a mailbox).
    pub opens: f64,
    /// Notices stored before the phases.
    pub fill: u64,
    /// Notices each ingest phase stores.
    pub phase_notices: u64,
    /// Length of the API-alone phase.
    pub api_secs: f64,
    pub dir: PathBuf,
    pub config: Config,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ApiStats {
    pub calls: u64,
    /// Answered 200.
    pub ok: u64,
    pub errors: u64,
    pub offered_per_sec: f64,
    pub answered_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// First pages of a mailbox alone, and openings alone.
    pub list_p50_ms: f64,
    pub list_p99_ms: f64,
    pub open_p50_ms: f64,
    pub open_p99_ms: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Phase {
    pub name: String,
    /// Notices per second the pipeline stored (none for the API alone).
    pub ingest_per_sec: Option<f64>,
    pub secs: f64,
    pub api: Option<ApiStats>,
}

#[derive(Debug, serde::Serialize)]
pub struct InboxResult {
    pub fill: u64,
    pub people: usize,
    pub rate: f64,
    pub connections: usize,
    pub phases: Vec<Phase>,
    /// Median ingest rate alone (A) and with the API load (B).
    pub ingest_alone_per_sec: f64,
    pub ingest_with_api_per_sec: f64,
    /// 1 - B / A.
    pub ingest_slowdown: f64,
}

/// A person the load acts as: their token and some of their notices.
struct Person {
    token: String,
    codes: Vec<TrackingCode>,
}

fn token(key: &karpoosheh_engine::keys::SigningKey, who: MailboxId) -> String {
    let now = chrono::Utc::now().timestamp();
    karpoosheh_engine::sign_token(
        key,
        &serde_json::json!({"iss": ISSUER, "aud": "karpoosheh", "sub": who.to_string(),
            "acr": 3, "azp": "loadtest", "iat": now, "exp": now + 6 * 3600}),
    )
}

const ISSUER: &str = "https://idp.loadtest.karpoosheh.invalid";

/// Stores `n` new notices (traffic `seed`) through the pipeline, at `rate`
/// per second (0: flat out); returns the rate achieved.
fn ingest(
    cfg: &Config,
    store: &Arc<dyn Store>,
    seed: u64,
    n: u64,
    rate: f64,
) -> anyhow::Result<f64> {
    let traffic = Traffic::new(TrafficConfig {
        notices: n,
        bad_ratio: 0.0,
        duplicate_ratio: 0.0,
        seed,
        ..Default::default()
    });
    let (tx, source) = MemorySource::channel(cfg.pipeline.queue_depth * 2, None);
    let chunk = cfg.pipeline.decode_chunk as u64;
    let feeder = std::thread::spawn(move || {
        let start = Instant::now();
        let mut i = 0;
        while i < n {
            let end = (i + chunk).min(n);
            if !tx.send(
                traffic
                    .chunk(i, end)
                    .into_iter()
                    .map(|g| g.payload)
                    .collect(),
            ) {
                break;
            }
            i = end;
            if rate > 0.0 {
                let due = Duration::from_secs_f64(i as f64 / rate);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
    });
    let tally = Arc::new(Mutex::new(Tally::default()));
    let t = Instant::now();
    pipeline(cfg, store.clone(), vec![Box::new(TallySink(tally.clone()))]).run(Box::new(source))?;
    let secs = t.elapsed().as_secs_f64();
    feeder.join().ok();
    let stored = tally.lock().unwrap_or_else(|p| p.into_inner()).stored;
    anyhow::ensure!(stored == n, "stored {stored} of {n}");
    Ok(n as f64 / secs)
}

/// One keep-alive connection: GET `path` with `token`; the status.
fn call(conn: &mut Option<BufReader<TcpStream>>, addr: SocketAddr, path: &str, token: &str) -> u16 {
    for _ in 0..2 {
        if conn.is_none() {
            match TcpStream::connect(addr) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    *conn = Some(BufReader::new(s));
                }
                Err(_) => return 0,
            }
        }
        let c = conn.as_mut().expect("connected");
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: k\r\nAuthorization: Bearer {token}\r\n\r\n");
        if c.get_mut().write_all(req.as_bytes()).is_err() {
            *conn = None;
            continue;
        }
        let mut status = 0;
        let mut len = 0usize;
        let mut line = String::new();
        let mut ok = true;
        loop {
            line.clear();
            match c.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    ok = false;
                    break;
                }
                Ok(_) => {}
            }
            if status == 0 {
                status = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
            } else if line == "\r\n" {
                break;
            } else if let Some(v) = line
                .to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
            {
                len = v.parse().unwrap_or(0);
            }
        }
        if !ok {
            *conn = None;
            continue;
        }
        let mut body = vec![0; len];
        if c.read_exact(&mut body).is_err() {
            *conn = None;
            continue;
        }
        return status;
    }
    0
}

/// Drives the API open-loop at `rate` until `stop`; latencies from each
/// call's due time.
fn drive(
    addr: SocketAddr,
    people: Arc<Vec<Person>>,
    rate: f64,
    connections: usize,
    opens: f64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<ApiStats> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let threads: Vec<_> = (0..connections)
            .map(|j| {
                let people = people.clone();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let new =
                        || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
                    let (mut hl, mut ho) = (new(), new());
                    let mut rng = SmallRng::seed_from_u64(j as u64 + 7);
                    let mut conn = None;
                    let (mut calls, mut ok) = (0u64, 0u64);
                    let mut i = j as u64;
                    while !stop.load(Ordering::Relaxed) {
                        let due = start + Duration::from_secs_f64(i as f64 / rate);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let p = &people[rng.random_range(0..people.len())];
                        let list = !rng.random_bool(opens) || p.codes.is_empty();
                        let path = if list {
                            "/v1/mailbox?limit=20".to_owned()
                        } else {
                            format!(
                                "/v1/notices/{}",
                                p.codes[rng.random_range(0..p.codes.len())]
                            )
                        };
                        let status = call(&mut conn, addr, &path, &p.token);
                        let h = if list { &mut hl } else { &mut ho };
                        let _ = h.record(due.elapsed().as_micros().max(1) as u64);
                        calls += 1;
                        ok += (status == 200) as u64;
                        i += connections as u64;
                    }
                    (hl, ho, calls, ok)
                })
            })
            .collect();
        let new = || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
        let (mut all, mut lists, mut opens) = (new(), new(), new());
        let (mut calls, mut ok) = (0, 0);
        for t in threads {
            let (hl, ho, c, o) = t.join().expect("driver thread");
            let _ = all.add(&hl);
            let _ = all.add(&ho);
            let _ = lists.add(&hl);
            let _ = opens.add(&ho);
            calls += c;
            ok += o;
        }
        let ms = |h: &Histogram<u64>, p: f64| h.value_at_quantile(p) as f64 / 1000.0;
        let secs = start.elapsed().as_secs_f64();
        let q = |p: f64| all.value_at_quantile(p) as f64 / 1000.0;
        ApiStats {
            calls,
            ok,
            errors: calls - ok,
            offered_per_sec: rate,
            answered_per_sec: calls as f64 / secs,
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: all.max() as f64 / 1000.0,
            list_p50_ms: ms(&lists, 0.5),
            list_p99_ms: ms(&lists, 0.99),
            open_p50_ms: ms(&opens, 0.5),
            open_p99_ms: ms(&opens, 0.99),
        }
    })
}

pub fn inbox_benchmark(opts: InboxOptions) -> anyhow::Result<InboxResult> {
    let _ = std::fs::remove_dir_all(&opts.dir);
    std::fs::create_dir_all(&opts.dir)?;
    let mut cfg = opts.config.clone();
    cfg.store.path = opts.dir.join("store");
    // The identity provider of the run.
    let key = karpoosheh_engine::keys::SigningKey::generate("loadtest-idp")?;
    let jwks = opts.dir.join("idp.jwks.json");
    std::fs::write(&jwks, key.public_jwks_json())?;
    cfg.identity.jwks_file = jwks;
    cfg.identity.issuer = ISSUER.into();
    cfg.inbox.listen = "127.0.0.1:0".into();
    // One address and a few thousand people make all the calls: the
    // limits are not what is measured.
    cfg.inbox.requests_per_client_per_minute = 1e12;
    cfg.inbox.requests_per_subject_per_minute = 1e12;
    let store = open_store(&cfg)?;
    // The node's follow-up: no profiles here, so every notice waits for
    // its mailbox's activation (no rounds), as most of a fresh fill would.
    let registry: Arc<dyn karpoosheh_engine::Registry> = Arc::new(StoreRegistry(store.clone()));
    let scheduler: Arc<SchedulerHandle> = Arc::new(
        Scheduler {
            config: cfg.delivery.clone(),
            store: store.clone(),
            notifier: karpoosheh_engine::notifier(&cfg)?,
            registry: registry.clone(),
            clock: Arc::new(SystemClock),
            observer: None,
            agencies: None,
        }
        .start()?,
    );
    eprintln!("inbox benchmark: filling {} notices...", opts.fill);
    let fill_rate = ingest(&cfg, &store, 1, opts.fill, 0.0)?;
    eprintln!("  filled at {fill_rate:.0}/s");
    // People with notices, and their codes (not timed).
    let traffic = Traffic::new(TrafficConfig {
        notices: opts.fill,
        bad_ratio: 0.0,
        duplicate_ratio: 0.0,
        seed: 1,
        ..Default::default()
    });
    let mut rng = SmallRng::seed_from_u64(3);
    let mut people = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20_000 {
        if people.len() == 5000 {
            break;
        }
        let Some(id) = traffic.recipient_of(rng.random_range(0..opts.fill)) else {
            continue;
        };
        if !seen.insert(id) {
            continue;
        }
        let page = store.mailbox(id, None, 20)?;
        people.push(Person {
            token: token(&key, id),
            codes: page.notices.iter().map(|n| n.tracking_code).collect(),
        });
    }
    anyhow::ensure!(!people.is_empty(), "no mailboxes to read");
    let people = Arc::new(people);
    let server = karpoosheh_engine::inbox_server(&cfg, &store, Some(&scheduler), registry, None)?
        .expect("inbox.listen is set");
    let addr = server.addr;

    let mut phases = Vec::new();
    let mut seed = 100;
    let mut phase = |name: &str, ingest_rate: Option<f64>, api: bool| -> anyhow::Result<Phase> {
        seed += 1;
        let stop = Arc::new(AtomicBool::new(false));
        let driver = api.then(|| {
            drive(
                addr,
                people.clone(),
                opts.rate,
                opts.connections,
                opts.opens,
                stop.clone(),
            )
        });
        let t = Instant::now();
        let ingest_per_sec = match ingest_rate {
            Some(r) => Some(ingest(&cfg, &store, seed, opts.phase_notices, r)?),
            None => {
                std::thread::sleep(Duration::from_secs_f64(opts.api_secs));
                None
            }
        };
        let secs = t.elapsed().as_secs_f64();
        stop.store(true, Ordering::SeqCst);
        let api = driver.map(|d| d.join().expect("driver"));
        let p = Phase {
            name: name.into(),
            ingest_per_sec,
            secs,
            api,
        };
        eprintln!(
            "  {:<28} ingest {:>8}   api {}",
            p.name,
            p.ingest_per_sec.map_or("–".into(), |r| format!("{r:.0}/s")),
            p.api.as_ref().map_or("–".into(), |a| format!(
                "{:.0}/s answered, {} errors, p50 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms (list p99 {:.2}, open p99 {:.2})",
                a.answered_per_sec, a.errors, a.p50_ms, a.p99_ms, a.p999_ms, a.list_p99_ms, a.open_p99_ms
            ))
        );
        Ok(p)
    };
    phases.push(phase("A ingest alone", Some(0.0), false)?);
    phases.push(phase("B ingest + API", Some(0.0), true)?);
    phases.push(phase("B ingest + API", Some(0.0), true)?);
    phases.push(phase("A ingest alone", Some(0.0), false)?);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[0] + v[v.len() - 1]) / 2.0
    };
    let mut alone: Vec<f64> = phases
        .iter()
        .filter(|p| p.name.starts_with('A'))
        .filter_map(|p| p.ingest_per_sec)
        .collect();
    let mut with: Vec<f64> = phases
        .iter()
        .filter(|p| p.name.starts_with('B'))
        .filter_map(|p| p.ingest_per_sec)
        .collect();
    let (alone, with) = (median(&mut alone), median(&mut with));
    phases.push(phase("C half-rate ingest + API", Some(alone / 2.0), true)?);
    phases.push(phase("D API alone", None, true)?);
    drop(server);
    if let Ok(s) = Arc::try_unwrap(scheduler) {
        s.stop();
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&opts.dir);
    Ok(InboxResult {
        fill: opts.fill,
        people: people.len(),
        rate: opts.rate,
        connections: opts.connections,
        phases,
        ingest_alone_per_sec: alone,
        ingest_with_api_per_sec: with,
        ingest_slowdown: 1.0 - with / alone,
    })
}
