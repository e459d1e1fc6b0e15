//! Every metric the engine emits, in one place shared by the engine and
//! the monitor (`karpoosheh-monitor` reads these constants, and a test
//! proves that each one is actually emitted). Kept in this I/O-free crate
//! so the dashboard need not link the engine.
//!
//! Names follow `karpoosheh_<what>_<unit>`: `_total` for counters,
//! `_seconds` for histograms; the exception is the standard `process_*`
//! family, named as every Prometheus client library names it. Labels are bounded: agency (capped, see
//! `agency_label` in the engine's `internal_events`), reason, stage, source kind — never a
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
/// A record's arrival to its receipt acknowledged by the broker: the
/// engine's share of an agency's wait for its answer. Kafka nodes only
/// (listed in [`KAFKA`]).
pub const RECEIPT_LATENCY_SECONDS: &str = "karpoosheh_receipt_latency_seconds";
/// Time in one pipeline stage, per batch or write (`stage`).
pub const PIPELINE_STAGE_SECONDS: &str = "karpoosheh_pipeline_stage_seconds";
/// Time to decode and validate one chunk of records.
pub const DECODE_SECONDS: &str = "karpoosheh_decode_chunk_seconds";
/// Items waiting between stages. Labels: `stage` (decode, commit).
pub const QUEUE_DEPTH: &str = "karpoosheh_pipeline_queue_depth";
/// Payload bytes read from the source and not yet acknowledged: what
/// `pipeline.max_bytes_in_flight` bounds.
pub const PIPELINE_BYTES_IN_FLIGHT: &str = "karpoosheh_pipeline_bytes_in_flight";
/// Shards of this node's pipeline.
pub const SHARDS: &str = "karpoosheh_pipeline_shards";
/// Approximate bytes of the store on disk.
pub const STORE_DISK_BYTES: &str = "karpoosheh_store_disk_bytes";
pub const STORE_WRITE_BUFFER_BYTES: &str = "karpoosheh_store_write_buffer_bytes";
pub const STORE_CACHE_BYTES: &str = "karpoosheh_store_cache_bytes";
pub const STORE_JOURNAL_FILES: &str = "karpoosheh_store_journal_files";
pub const STORE_PINNED_BYTES: &str = "karpoosheh_store_pinned_bytes";
pub const STORE_TABLES: &str = "karpoosheh_store_tables";
/// How long store writes waited for the memtables to drain under
/// `store.write_buffer_size` (only writes that waited).
pub const STORE_WRITE_BUFFER_WAIT_SECONDS: &str = "karpoosheh_store_write_buffer_wait_seconds";
/// Writes that waited the longest allowed and went ahead over the budget.
pub const STORE_WRITE_BUFFER_OVERRUNS: &str = "karpoosheh_store_write_buffer_overruns_total";
/// Stored records that could not be read back and were set aside so they
/// block nothing (`karpoosheh quarantine` lists them). Labels: `kind`
/// (outbox_receipt, delivery_record, parked_receipt).
pub const RECORDS_QUARANTINED: &str = "karpoosheh_records_quarantined_total";
/// 1 while the engine is ready to take traffic.
pub const READY: &str = "karpoosheh_ready";
/// 1 once the node's source has ended by itself (the demo's generator, a
/// finite source, read to its end), every stage ending cleanly and
/// everything read acknowledged. `karpoosheh_ready` is then 0 because
/// there is no more traffic to take, not because of a fault. A Kafka
/// source never ends.
pub const SOURCE_FINISHED: &str = "karpoosheh_source_finished";
/// Build information. Labels: `version`, `node`.
pub const BUILD_INFO: &str = "karpoosheh_build_info";

// ---- The process (engine/src/process_metrics.rs) ----
// Read from /proc when /metrics is scraped (Linux). The `process_*` names
// are the standard ones every Prometheus client library exports, so
// existing dashboards and alerts apply as they are.

