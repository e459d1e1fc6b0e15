//! Side readers: the Kafka consumers beside the notice source, each on its
//! own thread with its own consumer group, committing only after what it
//! read is applied durably. [`confirmations`] hands recipients'
//! confirmations (`karpoosheh.acks`) to the article-29 scheduler;
//! [`registry`] writes mailbox profiles (`karpoosheh.registry`) to the
//! store and tells the scheduler of activations. `crate::node` starts them.

pub(crate) mod confirmations;
pub(crate) mod registry;

/// Where a side reader reads: its topic, its consumer group, and the
/// client configuration.
pub(crate) struct Subscription<'a> {
    pub topic: &'a str,
    pub group_id: &'a str,
    pub client: rdkafka::config::ClientConfig,
}
