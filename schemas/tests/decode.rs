//! Integration tests of the envelope decoder and the profile validator:
//! every class of bad input gets its stable reason code, and every problem
//! in a message is reported at once.

use chrono::{DateTime, Duration, TimeZone, Utc};
use karpoosheh_schemas::{
    decode_envelope, decode_notice, validate_profile, AgencyId, ByteSize, LifeEvent, Limits,
    MailboxId, MailboxKind, MailboxProfile, MailboxStatus, Notice, NoticeKind, Reason, Rejection,
    SCHEMA_VERSION,
};
use serde_json::{json, Value};

/// A valid natural person's national code.
const PERSON: &str = "0499370899";
/// The same code in Persian digits.
const PERSON_FA: &str = "۰۴۹۹۳۷۰۸۹۹";
/// A valid legal entity's national ID.
const LEGAL: &str = "10380284790";
const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// The fixed clock of every test.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap()
}

fn base() -> Value {
    json!({
        "schema_version": 1,
        "agency": "tax",
        "reference": "TX-1404-000123",
        "recipient": PERSON,
        "kind": "service_notice",
        "title": "Tax assessment notice",
        "body": "Dear taxpayer,\nyour assessment for 1403 is attached.\n\tAmount: 12,000,000 rials.",
        "attachments": [
            {"name": "assessment.pdf", "media_type": "application/pdf", "size": 48213, "sha256": SHA}
        ],
        "min_access_level": 2,
        "life_event": "tax",
        "expires_at": "2031-01-01T00:00:00+03:30",
        "sent_at": "2026-01-15T14:30:00+03:30",
        "batch_id": "2026-01-15-a"
    })
}

fn with(field: &str, v: Value) -> Value {
    let mut m = base();
    m[field] = v;
    m
}

fn without(field: &str) -> Value {
    let mut m = base();
    m.as_object_mut().unwrap().remove(field);
    m
}

fn with_attachment(field: &str, v: Value) -> Value {
    let mut m = base();
    m["attachments"][0][field] = v;
    m
}

fn decode_value(v: &Value) -> Result<Notice, Rejection> {
    decode_notice(&serde_json::to_vec(v).unwrap(), &Limits::default(), now())
}

fn decode_ok(v: &Value) -> Notice {
    decode_value(v).unwrap_or_else(|r| panic!("expected a valid notice, got {:?}", r.problems))
}

fn reject(v: &Value) -> Rejection {
    match decode_value(v) {
        Ok(n) => panic!("expected a rejection, got {n:?}"),
        Err(r) => r,
    }
}

fn reject_bytes(bytes: &[u8]) -> Rejection {
    match decode_notice(bytes, &Limits::default(), now()) {
        Ok(n) => panic!("expected a rejection, got {n:?}"),
        Err(r) => r,
    }
}

fn reasons(r: &Rejection) -> Vec<Reason> {
    r.problems.iter().map(|p| p.reason).collect()
}

/// Asserts the rejection has exactly one problem, with this reason and field.
fn assert_only(r: &Rejection, reason: Reason, field: Option<&str>) {
    assert_eq!(reasons(r), vec![reason], "problems: {:?}", r.problems);
    assert_eq!(
        r.problems[0].field.as_deref(),
        field,
        "problems: {:?}",
        r.problems
    );
    assert!(!r.problems[0].message.is_empty());
    assert_eq!(r.primary_reason(), reason);
}

