//! Lanes in the rounds: how long an urgent notice's round 1 takes to go
//! out while a campaign's rounds are due and hold every gateway at its
//! rate limit, against the same on an idle scheduler, against a notice of
//! the campaign's own lane and agency sent at the same moment, and
//! against another agency's notice on that lane.
//!
//! The real scheduler (its workers, `delivery.workers` of them) and the
//! real channel dispatcher with its rate limits and urgent reserve, over
//! simulated gateways that answer in 20 ± 10 ms and never fail. Round 1
//! of a notice is "out" when the scheduler has recorded it durably and
//! tells its observer; the time is taken from the store write that
//! started the notice's follow-up (as the pipeline writes it).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{Duration as ChronoDuration, Utc};
use karpoosheh_engine::simulate::SimulatedRegistry;
use karpoosheh_engine::{
    notifier, open_store, Config, DeliveryWrite, Scheduler, SentNotification, SimulatedConfig,
    Store, SystemClock,
};
use karpoosheh_schemas::{AgencyId, MailboxId, MailboxStatus, Priority, TrackingCode};

pub struct RoundsLanesOptions {
    /// The campaign's rounds, due once the idle phase is over.
    pub due: u64,
    /// Probes per phase (one every `interval`).
    pub probes: u64,
    pub interval: Duration,
    /// Each gateway's `rate_per_sec` (the campaign saturates it).
    pub gateway_rate: f64,
    pub dir: PathBuf,
    pub config: Config,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Latencies {
    pub sent: u64,
    /// Probes whose round 1 had not gone out when the run ended.
    pub not_sent: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, serde::Serialize)]
pub struct RoundsLanesResult {
    pub due: u64,
    pub gateway_rate: f64,
    pub urgent_reserve: f64,
    /// Urgent probes on an idle scheduler.
    pub idle_urgent: Latencies,
    /// Urgent probes while the campaign's rounds are due.
    pub busy_urgent: Latencies,
    /// Bulk-lane probes sent at the same moments as `busy_urgent`: what
    /// an urgent notice waited before lanes (one lane for all). Those not
    /// out 60 s after the last probe are counted in `not_sent`.
    pub busy_bulk: Latencies,
    /// Bulk-lane probes of another agency (customs, in its own agencies'
    /// queue, weight 1 as tax's), sent at the same moments: what its
    /// notices waited behind another's campaign.
    pub busy_other_bulk: Latencies,
    /// Campaign notifications accepted by the gateways per second, before
    /// the probes and while they were sent.
    pub campaign_per_sec_before: f64,
    pub campaign_per_sec_during: f64,
}

/// Recipients the simulated registry has active, without representatives
/// (so a round is one notification), from `body` on.
fn active_people(from: &mut u32, n: usize, seed: u64) -> Vec<MailboxId> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        *from += 1;
        if let Some(id) = MailboxId::person_from_body(*from) {
            let p = SimulatedRegistry::profile_of(id, seed);
            if p.status == MailboxStatus::Active && p.representatives.is_empty() {
                out.push(id);
            }
        }
    }
    out
}

/// A new notice's follow-up as the store starts it: the record and its
/// timers, round 1 due at `due`. The campaign is tax's, the urgent
/// notices the judiciary's.
fn follow_up(
    agency: &str,
    code: TrackingCode,
    recipient: MailboxId,
    lane: Priority,
    due: chrono::DateTime<Utc>,
    reference: String,
) -> DeliveryWrite {
    let mut rec = crate::sched_bench::pending_record(
        code,
        AgencyId::parse(agency).expect("valid agency IDs"),
        reference,
        recipient,
        "ابلاغیه",
        Utc::now(),
        due,
    );
    rec.priority = lane;
    crate::sched_bench::follow_up(rec)
}

fn latencies(mut ms: Vec<f64>, not_sent: u64) -> Latencies {
    ms.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| {
        if ms.is_empty() {
            return 0.0;
        }
        ms[((ms.len() - 1) as f64 * p).round() as usize]
    };
    Latencies {
        sent: ms.len() as u64,
        not_sent,
        p50_ms: q(0.5),
        p90_ms: q(0.9),
        p99_ms: q(0.99),
        max_ms: ms.last().copied().unwrap_or(0.0),
    }
}

