//! The monitor's configuration: built-in defaults, an optional TOML file
//! (`--config`) and command-line flags, later winning. Unknown keys are
//! refused, and [`Config::validate`] refuses combinations that would show
//! wrong numbers (a rate window shorter than two scrapes, a timeout longer
//! than the interval). Documented in docs/operations.md ("Dashboard").

use std::path::Path;
use std::time::Duration;

use karpoosheh_schemas::HumanDuration;
use serde::{Deserialize, Serialize};

use crate::Error;

/// The chart windows `+`/`-` step through.
pub const WINDOWS: &[Duration] = &[
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(15 * 60),
    Duration::from_secs(3600),
    Duration::from_secs(6 * 3600),
];

/// Every scrape is kept this long (the short windows and the alerts read
/// them); older ones are thinned out.
pub(crate) const FINE_HORIZON: Duration = Duration::from_secs(15 * 60 + 30);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Engine nodes to watch: `HOST:PORT` or full `http(s)://` URLs of
    /// their metrics endpoint (`/metrics` is added when no path is given).
    pub targets: Vec<String>,
    /// How often each node is scraped.
    pub scrape_interval: HumanDuration,
    /// A node that has not answered within this is counted as not
    /// answering for that scrape (at most `scrape_interval`; unset: 1.5s,
    /// or three quarters of a shorter interval).
    pub scrape_timeout: Option<HumanDuration>,
    /// The screen redraws at most this often (and only when something
    /// changed or a key was pressed).
    pub refresh: HumanDuration,
    /// Per-second rates and latency percentiles are computed over this.
    pub rate_window: HumanDuration,
    /// The initial chart window; shares (%) and counts are over it too.
    /// One of 1m, 5m, 15m, 1h, 6h (`+`/`-` change it).
    pub window: HumanDuration,
    /// `auto` (colour on a terminal unless `NO_COLOR` is set), `always`, `never`.
    pub color: ColorMode,
    pub alerts: AlertConfig,
    /// The nodes' operator endpoints, for the drill-down views.
    pub operator: OperatorAccess,
}

/// `[operator]`: where the drill-down views (an agency's rejections, a
/// node's parked agencies and quarantined records, a tracking code's
/// history) read, with which credential. The endpoint's routes only
/// read (a lookup is recorded in the mailbox's traffic data, as every
/// read of it is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct OperatorAccess {
    /// A file holding the operator credential: the nodes'
    /// `operator.token_file` (one line). Read at every drill-down, so a
    /// rotated credential needs no restart.
    pub token_file: Option<std::path::PathBuf>,
    /// Each target's operator endpoint (its `operator.listen`), in the
    /// order of `targets`: `HOST:PORT` or an `http(s)://` URL; `""` for a
    /// node without one. Empty: no drill-down.
    pub endpoints: Vec<String>,
}

