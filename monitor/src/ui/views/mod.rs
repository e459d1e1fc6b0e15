//! Drawing: every view from one [`State`], designed for 80x24 first and
//! richer when the terminal is larger. Nothing here computes a number the
//! collector did not; it only chooses, orders and formats.
//!
//! One file per view, each with its table's order (which the keys move
//! through) next to its drawing; the frame around them and the pieces they
//! share are in [`super::widgets`].

mod agencies;
mod channels;
mod drill;
mod help;
mod nodes;
mod overview;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::{Clear, Paragraph};
use ratatui::Frame;

use super::widgets::{
    centered, footer, header, subheader, table_block, too_small, waiting, MIN_HEIGHT, MIN_WIDTH,
};
use super::{App, View};
use crate::state::State;
use agencies::agency_detail;
use channels::channel_detail;

pub(crate) use agencies::agency_order;
pub(crate) use channels::channel_order;
#[cfg(test)]
pub(crate) use help::help_lines;
pub(crate) use nodes::node_order;

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
        Some(s) if app.drill.is_some() => {
            drill::draw(f, app, s, app.drill.as_ref().expect("checked"), body)
        }
        Some(s) => match app.view {
            View::Overview => overview::draw(f, app, s, body),
            View::Nodes => nodes::draw(f, app, s, body),
            View::Agencies => agencies::draw(f, app, s, body),
            View::Channels => channels::draw(f, app, s, body),
        },
    }
    if let (true, Some(s)) = (app.detail, state) {
        detail_popup(f, app, s, body);
    }
    if let Some(text) = &app.prompt {
        drill::prompt(f, app, text, body);
    }
    if app.help {
        help::draw(f, app, area);
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
