//! Proof bundles (`karpoosheh proof`, `karpoosheh verify`): a notice's
//! evidence in one self-contained JSON file, checked offline with public
//! keys only.
//!
//! ```json
//! {"type": "karpoosheh-proof", "version": 1,
//!  "tracking_code": "…", "content_hash": "<hex>",
//!  "events": [{"seq": 1, "prev": "…", "hash": "…", "event": {…receipt…}}, …],
//!  "head": {"typ": "karpoosheh-chain-head", "kid": "…", "tracking_code": "…",
//!           "seq": n, "hash": "…", "signed_at": "…"},
//!  "signature": "…", "keys": {"keys": [JWK, …]}}
//! ```
//!
//! Each event is the notice's receipt for it, without evidence; its
//! canonical bytes (RFC 8785) are what its chain hash covers. The head is
//! the node's signature, when the bundle was made, over the chain's last
//! event: what the node stands by. The receipts the agency kept carry the
//! same hashes, signed when each event happened.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::chain::{self, GENESIS};
use super::keys::{verify as verify_sig, PublicJwk, SigningKey};
use super::log::{LogEntry, Tree, TreeHead};
use super::merkle::{leaf_hash, root_from_path, Hash};
use super::{b64url, from_b64url, jcs};
use crate::model::StoredEvent;

pub const BUNDLE_TYPE: &str = "karpoosheh-proof";
pub const HEAD_TYP: &str = "karpoosheh-chain-head";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleEvent {
    pub seq: u32,
    pub prev: String,
    pub hash: String,
    pub event: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Head {
    pub typ: String,
    pub kid: String,
    pub tracking_code: String,
    pub seq: u32,
    pub hash: String,
    pub signed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<PublicJwk>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    #[serde(rename = "type")]
    pub type_: String,
    pub version: u32,
    pub tracking_code: String,
    pub content_hash: Option<String>,
    pub events: Vec<BundleEvent>,
    pub head: Head,
    pub signature: String,
    pub keys: Jwks,
    /// Where the notice's events are in the node's audit log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditProof>,
}

/// The events' places in the node's audit log, under one signed tree head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditProof {
    pub tree_head: TreeHead,
    pub events: Vec<EventInLog>,
}

/// A leaf's RFC 9162 inclusion proof in a signed receipt batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchPath {
    /// The node key that signed (its JWK kid).
    pub kid: String,
    pub signed_at: DateTime<Utc>,
    /// Receipts in the batch.
    pub size: u64,
    /// The leaf's index, from 0.
    pub index: u64,
    /// The batch's Merkle tree hash, base64url.
    pub root: String,
    /// The audit path from the leaf to the root, base64url hashes.
    pub path: Vec<String>,
    /// Ed25519 over the canonical batch head, base64url.
    pub signature: String,
}

/// One event's receipt batch, and that batch's place in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventInLog {
    pub seq: u32,
    /// The signed batch that carried the event's receipt, with the
    /// event's path to its root.
    pub batch: BatchPath,
    /// The batch's index in the log.
    pub entry: u64,
    /// The batch leaf's audit path to the tree head's root (RFC 9162,
    /// 2.1.3), base64url.
    pub log_path: Vec<String>,
}

/// The audit proof of `events` (each with the log entry that carried it,
/// its leaves included) under `head`, from the log's `tree`. An event
/// whose batch is not under the head yet, or is not found among that
/// entry's leaves, is left out (`check` says so).
pub fn audit_proof(events: &[(u32, Hash, LogEntry)], tree: &Tree, head: &TreeHead) -> AuditProof {
    let mut out = Vec::new();
    for (seq, hash, e) in events {
        if e.index >= head.size {
            continue;
        }
        let leaf = leaf_hash(hash);
        let Some(index) = e.leaves.iter().position(|l| *l == leaf) else {
            continue;
        };
        let path = super::merkle::paths(&e.leaves).swap_remove(index);
        let Some(log_path) = tree.inclusion(e.index, head.size) else {
            continue;
        };
        out.push(EventInLog {
            seq: *seq,
            batch: BatchPath {
                kid: e.kid.clone(),
                signed_at: e.signed_at,
                size: e.size,
                index: index as u64,
                root: b64url(&e.root),
                path: path.iter().map(|h| b64url(h)).collect(),
                signature: b64url(&e.signature),
            },
            entry: e.index,
            log_path: log_path.iter().map(|h| b64url(h)).collect(),
        });
    }
    AuditProof {
        tree_head: head.clone(),
        events: out,
    }
}

