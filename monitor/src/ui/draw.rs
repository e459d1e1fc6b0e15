//! Drawing: every view from one [`State`], designed for 80x24 first and
//! richer when the terminal is larger. Nothing here computes a number the
//! collector did not; it only chooses, orders and formats.

use std::cmp::Ordering;

use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Axis, Block, Cell, Chart, Clear, Dataset, GraphType, LegendPosition, Paragraph, Row, Sparkline,
    Table, TableState, Wrap,
};
use ratatui::Frame;

use super::keymap::{footer as footer_keys, KEYMAP};
use super::{App, View};
use crate::config::{window_name, WINDOWS};
use crate::fmt;
use crate::state::{AgencyRow, Alert, ChannelRow, Circuit, Health, NodeRow, Severity, State, F};

/// Below this the views cannot be read; one clear message is shown instead.
pub(crate) const MIN_WIDTH: u16 = 70;
pub(crate) const MIN_HEIGHT: u16 = 20;

/// A terminal this large gets charts and detail panels.
const BIG_WIDTH: u16 = 120;
const BIG_HEIGHT: u16 = 36;

fn big(area: Rect) -> bool {
    area.width >= BIG_WIDTH && area.height >= BIG_HEIGHT
}

pub(crate) fn draw(f: &mut Frame, app: &App, state: Option<&State>) {
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        too_small(f, app, area);
        return;
    }
    let [top, sub, body, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    header(f, app, state, top);
    subheader(f, app, state, sub);
    footer(f, app, foot);
    match state {
        None => waiting(f, app, body),
        Some(s) => match app.view {
            View::Overview => overview(f, app, s, body),
            View::Nodes => nodes(f, app, s, body),
            View::Agencies => agencies(f, app, s, body),
            View::Channels => channels(f, app, s, body),
        },
    }
    if let (true, Some(s)) = (app.detail, state) {
        detail_popup(f, app, s, body);
    }
    if app.help {
        help(f, app, area);
    }
}

