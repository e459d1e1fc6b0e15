//! The read benchmark: what a node serving mailboxes does after ingest.
//! A store is filled once with `notices` realistic notices (not timed),
//! then, for each block-cache size asked for, reopened as a restarted node
//! would be and read from `threads` threads: first pages of mailboxes
//! (newest first, 20 notices: one range read in the mailbox index and a
//! point read per listed notice), then lookups by tracking code. Recipients
//! and codes are drawn at random from the notices stored, so busy mailboxes
//! (the large companies) are read as often as they receive. Cache sizes
//! alternate round by round, so a machine that gets busier mid-way
//! affects each alike. With `drop_caches` (root only) the kernel's page
//! cache is emptied before each read phase: the first reads then come from
//! the disk, as on a node whose store is larger than its memory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use hdrhistogram::Histogram;
use karpoosheh_engine::store::{Entry, NewNotice, Store};
use karpoosheh_engine::traffic::{Traffic, TrafficConfig};
use karpoosheh_engine::{open_store, Config, TrackingCodes};
use karpoosheh_schemas::{decode_notice, ByteSize, MailboxId, SourcePosition, TrackingCode};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Notices on a mailbox page, as `karpoosheh mailbox` shows by default.
const PAGE: usize = 20;

pub struct ReadOptions {
    pub notices: u64,
    /// Reads of each kind per round and cache size.
    pub reads: u64,
    pub threads: usize,
    pub cache_sizes: Vec<ByteSize>,
    pub rounds: u32,
    pub drop_caches: bool,
    pub dir: PathBuf,
    pub config: Config,
}

