//! Property tests of the envelope decoder: it never panics on any input,
//! every rejection says why, and every valid notice survives a round trip
//! through JSON — written with Persian digits, as `<id>@iran`, with `\u`
//! escapes or any time-zone offset.

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use karpoosheh_schemas::{
    decode_notice, AgencyId, Attachment, LifeEvent, Limits, MailboxId, Notice, NoticeKind,
    Rejection, SCHEMA_VERSION,
};
use proptest::prelude::*;
use serde_json::Value;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap()
}

fn check_rejection(r: &Rejection) {
    assert!(!r.problems.is_empty(), "a rejection without problems");
    for p in &r.problems {
        assert!(!p.message.is_empty(), "a problem without a message: {p:?}");
    }
    let _ = r.primary_reason();
    let _ = r.is_undecodable();
}

/// Decodes, checks the invariants that hold for any input, and returns the
/// result.
fn decode_checked(bytes: &[u8]) -> Result<Notice, Rejection> {
    let limits = Limits::default();
    let out = decode_notice(bytes, &limits, now());
    match &out {
        Ok(n) => {
            let again = decode_notice(&serde_json::to_vec(n).unwrap(), &limits, now());
            assert_eq!(
                again.as_ref(),
                Ok(n),
                "an accepted notice must re-decode to itself"
            );
        }
        Err(r) => check_rejection(r),
    }
    out
}

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

// ------------------------------------------------------------ strategies

fn mailbox_id() -> impl Strategy<Value = MailboxId> {
    prop_oneof![
        (0u32..1_000_000_000).prop_filter_map("never issued", MailboxId::person_from_body),
        (0u64..10_000_000_000).prop_filter_map("never issued", MailboxId::legal_from_body),
    ]
}

/// How the agency writes the recipient: ASCII, Persian or Arabic-Indic
/// digits, bare or as `<id>@iran`.
fn write_recipient(id: MailboxId, digits: u8, address: bool) -> String {
    let base = match digits {
        0 => 0,
        1 => 0x06F0,
        _ => 0x0660,
    };
    let mut s: String = id
        .to_string()
        .chars()
        .map(|c| {
            if base == 0 {
                c
            } else {
                char::from_u32(base + (c as u32 - '0' as u32)).unwrap()
            }
        })
        .collect();
    if address {
        s.push_str("@iran");
    }
    s
}

/// Text starting with a visible letter (Persian or Latin), then any
/// non-control characters, so it is never blank.
fn one_line(max_more: usize) -> impl Strategy<Value = String> {
    (
        r"[آ-یa-zA-Z0-9۰-۹]",
        proptest::collection::vec(r"[\PC]", 0..max_more),
    )
        .prop_map(|(first, rest)| first + &rest.concat())
}

fn body_text() -> impl Strategy<Value = String> {
    (r"[آ-یa-zA-Z]", proptest::collection::vec(prop_oneof![3 => r"[ آ-ی،؛۰-۹]", 2 => r"[a-zA-Z0-9 .,]", 1 => r"[\PC]", 1 => r"[\n\t]", 1 => Just("\r\n".to_owned())], 0..400))
        .prop_map(|(first, rest)| first + &rest.concat())
}

fn attachment() -> impl Strategy<Value = Attachment> {
    let media = proptest::sample::select(Limits::default().allowed_media_types);
    (one_line(40), media, 0u64..=2 * 1024 * 1024, "[0-9a-f]{64}").prop_map(
        |(name, media_type, size, sha256)| {
            // Path separators are not allowed in names.
            let name = name.replace(['/', '\\'], "_");
            Attachment {
                name,
                media_type,
                size,
                sha256,
            }
        },
    )
}

prop_compose! {
    fn timestamp(min: i64, max: i64)(secs in min..max, nanos in prop_oneof![Just(0u32), 0u32..1_000_000_000]) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, nanos).unwrap()
    }
}

prop_compose! {
    fn valid_notice()(
        agency in "[a-z][a-z0-9-]{1,31}",
        reference in one_line(100),
        recipient in mailbox_id(),
        kind in proptest::sample::select(NoticeKind::ALL),
        title in one_line(199),
        body in body_text(),
        attachments in proptest::collection::vec(attachment(), 0..=20),
        min_access_level in 1u8..=3,
        life_event in proptest::sample::select(LifeEvent::ALL),
        // Up to 40 years ahead of `now`; the limit is 50.
        expires_at in timestamp(now().timestamp() + 1, now().timestamp() + 40 * 365 * 86_400),
        // Any time RFC 3339 can write.
        sent_at in timestamp(Utc.with_ymd_and_hms(1, 1, 2, 0, 0, 0).unwrap().timestamp(), Utc.with_ymd_and_hms(9999, 12, 30, 0, 0, 0).unwrap().timestamp()),
        batch_id in proptest::option::of(one_line(100)),
    ) -> Notice {
        Notice {
            schema_version: SCHEMA_VERSION,
            agency: AgencyId::parse(&agency).unwrap(),
            reference,
            recipient,
            kind,
            title,
            body,
            attachments,
            min_access_level,
            life_event,
            expires_at,
            sent_at,
            batch_id,
        }
    }
}