/// User and system CPU time, seconds.
pub const PROCESS_CPU_SECONDS: &str = "process_cpu_seconds_total";
/// Resident memory (RSS), bytes.
pub const PROCESS_RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
/// Highest resident memory since the start (VmHWM), bytes: the figure the
/// memory benchmarks quote, and what a memory limit must allow.
pub const PROCESS_PEAK_RESIDENT_MEMORY: &str = "karpoosheh_process_peak_resident_memory_bytes";
/// Virtual memory size, bytes.
pub const PROCESS_VIRTUAL_MEMORY: &str = "process_virtual_memory_bytes";
/// Start time, seconds since the Unix epoch.
pub const PROCESS_START_TIME: &str = "process_start_time_seconds";
/// Open file descriptors (the embedded store keeps its tables open).
pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
/// The soft limit on open file descriptors (absent when unlimited).
pub const PROCESS_MAX_FDS: &str = "process_max_fds";
/// Bytes this process caused to be written to storage (`write_bytes` of
/// `/proc/self/io`: the store's journal, flushes and compactions, the
/// audit log). Divided by [`STORED_BYTES`], the store's write
/// amplification. Counted when pages are dirtied, so a file deleted before
/// it reached the disk still counts (rare here: writes are fsync'd).
pub const PROCESS_DISK_WRITTEN: &str = "karpoosheh_process_disk_written_bytes_total";
/// Bytes this process caused to be read from storage, not from the page
/// cache (`read_bytes` of `/proc/self/io`).
pub const PROCESS_DISK_READ: &str = "karpoosheh_process_disk_read_bytes_total";

/// The process metrics, emitted wherever the engine serves `/metrics`.
pub const PROCESS: &[&str] = &[
    PROCESS_CPU_SECONDS,
    PROCESS_RESIDENT_MEMORY,
    PROCESS_PEAK_RESIDENT_MEMORY,
    PROCESS_VIRTUAL_MEMORY,
    PROCESS_START_TIME,
    PROCESS_OPEN_FDS,
    PROCESS_MAX_FDS,
    PROCESS_DISK_WRITTEN,
    PROCESS_DISK_READ,
];

/// Bytes in live heap objects (jemalloc `stats.allocated`).
pub const ALLOCATOR_ALLOCATED: &str = "karpoosheh_allocator_allocated_bytes";
/// Bytes of the allocator's pages holding live objects (`stats.active`).
pub const ALLOCATOR_ACTIVE: &str = "karpoosheh_allocator_active_bytes";
/// Bytes the allocator has in RAM: live, freed but not yet returned, and
/// metadata (`stats.resident`). Resident minus allocated is memory the
/// engine no longer uses but the process still holds.
pub const ALLOCATOR_RESIDENT: &str = "karpoosheh_allocator_resident_bytes";
/// Virtual memory kept mapped after its pages went back to the OS
/// (`stats.retained`; costs no RAM).
pub const ALLOCATOR_RETAINED: &str = "karpoosheh_allocator_retained_bytes";
/// The allocator's own metadata (`stats.metadata`).
pub const ALLOCATOR_METADATA: &str = "karpoosheh_allocator_metadata_bytes";

/// The allocator's metrics: emitted by the `karpoosheh` binary, whose
/// allocator is jemalloc (not by a test harness that links the engine as
/// a library); the Kafka end-to-end test proves them emitted.
pub const ALLOCATOR: &[&str] = &[
    ALLOCATOR_ALLOCATED,
    ALLOCATOR_ACTIVE,
    ALLOCATOR_RESIDENT,
    ALLOCATOR_RETAINED,
    ALLOCATOR_METADATA,
];

