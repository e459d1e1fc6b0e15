//! Every view rendered from the fixed fleet (src/fixtures.rs: real demo
//! scrapes, one Kafka node with an open breaker, one node down) on
//! ratatui's `TestBackend`, at 80x24 and 160x48, checked with insta
//! snapshots (src/ui/snapshots/). A changed screen fails the test; to
//! accept a deliberate change run with `INSTA_UPDATE=always` and review
//! the diff. CI (`CI` set) never writes snapshots.

use insta::assert_snapshot;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;
use ratatui::Terminal;

use super::keymap::{footer, KEYMAP};
use super::*;
use crate::fixtures;

fn app() -> App {
    let mut a = App::new(fixtures::config(), 3, Theme::color(), "karpoosheh".into());
    a.local_time = false; // fixed snapshots on any machine's time zone
    a.window = 0; // 1m: the fixtures span 10 s
    a
}

fn state_for(app: &App) -> State {
    fixtures::fleet().snapshot(app.params(), 10.5, fixtures::wall(10.5))
}

fn render(app: &App, state: Option<&State>, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| draw(f, app, state)).unwrap();
    t
}

fn screen(app: &App, w: u16, h: u16) -> String {
    let s = state_for(app);
    render(app, Some(&s), w, h).backend().to_string()
}

fn press(app: &mut App, code: KeyCode) -> bool {
    let s = state_for(app);
    app.key(KeyEvent::new(code, KeyModifiers::NONE), Some(&s))
}

fn view(v: View) -> App {
    let mut a = app();
    a.view = v;
    a
}

#[test]
fn overview_80x24() {
    let text = screen(&app(), 80, 24);
    assert!(
        text.contains(" backlog by lane  urgent 320  normal 18,380  bulk 6,000 "),
        "the Kafka node's backlog: {text}"
    );
    assert_snapshot!(text);
}

#[test]
fn no_backlog_line_where_no_node_reports_one() {
    let mut a = app();
    assert!(press(&mut a, KeyCode::Right));
    assert_eq!(a.scope, Some(0), "10.0.0.1:9464, not on Kafka");
    let text = screen(&a, 80, 24);
    assert!(text.contains(" consumer lag "), "{text}");
    assert!(!text.contains("backlog"), "{text}");
}

#[test]
fn overview_160x48() {
    assert_snapshot!(screen(&app(), 160, 48));
}

#[test]
fn nodes_80x24() {
    assert_snapshot!(screen(&view(View::Nodes), 80, 24));
}

#[test]
fn nodes_160x48() {
    assert_snapshot!(screen(&view(View::Nodes), 160, 48));
}

#[test]
fn a_node_whose_source_finished_shows_done() {
    let a = view(View::Nodes);
    let mut f = fixtures::fleet();
    let text = format!(
        "{}\n# TYPE karpoosheh_source_finished gauge\nkarpoosheh_source_finished 1\n",
        fixtures::T4
    );
    f.record(0, 11.0, fixtures::wall(11.0), Ok(text));
    let s = f.snapshot(a.params(), 11.1, fixtures::wall(11.1));
    let screen = render(&a, Some(&s), 160, 48).backend().to_string();
    let row = screen
        .lines()
        .find(|l| l.contains("10.0.0.1:9464") && !l.contains("CRIT"))
        .expect("node 1's row");
    assert!(row.contains(" done "), "{row}");
    assert!(!row.contains("unready"), "{row}");
    assert!(
        screen.contains("source finished (no traffic left)"),
        "the selected node's details say why: {screen}"
    );
}

#[test]
fn nodes_down_node_selected_80x24() {
    let mut a = view(View::Nodes);
    press(&mut a, KeyCode::Char('j'));
    press(&mut a, KeyCode::Char('j'));
    let text = screen(&a, 80, 24);
    assert!(
        text.contains("no answer for 10s (last 08:00:00): connection refused"),
        "{text}"
    );
    assert_snapshot!(text);
}

/// The Agencies table's header line.
fn agencies_header(text: &str) -> &str {
    text.lines()
        .find(|l| l.contains("agency ") && l.contains("stored/s"))
        .expect("the header")
}