/// Makes the bundle of a notice's stored events, signed with `key`.
pub fn make(code: &str, events: &[StoredEvent], key: &SigningKey) -> Result<Bundle, String> {
    let head_hash =
        chain::verify(events).map_err(|b| format!("the stored chain is broken: {b}"))?;
    let last = events.last().ok_or("the notice has no stored events")?;
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        out.push(BundleEvent {
            seq: e.seq,
            prev: b64url(&e.prev),
            hash: b64url(&e.hash),
            event: serde_json::from_slice(&e.bytes).map_err(|e| e.to_string())?,
        });
    }
    let content_hash = out[0]
        .event
        .get("content_hash")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let head = Head {
        typ: HEAD_TYP.into(),
        kid: key.kid().into(),
        tracking_code: code.into(),
        seq: last.seq,
        hash: b64url(&head_hash),
        signed_at: Utc::now(),
    };
    let signature = b64url(&key.sign(&jcs::canonical_of(&head).map_err(|e| e.to_string())?));
    Ok(Bundle {
        type_: BUNDLE_TYPE.into(),
        version: 1,
        tracking_code: code.into(),
        content_hash,
        events: out,
        head,
        signature,
        keys: Jwks {
            keys: vec![key.public_jwk()],
        },
        audit: None,
    })
}

/// One check and how it went, in plain words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub ok: bool,
    pub what: String,
}

