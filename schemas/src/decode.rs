//! Decoding and validating untrusted notice envelopes.
//!
//! [`decode_notice`] returns a validated [`Notice`] or a [`Rejection`] that
//! lists every problem at once. The fast path deserialises straight into a
//! borrowed struct (no copies of unescaped text). Only when that fails on a
//! type or field error does the slow path re-read the message as a
//! `serde_json::Value`, field by field, so that a wrong type in one field
//! does not hide the problems in the others. Bad input is a few percent of
//! traffic; it may be slower, never wrong.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::ids::MailboxKind;
use crate::ids::{parse_recipient, truncate_for_message, AgencyId};
use crate::limits::Limits;
use crate::messages::MailboxProfile;
use crate::notice::{Attachment, LifeEvent, Notice, NoticeKind, MAX_ACCESS_LEVEL, SCHEMA_VERSION};
use crate::reason::{Problem, Reason};

/// Why a notice was not accepted, with what could be read of who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The `agency` field as sent, if it was a string (it may be invalid).
    pub agency: Option<String>,
    /// The `reference` field as sent, if it was a string.
    pub reference: Option<String>,
    /// Every problem found; never empty.
    pub problems: Vec<Problem>,
}

impl Rejection {
    fn single(reason: Reason, message: impl Into<String>) -> Self {
        Rejection {
            agency: None,
            reference: None,
            problems: vec![Problem::new(reason, None, message)],
        }
    }

    /// True when the payload could not be read as an envelope at all.
    pub fn is_undecodable(&self) -> bool {
        self.problems.iter().any(|p| p.reason.is_undecodable())
    }

    /// The first problem's reason: the one counted in metrics.
    pub fn primary_reason(&self) -> Reason {
        self.problems[0].reason
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WireAttachment<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    media_type: Option<Cow<'a, str>>,
    size: Option<u64>,
    #[serde(borrow)]
    sha256: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WireNotice<'a> {
    schema_version: Option<u64>,
    #[serde(borrow)]
    agency: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reference: Option<Cow<'a, str>>,
    #[serde(borrow)]
    recipient: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    title: Option<Cow<'a, str>>,
    #[serde(borrow)]
    body: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "attachment_objects")]
    attachments: Option<Vec<WireAttachment<'a>>>,
    min_access_level: Option<u64>,
    #[serde(borrow)]
    life_event: Option<Cow<'a, str>>,
    #[serde(borrow)]
    expires_at: Option<Cow<'a, str>>,
    #[serde(borrow)]
    sent_at: Option<Cow<'a, str>>,
    #[serde(borrow)]
    batch_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    deliver_at: Option<Cow<'a, str>>,
    #[serde(borrow)]
    respond_by: Option<Cow<'a, str>>,
}

/// Accepts only a JSON object. serde's derived struct impls also read a
/// struct from an array of its fields in declaration order, which would let
/// `[1, "tax", ...]` through as a notice; the contract says objects only.
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
            .map(ObjectOnly)
    }
}

fn attachment_objects<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<WireAttachment<'a>>>, D::Error> {
    let list = Option::<Vec<ObjectOnly<WireAttachment<'a>>>>::deserialize(d)?;
    Ok(list.map(|l| l.into_iter().map(|a| a.0).collect()))
}

/// A decoded envelope: the notice, and how the agency asked it to be
/// delivered. `deliver_at` is not part of the notice's content (nor of
/// its content hash): it is kept in the notice's delivery record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub notice: Notice,
    /// When the notice is to land in the mailbox (a scheduled send); `None`
    /// for at once. A time not after `now` also means at once.
    pub deliver_at: Option<DateTime<Utc>>,
    /// The recipient's deadline to respond: a reminder goes before it to
    /// one who has neither opened nor confirmed the notice.
    pub respond_by: Option<DateTime<Utc>>,
}

