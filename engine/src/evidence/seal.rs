//! Signed receipt batches. Signing every receipt would cost more than
//! storing it, so receipts are sealed in batches: their leaves form an
//! RFC 9162 Merkle tree, the node signs the batch's tree head once, and
//! each receipt carries the signed head and its inclusion proof:
//!
//! ```text
//! leaf      = the event's chain hash, or SHA-256(JCS(receipt without evidence))
//!             for a receipt that is no event of a stored notice
//! root      = MTH(leaf_1 … leaf_n)                      (RFC 9162, 2.1.1)
//! head      = JCS({"kid":…, "root":…, "signed_at":…, "size":n, "typ":"karpoosheh-receipt-batch"})
//! signature = Ed25519(node key, head)
//! ```

use std::sync::Arc;

use chrono::{DateTime, Utc};
use karpoosheh_schemas::{BatchProof, Evidence, Receipt};

use super::keys::SigningKey;
use super::log::{BatchLog, SealedBatch};
use super::merkle::{leaf_hash, paths, root, sha256, Hash};
use super::{b64url, chain, jcs};

/// Receipts per signed batch: a proof of 8 hashes, and one signature per
/// 256 receipts.
pub const BATCH: usize = 256;

/// The `typ` of a receipt batch head.
pub const BATCH_TYP: &str = "karpoosheh-receipt-batch";

/// A receipt's leaf: what the batch tree commits to.
pub fn leaf_of(r: &Receipt) -> Hash {
    chain::claimed_hash(r).unwrap_or_else(|| sha256(&[&chain::event_bytes(r)]))
}

/// The canonical bytes the node signs for a batch.
pub fn head_bytes(kid: &str, root: &str, signed_at: &DateTime<Utc>, size: u64) -> Vec<u8> {
    jcs::canonical(&serde_json::json!({
        "kid": kid,
        "root": root,
        "signed_at": signed_at,
        "size": size,
        "typ": BATCH_TYP,
    }))
    .expect("a head is strings and an integer")
}

/// Signs receipts in batches with the node's key, and appends each batch
/// to the node's audit log (when it keeps one) before the receipts leave.
#[derive(Clone)]
pub struct Sealer {
    key: Arc<SigningKey>,
    log: Option<Arc<dyn BatchLog>>,
}

impl Sealer {
    pub fn new(key: Arc<SigningKey>) -> Sealer {
        Sealer { key, log: None }
    }

    /// Every batch is appended to `log` (durably) before `seal` returns.
    pub fn with_log(mut self, log: Arc<dyn BatchLog>) -> Sealer {
        self.log = Some(log);
        self
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    pub fn key_handle(&self) -> Arc<SigningKey> {
        self.key.clone()
    }

    /// The node's public key as a JSON Web Key Set (RFC 7517, RFC 8037).
    pub fn jwks(&self) -> String {
        serde_json::to_string(&serde_json::json!({ "keys": [self.key.public_jwk()] }))
            .expect("a JWK set serialises")
    }

    /// Adds each receipt's batch proof, signing once per [`BATCH`], and
    /// appends the batches to the audit log. When the log refuses them
    /// (the store failed) the receipts must not be published: seal them
    /// again later.
    pub fn seal<'a>(
        &self,
        receipts: impl IntoIterator<Item = &'a mut Receipt>,
    ) -> Result<(), String> {
        let mut all: Vec<&mut Receipt> = receipts.into_iter().collect();
        // To the millisecond, as the stores keep it in the audit log.
        let now = super::log::to_millis(Utc::now());
        let mut sealed = Vec::new();
        for chunk in all.chunks_mut(BATCH) {
            let leaves: Vec<Hash> = chunk.iter().map(|r| leaf_hash(&leaf_of(r))).collect();
            let root_hash = root(&leaves);
            let root_b64 = b64url(&root_hash);
            let size = leaves.len() as u64;
            let raw_signature = self
                .key
                .sign(&head_bytes(self.key.kid(), &root_b64, &now, size));
            let signature = b64url(&raw_signature);
            if self.log.is_some() {
                sealed.push(SealedBatch {
                    kid: self.key.kid().to_owned(),
                    signed_at: now,
                    root: root_hash,
                    signature: raw_signature.to_vec(),
                    events: chunk
                        .iter()
                        .filter_map(|r| {
                            let seq = r.evidence.as_ref()?.chain.as_ref()?.seq;
                            Some((chain::code_of(r)?, seq))
                        })
                        .collect(),
                    leaves: leaves.clone(),
                });
            }
            for (i, (r, path)) in chunk.iter_mut().zip(paths(&leaves)).enumerate() {
                let proof = BatchProof {
                    kid: self.key.kid().to_owned(),
                    signed_at: now,
                    size,
                    index: i as u64,
                    root: root_b64.clone(),
                    path: path.iter().map(|h| b64url(h)).collect(),
                    signature: signature.clone(),
                };
                match &mut r.evidence {
                    Some(e) => e.batch = Some(proof),
                    None => {
                        r.evidence = Some(Evidence {
                            chain: None,
                            batch: Some(proof),
                        })
                    }
                }
            }
        }
        match &self.log {
            Some(log) if !sealed.is_empty() => log.append(sealed),
            _ => Ok(()),
        }
    }
}

