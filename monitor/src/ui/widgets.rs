//! What the views share: the frame around them (header, subheader,
//! footer, and the too-small and waiting screens), sparklines, the alerts
//! block, table helpers, and centring a popup.

use std::cmp::Ordering;

use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Sparkline, Table, TableState, Wrap};
use ratatui::Frame;

use super::keymap::footer as footer_keys;
use super::{App, View};
use crate::alerts::{Alert, Severity};
use crate::config::{window_name, WINDOWS};
use crate::fmt;
use crate::state::State;

/// Below this the views cannot be read; one clear message is shown instead.
pub(crate) const MIN_WIDTH: u16 = 70;
pub(crate) const MIN_HEIGHT: u16 = 20;

/// A terminal this large gets charts and detail panels.
pub(crate) const BIG_WIDTH: u16 = 120;
pub(crate) const BIG_HEIGHT: u16 = 36;

pub(crate) fn big(area: Rect) -> bool {
    area.width >= BIG_WIDTH && area.height >= BIG_HEIGHT
}

// ---- Frame ----

pub(crate) fn too_small(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let text = vec![
        Line::styled("karpoosheh-monitor", t.title),
        Line::raw(""),
        Line::raw(format!(
            "needs at least {MIN_WIDTH}x{MIN_HEIGHT}; this terminal is {}x{}.",
            area.width, area.height
        )),
        Line::raw("Make it larger, or run with --plain"),
        Line::raw("for one summary line per interval."),
        Line::raw(""),
        Line::styled("q quits", t.dim),
    ];
    let h = (text.len() as u16).min(area.height);
    let [_, mid, _] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(h),
        Constraint::Fill(1),
    ])
    .areas(area);
    f.render_widget(
        Paragraph::new(text)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        mid,
    );
}

pub(crate) fn header(f: &mut Frame, app: &App, state: Option<&State>, area: Rect) {
    let t = &app.theme;
    let mut tabs = Vec::new();
    for (i, v) in View::ALL.iter().enumerate() {
        let label = format!(" {} {} ", i + 1, v.name());
        tabs.push(if *v == app.view {
            Span::styled(label, t.selected.patch(t.title))
        } else {
            Span::raw(label)
        });
    }
    let mut right = Vec::new();
    if let Some(s) = state {
        let up = s.up();
        let style = if up == s.nodes.len() { t.ok } else { t.crit };
        right.push(Span::styled(format!("{up}/{} up", s.nodes.len()), style));
        right.push(Span::raw("  "));
        let crit = s
            .alerts
            .iter()
            .filter(|a| a.severity == Severity::Critical)
            .count();
        let (text, style) = match s.alerts.len() {
            0 => ("no alerts".to_owned(), t.ok),
            1 => ("1 alert".to_owned(), if crit > 0 { t.crit } else { t.warn }),
            n => (
                format!("{n} alerts"),
                if crit > 0 { t.crit } else { t.warn },
            ),
        };
        right.push(Span::styled(text, style));
        right.push(Span::raw("  "));
        right.push(Span::raw(fmt::clock(s.wall, app.local_time)));
        right.push(Span::raw(" "));
    }
    let right = Line::from(right);
    let rw = right.width() as u16;
    let [l, r] = Layout::horizontal([Constraint::Fill(1), Constraint::Length(rw)]).areas(area);
    f.render_widget(Line::from(tabs), l);
    f.render_widget(right.alignment(Alignment::Right), r);
}

pub(crate) fn subheader(f: &mut Frame, app: &App, state: Option<&State>, area: Rect) {
    let t = &app.theme;
    let v = app.view.index();
    if app.editing {
        let line = Line::from(vec![
            Span::styled(" filter: ", t.title),
            Span::raw(app.filter[v].clone()),
            Span::styled("█", t.accent),
            Span::styled("   Enter keeps it · Esc clears it", t.dim),
        ]);
        f.render_widget(line, area);
        return;
    }
    let scope = state.map_or("fleet", |s| s.scope_name());
    let mut spans = vec![
        Span::styled(format!(" {}", app.title), t.title),
        Span::styled("  scope ", t.dim),
        Span::styled(scope.to_owned(), t.accent),
        Span::styled("  window ", t.dim),
        Span::raw(window_name(WINDOWS[app.window])),
        Span::styled("  rates over ", t.dim),
        Span::raw(window_name(app.config.rate_window.0)),
    ];
    if !app.filter[v].is_empty() {
        spans.push(Span::styled("  filter ", t.dim));
        spans.push(Span::styled(format!("\"{}\"", app.filter[v]), t.accent));
    }
    if app.paused.is_some() {
        spans.push(Span::raw("  "));
        spans.push(Span::styled(" PAUSED ", t.warn.patch(t.selected)));
    }
    if state.is_some_and(|s| s.warming_up) {
        spans.push(Span::styled("  warming up", t.dim));
    }
    f.render_widget(Line::from(spans), area);
}

