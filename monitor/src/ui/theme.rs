//! One theme on the 16 ANSI colours, so the terminal's own palette (dark
//! or light) decides the actual shades. Text stays in the terminal's
//! default colour; colour only marks state. Bright colours and white or
//! black foregrounds are never used: on a light background they vanish.
//! Without colour (`NO_COLOR`, `--color never`) the same distinctions are
//! made with bold and reverse video.

use ratatui::style::{Color, Modifier, Style};

use crate::config::ColorMode;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Theme {
    pub text: Style,
    /// Labels, units, hints.
    pub dim: Style,
    pub title: Style,
    pub ok: Style,
    pub warn: Style,
    pub crit: Style,
    pub accent: Style,
    /// The selected table row and the current tab.
    pub selected: Style,
    pub header: Style,
    /// Chart lines, in legend order.
    pub series: [Style; 3],
    pub spark: Style,
}

impl Theme {
    pub fn color() -> Theme {
        Theme {
            text: Style::new(),
            dim: Style::new().fg(Color::Blue),
            title: Style::new().add_modifier(Modifier::BOLD),
            ok: Style::new().fg(Color::Green),
            warn: Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            crit: Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            accent: Style::new().fg(Color::Cyan),
            selected: Style::new().add_modifier(Modifier::REVERSED),
            header: Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
            series: [
                Style::new().fg(Color::Cyan),
                Style::new().fg(Color::Green),
                Style::new().fg(Color::Magenta),
            ],
            spark: Style::new().fg(Color::Cyan),
        }
    }

    /// No colour at all: bold for what matters, reverse for selection.
    pub fn plain() -> Theme {
        Theme {
            text: Style::new(),
            dim: Style::new(),
            title: Style::new().add_modifier(Modifier::BOLD),
            ok: Style::new(),
            warn: Style::new().add_modifier(Modifier::BOLD),
            crit: Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED),
            accent: Style::new(),
            selected: Style::new().add_modifier(Modifier::REVERSED),
            header: Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
            series: [Style::new(), Style::new(), Style::new()],
            spark: Style::new(),
        }
    }

    /// `auto` honours `NO_COLOR` (set and not empty, per no-color.org).
    pub fn for_mode(mode: ColorMode, no_color_env: Option<&str>) -> Theme {
        match mode {
            ColorMode::Always => Theme::color(),
            ColorMode::Never => Theme::plain(),
            ColorMode::Auto if no_color_env.is_some_and(|v| !v.is_empty()) => Theme::plain(),
            ColorMode::Auto => Theme::color(),
        }
    }

    /// Every style this theme uses.
    #[cfg(test)]
    pub fn styles(&self) -> Vec<Style> {
        let mut v = vec![
            self.text,
            self.dim,
            self.title,
            self.ok,
            self.warn,
            self.crit,
            self.accent,
            self.selected,
            self.header,
            self.spark,
        ];
        v.extend(self.series);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn colours(t: &Theme) -> Vec<Color> {
        t.styles()
            .iter()
            .flat_map(|s| [s.fg, s.bg])
            .flatten()
            .collect()
    }

    #[test]
    fn no_color_means_no_colour() {
        let t = Theme::for_mode(ColorMode::Auto, Some("1"));
        assert_eq!(t, Theme::plain());
        assert!(colours(&t).is_empty());
        assert_eq!(
            Theme::for_mode(ColorMode::Auto, Some("")),
            Theme::color(),
            "empty NO_COLOR is unset"
        );
        assert_eq!(
            Theme::for_mode(ColorMode::Always, Some("1")),
            Theme::color()
        );
    }

    #[test]
    fn only_the_eight_normal_colours_as_foreground_never_backgrounds() {
        let allowed = [
            Color::Red,
            Color::Green,
            Color::Yellow,
            Color::Blue,
            Color::Magenta,
            Color::Cyan,
        ];
        let t = Theme::color();
        for s in t.styles() {
            assert_eq!(
                s.bg, None,
                "a background would fight a light or dark terminal"
            );
            if let Some(fg) = s.fg {
                assert!(
                    allowed.contains(&fg),
                    "{fg:?} is unreadable on some backgrounds"
                );
            }
        }
    }

    #[test]
    fn without_colour_states_still_differ() {
        let t = Theme::plain();
        assert_ne!(t.crit, t.text);
        assert_ne!(t.warn, t.text);
        assert_ne!(t.selected, t.text);
    }
}