fn too_small(f: &mut Frame, app: &App, area: Rect) {
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

fn header(f: &mut Frame, app: &App, state: Option<&State>, area: Rect) {
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

fn subheader(f: &mut Frame, app: &App, state: Option<&State>, area: Rect) {
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

fn footer(f: &mut Frame, app: &App, area: Rect) {
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

fn waiting(f: &mut Frame, app: &App, area: Rect) {
    let text = format!(
        "\n  Waiting for the first answers from {} node(s)…",
        app.targets
    );
    f.render_widget(Paragraph::new(text).style(app.theme.dim), area);
}

// ---- Overview ----

/// A flow row: what, its label, and a companion shown beside it.
type FlowRow = (F, &'static str, Option<(F, &'static str)>);

const FLOW_ROWS: [FlowRow; 8] = [
    (F::Received, "received", None),
    (F::Stored, "stored", Some((F::Duplicates, "duplicates"))),
    (
        F::Rejected,
        "rejected",
        Some((F::DeadLetters, "dead-lettered")),
    ),
    (F::Notified, "notified", None),
    (F::Failed, "failed", None),
    (F::Retries, "retries", Some((F::PutOff, "rounds put off"))),
    (F::Confirmed, "confirmed", None),
    (F::Served, "served", Some((F::NotServed, "not served"))),
];

fn overview(f: &mut Frame, app: &App, s: &State, area: Rect) {
    let large = big(area);
    let alerts_h = (alerts_for(app, s).len() as u16 + 2).clamp(3, if large { 10 } else { 8 });
    let charts_h = if large {
        area.height.saturating_sub(10 + 3 + alerts_h).max(6)
    } else {
        0
    };
    let [flow, charts, info, alerts] = Layout::vertical([
        Constraint::Length(10),
        Constraint::Length(charts_h),
        Constraint::Length(3),
        Constraint::Fill(1),
    ])
    .areas(area);
    flow_block(f, app, s, flow);
    if large {
        let [l, r] = Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(charts);
        chart(
            f,
            app,
            s,
            l,
            "ingest /s",
            &[F::Received, F::Stored, F::Rejected],
        );
        chart(
            f,
            app,
            s,
            r,
            "delivery /s",
            &[F::Notified, F::Confirmed, F::Served],
        );
    }
    info_lines(f, app, s, info);
    alerts_block(f, app, s, alerts);
}

fn flow_block(f: &mut Frame, app: &App, s: &State, area: Rect) {
    let t = &app.theme;
    let title = format!(
        " Flow · per second over {} · chart {} ",
        window_name(s.rate_window),
        window_name(s.params.window)
    );
    let block = Block::bordered().title(Span::styled(title, t.title));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let extra_w: u16 = if inner.width >= 100 { 30 } else { 24 };
    for (row, (flow, label, extra)) in FLOW_ROWS.iter().enumerate() {
        if row as u16 >= inner.height {
            break;
        }
        let line = Rect {
            y: inner.y + row as u16,
            height: 1,
            ..inner
        };
        let [l, v, spark, x] = Layout::horizontal([
            Constraint::Length(11),
            Constraint::Length(10),
            Constraint::Fill(1),
            Constraint::Length(extra_w),
        ])
        .spacing(1)
        .areas(line);
        let now = s.overview.now[*flow as usize];
        let alarm = matches!(flow, F::Rejected | F::Failed) && now.is_some_and(|v| v > 0.0);
        f.render_widget(Span::styled(format!(" {label}"), t.dim), l);
        f.render_widget(
            Line::styled(
                now.map_or("…".into(), |v| format!("{}/s", fmt::rate(v))),
                if alarm { t.warn } else { t.text },
            )
            .alignment(Alignment::Right),
            v,
        );
        sparkline(
            f,
            &s.overview.series[*flow as usize],
            spark,
            if alarm { t.warn } else { t.spark },
        );
        if let Some((other, name)) = extra {
            let v = s.overview.now[*other as usize];
            f.render_widget(
                Line::from(vec![
                    Span::styled(format!("{name} "), t.dim),
                    Span::raw(v.map_or("…".into(), |v| format!("{}/s", fmt::rate(v)))),
                ]),
                x,
            );
        }
    }
}

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

fn sparkline(f: &mut Frame, series: &[Option<f64>], area: Rect, style: Style) {
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

fn chart(f: &mut Frame, app: &App, s: &State, area: Rect, title: &str, flows: &[F]) {
    let t = &app.theme;
    let span = s.params.window.as_secs_f64();
    let points: Vec<Vec<(f64, f64)>> = flows
        .iter()
        .map(|fl| {
            let series = &s.overview.series[*fl as usize];
            let n = series.len().max(1) as f64;
            series
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (-span + (i as f64 + 0.5) * span / n, v)))
                .collect()
        })
        .collect();
    let max = points
        .iter()
        .flatten()
        .fold(0.0f64, |m, p| m.max(p.1))
        .max(1.0);
    let datasets = flows
        .iter()
        .zip(&points)
        .enumerate()
        .map(|(i, (fl, pts))| {
            let name = FLOW_ROWS.iter().find(|r| r.0 == *fl).map_or("", |r| r.1);
            Dataset::default()
                .name(name)
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(t.series[i % t.series.len()])
                .data(pts)
        })
        .collect();
    let w = s.params.window;
    let chart = Chart::new(datasets)
        .legend_position(Some(LegendPosition::TopLeft))
        // The legend names the lines; keep it unless it would cover half.
        .hidden_legend_constraints((Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)))
        .block(Block::bordered().title(Span::styled(format!(" {title} "), t.title)))
        .x_axis(
            Axis::default()
                .bounds([-span, 0.0])
                .labels(vec![
                    Span::raw(format!("-{}", window_name(w))),
                    Span::raw(format!("-{}", fmt::duration(span / 2.0))),
                    Span::raw("now"),
                ])
                .style(t.dim),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, max * 1.1])
                .labels(vec![
                    Span::raw("0"),
                    Span::raw(fmt::rate(max / 2.0)),
                    Span::raw(fmt::rate(max)),
                ])
                .style(t.dim),
        );
    f.render_widget(chart, area);
}