/// Notifications by channel (`sms`, `email`, `push`, `none` when every
/// channel failed), `round` (1-3), `outcome` (`sent`, `failed`) and `to`
/// (`recipient`, `representative`).
pub const NOTIFICATIONS: &str = "karpoosheh_notifications_total";
/// Rounds put off for a later retry because every channel failed
/// transiently. Labels: `round`.
pub const ROUND_RETRIES: &str = "karpoosheh_round_retries_total";
/// Confirmations by `outcome` (`applied`, `duplicate`, `rejected`) and
/// `reason` (for rejections; `none` otherwise).
pub const CONFIRMATIONS: &str = "karpoosheh_confirmations_total";
/// Notifications by the notice's agency and `outcome` (`sent`,
/// `failed`): what the operators' Agencies view shows per agency.
pub const AGENCY_NOTIFICATIONS: &str = "karpoosheh_agency_notifications_total";
/// Confirmations applied, by the notice's agency. Labels: `agency`.
pub const AGENCY_CONFIRMATIONS: &str = "karpoosheh_agency_confirmations_total";
/// Rounds put off to their agency's next slot (`rounds_per_second` in the
/// agency registry): the agency is over its pace. Labels: `agency`.
pub const ROUNDS_PACED: &str = "karpoosheh_rounds_paced_total";
/// Notices actually served (two confirmations). Labels: `agency`.
pub const NOTICES_SERVED: &str = "karpoosheh_notices_served_total";
/// Notices not served after every round. Labels: `agency`.
pub const NOTICES_NOT_SERVED: &str = "karpoosheh_notices_not_served_total";
/// Notices whose retention expiry passed before they were served. Labels: `agency`.
pub const NOTICES_EXPIRED: &str = "karpoosheh_notices_expired_total";
/// Scheduled notices (`deliver_at`) that landed in their mailbox. Labels: `agency`.
pub const NOTICES_RELEASED: &str = "karpoosheh_notices_released_total";
/// Scheduled notices their agency cancelled before they landed. Labels: `agency`.
pub const NOTICES_CANCELLED: &str = "karpoosheh_notices_cancelled_total";
/// Reminders of a response deadline (`respond_by`). Labels: `outcome`
/// (`sent`, `failed`, `skipped`: opened or confirmed already).
pub const REMINDERS: &str = "karpoosheh_reminders_total";
/// Notices that found their mailbox unreachable. Labels: `status`.
pub const MAILBOX_UNREACHABLE: &str = "karpoosheh_mailbox_unreachable_total";
/// Time from storing a notice to its legal service (second confirmation).
pub const TIME_TO_SERVED_SECONDS: &str = "karpoosheh_time_to_served_seconds";
/// Due timers handled by the scheduler.
pub const SCHEDULER_TIMERS: &str = "karpoosheh_scheduler_timers_total";
/// How late the oldest timer of the last scan was: above a few seconds
/// the scheduler is falling behind.
pub const SCHEDULER_LAG_SECONDS: &str = "karpoosheh_scheduler_lag_seconds";
/// How late the oldest due timer of a lane was in a worker's last pass
/// over its shards (0 when none was due). Labels: `priority` (urgent,
/// normal, bulk), `worker`.
pub const SCHEDULER_LANE_LAG_SECONDS: &str = "karpoosheh_scheduler_lane_lag_seconds";
/// Time of one scheduler scan (sends and the durable write).
pub const SCHEDULER_SCAN_SECONDS: &str = "karpoosheh_scheduler_scan_seconds";
/// Scheduler passes interrupted by a store error (each retried, the next
/// pass from the start of its shards).
pub const SCHEDULER_STORE_ERRORS: &str = "karpoosheh_scheduler_store_errors_total";
/// Receipts of delivery events published from the outbox.
pub const RECEIPTS_PUBLISHED: &str = "karpoosheh_receipts_published_total";
/// Outbox publishing attempts that failed (the receipts stay and are
/// retried).
pub const OUTBOX_PUBLISH_ERRORS: &str = "karpoosheh_outbox_publish_errors_total";

/// The article-29 follow-up's metrics, emitted once the scheduler runs.
pub const DELIVERY: &[&str] = &[
    NOTIFICATIONS,
    ROUND_RETRIES,
    CONFIRMATIONS,
    AGENCY_NOTIFICATIONS,
    AGENCY_CONFIRMATIONS,
    ROUNDS_PACED,
    NOTICES_SERVED,
    NOTICES_NOT_SERVED,
    NOTICES_EXPIRED,
    NOTICES_RELEASED,
    NOTICES_CANCELLED,
    REMINDERS,
    MAILBOX_UNREACHABLE,
    TIME_TO_SERVED_SECONDS,
    SCHEDULER_TIMERS,
    SCHEDULER_LAG_SECONDS,
    SCHEDULER_LANE_LAG_SECONDS,
    SCHEDULER_SCAN_SECONDS,
    SCHEDULER_STORE_ERRORS,
    RECEIPTS_PUBLISHED,
    OUTBOX_PUBLISH_ERRORS,
];

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
    PIPELINE_STAGE_SECONDS,
    DECODE_SECONDS,
    QUEUE_DEPTH,
    PIPELINE_BYTES_IN_FLIGHT,
    SHARDS,
    STORE_DISK_BYTES,
    STORE_WRITE_BUFFER_OVERRUNS,
    RECORDS_QUARANTINED,
    READY,
    SOURCE_FINISHED,
    BUILD_INFO,
];