/// Escapes every non-ASCII character as `\uXXXX` (surrogate pairs above
/// the BMP), as some agencies' JSON writers do.
fn escape_non_ascii(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

// ---------------------------------------------------------------- valid

#[test]
fn valid_ascii_notice_decodes_with_every_field() {
    let n = decode_ok(&base());
    assert_eq!(n.schema_version, SCHEMA_VERSION);
    assert_eq!(n.agency, AgencyId::parse("tax").unwrap());
    assert_eq!(n.reference, "TX-1404-000123");
    assert_eq!(n.recipient, MailboxId::parse(PERSON).unwrap());
    assert_eq!(n.recipient.kind(), MailboxKind::Person);
    assert_eq!(n.kind, NoticeKind::ServiceNotice);
    assert_eq!(n.title, "Tax assessment notice");
    assert!(n.body.contains("\n\tAmount"), "newline and tab are kept");
    assert_eq!(n.attachments.len(), 1);
    assert_eq!(n.attachments[0].name, "assessment.pdf");
    assert_eq!(n.attachments[0].size, 48213);
    assert_eq!(n.attachments[0].sha256, SHA);
    assert_eq!(n.min_access_level, 2);
    assert_eq!(n.life_event, LifeEvent::Tax);
    // +03:30 is converted to UTC.
    assert_eq!(
        n.expires_at,
        Utc.with_ymd_and_hms(2030, 12, 31, 20, 30, 0).unwrap()
    );
    assert_eq!(
        n.sent_at,
        Utc.with_ymd_and_hms(2026, 1, 15, 11, 0, 0).unwrap()
    );
    assert_eq!(n.batch_id.as_deref(), Some("2026-01-15-a"));
}

#[test]
fn valid_persian_notice_with_persian_digit_recipient() {
    let mut m = base();
    m["recipient"] = json!(PERSON_FA);
    m["title"] = json!("ابلاغیه مالیاتی");
    m["body"] = json!("مودی گرامی،\nبرگ تشخیص مالیات سال ۱۴۰۳ پیوست است.");
    m["attachments"][0]["name"] = json!("برگ-تشخیص.pdf");
    let n = decode_ok(&m);
    assert_eq!(n.recipient, MailboxId::parse(PERSON).unwrap());
    // Receipts and storage use ASCII digits whatever the agency sent.
    assert_eq!(n.recipient.to_string(), PERSON);
    assert_eq!(n.title, "ابلاغیه مالیاتی");
    assert_eq!(n.body, "مودی گرامی،\nبرگ تشخیص مالیات سال ۱۴۰۳ پیوست است.");
    assert_eq!(n.attachments[0].name, "برگ-تشخیص.pdf");
}

#[test]
fn recipient_as_mailbox_address() {
    let n = decode_ok(&with("recipient", json!(format!("{PERSON}@iran"))));
    assert_eq!(n.recipient, MailboxId::parse(PERSON).unwrap());
    let n = decode_ok(&with("recipient", json!(format!("{LEGAL}@iran"))));
    assert_eq!(n.recipient.kind(), MailboxKind::Legal);
    assert_eq!(n.recipient.to_string(), LEGAL);
    let n = decode_ok(&with("recipient", json!(format!("{PERSON_FA}@iran"))));
    assert_eq!(n.recipient.to_string(), PERSON);
}

#[test]
fn optional_fields_take_their_defaults() {
    let mut m = base();
    for f in ["attachments", "min_access_level", "life_event", "batch_id"] {
        m.as_object_mut().unwrap().remove(f);
    }
    let n = decode_ok(&m);
    assert!(n.attachments.is_empty());
    assert_eq!(n.min_access_level, 1);
    assert_eq!(n.life_event, LifeEvent::Other);
    assert_eq!(n.batch_id, None);
    // Explicit nulls mean the same as absent.
    let mut m = base();
    m["batch_id"] = Value::Null;
    m["attachments"] = Value::Null;
    let n = decode_ok(&m);
    assert_eq!(n.batch_id, None);
    assert!(n.attachments.is_empty());
}

#[test]
fn sha256_is_stored_lowercase() {
    let n = decode_ok(&with_attachment("sha256", json!(SHA.to_ascii_uppercase())));
    assert_eq!(n.attachments[0].sha256, SHA);
}

#[test]
fn escaped_persian_decodes_to_the_same_notice_as_raw_utf8() {
    let mut m = base();
    m["recipient"] = json!(format!("{PERSON_FA}@iran"));
    m["title"] = json!("ابلاغیه مالیاتی 😀");
    m["body"] = json!("مودی گرامی،\nبرگ تشخیص مالیات سال ۱۴۰۳ پیوست است.");
    let raw = serde_json::to_string(&m).unwrap();
    let escaped = escape_non_ascii(&raw);
    assert!(
        escaped.is_ascii() && escaped.contains("\\u0627"),
        "the test must really escape"
    );
    assert!(
        escaped.contains("\\ud83d\\ude00"),
        "and use a surrogate pair above the BMP"
    );
    let a = decode_notice(raw.as_bytes(), &Limits::default(), now()).unwrap();
    let b = decode_notice(escaped.as_bytes(), &Limits::default(), now()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.content_hash(), b.content_hash());
    assert_eq!(b.title, "ابلاغیه مالیاتی 😀");
}

#[test]
fn content_hash_ignores_transport_fields_only() {
    let original = decode_ok(&base());
    let mut resend = base();
    resend["sent_at"] = json!("2026-01-16T09:00:00+03:30");
    resend["batch_id"] = json!("retry-7");
    let resend = decode_ok(&resend);
    assert_ne!(original, resend);
    assert_eq!(
        original.content_hash(),
        resend.content_hash(),
        "a re-send is the same notice"
    );

    let mut no_batch = base();
    no_batch.as_object_mut().unwrap().remove("batch_id");
    assert_eq!(original.content_hash(), decode_ok(&no_batch).content_hash());

    let changed_body = decode_ok(&with(
        "body",
        json!("Dear taxpayer, the amount is 13,000,000 rials."),
    ));
    assert_ne!(original.content_hash(), changed_body.content_hash());
    let changed_title = decode_ok(&with("title", json!("Tax assessment notice (corrected)")));
    assert_ne!(original.content_hash(), changed_title.content_hash());
    let changed_expiry = decode_ok(&with("expires_at", json!("2032-01-01T00:00:00Z")));
    assert_ne!(original.content_hash(), changed_expiry.content_hash());
    let changed_size = decode_ok(&with_attachment("size", json!(48214)));
    assert_ne!(original.content_hash(), changed_size.content_hash());
}

// ---------------------------------------------------- undecodable payloads

#[test]
fn empty_payload() {
    for bytes in [&b""[..], b"   \n\t "] {
        let r = reject_bytes(bytes);
        assert_only(&r, Reason::EmptyPayload, None);
        assert!(r.is_undecodable());
    }
}

#[test]
fn malformed_json() {
    for bytes in [
        &b"{\"title\": "[..],
        b"{title: 1}",
        b"{\"a\":1,}",
        b"nul",
        b"{\"schema_version\": 1} trailing",
    ] {
        let r = reject_bytes(bytes);
        assert_only(&r, Reason::MalformedJson, None);
        assert!(r.is_undecodable());
        assert_eq!(r.agency, None);
    }
}

#[test]
fn malformed_json_after_a_type_error() {
    // The typed pass stops at the wrong type; the re-read must still see
    // that the message is not JSON at all.
    let r = reject_bytes(br#"{"schema_version": "one", "title": "#);
    assert_only(&r, Reason::MalformedJson, None);
}

#[test]
fn invalid_utf8_inside_a_string() {
    let mut bytes = br#"{"schema_version": 1, "agency": "tax", "title": ""#.to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe, b'a']);
    bytes.extend_from_slice(br#""}"#);
    let r = reject_bytes(&bytes);
    assert_only(&r, Reason::InvalidUtf8, None);
    assert!(r.is_undecodable());

    // Same, after a field of the wrong type.
    let mut bytes = br#"{"schema_version": "1", "title": ""#.to_vec();
    bytes.extend_from_slice(&[0xc3, 0x28]);
    bytes.extend_from_slice(br#""}"#);
    assert_only(&reject_bytes(&bytes), Reason::InvalidUtf8, None);
}

#[test]
fn not_an_object() {
    for bytes in [
        &b"[]"[..],
        b"[1, 2, 3]",
        b"42",
        b"\"a notice\"",
        b"null",
        b"true",
    ] {
        let r = reject_bytes(bytes);
        assert_only(&r, Reason::NotAnObject, None);
        assert!(r.is_undecodable());
    }
}

#[test]
fn array_holding_every_field_in_order_is_not_an_object() {
    // serde can read a struct from a JSON array of its fields in
    // declaration order; the contract says a notice is an object.
    let arr = json!([
        1,
        "tax",
        "TX-1",
        PERSON,
        "letter",
        "title",
        "body",
        [],
        1,
        "other",
        "2031-01-01T00:00:00Z",
        "2026-01-15T10:00:00Z",
        null
    ]);
    let r = reject(&arr);
    assert_only(&r, Reason::NotAnObject, None);
}

#[test]
fn payload_over_the_limit_is_not_read() {
    let big = with("body", json!("x".repeat(300 * 1024)));
    let r = reject(&big);
    assert_only(&r, Reason::PayloadTooLarge, None);
    assert!(r.is_undecodable());
    assert_eq!(r.agency, None, "an oversized payload is not parsed at all");

    // The limit is the operator's: a small one applies to a small notice.
    let limits = Limits {
        max_payload_bytes: ByteSize(1024),
        ..Limits::default()
    };
    let bytes = serde_json::to_vec(&with("body", json!("y".repeat(1100)))).unwrap();
    let r = decode_notice(&bytes, &limits, now()).unwrap_err();
    assert_only(&r, Reason::PayloadTooLarge, None);
    let bytes = serde_json::to_vec(&base()).unwrap();
    assert!(bytes.len() <= 1024);
    assert!(decode_notice(&bytes, &limits, now()).is_ok());
}

// ------------------------------------------------- several problems at once

#[test]
fn every_problem_is_reported_at_once() {
    let mut m = base();
    m.as_object_mut().unwrap().remove("title");
    m["recipient"] = json!("0499370898"); // check digit should be 9
    m["kind"] = json!("memo");
    let r = reject(&m);
    let mut got = reasons(&r);
    got.sort();
    let mut want = vec![
        Reason::MissingField,
        Reason::BadCheckDigit,
        Reason::UnknownKind,
    ];
    want.sort();
    assert_eq!(got, want, "problems: {:?}", r.problems);
    let fields: Vec<_> = r
        .problems
        .iter()
        .map(|p| p.field.as_deref().unwrap())
        .collect();
    for f in ["title", "recipient", "kind"] {
        assert!(fields.contains(&f), "{f} not reported: {fields:?}");
    }
}

#[test]
fn missing_fields_are_each_reported() {
    let mut m = base();
    let required = [
        "schema_version",
        "agency",
        "reference",
        "recipient",
        "kind",
        "title",
        "body",
        "expires_at",
        "sent_at",
    ];
    for f in required {
        m.as_object_mut().unwrap().remove(f);
    }
    let r = reject(&m);
    assert_eq!(
        r.problems.len(),
        required.len(),
        "problems: {:?}",
        r.problems
    );
    for f in required {
        assert!(
            r.problems
                .iter()
                .any(|p| p.reason == Reason::MissingField && p.field.as_deref() == Some(f)),
            "{f} not reported as missing: {:?}",
            r.problems
        );
    }
    assert_eq!(r.agency, None);
    assert_eq!(r.reference, None);
}

#[test]
fn null_required_field_is_missing() {
    let r = reject(&with("title", Value::Null));
    assert_only(&r, Reason::MissingField, Some("title"));
    let r = reject(&without("sent_at"));
    assert_only(&r, Reason::MissingField, Some("sent_at"));
}

#[test]
fn missing_attachment_field() {
    let mut m = base();
    m["attachments"][0]
        .as_object_mut()
        .unwrap()
        .remove("sha256");
    let r = reject(&m);
    assert_only(&r, Reason::MissingField, Some("attachments[0].sha256"));
}

#[test]
fn wrong_type_does_not_hide_other_problems() {
    let mut m = base();
    m["title"] = json!(12);
    m["recipient"] = json!("0499370898");
    let r = reject(&m);
    assert_eq!(r.problems.len(), 2, "problems: {:?}", r.problems);
    assert!(r
        .problems
        .iter()
        .any(|p| p.reason == Reason::WrongType && p.field.as_deref() == Some("title")));
    assert!(r
        .problems
        .iter()
        .any(|p| p.reason == Reason::BadCheckDigit && p.field.as_deref() == Some("recipient")));
    // A wrong type is not also reported as missing.
    assert!(!r.problems.iter().any(|p| p.reason == Reason::MissingField));
    // The agency and reference are still read.
    assert_eq!(r.agency.as_deref(), Some("tax"));
    assert_eq!(r.reference.as_deref(), Some("TX-1404-000123"));
}

#[test]
fn wrong_types_of_every_shape() {
    let cases = [
        ("schema_version", json!("1")),
        ("schema_version", json!(1.5)),
        ("min_access_level", json!(-1)),
        ("agency", json!(["tax"])),
        ("body", json!({"text": "x"})),
        ("attachments", json!("assessment.pdf")),
        ("sent_at", json!(1767000000)),
        ("batch_id", json!(true)),
    ];
    for (field, v) in cases {
        let r = reject(&with(field, v.clone()));
        assert_only(&r, Reason::WrongType, Some(field));
    }
    // An attachment that is not an object: the wrong type comes first (its
    // fields are then also reported missing).
    for item in [json!(42), json!(["a.pdf", "application/pdf", 1, SHA])] {
        let r = reject(&with("attachments", json!([item])));
        assert_eq!(
            r.primary_reason(),
            Reason::WrongType,
            "problems: {:?}",
            r.problems
        );
        assert_eq!(r.problems[0].field.as_deref(), Some("attachments[0]"));
        assert!(
            r.problems[1..]
                .iter()
                .all(|p| p.reason == Reason::MissingField),
            "problems: {:?}",
            r.problems
        );
    }
    let r = reject(&with_attachment("size", json!("48213")));
    assert_only(&r, Reason::WrongType, Some("attachments[0].size"));
}

#[test]
fn unknown_field() {
    let r = reject(&with("titel", json!("typo")));
    assert_only(&r, Reason::UnknownField, Some("titel"));
    assert!(r.problems[0].message.contains("titel"));
    let r = reject(&with_attachment("url", json!("https://example.ir/a.pdf")));
    assert_only(&r, Reason::UnknownField, Some("attachments[0].url"));
    // With another problem, both are reported.
    let mut m = with("priority", json!("high"));
    m["kind"] = json!("memo");
    let mut got = reasons(&reject(&m));
    got.sort();
    assert_eq!(got, vec![Reason::UnknownField, Reason::UnknownKind]);
}

#[test]
fn duplicate_field() {
    let json = format!(
        r#"{{"schema_version":1,"agency":"tax","reference":"r-1","recipient":"{PERSON}","kind":"letter",
            "title":"a","title":"b","body":"text","expires_at":"2031-01-01T00:00:00Z","sent_at":"2026-01-15T10:00:00Z"}}"#
    );
    let r = reject_bytes(json.as_bytes());
    assert_only(&r, Reason::DuplicateField, None);
    assert!(
        r.problems[0].message.contains("title"),
        "{}",
        r.problems[0].message
    );
    assert_eq!(r.agency.as_deref(), Some("tax"));

    // Inside an attachment too.
    let json = format!(
        r#"{{"schema_version":1,"agency":"tax","reference":"r-1","recipient":"{PERSON}","kind":"letter",
            "title":"a","body":"text","expires_at":"2031-01-01T00:00:00Z","sent_at":"2026-01-15T10:00:00Z",
            "attachments":[{{"name":"a.pdf","name":"b.pdf","media_type":"application/pdf","size":1,"sha256":"{SHA}"}}]}}"#
    );
    assert_only(&reject_bytes(json.as_bytes()), Reason::DuplicateField, None);
}

