//! The node's audit log: an append-only RFC 9162 (Certificate
//! Transparency 2.0) Merkle tree whose leaves are the node's signed
//! receipt batches, one leaf per batch, in the order they were signed.
//! The node signs a tree head at an interval and publishes it with a
//! consistency proof from the previous one, so a node that later rewrote
//! or dropped a batch would contradict a head it already published:
//!
//! ```text
//! leaf      = the batch head, JCS({"kid", "root", "signed_at", "size",
//!             "typ":"karpoosheh-receipt-batch"})       (seal::head_bytes)
//! leaf hash = SHA-256(0x00 || leaf)
//! tree head = JCS({"kid", "log", "root", "size", "timestamp",
//!             "typ":"karpoosheh-tree-head"}), signed with Ed25519
//! ```
//!
//! An event is therefore proved in two steps: its leaf's path to its
//! batch's root (as in the receipt), and the batch's path to a tree head
//! (RFC 9162, 2.1.3). Two heads are proved consistent by 2.1.4.
//!
//! The tree keeps every level in memory (64 bytes per batch of up to 256
//! receipts: about 250 MB per billion receipts), so any inclusion or
//! consistency proof costs O(log² n) hashes.

use chrono::{DateTime, Utc};
use karpoosheh_schemas::TrackingCode;
use serde::{Deserialize, Serialize};

use super::keys::SigningKey;
use super::merkle::{leaf_hash, node_hash, sha256, Hash};
use super::{b64url, from_b64url, jcs, seal};

/// The `typ` of a signed tree head.
pub const TREE_HEAD_TYP: &str = "karpoosheh-tree-head";

/// One signed receipt batch, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// Its position in the node's log, from 0.
    pub index: u64,
    pub kid: String,
    pub signed_at: DateTime<Utc>,
    /// The batch's Merkle tree hash.
    pub root: Hash,
    /// Receipts in the batch.
    pub size: u64,
    /// The node's Ed25519 signature over the batch head.
    pub signature: Vec<u8>,
    /// The batch's leaf hashes, in order (read back only for proofs).
    pub leaves: Vec<Hash>,
    /// The notice events in the batch: (tracking code, chain seq), so a
    /// proof finds the batch of an event. Written, never read back.
    pub events: Vec<(TrackingCode, u32)>,
}

impl LogEntry {
    /// The batch head the node signed: the log's leaf.
    pub fn head_bytes(&self) -> Vec<u8> {
        seal::head_bytes(&self.kid, &b64url(&self.root), &self.signed_at, self.size)
    }

    /// The hash of this entry's leaf in the log.
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.head_bytes())
    }

    /// Sets the batch's leaves from their stored form (32-byte hashes,
    /// concatenated), which must hold exactly `size` of them.
    pub fn set_leaves(&mut self, stored: &[u8]) -> Result<(), String> {
        if stored.len() as u64 != self.size * 32 {
            return Err(format!(
                "audit log entry {}: {} bytes of leaves for {} receipts",
                self.index,
                stored.len(),
                self.size
            ));
        }
        self.leaves = stored
            .chunks_exact(32)
            .map(|c| Hash::try_from(c).expect("32-byte chunks"))
            .collect();
        Ok(())
    }
}

/// A batch as the sealer made it, before the log numbers it.
#[derive(Debug, Clone)]
pub struct SealedBatch {
    pub kid: String,
    pub signed_at: DateTime<Utc>,
    pub root: Hash,
    pub signature: Vec<u8>,
    pub leaves: Vec<Hash>,
    pub events: Vec<(TrackingCode, u32)>,
}

/// Where sealed batches go before their receipts leave the node: the
/// node's audit log. An error keeps the receipts back.
pub trait BatchLog: Send + Sync {
    fn append(&self, batches: Vec<SealedBatch>) -> Result<(), LogError>;
}

/// The audit log refused batches: their receipts must not leave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("appending to the audit log: {message}")]
pub struct LogError {
    pub message: String,
    /// The store refuses every later write as well (a restart is needed).
    pub fatal: bool,
}

