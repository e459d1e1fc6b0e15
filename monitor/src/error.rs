//! The library's errors: each says what to change.

/// What can go wrong in the monitor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot read the configuration file {path}: {source}")]
    ConfigRead {
        path: String,
        source: std::io::Error,
    },
    #[error("configuration: {0}")]
    Config(String),
    #[error("target {0:?} is neither HOST:PORT nor an http(s):// URL (e.g. 10.0.0.5:9464 or https://node7:9464/metrics)")]
    Target(String),
    #[error("the text is not in the Prometheus text format: {0}")]
    Parse(String),
    #[error("the terminal failed ({0}); run with --plain to log summary lines instead")]
    Terminal(std::io::Error),
    #[error("cannot start the collector threads: {0}")]
    Threads(std::io::Error),
}
