//! The drill-down views, over the view they came from: an agency's newest
//! rejections, a node's parked agencies and quarantined records, a
//! tracking code's legal history (src/drill.rs reads them). Everything
//! shown arrives masked; nothing here adds a personal number.

use chrono::{DateTime, Utc};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Clear, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use crate::drill::{reason_code, Answer, Inside, Lookup, Query, Rejections, Sample, SAMPLE};
use crate::fmt;
use crate::state::State;
use crate::ui::widgets::{centered, render_table, right, table_block, BIG_WIDTH};
use crate::ui::{App, Drill};
use karpoosheh_schemas::SourcePosition;

/// A time as the rest of the dashboard shows it: local, or UTC in tests.
fn when(app: &App, t: &DateTime<Utc>) -> String {
    if app.local_time {
        t.with_timezone(&chrono::Local)
            .format("%m-%d %H:%M:%S")
            .to_string()
    } else {
        t.format("%m-%d %H:%M:%S").to_string()
    }
}

/// Where a record came from; `short` leaves out a Kafka topic (the
/// agency's own, on a narrow screen).
fn position(p: &SourcePosition, short: bool) -> String {
    match p {
        SourcePosition::Kafka {
            partition, offset, ..
        } if short => format!("{partition}@{offset}"),
        SourcePosition::Kafka {
            topic,
            partition,
            offset,
        } => format!("{topic}/{partition}@{offset}"),
        SourcePosition::File { path, line } => format!("{path}:{line}"),
        SourcePosition::InProcess { sequence } => format!("in-process #{sequence}"),
    }
}

fn title(d: &Drill) -> String {
    let what = match &d.query {
        Query::Rejections { agency } => format!("Rejections of {agency} · newest {SAMPLE}"),
        Query::Inside { .. } => "Parked agencies and quarantined records".to_owned(),
        Query::Lookup { code } => format!("Notice {code}"),
    };
    format!(" {what} · {} · Esc back · r reads again ", d.asked)
}

pub(crate) fn draw(f: &mut Frame, app: &App, s: &State, d: &Drill, area: Rect) {
    let t = &app.theme;
    let block = table_block(app, title(d));
    match &d.answer {
        None => f.render_widget(
            Paragraph::new("\n  Asking the operator endpoint…")
                .style(t.dim)
                .block(block),
            area,
        ),
        Some(Err(e)) => f.render_widget(
            Paragraph::new(vec![Line::raw(""), Line::styled(format!("  {e}"), t.crit)])
                .wrap(Wrap { trim: false })
                .block(block),
            area,
        ),
        Some(Ok(Answer::Rejections(r))) => rejections(f, app, d, r, area),
        Some(Ok(Answer::Inside(i))) => inside(f, app, s, d, i, area),
        Some(Ok(Answer::Lookup(h))) => history(f, app, d, h, area),
    }
}

fn rejections(f: &mut Frame, app: &App, d: &Drill, r: &Rejections, area: Rect) {
    let t = &app.theme;
    let wide = area.width >= BIG_WIDTH;
    let block = table_block(app, title(d));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let mut head = vec![Line::from(
        std::iter::once(Span::styled(
            format!(" {} in this sample by reason: ", r.samples.len()),
            t.dim,
        ))
        .chain(
            r.by_reason()
                .into_iter()
                .enumerate()
                .flat_map(|(i, (c, n))| {
                    [
                        Span::styled(if i == 0 { "" } else { " · " }, t.dim),
                        Span::raw(format!("{c} {n}")),
                    ]
                }),
        )
        .collect::<Vec<_>>(),
    )];
    for n in &r.notes {
        head.push(Line::styled(format!(" {n}"), t.warn));
    }
    if r.samples.is_empty() {
        head.push(Line::raw(""));
        head.push(Line::styled(
            " none kept (rejections are kept for scylla.traffic_retention / store.traffic_retention)",
            t.dim,
        ));
    }
    let detail_h = if inner.height >= 16 { 6 } else { 0 };
    let [top, table_area, detail] = Layout::vertical([
        Constraint::Length(head.len() as u16),
        Constraint::Fill(1),
        Constraint::Length(detail_h),
    ])
    .areas(inner);
    f.render_widget(Paragraph::new(head), top);
    if r.samples.is_empty() {
        return;
    }
    // Narrow: the field and the reference are in the detail below.
    let mut header = vec![
        Cell::from("time"),
        Cell::from("reason"),
        Cell::from(if wide { "where" } else { "part@offset" }),
        Cell::from("message"),
    ];
    let mut widths = vec![
        Constraint::Length(14),
        Constraint::Length(if wide { 27 } else { 20 }),
        Constraint::Length(if wide { 30 } else { 11 }),
        Constraint::Fill(1),
    ];
    if wide {
        header.insert(2, Cell::from("field"));
        widths.insert(2, Constraint::Length(16));
        header.insert(4, Cell::from("reference"));
        widths.insert(4, Constraint::Length(16));
        header.push(Cell::from("node"));
        widths.push(Constraint::Length(16));
    }
    let rows: Vec<Row> = r
        .samples
        .iter()
        .map(|x| {
            let first = x.problems.first();
            let more = x.problems.len().saturating_sub(1);
            let mut message = first.map(|p| p.message.clone()).unwrap_or_default();
            if more > 0 {
                message = format!("(+{more}) {message}");
            }
            let mut cells = vec![
                Cell::from(when(app, &x.at)),
                Cell::from(first.map(reason_code).unwrap_or_default()),
                Cell::from(position(&x.position, !wide)),
                Cell::from(message),
            ];
            if wide {
                cells.insert(
                    2,
                    Cell::from(first.and_then(|p| p.field.clone()).unwrap_or_default()),
                );
                cells.insert(4, Cell::from(x.reference.clone().unwrap_or_default()));
                cells.push(Cell::from(x.node.clone()));
            }
            Row::new(cells)
        })
        .collect();
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(t.header))
        .row_highlight_style(t.selected);
    render_table(f, table, table_area, d.selected, r.samples.len());
    if detail_h > 0 {
        if let Some(x) = r.samples.get(d.selected.min(r.samples.len() - 1)) {
            f.render_widget(
                Paragraph::new(sample_lines(app, x))
                    .wrap(Wrap { trim: false })
                    .block(table_block(app, " Selected rejection ".into())),
                detail,
            );
        }
    }
}

