//! Every metric the engine emits, in one place shared by the engine and
//! the monitor (`karpoosheh-monitor` reads these constants, and a test
//! proves that each one is actually emitted).
//!
//! Names follow `karpoosheh_<what>_<unit>`: `_total` for counters,
//! `_seconds` for histograms. Labels are bounded: agency (capped, see
//! `internal_events::AgencyLabel`), reason, stage, source kind — never a
//! national ID.

/// Records read from sources. Labels: `source` (memory, file, kafka).
pub const RECORDS_RECEIVED: &str = "karpoosheh_records_received_total";
/// Notices stored for the first time. Labels: `agency`.
pub const NOTICES_STORED: &str = "karpoosheh_notices_stored_total";
/// Exact re-sends absorbed. Labels: `agency`.
pub const NOTICES_DUPLICATE: &str = "karpoosheh_notices_duplicate_total";
/// Notices rejected (kept for the agency). Labels: `agency`, `reason`.
pub const NOTICES_REJECTED: &str = "karpoosheh_notices_rejected_total";
/// Records that could not be decoded at all. Labels: `reason`.
pub const DEAD_LETTERS: &str = "karpoosheh_dead_letters_total";
/// Payload bytes of stored notices.
pub const STORED_BYTES: &str = "karpoosheh_stored_payload_bytes_total";
/// Durable store writes (group commits).
pub const STORE_WRITES: &str = "karpoosheh_store_writes_total";
/// Store write failures (each retried; the engine never acknowledges them).
pub const STORE_WRITE_ERRORS: &str = "karpoosheh_store_write_errors_total";
/// Time of one durable store write, fsync included.
pub const STORE_WRITE_SECONDS: &str = "karpoosheh_store_write_seconds";
/// Records in one durable store write.
pub const STORE_WRITE_RECORDS: &str = "karpoosheh_store_write_records";
/// Time from a record's arrival to its durable write (and receipt).
pub const INGEST_LATENCY_SECONDS: &str = "karpoosheh_ingest_latency_seconds";
/// Time to decode and validate one chunk of records.
pub const DECODE_SECONDS: &str = "karpoosheh_decode_chunk_seconds";
/// Items waiting between stages. Labels: `stage` (decode, commit).
pub const QUEUE_DEPTH: &str = "karpoosheh_pipeline_queue_depth";
/// Shards of this node's pipeline.
pub const SHARDS: &str = "karpoosheh_pipeline_shards";
/// Approximate bytes of the store on disk.
pub const STORE_DISK_BYTES: &str = "karpoosheh_store_disk_bytes";
/// 1 while the engine is ready to take traffic.
pub const READY: &str = "karpoosheh_ready";
/// Build information. Labels: `version`, `node`.
pub const BUILD_INFO: &str = "karpoosheh_build_info";

/// Every name above, for the emitted-metrics test and the monitor.
pub const ALL: &[&str] = &[
    RECORDS_RECEIVED,
    NOTICES_STORED,
    NOTICES_DUPLICATE,
    NOTICES_REJECTED,
    DEAD_LETTERS,
    STORED_BYTES,
    STORE_WRITES,
    STORE_WRITE_ERRORS,
    STORE_WRITE_SECONDS,
    STORE_WRITE_RECORDS,
    INGEST_LATENCY_SECONDS,
    DECODE_SECONDS,
    QUEUE_DEPTH,
    SHARDS,
    STORE_DISK_BYTES,
    READY,
    BUILD_INFO,
];

// The Kafka front door (`karpoosheh run`). Emitted only by nodes that
// consume Kafka, so they are listed apart from `ALL`; the Kafka
// end-to-end test proves each is emitted.

/// 1 while the consumer reaches at least one broker.
pub const KAFKA_BROKERS_UP: &str = "karpoosheh_kafka_brokers_up";
/// Records in the notice topics not yet read by this node. Labels: `agency`.
pub const KAFKA_CONSUMER_LAG: &str = "karpoosheh_kafka_consumer_lag_records";
/// Notice partitions this node owns.
pub const KAFKA_ASSIGNED_PARTITIONS: &str = "karpoosheh_kafka_assigned_partitions";
/// Owned partitions paused by back-pressure.
pub const KAFKA_PAUSED_PARTITIONS: &str = "karpoosheh_kafka_paused_partitions";
/// Group rebalances seen. Labels: `kind` (assign, revoke, lost).
pub const KAFKA_REBALANCES: &str = "karpoosheh_kafka_rebalances_total";
/// Offset commits of durable progress. Labels: `result` (ok, error).
pub const KAFKA_COMMITS: &str = "karpoosheh_kafka_commits_total";
/// Receipts delivered to the agencies' receipt topics. Labels: `agency`.
pub const RECEIPTS_PRODUCED: &str = "karpoosheh_receipts_produced_total";
/// Dead letters delivered to the dead-letter topic.
pub const DEAD_LETTERS_PRODUCED: &str = "karpoosheh_dead_letters_produced_total";
/// Receipt or dead-letter deliveries that failed (retried).
pub const KAFKA_PRODUCE_ERRORS: &str = "karpoosheh_kafka_produce_errors_total";
/// Mailbox profiles read from the registry topic. Labels: `outcome`
/// (applied, stale, deleted, invalid).
pub const PROFILES: &str = "karpoosheh_profiles_total";
/// Loads of the agency registry file. Labels: `result` (ok, error).
pub const AGENCY_REGISTRY_LOADS: &str = "karpoosheh_agency_registry_loads_total";

/// Every Kafka metric, for the Kafka end-to-end test and the monitor.
pub const KAFKA: &[&str] = &[
    KAFKA_BROKERS_UP,
    KAFKA_CONSUMER_LAG,
    KAFKA_ASSIGNED_PARTITIONS,
    KAFKA_PAUSED_PARTITIONS,
    KAFKA_REBALANCES,
    KAFKA_COMMITS,
    RECEIPTS_PRODUCED,
    DEAD_LETTERS_PRODUCED,
    KAFKA_PRODUCE_ERRORS,
    PROFILES,
    AGENCY_REGISTRY_LOADS,
];