impl OperatorAccess {
    /// The base URL of each target's endpoint (`None` where it has none).
    pub fn bases(&self) -> Result<Vec<Option<String>>, Error> {
        self.endpoints
            .iter()
            .map(|e| {
                let e = e.trim();
                if e.is_empty() {
                    return Ok(None);
                }
                let t = Target::parse(e).map_err(|_| {
                    Error::Config(format!(
                        "operator.endpoints: {e:?} is neither HOST:PORT nor an http(s):// URL"
                    ))
                })?;
                // The scheme and authority only: routes are the monitor's.
                let base = t.url.trim_end_matches("/metrics").trim_end_matches('/');
                let authority_end = base
                    .find("://")
                    .map(|i| i + 3)
                    .and_then(|i| base[i..].find('/').map(|j| i + j))
                    .unwrap_or(base.len());
                Ok(Some(base[..authority_end].to_owned()))
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColorMode {
    Auto,
    Always,
    Never,
}

/// Alert thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertConfig {
    /// Rates and slopes in alerts are computed over this window.
    pub window: HumanDuration,
    /// A node is down when it has not answered for this long.
    pub node_down_after: HumanDuration,
    /// Kafka consumer lag growing over `window` raises an alert only
    /// above this many records (a small lag that wobbles is normal).
    pub lag_min_records: u64,
    /// Scheduler lag above this, and growing, raises an alert.
    pub scheduler_lag: HumanDuration,
    /// An agency whose rejected share of its notices over `window` is
    /// above this (0..1).
    pub rejection_rate: f64,
    /// A channel whose failed share of gateway attempts over `window` is
    /// above this (0..1).
    pub notification_failure_rate: f64,
    /// Shares are judged only over at least this many events in `window`
    /// (one bad notice of two is not a 50% rejection rate worth waking
    /// anyone for).
    pub min_events: u64,
    /// A circuit breaker open for at least this long raises an alert.
    pub circuit_open_for: HumanDuration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            // The engine's default metrics address.
            targets: Vec::new(),
            // Often enough to see a batch come and go, cheap for 8+ nodes.
            scrape_interval: HumanDuration(Duration::from_secs(2)),
            // A node that needs longer is in trouble; it never delays others.
            scrape_timeout: None,
            // Keys feel immediate; an idle screen costs nothing.
            refresh: HumanDuration(Duration::from_millis(250)),
            // Five scrapes: smooth enough, still "now".
            rate_window: HumanDuration(Duration::from_secs(10)),
            window: HumanDuration(Duration::from_secs(5 * 60)),
            color: ColorMode::Auto,
            alerts: AlertConfig::default(),
            operator: OperatorAccess::default(),
        }
    }
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            // Long enough to ignore a single slow batch.
            window: HumanDuration(Duration::from_secs(60)),
            // Five missed scrapes at the default interval.
            node_down_after: HumanDuration(Duration::from_secs(10)),
            lag_min_records: 1000,
            // docs/operations.md: above a minute and growing, the scheduler
            // cannot keep up.
            scheduler_lag: HumanDuration(Duration::from_secs(60)),
            // As the suggested Prometheus alerts in docs/operations.md.
            rejection_rate: 0.2,
            notification_failure_rate: 0.2,
            min_events: 20,
            // An open breaker means a gateway is down: show it at once.
            circuit_open_for: HumanDuration(Duration::ZERO),
        }
    }
}

/// The default target when none is given: the engine's default
/// `metrics.listen`.
pub const DEFAULT_TARGET: &str = "127.0.0.1:9464";

