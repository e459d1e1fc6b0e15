//! `karpoosheh-loadtest`: realistic traffic as NDJSON files or into the
//! engine in process, and the whole-pipeline benchmark.

use std::path::PathBuf;

// Same allocator as the engine binary, so in-process numbers match it.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Result;
use clap::{Parser, Subcommand};
use karpoosheh_engine::demo::{self, DemoOptions};
use karpoosheh_engine::Config;
use karpoosheh_traffic::TrafficConfig;

#[derive(Parser)]
#[command(
    name = "karpoosheh-loadtest",
    version,
    about = "Realistic Karpoosheh traffic: files, in-process runs, benchmarks"
)]
struct Cli {
    /// Engine configuration file, as for `karpoosheh`.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Override one engine option (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    sets: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write NDJSON batch files, as agencies would send them.
    File {
        #[arg(long, default_value_t = 100_000)]
        notices: u64,
        #[arg(long, default_value_t = 0.03)]
        bad_ratio: f64,
        #[arg(long, default_value_t = 0.01)]
        duplicate_ratio: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output file, or directory with --per-agency.
        #[arg(long)]
        out: PathBuf,
        /// One file per agency (for `karpoosheh ingest --agency`).
        #[arg(long)]
        per_agency: bool,
    },
    /// Feed the engine in process and report throughput and latency (JSON with --json).
    Inprocess {
        #[arg(long, default_value_t = 1_000_000)]
        notices: u64,
        #[arg(long, default_value_t = 0.03)]
        bad_ratio: f64,
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Store directory (wiped first if it is a previous run's).
        #[arg(long, default_value = "./karpoosheh-loadtest")]
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Scheduler benchmark: due rounds/s with zero-latency simulated
    /// gateways, disk per pending round, peak memory (run at 1M and 10M pending).
    BenchScheduler {
        /// Notices waiting for a round.
        #[arg(long, default_value_t = 1_000_000)]
        pending: u64,
        /// Of those, how many are due now.
        #[arg(long, default_value_t = 200_000)]
        due: u64,
        /// Scratch directory.
        #[arg(long, default_value = "./karpoosheh-bench")]
        dir: PathBuf,
    },
    /// Lanes in the rounds: an urgent notice's round 1 on an idle scheduler
    /// and while a campaign's rounds are due and hold every gateway at its
    /// rate limit, against a bulk-lane notice sent at the same moments.
    BenchRoundsLanes {
        /// The campaign's due rounds.
        #[arg(long, default_value_t = 200_000)]
        due: u64,
        /// Probes per phase.
        #[arg(long, default_value_t = 50)]
        probes: u64,
        /// Milliseconds between probes.
        #[arg(long, default_value_t = 200)]
        interval_ms: u64,
        /// Each simulated gateway's rate limit (sends/s).
        #[arg(long, default_value_t = 100.0)]
        gateway_rate: f64,
        /// Scratch directory.
        #[arg(long, default_value = "./karpoosheh-bench")]
        dir: PathBuf,
    },
    /// Act as the agencies on a real broker: produce notices (and registrations),
    /// read the receipt and dead-letter topics back, report latency and throughput.
    Kafka {
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long, default_value_t = 100_000)]
        notices: u64,
        /// Records per second (0: flat out).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long, default_value_t = 0.03)]
        bad_ratio: f64,
        #[arg(long, default_value_t = 0.01)]
        duplicate_ratio: f64,
        /// Mailbox profiles to send to the registry topic first.
        #[arg(long, default_value_t = 0)]
        registrations: u64,
        /// The identity side's private key (`karpoosheh keys generate`) that
        /// signs the profiles; required with --registrations. The engine's
        /// trust file must allow it to sign profiles.
        #[arg(long, value_name = "FILE")]
        signing_key: Option<PathBuf>,
        /// Generator seed (also tags the references); default: the clock.
        #[arg(long)]
        seed: Option<u64>,
        /// Partitions of topics created on the way.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Only produce; do not wait for receipts.
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting for receipts after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// The producer's `linger.ms` (the agency's own batching, part of
        /// the latency measured; 0 sends each notice at once).
        #[arg(long, default_value_t = 10)]
        linger_ms: u64,
        /// The receipt reader's `fetch.wait.max.ms` (how long the broker
        /// may hold its fetch when there is nothing new).
        #[arg(long, default_value_t = 50)]
        fetch_wait_ms: u64,
        /// The engine's metrics address (HOST:PORT): its stage latency
        /// histograms are read before and after the run and their share of
        /// the run summarised (the report's `engine`, and on stderr).
        #[arg(long, value_name = "HOST:PORT")]
        engine_metrics: Option<String>,
        /// The lane to send on: urgent and bulk go to the agencies'
        /// `.urgent` and `.bulk` notice topics (created on the way).
        #[arg(long, default_value = "normal", value_parser = ["urgent", "normal", "bulk"])]
        lane: String,
        /// Only these agencies' notices (comma-separated): the others the
        /// model makes are skipped, and only these agencies' receipts are
        /// read. Default: all.
        #[arg(long, value_delimiter = ',')]
        agencies: Vec<String>,
    },
    /// Bare consumer of the notice topics (no processing): the raw consume rate.
    Drain {
        #[command(flatten)]
        target: TargetArgs,
        /// Stop after this many records…
        #[arg(long, default_value_t = u64::MAX)]
        records: u64,
        /// …or when nothing arrived for this many seconds.
        #[arg(long, default_value_t = 3)]
        idle: u64,
    },
    /// A bare client's trip through the broker, for comparison with the
    /// engine's answers (issue 25): records produced to a topic of its own
    /// with the agency's settings, read back by a consumer; produce → read
    /// and produce → delivery report, p50/p90/p99/max in milliseconds.
    BrokerLatency {
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long, default_value = "karpoosheh.bench.broker-latency")]
        topic: String,
        #[arg(long, default_value_t = 10_000)]
        records: u64,
        /// Records per second.
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        /// The producer's `linger.ms`.
        #[arg(long, default_value_t = 0)]
        linger_ms: u64,
        /// The consumer's `fetch.wait.max.ms`.
        #[arg(long, default_value_t = 10)]
        fetch_wait_ms: u64,
    },
    /// Read benchmark: mailbox first pages and tracking-code lookups per
    /// second, with their latency, from a filled and compacted store
    /// reopened with each block-cache size (sizes in ABBA order).
    BenchReads {
        /// Notices stored before reading (the fill is not timed).
        #[arg(long, default_value_t = 1_000_000)]
        notices: u64,
        /// Reads of each kind per round and cache size.
        #[arg(long, default_value_t = 200_000)]
        reads: u64,
        /// Reader threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Block-cache sizes to compare, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "4MiB,64MiB")]
        cache_sizes: Vec<karpoosheh_schemas::ByteSize>,
        #[arg(long, default_value_t = 2)]
        rounds: u32,
        /// Empty the kernel's page cache before each phase (root only), so
        /// its first reads come from the disk.
        #[arg(long)]
        drop_caches: bool,
        /// Scratch directory.
        #[arg(long, default_value = "./karpoosheh-bench")]
        dir: PathBuf,
    },
    /// Inbox API benchmark: list and open calls at a rate, open-loop, with
    /// latency percentiles, beside ingest on the same node (ingest alone,
    /// with the API load, at half rate with it, and the API alone).
    Inbox {
        /// API calls per second offered.
        #[arg(long, default_value_t = 2000.0)]
        rate: f64,
        /// Keep-alive connections the calls share.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Share of the calls that open a notice; the rest list a mailbox.
        #[arg(long, default_value_t = 0.5)]
        opens: f64,
        /// Notices stored before the phases.
        #[arg(long, default_value_t = 200_000)]
        fill: u64,
        /// Notices each ingest phase stores.
        #[arg(long, default_value_t = 150_000)]
        phase_notices: u64,
        /// Seconds of the API-alone phase.
        #[arg(long, default_value_t = 10.0)]
        api_secs: f64,
        /// Scratch directory (wiped).
        #[arg(long, default_value = "./karpoosheh-bench-inbox")]
        dir: PathBuf,
    },
    /// Whole-pipeline benchmark: pipeline vs raw store vs raw disk, one run.
    BenchPipeline {
        #[arg(long, default_value_t = 300_000)]
        notices: u64,
        /// Scratch directory on the disk to measure.
        #[arg(long, default_value = "./karpoosheh-bench")]
        dir: PathBuf,
    },
}