#[test]
fn agencies_80x24() {
    let text = screen(&view(View::Agencies), 80, 24);
    let head = agencies_header(&text);
    for column in ["rej %", "notified/s", "confirmed/s", "served/s", "served %"] {
        assert!(head.contains(column), "{column} at 80 columns: {head}");
    }
    for column in ["rej/s", "not served/s", "lag", "reasons"] {
        assert!(!head.contains(column), "{column} only when wider: {head}");
    }
    assert_snapshot!(text);
}

#[test]
fn agencies_160x48() {
    let text = screen(&view(View::Agencies), 160, 48);
    let head = agencies_header(&text);
    for column in ["rej/s", "notified/s", "not served/s", "lag", "top reasons"] {
        assert!(head.contains(column), "{column} when wide: {head}");
    }
    let insurance = text
        .lines()
        .find(|l| l.contains("│insurance "))
        .expect("insurance's row");
    assert!(
        insurance.contains(" 6.00 "),
        "60 of its notices not served in 10 s: {insurance}"
    );
    assert_snapshot!(text);
}

#[test]
fn agencies_at_120_columns_leave_reasons_too_narrow_to_the_detail() {
    let text = screen(&view(View::Agencies), 120, 36);
    let head = agencies_header(&text);
    assert!(
        head.contains("not served/s") && head.contains("lag"),
        "{head}"
    );
    assert!(!head.contains("reasons"), "{head}");
    assert!(
        text.contains("rejections by reason"),
        "in the detail: {text}"
    );
}

#[test]
fn agencies_sort_by_notifications_sent() {
    let mut a = view(View::Agencies);
    for _ in 0..3 {
        press(&mut a, KeyCode::Char('s')); // stored/s → agency → rej % → notified/s
    }
    let s = state_for(&a);
    let order = views::agency_order(&a, &s);
    let notified: Vec<f64> = order.iter().map(|&i| s.agencies[i].notified).collect();
    assert!(
        notified.windows(2).all(|w| w[0] >= w[1]) && notified[0] > notified[7],
        "most notified first: {notified:?}"
    );
    assert_eq!(s.agencies[order[0]].name, "tax");
    assert!(screen(&a, 80, 24).contains("notified/s▼"));
}

#[test]
fn agencies_sorted_by_rejection_and_filtered_80x24() {
    let mut a = view(View::Agencies);
    for _ in 0..2 {
        press(&mut a, KeyCode::Char('s')); // stored/s → agency → rejected %
    }
    let s = state_for(&a);
    let order: Vec<&str> = views::agency_order(&a, &s)
        .iter()
        .map(|&i| s.agencies[i].name.as_str())
        .collect();
    assert_eq!(
        order[0], "municipality",
        "worst rejection share first: {order:?}"
    );
    press(&mut a, KeyCode::Char('/'));
    for c in "ci".chars() {
        press(&mut a, KeyCode::Char(c));
    }
    press(&mut a, KeyCode::Enter);
    let text = screen(&a, 80, 24);
    assert!(
        text.contains("municipality") && text.contains("judiciary") && !text.contains(" tax "),
        "{text}"
    );
    assert_snapshot!(text);
}

#[test]
fn agency_detail_80x24() {
    let mut a = view(View::Agencies);
    press(&mut a, KeyCode::Enter);
    assert!(a.detail);
    assert_snapshot!(screen(&a, 80, 24));
    press(&mut a, KeyCode::Esc);
    assert!(!a.detail && a.exit.is_none(), "Esc closes the detail first");
}

#[test]
fn channels_80x24() {
    assert_snapshot!(screen(&view(View::Channels), 80, 24));
}

#[test]
fn channels_160x48() {
    assert_snapshot!(screen(&view(View::Channels), 160, 48));
}

#[test]
fn help_80x24() {
    let mut a = app();
    press(&mut a, KeyCode::Char('?'));
    assert_snapshot!(screen(&a, 80, 24));
}

#[test]
fn help_160x48() {
    let mut a = app();
    press(&mut a, KeyCode::Char('?'));
    assert_snapshot!(screen(&a, 160, 48));
}