fn info_lines(f: &mut Frame, app: &App, s: &State, area: Rect) {
    let t = &app.theme;
    let o = &s.overview;
    let w = window_name(s.params.window);
    let val = |v: String| Span::styled(v, t.text.bold());
    let shares = Line::from(vec![
        Span::styled(" acknowledged ", t.dim),
        val(fmt::opt_pct(o.acknowledged)),
        Span::styled("  reached ", t.dim),
        val(fmt::opt_pct(o.reached)),
        Span::styled("  served ", t.dim),
        val(fmt::opt_pct(o.served_window)),
        Span::styled(format!(" in {w} · "), t.dim),
        Span::raw(fmt::opt_pct(o.served_total)),
        Span::styled(" since start", t.dim),
    ]);
    let mut lat = vec![
        Span::styled(" p99 ingest ", t.dim),
        Span::raw(fmt::opt_latency(o.ingest_p99)),
        Span::styled("  write ", t.dim),
        Span::raw(fmt::opt_latency(o.write_p99)),
        Span::styled("  to served p50 ", t.dim),
        Span::raw(o.served_p50.map_or("–".into(), fmt::duration)),
        Span::styled(" p99 ", t.dim),
        Span::raw(o.served_p99.map_or("–".into(), fmt::duration)),
    ];
    if let Some(l) = o.scheduler_lag {
        lat.push(Span::styled("  sched lag ", t.dim));
        lat.push(Span::raw(fmt::duration(l)));
    }
    let mut lag = vec![Span::styled(" consumer lag ", t.dim)];
    let scope: Vec<&NodeRow> = match s.params.scope {
        Some(i) => s.nodes.get(i).into_iter().collect(),
        None => s.nodes.iter().collect(),
    };
    if scope.iter().all(|n| n.health.is_up() && n.lag.is_none()) {
        lag.push(Span::styled("– (no node here consumes Kafka)", t.dim));
    } else {
        for n in scope {
            lag.push(Span::raw(format!("{} ", n.name)));
            lag.push(match (&n.health, n.lag) {
                (h, _) if !h.is_up() => Span::styled("down", t.crit),
                (_, None) => Span::styled("–", t.dim),
                (_, Some(l)) if n.lag_slope.is_some_and(|s| s > 0.0) => {
                    Span::styled(format!("{}↑", fmt::compact(l)), t.warn)
                }
                (_, Some(l)) => Span::raw(fmt::compact(l)),
            });
            lag.push(Span::raw("  "));
        }
    }
    f.render_widget(
        Paragraph::new(vec![shares, Line::from(lat), Line::from(lag)]),
        area,
    );
}

fn matches_filter(filter: &str, text: &str) -> bool {
    filter.is_empty() || text.to_lowercase().contains(&filter.to_lowercase())
}

fn alerts_for<'s>(app: &App, s: &'s State) -> Vec<&'s Alert> {
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

fn alerts_block(f: &mut Frame, app: &App, s: &State, area: Rect) {
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

fn sort_header(app: &App, view: View, name: &'static str) -> String {
    let (key, rev) = app.sort[view.index()];
    match view.sort_keys().get(key) {
        Some(k) if *k == name => format!("{name}{}", if rev { "▲" } else { "▼" }),
        _ => name.to_owned(),
    }
}

fn table_block<'a>(app: &App, title: String) -> Block<'a> {
    Block::bordered().title(Span::styled(title, app.theme.title))
}

/// Numbers sort largest first, names A to Z; `S` reverses either.
fn by_num(a: Option<f64>, b: Option<f64>) -> Ordering {
    b.unwrap_or(f64::NEG_INFINITY)
        .total_cmp(&a.unwrap_or(f64::NEG_INFINITY))
}

fn finish(order: &mut [usize], rev: bool) {
    if rev {
        order.reverse();
    }
}

pub(crate) fn node_order(app: &App, s: &State) -> Vec<usize> {
    let v = View::Nodes.index();
    let (key, rev) = app.sort[v];
    let mut order: Vec<usize> = (0..s.nodes.len())
        .filter(|&i| matches_filter(&app.filter[v], &s.nodes[i].name))
        .collect();
    let rank = |n: &NodeRow| match n.health {
        Health::Down { .. } => 0,
        Health::Late { .. } | Health::Unreached { .. } => 1,
        Health::Waiting => 2,
        Health::Up => 3,
    };
    order.sort_by(|&a, &b| {
        let (x, y) = (&s.nodes[a], &s.nodes[b]);
        match View::Nodes.sort_keys().get(key).copied().unwrap_or("order") {
            "node" => x.name.cmp(&y.name),
            "state" => rank(x).cmp(&rank(y)),
            "in/s" => by_num(x.received, y.received),
            "stored/s" => by_num(x.stored, y.stored),
            "lag" => by_num(x.lag, y.lag),
            "write p99" => by_num(x.write_p99, y.write_p99),
            _ => a.cmp(&b),
        }
        .then(a.cmp(&b))
    });
    finish(&mut order, rev);
    order
}

fn health_cell(app: &App, n: &NodeRow) -> Span<'static> {
    let t = &app.theme;
    match (&n.health, n.ready) {
        (Health::Down { .. }, _) => Span::styled("DOWN", t.crit),
        (Health::Waiting, _) => Span::styled("…", t.dim),
        (Health::Unreached { .. }, _) => Span::styled("no ans", t.warn),
        (Health::Late { .. }, _) => Span::styled("late", t.warn),
        (Health::Up, Some(false)) if n.source_finished == Some(true) => Span::styled("done", t.dim),
        (Health::Up, Some(false)) => Span::styled("unready", t.crit),
        (Health::Up, _) => Span::styled("up", t.ok),
    }
}

