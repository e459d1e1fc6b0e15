//! Keeps docs/wire-contract.md in step with the code: every reason code is
//! documented with its description, and the examples are valid.

use std::path::PathBuf;

use chrono::{TimeZone, Utc};
use karpoosheh_schemas::{decode_notice, Limits, Reason, Receipt, ReceiptEvent, SCHEMA_VERSION};

fn contract() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/wire-contract.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text of the section that starts with `heading`, up to the next
/// heading of the same or a higher level.
fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let start = doc
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading:?}"));
    let level = heading.split(' ').next().unwrap();
    let rest = &doc[start + heading.len() + 2..];
    let end = rest
        .lines()
        .scan(0usize, |offset, line| {
            let here = *offset;
            *offset += line.len() + 1;
            Some((here, line))
        })
        .find(|(_, line)| {
            let hashes = line.split(' ').next().unwrap_or("");
            !hashes.is_empty() && hashes.chars().all(|c| c == '#') && hashes.len() <= level.len()
        })
        .map_or(rest.len(), |(at, _)| at);
    &rest[..end]
}

/// The fenced ```json blocks of a section, in order.
fn json_blocks(text: &str) -> Vec<&str> {
    text.split("```json\n")
        .skip(1)
        .map(|b| &b[..b.find("```").expect("unclosed code block")])
        .collect()
}

#[test]
fn every_reason_code_is_documented_with_its_description() {
    let doc = contract();
    let table = section(&doc, "## Reason codes");
    let mut missing = Vec::new();
    for &reason in Reason::ALL {
        let cell = format!("| `{}` |", reason.code());
        match table.lines().find(|l| l.starts_with(&cell)) {
            None => missing.push(reason.code()),
            Some(row) => {
                let plain = row.replace('`', "");
                assert!(
                    plain.contains(reason.describe()),
                    "the row of {} does not say {:?}:\n{row}",
                    reason.code(),
                    reason.describe()
                );
            }
        }
    }
    assert!(
        missing.is_empty(),
        "reason codes missing from the Reason codes table of docs/wire-contract.md: {missing:?}"
    );
}

#[test]
fn no_undefined_reason_code_is_documented() {
    let doc = contract();
    for line in section(&doc, "## Reason codes")
        .lines()
        .filter(|l| l.starts_with("| `"))
    {
        let code = line.trim_start_matches("| `").split('`').next().unwrap();
        assert!(
            Reason::from_code(code).is_some(),
            "docs/wire-contract.md documents {code:?}, which the code does not define"
        );
    }
}

#[test]
fn the_example_notice_is_valid_and_the_receipt_parses() {
    let doc = contract();
    let blocks = json_blocks(section(&doc, "## A complete example"));
    assert_eq!(blocks.len(), 2, "expected the notice and its receipt");
    let now = Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap();
    let notice = decode_notice(blocks[0].as_bytes(), &Limits::default(), now)
        .unwrap_or_else(|r| panic!("the documented example is rejected: {:?}", r.problems));
    assert_eq!(notice.recipient.to_string(), "0499370899");
    assert!(
        !notice.attachments.is_empty(),
        "the example shows an attachment"
    );

    let receipt: Receipt = serde_json::from_str(blocks[1]).expect("the example receipt parses");
    assert_eq!(receipt.schema_version, SCHEMA_VERSION);
    assert_eq!(
        receipt.reference.as_deref(),
        Some(notice.reference.as_str())
    );
    assert_eq!(receipt.agency, notice.agency);
    match receipt.event {
        ReceiptEvent::Accepted {
            tracking_code,
            duplicate,
            ..
        } => {
            assert!(!duplicate);
            assert!(
                tracking_code.unix_ms() >= notice.sent_at.timestamp_millis(),
                "issued before it was sent"
            );
        }
        other => panic!("the example receipt is {other:?}"),
    }
}

#[test]
fn documented_defaults_match_limits() {
    let doc = contract();
    let l = Limits::default();
    let fields = section(&doc, "## The notice envelope");
    for fact in [
        format!(
            "at most **{}** (`limits.max_payload_bytes`)",
            l.max_payload_bytes.to_string().replace("KiB", " KiB")
        ),
        format!(
            "1-{} characters (`limits.max_reference_chars`)",
            l.max_reference_chars
        ),
        format!(
            "1-{} **characters** (`limits.max_title_chars`",
            l.max_title_chars
        ),
        format!(
            "at most **{} of UTF-8 bytes** (`limits.max_body_bytes`)",
            l.max_body_bytes.to_string().replace("KiB", " KiB")
        ),
        format!("At most {} (`limits.max_attachments`)", l.max_attachments),
        format!(
            "each at most {} (`limits.max_attachment_bytes`)",
            l.max_attachment_bytes.to_string().replace("MiB", " MiB")
        ),
        format!(
            "together at most {} (`limits.max_total_attachment_bytes`)",
            l.max_total_attachment_bytes
                .to_string()
                .replace("MiB", " MiB")
        ),
        format!(
            "at most {} years ahead (`limits.max_retention`)",
            l.max_retention.0.as_secs() / (365 * 86_400)
        ),
    ] {
        assert!(
            fields.contains(&fact),
            "docs/wire-contract.md does not say {fact:?}"
        );
    }
    for media_type in l
        .allowed_media_types
        .iter()
        .filter(|m| !m.contains("openxmlformats"))
    {
        assert!(
            fields.contains(&format!("`{media_type}`")),
            "{media_type} is not in the documented default list"
        );
    }
}