#[test]
fn one_node_scope_80x24() {
    let mut a = app();
    assert!(
        press(&mut a, KeyCode::Right),
        "a new scope asks the collector"
    );
    assert!(press(&mut a, KeyCode::Right));
    assert_eq!(a.scope, Some(1));
    let text = screen(&a, 80, 24);
    assert!(text.contains("scope 10.0.0.2:9464"), "{text}");
    assert_snapshot!(text);
}

#[test]
fn too_small_says_so() {
    let text = screen(&app(), 60, 15);
    assert!(
        text.contains("needs at least 70x20; this terminal is 60x15."),
        "{text}"
    );
    assert_snapshot!(text);
}

#[test]
fn before_the_first_scrape_80x24() {
    let text = render(&app(), None, 80, 24).backend().to_string();
    assert!(
        text.contains("Waiting for the first answers from 3 node(s)"),
        "{text}"
    );
    assert_snapshot!(text);
}

#[test]
fn paused_80x24() {
    let mut a = app();
    assert!(press(&mut a, KeyCode::Char('p')));
    assert_eq!(a.paused, Some(10.5));
    let text = screen(&a, 80, 24);
    assert!(text.contains("PAUSED"), "{text}");
    assert!(press(&mut a, KeyCode::Char('p')));
    assert_eq!(a.paused, None);
}

fn all_cells(buf: &Buffer) -> impl Iterator<Item = &ratatui::buffer::Cell> {
    buf.content.iter()
}

#[test]
fn no_color_renders_without_a_single_colour() {
    for v in View::ALL {
        let mut a = view(v);
        a.theme = Theme::plain();
        let s = state_for(&a);
        let t = render(&a, Some(&s), 160, 48);
        for c in all_cells(t.backend().buffer()) {
            assert_eq!((c.fg, c.bg), (Color::Reset, Color::Reset), "{v:?}: {c:?}");
        }
    }
}

#[test]
fn states_are_coloured_and_bold_without_colour() {
    let find = |a: &App, needle: &str| {
        let s = state_for(a);
        let t = render(a, Some(&s), 80, 24);
        let buf = t.backend().buffer().clone();
        let w = buf.area.width as usize;
        let text: Vec<String> = buf.content.iter().map(|c| c.symbol().to_owned()).collect();
        let flat = text.concat();
        let pos = flat
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} not on screen"));
        // Count cells up to the byte offset (symbols here are one char each).
        let idx = flat[..pos].chars().count();
        let _ = w;
        buf.content[idx].clone()
    };
    let a = view(View::Nodes);
    assert_eq!(find(&a, "DOWN").fg, Color::Red);
    let mut p = view(View::Nodes);
    p.theme = Theme::plain();
    let cell = find(&p, "DOWN");
    assert_eq!(cell.fg, Color::Reset);
    assert!(cell.modifier.contains(ratatui::style::Modifier::BOLD));
}

#[test]
fn help_lists_every_key_and_every_threshold() {
    let a = app();
    let text: String = views::help_lines(&a)
        .iter()
        .map(|l| {
            l.spans
                .iter()
                .map(|s| s.content.as_ref())
                .collect::<String>()
                + "\n"
        })
        .collect();
    for b in KEYMAP {
        assert!(text.contains(b.help), "help lacks {:?}", b.help);
        assert!(text.contains(b.label), "help lacks {:?}", b.label);
    }
    assert!(text.contains("20.0%"), "the rejection threshold in force");
    assert!(text.contains("no answer for 10s"));
}

#[test]
fn the_footer_fits_80_columns() {
    let text = render(&app(), None, 80, 24).backend().to_string();
    let last = text.lines().last().unwrap();
    for (keys, word) in footer() {
        assert!(
            last.contains(&format!("{keys} {word}")),
            "{keys} {word} missing from {last}"
        );
    }
}

