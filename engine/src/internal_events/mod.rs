//! Internal events: each is a struct whose `emit()` writes its metric and,
//! where one is due, its log line together, so they never drift apart.
//! Hot-path events are emitted once per batch, not per record. One file
//! per floor that emits them: ingest (pipeline and store writes), the
//! store backends' own (lease, migrations, repairs), delivery (article
//! 29), channels, Kafka, and the side readers and outbox.
//!
//! The lowest floor of the engine: events take labels, counts and
//! durations (and the wire contract's own types), never another module's
//! records, so nothing here imports the modules that emit them.
//!
//! No event carries a national ID: logs and labels name agencies, reasons,
//! counts and tracking-code-free positions only.

mod channel;
mod delivery;
mod evidence;
mod ingest;
mod kafka;
mod readers;
mod store;

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use karpoosheh_schemas::{AgencyId, Channel};

pub use self::channel::*;
pub use self::delivery::*;
pub use self::evidence::*;
pub use self::ingest::*;
pub use self::kafka::*;
pub use self::readers::*;
pub use self::store::*;

/// Agency label values are capped: a flood of made-up agency IDs must not
/// explode the metrics' cardinality. Past the cap, new agencies are
/// counted under `_other`.
pub const MAX_AGENCY_LABELS: usize = 256;

/// Maps an agency to its metric label.
pub fn agency_label(agency: Option<&AgencyId>) -> String {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let Some(a) = agency else {
        return "_invalid".to_owned();
    };
    let seen = SEEN.get_or_init(|| Mutex::new(HashSet::new()));
    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    if seen.contains(a.as_str()) {
        return a.as_str().to_owned();
    }
    if seen.len() < MAX_AGENCY_LABELS {
        seen.insert(a.as_str().to_owned());
        return a.as_str().to_owned();
    }
    "_other".to_owned()
}

/// Stable label of a notification channel in metrics, logs and
/// configuration.
pub fn channel_label(kind: Channel) -> &'static str {
    match kind {
        Channel::Sms => "sms",
        Channel::Email => "email",
        Channel::Push => "push",
    }
}
