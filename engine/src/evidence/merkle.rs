//! Merkle trees as RFC 9162 (Certificate Transparency 2.0), section 2.1,
//! defines them, over SHA-256: leaf hash `SHA-256(0x00 || leaf)`, node
//! hash `SHA-256(0x01 || left || right)`, the split at the largest power
//! of two below the size, and audit paths verified by section 2.1.3.2.

use ring::digest::{Context, SHA256};

pub type Hash = [u8; 32];

pub fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

pub fn leaf_hash(leaf: &[u8]) -> Hash {
    sha256(&[&[0x00], leaf])
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01], left, right])
}

/// The largest power of two smaller than `n` (n > 1).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// MTH over leaf hashes (RFC 9162, 2.1.1); the empty tree is SHA-256("").
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => sha256(&[]),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// Every leaf's audit path (RFC 9162, 2.1.3.1), in one pass: O(n log n).
pub fn paths(leaves: &[Hash]) -> Vec<Vec<Hash>> {
    let mut out = vec![Vec::new(); leaves.len()];
    fill(leaves, 0, &mut out);
    out
}

fn fill(leaves: &[Hash], offset: usize, out: &mut [Vec<Hash>]) -> Hash {
    match leaves.len() {
        0 => sha256(&[]),
        1 => leaves[0],
        n => {
            let k = split(n);
            let left = fill(&leaves[..k], offset, out);
            let right = fill(&leaves[k..], offset + k, out);
            // Paths are built leaf-up: the sibling subtree's hash is
            // appended after the deeper ones.
            for p in &mut out[offset..offset + k] {
                p.push(right);
            }
            for p in &mut out[offset + k..offset + n] {
                p.push(left);
            }
            node_hash(&left, &right)
        }
    }
}

/// The root an audit path leads to (RFC 9162, 2.1.3.2), or None when the
/// path cannot belong to a tree of that size.
pub fn root_from_path(index: u64, size: u64, leaf: &Hash, path: &[Hash]) -> Option<Hash> {
    if index >= size {
        return None;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if s_n == 0 {
            return None;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    (s_n == 0).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n as u32).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn every_path_leads_to_the_root_and_no_other() {
        for n in 1..=70 {
            let l = leaves(n);
            let r = root(&l);
            for (i, p) in paths(&l).iter().enumerate() {
                assert_eq!(
                    root_from_path(i as u64, n as u64, &l[i], p),
                    Some(r),
                    "{n}/{i}"
                );
                // Another leaf, index or size does not verify.
                let other = leaf_hash(b"x");
                assert_ne!(root_from_path(i as u64, n as u64, &other, p), Some(r));
                if n > 1 {
                    let j = (i + 1) % n;
                    assert_ne!(
                        root_from_path(j as u64, n as u64, &l[i], p),
                        Some(r),
                        "{n}/{i}"
                    );
                }
            }
        }
    }

    #[test]
    fn known_answers() {
        // SHA-256 of the empty string: the empty tree.
        assert_eq!(
            root(&[])
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // Three leaves: MTH = node(node(l0, l1), l2).
        let l = leaves(3);
        assert_eq!(root(&l), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
        assert_eq!(paths(&l)[2], vec![node_hash(&l[0], &l[1])]);
        assert_eq!(paths(&l)[0], vec![l[1], l[2]]);
    }
}