#[test]
fn unsupported_schema_version() {
    for v in [0, 2, 99] {
        let r = reject(&with("schema_version", json!(v)));
        assert_only(&r, Reason::UnsupportedSchemaVersion, Some("schema_version"));
    }
}

// ------------------------------------------------------------- recipient

#[test]
fn recipient_id_errors() {
    let cases = [
        ("0499370898", Reason::BadCheckDigit),
        ("10380284791", Reason::BadCheckDigit),
        ("049937089", Reason::WrongLength),
        ("049937089912", Reason::WrongLength),
        ("04993a0899", Reason::InvalidCharacter),
        ("0499370899@irn", Reason::InvalidCharacter),
        ("۰۴۹۹۳۷۰۸۹x", Reason::InvalidCharacter),
        ("1111111111", Reason::RepeatedDigits),
        ("00000000000", Reason::RepeatedDigits),
        ("1230000000", Reason::ZeroSerial),
        ("", Reason::MissingField),
    ];
    for (recipient, reason) in cases {
        let r = reject(&with("recipient", json!(recipient)));
        assert_only(&r, reason, Some("recipient"));
    }
    // A one-digit typo in a Persian-digit code is caught too.
    let r = reject(&with("recipient", json!("۰۴۹۹۳۷۰۸۹۸")));
    assert_only(&r, Reason::BadCheckDigit, Some("recipient"));
}

