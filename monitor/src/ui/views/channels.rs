//! The Channels view: each notification channel's gateway, sends, failure
//! share, breaker and rate-limit waits, the selected channel's detail, and
//! notes on rounds that failed everywhere and on simulated gateways.

use std::cmp::Ordering;

use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

use crate::config::window_name;
use crate::fmt;
use crate::state::{ChannelRow, Circuit, State, F};
use crate::ui::widgets::{
    by_num, detail_height, opt, render_table, right, sort_header, table_block, table_order,
    BIG_WIDTH,
};
use crate::ui::{App, View};

pub(crate) fn channel_order(app: &App, s: &State) -> Vec<usize> {
    table_order(
        app,
        View::Channels,
        &s.channels,
        |c| &c.name,
        |column, x, y| {
            match column {
                "sent/s" => by_num(Some(x.sent), Some(y.sent)),
                "fail %" => by_num(x.failure, y.failure),
                "breaker" => y.circuit.cmp(&x.circuit),
                "waiting" => by_num(Some(x.saturation), Some(y.saturation)),
                _ => Ordering::Equal,
            }
            .then_with(|| x.name.cmp(&y.name))
        },
    )
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

pub(crate) fn draw(f: &mut Frame, app: &App, s: &State, area: Rect) {
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

pub(crate) fn channel_detail(app: &App, s: &State, c: &ChannelRow) -> Vec<Line<'static>> {
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
