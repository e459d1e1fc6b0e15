//! The entry point behind the binary: start collecting, then either the
//! dashboard or plain summary lines.

use std::io::Write;

use crate::collect::Collector;
use crate::config::{Config, WINDOWS};
use crate::state::Params;
use crate::ui::{self, App, Exit, Signals, Theme};
use crate::Error;

/// How to show what is collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The full-screen dashboard.
    Tui,
    /// One summary line per scrape interval on stdout (for logs).
    Plain,
    /// One summary line once rates are known, then exit.
    Once,
}

pub struct Options {
    pub config: Config,
    pub mode: Mode,
    /// Shown in the dashboard's second line (the demo names itself).
    pub title: String,
}

/// Runs until the operator quits, a signal arrives, or (`Once`) one line
/// is out. Returns the process exit code: 0, 130 after Ctrl-c or SIGINT,
/// 1 when `Once` found no node answering.
pub fn run(opts: Options, signals: &Signals) -> Result<i32, Error> {
    let cfg = opts.config;
    cfg.validate()?;
    let targets = cfg.targets()?;
    let n = targets.len();
    let params = Params {
        window: WINDOWS[cfg.window_index()],
        scope: None,
        as_of: None,
    };
    let collector = Collector::start(&cfg, targets, params).map_err(Error::Threads)?;
    let exit = match opts.mode {
        Mode::Tui => {
            let theme = Theme::for_mode(cfg.color, std::env::var("NO_COLOR").ok().as_deref());
            let app = App::new(cfg, n, theme, opts.title);
            ui::run(&collector, app, signals)?
        }
        Mode::Plain | Mode::Once => {
            let mut out = std::io::stdout().lock();
            let code =
                crate::plain::run(&collector, &cfg, &mut out, opts.mode == Mode::Once, signals)?;
            let _ = out.flush();
            return Ok(code);
        }
    };
    Ok(match exit {
        Exit::Interrupt => 130,
        Exit::Quit | Exit::Terminated => 0,
    })
}