/// Decodes and validates one envelope. `now` decides whether the expiry is
/// in the past; pass the engine's clock.
pub fn decode_notice(
    bytes: &[u8],
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<Notice, Rejection> {
    decode_envelope(bytes, limits, now).map(|e| e.notice)
}

/// [`decode_notice`], with the delivery options of the envelope.
pub fn decode_envelope(
    bytes: &[u8],
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<Envelope, Rejection> {
    if bytes.is_empty() || bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Rejection::single(
            Reason::EmptyPayload,
            "the message is empty",
        ));
    }
    if bytes.len() as u64 > limits.max_payload_bytes.0 {
        return Err(Rejection::single(
            Reason::PayloadTooLarge,
            format!(
                "the message has {} bytes; the limit is {}",
                bytes.len(),
                limits.max_payload_bytes
            ),
        ));
    }
    // UTF-8 checked once for the whole message (SIMD), so that the parser
    // reads a &str and does not check each string again, char by char.
    // Every later error is therefore a JSON one.
    let Ok(text) = simdutf8::basic::from_utf8(bytes) else {
        // std's check, for where the UTF-8 stops.
        let at = std::str::from_utf8(bytes)
            .err()
            .map_or(0, |u| u.valid_up_to());
        return Err(Rejection::single(
            Reason::InvalidUtf8,
            format!("the message is not UTF-8 (bad byte at offset {at})"),
        ));
    };
    match serde_json::from_str::<ObjectOnly<WireNotice<'_>>>(text) {
        Ok(ObjectOnly(wire)) => validate(wire, Vec::new(), limits, now),
        Err(e) if e.is_data() => slow_path(text, &e, limits, now),
        Err(e) => Err(malformed(&e)),
    }
}

fn malformed(e: &serde_json::Error) -> Rejection {
    Rejection::single(Reason::MalformedJson, format!("not valid JSON: {e}"))
}

/// Re-reads a message whose fields did not all have the right types,
/// reporting each field's problem separately.
fn slow_path(
    text: &str,
    first_error: &serde_json::Error,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<Envelope, Rejection> {
    use serde_json::Value;
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Err(malformed(&e)),
    };
    let Value::Object(map) = value else {
        return Err(Rejection::single(
            Reason::NotAnObject,
            "a notice must be a JSON object",
        ));
    };
    let mut problems = Vec::new();
    let mut w = WireNotice::default();

    fn string(field: &str, v: Value, problems: &mut Vec<Problem>) -> Option<Cow<'static, str>> {
        match v {
            Value::String(s) => Some(Cow::Owned(s)),
            Value::Null => None,
            other => {
                problems.push(Problem::new(
                    Reason::WrongType,
                    field.to_owned(),
                    format!("{field} must be a string, not {}", json_type(&other)),
                ));
                None
            }
        }
    }
    fn integer(field: &str, v: Value, problems: &mut Vec<Problem>) -> Option<u64> {
        match v {
            Value::Number(n) if n.as_u64().is_some() => n.as_u64(),
            Value::Null => None,
            other => {
                problems.push(Problem::new(
                    Reason::WrongType,
                    field.to_owned(),
                    format!(
                        "{field} must be a non-negative integer, not {}",
                        json_type(&other)
                    ),
                ));
                None
            }
        }
    }

    for (key, v) in map {
        match key.as_str() {
            "schema_version" => w.schema_version = integer("schema_version", v, &mut problems),
            "agency" => w.agency = string("agency", v, &mut problems),
            "reference" => w.reference = string("reference", v, &mut problems),
            "recipient" => w.recipient = string("recipient", v, &mut problems),
            "kind" => w.kind = string("kind", v, &mut problems),
            "title" => w.title = string("title", v, &mut problems),
            "body" => w.body = string("body", v, &mut problems),
            "min_access_level" => {
                w.min_access_level = integer("min_access_level", v, &mut problems)
            }
            "life_event" => w.life_event = string("life_event", v, &mut problems),
            "expires_at" => w.expires_at = string("expires_at", v, &mut problems),
            "sent_at" => w.sent_at = string("sent_at", v, &mut problems),
            "batch_id" => w.batch_id = string("batch_id", v, &mut problems),
            "deliver_at" => w.deliver_at = string("deliver_at", v, &mut problems),
            "respond_by" => w.respond_by = string("respond_by", v, &mut problems),
            "attachments" => match v {
                Value::Null => {}
                Value::Array(items) => {
                    let mut out = Vec::with_capacity(items.len());
                    for (i, item) in items.into_iter().enumerate() {
                        let mut a = WireAttachment::default();
                        match item {
                            Value::Object(m) => {
                                for (k, v) in m {
                                    let f = format!("attachments[{i}].{k}");
                                    match k.as_str() {
                                        "name" => a.name = string(&f, v, &mut problems),
                                        "media_type" => a.media_type = string(&f, v, &mut problems),
                                        "size" => a.size = integer(&f, v, &mut problems),
                                        "sha256" => a.sha256 = string(&f, v, &mut problems),
                                        _ => problems.push(unknown_field(&f)),
                                    }
                                }
                            }
                            other => problems.push(Problem::new(
                                Reason::WrongType,
                                format!("attachments[{i}]"),
                                format!(
                                    "an attachment must be an object, not {}",
                                    json_type(&other)
                                ),
                            )),
                        }
                        out.push(a);
                    }
                    w.attachments = Some(out);
                }
                other => problems.push(Problem::new(
                    Reason::WrongType,
                    "attachments".to_owned(),
                    format!("attachments must be an array, not {}", json_type(&other)),
                )),
            },
            other => problems.push(unknown_field(other)),
        }
    }
    if problems.is_empty() {
        // The typed pass failed for a reason the field walk cannot see:
        // a key given twice, which different JSON readers resolve
        // differently, so it is never accepted.
        let msg = first_error.to_string();
        let reason = if msg.contains("duplicate field") {
            Reason::DuplicateField
        } else {
            Reason::WrongType
        };
        problems.push(Problem::new(reason, None, msg));
    }
    validate(w, problems, limits, now)
}