fn opt(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map_or("–".into(), f)
}

fn right(s: String) -> Cell<'static> {
    Cell::from(Line::raw(s).alignment(Alignment::Right))
}

fn render_table(f: &mut Frame, table: Table, area: Rect, selected: usize, rows: usize) {
    let mut st = TableState::default().with_selected((rows > 0).then_some(selected.min(rows - 1)));
    f.render_stateful_widget(table, area, &mut st);
}

fn nodes(f: &mut Frame, app: &App, s: &State, area: Rect) {
    let t = &app.theme;
    let order = node_order(app, s);
    let wide = area.width >= BIG_WIDTH;
    let detail_h = detail_height(area, order.len(), 6);
    let show_detail = detail_h > 0;
    let [top, bottom] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(detail_h)]).areas(area);
    let h = |n| sort_header(app, View::Nodes, n);
    let mut head = vec![
        Cell::from(h("node")),
        Cell::from(h("state")),
        right(h("in/s")),
        right(h("stored/s")),
        right(h("lag")),
        right("sh".into()),
        right("queue d/c".into()),
        right(h("write p99")),
    ];
    let mut widths = vec![
        Constraint::Fill(1),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(2),
        Constraint::Length(9),
        Constraint::Length(10),
    ];
    if wide {
        head.extend([
            Cell::from("id"),
            Cell::from("version"),
            right("sched lag".into()),
            right("disk".into()),
            right("memory".into()),
            right("partitions".into()),
        ]);
        widths.extend([
            Constraint::Length(4),
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(11),
        ]);
    }
    let rows: Vec<Row> = order
        .iter()
        .map(|&i| {
            let n = &s.nodes[i];
            let lag = match (n.lag, n.lag_slope) {
                (Some(l), Some(sl)) if sl > 0.0 => format!("{}↑", fmt::compact(l)),
                (l, _) => opt(l, fmt::compact),
            };
            let queue = match (n.queue_decode, n.queue_commit) {
                (None, None) => "–".to_owned(),
                (d, c) => format!("{}/{}", opt(d, fmt::compact), opt(c, fmt::compact)),
            };
            let mut cells = vec![
                Cell::from(n.name.clone()),
                Cell::from(health_cell(app, n)),
                right(opt(n.received, fmt::rate)),
                right(opt(n.stored, fmt::rate)),
                right(lag),
                right(opt(n.shards, |v| format!("{v:.0}"))),
                right(queue),
                right(opt(n.write_p99, fmt::latency)),
            ];
            if wide {
                cells.extend([
                    Cell::from(n.node_id.clone().unwrap_or("–".into())),
                    Cell::from(n.version.clone().unwrap_or("–".into())),
                    right(opt(n.scheduler_lag, fmt::duration)),
                    right(opt(n.disk_bytes, fmt::bytes)),
                    right(opt(n.rss_bytes, fmt::bytes)),
                    right(
                        n.partitions
                            .map_or("–".into(), |(a, p)| format!("{a:.0} ({p:.0} p)")),
                    ),
                ]);
            }
            Row::new(cells)
        })
        .collect();
    let table = Table::new(rows, widths)
        .header(Row::new(head).style(t.header))
        .row_highlight_style(t.selected)
        .block(table_block(
            app,
            format!(" Nodes ({}/{} up) ", s.up(), s.nodes.len()),
        ));
    let sel = app.selected[View::Nodes.index()];
    render_table(f, table, top, sel, order.len());
    if show_detail {
        let lines = order
            .get(sel.min(order.len().saturating_sub(1)))
            .map(|&i| node_detail(app, &s.nodes[i]))
            .unwrap_or_default();
        f.render_widget(
            Paragraph::new(lines).block(table_block(app, " Selected node ".into())),
            bottom,
        );
    }
}

