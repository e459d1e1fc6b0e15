//! The terminal dashboard: the [`App`] (what the operator is looking at),
//! key handling through the keymap, and the loop that serves keys first
//! and redraws only on a key, a resize or a new state.
//!
//! The terminal is restored on every exit path: normal return, error,
//! panic (a hook restores before the message prints) and SIGTERM/SIGHUP
//! (a flag the loop checks between waits).

mod keymap;
#[cfg(test)]
mod tests;
mod theme;
mod views;
mod widgets;

use std::io::{Stdout, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind};
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::crossterm::{cursor, execute};
use ratatui::Terminal;

pub(crate) use keymap::Action;
pub(crate) use theme::Theme;
pub(crate) use views::draw;

use crate::collect::Collector;
use crate::config::{Config, WINDOWS};
use crate::drill::{Answer, Fetcher, Query};
use crate::state::{Params, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    Overview,
    Nodes,
    Agencies,
    Channels,
}

impl View {
    pub const ALL: [View; 4] = [View::Overview, View::Nodes, View::Agencies, View::Channels];

    pub fn index(self) -> usize {
        View::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }

    pub fn name(self) -> &'static str {
        match self {
            View::Overview => "Overview",
            View::Nodes => "Nodes",
            View::Agencies => "Agencies",
            View::Channels => "Channels",
        }
    }

    /// Sort columns of the view's table (the first is the default).
    pub fn sort_keys(self) -> &'static [&'static str] {
        match self {
            View::Overview => &[],
            View::Nodes => &[
                "order",
                "node",
                "state",
                "in/s",
                "stored/s",
                "lag",
                "write p99",
            ],
            View::Agencies => &[
                "stored/s",
                "agency",
                "rej %",
                "notified/s",
                "confirmed/s",
                "served/s",
                "served %",
            ],
            View::Channels => &["channel", "sent/s", "fail %", "breaker", "waiting"],
        }
    }
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `q` / Esc.
    Quit,
    /// Ctrl-c or SIGINT: the caller (e.g. the demo) should stop too.
    Interrupt,
    /// SIGTERM / SIGHUP: asked to stop from outside.
    Terminated,
}

/// What the operator is looking at. Everything here is presentation: the
/// numbers live in [`State`].
pub(crate) struct App {
    pub view: View,
    pub help: bool,
    pub help_scroll: u16,
    /// Filter text per view, and whether it is being typed.
    pub filter: [String; 4],
    pub editing: bool,
    /// Sort column index and reversed? per view.
    pub sort: [(usize, bool); 4],
    pub selected: [usize; 4],
    pub detail: bool,
    pub scope: Option<usize>,
    pub window: usize,
    pub paused: Option<f64>,
    pub theme: Theme,
    /// Wall times in local time (UTC in tests, for fixed snapshots).
    pub local_time: bool,
    pub title: String,
    pub config: Config,
    pub targets: usize,
    pub exit: Option<Exit>,
    /// The drill-down on screen, over the view (Esc closes it).
    pub drill: Option<Drill>,
    /// A tracking code being typed (`t`).
    pub prompt: Option<String>,
    /// A drill-down to fetch, for the loop to start.
    pub fetch: Option<(u64, Query)>,
    /// The last drill-down's generation: older answers are dropped.
    pub generation: u64,
}

/// A drill-down: what was asked, and its answer once it came.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Drill {
    pub query: Query,
    /// Which nodes were asked, for the title (`all nodes` or one name).
    pub asked: String,
    pub generation: u64,
    pub answer: Option<Result<Answer, String>>,
    /// The selected rejection, or the first line shown.
    pub selected: usize,
}

impl App {
    pub fn new(config: Config, targets: usize, theme: Theme, title: String) -> App {
        App {
            view: View::Overview,
            help: false,
            help_scroll: 0,
            filter: Default::default(),
            editing: false,
            sort: [(0, false); 4],
            selected: [0; 4],
            detail: false,
            scope: None,
            window: config.window_index(),
            paused: None,
            theme,
            local_time: true,
            title,
            config,
            targets,
            exit: None,
            drill: None,
            prompt: None,
            fetch: None,
            generation: 0,
        }
    }

