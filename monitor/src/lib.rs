//! `karpoosheh-monitor`: the operators' terminal dashboard for a fleet of
//! Karpoosheh engine nodes.
//!
//! It owns the live view — scraping each node's `/metrics`, rates over a
//! sliding window, quantiles from histogram buckets, alerts against
//! configured thresholds, the views and their keys — and a plain-text mode
//! that logs one summary line per interval. It reads metric names only
//! from `karpoosheh_schemas::metric_names` ([`READS`] lists every one, for
//! the test that proves they are emitted), and it must never link the
//! engine, write to a node, or show or log anything personal (the metrics
//! carry no national ID, and nothing here would add one). Its drill-down
//! ([`drill`]) reads the nodes' read-only operators' endpoints, and masks
//! every personal number before it is kept.

mod alerts;
mod collect;
mod config;
pub mod drill;
mod error;
#[cfg(test)]
mod fixtures;
mod fleet;
mod fmt;
mod plain;
mod prom;
mod reads;
mod run;
mod series;
mod state;
mod ui;

pub use config::{AlertConfig, ColorMode, Config, OperatorAccess, Target, DEFAULT_TARGET, WINDOWS};
pub use error::Error;
pub use prom::{parse as parse_metrics, Exposition, Family, Sample};
pub use reads::{reads, Emitter, Kind, Read, READS};
pub use run::{run, Mode, Options};
pub use ui::{Exit, Signals};