fn node_detail(app: &App, n: &NodeRow) -> Vec<Line<'static>> {
    let t = &app.theme;
    let d = |s: &str| Span::styled(s.to_owned(), t.dim);
    let mut first = vec![Span::styled(format!(" {}", n.url), t.accent)];
    if let Some(id) = &n.node_id {
        first.extend([d("  node "), Span::raw(id.clone())]);
    }
    if let Some(v) = &n.version {
        first.extend([d("  version "), Span::raw(v.clone())]);
    }
    match n.ready {
        Some(true) => first.push(Span::styled("  ready", t.ok)),
        Some(false) if n.source_finished == Some(true) => {
            first.push(Span::styled("  source finished (no traffic left)", t.dim))
        }
        Some(false) => first.push(Span::styled("  NOT READY", t.crit)),
        None => {}
    }
    let second = match &n.health {
        Health::Down {
            last_ok,
            silent_for,
            error,
        } => Line::from(vec![
            Span::styled(" no answer", t.crit),
            Span::raw(format!(
                " for {}{}: {error}",
                fmt::duration(*silent_for),
                last_ok.map_or(" (never answered)".into(), |w| format!(
                    " (last {})",
                    fmt::clock(w, app.local_time)
                ))
            )),
        ]),
        Health::Late { error } => Line::from(vec![
            Span::styled(" last scrape failed", t.warn),
            Span::raw(format!(": {error}")),
        ]),
        Health::Waiting => Line::styled(" waiting for the first answer", t.dim),
        Health::Unreached { error } => Line::from(vec![
            Span::styled(" no answer yet", t.warn),
            Span::raw(format!(": {error}")),
        ]),
        Health::Up => Line::from(vec![
            d(" scheduler lag "),
            Span::raw(opt(n.scheduler_lag, fmt::duration)),
            d("  disk "),
            Span::raw(opt(n.disk_bytes, fmt::bytes)),
            d("  memory "),
            Span::raw(opt(n.rss_bytes, fmt::bytes)),
            d("  queue d/c "),
            Span::raw(format!(
                "{}/{}",
                opt(n.queue_decode, fmt::count),
                opt(n.queue_commit, fmt::count)
            )),
            d("  shards "),
            Span::raw(opt(n.shards, fmt::count)),
        ]),
    };
    let kafka = match (n.kafka_up, n.partitions) {
        _ if !n.health.is_up() => Line::raw(""),
        (None, None) => Line::styled(" not consuming Kafka (demo or batch ingest)", t.dim),
        (up, parts) => {
            let mut v = vec![d(" Kafka ")];
            v.push(match up {
                Some(true) => Span::styled("brokers up", t.ok),
                Some(false) => Span::styled("NO BROKER", t.crit),
                None => Span::raw("–"),
            });
            if let Some((a, p)) = parts {
                v.push(d("  partitions "));
                v.push(Span::raw(format!("{a:.0} ({p:.0} paused)")));
            }
            v.push(d("  lag "));
            v.push(Span::raw(opt(n.lag, fmt::count)));
            if let Some(sl) = n.lag_slope {
                v.push(Span::raw(format!(
                    " ({}{}/s)",
                    if sl >= 0.0 { "+" } else { "-" },
                    fmt::rate(sl.abs())
                )));
            }
            Line::from(v)
        }
    };
    let mut lines = vec![Line::from(first), second, kafka];
    if n.parse_errors > 0 {
        lines.push(Line::styled(
            format!(" {} metric families could not be read", n.parse_errors),
            t.warn,
        ));
    }
    lines
}

pub(crate) fn agency_order(app: &App, s: &State) -> Vec<usize> {
    let v = View::Agencies.index();
    let (key, rev) = app.sort[v];
    let mut order: Vec<usize> = (0..s.agencies.len())
        .filter(|&i| matches_filter(&app.filter[v], &s.agencies[i].name))
        .collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&s.agencies[a], &s.agencies[b]);
        match View::Agencies.sort_keys().get(key).copied().unwrap_or("") {
            "agency" => x.name.cmp(&y.name),
            "rej/s" => by_num(Some(x.rejected), Some(y.rejected)),
            "rej %" => by_num(x.rejection, y.rejection),
            "served %" => by_num(x.served_window, y.served_window),
            "lag" => by_num(x.lag, y.lag),
            _ => by_num(Some(x.stored), Some(y.stored)),
        }
        .then_with(|| x.name.cmp(&y.name))
    });
    finish(&mut order, rev);
    order
}

