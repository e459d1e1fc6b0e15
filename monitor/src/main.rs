//! `karpoosheh-monitor`: see the crate documentation and
//! docs/operations.md ("The dashboard").

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use karpoosheh_monitor::{ColorMode, Config, Mode, Options, Signals};
use karpoosheh_schemas::HumanDuration;

#[derive(Parser)]
#[command(
    name = "karpoosheh-monitor",
    version,
    about = "The operators' dashboard: a live view of Karpoosheh engine nodes from their /metrics",
    after_help = "Keys: ? in the dashboard. Without a terminal on stdout (or with --plain) it prints one summary line per interval.",
    max_term_width = 100
)]
struct Cli {
    /// Engine nodes: HOST:PORT or http(s):// URLs of /metrics (default 127.0.0.1:9464, or the config file's).
    targets: Vec<String>,
    /// Configuration file (TOML): targets, intervals, windows, alert thresholds.
    #[arg(long, env = "KARPOOSHEH_MONITOR_CONFIG")]
    config: Option<PathBuf>,
    /// How often each node is scraped, e.g. 2s.
    #[arg(long, value_name = "DURATION")]
    interval: Option<HumanDuration>,
    /// Give up on a node's scrape after this (at most the interval).
    #[arg(long, value_name = "DURATION")]
    timeout: Option<HumanDuration>,
    /// Redraw at most this often, e.g. 250ms.
    #[arg(long, value_name = "DURATION")]
    refresh: Option<HumanDuration>,
    /// Window of the per-second rates, e.g. 10s.
    #[arg(long, value_name = "DURATION")]
    rate_window: Option<HumanDuration>,
    /// Initial chart window: 1m, 5m, 15m, 1h or 6h.
    #[arg(long, value_name = "DURATION")]
    window: Option<HumanDuration>,
    /// One summary line per interval instead of the dashboard.
    #[arg(long)]
    plain: bool,
    /// Print one summary line once rates are known, then exit (1 if no node answered).
    #[arg(long)]
    once: bool,
    /// Colour: auto (honours NO_COLOR), always, never.
    #[arg(long, value_enum)]
    color: Option<Color>,
    /// A node's operator endpoint (its operator.listen), for the drill-down
    /// views; once per target, in the targets' order ("" for none).
    #[arg(long = "operator-endpoint", value_name = "HOST:PORT")]
    operator_endpoints: Vec<String>,
    /// The file holding the operator credential (the nodes' operator.token_file).
    #[arg(long, value_name = "FILE")]
    operator_token_file: Option<PathBuf>,
    /// Shown in the dashboard's header.
    #[arg(long, default_value = "karpoosheh")]
    title: String,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

fn config(cli: &Cli) -> Result<Config> {
    let mut c = match &cli.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if !cli.targets.is_empty() {
        c.targets = cli.targets.clone();
    }
    let set = |slot: &mut HumanDuration, v: &Option<HumanDuration>| {
        if let Some(v) = v {
            *slot = *v;
        }
    };
    set(&mut c.scrape_interval, &cli.interval);
    if cli.timeout.is_some() {
        c.scrape_timeout = cli.timeout;
    }
    set(&mut c.refresh, &cli.refresh);
    set(&mut c.rate_window, &cli.rate_window);
    set(&mut c.window, &cli.window);
    if let Some(color) = cli.color {
        c.color = match color {
            Color::Auto => ColorMode::Auto,
            Color::Always => ColorMode::Always,
            Color::Never => ColorMode::Never,
        };
    }
    if !cli.operator_endpoints.is_empty() {
        c.operator.endpoints = cli.operator_endpoints.clone();
    }
    if cli.operator_token_file.is_some() {
        c.operator.token_file = cli.operator_token_file.clone();
    }
    c.validate()?;
    if !c.operator.endpoints.is_empty() {
        // Refused at start, not at the first drill-down.
        karpoosheh_monitor::drill::credential(&c.operator).map_err(anyhow::Error::msg)?;
    }
    Ok(c)
}

fn main() {
    let cli = Cli::parse();
    let result = (|| -> Result<i32> {
        let config = config(&cli)?;
        let mode = if cli.once {
            Mode::Once
        } else if cli.plain || !std::io::stdout().is_terminal() {
            Mode::Plain
        } else {
            Mode::Tui
        };
        let signals = Signals::install()?;
        Ok(karpoosheh_monitor::run(
            Options {
                config,
                mode,
                title: cli.title.clone(),
            },
            &signals,
        )?)
    })();
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("karpoosheh-monitor: error: {e:#}");
            std::process::exit(2);
        }
    }
}
