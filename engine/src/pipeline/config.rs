//! `[pipeline]`: how ingest batches, groups and queues records; with the
//! sizes here the pipeline's memory is bounded whatever the backlog.

use karpoosheh_schemas::{ByteSize, HumanDuration};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Batch buffers. Each source lane (Kafka partition, file) maps to one
    /// shard, whose order is kept to the store.
    pub shards: usize,
    /// A shard's batch is written when it holds this many records...
    pub batch_max_notices: usize,
    /// ...or when its oldest record has waited this long...
    pub batch_linger: HumanDuration,
    /// ...or at once when the committer is idle and nothing waits for it
    /// (group commit without waiting: a trickle is answered in
    /// milliseconds). `false` always waits for the linger or the size.
    pub write_when_idle: bool,
    /// The committer merges ready batches into one durable write of at most
    /// this many records (group commit: one fsync for all of them).
    pub group_max_notices: usize,
    /// Records read from the source and decoded in parallel at a time.
    pub decode_chunk: usize,
    /// Chunks and batches waiting between stages; with the sizes above
    /// this bounds the pipeline's memory, whatever the source's backlog.
    pub queue_depth: usize,
    /// Threads decoding and validating; 0 means one per core.
    pub decode_threads: usize,
    /// Payload bytes read from the source and not yet acknowledged, at
    /// most (a record past it is let in alone): what bounds the
    /// pipeline's memory when records are large, whatever the record
    /// counts above allow.
    pub max_bytes_in_flight: ByteSize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            shards: 4,
            // 1000-2000 records per fsync amortise its ~1-5 ms cost to a few
            // microseconds per notice.
            batch_max_notices: 2000,
            // Low traffic still sees its receipt within tens of milliseconds.
            batch_linger: HumanDuration(std::time::Duration::from_millis(20)),
            write_when_idle: true,
            group_max_notices: 4000,
            decode_chunk: 2048,
            queue_depth: 4,
            decode_threads: 0,
            // Above what the record counts hold of typical notices (about
            // 30,000 records of 1-2 KiB), so it binds only on large ones:
            // 256 maximum-size records.
            max_bytes_in_flight: ByteSize::mib(64),
        }
    }
}

impl PipelineConfig {
    /// Refuses sizes the pipeline cannot run with, with what to change.
    pub fn validate(&self) -> Result<(), String> {
        let p = self;
        if p.shards == 0 || p.shards > 1024 {
            return Err("pipeline.shards must be 1-1024".into());
        }
        if p.batch_max_notices == 0 || p.decode_chunk == 0 || p.queue_depth == 0 {
            return Err(
                "pipeline.batch_max_notices, decode_chunk and queue_depth must be above zero"
                    .into(),
            );
        }
        if p.group_max_notices < p.batch_max_notices {
            return Err(format!(
                "pipeline.group_max_notices ({}) must be at least pipeline.batch_max_notices ({})",
                p.group_max_notices, p.batch_max_notices
            ));
        }
        if p.batch_linger.0.is_zero() {
            return Err("pipeline.batch_linger must be above zero (e.g. \"20ms\")".into());
        }
        if p.max_bytes_in_flight.0 < 1 << 20 {
            return Err(format!(
                "pipeline.max_bytes_in_flight = {} is below 1MiB: the pipeline would crawl one record at a time",
                p.max_bytes_in_flight
            ));
        }
        Ok(())
    }
}