fn agencies(f: &mut Frame, app: &App, s: &State, area: Rect) {
    let t = &app.theme;
    let order = agency_order(app, s);
    let wide = area.width >= BIG_WIDTH;
    let detail_h = detail_height(area, order.len(), 13);
    let show_detail = detail_h > 0;
    let [top, bottom] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(detail_h)]).areas(area);
    let h = |n| sort_header(app, View::Agencies, n);
    let mut head = vec![
        Cell::from(h("agency")),
        right(h("stored/s")),
        right(h("rej/s")),
        right(h("rej %")),
        right(h("served %")),
        right(h("lag")),
        Cell::from(if wide { "top reasons" } else { "top reason" }),
    ];
    let mut widths = vec![
        Constraint::Length(15),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Fill(1),
    ];
    if wide {
        head.insert(2, right("dup/s".into()));
        widths.insert(2, Constraint::Length(7));
        head.insert(6, right("since start".into()));
        widths.insert(6, Constraint::Length(11));
    }
    let thresh = app.config.alerts.rejection_rate;
    let rows: Vec<Row> = order
        .iter()
        .map(|&i| {
            let a = &s.agencies[i];
            let rej_style = if a.rejection.is_some_and(|r| r > thresh) {
                t.warn
            } else {
                t.text
            };
            let total: f64 = a.reasons.iter().map(|r| r.1).sum();
            let reasons = a
                .reasons
                .iter()
                .take(if wide { 3 } else { 1 })
                .map(|(r, n)| format!("{:.0}% {r}", 100.0 * n / total.max(1.0)))
                .collect::<Vec<_>>()
                .join(", ");
            let mut cells = vec![
                Cell::from(a.name.clone()),
                right(fmt::rate(a.stored)),
                right(fmt::rate(a.rejected)),
                Cell::from(
                    Line::styled(fmt::opt_pct(a.rejection), rej_style).alignment(Alignment::Right),
                ),
                right(fmt::opt_pct(a.served_window)),
                right(opt(a.lag, fmt::compact)),
                Cell::from(Span::styled(reasons, t.dim)),
            ];
            if wide {
                cells.insert(2, right(fmt::rate(a.duplicates)));
                cells.insert(6, right(fmt::opt_pct(a.served_total)));
            }
            Row::new(cells)
        })
        .collect();
    let title = format!(
        " Agencies ({}) · %, reasons over {} · Enter: detail ",
        order.len(),
        window_name(s.params.window)
    );
    let table = Table::new(rows, widths)
        .header(Row::new(head).style(t.header))
        .row_highlight_style(t.selected)
        .block(table_block(app, title));
    let sel = app.selected[View::Agencies.index()];
    render_table(f, table, top, sel, order.len());
    if show_detail {
        if let Some(&i) = order.get(sel.min(order.len().saturating_sub(1))) {
            f.render_widget(
                Paragraph::new(agency_detail(app, s, &s.agencies[i]))
                    .block(table_block(app, format!(" {} ", s.agencies[i].name))),
                bottom,
            );
        }
    }
}

fn agency_detail(app: &App, s: &State, a: &AgencyRow) -> Vec<Line<'static>> {
    let t = &app.theme;
    let d = |x: &str| Span::styled(x.to_owned(), t.dim);
    let w = window_name(s.params.window);
    let mut lines = vec![
        Line::from(vec![
            d(&format!(" over {w}: stored ")),
            Span::raw(fmt::count(a.stored_window)),
            d("  duplicates "),
            Span::raw(fmt::count(a.duplicates_window)),
            d("  rejected "),
            Span::raw(fmt::count(a.rejected_window)),
            Span::raw(format!(" ({})", fmt::opt_pct(a.rejection))),
        ]),
        Line::from(vec![
            d(" served "),
            Span::raw(fmt::count(a.served)),
            d("  not served "),
            Span::raw(fmt::count(a.not_served)),
            d("  expired "),
            Span::raw(fmt::count(a.expired)),
            d("  → served "),
            Span::raw(fmt::opt_pct(a.served_window)),
            d(" (since start "),
            Span::raw(fmt::opt_pct(a.served_total)),
            d(")"),
        ]),
    ];
    if let Some(l) = a.lag {
        lines.push(Line::from(vec![
            d(" consumer lag "),
            Span::raw(fmt::count(l)),
        ]));
    }
    let total: f64 = a.reasons.iter().map(|r| r.1).sum();
    if a.reasons.is_empty() {
        lines.push(Line::styled(format!(" no rejections in {w}"), t.dim));
    } else {
        lines.push(Line::styled(format!(" rejections by reason ({w})"), t.dim));
        for (r, n) in a.reasons.iter().take(6) {
            lines.push(Line::raw(format!(
                "   {r:<28} {:>9}  {:>6}",
                fmt::count(*n),
                fmt::pct(n / total.max(1.0))
            )));
        }
        if a.reasons.len() > 6 {
            lines.push(Line::styled(
                format!("   … {} more reasons", a.reasons.len() - 6),
                t.dim,
            ));
        }
    }
    lines
}

