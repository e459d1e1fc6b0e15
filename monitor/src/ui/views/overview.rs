//! The Overview: the scope's flows per second with their sparklines, two
//! charts on a large terminal, shares, latencies, consumer lag (and the
//! Kafka backlog by lane where a node reports it), and the alerts.

use karpoosheh_schemas::Priority;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, LegendPosition, Paragraph};
use ratatui::Frame;

use crate::config::window_name;
use crate::fmt;
use crate::state::{NodeRow, State, F};
use crate::ui::widgets::{alerts_block, alerts_for, big, sparkline};
use crate::ui::App;

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

pub(crate) fn draw(f: &mut Frame, app: &App, s: &State, area: Rect) {
    let large = big(area);
    let alerts_h = (alerts_for(app, s).len() as u16 + 2).clamp(3, if large { 10 } else { 8 });
    // A line more for the Kafka backlog by lane and one for the inbox API,
    // when a node here reports them.
    let info_h = 3 + s.overview.backlog.is_some() as u16 + s.overview.api_rate.is_some() as u16;
    let charts_h = if large {
        area.height.saturating_sub(10 + info_h + alerts_h).max(6)
    } else {
        0
    };
    let [flow, charts, info, alerts] = Layout::vertical([
        Constraint::Length(10),
        Constraint::Length(charts_h),
        Constraint::Length(info_h),
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
    let mut lines = vec![shares, Line::from(lat), Line::from(lag)];
    if let Some(backlog) = o.backlog {
        let mut spans = vec![Span::styled(" backlog by lane", t.dim)];
        for lane in Priority::ALL {
            spans.push(Span::styled(format!("  {} ", lane.as_str()), t.dim));
            spans.push(Span::raw(fmt::compact(backlog[lane as usize])));
        }
        lines.push(Line::from(spans));
    }
    if let Some(rate) = o.api_rate {
        lines.push({
            let errors = o.api_5xx.unwrap_or(0.0);
            Line::from(vec![
                Span::styled(" inbox API ", t.dim),
                val(format!("{}/s", fmt::rate(rate))),
                Span::styled("  4xx ", t.dim),
                Span::raw(format!("{}/s", fmt::rate(o.api_4xx.unwrap_or(0.0)))),
                Span::styled("  5xx ", t.dim),
                if errors > 0.0 {
                    Span::styled(format!("{}/s", fmt::rate(errors)), t.crit)
                } else {
                    Span::raw("0/s")
                },
                Span::styled("  p99 ", t.dim),
                Span::raw(fmt::opt_latency(o.api_p99)),
            ])
        });
    }
    f.render_widget(Paragraph::new(lines), area);
}