#[test]
fn keys_move_between_views_and_windows() {
    let mut a = app();
    press(&mut a, KeyCode::Tab);
    assert_eq!(a.view, View::Nodes);
    a.key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT), None);
    assert_eq!(a.view, View::Overview);
    press(&mut a, KeyCode::Char('4'));
    assert_eq!(a.view, View::Channels);
    assert!(press(&mut a, KeyCode::Char('+')));
    assert_eq!(a.params().window, crate::config::WINDOWS[1]);
    for _ in 0..10 {
        press(&mut a, KeyCode::Char('+'));
    }
    assert_eq!(
        a.params().window,
        *crate::config::WINDOWS.last().unwrap(),
        "stops at 6h"
    );
    for _ in 0..10 {
        press(&mut a, KeyCode::Char('-'));
    }
    assert_eq!(a.params().window, crate::config::WINDOWS[0], "stops at 1m");
}

#[test]
fn selection_stays_inside_the_table() {
    let mut a = view(View::Nodes);
    for _ in 0..10 {
        press(&mut a, KeyCode::Down);
    }
    assert_eq!(a.selected[1], 2, "three nodes");
    press(&mut a, KeyCode::Char('g'));
    assert_eq!(a.selected[1], 0);
    press(&mut a, KeyCode::Char('G'));
    assert_eq!(a.selected[1], 2);
}

#[test]
fn enter_on_a_node_opens_its_overview() {
    let mut a = view(View::Nodes);
    press(&mut a, KeyCode::Down);
    assert!(press(&mut a, KeyCode::Enter));
    assert_eq!((a.view, a.scope), (View::Overview, Some(1)));
}

#[test]
fn esc_closes_what_is_open_then_quits() {
    let mut a = app();
    press(&mut a, KeyCode::Char('?'));
    press(&mut a, KeyCode::Esc);
    assert!(!a.help && a.exit.is_none());
    press(&mut a, KeyCode::Esc);
    assert_eq!(a.exit, Some(Exit::Quit));
    let mut a = app();
    press(&mut a, KeyCode::Char('q'));
    assert_eq!(a.exit, Some(Exit::Quit));
    let mut a = app();
    a.key(
        KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
        None,
    );
    assert_eq!(a.exit, Some(Exit::Interrupt));
}

#[test]
fn typing_a_filter_does_not_trigger_keys() {
    let mut a = view(View::Agencies);
    press(&mut a, KeyCode::Char('/'));
    for c in "qs?p".chars() {
        press(&mut a, KeyCode::Char(c));
    }
    assert_eq!((a.exit, a.help, a.paused), (None, false, None));
    assert_eq!(a.filter[2], "qs?p");
    press(&mut a, KeyCode::Esc);
    assert!(!a.editing && a.filter[2].is_empty());
}

// ---- Drill-down (src/drill.rs) ----

mod drill {
    use super::*;
    use crate::drill::{Answer, Inside, Lookup, Query, Rejections, Sample};
    use chrono::{DateTime, Utc};
    use karpoosheh_schemas::{AgencyId, NoticeHistory, ParkedLot, QuarantinedView};
    use karpoosheh_schemas::{Problem, Reason, SourcePosition};

    fn now() -> DateTime<Utc> {
        fixtures::wall(10.5).into()
    }

    fn sample(secs_ago: i64, reason: Reason, field: &str, message: &str, offset: i64) -> Sample {
        Sample {
            at: now() - chrono::Duration::seconds(secs_ago),
            reference: Some(format!("TAX-2027-{offset:05}")),
            problems: vec![Problem::new(reason, Some(field.to_owned()), message)],
            position: SourcePosition::Kafka {
                topic: "karpoosheh.notices.tax".into(),
                partition: (offset % 4) as i32,
                offset,
            },
            node: "10.0.0.1:9464".into(),
        }
    }

    pub(super) fn rejections() -> Answer {
        let mut samples: Vec<Sample> = (0..12)
            .map(|i| {
                sample(
                    i * 7,
                    Reason::BadCheckDigit,
                    "recipient",
                    // As the engine would never write it, masked on arrival.
                    &karpoosheh_schemas::mask_personal(
                        "recipient 0012345679: the check digit does not match",
                    ),
                    41_000 + i,
                )
            })
            .collect();
        samples.insert(
            3,
            sample(
                15,
                Reason::MissingField,
                "title",
                "title is required",
                40_990,
            ),
        );
        Answer::Rejections(Rejections {
            samples,
            asked: 3,
            notes: vec!["10.0.0.3:9464: answered 503: the store is not reachable".into()],
        })
    }

