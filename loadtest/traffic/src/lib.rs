//! Realistic generated traffic for Karpoosheh, shared by `karpoosheh demo`
//! (in the engine) and `karpoosheh-loadtest`: notices from Iranian
//! government agencies, as the bytes an agency would put on its topic,
//! each with the outcome the engine must report for it.
//!
//! Owns the traffic model ([`Traffic`], [`TrafficConfig`], [`Expect`]) and
//! everything it needs to write records: the JSON envelope as the agencies'
//! systems write it, recipients' IDs and their corruptions, Windows-1256,
//! Jalali dates and the Persian text pools. It does no I/O beyond the
//! writers it is handed, and it must not depend on the engine (the engine
//! depends on it, for the demo); what a record's outcome is, is the wire
//! contract's (`karpoosheh-schemas`) to decide, and this crate's tests
//! check its expectations against the contract's decoder.
//!
//! Record `i` is a pure function of `(seed, i)`: chunks can be generated in
//! parallel, and any record can be re-generated later to verify what the
//! engine did with it. (The per-record generator is [`SmallRng`], so the
//! bytes are reproducible for one build on one platform, which is what the
//! demo and the load test need.)
//!
//! What the model contains:
//! - eight agencies with realistic shares, notice kinds and life events, and
//!   Persian titles and bodies assembled from sentence pools, with amounts,
//!   Jalali dates, case and payment numbers in Persian digits;
//! - recipients drawn from a population of `mailboxes` IDs with valid check
//!   digits (85% natural persons, 15% legal entities; the top 200 companies
//!   receive 2% of all traffic), sometimes written in Persian digits or as
//!   `<id>@iran`;
//! - the judiciary's serializer escapes all non-ASCII as `\uXXXX` with
//!   Python's separators, like `json.dumps` with its defaults;
//! - a mix of deliberately bad records ([`Traffic::bad_mix`]), each with
//!   exactly one problem, and exact re-sends of earlier valid records.
//!
//! [`SmallRng`]: rand::rngs::SmallRng

mod agencies;
mod cp1256;
mod dates;
mod digits;
mod ids;
mod model;
mod random;
mod text;
mod wire;

pub use model::{Expect, Generated, Traffic, TrafficConfig};