pub(crate) fn channel_order(app: &App, s: &State) -> Vec<usize> {
    let v = View::Channels.index();
    let (key, rev) = app.sort[v];
    let mut order: Vec<usize> = (0..s.channels.len())
        .filter(|&i| matches_filter(&app.filter[v], &s.channels[i].name))
        .collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&s.channels[a], &s.channels[b]);
        match View::Channels.sort_keys().get(key).copied().unwrap_or("") {
            "sent/s" => by_num(Some(x.sent), Some(y.sent)),
            "fail %" => by_num(x.failure, y.failure),
            "breaker" => y.circuit.cmp(&x.circuit),
            "waiting" => by_num(Some(x.saturation), Some(y.saturation)),
            _ => Ordering::Equal,
        }
        .then_with(|| x.name.cmp(&y.name))
    });
    finish(&mut order, rev);
    order
}

fn circuit_span(app: &App, c: &ChannelRow) -> Span<'static> {
    let t = &app.theme;
    let style = match c.circuit {
        Circuit::Open => t.crit,
        Circuit::HalfOpen => t.warn,
        Circuit::Closed => t.ok,
        Circuit::Unknown => t.dim,
    };
    Span::styled(c.circuit.name(), style)
}

fn channels(f: &mut Frame, app: &App, s: &State, area: Rect) {
    let t = &app.theme;
    let order = channel_order(app, s);
    let wide = area.width >= BIG_WIDTH;
    let [area, notes] = Layout::vertical([Constraint::Fill(1), Constraint::Length(3)]).areas(area);
    let detail_h = detail_height(area, order.len(), 6);
    let [top, bottom] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(detail_h)]).areas(area);
    let h = |n| sort_header(app, View::Channels, n);
    let mut head = vec![
        Cell::from(h("channel")),
        Cell::from("gateway"),
        right(h("sent/s")),
        right(h("fail %")),
        right("retry/s".into()),
        Cell::from(h("breaker")),
        right(h("waiting")),
        right("skip/s".into()),
        right("p99".into()),
    ];
    let mut widths = vec![
        Constraint::Length(7),
        Constraint::Fill(1),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(8),
    ];
    if wide {
        for (i, name) in [(3, "attempts/s"), (4, "transient/s"), (5, "permanent/s")] {
            head.insert(i, right(name.into()));
            widths.insert(i, Constraint::Length(12));
        }
        head.push(right("opened".into()));
        widths.push(Constraint::Length(7));
    }
    let thresh = app.config.alerts.notification_failure_rate;
    let rows: Vec<Row> = order
        .iter()
        .map(|&i| {
            let c = &s.channels[i];
            let simulated = c.gateways.iter().any(|g| g == "simulated");
            let fail_style = if c.failure.is_some_and(|x| x > thresh) {
                t.warn
            } else {
                t.text
            };
            let mut cells = vec![
                Cell::from(c.name.clone()),
                Cell::from(Span::styled(
                    if c.gateways.is_empty() {
                        "–".into()
                    } else {
                        c.gateways.join(",")
                    },
                    if simulated { t.warn } else { t.text },
                )),
                right(fmt::rate(c.sent)),
                Cell::from(
                    Line::styled(fmt::opt_pct(c.failure), fail_style).alignment(Alignment::Right),
                ),
                right(fmt::rate(c.retries)),
                Cell::from(circuit_span(app, c)),
                right(format!("{:.2}", c.saturation)),
                right(fmt::rate(c.rate_limit_skips)),
                right(opt(c.send_p99, fmt::latency)),
            ];
            if wide {
                cells.insert(3, right(fmt::rate(c.attempts)));
                cells.insert(4, right(fmt::rate(c.transient)));
                cells.insert(5, right(fmt::rate(c.permanent)));
                cells.push(right(fmt::count(c.opened)));
            }
            Row::new(cells)
        })
        .collect();
    let title = format!(
        " Channels ({}) · failed % over {} · Enter: detail ",
        order.len(),
        window_name(s.params.window)
    );
    let table = Table::new(rows, widths)
        .header(Row::new(head).style(t.header))
        .row_highlight_style(t.selected)
        .block(table_block(app, title));
    let sel = app.selected[View::Channels.index()];
    render_table(f, table, top, sel, order.len());
    if detail_h > 0 {
        if let Some(&i) = order.get(sel.min(order.len().saturating_sub(1))) {
            let c = &s.channels[i];
            f.render_widget(
                Paragraph::new(channel_detail(app, s, c))
                    .block(table_block(app, format!(" {} ", c.name))),
                bottom,
            );
        }
    }

    let o = &s.overview;
    let d = |x: &str| Span::styled(x.to_owned(), t.dim);
    let failed = o.now[F::Failed as usize];
    let mut lines = vec![
        Line::from(vec![
            d(" rounds failed on all channels "),
            Span::styled(
                format!("{}/s", fmt::opt_rate(failed)),
                if failed.is_some_and(|v| v > 0.0) {
                    t.warn
                } else {
                    t.text
                },
            ),
            d("  put off "),
            Span::raw(format!("{}/s", fmt::opt_rate(o.now[F::PutOff as usize]))),
            d("  unreachable "),
            Span::raw(format!("{}/s", fmt::opt_rate(o.unreachable))),
        ]),
        Line::styled(
            " waiting = sends queued for a rate-limit token, on average; skip/s = gave up",
            t.dim,
        ),
    ];
    let simulated: Vec<&str> = s
        .channels
        .iter()
        .filter(|c| c.gateways.iter().any(|g| g == "simulated"))
        .map(|c| c.name.as_str())
        .collect();
    if !simulated.is_empty() {
        lines.push(Line::styled(
            format!(
                " SIMULATED gateway on {}: nobody is really notified there",
                simulated.join(", ")
            ),
            t.warn,
        ));
    }
    f.render_widget(Paragraph::new(lines), notes);
}