pub(crate) fn footer(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let mut spans = vec![Span::raw(" ")];
    let mut width = 1;
    for (keys, word) in footer_keys() {
        let w = keys.chars().count() + 1 + word.len() + 2;
        if width + w > area.width as usize {
            break;
        }
        width += w;
        spans.push(Span::styled(keys, t.accent.patch(t.title)));
        spans.push(Span::raw(format!(" {word}  ")));
    }
    f.render_widget(Line::from(spans).style(t.dim), area);
}

pub(crate) fn waiting(f: &mut Frame, app: &App, area: Rect) {
    let text = format!(
        "\n  Waiting for the first answers from {} node(s)…",
        app.targets
    );
    f.render_widget(Paragraph::new(text).style(app.theme.dim), area);
}

// ---- Series ----

/// Stretches or squeezes a series onto `width` cells, covering the whole
/// window either way. Squeezed, a cell shows the highest of its slices, so
/// a short burst (a batch, an outage) is never dropped between cells.
fn resample(series: &[Option<f64>], width: usize) -> Vec<Option<f64>> {
    let n = series.len();
    if n == 0 || width == 0 {
        return vec![None; width];
    }
    (0..width)
        .map(|j| {
            let from = j * n / width;
            let to = ((j + 1) * n / width).max(from + 1).min(n);
            series[from..to].iter().flatten().copied().reduce(f64::max)
        })
        .collect()
}

pub(crate) fn sparkline(f: &mut Frame, series: &[Option<f64>], area: Rect, style: Style) {
    let data = resample(series, area.width as usize);
    let max = data.iter().flatten().fold(0.0f64, |m, v| m.max(*v));
    // Sparkline bars are integers: scale so the tallest is 1000.
    let scale = if max > 0.0 { 1000.0 / max } else { 0.0 };
    let bars: Vec<Option<u64>> = data
        .iter()
        .map(|v| v.map(|v| (v * scale).round() as u64))
        .collect();
    f.render_widget(
        Sparkline::default()
            .data(bars)
            .max(1000)
            .style(style)
            .absent_value_symbol(" "),
        area,
    );
}

// ---- Alerts ----

pub(crate) fn alerts_for<'s>(app: &App, s: &'s State) -> Vec<&'s Alert> {
    let filter = &app.filter[View::Overview.index()];
    s.alerts
        .iter()
        .filter(|a| matches_filter(filter, &a.message))
        .collect()
}

/// Splits `text` at spaces into at most `max` lines of `width`
/// characters (the last one cut with "…" when still too long).
fn wrap(text: &str, width: usize, max: usize) -> Vec<String> {
    let mut lines: Vec<String> = vec![String::new()];
    for word in text.split(' ') {
        let n = lines.len();
        let cur = &mut lines[n - 1];
        let len = cur.chars().count();
        if len == 0 || len + 1 + word.chars().count() <= width || n >= max {
            if len > 0 {
                cur.push(' ');
            }
            cur.push_str(word);
        } else {
            lines.push(word.to_owned());
        }
    }
    if let Some(last) = lines.last_mut() {
        if last.chars().count() > width {
            *last = last
                .chars()
                .take(width.saturating_sub(1))
                .collect::<String>()
                + "…";
        }
    }
    lines
}

pub(crate) fn alerts_block(f: &mut Frame, app: &App, s: &State, area: Rect) {
    let t = &app.theme;
    let alerts = alerts_for(app, s);
    let title = match alerts.len() {
        0 => Span::styled(" Alerts: none ", t.ok),
        n => Span::styled(format!(" Alerts ({n}) "), t.title),
    };
    let block = Block::bordered().title(title);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let room = inner.height as usize;
    // Alerts are what the operator must read in full: a long one wraps to
    // a second line (under its text) rather than being cut, as long as the
    // others still fit.
    const INDENT: usize = 15;
    let text_w = (inner.width as usize).saturating_sub(INDENT).max(10);
    let wrapped: Vec<Vec<String>> = alerts.iter().map(|a| wrap(&a.message, text_w, 2)).collect();
    let mut lines: Vec<Line> = Vec::new();
    for (i, (a, parts)) in alerts.iter().zip(&wrapped).enumerate() {
        let rest = alerts.len() - i;
        // Keep a line for "… more" unless this is the last alert.
        let reserve = usize::from(rest > 1);
        let parts = if lines.len() + parts.len() + reserve <= room {
            parts.clone()
        } else if lines.len() + 1 + reserve <= room {
            let mut first = parts[0].clone();
            if parts.len() > 1 {
                first.push('…');
            }
            vec![first]
        } else {
            lines.push(Line::styled(format!(" … and {rest} more"), t.dim));
            break;
        };
        let (tag, style) = match a.severity {
            Severity::Critical => ("CRIT", t.crit),
            Severity::Warning => ("WARN", t.warn),
        };
        for (j, part) in parts.into_iter().enumerate() {
            lines.push(if j == 0 {
                Line::from(vec![
                    Span::raw(" "),
                    Span::styled(tag, style),
                    Span::styled(
                        format!(
                            " {} ",
                            a.since
                                .map_or("--:--:--".into(), |w| fmt::clock(w, app.local_time))
                        ),
                        t.dim,
                    ),
                    Span::raw(part),
                ])
            } else {
                Line::raw(format!("{:INDENT$}{part}", ""))
            });
        }
    }
    f.render_widget(Paragraph::new(lines), inner);
}

