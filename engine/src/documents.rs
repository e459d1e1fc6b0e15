//! Article 15: is a printed copy of a notice genuine? Whoever holds the
//! paper reads its tracking code and verification code (or scans the QR
//! code, which holds both) and asks any node. The answer says whether the
//! pair belongs to a notice this system stored and, if so, only what the
//! paper itself shows: the agency, the kind and the issue date — nothing
//! about the recipient or the notice's fate. With the electronic document
//! (the notice's JSON) it also says whether its content hash matches.
//!
//! The verification code is computed from the content hash
//! (`karpoosheh_schemas::verification_code`), which is kept in the
//! notice's first event as long as its delivery record, so papers stay
//! verifiable after the body's retention has passed.

use chrono::{DateTime, Utc};
use karpoosheh_schemas::{normalize_verification_code, Notice, TrackingCode};
use serde::Serialize;

use crate::store::{Store, StoreError};

/// The answer to one inquiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inquiry {
    /// The tracking code and verification code belong to a notice stored
    /// here. False also for a code that does not parse, or a notice no
    /// longer kept: the two are never told apart.
    pub genuine: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// When the notice was accepted: its issue date in the system.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<DateTime<Utc>>,
    /// With a document: whether its content hash is the stored notice's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document_matches: Option<bool>,
    /// Whose notice it is, for the traffic record; never answered.
    #[serde(skip)]
    pub mailbox: Option<karpoosheh_schemas::MailboxId>,
}

impl Inquiry {
    fn not_genuine() -> Inquiry {
        Inquiry {
            genuine: false,
            agency: None,
            kind: None,
            issued_at: None,
            document_matches: None,
            mailbox: None,
        }
    }

    /// The metric label of this answer.
    pub fn result(&self) -> &'static str {
        match (self.genuine, self.document_matches) {
            (false, _) => "not_genuine",
            (true, Some(false)) => "document_mismatch",
            (true, _) => "genuine",
        }
    }
}

/// What identifies a stored notice to the holder of a paper copy: its
/// content hash, agency and acceptance time.
type Identity = ([u8; 32], String, DateTime<Utc>);

