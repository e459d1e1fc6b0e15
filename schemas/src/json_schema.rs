//! JSON Schema files for every message, generated from the Rust types.
//!
//! The files under `schemas/json/` are what agencies validate against;
//! a test fails when they differ from what the types generate. Regenerate
//! with `UPDATE_SCHEMAS=1 cargo test -p karpoosheh-schemas`.

use schemars::{schema_for, Schema};

use crate::messages::{Confirmation, DeadLetter, MailboxProfile, Receipt};
use crate::notice::Notice;

/// Every message schema, with the file name it is published under.
pub fn all_schemas() -> Vec<(&'static str, Schema)> {
    vec![
        ("notice.schema.json", envelope_schema()),
        ("receipt.schema.json", schema_for!(Receipt)),
        ("confirmation.schema.json", schema_for!(Confirmation)),
        ("mailbox-profile.schema.json", schema_for!(MailboxProfile)),
        ("dead-letter.schema.json", schema_for!(DeadLetter)),
    ]
}

/// The envelope: the notice's fields, and how it is to be delivered
/// (`deliver_at`, kept in the delivery record, not in the notice or its
/// content hash: `decode::Envelope`).
fn envelope_schema() -> Schema {
    let mut s = schema_for!(Notice);
    if let Some(props) = s
        .as_object_mut()
        .and_then(|o| o.get_mut("properties"))
        .and_then(|p| p.as_object_mut())
    {
        props.insert(
            "deliver_at".into(),
            serde_json::json!({
                "description": "A scheduled send: stored at once (accepted, with a tracking code), not in the mailbox and not notified until then; cancellable until then. RFC 3339 with a time zone, before `expires_at`, at most `limits.max_schedule_ahead` ahead; a time already past means at once.",
                "type": ["string", "null"],
                "format": "date-time"
            }),
        );
        props.insert(
            "respond_by".into(),
            serde_json::json!({
                "description": "The recipient's deadline to respond (a court date, a payment's last day): a reminder goes `delivery.reminder_before` ahead of it to a recipient who has neither opened nor confirmed the notice. RFC 3339 with a time zone, after the notice lands (now, or `deliver_at`) and not after `expires_at`. Not part of the content: state the legal deadline in the body too.",
                "type": ["string", "null"],
                "format": "date-time"
            }),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn json_schema_files_are_current() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("json");
        let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
        let mut stale = Vec::new();
        for (name, schema) in all_schemas() {
            let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
            let path = dir.join(name);
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(name);
            }
        }
        assert!(
            stale.is_empty(),
            "stale JSON Schema files {stale:?}: run `UPDATE_SCHEMAS=1 cargo test -p karpoosheh-schemas` and commit schemas/json/"
        );
    }

    #[test]
    fn every_schema_requires_a_version() {
        for (name, schema) in all_schemas() {
            let v = schema.as_value();
            let props = v
                .get("properties")
                .unwrap_or_else(|| panic!("{name} has no properties"));
            assert!(
                props.get("schema_version").is_some(),
                "{name} has no schema_version"
            );
            let required = v.get("required").and_then(|r| r.as_array()).unwrap();
            assert!(
                required.iter().any(|r| r == "schema_version"),
                "{name} does not require schema_version"
            );
        }
    }
}