// ---- Notification channels (engine/src/channel) ----
// Labels: `channel` (sms, email, push), `gateway` (http-sms, smtp,
// push-webhook, simulated), `outcome` (accepted, transient, permanent).

/// Attempts at a gateway. Labels: `channel`, `gateway`, `outcome`.
pub const CHANNEL_ATTEMPTS: &str = "karpoosheh_channel_attempts_total";
/// Retries after transient failures. Labels: `channel`.
pub const CHANNEL_RETRIES: &str = "karpoosheh_channel_retries_total";
/// Circuit breaker state: 0 closed, 1 half-open, 2 open. Labels: `channel`.
pub const CHANNEL_CIRCUIT_STATE: &str = "karpoosheh_channel_circuit_state";
/// Times a breaker opened. Labels: `channel`.
pub const CHANNEL_CIRCUIT_OPENED: &str = "karpoosheh_channel_circuit_opened_total";
/// How long a send waited for a rate-limit token, for sends that waited.
/// Its `_sum` is the channel's saturation (seconds waited per second,
/// with `rate()`). Labels: `channel`.
pub const CHANNEL_RATE_LIMIT_WAIT_SECONDS: &str = "karpoosheh_channel_rate_limit_wait_seconds";
/// Sends that gave up waiting for a token (channel skipped). Labels: `channel`.
pub const CHANNEL_RATE_LIMIT_REJECTED: &str = "karpoosheh_channel_rate_limit_rejected_total";
/// Time of one attempt. Labels: `channel`.
pub const CHANNEL_SEND_SECONDS: &str = "karpoosheh_channel_send_seconds";
/// 1 per channel in use. Labels: `channel`, `gateway` (`simulated` means
/// nobody is really notified).
pub const CHANNEL_GATEWAY_INFO: &str = "karpoosheh_channel_gateway_info";

/// Notifications refused before any gateway was asked: the address cannot
/// be used on the channel. Labels: `channel`, `reason`
/// (address_kind_mismatch, email_malformed, email_not_ir).
pub const CHANNEL_REFUSED: &str = "karpoosheh_channel_refused_total";

/// The channel metrics: emitted by every node whose dispatcher is set up
/// (the scheduler's, with `delivery.enabled`), from start-up on.
pub const CHANNEL: &[&str] = &[
    CHANNEL_ATTEMPTS,
    CHANNEL_RETRIES,
    CHANNEL_CIRCUIT_STATE,
    CHANNEL_CIRCUIT_OPENED,
    CHANNEL_RATE_LIMIT_WAIT_SECONDS,
    CHANNEL_RATE_LIMIT_REJECTED,
    CHANNEL_SEND_SECONDS,
    CHANNEL_GATEWAY_INFO,
    CHANNEL_REFUSED,
];

/// Every metric the engine emits wherever it serves `/metrics`: the
/// pipeline's ([`ALL`]), the article-29 follow-up's ([`DELIVERY`]), the
/// channels' ([`CHANNEL`]) and the process's ([`PROCESS`]). Not the
/// allocator's ([`ALLOCATOR`], the binary only) nor Kafka's ([`KAFKA`]).
pub fn every() -> Vec<&'static str> {
    ALL.iter()
        .chain(DELIVERY)
        .chain(CHANNEL)
        .chain(PROCESS)
        .copied()
        .collect()
}
// The Kafka front door (`karpoosheh run`). Emitted only by nodes that
// consume Kafka, so they are listed apart from `ALL`; the Kafka
// end-to-end test proves each is emitted.