/// Checks one receipt's evidence with the signer's public key: its chain
/// hash (when it has one) against its content, its leaf's path to the
/// root, and the signature over the head. Offline, with the key only.
pub fn verify_receipt(r: &Receipt, public_key: &[u8]) -> Result<(), String> {
    use super::from_b64url;
    let ev = r
        .evidence
        .as_ref()
        .ok_or("the receipt carries no evidence")?;
    if let Some(c) = &ev.chain {
        let prev: Hash = from_b64url(&c.prev)
            .and_then(|p| p.try_into().ok())
            .ok_or("chain.prev is not 32 bytes")?;
        if b64url(&chain::link(&prev, &chain::event_bytes(r))) != c.hash {
            return Err("the chain hash is not the hash of this receipt".into());
        }
    }
    let b = ev
        .batch
        .as_ref()
        .ok_or("the receipt carries no batch proof")?;
    let path: Vec<Hash> = b
        .path
        .iter()
        .map(|p| from_b64url(p).and_then(|p| p.try_into().ok()))
        .collect::<Option<_>>()
        .ok_or("a path hash is not 32 bytes")?;
    let root = super::merkle::root_from_path(b.index, b.size, &leaf_hash(&leaf_of(r)), &path)
        .ok_or("the path does not fit a batch of that size")?;
    if b64url(&root) != b.root {
        return Err("the inclusion proof does not lead to the signed root".into());
    }
    let sig = from_b64url(&b.signature).ok_or("the signature is not base64url")?;
    if !super::keys::verify(
        public_key,
        &head_bytes(&b.kid, &b.root, &b.signed_at, b.size),
        &sig,
    ) {
        return Err("the batch signature does not verify with that key".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use karpoosheh_schemas::{AgencyId, Problem, Reason, ReceiptEvent, TrackingCode};

    #[test]
    fn sealed_receipts_verify_and_edited_ones_do_not() {
        let key = Arc::new(SigningKey::from_seed("node-3", [1; 32]).unwrap());
        let sealer = Sealer::new(key.clone());
        let mut receipts: Vec<Receipt> = (0..300u16)
            .map(|i| {
                let code = TrackingCode::from_parts(1_760_000_000_000, 3, i);
                let event = if i % 7 == 0 {
                    ReceiptEvent::Rejected {
                        problems: vec![Problem::new(
                            Reason::BadCheckDigit,
                            "recipient".to_owned(),
                            "x",
                        )],
                    }
                } else {
                    ReceiptEvent::Accepted {
                        tracking_code: code,
                        duplicate: false,
                        content_hash: None,
                        verification_code: None,
                    }
                };
                let mut r = Receipt::new(
                    format!("r-{i}"),
                    AgencyId::parse("tax").unwrap(),
                    Some(format!("ref-{i}")),
                    Utc::now(),
                    event,
                );
                if i % 7 != 0 {
                    chain::append(0, chain::GENESIS, &mut r);
                }
                r
            })
            .collect();
        sealer.seal(receipts.iter_mut()).unwrap();
        for r in &receipts {
            verify_receipt(r, key.public_key()).unwrap();
            // Through JSON, as an agency reads it.
            let back: Receipt = serde_json::from_str(&serde_json::to_string(r).unwrap()).unwrap();
            verify_receipt(&back, key.public_key()).unwrap();
        }
        assert_eq!(
            receipts[299]
                .evidence
                .as_ref()
                .unwrap()
                .batch
                .as_ref()
                .unwrap()
                .size,
            44
        );
        let other = SigningKey::from_seed("node-3", [2; 32]).unwrap();
        assert!(verify_receipt(&receipts[0], other.public_key()).is_err());
        let mut edited = receipts[1].clone();
        edited.reference = Some("forged".into());
        assert!(verify_receipt(&edited, key.public_key())
            .unwrap_err()
            .contains("chain hash"));
        let mut edited = receipts[7].clone();
        edited.reference = Some("forged".into());
        assert!(verify_receipt(&edited, key.public_key())
            .unwrap_err()
            .contains("root"));
    }
}