/// A signed tree head (RFC 9162, 4.10, in this engine's JSON form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeHead {
    /// The log: the node ID (`node_id`) that keeps it.
    pub log: u16,
    /// Batches in the tree.
    pub size: u64,
    /// The tree's root, base64url.
    pub root: String,
    /// When the node signed it, by its own clock.
    pub timestamp: DateTime<Utc>,
    /// The node key that signed.
    pub kid: String,
    /// Ed25519 over [`TreeHead::signed_bytes`], base64url.
    pub signature: String,
}

impl TreeHead {
    /// The canonical bytes the node signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        jcs::canonical(&serde_json::json!({
            "kid": self.kid,
            "log": self.log,
            "root": self.root,
            "size": self.size,
            "timestamp": self.timestamp,
            "typ": TREE_HEAD_TYP,
        }))
        .expect("a tree head is strings and integers")
    }

    pub fn sign(log: u16, size: u64, root: &Hash, key: &SigningKey) -> TreeHead {
        let mut head = TreeHead {
            log,
            size,
            root: b64url(root),
            // Milliseconds, as a CQL timestamp keeps them.
            timestamp: crate::model::to_millis(Utc::now()),
            kid: key.kid().to_owned(),
            signature: String::new(),
        };
        head.signature = b64url(&key.sign(&head.signed_bytes()));
        head
    }

    /// Whether `public_key` signed this head.
    pub fn verify(&self, public_key: &[u8]) -> bool {
        from_b64url(&self.signature)
            .is_some_and(|sig| super::keys::verify(public_key, &self.signed_bytes(), &sig))
    }

    pub fn root_hash(&self) -> Option<Hash> {
        from_b64url(&self.root).and_then(|r| r.try_into().ok())
    }
}

/// What the node publishes on the audit topic: a signed tree head and the
/// proof that it extends the previous one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeHeadMessage {
    /// Always `tree_head`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(flatten)]
    pub head: TreeHead,
    /// From the previous head this node published (absent on its first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Consistency>,
}

/// An RFC 9162 consistency proof between two heads of one log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consistency {
    pub from_size: u64,
    pub from_root: String,
    /// base64url hashes, in the order of RFC 9162, 2.1.4.1.
    pub path: Vec<String>,
}

/// The largest power of two smaller than `n` (n > 1).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The audit log's Merkle tree, every level in memory.
#[derive(Debug, Default, Clone)]
pub struct Tree {
    /// `levels[k][i]`: the hash of the perfect subtree over leaves
    /// `i·2^k .. (i+1)·2^k`.
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut k = 0;
        let mut h = leaf;
        loop {
            if self.levels.len() == k {
                self.levels.push(Vec::new());
            }
            self.levels[k].push(h);
            let level = &self.levels[k];
            if level.len() % 2 == 1 {
                return;
            }
            h = node_hash(&level[level.len() - 2], &level[level.len() - 1]);
            k += 1;
        }
    }

    /// MTH(D[lo:hi]) (RFC 9162, 2.1.1); `hi` at most the size.
    fn mth(&self, lo: u64, hi: u64) -> Hash {
        let n = hi - lo;
        if n == 0 {
            return sha256(&[]);
        }
        if n.is_power_of_two() && lo % n == 0 {
            return self.levels[n.trailing_zeros() as usize][(lo / n) as usize];
        }
        let k = split(n);
        node_hash(&self.mth(lo, lo + k), &self.mth(lo + k, hi))
    }

    /// The root of the tree's first `size` leaves.
    pub fn root(&self, size: u64) -> Option<Hash> {
        (size <= self.size()).then(|| self.mth(0, size))
    }

    /// The audit path of leaf `index` in the tree of the first `size`
    /// leaves (RFC 9162, 2.1.3.1), leaf-up.
    pub fn inclusion(&self, index: u64, size: u64) -> Option<Vec<Hash>> {
        if index >= size || size > self.size() {
            return None;
        }
        let mut out = Vec::new();
        self.path(index, 0, size, &mut out);
        Some(out)
    }

    fn path(&self, m: u64, lo: u64, hi: u64, out: &mut Vec<Hash>) {
        let n = hi - lo;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, lo, lo + k, out);
            out.push(self.mth(lo + k, hi));
        } else {
            self.path(m - k, lo + k, hi, out);
            out.push(self.mth(lo, lo + k));
        }
    }

    /// The consistency proof from the tree of the first `m` leaves to
    /// that of the first `n` (RFC 9162, 2.1.4.1); empty when `m` is 0 or
    /// `m == n`.
    pub fn consistency(&self, m: u64, n: u64) -> Option<Vec<Hash>> {
        if m > n || n > self.size() {
            return None;
        }
        let mut out = Vec::new();
        if m > 0 && m < n {
            self.subproof(m, 0, n, true, &mut out);
        }
        Some(out)
    }

    fn subproof(&self, m: u64, lo: u64, hi: u64, whole: bool, out: &mut Vec<Hash>) {
        let n = hi - lo;
        if m == n {
            if !whole {
                out.push(self.mth(lo, hi));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, lo, lo + k, whole, out);
            out.push(self.mth(lo + k, hi));
        } else {
            self.subproof(m - k, lo + k, hi, false, out);
            out.push(self.mth(lo, lo + k));
        }
    }
}