// ------------------------------------------------------- agency, reference

#[test]
fn invalid_agency() {
    for agency in [
        "Tax",
        "t",
        "9tax",
        "tax.ir",
        "",
        "a-very-long-agency-name-over-32-chars",
    ] {
        let r = reject(&with("agency", json!(agency)));
        assert_only(&r, Reason::InvalidAgency, Some("agency"));
        assert_eq!(
            r.agency.as_deref(),
            Some(agency),
            "the agency is reported as sent"
        );
    }
}

#[test]
fn invalid_reference() {
    let too_long = "r".repeat(129);
    for reference in ["", "   ", too_long.as_str(), "TX\u{1}1", "TX\n1"] {
        let r = reject(&with("reference", json!(reference)));
        assert_only(&r, Reason::InvalidReference, Some("reference"));
    }
    // 128 characters is the limit, counted in characters.
    decode_ok(&with("reference", json!("ر".repeat(128))));
}

#[test]
fn rejection_carries_readable_agency_and_reference() {
    let r = reject(&with("kind", json!("memo")));
    assert_eq!(r.agency.as_deref(), Some("tax"));
    assert_eq!(r.reference.as_deref(), Some("TX-1404-000123"));
    assert!(!r.is_undecodable());

    let mut m = base();
    m["agency"] = json!(7);
    m["reference"] = json!(["TX"]);
    let r = reject(&m);
    assert_eq!(r.agency, None);
    assert_eq!(r.reference, None);
}