    /// Opens (or re-reads) a drill-down; the loop starts the fetch.
    fn open(&mut self, query: Query, asked: String) {
        self.generation += 1;
        self.fetch = Some((self.generation, query.clone()));
        self.drill = Some(Drill {
            query,
            asked,
            generation: self.generation,
            answer: None,
            selected: 0,
        });
        self.help = false;
        self.detail = false;
    }

    /// Which nodes a fleet-wide query asks: the one in scope, or all.
    fn asked(&self, state: Option<&State>) -> String {
        match self.scope {
            Some(i) => node_name(state, i),
            None => "all nodes".into(),
        }
    }

    /// Takes an answer the fetcher delivered; true when it is the one on
    /// screen.
    pub fn answered(&mut self, generation: u64, answer: Result<Answer, String>) -> bool {
        match &mut self.drill {
            Some(d) if d.generation == generation => {
                d.answer = Some(answer);
                true
            }
            _ => false,
        }
    }

    /// Rows (or lines) the drill-down can move through.
    fn drill_rows(&self) -> usize {
        match self.drill.as_ref().and_then(|d| d.answer.as_ref()) {
            Some(Ok(Answer::Rejections(r))) => r.samples.len(),
            Some(Ok(Answer::Inside(i))) => i.parked.len() + i.quarantined.len(),
            Some(Ok(Answer::Lookup(l))) => l.history.history.len() + l.history.chain.len(),
            _ => 0,
        }
    }

    /// A key while the tracking-code prompt is open.
    fn prompt_key(&mut self, key: KeyEvent, state: Option<&State>) {
        let ctrl = key.modifiers.contains(event::KeyModifiers::CONTROL);
        let Some(text) = self.prompt.as_mut() else {
            return;
        };
        match key.code {
            KeyCode::Esc => self.prompt = None,
            KeyCode::Enter => {
                let code = text.trim().to_owned();
                self.prompt = None;
                if !code.is_empty() {
                    let asked = self.asked(state);
                    self.open(Query::Lookup { code }, asked);
                }
            }
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char('c') if ctrl => self.exit = Some(Exit::Interrupt),
            // A code is 17 characters; a paste of anything longer is cut,
            // anything but letters, digits and hyphens left out.
            KeyCode::Char(c)
                if !ctrl
                    && text.chars().count() < 24
                    && (c.is_ascii_alphanumeric() || c == '-') =>
            {
                text.push(c.to_ascii_uppercase())
            }
            _ => {}
        }
    }

    pub fn params(&self) -> Params {
        Params {
            window: WINDOWS[self.window],
            scope: self.scope,
            as_of: self.paused,
        }
    }

    /// Rows the current view's table shows after the filter (for moving
    /// the selection).
    fn rows(&self, state: Option<&State>) -> usize {
        let Some(s) = state else { return 0 };
        match self.view {
            View::Overview => 0,
            View::Nodes => views::node_order(self, s).len(),
            View::Agencies => views::agency_order(self, s).len(),
            View::Channels => views::channel_order(self, s).len(),
        }
    }

