//! The Agencies view: per agency, notices stored, notifications sent,
//! confirmations applied and notices served per second, rejection and
//! served shares; rejections and notices not served per second, rounds
//! put off to the agency's pace, lag and reasons when wide; a flag on an
//! agency over its daily quota (refused or deferred); and the selected
//! agency's detail (under the table, or as a popup).

use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

use crate::config::window_name;
use crate::fmt;
use crate::state::{AgencyRow, State};
use crate::ui::widgets::{
    by_num, detail_height, opt, render_table, right, sort_header, table_block, table_order,
    BIG_WIDTH,
};
use crate::ui::{App, View};

/// Narrower than this, the table leaves the reasons to the detail.
const MIN_REASONS: usize = 24;

pub(crate) fn agency_order(app: &App, s: &State) -> Vec<usize> {
    table_order(
        app,
        View::Agencies,
        &s.agencies,
        |a| &a.name,
        |column, x, y| {
            match column {
                "agency" => x.name.cmp(&y.name),
                "rej %" => by_num(x.rejection, y.rejection),
                "notified/s" => by_num(Some(x.notified), Some(y.notified)),
                "confirmed/s" => by_num(Some(x.confirmed), Some(y.confirmed)),
                "served/s" => by_num(Some(x.served_rate), Some(y.served_rate)),
                "served %" => by_num(x.served_window, y.served_window),
                _ => by_num(Some(x.stored), Some(y.stored)),
            }
            .then_with(|| x.name.cmp(&y.name))
        },
    )
}

pub(crate) fn draw(f: &mut Frame, app: &App, s: &State, area: Rect) {
    let t = &app.theme;
    let order = agency_order(app, s);
    let wide = area.width >= BIG_WIDTH;
    let detail_h = detail_height(area, order.len(), 13);
    let show_detail = detail_h > 0;
    let [top, bottom] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(detail_h)]).areas(area);
    let h = |n| sort_header(app, View::Agencies, n);
    // At 80 columns, a notice's way through, left to right: in, refused,
    // notified, confirmed, served. Reasons and lag are in the detail below.
    let mut head = vec![
        Cell::from(h("agency")),
        right(h("stored/s")),
        right(h("rej %")),
        right(h("notified/s")),
        right(h("confirmed/s")),
        right(h("served/s")),
        right(h("served %")),
    ];
    let mut widths = vec![
        Constraint::Length(15),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Length(11),
        Constraint::Length(12),
        Constraint::Length(9),
        Constraint::Length(9),
    ];
    if wide {
        head.insert(2, right("rej/s".into()));
        widths.insert(2, Constraint::Length(7));
        head.insert(7, right("not served/s".into()));
        widths.insert(7, Constraint::Length(13));
        head.push(right("paced/s".into()));
        widths.push(Constraint::Length(8));
        head.push(right("lag".into()));
        widths.push(Constraint::Length(7));
    }
    // The reasons get what is left of the row (less each column and the
    // space after it), when that is enough to read one.
    let fixed: u16 = widths
        .iter()
        .map(|c| match c {
            Constraint::Length(n) => n + 1,
            _ => 0,
        })
        .sum();
    let reasons_room = usize::from(top.width.saturating_sub(2 + fixed));
    let reasons = wide && reasons_room >= MIN_REASONS;
    if reasons {
        head.push(Cell::from("top reasons"));
        widths.push(Constraint::Fill(1));
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
            let name = if over_quota(a).is_some() || deferred(a).is_some() {
                Cell::from(Line::from(vec![
                    Span::styled(a.name.clone(), t.warn),
                    Span::styled(" ⚑", t.warn),
                ]))
            } else {
                Cell::from(a.name.clone())
            };
            let mut cells = vec![
                name,
                right(fmt::rate(a.stored)),
                Cell::from(
                    Line::styled(fmt::opt_pct(a.rejection), rej_style).alignment(Alignment::Right),
                ),
                right(fmt::rate(a.notified)),
                right(fmt::rate(a.confirmed)),
                right(fmt::rate(a.served_rate)),
                right(fmt::opt_pct(a.served_window)),
            ];
            if wide {
                cells.insert(2, right(fmt::rate(a.rejected)));
                cells.insert(7, right(fmt::rate(a.not_served_rate)));
                cells.push(right(fmt::rate(a.paced)));
                cells.push(right(opt(a.lag, fmt::compact)));
            }
            if reasons {
                cells.push(Cell::from(Span::styled(
                    top_reasons(a, reasons_room),
                    t.dim,
                )));
            }
            Row::new(cells)
        })
        .collect();
    let title = format!(
        " Agencies ({}) · %, reasons over {} · Enter: detail · r: rejections ",
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

/// The most frequent rejection reasons with their shares, as many as fit
/// in `room` characters (the first one always, cut by the table if need
/// be).
fn top_reasons(a: &AgencyRow, room: usize) -> String {
    let total: f64 = a.reasons.iter().map(|r| r.1).sum();
    let mut out = String::new();
    for (r, n) in a.reasons.iter().take(3) {
        let one = format!("{:.0}% {r}", 100.0 * n / total.max(1.0));
        if out.is_empty() {
            out = one;
        } else if out.chars().count() + 2 + one.chars().count() <= room {
            out = format!("{out}, {one}");
        } else {
            break;
        }
    }
    out
}

/// The agency's records refused `quota_exceeded` over the window, when
/// there were any: it is over its daily quota (`notices_per_day`).
fn over_quota(a: &AgencyRow) -> Option<f64> {
    a.reasons
        .iter()
        .find(|(r, n)| r == "quota_exceeded" && *n > 0.0)
        .map(|(_, n)| *n)
}

/// Its bulk partitions left unread until Tehran midnight, when any: it
/// is over its daily quota and defers (`over_quota = "defer"`).
fn deferred(a: &AgencyRow) -> Option<f64> {
    a.deferred.filter(|d| *d > 0.0)
}

pub(crate) fn agency_detail(app: &App, s: &State, a: &AgencyRow) -> Vec<Line<'static>> {
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
            d(" notified "),
            Span::raw(fmt::count(a.notified_window)),
            d("  failed "),
            Span::raw(fmt::count(a.notify_failed_window)),
            d("  → reached "),
            Span::raw(fmt::opt_pct(a.reached)),
            d("  confirmed "),
            Span::raw(fmt::count(a.confirmed_window)),
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
    if let Some(n) = over_quota(a) {
        lines.push(Line::styled(
            format!(
                " ⚑ over its daily quota: {} records refused quota_exceeded in {w}",
                fmt::count(n)
            ),
            t.warn,
        ));
    }
    if let Some(n) = deferred(a) {
        lines.push(Line::styled(
            format!(
                " ⚑ over its daily quota: {} bulk partitions left unread until Tehran midnight (defer)",
                fmt::count(n)
            ),
            t.warn,
        ));
    }
    if a.paced > 0.0 {
        lines.push(Line::from(vec![
            d(" over its pace: rounds put off to its next slot "),
            Span::raw(format!("{}/s", fmt::rate(a.paced))),
            d(" (rounds_per_second)"),
        ]));
    }
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
