//! The one keymap: handlers, the footer and the `?` help are all read from
//! this table, so they cannot disagree (k9s' `action.go`). No Ctrl-a or
//! Ctrl-b: tmux and screen own them.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::View;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Quit,
    Back,
    Interrupt,
    Help,
    NextView,
    PrevView,
    Show(View),
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    ScopePrev,
    ScopeNext,
    Enter,
    Filter,
    Sort,
    SortReverse,
    Pause,
    Wider,
    Narrower,
    Rejections,
    Inside,
    Lookup,
}

/// A key as bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum K {
    Char(char),
    Code(KeyCode),
    Ctrl(char),
}

pub(crate) struct Binding {
    pub keys: &'static [K],
    /// How the keys are written in help.
    pub label: &'static str,
    pub action: Action,
    pub help: &'static str,
    /// (keys, word) shown in the footer, for the bindings worth a reminder.
    pub footer: Option<(&'static str, &'static str)>,
}

const fn b(
    keys: &'static [K],
    label: &'static str,
    action: Action,
    help: &'static str,
    footer: Option<(&'static str, &'static str)>,
) -> Binding {
    Binding {
        keys,
        label,
        action,
        help,
        footer,
    }
}

use Action as A;
use KeyCode as C;

pub(crate) const KEYMAP: &[Binding] = &[
    b(&[K::Char('q')], "q", A::Quit, "quit", Some(("q", "quit"))),
    b(
        &[K::Code(C::Esc)],
        "Esc",
        A::Back,
        "close help, filter or detail; quit when none is open",
        None,
    ),
    b(
        &[K::Ctrl('c')],
        "Ctrl-c",
        A::Interrupt,
        "quit now (and stop `karpoosheh demo` if it opened this dashboard)",
        None,
    ),
    b(
        &[K::Char('?')],
        "?",
        A::Help,
        "this help (Esc or ? closes it)",
        Some(("?", "help")),
    ),
    b(
        &[K::Code(C::Tab)],
        "Tab",
        A::NextView,
        "next view",
        Some(("Tab", "view")),
    ),
    b(
        &[K::Code(C::BackTab)],
        "Shift-Tab",
        A::PrevView,
        "previous view",
        None,
    ),
    b(
        &[K::Char('1')],
        "1",
        A::Show(View::Overview),
        "Overview: flows, shares, latency, lag, alerts",
        None,
    ),
    b(
        &[K::Char('2')],
        "2",
        A::Show(View::Nodes),
        "Nodes: one row per engine node",
        None,
    ),
    b(
        &[K::Char('3')],
        "3",
        A::Show(View::Agencies),
        "Agencies: stored, rejected, notified, confirmed, served",
        None,
    ),
    b(
        &[K::Char('4')],
        "4",
        A::Show(View::Channels),
        "Channels: sent, failures, retries, breaker, rate limit",
        None,
    ),
    b(
        &[K::Code(C::Up), K::Char('k')],
        "↑ k",
        A::Up,
        "previous row (scroll in help)",
        None,
    ),
    b(
        &[K::Code(C::Down), K::Char('j')],
        "↓ j",
        A::Down,
        "next row (scroll in help)",
        None,
    ),
    b(&[K::Code(C::PageUp)], "PgUp", A::PageUp, "a page up", None),
    b(
        &[K::Code(C::PageDown)],
        "PgDn",
        A::PageDown,
        "a page down",
        None,
    ),
    b(
        &[K::Code(C::Home), K::Char('g')],
        "Home g",
        A::Top,
        "first row",
        None,
    ),
    b(
        &[K::Code(C::End), K::Char('G')],
        "End G",
        A::Bottom,
        "last row",
        None,
    ),
    b(
        &[K::Code(C::Left), K::Char('h')],
        "← h",
        A::ScopePrev,
        "scope: the previous node, or the whole fleet",
        Some(("←→", "scope")),
    ),
    b(
        &[K::Code(C::Right), K::Char('l')],
        "→ l",
        A::ScopeNext,
        "scope: the next node",
        None,
    ),
    b(
        &[K::Code(C::Enter)],
        "Enter",
        A::Enter,
        "drill down: a node's own overview; an agency's or channel's detail",
        None,
    ),
    b(
        &[K::Char('r')],
        "r",
        A::Rejections,
        "an agency's newest rejections, with fields and messages (Agencies); in a drill-down, read it again",
        None,
    ),
    b(
        &[K::Char('i')],
        "i",
        A::Inside,
        "inside a node: its parked agencies and quarantined records (Nodes)",
        None,
    ),
    b(
        &[K::Char('t')],
        "t",
        A::Lookup,
        "look up a tracking code: the notice's legal history (recorded in that mailbox's traffic data)",
        None,
    ),
    b(
        &[K::Char('/')],
        "/",
        A::Filter,
        "filter rows by name (Enter keeps it, Esc clears it)",
        Some(("/", "filter")),
    ),
    b(
        &[K::Char('s')],
        "s",
        A::Sort,
        "sort by the next column",
        Some(("s", "sort")),
    ),
    b(
        &[K::Char('S')],
        "S",
        A::SortReverse,
        "reverse the sort",
        None,
    ),
    b(
        &[K::Char('p'), K::Char(' ')],
        "p Space",
        A::Pause,
        "pause / resume the display (collection goes on)",
        Some(("p", "pause")),
    ),
    b(
        &[K::Char('+'), K::Char('=')],
        "+",
        A::Wider,
        "longer chart window (1m 5m 15m 1h 6h)",
        Some(("+-", "window")),
    ),
    b(
        &[K::Char('-'), K::Char('_')],
        "-",
        A::Narrower,
        "shorter chart window",
        None,
    ),
];