    /// Handles one key; true when the collector must be asked for new
    /// parameters.
    pub fn key(&mut self, key: KeyEvent, state: Option<&State>) -> bool {
        let before = self.params();
        if self.prompt.is_some() {
            self.prompt_key(key, state);
            return false;
        }
        if self.editing {
            let ctrl = key.modifiers.contains(event::KeyModifiers::CONTROL);
            let f = &mut self.filter[self.view.index()];
            match key.code {
                KeyCode::Enter => self.editing = false,
                KeyCode::Esc => {
                    f.clear();
                    self.editing = false;
                }
                KeyCode::Backspace => {
                    f.pop();
                }
                // Names are short; a runaway paste must not grow it forever.
                KeyCode::Char(c) if !ctrl && f.chars().count() < 40 => f.push(c),
                KeyCode::Char(_) if !ctrl => {}
                KeyCode::Char('c') => self.exit = Some(Exit::Interrupt),
                _ => {}
            }
            self.selected[self.view.index()] = 0;
            return false;
        }
        let Some(action) = keymap::action(&key) else {
            return false;
        };
        if self.drill.is_some() && self.help {
            // Help over a drill-down: help's own keys only; nothing reaches
            // the view underneath.
            match action {
                Action::Back | Action::Help => self.help = false,
                Action::Up => self.help_scroll = self.help_scroll.saturating_sub(1),
                Action::Down => self.help_scroll = self.help_scroll.saturating_add(1),
                Action::PageUp => self.help_scroll = self.help_scroll.saturating_sub(10),
                Action::PageDown => self.help_scroll = self.help_scroll.saturating_add(10),
                Action::Quit => self.exit = Some(Exit::Quit),
                Action::Interrupt => self.exit = Some(Exit::Interrupt),
                _ => {}
            }
            return false;
        }
        if self.drill.is_some() {
            let last = self.drill_rows().saturating_sub(1);
            let d = self.drill.as_mut().expect("checked");
            let cur = d.selected;
            let switching = matches!(
                action,
                Action::NextView | Action::PrevView | Action::Show(_)
            );
            match action {
                Action::Back => self.drill = None,
                Action::Up => d.selected = cur.saturating_sub(1),
                Action::Down => d.selected = (cur + 1).min(last),
                Action::PageUp => d.selected = cur.saturating_sub(10),
                Action::PageDown => d.selected = (cur + 10).min(last),
                Action::Top => d.selected = 0,
                Action::Bottom => d.selected = last,
                Action::Rejections => {
                    let (q, asked) = (d.query.clone(), d.asked.clone());
                    self.open(q, asked);
                }
                Action::Quit => self.exit = Some(Exit::Quit),
                Action::Interrupt => self.exit = Some(Exit::Interrupt),
                Action::Help => {
                    self.help = true;
                    self.help_scroll = 0;
                }
                Action::Lookup => self.prompt = Some(String::new()),
                // A view key leaves the drill-down for that view, below.
                _ if switching => self.drill = None,
                // The rest act on the view underneath: not while it is covered.
                _ => {}
            }
            if !switching {
                return false;
            }
        }
        let v = self.view.index();
        let rows = self.rows(state);
        let page = 10;
        let cur = self.selected[v];
        let last = rows.saturating_sub(1);
        match action {
            Action::Quit => self.exit = Some(Exit::Quit),
            Action::Interrupt => self.exit = Some(Exit::Interrupt),
            Action::Back => {
                if self.help {
                    self.help = false;
                } else if self.detail {
                    self.detail = false;
                } else if !self.filter[v].is_empty() {
                    self.filter[v].clear();
                } else {
                    self.exit = Some(Exit::Quit);
                }
            }
            Action::Help => {
                self.help = !self.help;
                self.help_scroll = 0;
            }
            Action::Up if self.help => self.help_scroll = self.help_scroll.saturating_sub(1),
            Action::Down if self.help => self.help_scroll = self.help_scroll.saturating_add(1),
            Action::PageUp if self.help => self.help_scroll = self.help_scroll.saturating_sub(10),
            Action::PageDown if self.help => self.help_scroll = self.help_scroll.saturating_add(10),
            Action::NextView => self.show(View::ALL[(v + 1) % View::ALL.len()]),
            Action::PrevView => self.show(View::ALL[(v + View::ALL.len() - 1) % View::ALL.len()]),
            Action::Show(view) => self.show(view),
            Action::Up => self.selected[v] = cur.saturating_sub(1),
            Action::Down => self.selected[v] = (cur + 1).min(last),
            Action::PageUp => self.selected[v] = cur.saturating_sub(page),
            Action::PageDown => self.selected[v] = (cur + page).min(last),
            Action::Top => self.selected[v] = 0,
            Action::Bottom => self.selected[v] = last,
            Action::ScopePrev => {
                self.scope = match self.scope {
                    None if self.targets > 1 => Some(self.targets - 1),
                    Some(0) | None => None,
                    Some(i) => Some(i - 1),
                }
            }
            Action::ScopeNext => {
                self.scope = match self.scope {
                    None if self.targets > 1 => Some(0),
                    Some(i) if i + 1 < self.targets => Some(i + 1),
                    _ => None,
                }
            }
            Action::Enter => match self.view {
                View::Nodes => {
                    let order = state
                        .map(|s| views::node_order(self, s))
                        .unwrap_or_default();
                    if let Some(&i) = order.get(cur) {
                        self.scope = Some(i);
                        self.show(View::Overview);
                    }
                }
                View::Agencies | View::Channels => self.detail = !self.detail,
                View::Overview => {}
            },
            Action::Filter => {
                self.editing = true;
                self.help = false;
            }
            Action::Sort => {
                let n = self.view.sort_keys().len().max(1);
                self.sort[v].0 = (self.sort[v].0 + 1) % n;
            }
            Action::SortReverse => self.sort[v].1 = !self.sort[v].1,
            Action::Pause => {
                self.paused = match self.paused {
                    Some(_) => None,
                    None => Some(state.map_or(0.0, |s| s.at)),
                }
            }
            Action::Wider => self.window = (self.window + 1).min(WINDOWS.len() - 1),
            Action::Narrower => self.window = self.window.saturating_sub(1),
            Action::Rejections => {
                if self.view == View::Agencies {
                    let agency = state.and_then(|s| {
                        let order = views::agency_order(self, s);
                        order.get(cur).map(|&i| s.agencies[i].name.clone())
                    });
                    if let Some(agency) = agency {
                        let asked = self.asked(state);
                        self.open(Query::Rejections { agency }, asked);
                    }
                }
            }
            Action::Inside => {
                let node = match self.view {
                    View::Nodes => state.and_then(|s| views::node_order(self, s).get(cur).copied()),
                    _ => self.scope,
                };
                if let Some(node) = node {
                    self.open(Query::Inside { node }, node_name(state, node));
                }
            }
            Action::Lookup => {
                self.prompt = Some(String::new());
                self.help = false;
            }
        }
        self.params() != before
    }

