//! The whole-pipeline benchmark: the same notices through (1) the whole
//! pipeline from the in-process source, batches durable before
//! acknowledgement, and (2) the raw store, already decoded, in batches of
//! the same size and durability; plus (3) the disk's raw sequential write
//! rate with `dd oflag=direct`. All in one run, so ratios are fair on a
//! noisy shared machine.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use karpoosheh_engine::{
    open_store, pipeline, Config, Entry, MemorySource, NewNotice, Tally, TallySink, TrackingCodes,
};
use karpoosheh_schemas::{decode_notice, Limits, SourcePosition, TrackingCode};
use karpoosheh_traffic::{Traffic, TrafficConfig};

pub struct BenchOptions {
    pub notices: u64,
    pub dir: PathBuf,
    pub config: Config,
}

#[derive(Debug, serde::Serialize)]
pub struct BenchResult {
    pub notices: u64,
    pub payload_bytes: u64,
    pub pipeline_per_sec: f64,
    pub raw_store_per_sec: f64,
    pub pipeline_vs_store: f64,
    pub disk_bytes_per_sec: Option<f64>,
    pub pipeline_payload_vs_disk: Option<f64>,
    pub pipeline_p99_ms: f64,
}

fn dd_write_rate(dir: &Path) -> Option<f64> {
    let file = dir.join("dd-probe");
    let out = std::process::Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}", file.display()),
            "bs=1M",
            "count=512",
            "oflag=direct",
            "conv=fdatasync",
        ])
        .output()
        .ok()?;
    let _ = std::fs::remove_file(&file);
    dd_rate(&String::from_utf8_lossy(&out.stderr))
}

/// Bytes per second from dd's summary line on stderr, e.g.
/// "536870912 bytes (537 MB, 512 MiB) copied, 0.25 s, 2.1 GB/s".
fn dd_rate(stderr: &str) -> Option<f64> {
    let line = stderr.lines().find(|l| l.contains(" copied, "))?;
    let bytes: f64 = line.split_whitespace().next()?.parse().ok()?;
    let secs: f64 = line
        .split(", ")
        .find_map(|p| p.strip_suffix(" s"))?
        .trim()
        .parse()
        .ok()?;
    (secs > 0.0).then_some(bytes / secs)
}

/// A generated notice known to be valid, decoded and ready for the store
/// as the pipeline would hand it over: `code`, accepted `now`, from an
/// in-process source at `sequence`.
pub(crate) fn valid_notice(
    payload: &[u8],
    limits: &Limits,
    now: DateTime<Utc>,
    code: TrackingCode,
    sequence: u64,
) -> NewNotice {
    let notice = decode_notice(payload, limits, now).expect("benchmark notices are valid");
    NewNotice {
        tracking_code: code,
        accepted_at: now,
        content_hash: notice.content_hash(),
        notice,
        position: SourcePosition::InProcess { sequence },
        priority: karpoosheh_schemas::Priority::Normal,
        deliver_at: None,
        respond_by: None,
        queue: None,
    }
}