#[derive(Debug, serde::Serialize)]
pub struct ReadPhase {
    pub reads: u64,
    pub per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Notices returned (mailbox pages only).
    pub notices_read: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct ReadRound {
    pub cache_bytes: u64,
    pub round: u32,
    /// Whether the page cache was emptied before this round.
    pub page_cache_dropped: bool,
    pub mailbox_pages: ReadPhase,
    pub tracking_lookups: ReadPhase,
    /// Block cache in use at the end of the round.
    pub cache_used_bytes: u64,
    /// Peak RSS from reopening the store to the end of the round.
    pub peak_rss_bytes: Option<u64>,
}

#[derive(Debug, serde::Serialize)]
pub struct ReadResult {
    pub notices: u64,
    pub store_disk_bytes: u64,
    pub fill_per_sec: f64,
    pub threads: usize,
    pub rounds: Vec<ReadRound>,
}

fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn drop_page_cache() -> bool {
    // sync(1) first, so that dirty pages can be dropped too.
    let synced = std::process::Command::new("sync")
        .status()
        .is_ok_and(|s| s.success());
    synced && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

pub fn read_benchmark(opts: ReadOptions) -> anyhow::Result<ReadResult> {
    anyhow::ensure!(opts.notices > 0, "--notices must be at least 1");
    anyhow::ensure!(opts.threads > 0, "--threads must be at least 1");
    anyhow::ensure!(!opts.cache_sizes.is_empty(), "no cache size to measure");
    let dir = opts.dir.join("reads");
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = opts.config.clone();
    cfg.store.path = dir.clone();

    // Fill (not what is measured): valid notices only, in the pipeline's
    // batch size. The recipients and codes are kept to draw reads from.
    let traffic = Traffic::new(TrafficConfig {
        notices: opts.notices,
        bad_ratio: 0.0,
        duplicate_ratio: 0.0,
        ..Default::default()
    });
    let store = open_store(&cfg)?;
    let now = Utc::now();
    let mut codes = TrackingCodes::new(0, None);
    let mut stored: Vec<(MailboxId, TrackingCode)> = Vec::with_capacity(opts.notices as usize);
    let batch = cfg.pipeline.batch_max_notices.max(1) as u64;
    let t = Instant::now();
    let mut i = 0;
    while i < opts.notices {
        let end = (i + batch).min(opts.notices);
        let entries: Vec<Entry> = traffic
            .chunk(i, end)
            .into_iter()
            .enumerate()
            .map(|(k, g)| {
                let notice = decode_notice(&g.payload, &cfg.limits, now)
                    .expect("benchmark notices are valid");
                let code = codes.next(now.timestamp_millis());
                stored.push((notice.recipient, code));
                Entry::Notice(NewNotice {
                    tracking_code: code,
                    accepted_at: now,
                    content_hash: notice.content_hash(),
                    notice,
                    position: SourcePosition::InProcess {
                        sequence: i + k as u64,
                    },
                })
            })
            .collect();
        store.write(&entries)?;
        i = end;
    }
    let fill_secs = t.elapsed().as_secs_f64();
    drop(store);

    let mut rounds = Vec::new();
    let mut disk_bytes = 0;
    let stored = Arc::new(stored);
    for round in 1..=opts.rounds {
        for &cache in &opts.cache_sizes {
            let mut cfg = cfg.clone();
            cfg.store.cache_size = cache;
            let dropped = opts.drop_caches && drop_page_cache();
            let store = open_store(&cfg)?;
            disk_bytes = store.stats().disk_bytes;
            let measured = reset_peak_rss();
            let seed = u64::from(round) << 32;
            let mailbox_pages = phase(&store, &stored, opts.reads, opts.threads, seed, true)?;
            let tracking_lookups =
                phase(&store, &stored, opts.reads, opts.threads, seed + 1, false)?;
            rounds.push(ReadRound {
                cache_bytes: cache.as_u64(),
                round,
                page_cache_dropped: dropped,
                mailbox_pages,
                tracking_lookups,
                cache_used_bytes: store.stats().cache_bytes,
                peak_rss_bytes: measured
                    .then(karpoosheh_engine::process_metrics::peak_rss_bytes)
                    .flatten(),
            });
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ReadResult {
        notices: opts.notices,
        store_disk_bytes: disk_bytes,
        fill_per_sec: opts.notices as f64 / fill_secs,
        threads: opts.threads,
        rounds,
    })
}

/// `reads` reads over `threads` threads: mailbox first pages, or lookups
/// by tracking code. Every read must find what was stored.
fn phase(
    store: &Arc<dyn Store>,
    stored: &Arc<Vec<(MailboxId, TrackingCode)>>,
    reads: u64,
    threads: usize,
    seed: u64,
    pages: bool,
) -> anyhow::Result<ReadPhase> {
    let t = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|w| {
            let store = store.clone();
            let stored = stored.clone();
            let n = reads / threads as u64 + u64::from((w as u64) < reads % threads as u64);
            std::thread::spawn(move || -> anyhow::Result<(Histogram<u64>, u64)> {
                let mut rng = SmallRng::seed_from_u64(seed ^ (w as u64).wrapping_mul(0x9e37_79b9));
                let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
                let mut listed = 0;
                for _ in 0..n {
                    let (recipient, code) = stored[rng.random_range(0..stored.len())];
                    let t = Instant::now();
                    if pages {
                        let page = store.mailbox(recipient, None, PAGE)?;
                        anyhow::ensure!(
                            !page.notices.is_empty(),
                            "a mailbox that received notices listed none"
                        );
                        listed += page.notices.len() as u64;
                    } else {
                        let found = store.notice(code)?;
                        anyhow::ensure!(
                            found.is_some_and(|n| n.notice.recipient == recipient),
                            "tracking code {code} not found or for another mailbox"
                        );
                    }
                    h.saturating_record(t.elapsed().as_micros() as u64);
                }
                Ok((h, listed))
            })
        })
        .collect();
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut listed = 0;
    for w in workers {
        let (h, l) = w
            .join()
            .map_err(|_| anyhow::anyhow!("a reader thread panicked"))??;
        all.add(&h)?;
        listed += l;
    }
    let secs = t.elapsed().as_secs_f64();
    Ok(ReadPhase {
        reads: all.len(),
        per_sec: all.len() as f64 / secs,
        p50_us: all.value_at_quantile(0.5),
        p99_us: all.value_at_quantile(0.99),
        max_us: all.max(),
        notices_read: listed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_find_every_notice_at_each_cache_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.store.durability = karpoosheh_engine::store::Durability::Buffered;
        let r = read_benchmark(ReadOptions {
            notices: 3_000,
            reads: 400,
            threads: 2,
            cache_sizes: vec![ByteSize::kib(256), ByteSize::kib(4096)],
            rounds: 1,
            drop_caches: false,
            dir: dir.path().to_path_buf(),
            config,
        })
        .unwrap();
        assert_eq!(r.rounds.len(), 2);
        assert_eq!(r.rounds[0].cache_bytes, 256 * 1024);
        assert!(r.store_disk_bytes > 0);
        for round in &r.rounds {
            assert_eq!(round.mailbox_pages.reads, 400);
            assert_eq!(round.tracking_lookups.reads, 400);
            // Every page listed at least the notice it was drawn for.
            assert!(round.mailbox_pages.notices_read >= 400);
            assert!(round.mailbox_pages.p50_us <= round.mailbox_pages.p99_us);
            assert!(round.cache_used_bytes <= round.cache_bytes);
        }
        // The scratch store is removed afterwards.
        assert!(!dir.path().join("reads").exists());
    }
}
