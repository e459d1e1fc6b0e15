//! The Nodes view: one row per node (state, rates, lag, queues, write
//! latency; identity and resources when wide), and the selected node's
//! detail under the table when there is room. Enter scopes to that node.

use std::cmp::Ordering;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

use crate::fmt;
use crate::state::{Health, NodeRow, State};
use crate::ui::widgets::{
    by_num, detail_height, opt, render_table, right, sort_header, table_block, table_order,
    BIG_WIDTH,
};
use crate::ui::{App, View};

pub(crate) fn node_order(app: &App, s: &State) -> Vec<usize> {
    let rank = |n: &NodeRow| match n.health {
        Health::Down { .. } => 0,
        Health::Late { .. } | Health::Unreached { .. } => 1,
        Health::Waiting => 2,
        Health::Up => 3,
    };
    table_order(
        app,
        View::Nodes,
        &s.nodes,
        |n| &n.name,
        |column, x, y| match column {
            "node" => x.name.cmp(&y.name),
            "state" => rank(x).cmp(&rank(y)),
            "in/s" => by_num(x.received, y.received),
            "stored/s" => by_num(x.stored, y.stored),
            "lag" => by_num(x.lag, y.lag),
            "write p99" => by_num(x.write_p99, y.write_p99),
            // "order": the configuration's, which the stable sort keeps.
            _ => Ordering::Equal,
        },
    )
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

pub(crate) fn draw(f: &mut Frame, app: &App, s: &State, area: Rect) {
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
            format!(
                " Nodes ({}/{} up) · i: parked, quarantined · t: look up a code ",
                s.up(),
                s.nodes.len()
            ),
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