// --------------------------------------------------- enums and access level

#[test]
fn unknown_kind() {
    for kind in ["memo", "Letter", ""] {
        let r = reject(&with("kind", json!(kind)));
        assert_only(&r, Reason::UnknownKind, Some("kind"));
    }
    for kind in NoticeKind::ALL {
        assert_eq!(decode_ok(&with("kind", json!(kind.as_str()))).kind, *kind);
    }
}

#[test]
fn unknown_life_event() {
    for ev in ["divorce", "TAX", ""] {
        let r = reject(&with("life_event", json!(ev)));
        assert_only(&r, Reason::UnknownLifeEvent, Some("life_event"));
    }
    for ev in LifeEvent::ALL {
        assert_eq!(
            decode_ok(&with("life_event", json!(ev.as_str()))).life_event,
            *ev
        );
    }
}

#[test]
fn invalid_access_level() {
    for level in [0, 4, 255, 1000] {
        let r = reject(&with("min_access_level", json!(level)));
        assert_only(&r, Reason::InvalidAccessLevel, Some("min_access_level"));
    }
    for level in 1..=3u8 {
        assert_eq!(
            decode_ok(&with("min_access_level", json!(level))).min_access_level,
            level
        );
    }
}

// ------------------------------------------------------------ timestamps

#[test]
fn invalid_timestamp() {
    for ts in [
        "2031-01-01",
        "2031-01-01T00:00:00",
        "01/01/2031",
        "1409-10-11T00:00:00+03:30x",
        "2031-13-01T00:00:00Z",
    ] {
        let r = reject(&with("expires_at", json!(ts)));
        assert_only(&r, Reason::InvalidTimestamp, Some("expires_at"));
        let r = reject(&with("sent_at", json!(ts)));
        assert_only(&r, Reason::InvalidTimestamp, Some("sent_at"));
    }
}

#[test]
fn expiry_in_the_past() {
    for ts in [
        "2025-12-31T00:00:00Z",
        "2026-01-15T12:00:00Z",
        "2026-01-15T15:29:59+03:30",
    ] {
        let r = reject(&with("expires_at", json!(ts)));
        assert_only(&r, Reason::ExpiryInPast, Some("expires_at"));
    }
    // One second after now is in the future.
    decode_ok(&with("expires_at", json!("2026-01-15T12:00:01Z")));
}

#[test]
fn expiry_too_far() {
    let max = Limits::default().max_retention.0;
    let limit = now() + Duration::from_std(max).unwrap();
    let r = reject(&with(
        "expires_at",
        json!((limit + Duration::seconds(1)).to_rfc3339()),
    ));
    assert_only(&r, Reason::ExpiryTooFar, Some("expires_at"));
    let r = reject(&with("expires_at", json!("9999-12-31T23:59:59Z")));
    assert_only(&r, Reason::ExpiryTooFar, Some("expires_at"));
    decode_ok(&with("expires_at", json!(limit.to_rfc3339())));
}

// ----------------------------------------------------------- deliver_at

fn deliver_at(v: Value) -> Result<Option<DateTime<Utc>>, Rejection> {
    let m = with("deliver_at", v);
    decode_envelope(&serde_json::to_vec(&m).unwrap(), &Limits::default(), now())
        .map(|e| e.deliver_at)
}