/// The action bound to a key press, if any.
pub(crate) fn action(key: &KeyEvent) -> Option<Action> {
    let pressed = if key.modifiers.contains(KeyModifiers::CONTROL) {
        match key.code {
            KeyCode::Char(c) => K::Ctrl(c.to_ascii_lowercase()),
            _ => return None,
        }
    } else {
        match key.code {
            KeyCode::Char(c) => K::Char(c),
            other => K::Code(other),
        }
    };
    KEYMAP
        .iter()
        .find(|b| b.keys.contains(&pressed))
        .map(|b| b.action)
}

/// The footer: every reminder, in table order.
pub(crate) fn footer() -> Vec<(&'static str, &'static str)> {
    KEYMAP.iter().filter_map(|b| b.footer).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn no_key_is_bound_twice() {
        let mut seen = Vec::new();
        for b in KEYMAP {
            for k in b.keys {
                assert!(!seen.contains(k), "{k:?} bound twice");
                seen.push(*k);
            }
        }
    }

    #[test]
    fn the_issue_keys_do_what_it_says() {
        let none = KeyModifiers::NONE;
        let cases = [
            (key(KeyCode::Char('q'), none), A::Quit),
            (key(KeyCode::Esc, none), A::Back),
            (key(KeyCode::Char('?'), KeyModifiers::SHIFT), A::Help),
            (key(KeyCode::Tab, none), A::NextView),
            (key(KeyCode::BackTab, KeyModifiers::SHIFT), A::PrevView),
            (key(KeyCode::Char('3'), none), A::Show(View::Agencies)),
            (key(KeyCode::Char('j'), none), A::Down),
            (key(KeyCode::Up, none), A::Up),
            (key(KeyCode::Char('h'), none), A::ScopePrev),
            (key(KeyCode::Right, none), A::ScopeNext),
            (key(KeyCode::Char('/'), none), A::Filter),
            (key(KeyCode::Char('s'), none), A::Sort),
            (key(KeyCode::Char('p'), none), A::Pause),
            (key(KeyCode::Char('+'), KeyModifiers::SHIFT), A::Wider),
            (key(KeyCode::Char('-'), none), A::Narrower),
            (key(KeyCode::Char('c'), KeyModifiers::CONTROL), A::Interrupt),
        ];
        for (k, want) in cases {
            assert_eq!(action(&k), Some(want), "{k:?}");
        }
    }

    #[test]
    fn tmux_and_screen_prefixes_are_left_alone() {
        for c in ['a', 'b'] {
            assert_eq!(action(&key(KeyCode::Char(c), KeyModifiers::CONTROL)), None);
            assert!(KEYMAP.iter().all(|b| !b.keys.contains(&K::Ctrl(c))));
        }
    }

    #[test]
    fn every_action_has_a_binding_with_help() {
        let all = [
            A::Quit,
            A::Back,
            A::Interrupt,
            A::Help,
            A::NextView,
            A::PrevView,
            A::Show(View::Overview),
            A::Show(View::Nodes),
            A::Show(View::Agencies),
            A::Show(View::Channels),
            A::Up,
            A::Down,
            A::PageUp,
            A::PageDown,
            A::Top,
            A::Bottom,
            A::ScopePrev,
            A::ScopeNext,
            A::Enter,
            A::Filter,
            A::Sort,
            A::SortReverse,
            A::Pause,
            A::Wider,
            A::Narrower,
        ];
        for a in all {
            let b = KEYMAP
                .iter()
                .find(|b| b.action == a)
                .unwrap_or_else(|| panic!("{a:?} unbound"));
            assert!(!b.help.is_empty() && !b.label.is_empty());
        }
    }
}