/// Text that looks like JSON: object and array brackets, the envelope's
/// field names, strings with escapes and Persian text, numbers, literals.
fn json_ish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        proptest::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            ":",
            ",",
            " ",
            "\"",
            "null",
            "true",
            "false",
            "-",
            "0",
            "1",
            "1e999",
            "-0.5",
            "18446744073709551616",
            "\"schema_version\"",
            "\"agency\"",
            "\"reference\"",
            "\"recipient\"",
            "\"kind\"",
            "\"title\"",
            "\"body\"",
            "\"attachments\"",
            "\"name\"",
            "\"media_type\"",
            "\"size\"",
            "\"sha256\"",
            "\"min_access_level\"",
            "\"life_event\"",
            "\"expires_at\"",
            "\"sent_at\"",
            "\"batch_id\"",
            "\"tax\"",
            "\"0499370899\"",
            "\"۰۴۹۹۳۷۰۸۹۹@iran\"",
            "\"letter\"",
            "\"2031-01-01T00:00:00Z\"",
            "\"9999-12-31T23:59:59-23:59\"",
            "\"application/pdf\"",
            "\"\\u0627\\u0628\"",
            "\"\\ud83d\"",
            "\"\\ud83d\\ude00\"",
            "\"\\u0000\"",
            "\\",
            "\"ابلاغیه\"",
        ])
        .prop_map(str::to_owned),
        r#""[\PC]{0,12}""#,
        any::<i64>().prop_map(|n| n.to_string()),
    ];
    proptest::collection::vec(token, 0..48).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = decode_checked(&bytes);
    }

    #[test]
    fn never_panics_on_json_ish_text(text in json_ish()) {
        let _ = decode_checked(text.as_bytes());
    }

    #[test]
    fn never_panics_on_a_damaged_valid_notice(
        n in valid_notice(),
        cut in any::<proptest::sample::Index>(),
        at in any::<proptest::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let bytes = serde_json::to_vec(&n).unwrap();
        // Truncated anywhere.
        let truncated = &bytes[..cut.index(bytes.len() + 1)];
        let r = decode_checked(truncated);
        if truncated.len() < bytes.len() {
            prop_assert!(r.is_err(), "a truncated notice must be rejected");
        }
        // One byte replaced.
        let mut changed = bytes.clone();
        changed[at.index(bytes.len())] = byte;
        let _ = decode_checked(&changed);
    }

    #[test]
    fn valid_notices_decode_to_what_was_sent(
        n in valid_notice(),
        digits in 0u8..3,
        address in any::<bool>(),
        escape in any::<bool>(),
        offset_minutes in -(23 * 60 + 59)..=(23 * 60 + 59),
        upper_sha in any::<bool>(),
        pretty in any::<bool>(),
    ) {
        let mut v = serde_json::to_value(&n).unwrap();
        v["recipient"] = Value::String(write_recipient(n.recipient, digits, address));
        // The same instant written in another zone; keep sent_at in UTC
        // when the offset would take it out of years 0000-9999.
        let tz = FixedOffset::east_opt(offset_minutes * 60).unwrap();
        v["expires_at"] = Value::String(n.expires_at.with_timezone(&tz).to_rfc3339());
        let local = n.sent_at.with_timezone(&tz).to_rfc3339();
        if DateTime::parse_from_rfc3339(&local).is_ok() {
            v["sent_at"] = Value::String(local);
        }
        if upper_sha {
            for a in v["attachments"].as_array_mut().unwrap() {
                let up = a["sha256"].as_str().unwrap().to_ascii_uppercase();
                a["sha256"] = Value::String(up);
            }
        }
        let mut text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { serde_json::to_string(&v).unwrap() };
        if escape {
            text = escape_non_ascii(&text);
        }
        let decoded = decode_notice(text.as_bytes(), &Limits::default(), now());
        prop_assert_eq!(decoded.as_ref(), Ok(&n), "sent: {}", text);
        let decoded = decoded.unwrap();
        prop_assert_eq!(decoded.content_hash(), n.content_hash());

        // Serializing the stored notice and decoding it again round-trips.
        let stored = serde_json::to_vec(&decoded).unwrap();
        let again = decode_notice(&stored, &Limits::default(), now());
        prop_assert_eq!(again.as_ref(), Ok(&n));
        // And serde's own reader agrees with the validating decoder.
        let via_serde: Notice = serde_json::from_slice(&stored).unwrap();
        prop_assert_eq!(via_serde, n);
    }

    #[test]
    fn content_hash_ignores_sent_at_and_batch_id(
        n in valid_notice(),
        sent_at in timestamp(0, 4_000_000_000),
        batch_id in proptest::option::of("[a-z0-9]{1,20}"),
    ) {
        let mut resend = n.clone();
        resend.sent_at = sent_at;
        resend.batch_id = batch_id;
        prop_assert_eq!(n.content_hash(), resend.content_hash());
        let mut changed = n.clone();
        changed.body.push('.');
        prop_assert_ne!(n.content_hash(), changed.content_hash());
    }
}
