//! The help overlay: the keymap, what the numbers mean, and the alert
//! thresholds in force.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;

use crate::config::window_name;
use crate::fmt;
use crate::ui::keymap::KEYMAP;
use crate::ui::widgets::centered;
use crate::ui::App;

/// Every help line: the keymap, then what the numbers mean, then the
/// alert thresholds in force.
pub(crate) fn help_lines(app: &App) -> Vec<Line<'static>> {
    let t = &app.theme;
    let a = &app.config.alerts;
    let aw = window_name(a.window.0);
    let mut lines = vec![Line::styled(" Keys", t.title)];
    for b in KEYMAP {
        lines.push(Line::from(vec![
            Span::styled(format!("   {:<10}", b.label), t.accent),
            Span::raw(b.help),
        ]));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(" What the numbers mean", t.title));
    let rw = window_name(app.config.rate_window.0);
    for text in [
        format!("   /s and p99 latencies: over the last {rw} (rate window), counter resets handled"),
        "   %, reasons and counts: over the chart window (+/-), or since the nodes started".to_owned(),
        "   acknowledged  (stored + duplicates) / (stored + duplicates + rejected + dead-lettered)".to_owned(),
        "   reached       notifications sent / (sent + failed on every channel)".to_owned(),
        "   served        served / (served + not served + expired): two confirmations (art. 29)".to_owned(),
        "   rej %         an agency's rejected / (stored + duplicates + rejected)".to_owned(),
        "   notified/s    an agency's notifications sent (each of a round's); confirmed/s: applied".to_owned(),
        "   ⚑             an agency over its daily quota (quota_exceeded rejections in the window)".to_owned(),
        "   fail %        a channel's failed gateway attempts (transient + permanent) / attempts".to_owned(),
        "   consumer lag  Kafka records not yet read by the node (↑ = growing over the alert window)".to_owned(),
        "   backlog       the same records by lane: urgent, normal, bulk".to_owned(),
        "   waiting       rate-limit saturation: sends waiting for a token, on average".to_owned(),
        "   skip/s        sends that gave up waiting for a token (the next channel took them)".to_owned(),
        "   inbox API     citizens' apps' calls /s, answered 4xx (refused) and 5xx, p99 time to answer".to_owned(),
    ] {
        lines.push(Line::raw(text));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        " Alerts (thresholds from the configuration)",
        t.title,
    ));
    for text in [
        format!("   node down          no answer for {}", a.node_down_after),
        "   node not ready     karpoosheh_ready is 0 (store failing, starting or stopping)"
            .to_owned(),
        "                      not once its demo input has ended: shown done".to_owned(),
        format!("   store errors       any failed store write in {aw}"),
        format!(
            "   lag growing        consumer lag rising over {aw} and above {} records",
            fmt::count(a.lag_min_records as f64)
        ),
        format!("   scheduler lag      above {} and rising", a.scheduler_lag),
        format!(
            "   rejection rate     an agency above {} over {aw} (at least {} notices)",
            fmt::pct(a.rejection_rate),
            a.min_events
        ),
        format!(
            "   notification fail  a channel above {} of attempts over {aw} (at least {})",
            fmt::pct(a.notification_failure_rate),
            a.min_events
        ),
        format!(
            "   circuit open       a breaker open for {} or more",
            a.circuit_open_for
        ),
        "   Kafka unreachable  a node reaches no broker".to_owned(),
        format!("   receipts failing   a receipt or dead-letter delivery failed in {aw}"),
    ] {
        lines.push(Line::raw(text));
    }
    lines
}

pub(crate) fn draw(f: &mut Frame, app: &App, area: Rect) {
    let lines = help_lines(app);
    let w = area.width.saturating_sub(4).min(104);
    let h = area.height.saturating_sub(2);
    let rect = centered(area, w, h);
    let inner_h = h.saturating_sub(2) as usize;
    let max_scroll = lines.len().saturating_sub(inner_h) as u16;
    let scroll = app.help_scroll.min(max_scroll);
    let more = if max_scroll > 0 {
        " · ↑↓ scroll"
    } else {
        ""
    };
    f.render_widget(Clear, rect);
    f.render_widget(
        Paragraph::new(Text::from(lines))
            .wrap(Wrap { trim: false })
            .scroll((scroll, 0))
            .block(
                Block::bordered()
                    .title(Span::styled(
                        format!(" Help{more} · Esc closes "),
                        app.theme.title,
                    ))
                    .style(app.theme.text),
            ),
        rect,
    );
}