/// Checks a bundle offline: every event's hash and link, the head against
/// the last event, the signature with `trusted` keys (the bundle's own
/// when none are given, which the report then says), and `document`'s
/// content hash (a notice's JSON) against the first event.
pub fn check(bundle: &Bundle, trusted: Option<&Jwks>, document: Option<&[u8]>) -> Vec<Check> {
    let mut out = Vec::new();
    let mut push = |ok: bool, what: String| out.push(Check { ok, what });
    if bundle.type_ != BUNDLE_TYPE || bundle.version != 1 {
        push(false, format!("not a version-1 {BUNDLE_TYPE} bundle"));
        return out;
    }
    let mut prev: Hash = GENESIS;
    let mut chain_ok = true;
    for (i, e) in bundle.events.iter().enumerate() {
        let want = i as u32 + 1;
        let decoded = |s: &str| from_b64url(s).and_then(|b| Hash::try_from(b).ok());
        let (Some(p), Some(h)) = (decoded(&e.prev), decoded(&e.hash)) else {
            push(
                false,
                format!("event {want}: its hashes are not 32 bytes of base64url"),
            );
            chain_ok = false;
            break;
        };
        let bytes = match jcs::canonical(&e.event) {
            Ok(b) => b,
            Err(err) => {
                push(false, format!("event {want}: {err}"));
                chain_ok = false;
                break;
            }
        };
        if e.seq != want {
            push(
                false,
                format!("event {want} is missing (the next is numbered {})", e.seq),
            );
            chain_ok = false;
            break;
        }
        if p != prev {
            push(false, format!("event {want} does not link to event {}: an event before it was edited, removed or replaced", want - 1));
            chain_ok = false;
            break;
        }
        if chain::link(&p, &bytes) != h {
            push(
                false,
                format!("event {want} was edited: its content does not match its hash"),
            );
            chain_ok = false;
            break;
        }
        prev = h;
    }
    let code = bundle.tracking_code.as_str();
    let names_it = bundle
        .events
        .iter()
        .all(|e| e.event.get("tracking_code").and_then(|v| v.as_str()) == Some(code));
    let first_is_accepted = bundle.events.first().is_some_and(|e| {
        e.event.get("event").and_then(|v| v.as_str()) == Some("accepted")
            && e.event.get("duplicate").and_then(|v| v.as_bool()) == Some(false)
    });
    if !names_it || !first_is_accepted {
        push(
            false,
            format!("the events are not one notice's, starting with its acceptance ({code})"),
        );
        chain_ok = false;
    }
    if chain_ok {
        push(
            !bundle.events.is_empty(),
            format!(
                "the chain of {} events is intact, from accepted on",
                bundle.events.len()
            ),
        );
    }
    let head_ok = bundle.head.typ == HEAD_TYP
        && bundle.head.tracking_code == bundle.tracking_code
        && bundle.head.seq as usize == bundle.events.len()
        && bundle.head.hash == b64url(&prev);
    push(
        head_ok && chain_ok,
        if head_ok {
            format!(
                "the signed head names event {} of {}",
                bundle.head.seq, bundle.tracking_code
            )
        } else {
            "the signed head does not name this chain's last event".into()
        },
    );
    let keys = trusted.unwrap_or(&bundle.keys);
    let key = keys
        .keys
        .iter()
        .find(|k| k.kid == bundle.head.kid && k.crv == "Ed25519");
    let sig_ok = match (
        key.and_then(|k| from_b64url(&k.x)),
        from_b64url(&bundle.signature),
    ) {
        (Some(pk), Some(sig)) => jcs::canonical_of(&bundle.head)
            .map(|h| verify_sig(&pk, &h, &sig))
            .unwrap_or(false),
        _ => false,
    };
    push(
        sig_ok && trusted.is_some(),
        match (sig_ok, trusted.is_some()) {
            (true, true) => format!("signed by node key {} (one of the keys you trust)", bundle.head.kid),
            (true, false) => format!("signed by key {} as the bundle itself includes it, which proves nothing: give the operator's published keys with --jwks", bundle.head.kid),
            (false, _) => format!("the signature does not verify with key {}", bundle.head.kid),
        },
    );
    let key_of = |kid: &str| {
        trusted
            .and_then(|t| t.keys.iter().find(|k| k.kid == kid && k.crv == "Ed25519"))
            .and_then(|k| from_b64url(&k.x))
    };
    match &bundle.audit {
        None => push(
            false,
            "the bundle carries no audit-log proof (the node had published no tree head covering the notice)".into(),
        ),
        Some(a) => {
            let th = &a.tree_head;
            let th_ok = key_of(&th.kid).is_some_and(|pk| th.verify(&pk));
            push(
                th_ok,
                if th_ok {
                    format!(
                        "the tree head of node {}'s audit log ({} batches, {}) is signed by node key {}",
                        th.log, th.size, th.timestamp.to_rfc3339(), th.kid
                    )
                } else {
                    format!(
                        "the tree head's signature does not verify with a trusted key {}",
                        th.kid
                    )
                },
            );
            let mut logged = std::collections::BTreeSet::new();
            for e in &a.events {
                let event = bundle.events.iter().find(|x| x.seq == e.seq);
                let r = (|| -> Result<(), String> {
                    let event = event.ok_or("no such event in the bundle")?;
                    let hash: Hash = from_b64url(&event.hash)
                        .and_then(|h| h.try_into().ok())
                        .ok_or("its hash is not 32 bytes")?;
                    let dec = |v: &[String]| -> Option<Vec<Hash>> {
                        v.iter()
                            .map(|p| from_b64url(p).and_then(|p| p.try_into().ok()))
                            .collect()
                    };
                    let b = &e.batch;
                    let root = root_from_path(
                        b.index,
                        b.size,
                        &leaf_hash(&hash),
                        &dec(&b.path).ok_or("a batch path hash is not 32 bytes")?,
                    );
                    if root.map(|r| b64url(&r)) != Some(b.root.clone()) {
                        return Err("its path does not lead to its batch's root".into());
                    }
                    let head = super::seal::head_bytes(&b.kid, &b.root, &b.signed_at, b.size);
                    let sig = from_b64url(&b.signature).ok_or("the batch signature is not base64url")?;
                    if !key_of(&b.kid).is_some_and(|pk| verify_sig(&pk, &head, &sig)) {
                        return Err(format!("its batch is not signed by a trusted key {}", b.kid));
                    }
                    let root = root_from_path(
                        e.entry,
                        th.size,
                        &leaf_hash(&head),
                        &dec(&e.log_path).ok_or("a log path hash is not 32 bytes")?,
                    );
                    if root.map(|r| b64url(&r)) != Some(th.root.clone()) {
                        return Err(format!(
                            "its batch (log entry {}) is not in the tree head's log",
                            e.entry
                        ));
                    }
                    Ok(())
                })();
                match r {
                    Ok(()) => {
                        logged.insert(e.seq);
                    }
                    Err(why) => push(false, format!("event {}: {why}", e.seq)),
                }
            }
            if !logged.is_empty() {
                push(
                    true,
                    format!(
                        "events {} are in signed batches under that tree head",
                        logged.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
                    ),
                );
            }
            if !logged.contains(&1) {
                push(false, "the acceptance (event 1) is not proved in the audit log".into());
            }
            let later: Vec<String> = bundle
                .events
                .iter()
                .filter(|e| !logged.contains(&e.seq))
                .map(|e| e.seq.to_string())
                .collect();
            if !later.is_empty() && logged.contains(&1) {
                push(
                    true,
                    format!(
                        "events {} are not under that tree head yet (signed after it, or not logged)",
                        later.join(", ")
                    ),
                );
            }
        }
    }
    if let Some(doc) = document {
        let stored = bundle
            .events
            .first()
            .and_then(|e| e.event.get("content_hash"))
            .and_then(|v| v.as_str());
        let given = serde_json::from_slice::<serde_json::Value>(doc)
            .ok()
            .map(|v| v.get("notice").cloned().unwrap_or(v))
            .and_then(|v| serde_json::from_value::<karpoosheh_schemas::Notice>(v).ok())
            .map(|n| crate::model::hex(&n.content_hash()));
        push(
            given.is_some() && given.as_deref() == stored,
            match (&given, stored) {
                (None, _) => "the document is not a notice's JSON".into(),
                (Some(g), Some(s)) if g == s => {
                    "the document is the notice accepted (its content hash matches)".into()
                }
                _ => "the document is NOT the notice accepted (its content hash differs)".into(),
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use karpoosheh_schemas::{AgencyId, Receipt, ReceiptEvent, TrackingCode};

    fn events() -> Vec<StoredEvent> {
        let code = TrackingCode::from_parts(1_760_000_000_000, 3, 1);
        let mut out: Vec<StoredEvent> = Vec::new();
        for i in 0..=2u8 {
            let event = if i == 0 {
                ReceiptEvent::Accepted {
                    tracking_code: code,
                    duplicate: false,
                    content_hash: None,
                    verification_code: None,
                }
            } else {
                ReceiptEvent::Confirmed {
                    tracking_code: code,
                    count: i,
                }
            };
            let mut r = Receipt::new(
                format!("{code}-{i}"),
                AgencyId::parse("tax").unwrap(),
                Some("r".into()),
                Utc::now(),
                event,
            );
            chain::place(&mut out, &mut r);
        }
        out
    }

    /// Puts the events in one signed batch, the only entry of a log, and
    /// the bundle's audit proof under that log's signed head.
    fn with_audit(b: &mut Bundle, events: &[StoredEvent], key: &SigningKey) {
        let leaves: Vec<Hash> = events.iter().map(|e| leaf_hash(&e.hash)).collect();
        let root = super::super::merkle::root(&leaves);
        let signed_at = crate::model::to_millis(Utc::now());
        let size = leaves.len() as u64;
        let signature = key
            .sign(&super::super::seal::head_bytes(
                key.kid(),
                &b64url(&root),
                &signed_at,
                size,
            ))
            .to_vec();
        let entry = LogEntry {
            index: 0,
            kid: key.kid().into(),
            signed_at,
            root,
            size,
            signature,
            leaves,
            events: vec![],
        };
        let mut tree = Tree::default();
        tree.push(entry.leaf_hash());
        let head = TreeHead::sign(3, 1, &tree.root(1).unwrap(), key);
        let placed: Vec<_> = events
            .iter()
            .map(|e| (e.seq, e.hash, entry.clone()))
            .collect();
        b.audit = Some(audit_proof(&placed, &tree, &head));
    }

    #[test]
    fn a_bundle_verifies_and_says_what_broke() {
        let key = SigningKey::from_seed("node-3", [4; 32]).unwrap();
        let code = TrackingCode::from_parts(1_760_000_000_000, 3, 1).to_string();
        let evs = events();
        let mut b = make(&code, &evs, &key).unwrap();
        let trusted = Jwks {
            keys: vec![key.public_jwk()],
        };
        // Without the audit log's proof the bundle does not hold.
        assert!(check(&b, Some(&trusted), None)
            .iter()
            .any(|c| !c.ok && c.what.contains("no audit-log proof")));
        with_audit(&mut b, &evs, &key);
        // A batch that is not the one the tree head covers.
        let mut moved = b.clone();
        moved.audit.as_mut().unwrap().events[0].batch.root = b64url(&[7; 32]);
        let c = check(&moved, Some(&trusted), None);
        assert!(
            c.iter().any(|c| !c.ok && c.what.starts_with("event 1:")),
            "{c:?}"
        );
        // A tree head signed by someone else.
        let mut forged = b.clone();
        forged.audit.as_mut().unwrap().tree_head.size = 2;
        let c = check(&forged, Some(&trusted), None);
        assert!(
            c.iter()
                .any(|c| !c.ok && c.what.contains("tree head's signature")),
            "{c:?}"
        );
        let json = serde_json::to_string(&b).unwrap();
        let back: Bundle = serde_json::from_str(&json).unwrap();
        assert!(check(&back, Some(&trusted), None).iter().all(|c| c.ok));
        // Without trusted keys, the bundle's own key proves nothing.
        assert!(check(&back, None, None).iter().any(|c| !c.ok));
        // Another notice's events under this tracking code.
        let mut moved = back.clone();
        moved.tracking_code = TrackingCode::from_parts(1_760_000_000_000, 3, 2).to_string();
        assert!(check(&moved, Some(&trusted), None).iter().any(|c| !c.ok));
        let mut edited = back.clone();
        edited.events[1].event["count"] = 9.into();
        let c = check(&edited, Some(&trusted), None);
        assert!(
            c.iter()
                .any(|c| !c.ok && c.what.contains("event 2 was edited")),
            "{c:?}"
        );
        let mut removed = back.clone();
        removed.events.remove(1);
        let c = check(&removed, Some(&trusted), None);
        assert!(
            c.iter()
                .any(|c| !c.ok && c.what.contains("event 2 is missing")),
            "{c:?}"
        );
        let other = SigningKey::from_seed("node-3", [5; 32]).unwrap();
        let c = check(
            &back,
            Some(&Jwks {
                keys: vec![other.public_jwk()],
            }),
            None,
        );
        assert!(
            c.iter()
                .any(|c| !c.ok && c.what.contains("does not verify")),
            "{c:?}"
        );
    }
}