    fn inside() -> Answer {
        Answer::Inside(Inside {
            node: "10.0.0.2:9464".into(),
            parked: vec![ParkedLot {
                agency: AgencyId::parse("customs").unwrap(),
                receipts: 1204,
                oldest_event: Some("accepted".into()),
                oldest_at: Some(now() - chrono::Duration::seconds(192)),
            }],
            quarantined: vec![QuarantinedView {
                id: 1,
                at: now() - chrono::Duration::seconds(3600),
                kind: "outbox_receipt".into(),
                key: "7340032017403904".into(),
                error: "the stored record is damaged: expected value at line 1 column 1".into(),
            }],
        })
    }

    fn lookup() -> Answer {
        Answer::Lookup(Lookup {
            history: NoticeHistory {
            tracking_code: "07FJ-CPM0-00C0-HQ".into(),
            agency: "tax".into(),
            reference: "TAX-2027-00017".into(),
            recipient: "******5679".into(),
            kind: "official_notice".into(),
            accepted_at: "2027-01-15T07:40:00+00:00".into(),
            expires_at: "2027-04-15T07:40:00+00:00".into(),
            state: "served".into(),
            history: vec![
                "legal outcome   SERVED (art. 29) at 2027-01-15 07:58:02 UTC".into(),
                "round 1           2027-01-15 07:40:01 UTC  to recipient       sent by SMS (1 attempt(s))".into(),
                "round 2           2027-01-15 07:50:01 UTC  to recipient       sent by e-mail (1 attempt(s))".into(),
                "confirmed       2027-01-15 07:55:40 UTC  (1 of 2)".into(),
                "confirmed       2027-01-15 07:58:02 UTC  (2 of 2)".into(),
            ],
            chain: vec![
                "event   1       accepted                   2027-01-15T07:40:00Z  xH3k…".into(),
                "event   2       notification_sent          2027-01-15T07:40:01Z  9aQp…".into(),
                "evidence chain  intact: 2 events, head 9aQp…".into(),
            ],
            },
            node: "10.0.0.1:9464".into(),
        })
    }

    fn with(query: Query, asked: &str, answer: Option<Result<Answer, String>>) -> App {
        let mut a = app();
        a.drill = Some(Drill {
            query,
            asked: asked.into(),
            generation: 1,
            answer,
            selected: 0,
        });
        a
    }

    fn tax() -> Query {
        Query::Rejections {
            agency: "tax".into(),
        }
    }

    #[test]
    fn rejections_80x24() {
        let a = with(tax(), "all nodes", Some(Ok(rejections())));
        assert_snapshot!(screen(&a, 80, 24));
    }

    #[test]
    fn rejections_160x48() {
        let mut a = with(tax(), "all nodes", Some(Ok(rejections())));
        a.drill.as_mut().unwrap().selected = 3;
        assert_snapshot!(screen(&a, 160, 48));
    }

    #[test]
    fn inside_a_node_80x24() {
        let a = with(
            Query::Inside { node: 1 },
            "10.0.0.2:9464",
            Some(Ok(inside())),
        );
        assert_snapshot!(screen(&a, 80, 24));
    }

    #[test]
    fn lookup_160x48() {
        let q = Query::Lookup {
            code: "07FJ-CPM0-00C0-HQ".into(),
        };
        let a = with(q, "all nodes", Some(Ok(lookup())));
        assert_snapshot!(screen(&a, 160, 48));
    }

    #[test]
    fn asking_and_failing_say_so() {
        let a = with(tax(), "all nodes", None);
        assert!(screen(&a, 80, 24).contains("Asking the operator endpoint"));
        let e = crate::drill::endpoints(&a.config.operator, &[], None).unwrap_err();
        let a = with(tax(), "all nodes", Some(Err(e)));
        let text = screen(&a, 80, 24);
        assert!(text.contains("no operator endpoints configured"), "{text}");
    }

