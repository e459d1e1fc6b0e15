//! The read benchmark: what a node serving mailboxes does after ingest.
//! A store is filled once with `notices` realistic notices, flushed and
//! fully compacted (not timed), then, for each block-cache size asked for,
//! reopened as a restarted node would be and read from `threads` threads:
//! first pages of mailboxes (newest first, 20 notices: one range read in
//! the mailbox index and a point read per listed notice), and lookups by
//! tracking code, each kind from a freshly opened store. Recipients and
//! codes are drawn at random from the notices stored, so busy mailboxes
//! (the large companies) are read as often as they receive; both cache
//! sizes of a round read the same draws. Cache sizes alternate in ABBA
//! order, so a machine that gets busier mid-way affects each alike. With
//! `drop_caches` (root only) the kernel's page cache is emptied before
//! each phase: the first reads then come from the disk, as on a node whose
//! store is larger than its memory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::bench::valid_notice;
use chrono::Utc;
use hdrhistogram::Histogram;
use karpoosheh_engine::{
    open_store, Config, Entry, FjallStore, NoticeStore, Outcome, Store, StoreBackend, TrackingCodes,
};
use karpoosheh_schemas::{ByteSize, MailboxId, TrackingCode};
use karpoosheh_traffic::{Traffic, TrafficConfig};
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
    /// Whether the page cache was emptied before this phase.
    pub page_cache_dropped: bool,
    /// Block cache in use at the end of the phase.
    pub cache_used_bytes: u64,
    /// Peak RSS from opening the store to the end of the phase (it starts
    /// from what the process held before: the allocator keeps freed pages).
    pub peak_rss_bytes: Option<u64>,
}

#[derive(Debug, serde::Serialize)]
pub struct ReadRound {
    pub cache_bytes: u64,
    pub round: u32,
    pub mailbox_pages: ReadPhase,
    pub tracking_lookups: ReadPhase,
}

#[derive(Debug, serde::Serialize)]
pub struct ReadResult {
    pub notices: u64,
    pub store_disk_bytes: u64,
    pub fill_per_sec: f64,
    pub threads: usize,
    pub rounds: Vec<ReadRound>,
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
    anyhow::ensure!(
        cfg.store.backend == StoreBackend::Embedded,
        "bench-reads measures the embedded store (store.backend = \"embedded\")"
    );

    // Fill (not what is measured): valid notices only, in the pipeline's
    // batch size. The recipients and codes are kept to draw reads from.
    let traffic = Traffic::new(TrafficConfig {
        notices: opts.notices,
        bad_ratio: 0.0,
        duplicate_ratio: 0.0,
        ..Default::default()
    });
    let store = FjallStore::open(cfg.store.fjall())?;
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
                let code = codes.next(now.timestamp_millis());
                let n = valid_notice(&g.payload, &cfg.limits, now, code, i + k as u64);
                stored.push((n.notice.recipient, code));
                Entry::Notice(n)
            })
            .collect();
        let outcomes = store.write(&entries)?;
        anyhow::ensure!(
            outcomes.iter().all(|o| *o == Outcome::Stored),
            "the fill stored fewer notices than it wrote"
        );
        i = end;
    }
    let fill_secs = t.elapsed().as_secs_f64();
    // Every memtable flushed and every keyspace compacted: the reads see
    // the same tables in every round, with no flush or compaction beside.
    store.settle()?;
    drop(store);

    let mut per_mailbox: HashMap<MailboxId, usize> = HashMap::new();
    for (m, _) in &stored {
        *per_mailbox.entry(*m).or_default() += 1;
    }
    let stored = Arc::new(Stored {
        notices: stored,
        per_mailbox,
    });
    let mut rounds = Vec::new();
    let mut disk_bytes = 0;
    for round in 1..=opts.rounds {
        // ABBA: every other round runs the sizes in reverse.
        let mut sizes = opts.cache_sizes.clone();
        if round % 2 == 0 {
            sizes.reverse();
        }
        for cache in sizes {
            let mut cfg = cfg.clone();
            cfg.store.cache_size = cache;
            let seed = u64::from(round) << 32;
            let mut run = |pages: bool, seed: u64| -> anyhow::Result<ReadPhase> {
                let dropped = opts.drop_caches && drop_page_cache();
                let measured = karpoosheh_engine::reset_peak_rss();
                let store = open_store(&cfg)?;
                disk_bytes = store.stats().disk_bytes;
                let mut p = phase(&store, &stored, opts.reads, opts.threads, seed, pages)?;
                p.page_cache_dropped = dropped;
                p.cache_used_bytes = store.stats().cache_bytes;
                p.peak_rss_bytes = measured.then(karpoosheh_engine::peak_rss_bytes).flatten();
                Ok(p)
            };
            let mailbox_pages = run(true, seed)?;
            let tracking_lookups = run(false, seed + 1)?;
            rounds.push(ReadRound {
                cache_bytes: cache.as_u64(),
                round,
                mailbox_pages,
                tracking_lookups,
            });
        }
    }
    rounds.sort_by_key(|r| {
        (
            r.round,
            opts.cache_sizes
                .iter()
                .position(|c| c.as_u64() == r.cache_bytes),
        )
    });
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ReadResult {
        notices: opts.notices,
        store_disk_bytes: disk_bytes,
        fill_per_sec: opts.notices as f64 / fill_secs,
        threads: opts.threads,
        rounds,
    })
}

