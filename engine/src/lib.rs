//! The Karpoosheh delivery engine.
//!
//! Owns the path from agencies' input to durable mailboxes and on to a
//! legal outcome. Its floors, in the order data flows (each imports only
//! the floors below it; docs/architecture.md draws the tree):
//!
//! - the records it keeps (`model`), secrets, readiness, internal events
//!   (one log line and one metric each) and process metrics;
//! - adapters by role: sources of notices (memory, file, Kafka), sinks of
//!   receipts (file, Kafka, tallies), mailbox stores (embedded fjall,
//!   ScyllaDB; one conformance suite), notification channels, Kafka client
//!   configuration, the agency registry, the metrics and health server;
//! - the ingest pipeline (decode, shard, group commit) and the article-29
//!   follow-up (`delivery`: the durable scheduler, confirmations, outbox);
//! - the side readers (confirmations, mailbox profiles);
//! - the node (`node`): the only code that sees the whole [`Config`],
//!   assembling [`run`], [`demo`] and [`ingest`].
//!
//! It must not own the wire contract (that is `karpoosheh-schemas`), the
//! dashboard (`karpoosheh-monitor`, which only reads metrics) or the
//! generated traffic (`karpoosheh-traffic`). It never writes a national ID
//! into a log line or a metric label.
//!
//! The modules are private; this page's `pub use` block is the whole
//! surface the binaries, the load generator, the benchmarks and the tests
//! use.

mod agencies;
mod audit;
mod channel;
mod config;
mod delivery;
mod documents;
mod evidence;
mod health;
mod http;
mod identity;
mod inbox;
mod internal_events;
mod kafka;
#[cfg(test)]
mod layers;
mod model;
mod node;
mod operator;
mod pipeline;
mod process_metrics;
mod readers;
mod reload;
mod secret;
mod sink;
mod source;
pub mod status;
mod store;

pub use crate::agencies::AgenciesConfig;
pub use crate::audit::{AuditError, AuditLog};
pub use crate::channel::{
    ChannelError, ChannelsConfig, Delivery, Notification, SendError, SimulatedConfig, Target,
};
pub use crate::config::{Config, ConfigError, LogConfig, LogFormat, MetricsConfig};
pub use crate::delivery::{
    simulate, Clock, ConfirmOutcome, DeliveryConfig, ManualClock, Notify, Outbox, OutboxError,
    Registry, Scheduler, SchedulerError, SchedulerHandle, SentNotification, StoreRegistry,
    SystemClock,
};
pub use crate::documents::{inquire, Inquiry};
pub use crate::evidence::{
    b64url, chain, from_b64url, jcs, jws, keys, log, merkle, proof, seal, trust, EvidenceConfig,
    SignedKind,
};
pub use crate::health::Health;
pub use crate::http::{install_recorder, HttpServer};
pub use crate::identity::{sign_token, IdentityConfig, KeySet, Session, TokenError, Verifier};
pub use crate::inbox::InboxConfig;
pub use crate::kafka::KafkaConfig;
pub use crate::model::{agency_queue, Queue, AGENCY_QUEUES};
pub use crate::model::{
    hex, AccessRecord, Action, ConfirmationRecord, DeliveryRecord, DeliveryState, DeliveryWrite,
    Entry, MailboxPage, NewNotice, NewRejection, Outcome, Pending, RoundDelivery, RoundRecord,
    StoredEvent, StoredNotice, StoredRejection, Timer, TimerKind, TIMER_SHARDS, TIMER_SLOTS,
};
pub use crate::node::audited as node_audited;
pub use crate::node::sealer as node_sealer;
pub use crate::node::{
    demo, inbox as inbox_server, ingest, notifier, open_store, open_store_read_only, pipeline,
    render_chain, render_history, render_status, run, scheduler,
};
pub use crate::operator::{Inspect, NoticeView, OperatorConfig, Remote};
pub use crate::pipeline::{Pipeline, PipelineConfig, PipelineError, RunSummary, TrackingCodes};
pub use crate::process_metrics::{jemalloc_is_the_allocator, peak_rss_bytes, reset_peak_rss};
pub use crate::secret::Secret;
pub use crate::sink::{
    AcceptedOut, DeliveryTally, Handled, HandledKind, NdjsonReceipts, Sink, SinkError, Tally,
    TallySink,
};
pub use crate::source::{
    AckToken, FileSource, MemorySender, MemorySource, Poll, Record, Source, SourceError,
};
pub use crate::status::{replay as replay_receipts, Replayed};
pub use crate::store::{
    conformance, scylla, AccessStore, AuditStore, CheckReport, DeliveryStore, Durability,
    FjallStore, FjallStoreConfig, NoticeStore, ProfileStore, Store, StoreBackend, StoreConfig,
    StoreError, StoreStats,
};
/// The metric names live in the wire contract, shared with the monitor.
pub use karpoosheh_schemas::metric_names;