/// Checks a consistency proof (RFC 9162, 2.1.4.2): that the tree of
/// `first` leaves with root `first_root` is a prefix of the tree of
/// `second` leaves with root `second_root`.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> bool {
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 || first > second || proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut f_n, mut s_n) = (first - 1, second - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut f_r, mut s_r) = (path[0], path[0]);
    for c in &path[1..] {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && f_r == *first_root && s_r == *second_root
}

/// Checks a published head against the previous one this node published:
/// signed by `public_key`, same log, not smaller, and consistent.
pub fn verify_message(
    msg: &TreeHeadMessage,
    previous: Option<&TreeHead>,
    public_key: &[u8],
) -> Result<(), String> {
    if msg.kind != "tree_head" {
        return Err(format!("not a tree head but {:?}", msg.kind));
    }
    if !msg.head.verify(public_key) {
        return Err("the tree head's signature does not verify with that key".into());
    }
    let Some(prev) = previous else {
        return Ok(());
    };
    let c = msg
        .consistency
        .as_ref()
        .ok_or("no consistency proof from the previous head")?;
    if c.from_size != prev.size || c.from_root != prev.root || msg.head.log != prev.log {
        return Err(format!(
            "the consistency proof starts from size {} root {}, not the previous head's size {} root {}",
            c.from_size, c.from_root, prev.size, prev.root
        ));
    }
    let proof: Vec<Hash> = c
        .path
        .iter()
        .map(|p| from_b64url(p).and_then(|p| p.try_into().ok()))
        .collect::<Option<_>>()
        .ok_or("a consistency hash is not 32 bytes")?;
    let (from, to) = (
        prev.root_hash()
            .ok_or("the previous root is not 32 bytes")?,
        msg.head.root_hash().ok_or("the root is not 32 bytes")?,
    );
    if !verify_consistency(prev.size, msg.head.size, &from, &to, &proof) {
        return Err(format!(
            "the tree of {} batches is not an extension of the published tree of {}: history was rewritten",
            msg.head.size, prev.size
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::merkle::{paths, root, root_from_path};

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n as u32).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn the_tree_agrees_with_the_batch_tree_and_its_paths() {
        let l = leaves(70);
        let mut t = Tree::default();
        for (i, h) in l.iter().enumerate() {
            t.push(*h);
            let n = i + 1;
            assert_eq!(t.root(n as u64), Some(root(&l[..n])));
        }
        for n in 1..=70usize {
            let want = paths(&l[..n]);
            for i in 0..n {
                let p = t.inclusion(i as u64, n as u64).unwrap();
                assert_eq!(p, want[i], "{i}/{n}");
                assert_eq!(
                    root_from_path(i as u64, n as u64, &l[i], &p),
                    Some(root(&l[..n]))
                );
            }
        }
        assert_eq!(t.inclusion(70, 70), None);
        assert_eq!(t.root(71), None);
    }

    #[test]
    fn consistency_proofs_verify_and_a_rewritten_history_does_not() {
        let l = leaves(40);
        let mut t = Tree::default();
        l.iter().for_each(|h| t.push(*h));
        for n in 1..=40u64 {
            for m in 1..=n {
                let proof = t.consistency(m, n).unwrap();
                let (a, b) = (t.root(m).unwrap(), t.root(n).unwrap());
                assert!(verify_consistency(m, n, &a, &b, &proof), "{m}->{n}");
                // Another old root, a wrong size, or a dropped hash fails.
                let other = leaf_hash(b"x");
                assert!(!verify_consistency(m, n, &other, &b, &proof), "{m}->{n}");
                if m < n {
                    assert!(!verify_consistency(m, n, &a, &other, &proof));
                    assert!(!verify_consistency(m, n, &a, &b, &proof[..proof.len() - 1]));
                    if m + 1 < n {
                        assert!(!verify_consistency(m + 1, n, &a, &b, &proof), "{m}->{n}");
                    }
                }
            }
        }
        // A tree that rewrote leaf 3 is not consistent with the old head.
        let mut forged = Tree::default();
        for (i, h) in l.iter().enumerate() {
            forged.push(if i == 3 { leaf_hash(b"forged") } else { *h });
        }
        let proof = forged.consistency(10, 40).unwrap();
        assert!(!verify_consistency(
            10,
            40,
            &t.root(10).unwrap(),
            &forged.root(40).unwrap(),
            &proof
        ));
    }

    #[test]
    fn rfc_9162_known_answer() {
        // Hand-checked shape from RFC 9162's example tree of 7 leaves
        // (2.1.5): PROOF(3, D[7]) = [c, d, g, l] with c = leaf 2,
        // d = leaf 3, g = MTH(D[0:2]), l = MTH(D[4:7]).
        let l = leaves(7);
        let mut t = Tree::default();
        l.iter().for_each(|h| t.push(*h));
        let g = node_hash(&l[0], &l[1]);
        let lh = node_hash(&node_hash(&l[4], &l[5]), &l[6]);
        assert_eq!(t.consistency(3, 7).unwrap(), vec![l[2], l[3], g, lh]);
        // PROOF(4, D[7]) = [l]; PROOF(6, D[7]) = [i, j, k] with
        // i = MTH(D[4:6]), j = leaf 6, k = MTH(D[0:4]).
        assert_eq!(t.consistency(4, 7).unwrap(), vec![lh]);
        let i = node_hash(&l[4], &l[5]);
        let k = node_hash(&node_hash(&l[0], &l[1]), &node_hash(&l[2], &l[3]));
        assert_eq!(t.consistency(6, 7).unwrap(), vec![i, l[6], k]);
    }

    #[test]
    fn signed_heads_verify_and_chain() {
        let key = SigningKey::from_seed("node-1", [9; 32]).unwrap();
        let mut t = Tree::default();
        leaves(5).into_iter().for_each(|h| t.push(h));
        let first = TreeHead::sign(1, 3, &t.root(3).unwrap(), &key);
        assert!(first.verify(key.public_key()));
        let second = TreeHeadMessage {
            kind: "tree_head".into(),
            head: TreeHead::sign(1, 5, &t.root(5).unwrap(), &key),
            consistency: Some(Consistency {
                from_size: 3,
                from_root: first.root.clone(),
                path: t
                    .consistency(3, 5)
                    .unwrap()
                    .iter()
                    .map(|h| b64url(h))
                    .collect(),
            }),
        };
        verify_message(&second, Some(&first), key.public_key()).unwrap();
        // Through JSON, as an auditor reads it.
        let back: TreeHeadMessage =
            serde_json::from_str(&serde_json::to_string(&second).unwrap()).unwrap();
        verify_message(&back, Some(&first), key.public_key()).unwrap();
        let mut edited = second.clone();
        edited.head.size = 4;
        assert!(verify_message(&edited, Some(&first), key.public_key())
            .unwrap_err()
            .contains("signature"));
        let other = SigningKey::from_seed("node-1", [8; 32]).unwrap();
        assert!(verify_message(&second, Some(&first), other.public_key()).is_err());
    }
}