/// What the fill stored: each notice's recipient and code, and how many
/// notices each mailbox holds.
struct Stored {
    notices: Vec<(MailboxId, TrackingCode)>,
    per_mailbox: HashMap<MailboxId, usize>,
}

/// `reads` reads over `threads` threads: mailbox first pages, or lookups
/// by tracking code. Every read must find what was stored.
fn phase(
    store: &Arc<dyn Store>,
    stored: &Arc<Stored>,
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
                    let (recipient, code) =
                        stored.notices[rng.random_range(0..stored.notices.len())];
                    let t = Instant::now();
                    if pages {
                        let page = store.mailbox(recipient, None, PAGE)?;
                        h.saturating_record(t.elapsed().as_micros() as u64);
                        let holds = stored.per_mailbox[&recipient];
                        anyhow::ensure!(
                            page.notices.len() == holds.min(PAGE)
                                && page.notices.iter().all(|n| n.notice.recipient == recipient),
                            "a mailbox page listed {} notices (some perhaps of another mailbox) where {} were stored",
                            page.notices.len(),
                            holds
                        );
                        listed += page.notices.len() as u64;
                    } else {
                        let found = store.notice(code)?;
                        h.saturating_record(t.elapsed().as_micros() as u64);
                        anyhow::ensure!(
                            found.is_some_and(|n| n.notice.recipient == recipient),
                            "tracking code {code} not found or for another mailbox"
                        );
                    }
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
        page_cache_dropped: false,
        cache_used_bytes: 0,
        peak_rss_bytes: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_find_every_notice_at_each_cache_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.store.durability = karpoosheh_engine::Durability::Buffered;
        let r = read_benchmark(ReadOptions {
            notices: 3_000,
            reads: 400,
            threads: 2,
            cache_sizes: vec![ByteSize::kib(256), ByteSize::kib(4096)],
            rounds: 2,
            drop_caches: false,
            dir: dir.path().to_path_buf(),
            config,
        })
        .unwrap();
        // Rounds in order, sizes as listed within each (run ABBA).
        let order: Vec<_> = r.rounds.iter().map(|x| (x.round, x.cache_bytes)).collect();
        assert_eq!(
            order,
            [(1, 256 << 10), (1, 4 << 20), (2, 256 << 10), (2, 4 << 20)]
        );
        assert!(r.store_disk_bytes > 0);
        for round in &r.rounds {
            for p in [&round.mailbox_pages, &round.tracking_lookups] {
                assert_eq!(p.reads, 400);
                assert!(p.p50_us <= p.p99_us && p.p99_us <= p.max_us);
                // Settled into tables: reads go through the block cache.
                assert!(p.cache_used_bytes > 0, "nothing was read from a table");
                assert!(p.cache_used_bytes <= round.cache_bytes);
            }
            // Every page listed at least the notice it was drawn for.
            assert!(round.mailbox_pages.notices_read >= 400);
        }
        // The scratch store is removed afterwards.
        assert!(!dir.path().join("reads").exists());
    }
}