#[derive(clap::Args, Clone)]
struct TargetArgs {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(long, default_value = "karpoosheh.notices.")]
    notice_prefix: String,
    #[arg(long, default_value = "karpoosheh.receipts.")]
    receipt_prefix: String,
    #[arg(long, default_value = "karpoosheh.registry")]
    registry_topic: String,
    #[arg(long, default_value = "karpoosheh.dlq")]
    dead_letter_topic: String,
    /// librdkafka option KEY=VALUE (repeatable), e.g. security.protocol=SASL_SSL.
    #[arg(long = "option", value_name = "KEY=VALUE")]
    options: Vec<String>,
}

impl TargetArgs {
    fn target(&self) -> Result<karpoosheh_loadtest::kafka::KafkaTarget> {
        let options = self
            .options
            .iter()
            .map(|o| {
                o.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .ok_or_else(|| anyhow::anyhow!("--option {o:?}: expected KEY=VALUE"))
            })
            .collect::<Result<_>>()?;
        Ok(karpoosheh_loadtest::kafka::KafkaTarget {
            brokers: self.brokers.clone(),
            notice_prefix: self.notice_prefix.clone(),
            receipt_prefix: self.receipt_prefix.clone(),
            registry_topic: self.registry_topic.clone(),
            dead_letter_topic: self.dead_letter_topic.clone(),
            options,
        })
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("karpoosheh-loadtest: error: {e:#}");
        std::process::exit(2);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let load = |extra: Vec<String>| -> Result<Config> {
        let mut sets = cli.sets.clone();
        sets.extend(extra);
        Ok(Config::load(
            cli.config.as_deref(),
            std::env::vars(),
            &sets,
        )?)
    };
    match &cli.command {
        Command::File {
            notices,
            bad_ratio,
            duplicate_ratio,
            seed,
            out,
            per_agency,
        } => {
            let cfg = TrafficConfig {
                notices: *notices,
                bad_ratio: *bad_ratio,
                duplicate_ratio: *duplicate_ratio,
                seed: *seed,
                ..Default::default()
            };
            let t = std::time::Instant::now();
            let n = karpoosheh_loadtest::write_files(cfg, out, *per_agency)?;
            eprintln!(
                "wrote {n} records to {} in {:.1}s",
                out.display(),
                t.elapsed().as_secs_f64()
            );
        }
        Command::Inprocess {
            notices,
            bad_ratio,
            rate,
            dir,
            json,
        } => {
            let cfg = load(vec![format!("store.path={:?}", dir.display().to_string())])?;
            demo::prepare_data_dir(&cfg.store.path)?;
            let opts = DemoOptions {
                notices: *notices,
                bad_ratio: *bad_ratio,
                rate: *rate,
                progress: !json,
                serve_metrics: false,
                follow_up: false,
                ..Default::default()
            };
            let report = demo::run(&cfg, &opts, Arc::new(AtomicBool::new(false)))?;
            if *json {
                let t = &report.tally;
                let q = |p: f64| t.latency_us.value_at_quantile(p) as f64 / 1000.0;
                println!(
                    "{}",
                    serde_json::json!({
                        "records": report.records,
                        "elapsed_s": report.elapsed.as_secs_f64(),
                        "records_per_s": report.records as f64 / report.elapsed.as_secs_f64(),
                        "stored": t.stored, "duplicates": t.duplicates,
                        "rejected": t.rejected_total(), "dead_letters": t.dead_letters_total(),
                        "latency_ms": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999), "max": t.latency_us.max() as f64 / 1000.0},
                        "peak_rss_bytes": report.peak_rss_bytes,
                        "accounted": report.accounted(),
                    })
                );
            } else {
                println!("{}", report.render());
            }
        }
        Command::Inbox {
            rate,
            connections,
            opens,
            fill,
            phase_notices,
            api_secs,
            dir,
        } => {
            let r = karpoosheh_loadtest::inbox_bench::inbox_benchmark(
                karpoosheh_loadtest::inbox_bench::InboxOptions {
                    rate: *rate,
                    connections: *connections,
                    opens: opens.clamp(0.0, 1.0),
                    fill: *fill,
                    phase_notices: *phase_notices,
                    api_secs: *api_secs,
                    dir: dir.clone(),
                    config: load(vec![])?,
                },
            )?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            eprintln!(
                "inbox: ingest {:.0}/s alone, {:.0}/s with {} API calls/s offered ({:+.1}%)",
                r.ingest_alone_per_sec,
                r.ingest_with_api_per_sec,
                r.rate,
                -100.0 * r.ingest_slowdown
            );
        }
        Command::BenchScheduler { pending, due, dir } => {
            std::fs::create_dir_all(dir)?;
            let cfg = load(vec![])?;
            let r = karpoosheh_loadtest::sched_bench::scheduler_benchmark(
                karpoosheh_loadtest::sched_bench::SchedOptions {
                    pending: *pending,
                    due: (*due).min(*pending),
                    dir: dir.clone(),
                    config: cfg,
                },
            )?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            eprintln!(
                "scheduler: {:.0} due rounds/s; {:.0} bytes on disk per pending round; peak RSS {:.0} MB scanning with {} pending ({:.0} MB writing them)",
                r.due_rounds_per_sec,
                r.disk_bytes_per_pending,
                r.scan_peak_rss_bytes.unwrap_or(0) as f64 / 1e6,
                r.pending,
                r.peak_rss_bytes.unwrap_or(0) as f64 / 1e6
            );
        }
        Command::BenchRoundsLanes {
            due,
            probes,
            interval_ms,
            gateway_rate,
            dir,
        } => {
            std::fs::create_dir_all(dir)?;
            let cfg = load(vec![])?;
            let r = karpoosheh_loadtest::rounds_lanes::rounds_lanes_benchmark(
                karpoosheh_loadtest::rounds_lanes::RoundsLanesOptions {
                    due: *due,
                    probes: *probes,
                    interval: std::time::Duration::from_millis(*interval_ms),
                    gateway_rate: *gateway_rate,
                    dir: dir.clone(),
                    config: cfg,
                },
            )?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            eprintln!(
                "round 1 of urgent notices: p50 {:.0} ms, p99 {:.0} ms idle; p50 {:.0} ms, p99 {:.0} ms with {} campaign rounds due (the campaign agency's bulk-lane probes: p50 {:.0} ms, p99 {:.0} ms, {} not sent; another agency's: p50 {:.0} ms, p99 {:.0} ms, {} not sent); campaign {:.0}/s before, {:.0}/s during",
                r.idle_urgent.p50_ms,
                r.idle_urgent.p99_ms,
                r.busy_urgent.p50_ms,
                r.busy_urgent.p99_ms,
                r.due,
                r.busy_bulk.p50_ms,
                r.busy_bulk.p99_ms,
                r.busy_bulk.not_sent,
                r.busy_other_bulk.p50_ms,
                r.busy_other_bulk.p99_ms,
                r.busy_other_bulk.not_sent,
                r.campaign_per_sec_before,
                r.campaign_per_sec_during
            );
        }
        Command::Kafka {
            target,
            notices,
            rate,
            bad_ratio,
            duplicate_ratio,
            registrations,
            signing_key,
            seed,
            partitions,
            no_wait,
            timeout,
            linger_ms,
            fetch_wait_ms,
            engine_metrics,
            lane,
            agencies,
        } => {
            let signing_key = match (signing_key, *registrations) {
                (_, 0) => None,
                (Some(path), _) => Some(std::sync::Arc::new(
                    karpoosheh_engine::keys::SigningKey::load(path)?,
                )),
                (None, _) => anyhow::bail!(
                    "--registrations needs --signing-key: the engine applies only signed profiles"
                ),
            };
            let seed = seed.unwrap_or_else(|| chrono::Utc::now().timestamp_millis() as u64);
            let opts = karpoosheh_loadtest::kafka::ProduceOptions {
                traffic: TrafficConfig {
                    notices: *notices,
                    bad_ratio: *bad_ratio,
                    duplicate_ratio: *duplicate_ratio,
                    seed,
                    ..Default::default()
                },
                rate: *rate,
                registrations: *registrations,
                signing_key,
                wait_receipts: (!no_wait).then(|| std::time::Duration::from_secs(*timeout)),
                partitions: *partitions,
                linger_ms: *linger_ms,
                fetch_wait_ms: *fetch_wait_ms,
                engine_metrics: engine_metrics.clone(),
                lane: match lane.as_str() {
                    "urgent" => karpoosheh_schemas::Priority::Urgent,
                    "bulk" => karpoosheh_schemas::Priority::Bulk,
                    _ => karpoosheh_schemas::Priority::Normal,
                },
                agencies: agencies.clone(),
            };
            let r = karpoosheh_loadtest::kafka::run(&target.target()?, &opts)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            if !no_wait && !r.complete {
                anyhow::bail!("not every record was answered within {timeout} s");
            }
        }
        Command::Drain {
            target,
            records,
            idle,
        } => {
            let r = karpoosheh_loadtest::kafka::drain(
                &target.target()?,
                *records,
                std::time::Duration::from_secs(*idle),
            )?;
            println!("{}", serde_json::to_string(&r)?);
        }
        Command::BrokerLatency {
            target,
            topic,
            records,
            rate,
            linger_ms,
            fetch_wait_ms,
        } => {
            let r = karpoosheh_loadtest::kafka::broker_latency(
                &target.target()?,
                topic,
                *records,
                *rate,
                *linger_ms,
                *fetch_wait_ms,
            )?;
            println!("{}", serde_json::to_string(&r)?);
        }
        Command::BenchReads {
            notices,
            reads,
            threads,
            cache_sizes,
            rounds,
            drop_caches,
            dir,
        } => {
            std::fs::create_dir_all(dir)?;
            let cfg = load(vec![])?;
            let r = karpoosheh_loadtest::read_bench::read_benchmark(
                karpoosheh_loadtest::read_bench::ReadOptions {
                    notices: *notices,
                    reads: *reads,
                    threads: *threads,
                    cache_sizes: cache_sizes.clone(),
                    rounds: *rounds,
                    drop_caches: *drop_caches,
                    dir: dir.clone(),
                    config: cfg,
                },
            )?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            if *drop_caches
                && r.rounds.iter().any(|x| {
                    !x.mailbox_pages.page_cache_dropped || !x.tracking_lookups.page_cache_dropped
                })
            {
                eprintln!(
                    "note: the page cache could not be emptied (needs root); reads were warm"
                );
            }
            for x in &r.rounds {
                eprintln!(
                    "cache {:>6.1} MiB, round {}: pages {:.0}/s (p50 {} us, p99 {} us), lookups {:.0}/s (p50 {} us, p99 {} us), cache used {:.1} / {:.1} MiB",
                    x.cache_bytes as f64 / 1048576.0,
                    x.round,
                    x.mailbox_pages.per_sec,
                    x.mailbox_pages.p50_us,
                    x.mailbox_pages.p99_us,
                    x.tracking_lookups.per_sec,
                    x.tracking_lookups.p50_us,
                    x.tracking_lookups.p99_us,
                    x.mailbox_pages.cache_used_bytes as f64 / 1048576.0,
                    x.tracking_lookups.cache_used_bytes as f64 / 1048576.0,
                );
            }
        }
        Command::BenchPipeline { notices, dir } => {
            std::fs::create_dir_all(dir)?;
            let cfg = load(vec![])?;
            let r = karpoosheh_loadtest::pipeline_benchmark(karpoosheh_loadtest::BenchOptions {
                notices: *notices,
                dir: dir.clone(),
                config: cfg,
            })?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            eprintln!(
                "pipeline {:.0} notices/s = {:.0}% of raw store {:.0}/s; payload {:.1} MB/s = {} of raw disk {}",
                r.pipeline_per_sec,
                100.0 * r.pipeline_vs_store,
                r.raw_store_per_sec,
                r.payload_bytes as f64 / (r.notices as f64 / r.pipeline_per_sec) / 1e6,
                r.pipeline_payload_vs_disk.map_or("n/a".into(), |x| format!("{:.0}%", 100.0 * x)),
                r.disk_bytes_per_sec.map_or("n/a".into(), |d| format!("{:.0} MB/s", d / 1e6)),
            );
        }
    }
    Ok(())
}