fn sample_lines(app: &App, x: &Sample) -> Vec<Line<'static>> {
    let t = &app.theme;
    let d = |s: &str| Span::styled(s.to_owned(), t.dim);
    let mut lines = vec![Line::from(vec![
        d(" reference "),
        Span::raw(x.reference.clone().unwrap_or_else(|| "–".into())),
        d("  from "),
        Span::raw(position(&x.position, false)),
        d("  read on "),
        Span::raw(x.node.clone()),
    ])];
    for p in &x.problems {
        lines.push(Line::from(vec![
            Span::styled(format!(" {}", reason_code(p)), t.warn),
            d(&p.field
                .as_deref()
                .map_or(String::new(), |f| format!(" {f}"))),
            Span::raw(format!(": {}", p.message)),
        ]));
    }
    lines
}

/// "3m 12s" since `t`, as of the snapshot's wall time.
fn waited(s: &State, t: &DateTime<Utc>) -> String {
    let now: DateTime<Utc> = s.wall.into();
    let secs = (now - *t).num_seconds().max(0) as f64;
    fmt::duration(secs)
}

fn inside(f: &mut Frame, app: &App, s: &State, d: &Drill, i: &Inside, area: Rect) {
    let t = &app.theme;
    let block = table_block(app, title(d));
    let inner = block.inner(area);
    f.render_widget(block, area);
    // Borders and the header, and a row per lot (a line when none).
    let parked_h = (i.parked.len().max(1) as u16 + 3).min(inner.height / 2);
    let [p_area, q_area] =
        Layout::vertical([Constraint::Length(parked_h), Constraint::Fill(1)]).areas(inner);
    let lots = i.parked.len();
    let p_title = format!(" Parked agencies ({lots}): their receipt topic refuses receipts ");
    if i.parked.is_empty() {
        f.render_widget(
            Paragraph::new(Line::styled(" none: every agency's receipts flow", t.ok))
                .block(table_block(app, p_title)),
            p_area,
        );
    } else {
        let rows: Vec<Row> = i
            .parked
            .iter()
            .map(|l| {
                Row::new(vec![
                    Cell::from(Span::styled(l.agency.as_str().to_owned(), t.warn)),
                    right(fmt::count(l.receipts as f64)),
                    Cell::from(l.oldest_event.clone().unwrap_or_default()),
                    Cell::from(l.oldest_at.map(|a| when(app, &a)).unwrap_or_default()),
                    right(l.oldest_at.map(|a| waited(s, &a)).unwrap_or_default()),
                ])
            })
            .collect();
        let table = Table::new(
            rows,
            [
                Constraint::Length(16),
                Constraint::Length(10),
                Constraint::Length(22),
                Constraint::Length(15),
                Constraint::Length(10),
            ],
        )
        .header(
            Row::new(vec![
                Cell::from("agency"),
                right("receipts".into()),
                Cell::from("oldest"),
                Cell::from("since"),
                right("waiting".into()),
            ])
            .style(t.header),
        )
        .row_highlight_style(t.selected)
        .block(table_block(app, p_title));
        // One selection moves through both tables: the lots, then the records.
        let here = d.selected < lots;
        render_table(f, table, p_area, d.selected, if here { lots } else { 0 });
    }
    let q_title = format!(
        " Quarantined records ({}), oldest first ",
        i.quarantined.len()
    );
    if i.quarantined.is_empty() {
        f.render_widget(
            Paragraph::new(Line::styled(" none: every stored record read back", t.ok))
                .block(table_block(app, q_title)),
            q_area,
        );
        return;
    }
    let rows: Vec<Row> = i
        .quarantined
        .iter()
        .map(|q| {
            Row::new(vec![
                Cell::from(when(app, &q.at)),
                Cell::from(Span::styled(q.kind.clone(), t.crit)),
                Cell::from(q.key.clone()),
                Cell::from(q.error.clone()),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(14),
            Constraint::Length(16),
            Constraint::Length(22),
            Constraint::Fill(1),
        ],
    )
    .header(
        Row::new(vec![
            Cell::from("time"),
            Cell::from("kind"),
            Cell::from("key"),
            Cell::from("why it cannot be read"),
        ])
        .style(t.header),
    )
    .row_highlight_style(t.selected)
    .block(table_block(app, q_title));
    let sel = d.selected.checked_sub(lots);
    let rows_h = i.quarantined.len() as u16 + 3;
    let detail_h = if q_area.height >= rows_h + 5 { 5 } else { 0 };
    let [t_area, detail] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(detail_h)]).areas(q_area);
    render_table(
        f,
        table,
        t_area,
        sel.unwrap_or(0),
        if sel.is_some() {
            i.quarantined.len()
        } else {
            0
        },
    );
    if detail_h > 0 {
        let q = &i.quarantined[sel.unwrap_or(0).min(i.quarantined.len() - 1)];
        let lines = vec![
            Line::from(vec![
                Span::styled(format!(" {} ", q.kind), t.crit),
                Span::raw(q.key.clone()),
                Span::styled("  its bytes: karpoosheh quarantine", t.dim),
            ]),
            Line::raw(format!(" {}", q.error)),
        ];
        f.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(table_block(app, " Selected record ".into())),
            detail,
        );
    }
}