    #[test]
    fn the_prompt_80x24() {
        let mut a = view(View::Nodes);
        press(&mut a, KeyCode::Char('t'));
        for c in "07fj-cpm0".chars() {
            press(&mut a, KeyCode::Char(c));
        }
        assert_snapshot!(screen(&a, 80, 24));
    }

    #[test]
    fn r_on_an_agency_asks_for_its_rejections_and_esc_goes_back() {
        let mut a = view(View::Agencies);
        let s = state_for(&a);
        let selected = s.agencies[crate::ui::views::agency_order(&a, &s)[0]]
            .name
            .clone();
        press(&mut a, KeyCode::Char('r'));
        let want = Query::Rejections { agency: selected };
        assert_eq!(a.fetch, Some((1, want.clone())));
        assert_eq!(a.drill.as_ref().unwrap().query, want);
        assert_eq!(a.drill.as_ref().unwrap().asked, "all nodes");
        // An answer for an older drill-down is dropped; its own is taken.
        assert!(!a.answered(0, Ok(rejections())));
        assert!(a.answered(1, Ok(rejections())));
        press(&mut a, KeyCode::Down);
        press(&mut a, KeyCode::Down);
        assert_eq!(a.drill.as_ref().unwrap().selected, 2);
        press(&mut a, KeyCode::Char('G'));
        assert_eq!(a.drill.as_ref().unwrap().selected, 12);
        // Keys of the view underneath do nothing while it is covered.
        press(&mut a, KeyCode::Char('s'));
        assert_eq!(a.sort[2], (0, false));
        // r reads it again, as a new generation.
        a.fetch = None;
        press(&mut a, KeyCode::Char('r'));
        assert_eq!(a.fetch.as_ref().map(|f| f.0), Some(2));
        assert_eq!(a.drill.as_ref().unwrap().answer, None);
        press(&mut a, KeyCode::Esc);
        assert!(a.drill.is_none() && a.exit.is_none());
        assert_eq!(a.view, View::Agencies);
    }

    #[test]
    fn help_over_a_drill_down_takes_its_own_keys_only() {
        let mut a = with(tax(), "all nodes", Some(Ok(rejections())));
        a.view = View::Agencies;
        press(&mut a, KeyCode::Char('?'));
        assert!(a.help);
        for c in "s/ri".chars() {
            press(&mut a, KeyCode::Char(c));
        }
        press(&mut a, KeyCode::Enter);
        assert!(!a.editing && a.fetch.is_none() && a.sort[2] == (0, false));
        assert_eq!(a.drill.as_ref().unwrap().query, tax());
        press(&mut a, KeyCode::Esc);
        assert!(
            !a.help && a.drill.is_some(),
            "Esc closes help, then the drill-down"
        );
        press(&mut a, KeyCode::Esc);
        assert!(a.drill.is_none() && a.exit.is_none());
    }

    #[test]
    fn a_view_key_leaves_the_drill_down_for_that_view() {
        let mut a = with(tax(), "all nodes", Some(Ok(rejections())));
        press(&mut a, KeyCode::Char('4'));
        assert!(a.drill.is_none());
        assert_eq!(a.view, View::Channels);
    }

    #[test]
    fn i_on_a_node_asks_inside_it() {
        let mut a = view(View::Nodes);
        press(&mut a, KeyCode::Down);
        let s = state_for(&a);
        let node = crate::ui::views::node_order(&a, &s)[1];
        press(&mut a, KeyCode::Char('i'));
        assert_eq!(a.fetch, Some((1, Query::Inside { node })));
        assert_eq!(a.drill.as_ref().unwrap().asked, s.nodes[node].name);
    }

