//! Plain mode: one summary line per scrape interval, for a log file or a
//! terminal without the dashboard. Fleet totals, rates, shares and the
//! alerts, in a stable `key value` order so the lines grep well.

use std::io::Write;
use std::time::{Duration, Instant};

use karpoosheh_schemas::Priority;

use crate::collect::Collector;
use crate::config::{window_name, Config};
use crate::fmt;
use crate::state::{Health, Severity, State, F};
use crate::ui::Signals;
use crate::Error;

/// One line for a state.
pub(crate) fn line(s: &State) -> String {
    let o = &s.overview;
    let r = |f: F| format!("{}/s", fmt::opt_rate(o.now[f as usize]));
    let w = window_name(s.params.window);
    let mut out = format!(
        "{} fleet {}/{} up | received {} stored {} duplicates {} rejected {} dead-lettered {} acknowledged {} | notified {} failed {} retries {} reached {} | confirmed {} served {} not-served {} served {} ({w}) {} (total)",
        fmt::timestamp(s.wall),
        s.up(),
        s.nodes.len(),
        r(F::Received),
        r(F::Stored),
        r(F::Duplicates),
        r(F::Rejected),
        r(F::DeadLetters),
        fmt::opt_pct(o.acknowledged),
        r(F::Notified),
        r(F::Failed),
        r(F::Retries),
        fmt::opt_pct(o.reached),
        r(F::Confirmed),
        r(F::Served),
        r(F::NotServed),
        fmt::opt_pct(o.served_window),
        fmt::opt_pct(o.served_total),
    );
    if let Some(l) = o.lag {
        out.push_str(&format!(" | lag {}", fmt::count(l)));
    }
    if let Some(b) = o.backlog {
        out.push_str(" | backlog");
        for lane in Priority::ALL {
            out.push_str(&format!(
                " {} {}",
                lane.as_str(),
                fmt::count(b[lane as usize])
            ));
        }
    }
    let silent: Vec<String> = s
        .nodes
        .iter()
        .filter_map(|n| match &n.health {
            Health::Late { error } | Health::Unreached { error } | Health::Down { error, .. } => {
                Some(format!("{} ({error})", n.name))
            }
            Health::Up | Health::Waiting => None,
        })
        .collect();
    if !silent.is_empty() {
        out.push_str(&format!(" | not answering: {}", silent.join(", ")));
    }
    if s.alerts.is_empty() {
        out.push_str(" | alerts 0");
    } else {
        out.push_str(&format!(" | alerts {}:", s.alerts.len()));
        for (i, a) in s.alerts.iter().enumerate() {
            let sev = match a.severity {
                Severity::Critical => "CRIT",
                Severity::Warning => "WARN",
            };
            out.push_str(&format!(
                "{} {sev} {}",
                if i == 0 { "" } else { ";" },
                a.message
            ));
        }
    }
    out
}

/// Prints a line per interval until a signal (or, `once`, one line as
/// soon as every answering node has been scraped twice).
pub(crate) fn run(
    c: &Collector,
    cfg: &Config,
    out: &mut impl Write,
    once: bool,
    signals: &Signals,
) -> Result<i32, Error> {
    let interval = cfg.scrape_interval.0;
    let started = Instant::now();
    // Two scrapes, a timeout for the slowest node, and a margin.
    let deadline = interval * 2 + cfg.timeout() + Duration::from_secs(1);
    let mut seen = 0;
    let mut last_print: Option<f64> = None;
    loop {
        if let Some(exit) = signals.exit() {
            return Ok(if exit == crate::ui::Exit::Interrupt {
                130
            } else {
                0
            });
        }
        let Some((g, s)) = c.states.wait_newer(seen, Duration::from_millis(200)) else {
            if once && started.elapsed() > deadline {
                if let Some((_, s)) = c.states.latest() {
                    let _ = writeln!(out, "{}", line(&s));
                    return Ok(if s.up() > 0 { 0 } else { 1 });
                }
                return Ok(1);
            }
            continue;
        };
        seen = g;
        // Nothing to say until every node has been tried once.
        let tried = s.nodes.iter().all(|n| n.health != Health::Waiting);
        if once {
            let settled = !s.warming_up && tried;
            if settled || started.elapsed() > deadline {
                let _ = writeln!(out, "{}", line(&s));
                return Ok(if s.up() > 0 { 0 } else { 1 });
            }
            continue;
        }
        // One line per interval: the first state at least an interval
        // (less a little jitter) after the last line.
        if tried && last_print.is_none_or(|t| s.at - t >= interval.as_secs_f64() * 0.9) {
            last_print = Some(s.at);
            if writeln!(out, "{}", line(&s))
                .and_then(|_| out.flush())
                .is_err()
            {
                return Ok(0); // the reader went away (a closed pipe)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn one_line_with_totals_shares_silent_nodes_and_alerts() {
        let s = fixtures::state();
        let l = line(&s);
        assert!(!l.contains('\n'));
        assert!(
            l.starts_with("2027-01-15T08:00:10Z fleet 2/3 up | received 21,194/s"),
            "{l}"
        );
        assert!(l.contains("acknowledged 94.6%"), "{l}");
        assert!(
            l.contains(" | lag 24,700 | backlog urgent 320 normal 18,380 bulk 6,000 | "),
            "{l}"
        );
        assert!(
            l.contains("not answering: 10.0.0.3:9464 (connection refused)"),
            "{l}"
        );
        assert!(
            l.contains("alerts 5: CRIT circuit open: sms on 10.0.0.2:9464"),
            "{l}"
        );
        assert!(
            l.contains("WARN node 10.0.0.2:9464: agency judiciary parked: its receipt topic refuses receipts; 1,200 wait in the store"),
            "{l}"
        );
        assert!(l.contains("; WARN agency municipality"), "{l}");
    }
}