pub fn rounds_lanes_benchmark(opts: RoundsLanesOptions) -> anyhow::Result<RoundsLanesResult> {
    let dir = opts.dir.join("rounds-lanes");
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = opts.config.clone();
    cfg.store.path = dir.clone();
    cfg.delivery.quiet_hours = String::new();
    for sim in [
        &mut cfg.channels.sms.simulated,
        &mut cfg.channels.email.simulated,
        &mut cfg.channels.push.simulated,
    ] {
        *sim = SimulatedConfig::zero_latency();
        sim.latency = karpoosheh_schemas::HumanDuration(Duration::from_millis(20));
        sim.latency_jitter = karpoosheh_schemas::HumanDuration(Duration::from_millis(10));
    }
    for policy in [
        &mut cfg.channels.sms.policy,
        &mut cfg.channels.email.policy,
        &mut cfg.channels.push.policy,
    ] {
        policy.rate_per_sec = opts.gateway_rate;
        policy.burst = opts.gateway_rate.ceil().max(1.0) as u32;
    }
    let urgent_reserve = cfg.channels.sms.policy.urgent_reserve;
    let store: Arc<dyn Store> = open_store(&cfg)?;
    let seed = 1;
    let mut body = 100_000_000u32;
    let mut codes = karpoosheh_engine::TrackingCodes::new(1, None);

    // The campaign, due once the idle phase is over.
    let idle_phase = opts.interval * opts.probes as u32 + Duration::from_secs(2);
    let campaign_due =
        Utc::now() + ChronoDuration::from_std(idle_phase + Duration::from_secs(5)).expect("short");
    let people = active_people(&mut body, opts.due as usize, seed);
    let mut batch = Vec::with_capacity(10_000);
    for (i, id) in people.into_iter().enumerate() {
        let code = codes.next(Utc::now().timestamp_millis());
        batch.push(follow_up(
            "tax",
            code,
            id,
            Priority::Bulk,
            campaign_due,
            format!("campaign-{i}"),
        ));
        if batch.len() == 10_000 {
            store.write_delivery(&batch)?;
            batch.clear();
        }
    }
    store.write_delivery(&batch)?;
    drop(batch);

    // The scheduler, and who watches what it sends.
    let (obs_tx, obs_rx) = crossbeam_channel::bounded::<Vec<SentNotification>>(1024);
    let scheduler = Scheduler {
        config: cfg.delivery.clone(),
        store: store.clone(),
        notifier: notifier(&cfg)?,
        registry: Arc::new(SimulatedRegistry {
            store: store.clone(),
            seed,
        }),
        clock: Arc::new(SystemClock),
        observer: Some(obs_tx),
        agencies: None,
    };
    let sent_at: Arc<Mutex<HashMap<TrackingCode, Instant>>> = Arc::default();
    let campaign_sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let sent_at = sent_at.clone();
        let campaign_sent = campaign_sent.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok(batch) = obs_rx.recv_timeout(Duration::from_millis(50)) else {
                    continue;
                };
                let now = Instant::now();
                let mut m = sent_at.lock().unwrap_or_else(|p| p.into_inner());
                for s in batch.into_iter().filter(|s| s.round == 1) {
                    m.entry(s.code).or_insert(now);
                    campaign_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let handle = scheduler.start()?;

    // Probes: (code, lane, written at); customs' bulk ones in its queue.
    let mut probe_of =
        |agency: &str, lane: Priority, n: u64| -> anyhow::Result<(TrackingCode, Instant)> {
            let id = active_people(&mut body, 1, seed)[0];
            let code = codes.next(Utc::now().timestamp_millis());
            let reference = format!("probe-{lane}-{n}");
            store.write_delivery(&[follow_up(agency, code, id, lane, Utc::now(), reference)])?;
            Ok((code, Instant::now()))
        };
    let mut idle = Vec::new();
    for n in 0..opts.probes {
        idle.push(probe_of("judiciary", Priority::Urgent, n)?);
        std::thread::sleep(opts.interval);
    }
    // Wait for the campaign to fall due and fill the gateways.
    while Utc::now() < campaign_due + ChronoDuration::seconds(3) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // The campaign's rate alone, over as long as the probes will take
    // (at a gateway's limit a batch takes seconds: a short window would
    // see none end).
    let c0 = (campaign_sent.load(Ordering::Relaxed), Instant::now());
    std::thread::sleep((opts.interval * opts.probes as u32).max(Duration::from_secs(10)));
    let c1 = (campaign_sent.load(Ordering::Relaxed), Instant::now());
    let mut busy_urgent = Vec::new();
    let mut busy_bulk = Vec::new();
    let mut busy_other = Vec::new();
    for n in 0..opts.probes {
        busy_urgent.push(probe_of("judiciary", Priority::Urgent, opts.probes + n)?);
        busy_bulk.push(probe_of("tax", Priority::Bulk, opts.probes + n)?);
        busy_other.push(probe_of("customs", Priority::Bulk, opts.probes + n)?);
        std::thread::sleep(opts.interval);
    }
    let c2 = (campaign_sent.load(Ordering::Relaxed), Instant::now());
    // Give the last probes time to go out (the bulk ones may not).
    let give_up = Instant::now() + Duration::from_secs(60);
    let all_out = |ps: &[(TrackingCode, Instant)]| {
        let m = sent_at.lock().unwrap_or_else(|p| p.into_inner());
        ps.iter().all(|(c, _)| m.contains_key(c))
    };
    while Instant::now() < give_up
        && !(all_out(&idle) && all_out(&busy_urgent) && all_out(&busy_other))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    while Instant::now() < give_up && !all_out(&busy_bulk) {
        std::thread::sleep(Duration::from_millis(200));
    }
    handle.stop();
    stop.store(true, Ordering::SeqCst);
    let _ = watcher.join();
    let m = sent_at.lock().unwrap_or_else(|p| p.into_inner());
    let measure = |ps: &[(TrackingCode, Instant)]| {
        let mut ms = Vec::new();
        let mut missing = 0;
        for (c, t) in ps {
            match m.get(c) {
                Some(s) => ms.push(s.saturating_duration_since(*t).as_secs_f64() * 1e3),
                None => missing += 1,
            }
        }
        latencies(ms, missing)
    };
    let probes_in = |from: Instant, to: Instant| {
        // The probes' own notifications are not the campaign's.
        let all = idle
            .iter()
            .chain(&busy_urgent)
            .chain(&busy_bulk)
            .chain(&busy_other);
        all.filter(|(c, _)| m.get(c).is_some_and(|s| *s >= from && *s < to))
            .count() as u64
    };
    let rate = |a: (u64, Instant), b: (u64, Instant)| {
        let n = b.0 - a.0 - probes_in(a.1, b.1);
        n as f64 / b.1.duration_since(a.1).as_secs_f64()
    };
    let result = RoundsLanesResult {
        due: opts.due,
        gateway_rate: opts.gateway_rate,
        urgent_reserve,
        idle_urgent: measure(&idle),
        busy_urgent: measure(&busy_urgent),
        busy_bulk: measure(&busy_bulk),
        busy_other_bulk: measure(&busy_other),
        campaign_per_sec_before: rate(c0, c1),
        campaign_per_sec_during: rate(c1, c2),
    };
    drop(m);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(result)
}