/// 1 while the consumer reaches at least one broker.
pub const KAFKA_BROKERS_UP: &str = "karpoosheh_kafka_brokers_up";
/// 1 on the agencies' sandbox node (`sandbox.enabled`), 0 on a live one:
/// its simulated gateways are expected, not an alert.
pub const SANDBOX: &str = "karpoosheh_sandbox";
/// Records in the notice topics not yet read by this node. Labels: `agency`.
pub const KAFKA_CONSUMER_LAG: &str = "karpoosheh_kafka_consumer_lag_records";
/// The same records by lane. Labels: `priority` (urgent, normal, bulk).
pub const KAFKA_BACKLOG: &str = "karpoosheh_kafka_backlog_records";
/// Notice partitions this node owns.
pub const KAFKA_ASSIGNED_PARTITIONS: &str = "karpoosheh_kafka_assigned_partitions";
/// 1 while another member shares this node's consumer group and the
/// node, on the embedded store, owns only part of the notice partitions
/// (the node that joined last stops; this one goes on).
pub const KAFKA_GROUP_SHARED: &str = "karpoosheh_kafka_group_shared";
/// Owned partitions paused by back-pressure.
pub const KAFKA_PAUSED_PARTITIONS: &str = "karpoosheh_kafka_paused_partitions";
/// An agency's bulk partitions this node has left unread until Tehran
/// midnight, the agency being over its daily quota with
/// `over_quota = "defer"`. Labels: `agency`.
pub const AGENCY_BULK_DEFERRED: &str = "karpoosheh_agency_bulk_deferred_partitions";
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
/// Signed inputs refused before anything in them was applied. Labels:
/// `kind` (confirmation, profile), `reason` (unsigned, bad_signature,
/// unknown_key, key_revoked, signer_not_allowed, wrong_message_kind).
pub const SIGNED_INPUTS_REFUSED: &str = "karpoosheh_signed_inputs_refused_total";
/// Loads of the trust file. Labels: `result` (ok, error).
pub const TRUST_FILE_LOADS: &str = "karpoosheh_trust_file_loads_total";
/// Inquiries about printed notices (article 15). Labels: `result`
/// (genuine, not_genuine, document_mismatch, rate_limited, bad_request,
/// error).
pub const DOCUMENT_INQUIRIES: &str = "karpoosheh_document_inquiries_total";
/// Signed receipt batches in the node's audit log (its tree size).
pub const AUDIT_LOG_ENTRIES: &str = "karpoosheh_audit_log_entries";
/// Signed tree heads of the audit log. Labels: `result` (published,
/// error: signing, keeping or producing one failed and is retried).
pub const AUDIT_TREE_HEADS: &str = "karpoosheh_audit_tree_heads_total";
/// When the last published tree head was signed, Unix seconds.
pub const AUDIT_LAST_TREE_HEAD: &str = "karpoosheh_audit_last_tree_head_timestamp_seconds";
/// Batches under the last published tree head (its size): the log's
/// entries above it wait for the next head.
pub const AUDIT_PUBLISHED_ENTRIES: &str = "karpoosheh_audit_published_entries";
/// Errors of the notice consumer's client, retried by librdkafka. Labels:
/// `kind` (client, rebalance, consume, pause_resume, seek).
pub const KAFKA_CLIENT_ERRORS: &str = "karpoosheh_kafka_client_errors_total";
/// 1 while a side reader runs. Labels: `reader` (confirmations, registry).
pub const READER_RUNNING: &str = "karpoosheh_reader_running";
/// Failed steps of a side reader. Labels: `reader`, `stage` (consume,
/// write, commit, activate).
pub const READER_ERRORS: &str = "karpoosheh_reader_errors_total";
/// Settings this node runs with that send credentials or personal data
/// unencrypted to another machine (each is logged as a warning at start).
pub const INSECURE_SETTINGS: &str = "karpoosheh_insecure_settings";
/// Records in a side reader's topic not yet read by it (librdkafka's
/// consumer lag, every second). Labels: `reader`.
pub const READER_LAG: &str = "karpoosheh_reader_lag_records";
/// Records a side reader applied durably and committed (profiles stored or
/// found stale, confirmations handed to the scheduler, refused records
/// kept). Labels: `reader`.
pub const READER_APPLIED: &str = "karpoosheh_reader_applied_total";