#[test]
fn deliver_at_schedules_a_send_in_any_time_zone_and_is_not_content() {
    let at = deliver_at(json!("2026-02-01T08:00:00+03:30")).unwrap();
    assert_eq!(
        at,
        Some(Utc.with_ymd_and_hms(2026, 2, 1, 4, 30, 0).unwrap())
    );
    assert_eq!(deliver_at(Value::Null).unwrap(), None, "null: at once");
    assert_eq!(
        deliver_at(json!("2026-01-15T11:00:00Z")).unwrap(),
        None,
        "a time already past: at once"
    );
    // Not part of the content: the same notice, the same hash.
    let m = with("deliver_at", json!("2026-02-01T08:00:00+03:30"));
    assert_eq!(
        decode_ok(&m).content_hash(),
        decode_ok(&base()).content_hash()
    );
}

#[test]
fn deliver_at_must_be_a_time_before_the_expiry_and_within_the_operators_limit() {
    let r = deliver_at(json!("next tuesday")).unwrap_err();
    assert_only(&r, Reason::InvalidTimestamp, Some("deliver_at"));
    let r = deliver_at(json!(20260201)).unwrap_err();
    assert_only(&r, Reason::WrongType, Some("deliver_at"));
    let max = Limits::default().max_schedule_ahead.0;
    let limit = now() + Duration::from_std(max).unwrap();
    let r = deliver_at(json!((limit + Duration::seconds(1)).to_rfc3339())).unwrap_err();
    assert_only(&r, Reason::DeliverAtTooFar, Some("deliver_at"));
    assert_eq!(deliver_at(json!(limit.to_rfc3339())).unwrap(), Some(limit));
    // At or after the expiry: it would never be seen.
    let mut m = with("deliver_at", json!("2026-03-01T00:00:00Z"));
    m["expires_at"] = json!("2026-03-01T00:00:00Z");
    let r = reject(&m);
    assert_only(&r, Reason::DeliverAtAfterExpiry, Some("deliver_at"));
}

#[test]
fn respond_by_is_a_deadline_after_the_notice_lands_and_not_after_its_expiry() {
    let decode =
        |m: &Value| decode_envelope(&serde_json::to_vec(m).unwrap(), &Limits::default(), now());
    let e = decode(&with("respond_by", json!("2026-01-25T23:59:59+03:30"))).unwrap();
    assert_eq!(
        e.respond_by,
        Some(Utc.with_ymd_and_hms(2026, 1, 25, 20, 29, 59).unwrap())
    );
    assert_eq!(decode(&base()).unwrap().respond_by, None);
    // Not part of the content.
    assert_eq!(e.notice.content_hash(), decode_ok(&base()).content_hash());
    let r = decode(&with("respond_by", json!("2026-01-15T11:00:00Z"))).unwrap_err();
    assert_only(&r, Reason::RespondByTooEarly, Some("respond_by"));
    // Before the notice lands is too early too.
    let mut m = with("respond_by", json!("2026-02-01T00:00:00Z"));
    m["deliver_at"] = json!("2026-02-02T00:00:00Z");
    assert_only(
        &decode(&m).unwrap_err(),
        Reason::RespondByTooEarly,
        Some("respond_by"),
    );
    m["deliver_at"] = json!("2026-01-31T00:00:00Z");
    assert!(decode(&m).is_ok());
    let r = decode(&with("respond_by", json!("2031-06-01T00:00:00Z"))).unwrap_err();
    assert_only(&r, Reason::RespondByAfterExpiry, Some("respond_by"));
    let r = decode(&with("respond_by", json!(true))).unwrap_err();
    assert_only(&r, Reason::WrongType, Some("respond_by"));
}

// ----------------------------------------------------------- title, body

#[test]
fn title_empty() {
    for t in ["", "   ", "\u{3000}"] {
        let r = reject(&with("title", json!(t)));
        assert_only(&r, Reason::TitleEmpty, Some("title"));
    }
}

#[test]
fn title_length_is_counted_in_characters() {
    let max = Limits::default().max_title_chars;
    let persian = "ب".repeat(max);
    assert!(
        persian.len() > max,
        "the Persian title has more bytes than the limit"
    );
    assert_eq!(
        decode_ok(&with("title", json!(persian)))
            .title
            .chars()
            .count(),
        max
    );

    let r = reject(&with("title", json!("ب".repeat(max + 1))));
    assert_only(&r, Reason::TitleTooLong, Some("title"));
    let r = reject(&with("title", json!("t".repeat(max + 1))));
    assert_only(&r, Reason::TitleTooLong, Some("title"));
}

#[test]
fn body_empty() {
    for b in ["", " \n\t "] {
        let r = reject(&with("body", json!(b)));
        assert_only(&r, Reason::BodyEmpty, Some("body"));
    }
}

#[test]
fn body_too_long_in_bytes() {
    let max = Limits::default().max_body_bytes.0 as usize;
    decode_ok(&with("body", json!("b".repeat(max))));
    let r = reject(&with("body", json!("b".repeat(max + 1))));
    assert_only(&r, Reason::BodyTooLong, Some("body"));
    // The body limit is in bytes: max/2 + 1 two-byte characters are over it.
    let r = reject(&with("body", json!("ب".repeat(max / 2 + 1))));
    assert_only(&r, Reason::BodyTooLong, Some("body"));
}

#[test]
fn control_characters() {
    for t in ["Tax\u{7}notice", "Tax\nnotice", "Tax\u{1b}[31m"] {
        let r = reject(&with("title", json!(t)));
        assert_only(&r, Reason::ControlCharacters, Some("title"));
    }
    for b in ["a\u{0}b", "a\u{8}b", "a\u{7f}b", "a\u{85}b"] {
        let r = reject(&with("body", json!(b)));
        assert_only(&r, Reason::ControlCharacters, Some("body"));
    }
    // Newline, carriage return and tab are fine in a body.
    decode_ok(&with("body", json!("line one\r\nline two\tend")));
}