/// Height of a detail panel under a table of `rows`: what is left, up to
/// `max`, or nothing when too little is left to be worth it.
fn detail_height(area: Rect, rows: usize, max: u16) -> u16 {
    let left = area.height.saturating_sub(rows as u16 + 3);
    if left >= 6 {
        left.min(max)
    } else {
        0
    }
}

fn channel_detail(app: &App, s: &State, c: &ChannelRow) -> Vec<Line<'static>> {
    let t = &app.theme;
    let d = |x: &str| Span::styled(x.to_owned(), t.dim);
    let w = window_name(s.params.window);
    vec![
        Line::from(vec![
            d(" gateway "),
            Span::raw(if c.gateways.is_empty() {
                "–".into()
            } else {
                c.gateways.join(", ")
            }),
            d("  breaker "),
            circuit_span(app, c),
            if c.open_on.is_empty() {
                Span::raw("")
            } else {
                Span::styled(format!(" on {}", c.open_on.join(", ")), t.crit)
            },
        ]),
        Line::from(vec![
            d(" attempts/s "),
            Span::raw(fmt::rate(c.attempts)),
            d("  accepted "),
            Span::raw(fmt::rate((c.attempts - c.transient - c.permanent).max(0.0))),
            d("  transient "),
            Span::raw(fmt::rate(c.transient)),
            d("  permanent "),
            Span::raw(fmt::rate(c.permanent)),
        ]),
        Line::from(vec![
            d(&format!(" failed share over {w} ")),
            Span::raw(fmt::opt_pct(c.failure)),
            d("  breaker opened "),
            Span::raw(fmt::count(c.opened)),
            d(&format!(" times in {w}")),
        ]),
        Line::from(vec![
            d(" retries/s "),
            Span::raw(fmt::rate(c.retries)),
            d("  rate-limit waiters "),
            Span::raw(format!("{:.2}", c.saturation)),
            d("  skipped/s "),
            Span::raw(fmt::rate(c.rate_limit_skips)),
            d("  p99 attempt "),
            Span::raw(opt(c.send_p99, fmt::latency)),
        ]),
    ]
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn detail_popup(f: &mut Frame, app: &App, s: &State, body: Rect) {
    let sel = app.selected[app.view.index()];
    let (title, lines) = match app.view {
        View::Agencies => match agency_order(app, s).get(sel).map(|&i| &s.agencies[i]) {
            Some(a) => (a.name.clone(), agency_detail(app, s, a)),
            None => return,
        },
        View::Channels => match channel_order(app, s).get(sel).map(|&i| &s.channels[i]) {
            Some(c) => (c.name.clone(), channel_detail(app, s, c)),
            None => return,
        },
        _ => return,
    };
    let h = lines.len() as u16 + 2;
    let area = centered(body, body.width.saturating_sub(6).min(96), h);
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(lines)
            .block(table_block(app, format!(" {title} · Esc closes ")).style(app.theme.text)),
        area,
    );
}

// ---- Help ----

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
        "   fail %        a channel's failed gateway attempts (transient + permanent) / attempts".to_owned(),
        "   consumer lag  Kafka records not yet read by the node (↑ = growing over the alert window)".to_owned(),
        "   waiting       rate-limit saturation: sends waiting for a token, on average".to_owned(),
        "   skip/s        sends that gave up waiting for a token (the next channel took them)".to_owned(),
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

fn help(f: &mut Frame, app: &App, area: Rect) {
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
}