/// 1 while an agency is parked: its receipt topic refused its receipts
/// (missing, not authorised, or refusing the record), so they wait in the
/// store while every other agency's flow. Labels: `agency`.
pub const AGENCY_PARKED: &str = "karpoosheh_agency_parked";
/// Receipts waiting in the store for a parked agency's topic. Labels:
/// `agency`.
pub const RECEIPTS_PARKED: &str = "karpoosheh_receipts_parked";
/// Receipts put in the parking lot. Labels: `agency`, `reason`
/// (topic_missing, not_authorized, refused, held: sent while the agency
/// was parked, behind the others).
pub const RECEIPTS_PARKED_TOTAL: &str = "karpoosheh_receipts_parked_total";
/// Parked receipts delivered to their agency's topic once it took them
/// again. Labels: `agency`.
pub const RECEIPTS_UNPARKED: &str = "karpoosheh_receipts_unparked_total";

/// Loads of the identity provider's key file (`identity.jwks_file`).
/// Labels: `result` (ok, error).
pub const IDENTITY_KEY_LOADS: &str = "karpoosheh_identity_key_loads_total";

/// Inbox API calls answered. Labels: `route` (mailbox, notice, confirm,
/// share, unshare, openapi, other), `status` (the HTTP status class and
/// code, e.g. `200`, `401`, `429`).
pub const INBOX_REQUESTS: &str = "karpoosheh_inbox_requests_total";
/// Time to answer an inbox API call, seconds. Labels: `route`.
pub const INBOX_REQUEST_SECONDS: &str = "karpoosheh_inbox_request_seconds";

/// The identity side's and the inbox API's metrics: emitted by a node that
/// serves the inbox API (`inbox.listen`).
pub const IDENTITY: &[&str] = &[IDENTITY_KEY_LOADS, INBOX_REQUESTS, INBOX_REQUEST_SECONDS];

// The ScyllaDB backend's own. Emitted only by nodes on a cluster, so
// listed apart (and not yet checked by a test: the ScyllaDB tests install
// no metrics recorder).

/// 1 while this node holds the lease on its `node_id` in the cluster.
pub const STORE_LEASE_HELD: &str = "karpoosheh_store_lease_held";
/// Failed renewals or releases of the node lease. Labels: `kind` (renew,
/// release).
pub const STORE_LEASE_ERRORS: &str = "karpoosheh_store_lease_errors_total";
/// Schema migrations applied by this process (`migrate`, or
/// `scylla.migrate_on_start`).
pub const STORE_MIGRATIONS_APPLIED: &str = "karpoosheh_store_migrations_applied_total";
/// Repairs on the way: `kind` (interrupted_write, orphan_mailbox_entry).
pub const STORE_REPAIRS: &str = "karpoosheh_store_repairs_total";

/// Every ScyllaDB-backend metric.
pub const SCYLLA: &[&str] = &[
    STORE_LEASE_HELD,
    STORE_LEASE_ERRORS,
    STORE_MIGRATIONS_APPLIED,
    STORE_REPAIRS,
];

/// Every Kafka metric, for the Kafka end-to-end test and the monitor.
pub const KAFKA: &[&str] = &[
    KAFKA_BROKERS_UP,
    SANDBOX,
    RECEIPT_LATENCY_SECONDS,
    KAFKA_CONSUMER_LAG,
    KAFKA_BACKLOG,
    KAFKA_ASSIGNED_PARTITIONS,
    KAFKA_GROUP_SHARED,
    KAFKA_PAUSED_PARTITIONS,
    AGENCY_BULK_DEFERRED,
    KAFKA_REBALANCES,
    KAFKA_COMMITS,
    RECEIPTS_PRODUCED,
    DEAD_LETTERS_PRODUCED,
    KAFKA_PRODUCE_ERRORS,
    PROFILES,
    AGENCY_REGISTRY_LOADS,
    SIGNED_INPUTS_REFUSED,
    TRUST_FILE_LOADS,
    DOCUMENT_INQUIRIES,
    KAFKA_CLIENT_ERRORS,
    READER_RUNNING,
    READER_ERRORS,
    READER_LAG,
    READER_APPLIED,
    AGENCY_PARKED,
    RECEIPTS_PARKED,
    RECEIPTS_PARKED_TOTAL,
    RECEIPTS_UNPARKED,
    INSECURE_SETTINGS,
    AUDIT_LOG_ENTRIES,
    AUDIT_TREE_HEADS,
    AUDIT_LAST_TREE_HEAD,
    AUDIT_PUBLISHED_ENTRIES,
];