/// A notice's [`Identity`], from its first event (or from the notice
/// itself, for one stored before evidence).
fn identity(store: &dyn Store, code: TrackingCode) -> Result<Option<Identity>, StoreError> {
    #[derive(serde::Deserialize)]
    struct First {
        agency: String,
        at: DateTime<Utc>,
        content_hash: Option<String>,
    }
    if let Some(e) = store.events(code)?.first() {
        if let Ok(f) = serde_json::from_slice::<First>(&e.bytes) {
            if let Some(h) = f.content_hash.as_deref().and_then(unhex) {
                return Ok(Some((h, f.agency, f.at)));
            }
        }
    }
    Ok(store.notice(code)?.map(|n| {
        (
            n.content_hash,
            n.notice.agency.as_str().to_owned(),
            n.accepted_at,
        )
    }))
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A document as the recipient may have it: the notice's JSON, alone or
/// inside `karpoosheh notice --json`'s object.
fn document_hash(document: &[u8]) -> Option<[u8; 32]> {
    let v: serde_json::Value = serde_json::from_slice(document).ok()?;
    let v = v.get("notice").cloned().unwrap_or(v);
    serde_json::from_value::<Notice>(v)
        .ok()
        .map(|n| n.content_hash())
}

/// Answers one inquiry (counted by the caller).
pub fn inquire(
    store: &dyn Store,
    tracking_code: &str,
    verification_code: &str,
    document: Option<&[u8]>,
) -> Result<Inquiry, StoreError> {
    let (Ok(code), Some(given)) = (
        TrackingCode::parse(tracking_code.trim()),
        normalize_verification_code(verification_code),
    ) else {
        return Ok(Inquiry::not_genuine());
    };
    let Some((hash, agency, issued_at)) = identity(store, code)? else {
        return Ok(Inquiry::not_genuine());
    };
    // Compared whole: a code is either right or not.
    if karpoosheh_schemas::verification_code(&code, &hash) != given {
        return Ok(Inquiry::not_genuine());
    }
    let delivery = store.delivery(code)?;
    if delivery.as_ref().is_some_and(|d| !d.in_mailbox()) {
        // A scheduled send not yet landed, or cancelled: it reached nobody,
        // so no paper of it is a served notice (and no mailbox is told).
        return Ok(Inquiry::not_genuine());
    }
    Ok(Inquiry {
        genuine: true,
        agency: Some(agency),
        kind: delivery.as_ref().map(|d| d.kind.as_str().to_owned()),
        issued_at: Some(issued_at),
        document_matches: document.map(|d| document_hash(d) == Some(hash)),
        mailbox: delivery.map(|d| d.recipient),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Entry;
    use crate::store::{Durability, FjallStore, FjallStoreConfig, NoticeStore};

    /// A scheduled send not yet landed reached nobody: no paper of it is
    /// genuine (though its agency holds the code from `accepted`).
    #[test]
    fn a_paper_of_a_held_notice_is_not_genuine() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = FjallStoreConfig::new(dir.path());
        cfg.durability = Durability::Buffered;
        let store = FjallStore::open(cfg).unwrap();
        let mut entries = crate::store::conformance::sample_entries(2);
        let Entry::Notice(n) = &mut entries[0] else {
            unreachable!()
        };
        n.deliver_at = Some(n.accepted_at + chrono::Duration::days(30));
        let held = (n.tracking_code, n.content_hash);
        let Entry::Notice(m) = &entries[1] else {
            unreachable!()
        };
        let landed = (m.tracking_code, m.content_hash);
        store.write(&entries).unwrap();
        let ask = |(code, hash): (TrackingCode, [u8; 32])| {
            let v = karpoosheh_schemas::verification_code(&code, &hash);
            inquire(&store, &code.to_string(), &v, None).unwrap()
        };
        assert_eq!(ask(held), Inquiry::not_genuine());
        assert!(ask(landed).genuine, "the other one is");
    }

    #[test]
    fn a_paper_is_genuine_only_with_its_own_code() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = FjallStoreConfig::new(dir.path());
        cfg.durability = Durability::Buffered;
        let store = FjallStore::open(cfg).unwrap();
        let entries = crate::store::conformance::sample_entries(2);
        store.write(&entries).unwrap();
        let Entry::Notice(n) = &entries[0] else {
            unreachable!()
        };
        let code = n.tracking_code.to_string();
        let vcode = karpoosheh_schemas::verification_code(&n.tracking_code, &n.content_hash);
        let ok = inquire(&store, &code, &vcode.to_lowercase(), None).unwrap();
        assert!(ok.genuine);
        assert_eq!(ok.agency.as_deref(), Some(n.notice.agency.as_str()));
        assert_eq!(ok.kind.as_deref(), Some(n.notice.kind.as_str()));
        assert_eq!(ok.issued_at, Some(n.accepted_at));
        assert_eq!(ok.result(), "genuine");
        // Nothing about the recipient, in any answer.
        let text = serde_json::to_string(&ok).unwrap();
        assert!(!text.contains(&n.notice.recipient.to_string()), "{text}");
        // Another notice's code, a made-up one, an unknown tracking code.
        let Entry::Notice(m) = &entries[1] else {
            unreachable!()
        };
        let theirs = karpoosheh_schemas::verification_code(&m.tracking_code, &m.content_hash);
        for (c, v) in [
            (code.as_str(), theirs.as_str()),
            (code.as_str(), "0000-0000"),
            ("07ZZ-ZZZZ-ZZZZ-ZZ", vcode.as_str()),
            ("nonsense", vcode.as_str()),
        ] {
            let a = inquire(&store, c, v, None).unwrap();
            assert_eq!(a, Inquiry::not_genuine(), "{c} {v}");
        }
        // The electronic document: the same notice, or an edited one.
        let doc = serde_json::to_vec(&n.notice).unwrap();
        let a = inquire(&store, &code, &vcode, Some(&doc)).unwrap();
        assert_eq!(a.document_matches, Some(true));
        let mut edited = n.notice.clone();
        edited.body.push('.');
        let a = inquire(
            &store,
            &code,
            &vcode,
            Some(&serde_json::to_vec(&edited).unwrap()),
        )
        .unwrap();
        assert_eq!(a.document_matches, Some(false));
        assert_eq!(a.result(), "document_mismatch");
    }
}