// ------------------------------------------------------------ attachments

fn attachment(i: usize, size: u64) -> Value {
    json!({"name": format!("doc-{i}.pdf"), "media_type": "application/pdf", "size": size, "sha256": SHA})
}

#[test]
fn too_many_attachments() {
    let max = Limits::default().max_attachments;
    let list: Vec<Value> = (0..max).map(|i| attachment(i, 1000)).collect();
    assert_eq!(
        decode_ok(&with("attachments", json!(list)))
            .attachments
            .len(),
        max
    );
    let list: Vec<Value> = (0..=max).map(|i| attachment(i, 1000)).collect();
    let r = reject(&with("attachments", json!(list)));
    assert_only(&r, Reason::TooManyAttachments, Some("attachments"));
}

#[test]
fn attachment_too_large() {
    let max = Limits::default().max_attachment_bytes.0;
    decode_ok(&with_attachment("size", json!(max)));
    let r = reject(&with_attachment("size", json!(max + 1)));
    assert_only(&r, Reason::AttachmentTooLarge, Some("attachments[0].size"));
}

#[test]
fn attachments_total_too_large() {
    let limits = Limits::default();
    let each = limits.max_attachment_bytes.0;
    let n = limits.max_total_attachment_bytes.0 / each + 1;
    let list: Vec<Value> = (0..n as usize).map(|i| attachment(i, each)).collect();
    let r = reject(&with("attachments", json!(list)));
    assert_only(&r, Reason::AttachmentsTotalTooLarge, Some("attachments"));
}

#[test]
fn media_type_not_allowed() {
    for mt in ["application/x-msdownload", "text/html", "pdf", ""] {
        let r = reject(&with_attachment("media_type", json!(mt)));
        assert_only(
            &r,
            Reason::AttachmentTypeNotAllowed,
            Some("attachments[0].media_type"),
        );
    }
    decode_ok(&with_attachment("media_type", json!("Application/PDF")));
    decode_ok(&with_attachment(
        "media_type",
        json!("text/plain; charset=utf-8"),
    ));
}

#[test]
fn invalid_attachment_name() {
    let long = "n".repeat(256);
    for name in [
        "../etc/passwd",
        "dir/a.pdf",
        "C:\\a.pdf",
        "",
        "  ",
        "a\u{0}.pdf",
        long.as_str(),
    ] {
        let r = reject(&with_attachment("name", json!(name)));
        assert_only(
            &r,
            Reason::AttachmentInvalidName,
            Some("attachments[0].name"),
        );
    }
}

#[test]
fn invalid_sha256() {
    let short = &SHA[..63];
    let long = format!("{SHA}0");
    let not_hex = format!("{}g", &SHA[..63]);
    for h in [short, long.as_str(), not_hex.as_str(), ""] {
        let r = reject(&with_attachment("sha256", json!(h)));
        assert_only(
            &r,
            Reason::AttachmentInvalidSha256,
            Some("attachments[0].sha256"),
        );
    }
}

#[test]
fn invalid_batch_id() {
    let long = "b".repeat(129);
    for b in ["", " ", long.as_str(), "b\u{1}"] {
        let r = reject(&with("batch_id", json!(b)));
        assert_only(&r, Reason::InvalidBatchId, Some("batch_id"));
    }
}

#[test]
fn problems_in_several_attachments_name_their_index() {
    let mut a1 = attachment(1, 10);
    a1["sha256"] = json!("nope");
    let mut a2 = attachment(2, 10);
    a2["media_type"] = json!("application/x-sh");
    let r = reject(&with("attachments", json!([attachment(0, 10), a1, a2])));
    let got: Vec<_> = r
        .problems
        .iter()
        .map(|p| (p.reason, p.field.clone().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                Reason::AttachmentInvalidSha256,
                "attachments[1].sha256".to_owned()
            ),
            (
                Reason::AttachmentTypeNotAllowed,
                "attachments[2].media_type".to_owned()
            ),
        ]
    );
}

// -------------------------------------------------------- validate_profile

fn profile(id: &str) -> MailboxProfile {
    MailboxProfile {
        schema_version: SCHEMA_VERSION,
        id: MailboxId::parse(id).unwrap(),
        status: MailboxStatus::Active,
        access_level: 2,
        mobile: Some("09121234567".to_owned()),
        email: Some("ali@example.ir".to_owned()),
        push: true,
        representatives: vec![],
        delegations: vec![],
        updated_at: now(),
    }
}

fn profile_reasons(p: &MailboxProfile) -> Vec<Reason> {
    validate_profile(p).iter().map(|p| p.reason).collect()
}

#[test]
fn valid_profiles_have_no_problems() {
    assert_eq!(validate_profile(&profile(PERSON)), vec![]);
    let mut p = profile(LEGAL);
    p.representatives = vec![MailboxId::parse(PERSON).unwrap()];
    p.mobile = None;
    p.email = None;
    assert_eq!(validate_profile(&p), vec![]);
}

