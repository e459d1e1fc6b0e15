//! End-to-end tests: one binary, one module per area.

mod alerts;
mod cli;
mod cql;
mod crash;
mod demo;
mod deploy;
mod ingest;
mod kafka;
mod lanes;
mod metrics;
mod monitor;
mod parking;
mod sandbox;