impl Config {
    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_toml(&text).map_err(|e| match e {
            Error::Config(message) => Error::Config(format!("{}: {message}", path.display())),
            other => other,
        })
    }

    pub fn from_toml(text: &str) -> Result<Config, Error> {
        toml::from_str(text).map_err(|e| Error::Config(e.to_string()))
    }

    /// The targets, parsed; the default one when none is configured.
    pub fn targets(&self) -> Result<Vec<Target>, Error> {
        if self.targets.is_empty() {
            return Ok(vec![Target::parse(DEFAULT_TARGET)?]);
        }
        self.targets.iter().map(|t| Target::parse(t)).collect()
    }

    /// Refuses combinations that would make the numbers wrong or the
    /// monitor expensive, with what to change.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Config(m));
        let interval = self.scrape_interval.0;
        if interval < Duration::from_millis(100) {
            return bad(format!(
                "scrape_interval = {} is below 100ms; scraping that often only loads the engines",
                self.scrape_interval
            ));
        }
        let timeout = self.timeout();
        if timeout.is_zero() || timeout > interval {
            return bad(format!(
                "scrape_timeout = {} must be above zero and at most scrape_interval ({})",
                HumanDuration(timeout),
                self.scrape_interval
            ));
        }
        if self.refresh.0 < Duration::from_millis(20) {
            return bad(format!("refresh = {} is below 20ms", self.refresh));
        }
        if self.rate_window.0 < interval * 2 {
            return bad(format!(
                "rate_window = {} must cover at least two scrapes (2 x scrape_interval = {})",
                self.rate_window,
                HumanDuration(interval * 2)
            ));
        }
        if self.rate_window.0 > FINE_HORIZON {
            return bad(format!("rate_window = {} is above 15m", self.rate_window));
        }
        if !WINDOWS.contains(&self.window.0) {
            return bad(format!(
                "window = {} is not one of {}",
                self.window,
                window_names().join(", ")
            ));
        }
        let op = &self.operator;
        if !op.endpoints.is_empty() {
            let targets = self.targets.len().max(1);
            if op.endpoints.len() != targets {
                return bad(format!(
                    "operator.endpoints names {} endpoint(s) for {targets} target(s): one per target, in the same order (\"\" for a node without one)",
                    op.endpoints.len()
                ));
            }
            if op.token_file.is_none() {
                return bad(
                    "operator.endpoints is set: operator.token_file must name the operator credential"
                        .into(),
                );
            }
            op.bases()?;
        }
        let a = &self.alerts;
        if a.window.0 < interval * 2 || a.window.0 > FINE_HORIZON {
            return bad(format!(
                "alerts.window = {} must be between 2 x scrape_interval and 15m",
                a.window
            ));
        }
        for (name, v) in [
            ("alerts.rejection_rate", a.rejection_rate),
            (
                "alerts.notification_failure_rate",
                a.notification_failure_rate,
            ),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("{name} = {v} must be a share between 0 and 1"));
            }
        }
        if a.node_down_after.0 < interval {
            return bad(format!(
                "alerts.node_down_after = {} is below scrape_interval ({}): every slow scrape would page",
                a.node_down_after, self.scrape_interval
            ));
        }
        self.targets()?;
        Ok(())
    }

    /// The scrape timeout in force.
    pub fn timeout(&self) -> Duration {
        match self.scrape_timeout {
            Some(t) => t.0,
            None => Duration::from_millis(1500).min(self.scrape_interval.0.mul_f64(0.75)),
        }
    }

    /// The index of the configured window in [`WINDOWS`].
    pub(crate) fn window_index(&self) -> usize {
        WINDOWS
            .iter()
            .position(|w| *w == self.window.0)
            .unwrap_or(1)
    }
}

/// "1m", "5m", …: how windows are named on screen.
pub(crate) fn window_name(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

fn window_names() -> Vec<String> {
    WINDOWS.iter().map(|w| window_name(*w)).collect()
}

/// One engine node to scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// How the node is named on screen: `host:port`.
    pub name: String,
    /// What is fetched.
    pub url: String,
}

