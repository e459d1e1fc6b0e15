//! Text and request-body templates with `{placeholder}` fields.
//!
//! A `{` not followed by a known-looking `name}` is literal, so JSON
//! templates need no escaping: `{"to":"{to}"}` has one placeholder.
//! Unknown placeholders are refused when the template is parsed (at
//! start-up), never discovered at send time.

use std::fmt::Write as _;

use super::Notification;

/// How placeholder values are escaped for the place they land in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Plain text (SMS text, e-mail subject and body).
    None,
    /// Inside a JSON string literal: `"` `\` and control characters escaped.
    JsonString,
    /// `application/x-www-form-urlencoded` / URL query: percent-encoded.
    Url,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Field(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown placeholder {{{name}}}; known: {known}")]
pub struct TemplateError {
    pub name: String,
    pub known: String,
}

impl Template {
    /// Parses `text`, accepting only the placeholders in `known`.
    pub fn parse(text: &str, known: &[&str]) -> Result<Template, TemplateError> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('{') {
            lit.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let name_len = after
                .bytes()
                .take_while(|b| b.is_ascii_lowercase() || *b == b'_')
                .count();
            if name_len > 0 && after.as_bytes().get(name_len) == Some(&b'}') {
                let name = &after[..name_len];
                if !known.contains(&name) {
                    return Err(TemplateError {
                        name: name.to_owned(),
                        known: known
                            .iter()
                            .map(|k| format!("{{{k}}}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                    });
                }
                if !lit.is_empty() {
                    pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                pieces.push(Piece::Field(name.to_owned()));
                rest = &after[name_len + 1..];
            } else {
                lit.push('{');
                rest = after;
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Ok(Template { pieces })
    }

    /// Renders with `value(name)` for each placeholder, escaped by `esc`.
    pub fn render(&self, esc: Escape, value: impl Fn(&str) -> String) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Lit(s) => out.push_str(s),
                Piece::Field(f) => escape_into(&mut out, &value(f), esc),
            }
        }
        out
    }
}

pub fn escape_into(out: &mut String, v: &str, esc: Escape) {
    match esc {
        Escape::None => out.push_str(v),
        Escape::JsonString => {
            for c in v.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    // U+2028/2029 break JavaScript consumers of "JSON".
                    c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                        let _ = write!(out, "\\u{:04x}", c as u32);
                    }
                    c => out.push(c),
                }
            }
        }
        Escape::Url => {
            for b in v.bytes() {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                    out.push(b as char);
                } else {
                    let _ = write!(out, "%{b:02X}");
                }
            }
        }
    }
}

/// Placeholders of the notification text (SMS text, e-mail subject/body).
pub const TEXT_FIELDS: &[&str] = &[
    "agency",
    "tracking_code",
    "round",
    "rounds",
    "title",
    "for_representative",
    "respond_by",
];

/// Placeholders of HTTP request bodies and URLs.
pub const BODY_FIELDS: &[&str] = &[
    "to",
    "from",
    "text",
    "idempotency_key",
    "tracking_code",
    "round",
    "agency",
    "title",
    "representative",
];

/// Longest title put into a notification text: keeps an SMS to two or
/// three segments whatever the notice's title.
pub const TEXT_TITLE_CHARS: usize = 40;

/// The value of a text placeholder for `n`.
pub fn text_value(n: &Notification, field: &str) -> String {
    match field {
        "agency" => n.agency.to_string(),
        "tracking_code" => n.tracking_code.to_string(),
        "round" => n.round.to_string(),
        "rounds" => "3".to_owned(),
        "title" => {
            let mut t: String = n.title.chars().take(TEXT_TITLE_CHARS).collect();
            if n.title.chars().count() > TEXT_TITLE_CHARS {
                t.push('…');
            }
            t
        }
        "for_representative" => {
            if n.to_representative {
                " (به عنوان نماینده)".to_owned()
            } else {
                String::new()
            }
        }
        // A reminder's deadline, as people in Iran read a date: the
        // Solar Hijri calendar, Tehran time (empty in a round's text).
        "respond_by" => n.reminder.map(tehran_solar_hijri).unwrap_or_default(),
        _ => String::new(),
    }
}

/// `t` in Tehran (UTC+03:30; no summer time since 2022) on the Solar
/// Hijri calendar: `1405/09/16 14:30`.
pub fn tehran_solar_hijri(t: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::{Datelike, Timelike};
    let local = t + chrono::Duration::seconds(karpoosheh_schemas::TEHRAN_UTC_OFFSET_SECS.into());
    let (y, m, d) =
        karpoosheh_schemas::solar_hijri(local.year().into(), local.month(), local.day());
    format!(
        "{y}/{m:02}/{d:02} {:02}:{:02}",
        local.hour(),
        local.minute()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_braces_are_literal_and_placeholders_are_found() {
        let t = Template::parse(r#"{"to":"{to}","n":{round},"x":{}}"#, BODY_FIELDS).unwrap();
        let out = t.render(Escape::JsonString, |f| match f {
            "to" => "09121234567".into(),
            "round" => "2".into(),
            _ => unreachable!(),
        });
        assert_eq!(out, r#"{"to":"09121234567","n":2,"x":{}}"#);
    }

    #[test]
    fn dates_are_the_solar_hijri_calendar_in_tehran() {
        // The calendar itself is checked against Python's jdatetime in
        // karpoosheh_schemas::solar_hijri; here, Tehran's offset.
        use chrono::TimeZone;
        // 20:45 UTC on 20 March is 00:15 on Nowruz in Tehran.
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 3, 20, 20, 45, 0)
            .unwrap();
        assert_eq!(tehran_solar_hijri(t), "1405/01/01 00:15");
    }

    #[test]
    fn unknown_placeholder_is_refused_with_its_name() {
        let e = Template::parse("hello {recipient}", BODY_FIELDS).unwrap_err();
        assert_eq!(e.name, "recipient");
        assert!(e.to_string().contains("{to}"), "{e}");
    }

    #[test]
    fn escaping_json_and_url() {
        let v = "ابلاغ \"فوری\" \\ a\nb\u{1}&=?";
        let mut j = String::new();
        escape_into(&mut j, v, Escape::JsonString);
        let parsed: String = serde_json::from_str(&format!("\"{j}\"")).unwrap();
        assert_eq!(parsed, v, "JSON escaping round-trips");
        let mut u = String::new();
        escape_into(&mut u, "a b&c=ا", Escape::Url);
        assert_eq!(u, "a%20b%26c%3D%D8%A7");
    }
}