    fn show(&mut self, view: View) {
        self.view = view;
        self.detail = false;
        self.help = false;
        self.drill = None;
    }
}

/// A node's name on screen, from the last state (its target otherwise).
pub(crate) fn node_name(state: Option<&State>, i: usize) -> String {
    state
        .and_then(|s| s.nodes.get(i))
        .map_or_else(|| format!("node {}", i + 1), |n| n.name.clone())
}

/// The names of every target, for the endpoints' labels.
fn node_names(app: &App, state: Option<&State>) -> Vec<String> {
    (0..app.targets).map(|i| node_name(state, i)).collect()
}

/// Puts the terminal in raw mode on the alternate screen and restores it
/// when dropped, and from the panic hook.
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(std::io::stdout(), LeaveAlternateScreen, cursor::Show);
}

impl TerminalGuard {
    fn enter() -> std::io::Result<TerminalGuard> {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                // Restore first, so the message lands on a usable terminal.
                restore_terminal();
                previous(info);
            }));
        });
        enable_raw_mode()?;
        let mut out = std::io::stdout();
        if let Err(e) = execute!(out, EnterAlternateScreen, cursor::Hide) {
            restore_terminal();
            return Err(e);
        }
        let terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()));
        match terminal {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                restore_terminal();
                Err(e)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
        let _ = std::io::stdout().flush();
    }
}