fn unknown_field(field: &str) -> Problem {
    Problem::new(
        Reason::UnknownField,
        truncate_for_message(field, 64),
        format!("{:?} is not a field of the notice envelope (check the spelling against schemas/json/notice.schema.json)", truncate_for_message(field, 64)),
    )
}

fn json_type(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn missing(field: &str) -> Problem {
    Problem::new(
        Reason::MissingField,
        field.to_owned(),
        format!("{field} is required"),
    )
}

/// Whether `s` holds a control character (Unicode Cc: U+0000-U+001F,
/// U+007F-U+009F), newline, carriage return and tab allowed if asked.
/// Read by bytes, not chars: a body is kilobytes of mostly two-byte
/// Persian letters, and decoding each char cost more than the JSON parse
/// around it. In UTF-8, Cc is the bytes 00-1F and 7F, and C2 80-C2 9F;
/// a chunk of 32 bytes with none of 00-1F, 7F, C2 is skipped whole (the
/// test for that is branch-free, so the compiler vectorises it).
fn has_control_chars(s: &str, allow_newlines: bool) -> bool {
    const CHUNK: usize = 32;
    let b = s.as_bytes();
    let control_at = |i: usize| match b[i] {
        b'\n' | b'\r' | b'\t' => !allow_newlines,
        0x00..=0x1F | 0x7F => true,
        0xC2 => matches!(b.get(i + 1), Some(0x80..=0x9F)),
        _ => false,
    };
    b.chunks(CHUNK).enumerate().any(|(n, chunk)| {
        let suspect = chunk.iter().fold(false, |acc, &c| {
            acc | (c < 0x20) | (c == 0x7F) | (c == 0xC2)
        });
        suspect && (n * CHUNK..n * CHUNK + chunk.len()).any(control_at)
    })
}

fn parse_time(field: &str, s: &str, problems: &mut Vec<Problem>) -> Option<DateTime<Utc>> {
    match DateTime::parse_from_rfc3339(s) {
        // An offset can carry a valid local time out of RFC 3339's years
        // 0000-9999 in UTC; such an instant could not be written back.
        Ok(t) if !(0..=9999).contains(&chrono::Datelike::year(&t.with_timezone(&Utc))) => {
            problems.push(Problem::new(
                Reason::InvalidTimestamp,
                field.to_owned(),
                format!(
                    "{field} {:?} is outside the years 0000-9999 in UTC",
                    truncate_for_message(s, 40)
                ),
            ));
            None
        }
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(e) => {
            problems.push(Problem::new(
                Reason::InvalidTimestamp,
                field.to_owned(),
                format!("{field} {:?} is not an RFC 3339 timestamp with a time zone ({e}), e.g. 2026-11-23T10:00:00+03:30", truncate_for_message(s, 40)),
            ));
            None
        }
    }
}

fn validate(
    w: WireNotice<'_>,
    mut problems: Vec<Problem>,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<Envelope, Rejection> {
    let raw_agency = w.agency.as_deref().map(|s| truncate_for_message(s, 64));
    let raw_reference = w
        .reference
        .as_deref()
        .map(|s| truncate_for_message(s, limits.max_reference_chars));

    match w.schema_version {
        None if !problems
            .iter()
            .any(|p| p.field.as_deref() == Some("schema_version")) =>
        {
            problems.push(missing("schema_version"))
        }
        Some(v) if v != SCHEMA_VERSION as u64 => problems.push(Problem::new(
            Reason::UnsupportedSchemaVersion,
            "schema_version".to_owned(),
            format!("schema_version {v} is not supported; this engine accepts {SCHEMA_VERSION}"),
        )),
        _ => {}
    }

    let already =
        |problems: &Vec<Problem>, f: &str| problems.iter().any(|p| p.field.as_deref() == Some(f));

    let agency = match w.agency.as_deref() {
        None => {
            if !already(&problems, "agency") {
                problems.push(missing("agency"));
            }
            None
        }
        Some(s) => match AgencyId::parse(s) {
            Ok(a) => Some(a),
            Err(msg) => {
                problems.push(Problem::new(
                    Reason::InvalidAgency,
                    "agency".to_owned(),
                    msg,
                ));
                None
            }
        },
    };

    let reference = match w.reference.as_deref() {
        None => {
            if !already(&problems, "reference") {
                problems.push(missing("reference"));
            }
            None
        }
        Some(s) => {
            let n = s.chars().count();
            if s.trim().is_empty() || n > limits.max_reference_chars || has_control_chars(s, false)
            {
                problems.push(Problem::new(
                    Reason::InvalidReference,
                    "reference".to_owned(),
                    format!(
                        "reference must be 1-{} characters without control characters (has {n})",
                        limits.max_reference_chars
                    ),
                ));
                None
            } else {
                Some(s.to_owned())
            }
        }
    };

    let recipient = match w.recipient.as_deref() {
        None => {
            if !already(&problems, "recipient") {
                problems.push(missing("recipient"));
            }
            None
        }
        Some(s) => match parse_recipient(s) {
            Ok(id) => Some(id),
            Err(e) => {
                problems.push(Problem::new(
                    e.reason(),
                    "recipient".to_owned(),
                    format!("recipient: {e}"),
                ));
                None
            }
        },
    };

    let kind = match w.kind.as_deref() {
        None => {
            if !already(&problems, "kind") {
                problems.push(missing("kind"));
            }
            None
        }
        Some(s) => NoticeKind::parse(s).or_else(|| {
            let known: Vec<_> = NoticeKind::ALL.iter().map(|k| k.as_str()).collect();
            problems.push(Problem::new(
                Reason::UnknownKind,
                "kind".to_owned(),
                format!(
                    "kind {:?} is not one of {}",
                    truncate_for_message(s, 40),
                    known.join(", ")
                ),
            ));
            None
        }),
    };

    let title = match w.title.as_deref() {
        None => {
            if !already(&problems, "title") {
                problems.push(missing("title"));
            }
            None
        }
        Some(s) => {
            let n = s.chars().count();
            if s.trim().is_empty() {
                problems.push(Problem::new(
                    Reason::TitleEmpty,
                    "title".to_owned(),
                    "title must not be empty",
                ));
            } else if n > limits.max_title_chars {
                problems.push(Problem::new(
                    Reason::TitleTooLong,
                    "title".to_owned(),
                    format!(
                        "title has {n} characters; the limit is {}",
                        limits.max_title_chars
                    ),
                ));
            } else if has_control_chars(s, false) {
                problems.push(Problem::new(
                    Reason::ControlCharacters,
                    "title".to_owned(),
                    "title must be one line without control characters",
                ));
            }
            Some(s)
        }
    };

    let body = match w.body.as_deref() {
        None => {
            if !already(&problems, "body") {
                problems.push(missing("body"));
            }
            None
        }
        Some(s) => {
            if s.trim().is_empty() {
                problems.push(Problem::new(
                    Reason::BodyEmpty,
                    "body".to_owned(),
                    "body must not be empty",
                ));
            } else if s.len() as u64 > limits.max_body_bytes.0 {
                problems.push(Problem::new(
                    Reason::BodyTooLong,
                    "body".to_owned(),
                    format!(
                        "body has {} bytes; the limit is {}",
                        s.len(),
                        limits.max_body_bytes
                    ),
                ));
            } else if has_control_chars(s, true) {
                problems.push(Problem::new(
                    Reason::ControlCharacters,
                    "body".to_owned(),
                    "body has control characters other than newline and tab",
                ));
            }
            Some(s)
        }
    };

    let mut attachments = Vec::new();
    if let Some(list) = &w.attachments {
        if list.len() > limits.max_attachments {
            problems.push(Problem::new(
                Reason::TooManyAttachments,
                "attachments".to_owned(),
                format!(
                    "{} attachments; the limit is {}",
                    list.len(),
                    limits.max_attachments
                ),
            ));
        }
        let mut total: u64 = 0;
        for (i, a) in list.iter().enumerate() {
            let f = |name: &str| format!("attachments[{i}].{name}");
            let name = match a.name.as_deref() {
                None => {
                    if !already(&problems, &f("name")) {
                        problems.push(missing(&f("name")));
                    }
                    None
                }
                Some(n)
                    if n.trim().is_empty()
                        || n.chars().count() > 255
                        || n.contains(['/', '\\'])
                        || has_control_chars(n, false) =>
                {
                    problems.push(Problem::new(
                        Reason::AttachmentInvalidName,
                        f("name"),
                        "an attachment name must be 1-255 characters, without path separators or control characters",
                    ));
                    None
                }
                Some(n) => Some(n),
            };
            let media_type = match a.media_type.as_deref() {
                None => {
                    if !already(&problems, &f("media_type")) {
                        problems.push(missing(&f("media_type")));
                    }
                    None
                }
                Some(m) if !limits.media_type_allowed(m) => {
                    problems.push(Problem::new(
                        Reason::AttachmentTypeNotAllowed,
                        f("media_type"),
                        format!(
                            "media type {:?} is not allowed; allowed: {}",
                            truncate_for_message(m, 80),
                            limits.allowed_media_types.join(", ")
                        ),
                    ));
                    None
                }
                Some(m) => Some(m),
            };
            let size = match a.size {
                None => {
                    if !already(&problems, &f("size")) {
                        problems.push(missing(&f("size")));
                    }
                    None
                }
                Some(s) if s > limits.max_attachment_bytes.0 => {
                    problems.push(Problem::new(
                        Reason::AttachmentTooLarge,
                        f("size"),
                        format!(
                            "attachment has {s} bytes; the limit is {}",
                            limits.max_attachment_bytes
                        ),
                    ));
                    None
                }
                Some(s) => Some(s),
            };
            total = total.saturating_add(a.size.unwrap_or(0));
            let sha = match a.sha256.as_deref() {
                None => {
                    if !already(&problems, &f("sha256")) {
                        problems.push(missing(&f("sha256")));
                    }
                    None
                }
                Some(h) if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    problems.push(Problem::new(
                        Reason::AttachmentInvalidSha256,
                        f("sha256"),
                        "sha256 must be 64 hexadecimal characters",
                    ));
                    None
                }
                Some(h) => Some(h.to_ascii_lowercase()),
            };
            if let (Some(name), Some(media_type), Some(size), Some(sha256)) =
                (name, media_type, size, sha)
            {
                attachments.push(Attachment {
                    name: name.to_owned(),
                    media_type: media_type.to_owned(),
                    size,
                    sha256,
                });
            }
        }
        if total > limits.max_total_attachment_bytes.0 {
            problems.push(Problem::new(
                Reason::AttachmentsTotalTooLarge,
                "attachments".to_owned(),
                format!(
                    "attachments total {total} bytes; the limit is {}",
                    limits.max_total_attachment_bytes
                ),
            ));
        }
    }

    let min_access_level = match w.min_access_level {
        None => 1,
        Some(l) if (1..=MAX_ACCESS_LEVEL as u64).contains(&l) => l as u8,
        Some(l) => {
            problems.push(Problem::new(
                Reason::InvalidAccessLevel,
                "min_access_level".to_owned(),
                format!("min_access_level {l} is not 1, 2 or 3"),
            ));
            1
        }
    };

    let life_event = match w.life_event.as_deref() {
        None => Some(LifeEvent::Other),
        Some(s) => LifeEvent::parse(s).or_else(|| {
            problems.push(Problem::new(
                Reason::UnknownLifeEvent,
                "life_event".to_owned(),
                format!(
                    "life_event {:?} is not one of the defined life events (see the schema)",
                    truncate_for_message(s, 40)
                ),
            ));
            None
        }),
    };

    let expires_at = match w.expires_at.as_deref() {
        None => {
            if !already(&problems, "expires_at") {
                problems.push(missing("expires_at"));
            }
            None
        }
        Some(s) => parse_time("expires_at", s, &mut problems).and_then(|t| {
            if t <= now {
                problems.push(Problem::new(
                    Reason::ExpiryInPast,
                    "expires_at".to_owned(),
                    format!("expires_at {} is already in the past", t.to_rfc3339()),
                ));
                None
            } else if (t - now)
                .to_std()
                .map(|d| d > limits.max_retention.0)
                .unwrap_or(true)
            {
                problems.push(Problem::new(
                    Reason::ExpiryTooFar,
                    "expires_at".to_owned(),
                    format!("expires_at is more than {} away", limits.max_retention),
                ));
                None
            } else {
                Some(t)
            }
        }),
    };

    let sent_at = match w.sent_at.as_deref() {
        None => {
            if !already(&problems, "sent_at") {
                problems.push(missing("sent_at"));
            }
            None
        }
        Some(s) => parse_time("sent_at", s, &mut problems),
    };

    let batch_id = match w.batch_id.as_deref() {
        None => None,
        Some(b)
            if b.trim().is_empty() || b.chars().count() > 128 || has_control_chars(b, false) =>
        {
            problems.push(Problem::new(
                Reason::InvalidBatchId,
                "batch_id".to_owned(),
                "batch_id must be 1-128 characters without control characters",
            ));
            None
        }
        Some(b) => Some(b.to_owned()),
    };

    // A scheduled send: before the expiry, and not further ahead than the
    // operator allows. A time already past means at once (clocks differ;
    // the legal time is the engine's, when the notice lands).
    let deliver_at = match w.deliver_at.as_deref() {
        None => None,
        Some(s) => match parse_time("deliver_at", s, &mut problems) {
            Some(t) if expires_at.is_some_and(|e| t >= e) => {
                problems.push(Problem::new(
                    Reason::DeliverAtAfterExpiry,
                    "deliver_at".to_owned(),
                    "deliver_at must be before expires_at",
                ));
                None
            }
            Some(t)
                if t > now
                    && (t - now)
                        .to_std()
                        .map(|d| d > limits.max_schedule_ahead.0)
                        .unwrap_or(true) =>
            {
                problems.push(Problem::new(
                    Reason::DeliverAtTooFar,
                    "deliver_at".to_owned(),
                    format!("deliver_at is more than {} away", limits.max_schedule_ahead),
                ));
                None
            }
            // To the millisecond, as the engine keeps times, rounded up: it
            // lands at or after this instant, never a fraction before.
            Some(t) => {
                let ms =
                    t.timestamp_millis() + i64::from(t.timestamp_subsec_nanos() % 1_000_000 != 0);
                DateTime::from_timestamp_millis(ms).filter(|t| *t > now)
            }
            None => None,
        },
    };

    // A response deadline: after the notice lands, not after its expiry.
    let respond_by = match w.respond_by.as_deref() {
        None => None,
        Some(s) => match parse_time("respond_by", s, &mut problems) {
            Some(t) if t <= deliver_at.unwrap_or(now) => {
                problems.push(Problem::new(
                    Reason::RespondByTooEarly,
                    "respond_by".to_owned(),
                    "respond_by must be after the notice lands (now, or deliver_at)",
                ));
                None
            }
            Some(t) if expires_at.is_some_and(|e| t > e) => {
                problems.push(Problem::new(
                    Reason::RespondByAfterExpiry,
                    "respond_by".to_owned(),
                    "respond_by must not be after expires_at",
                ));
                None
            }
            Some(t) => DateTime::from_timestamp_millis(t.timestamp_millis()),
            None => None,
        },
    };

    match (
        agency, reference, recipient, kind, title, body, life_event, expires_at, sent_at,
    ) {
        (
            Some(agency),
            Some(reference),
            Some(recipient),
            Some(kind),
            Some(title),
            Some(body),
            Some(life_event),
            Some(expires_at),
            Some(sent_at),
        ) if problems.is_empty() => Ok(Envelope {
            deliver_at,
            respond_by,
            notice: Notice {
                schema_version: SCHEMA_VERSION,
                agency,
                reference,
                recipient,
                kind,
                title: title.to_owned(),
                body: body.to_owned(),
                attachments,
                min_access_level,
                life_event,
                expires_at,
                sent_at,
                batch_id,
            },
        }),
        _ => {
            debug_assert!(!problems.is_empty());
            Err(Rejection {
                agency: raw_agency,
                reference: raw_reference,
                problems,
            })
        }
    }
}

/// Checks a mailbox profile from the registry: contact details and
/// representatives. Returns every problem; empty when valid.
pub fn validate_profile(p: &MailboxProfile) -> Vec<Problem> {
    let mut problems = Vec::new();
    if p.schema_version != SCHEMA_VERSION {
        problems.push(Problem::new(
            Reason::UnsupportedSchemaVersion,
            "schema_version".to_owned(),
            format!(
                "schema_version {} is not supported; this engine accepts {SCHEMA_VERSION}",
                p.schema_version
            ),
        ));
    }
    if p.access_level > MAX_ACCESS_LEVEL {
        problems.push(Problem::new(
            Reason::InvalidAccessLevel,
            "access_level".to_owned(),
            "access_level must be 0-3",
        ));
    }
    if let Some(m) = &p.mobile {
        if !is_iranian_mobile(m) {
            problems.push(Problem::new(
                Reason::InvalidMobile,
                "mobile".to_owned(),
                "mobile must be 09 followed by nine digits",
            ));
        }
    }
    if let Some(e) = &p.email {
        match email_domain(e) {
            None => problems.push(Problem::new(
                Reason::InvalidEmail,
                "email".to_owned(),
                "email must look like name@domain.tld",
            )),
            Some(domain) => {
                if p.id.kind() == MailboxKind::Person
                    && !domain.to_ascii_lowercase().ends_with(".ir")
                {
                    problems.push(Problem::new(
                        Reason::EmailNotIr,
                        "email".to_owned(),
                        "a natural person's e-mail must be on a .ir domain (art. 20)",
                    ));
                }
            }
        }
    }
    for (i, r) in p.representatives.iter().enumerate() {
        if *r == p.id {
            problems.push(Problem::new(
                Reason::SelfRepresentative,
                format!("representatives[{i}]"),
                "a mailbox cannot represent itself",
            ));
        }
    }
    for (i, d) in p.delegations.iter().enumerate() {
        let why = if !p.representatives.contains(&d.to) {
            Some("a delegation must name one of the profile's representatives")
        } else if p.delegations[..i].iter().any(|e| e.to == d.to) {
            Some("one delegation per representative")
        } else if !(1..=MAX_ACCESS_LEVEL).contains(&d.max_access_level) {
            Some("max_access_level must be 1-3")
        } else {
            None
        };
        if let Some(why) = why {
            problems.push(Problem::new(
                Reason::InvalidDelegation,
                format!("delegations[{i}]"),
                why,
            ));
        }
    }
    problems
}

/// `09` followed by nine ASCII digits.
pub fn is_iranian_mobile(m: &str) -> bool {
    m.len() == 11 && m.starts_with("09") && m.bytes().all(|b| b.is_ascii_digit())
}

/// The domain of a plausible e-mail address, or `None`.
pub fn email_domain(e: &str) -> Option<&str> {
    let (local, domain) = e.rsplit_once('@')?;
    let ok_local = !local.is_empty() && local.len() <= 64 && !local.contains(char::is_whitespace);
    let ok_domain = domain.len() <= 253
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    (ok_local && ok_domain).then_some(domain)
}

#[cfg(test)]
mod tests {
    use super::has_control_chars;
    use proptest::prelude::*;

    /// What `has_control_chars` computes, char by char.
    fn by_chars(s: &str, allow_newlines: bool) -> bool {
        s.chars()
            .any(|c| c.is_control() && !(allow_newlines && matches!(c, '\n' | '\r' | '\t')))
    }

    #[test]
    fn control_characters_by_bytes_at_every_edge() {
        for c in [
            '\0', '\u{1f}', '\u{7f}', '\u{80}', '\u{9f}', '\n', '\r', '\t',
        ] {
            // At the start, the end, and across a chunk boundary.
            for pad in [0, 31, 32, 33, 100] {
                let s = format!(
                    "{}{c}{}",
                    "ب".repeat(pad / 2) + &"a".repeat(pad % 2),
                    "ج".repeat(20)
                );
                for allow in [false, true] {
                    assert_eq!(
                        has_control_chars(&s, allow),
                        by_chars(&s, allow),
                        "{c:?} {pad} {allow}"
                    );
                }
            }
        }
        // Next to C1 controls in UTF-8 (C2 80-9F), but not them.
        for s in ["\u{a0}", "«»", "\u{bf}", "\u{100}", "پیام"] {
            assert!(!has_control_chars(s, false), "{s:?}");
        }
    }

    proptest! {
        #[test]
        fn control_characters_by_bytes_are_those_by_chars(s in "\\PC{0,80}([\\x00-\\x1f\\x7f-\\x9f]|\\PC){0,80}", allow in any::<bool>()) {
            prop_assert_eq!(has_control_chars(&s, allow), by_chars(&s, allow));
        }

        #[test]
        fn control_characters_by_bytes_any_string(s in any::<String>(), allow in any::<bool>()) {
            prop_assert_eq!(has_control_chars(&s, allow), by_chars(&s, allow));
        }
    }
}