#[test]
fn person_email_must_be_ir() {
    let mut p = profile(PERSON);
    for e in ["ali@gmail.com", "ali@example.ir.com", "ali@mail.iran"] {
        p.email = Some(e.to_owned());
        assert_eq!(profile_reasons(&p), vec![Reason::EmailNotIr], "{e}");
    }
    p.email = Some("ali@MAIL.GOV.IR".to_owned());
    assert_eq!(profile_reasons(&p), vec![]);
}

#[test]
fn legal_entity_email_may_be_anywhere() {
    let mut p = profile(LEGAL);
    p.email = Some("info@company.com".to_owned());
    assert_eq!(profile_reasons(&p), vec![]);
}

#[test]
fn malformed_email() {
    let mut p = profile(LEGAL);
    for e in [
        "no-at-sign",
        "@example.ir",
        "a@",
        "a@nodot",
        "a b@example.ir",
        "a@.ir",
        "a@example..ir",
    ] {
        p.email = Some(e.to_owned());
        assert_eq!(profile_reasons(&p), vec![Reason::InvalidEmail], "{e}");
    }
}

#[test]
fn invalid_mobile() {
    let mut p = profile(PERSON);
    for m in [
        "0912123456",
        "091212345678",
        "+989121234567",
        "9121234567",
        "0812-123456",
        "۰۹۱۲۱۲۳۴۵۶۷",
    ] {
        p.mobile = Some(m.to_owned());
        assert_eq!(profile_reasons(&p), vec![Reason::InvalidMobile], "{m}");
    }
}

#[test]
fn self_representative() {
    let mut p = profile(PERSON);
    p.representatives = vec![MailboxId::parse(LEGAL).unwrap(), p.id];
    let problems = validate_profile(&p);
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].reason, Reason::SelfRepresentative);
    assert_eq!(problems[0].field.as_deref(), Some("representatives[1]"));
}

#[test]
fn delegations_name_a_representative_once_with_a_real_level() {
    let rep = MailboxId::parse(LEGAL).unwrap();
    let mut p = profile(PERSON);
    p.representatives = vec![rep];
    let d: karpoosheh_schemas::Delegation =
        serde_json::from_value(json!({"to": rep.to_string()})).unwrap();
    // Defaults: every level, every agency, may confirm, may not share.
    assert_eq!(d.max_access_level, 3);
    assert!(d.may_confirm && !d.may_share && d.agencies.is_empty() && d.until.is_none());
    p.delegations = vec![d.clone()];
    assert_eq!(profile_reasons(&p), vec![]);
    p.delegations = vec![d.clone(), d.clone()];
    assert_eq!(profile_reasons(&p), vec![Reason::InvalidDelegation]);
    let mut zero = d.clone();
    zero.max_access_level = 0;
    p.delegations = vec![zero];
    assert_eq!(profile_reasons(&p), vec![Reason::InvalidDelegation]);
    p.representatives = vec![];
    p.delegations = vec![d];
    let problems = validate_profile(&p);
    assert_eq!(problems[0].reason, Reason::InvalidDelegation);
    assert_eq!(problems[0].field.as_deref(), Some("delegations[0]"));
}

#[test]
fn profile_version_and_access_level() {
    let mut p = profile(PERSON);
    p.schema_version = 2;
    p.access_level = 4;
    p.mobile = Some("123".to_owned());
    let mut got = profile_reasons(&p);
    got.sort();
    assert_eq!(
        got,
        vec![
            Reason::UnsupportedSchemaVersion,
            Reason::InvalidAccessLevel,
            Reason::InvalidMobile
        ]
    );
    p.schema_version = SCHEMA_VERSION;
    p.access_level = 0;
    p.mobile = None;
    assert_eq!(
        profile_reasons(&p),
        vec![],
        "level 0 (not verified) is a valid profile"
    );
}

#[test]
fn sent_at_outside_rfc3339_years_in_utc_is_invalid() {
    // Valid RFC 3339 text whose UTC instant falls in year 10000 or -1:
    // it could not be written back as RFC 3339, so a stored notice would
    // not re-decode.
    for ts in ["9999-12-31T23:59:59-01:00", "0000-01-01T00:00:00+01:00"] {
        let r = reject(&with("sent_at", json!(ts)));
        assert_only(&r, Reason::InvalidTimestamp, Some("sent_at"));
    }
    // The edges themselves are fine.
    let n = decode_ok(&with("sent_at", json!("9999-12-31T23:59:59Z")));
    assert_eq!(decode_ok(&serde_json::to_value(&n).unwrap()), n);
}

#[test]
fn fuzz_seed_corpus_is_what_its_names_say() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode_notice");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let result = decode_notice(&std::fs::read(&path).unwrap(), &Limits::default(), now());
        if name.starts_with("valid-") {
            let n = result.unwrap_or_else(|r| panic!("{name}: {:?}", r.problems));
            assert_eq!(
                decode_value(&serde_json::to_value(&n).unwrap()).as_ref(),
                Ok(&n),
                "{name}"
            );
        } else {
            assert!(
                name.starts_with("bad-"),
                "seed {name} must be named valid-* or bad-*"
            );
            assert!(result.is_err(), "{name} was accepted");
        }
        seen += 1;
    }
    assert!(seen >= 3, "the seed corpus is gone");
}