// ---- Tables ----

pub(crate) fn matches_filter(filter: &str, text: &str) -> bool {
    filter.is_empty() || text.to_lowercase().contains(&filter.to_lowercase())
}

pub(crate) fn sort_header(app: &App, view: View, name: &'static str) -> String {
    let (key, rev) = app.sort[view.index()];
    match view.sort_keys().get(key) {
        Some(k) if *k == name => format!("{name}{}", if rev { "▲" } else { "▼" }),
        _ => name.to_owned(),
    }
}

pub(crate) fn table_block<'a>(app: &App, title: String) -> Block<'a> {
    Block::bordered().title(Span::styled(title, app.theme.title))
}

/// Numbers sort largest first, names A to Z; `S` reverses either.
pub(crate) fn by_num(a: Option<f64>, b: Option<f64>) -> Ordering {
    b.unwrap_or(f64::NEG_INFINITY)
        .total_cmp(&a.unwrap_or(f64::NEG_INFINITY))
}

/// The rows of `view`'s table, as indexes into `rows`: those whose `name`
/// the view's filter matches, ordered by its sort column. `cmp` compares
/// two rows by the column's name ("" when there is none); the sort is
/// stable, so rows it finds equal keep their order in `rows`. Reversed,
/// the whole order is (ties too).
pub(crate) fn table_order<R>(
    app: &App,
    view: View,
    rows: &[R],
    name: impl Fn(&R) -> &str,
    cmp: impl Fn(&str, &R, &R) -> Ordering,
) -> Vec<usize> {
    let v = view.index();
    let (key, rev) = app.sort[v];
    let column = view.sort_keys().get(key).copied().unwrap_or("");
    let mut order: Vec<usize> = (0..rows.len())
        .filter(|&i| matches_filter(&app.filter[v], name(&rows[i])))
        .collect();
    order.sort_by(|&a, &b| cmp(column, &rows[a], &rows[b]));
    if rev {
        order.reverse();
    }
    order
}

pub(crate) fn opt(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map_or("–".into(), f)
}

pub(crate) fn right(s: String) -> Cell<'static> {
    Cell::from(Line::raw(s).alignment(Alignment::Right))
}

pub(crate) fn render_table(f: &mut Frame, table: Table, area: Rect, selected: usize, rows: usize) {
    let mut st = TableState::default().with_selected((rows > 0).then(|| selected.min(rows - 1)));
    f.render_stateful_widget(table, area, &mut st);
}

/// Height of a detail panel under a table of `rows`: what is left, up to
/// `max`, or nothing when too little is left to be worth it.
pub(crate) fn detail_height(area: Rect, rows: usize, max: u16) -> u16 {
    let left = area.height.saturating_sub(rows as u16 + 3);
    if left >= 6 {
        left.min(max)
    } else {
        0
    }
}

// ---- Popups ----

pub(crate) fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeezing_keeps_a_burst() {
        let mut s = vec![Some(1.0); 120];
        s[61] = Some(50.0);
        let r = resample(&s, 40);
        assert_eq!(r.len(), 40);
        assert!(r.contains(&Some(50.0)), "{r:?}");
    }

    #[test]
    fn stretching_covers_every_cell() {
        let s = vec![Some(1.0), None, Some(3.0)];
        assert_eq!(
            resample(&s, 6),
            [Some(1.0), Some(1.0), None, None, Some(3.0), Some(3.0)]
        );
    }

    #[test]
    fn wrapping_keeps_words_and_marks_a_cut() {
        assert_eq!(wrap("a bb ccc dddd", 6, 2), ["a bb", "ccc d…"]);
        assert_eq!(wrap("short", 10, 2), ["short"]);
    }

    #[test]
    fn table_order_filters_keeps_ties_and_reverses_the_whole() {
        use crate::ui::Theme;
        let rows = [("sms", 2.0), ("email", 1.0), ("push", 2.0), ("SMS-2", 3.0)];
        let mut app = App::new(
            crate::fixtures::config(),
            3,
            Theme::plain(),
            "karpoosheh".into(),
        );
        let view = View::Channels;
        let v = view.index();
        let order = |app: &App| {
            table_order(
                app,
                view,
                &rows,
                |r| r.0,
                |column, x, y| match column {
                    "sent/s" => by_num(Some(x.1), Some(y.1)),
                    _ => Ordering::Equal,
                },
            )
        };
        assert_eq!(
            order(&app),
            [0, 1, 2, 3],
            "a column it does not sort by: as given"
        );
        app.sort[v] = (1, false);
        assert_eq!(order(&app), [3, 0, 2, 1], "largest first, ties as given");
        app.sort[v] = (1, true);
        assert_eq!(order(&app), [1, 2, 0, 3], "reversed, ties too");
        app.filter[v] = "sMs".into();
        assert_eq!(order(&app), [0, 3], "filter ignores case");
    }
}
