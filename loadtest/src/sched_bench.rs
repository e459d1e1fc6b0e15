//! The scheduler benchmark: `pending` notices with their round-1 timers in
//! the store, `due` of them due now and the rest later; the real scheduler
//! then sends the due rounds through the real channel dispatcher with
//! zero-latency simulated gateways and records them durably. Reports due
//! rounds per second, the disk cost of a pending round, and peak memory —
//! which must not grow with `pending` (run it at 1 and 10 million).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use karpoosheh_engine::simulate::SimulatedRegistry;
use karpoosheh_engine::SimulatedConfig;
use karpoosheh_engine::{
    notifier, open_store, Action, Config, DeliveryRecord, DeliveryState, DeliveryWrite, Pending,
    Scheduler, SystemClock,
};
use karpoosheh_schemas::{AgencyId, MailboxId, NoticeKind, TrackingCode};

pub struct SchedOptions {
    pub pending: u64,
    pub due: u64,
    pub dir: PathBuf,
    pub config: Config,
}

#[derive(Debug, serde::Serialize)]
pub struct SchedResult {
    pub pending: u64,
    pub due: u64,
    pub setup_per_sec: f64,
    pub due_rounds_per_sec: f64,
    pub disk_bytes: u64,
    pub disk_bytes_per_pending: f64,
    /// Peak RSS of the whole run, writing the pending state included.
    pub peak_rss_bytes: Option<u64>,
    /// Peak RSS from reopening the store (as a restarted node would) to the
    /// end of the scan: what `pending` waiting rounds cost a running node.
    pub scan_peak_rss_bytes: Option<u64>,
}

/// A notice's delivery record as the store starts it: accepted at `at`,
/// kept a year, round 1 due at `due`, in the normal lane.
pub(crate) fn pending_record(
    code: TrackingCode,
    agency: AgencyId,
    reference: String,
    recipient: MailboxId,
    title: &str,
    at: DateTime<Utc>,
    due: DateTime<Utc>,
) -> DeliveryRecord {
    DeliveryRecord {
        tracking_code: code,
        agency,
        reference,
        recipient,
        kind: NoticeKind::ServiceNotice,
        title: title.to_owned(),
        min_access_level: 1,
        accepted_at: at,
        expires_at: at + ChronoDuration::days(365),
        state: DeliveryState::Scheduled,
        next: Some(Pending {
            due_ms: due.timestamp_millis(),
            action: Action::Round { round: 1, retry: 0 },
        }),
        rounds: Vec::new(),
        confirmations: Vec::new(),
        access_reported: false,
        purged: false,
        opened: Vec::new(),
        shares: Vec::new(),
        priority: karpoosheh_schemas::Priority::Normal,
        paced: false,
        respond_by: None,
        reminded: None,
        queue: None,
    }
}

/// The store write that starts `rec`'s follow-up: the record and its
/// first timers.
pub(crate) fn follow_up(rec: DeliveryRecord) -> DeliveryWrite {
    DeliveryWrite {
        add_timers: rec.initial_timers(),
        record: Some(rec),
        ..Default::default()
    }
}

pub fn scheduler_benchmark(opts: SchedOptions) -> anyhow::Result<SchedResult> {
    let dir = opts.dir.join("scheduler");
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
    }
    // The scheduler's own rate, not a gateway contract's: no rate limits.
    for policy in [
        &mut cfg.channels.sms.policy,
        &mut cfg.channels.email.policy,
        &mut cfg.channels.push.policy,
    ] {
        policy.rate_per_sec = 0.0;
    }
    let store = open_store(&cfg)?;
    let agency = AgencyId::parse("tax").map_err(anyhow::Error::msg)?;
    let now = Utc::now();
    let later = now + ChronoDuration::days(1);

    // Setup: pending notices' follow-up state, written as the store writes
    // it for a new notice (a delivery record and its timers).
    let t = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    let mut body = 100_000_000u32;
    let mut codes = karpoosheh_engine::TrackingCodes::new(1, None);
    for i in 0..opts.pending {
        let recipient = loop {
            body += 1;
            if let Some(id) = MailboxId::person_from_body(body) {
                break id;
            }
        };
        let code = codes.next(now.timestamp_millis() - 60_000);
        let due = if i < opts.due { now } else { later };
        batch.push(follow_up(pending_record(
            code,
            agency.clone(),
            format!("bench-{i}"),
            recipient,
            "برگ تشخیص مالیات عملکرد ۱۴۰۳",
            now,
            due,
        )));
        if batch.len() == 10_000 {
            store.write_delivery(&batch)?;
            batch.clear();
        }
    }
    store.write_delivery(&batch)?;
    drop(batch);
    let setup_secs = t.elapsed().as_secs_f64();
    let peak_rss_bytes = karpoosheh_engine::peak_rss_bytes();
    // Closed and opened again: the scan phase starts as a restarted node
    // with `pending` rounds waiting, its write buffers empty.
    drop(store);
    let store = open_store(&cfg)?;
    let disk_bytes = store.stats().disk_bytes;
    let measured_scan = karpoosheh_engine::reset_peak_rss();

    // The due rounds, through the real scheduler and dispatcher.
    let scheduler = Scheduler {
        config: cfg.delivery.clone(),
        store: store.clone(),
        notifier: notifier(&cfg)?,
        registry: Arc::new(SimulatedRegistry {
            store: store.clone(),
            seed: 1,
        }),
        clock: Arc::new(SystemClock),
        observer: None,
        agencies: None,
    };
    let t = Instant::now();
    let handled = scheduler.run_due()?;
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        handled as u64 >= opts.due,
        "handled {handled} of {} due",
        opts.due
    );
    drop(scheduler);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(SchedResult {
        pending: opts.pending,
        due: opts.due,
        setup_per_sec: opts.pending as f64 / setup_secs,
        due_rounds_per_sec: handled as f64 / secs,
        disk_bytes,
        disk_bytes_per_pending: disk_bytes as f64 / opts.pending.max(1) as f64,
        scan_peak_rss_bytes: measured_scan
            .then(karpoosheh_engine::peak_rss_bytes)
            .flatten(),
        peak_rss_bytes: peak_rss_bytes.max(karpoosheh_engine::peak_rss_bytes()),
    })
}