    #[test]
    fn a_tracking_code_typed_is_looked_up_and_typing_triggers_no_key() {
        let mut a = app();
        press(&mut a, KeyCode::Char('t'));
        assert_eq!(a.prompt.as_deref(), Some(""));
        for c in "07fj-cpm0-00c0-hq q?".chars() {
            press(&mut a, KeyCode::Char(c));
        }
        assert_eq!((a.exit, a.help), (None, false));
        assert_eq!(a.prompt.as_deref(), Some("07FJ-CPM0-00C0-HQQ"));
        press(&mut a, KeyCode::Backspace);
        press(&mut a, KeyCode::Enter);
        assert!(a.prompt.is_none());
        let want = Query::Lookup {
            code: "07FJ-CPM0-00C0-HQ".into(),
        };
        assert_eq!(a.fetch, Some((1, want)));
        // Esc on an empty prompt asks nothing.
        let mut a = app();
        press(&mut a, KeyCode::Char('t'));
        press(&mut a, KeyCode::Esc);
        assert!(a.prompt.is_none() && a.fetch.is_none() && a.exit.is_none());
    }

    #[test]
    fn nothing_on_screen_carries_a_whole_national_id() {
        for (q, answer) in [(tax(), rejections()), (Query::Inside { node: 1 }, inside())] {
            let a = with(q, "all nodes", Some(Ok(answer)));
            for (w, h) in [(80, 24), (160, 48)] {
                let text = screen(&a, w, h);
                assert!(!text.contains("0012345679"), "{text}");
            }
        }
    }
}

#[test]
fn an_agency_over_its_daily_quota_is_flagged_in_the_list_and_its_detail() {
    let mut a = view(View::Agencies);
    let mut s = state_for(&a);
    let i = s.agencies.iter().position(|x| x.name == "tax").unwrap();
    s.agencies[i]
        .reasons
        .insert(0, ("quota_exceeded".into(), 1_234.0));
    let text = render(&a, Some(&s), 80, 24).backend().to_string();
    let line = text.lines().find(|l| l.contains("tax")).unwrap();
    assert!(line.contains("tax ⚑"), "{text}");
    // utilities is flagged too: node 2 defers its bulk lane (below).
    for other in ["social-security", "judiciary"] {
        let line = text.lines().find(|l| l.contains(other)).unwrap();
        assert!(
            !line.contains('⚑'),
            "only the agencies over their quota: {text}"
        );
    }
    a.key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE), Some(&s));
    let order = views::agency_order(&a, &s);
    a.selected[2] = order.iter().position(|&k| k == i).unwrap();
    let text = render(&a, Some(&s), 80, 30).backend().to_string();
    assert!(
        text.contains("over its daily quota: 1,234 records refused quota_exceeded"),
        "{text}"
    );
}

#[test]
fn an_agency_deferred_to_midnight_is_flagged_and_its_pace_shown() {
    // Node 2 reports utilities' two bulk partitions deferred and its
    // rounds put off to its pace (fixtures).
    let mut a = view(View::Agencies);
    let s = state_for(&a);
    let i = s
        .agencies
        .iter()
        .position(|x| x.name == "utilities")
        .unwrap();
    assert_eq!(s.agencies[i].deferred, Some(2.0));
    assert!(s.agencies[i].paced > 0.0, "{:?}", s.agencies[i]);
    let tax = s.agencies.iter().find(|x| x.name == "tax").unwrap();
    assert_eq!((tax.deferred, tax.paced), (Some(0.0), 0.0));
    let text = render(&a, Some(&s), 80, 24).backend().to_string();
    let line = text.lines().find(|l| l.contains("utilities")).unwrap();
    assert!(line.contains("utilities ⚑"), "{text}");
    let line = text.lines().find(|l| l.contains("tax")).unwrap();
    assert!(!line.contains('⚑'), "{text}");
    // Wide, the paced rounds have a column.
    let text = render(&a, Some(&s), 160, 48).backend().to_string();
    assert!(text.contains("paced/s"), "{text}");
    a.key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE), Some(&s));
    let order = views::agency_order(&a, &s);
    a.selected[2] = order.iter().position(|&k| k == i).unwrap();
    let text = render(&a, Some(&s), 100, 30).backend().to_string();
    assert!(
        text.contains("2 bulk partitions left unread until Tehran midnight"),
        "{text}"
    );
    assert!(text.contains("over its pace"), "{text}");
}