impl Target {
    /// `HOST:PORT`, `[v6]:PORT`, or an `http(s)://` URL (path defaults to
    /// `/metrics`).
    pub fn parse(s: &str) -> Result<Target, Error> {
        let bad = || Error::Target(s.to_owned());
        let s = s.trim();
        let (scheme, rest) = match s.split_once("://") {
            Some((scheme @ ("http" | "https"), rest)) => (scheme, rest),
            Some(_) => return Err(bad()),
            None => ("http", s),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let port_ok = |p: &str| !p.is_empty() && p.parse::<u16>().is_ok();
        let valid = if let Some(v6) = authority.strip_prefix('[') {
            matches!(v6.split_once("]:"), Some((h, p)) if !h.is_empty() && port_ok(p))
                || (s.contains("://") && v6.ends_with(']'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => !h.is_empty() && !h.contains(':') && port_ok(p),
                // A URL may leave the port to its scheme; a bare target may not.
                None => s.contains("://") && !authority.is_empty(),
            }
        };
        if !valid || authority.contains(char::is_whitespace) {
            return Err(bad());
        }
        let path = if path.is_empty() || path == "/" {
            "/metrics"
        } else {
            path
        };
        Ok(Target {
            name: authority.to_owned(),
            url: format!("{scheme}://{authority}{path}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        assert_eq!(
            Config::default().targets().unwrap()[0].url,
            "http://127.0.0.1:9464/metrics"
        );
    }

    #[test]
    fn operator_endpoints_one_per_target_with_a_credential() {
        let mut c = Config::from_toml(
            r#"
            targets = ["10.0.0.5:9464", "10.0.0.6:9464"]
            [operator]
            token_file = "/etc/karpoosheh/operator.token"
            endpoints = ["10.0.0.5:9465", ""]
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.operator.bases().unwrap(),
            [Some("http://10.0.0.5:9465".to_owned()), None]
        );
        c.operator.endpoints = vec!["https://ops.ito.ir:8443/".into(), "x".into()];
        assert!(c.validate().is_err(), "x is no endpoint");
        c.operator.endpoints.pop();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("one per target"), "{e}");
        c.operator.endpoints = vec!["https://ops.ito.ir:8443/".into(), "".into()];
        assert_eq!(
            c.operator.bases().unwrap()[0].as_deref(),
            Some("https://ops.ito.ir:8443")
        );
        c.operator.token_file = None;
        assert!(c.validate().unwrap_err().to_string().contains("token_file"));
    }

    #[test]
    fn targets_as_host_port_or_url() {
        let t = Target::parse("10.0.0.5:9464").unwrap();
        assert_eq!(
            (t.name.as_str(), t.url.as_str()),
            ("10.0.0.5:9464", "http://10.0.0.5:9464/metrics")
        );
        let t = Target::parse("https://node7.ito.ir:9443/custom/metrics").unwrap();
        assert_eq!(t.url, "https://node7.ito.ir:9443/custom/metrics");
        assert_eq!(t.name, "node7.ito.ir:9443");
        assert_eq!(
            Target::parse("http://node7/").unwrap().url,
            "http://node7/metrics"
        );
        assert_eq!(
            Target::parse("[::1]:9464").unwrap().url,
            "http://[::1]:9464/metrics"
        );
        for bad in [
            "node7",
            "node7:",
            ":9464",
            "node7:99999",
            "ftp://x:1",
            "a b:1",
            "::1:9464",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_file_sets_thresholds_and_refuses_unknown_keys() {
        let c = Config::from_toml(
            "targets = [\"a:1\", \"b:2\"]\nscrape_interval = \"1s\"\nrate_window = \"5s\"\n[alerts]\nrejection_rate = 0.05\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.timeout(),
            Duration::from_millis(750),
            "the timeout follows a short interval"
        );
        assert_eq!(c.alerts.rejection_rate, 0.05);
        assert_eq!(c.alerts.min_events, 20, "unset keys keep their defaults");
        assert_eq!(c.targets().unwrap().len(), 2);
        let e = Config::from_toml("[alerts]\nrejection_ratio = 0.05\n").unwrap_err();
        assert!(e.to_string().contains("rejection_ratio"), "{e}");
        let e = Config::from_toml("scrape_interval = \"soon\"\n").unwrap_err();
        assert!(e.to_string().contains("not a duration"), "{e}");
    }

    #[test]
    fn validate_refuses_what_would_show_wrong_numbers() {
        let c = Config {
            rate_window: HumanDuration(Duration::from_secs(3)),
            ..Config::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("two scrapes"));
        let c = Config {
            scrape_timeout: Some(HumanDuration(Duration::from_secs(5))),
            ..Config::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("scrape_timeout"));
        let c = Config {
            window: HumanDuration(Duration::from_secs(120)),
            ..Config::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("1m, 5m, 15m, 1h, 6h"));
        let mut c = Config::default();
        c.alerts.rejection_rate = 20.0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("between 0 and 1"));
        let c = Config {
            targets: vec!["nohost".into()],
            ..Config::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn window_names() {
        assert_eq!(super::window_names(), ["1m", "5m", "15m", "1h", "6h"]);
    }
}