/// Signals that end the session, checked between waits.
pub struct Signals {
    pub interrupted: Arc<AtomicBool>,
    pub terminated: Arc<AtomicBool>,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let s = Signals {
            interrupted: Arc::new(AtomicBool::new(false)),
            terminated: Arc::new(AtomicBool::new(false)),
        };
        signal_hook::flag::register(SIGINT, s.interrupted.clone())?;
        signal_hook::flag::register(SIGTERM, s.terminated.clone())?;
        signal_hook::flag::register(SIGHUP, s.terminated.clone())?;
        Ok(s)
    }

    pub fn exit(&self) -> Option<Exit> {
        if self.interrupted.load(Ordering::Relaxed) {
            Some(Exit::Interrupt)
        } else if self.terminated.load(Ordering::Relaxed) {
            Some(Exit::Terminated)
        } else {
            None
        }
    }
}

/// True when the terminal we draw on (stdout), or read keys from (stdin,
/// when a terminal), has hung up.
fn terminal_hung_up() -> bool {
    use std::io::IsTerminal;
    let keys = if std::io::stdin().is_terminal() { 0 } else { 1 };
    let mut fds = [
        libc::pollfd {
            fd: 1,
            events: 0,
            revents: 0,
        },
        libc::pollfd {
            fd: keys,
            events: 0,
            revents: 0,
        },
    ];
    // SAFETY: polls our own standard descriptors without waiting.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
    n > 0
        && fds
            .iter()
            .any(|f| f.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0)
}

/// Runs the dashboard until the operator quits or a signal arrives.
pub(crate) fn run(
    collector: &Collector,
    mut app: App,
    signals: &Signals,
) -> Result<Exit, crate::Error> {
    let refresh = app.config.refresh.0;
    let mut guard = TerminalGuard::enter().map_err(crate::Error::Terminal)?;
    // Keys are read on their own thread: on a terminal that has gone away
    // (tmux killed, ssh dropped) crossterm's read spins on end-of-file and
    // never returns, and this loop must still notice and leave. The
    // process exit ends that thread.
    let (keys_tx, keys) = crossbeam_channel::bounded::<Event>(256);
    std::thread::Builder::new()
        .name("keys".into())
        .spawn(move || {
            while let Ok(ev) = event::read() {
                if keys_tx.send(ev).is_err() {
                    return;
                }
            }
        })
        .map_err(crate::Error::Terminal)?;
    let fetcher = Fetcher::default();
    let mut seen = 0;
    let mut state: Option<Arc<State>> = None;
    let mut dirty = true;
    let mut next: Option<Event> = None;
    loop {
        if let Some(exit) = signals.exit() {
            return Ok(exit);
        }
        if terminal_hung_up() {
            return Ok(Exit::Terminated);
        }
        // Keys first: everything already typed is handled before drawing.
        while let Some(ev) = next.take().or_else(|| keys.try_recv().ok()) {
            match ev {
                Event::Key(k) if k.kind != KeyEventKind::Release => {
                    if app.key(k, state.as_deref()) {
                        collector.request(app.params());
                    }
                    dirty = true;
                }
                Event::Resize(..) => dirty = true,
                _ => {}
            }
            if let Some(exit) = app.exit {
                return Ok(exit);
            }
            if let Some((generation, query)) = app.fetch.take() {
                let scope = match query {
                    Query::Inside { node } => Some(node),
                    _ => app.scope,
                };
                let names = node_names(&app, state.as_deref());
                let endpoints = crate::drill::endpoints(&app.config.operator, &names, scope);
                fetcher.start(generation, query, endpoints, &app.config.operator);
            }
        }
        if let Some((generation, answer)) = fetcher.take() {
            dirty |= app.answered(generation, answer);
        }
        if let Some((g, s)) = collector.states.latest() {
            // A paused screen only takes a state computed for it (a window
            // or scope changed while paused), never a live one.
            if g != seen && s.params == app.params() {
                seen = g;
                state = Some(s);
                dirty = true;
            }
        }
        if dirty {
            guard
                .terminal
                .draw(|f| draw(f, &app, state.as_deref()))
                .map_err(crate::Error::Terminal)?;
            dirty = false;
        }
        // Sleep until a key, or until the next state may have arrived.
        match keys.recv_timeout(refresh) {
            Ok(ev) => next = Some(ev),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            // The reader failed: the terminal is unusable.
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Ok(Exit::Terminated),
        }
    }
}