pub fn pipeline_benchmark(opts: BenchOptions) -> anyhow::Result<BenchResult> {
    let traffic = Traffic::new(TrafficConfig {
        notices: opts.notices,
        bad_ratio: 0.0,
        duplicate_ratio: 0.0,
        ..Default::default()
    });
    let payloads: Vec<Vec<u8>> = traffic
        .chunk(0, opts.notices)
        .into_iter()
        .map(|g| g.payload)
        .collect();
    let payload_bytes: u64 = payloads.iter().map(|p| p.len() as u64).sum();

    // (1) The whole pipeline.
    let pipe_dir = opts.dir.join("pipeline");
    let _ = std::fs::remove_dir_all(&pipe_dir);
    let mut cfg = opts.config.clone();
    cfg.store.path = pipe_dir.clone();
    let store = open_store(&cfg)?;
    let (tx, source) = MemorySource::channel(cfg.pipeline.queue_depth * 2, None);
    let chunk = cfg.pipeline.decode_chunk;
    let feeder = {
        let payloads = payloads.clone();
        std::thread::spawn(move || {
            let mut it = payloads.into_iter().peekable();
            while it.peek().is_some() {
                if !tx.send(it.by_ref().take(chunk).collect()) {
                    break;
                }
            }
        })
    };
    let tally = Arc::new(Mutex::new(Tally::default()));
    // Receipts signed as a node signs them (evidence.key_file, or a key
    // made for the run): the benchmark measures the evidence's cost too.
    let sealer = match karpoosheh_engine::node_sealer(&cfg)? {
        Some(s) => s,
        None => karpoosheh_engine::seal::Sealer::new(Arc::new(
            karpoosheh_engine::keys::SigningKey::generate("bench-node")?,
        )),
    };
    // ... and every batch appended to the node's audit log, as on a node.
    let (sealer, _log) = karpoosheh_engine::node_audited(&cfg, &store, sealer)?;
    let pipeline =
        pipeline(&cfg, store, vec![Box::new(TallySink(tally.clone()))]).with_sealer(Some(sealer));
    let t = Instant::now();
    pipeline.run(Box::new(source))?;
    let pipeline_secs = t.elapsed().as_secs_f64();
    feeder.join().ok();
    let tally = tally.lock().unwrap_or_else(|p| p.into_inner());
    anyhow::ensure!(
        tally.stored == opts.notices,
        "pipeline stored {} of {}",
        tally.stored,
        opts.notices
    );
    let p99 = tally.latency_us.value_at_quantile(0.99) as f64 / 1000.0;
    let _ = std::fs::remove_dir_all(&pipe_dir);

    // (2) The raw store: the same notices, decoded beforehand (not timed),
    // written in batches of the pipeline's size with the same durability.
    let raw_dir = opts.dir.join("raw");
    let _ = std::fs::remove_dir_all(&raw_dir);
    cfg.store.path = raw_dir.clone();
    let store = open_store(&cfg)?;
    let now = Utc::now();
    let mut codes = TrackingCodes::new(cfg.node_id, None);
    let entries: Vec<Entry> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let code = codes.next(now.timestamp_millis());
            Entry::Notice(valid_notice(p, &cfg.limits, now, code, i as u64))
        })
        .collect();
    drop(payloads);
    let batch = cfg.pipeline.batch_max_notices;
    let t = Instant::now();
    for b in entries.chunks(batch) {
        store.write(b)?;
    }
    let raw_secs = t.elapsed().as_secs_f64();
    drop(store);
    let _ = std::fs::remove_dir_all(&raw_dir);

    // (3) The disk.
    let disk = dd_write_rate(&opts.dir);
    let pipeline_per_sec = opts.notices as f64 / pipeline_secs;
    let raw_store_per_sec = opts.notices as f64 / raw_secs;
    let payload_rate = payload_bytes as f64 / pipeline_secs;
    Ok(BenchResult {
        notices: opts.notices,
        payload_bytes,
        pipeline_per_sec,
        raw_store_per_sec,
        pipeline_vs_store: pipeline_per_sec / raw_store_per_sec,
        disk_bytes_per_sec: disk,
        pipeline_payload_vs_disk: disk.map(|d| payload_rate / d),
        pipeline_p99_ms: p99,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn dd_rate_counts_the_bytes_dd_wrote() {
        // Regression: the rate once assumed 1 GiB written while dd wrote
        // 512 MiB, doubling the disk rate and halving the payload ratio.
        let out = "512+0 records in\n512+0 records out\n536870912 bytes (537 MB, 512 MiB) copied, 0.5 s, 1.1 GB/s\n";
        assert_eq!(super::dd_rate(out), Some(536_870_912.0 / 0.5));
        assert_eq!(super::dd_rate("dd: failed to open"), None);
    }
}