fn history(f: &mut Frame, app: &App, d: &Drill, lookup: &Lookup, area: Rect) {
    let h = &lookup.history;
    let t = &app.theme;
    let dm = |s: &str| Span::styled(s.to_owned(), t.dim);
    let state_style = match h.state.as_str() {
        "served" => t.ok,
        "not_served" | "expired" | "unreachable" => t.crit,
        _ => t.warn,
    };
    let mut lines = vec![
        Line::from(vec![
            dm(" agency "),
            Span::raw(h.agency.clone()),
            dm("  reference "),
            Span::raw(h.reference.clone()),
            dm("  recipient "),
            Span::raw(h.recipient.clone()),
            dm("  kind "),
            Span::raw(h.kind.clone()),
        ]),
        Line::from(vec![
            dm(" accepted "),
            Span::raw(h.accepted_at.clone()),
            dm("  expires "),
            Span::raw(h.expires_at.clone()),
            dm("  state "),
            Span::styled(h.state.clone(), state_style),
            dm("  read on "),
            Span::raw(lookup.node.clone()),
        ]),
        Line::raw(""),
    ];
    let body: Vec<Line> = h
        .history
        .iter()
        .map(|l| Line::raw(format!(" {l}")))
        .chain(std::iter::once(Line::raw("")))
        .chain(h.chain.iter().map(|l| {
            let style = if l.contains("BROKEN") { t.crit } else { t.text };
            Line::styled(format!(" {l}"), style)
        }))
        .collect();
    lines.extend(body.into_iter().skip(d.selected));
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(table_block(app, title(d))),
        area,
    );
}

/// The tracking-code prompt, over everything.
pub(crate) fn prompt(f: &mut Frame, app: &App, text: &str, body: Rect) {
    let area = centered(body, body.width.saturating_sub(6).min(64), 5);
    f.render_widget(Clear, area);
    let lines = vec![
        Line::from(vec![
            Span::styled(" tracking code ", app.theme.dim),
            Span::raw(format!("{text}▏")),
        ]),
        Line::raw(""),
        Line::styled(
            " Enter looks it up on the nodes in scope · Esc cancels",
            app.theme.dim,
        ),
    ];
    f.render_widget(
        Paragraph::new(lines).block(table_block(app, " Look up a notice ".into())),
        area,
    );
}
