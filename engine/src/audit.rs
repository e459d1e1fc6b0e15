//! The node's audit log (issue 21, item 5) over its store: every receipt
//! batch the node signs is appended before its receipts leave the node,
//! and a signed tree head is published at an interval with a consistency
//! proof from the previous one (`evidence::log` has the formats).
//!
//! A node keeps one log, numbered by its `node_id`. On start it rebuilds
//! the tree from the store and refuses to run when the tree no longer
//! matches the last head it signed: its history was rewritten or lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::evidence::b64url;
use crate::evidence::keys::SigningKey;
use crate::evidence::log::{
    BatchLog, Consistency, LogEntry, SealedBatch, Tree, TreeHead, TreeHeadMessage,
};
use crate::internal_events::{AuditAppended, TreeHeadPublished};
use crate::store::{Store, StoreError};

/// Why the audit log cannot be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the audit log of node {log} no longer matches the tree head it signed at size {size} ({detail}): its history was rewritten or lost. Do not start the node on this store; restore it from a backup and report it (docs/operations.md, \"Audit log\")")]
    Inconsistent { log: u16, size: u64, detail: String },
}

/// Where published tree heads go: `Ok` once they are out (acknowledged).
pub type PublishHead = Box<dyn FnMut(&TreeHeadMessage) -> Result<(), String> + Send>;

/// Entries read per page when the tree is rebuilt at start.
const PAGE: usize = 10_000;

/// The audit log of one node.
pub struct AuditLog {
    store: Arc<dyn Store>,
    log: u16,
    key: Arc<SigningKey>,
    tree: Mutex<Tree>,
}

impl AuditLog {
    /// Rebuilds the log's tree from the store and checks it against the
    /// last tree head the node signed.
    pub fn open(
        store: Arc<dyn Store>,
        log: u16,
        key: Arc<SigningKey>,
    ) -> Result<AuditLog, AuditError> {
        let mut tree = Tree::default();
        loop {
            let page = store.log_entries(log, tree.size(), PAGE)?;
            let n = page.len();
            for e in page {
                if e.index != tree.size() {
                    return Err(AuditError::Inconsistent {
                        log,
                        size: tree.size(),
                        detail: format!("entry {} follows entry {}", e.index, tree.size()),
                    });
                }
                tree.push(e.leaf_hash());
            }
            if n < PAGE {
                break;
            }
        }
        if let Some(last) = store.last_tree_head(log)? {
            let head = &last.head;
            let root = tree
                .root(head.size)
                .ok_or_else(|| AuditError::Inconsistent {
                    log,
                    size: head.size,
                    detail: format!("only {} entries are left", tree.size()),
                })?;
            if b64url(&root) != head.root {
                return Err(AuditError::Inconsistent {
                    log,
                    size: head.size,
                    detail: "an entry under that head was changed".into(),
                });
            }
        }
        AuditAppended { size: tree.size() }.emit();
        Ok(AuditLog {
            store,
            log,
            key,
            tree: Mutex::new(tree),
        })
    }

    pub fn log(&self) -> u16 {
        self.log
    }

    /// Batches in the log.
    pub fn size(&self) -> u64 {
        self.tree.lock().unwrap_or_else(|p| p.into_inner()).size()
    }

    /// The tree as it is now (for proofs).
    pub fn tree(&self) -> Tree {
        self.tree.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Signs and keeps a new tree head when the tree grew past
    /// `previous`, with the consistency proof from it.
    pub fn next_head(
        &self,
        previous: Option<&TreeHead>,
    ) -> Result<Option<TreeHeadMessage>, StoreError> {
        let tree = self.tree.lock().unwrap_or_else(|p| p.into_inner());
        let size = tree.size();
        if size == 0 || previous.is_some_and(|p| p.size >= size) {
            return Ok(None);
        }
        let root = tree.root(size).expect("the tree's own size");
        let head = TreeHead::sign(self.log, size, &root, &self.key);
        let consistency = previous.map(|p| Consistency {
            from_size: p.size,
            from_root: p.root.clone(),
            path: tree
                .consistency(p.size, size)
                .expect("an earlier size of the same tree")
                .iter()
                .map(|h| b64url(h))
                .collect(),
        });
        drop(tree);
        let msg = TreeHeadMessage {
            kind: "tree_head".into(),
            head,
            consistency,
        };
        self.store.put_tree_head(&msg)?;
        Ok(Some(msg))
    }

    /// Publishes tree heads every `interval` through `publish` until
    /// `shutdown`, then once more for what was sealed last. The last head
    /// the node signed is published again first (it may not have gone out
    /// before a crash): readers drop a head they already have.
    pub fn spawn_publisher(
        self: Arc<Self>,
        interval: Duration,
        shutdown: Arc<AtomicBool>,
        mut publish: PublishHead,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                TreeHeadPublished::zero();
                let mut pending = match self.store.last_tree_head(self.log) {
                    Ok(m) => m,
                    Err(e) => {
                        TreeHeadPublished::failed(&e.to_string());
                        None
                    }
                };
                let mut last = pending.as_ref().map(|m| m.head.clone());
                let mut backoff = Duration::from_millis(200);
                let mut final_pass = false;
                loop {
                    if let Some(m) = &pending {
                        match publish(m) {
                            Ok(()) => {
                                TreeHeadPublished::published(m.head.size, m.head.timestamp);
                                pending = None;
                                backoff = Duration::from_millis(200);
                            }
                            Err(e) => {
                                TreeHeadPublished::failed(&e);
                                if final_pass {
                                    return;
                                }
                                sleep_unless(&shutdown, backoff);
                                backoff = (backoff * 2).min(Duration::from_secs(10));
                                if !shutdown.load(Ordering::SeqCst) {
                                    continue;
                                }
                            }
                        }
                    }
                    if final_pass {
                        return;
                    }
                    if !shutdown.load(Ordering::SeqCst) {
                        sleep_unless(&shutdown, interval);
                    }
                    final_pass = shutdown.load(Ordering::SeqCst);
                    match self.next_head(last.as_ref()) {
                        Ok(Some(m)) => {
                            last = Some(m.head.clone());
                            pending = Some(m);
                        }
                        Ok(None) if final_pass => return,
                        Ok(None) => {}
                        Err(e) => TreeHeadPublished::failed(&e.to_string()),
                    }
                }
            })
    }
}

/// Sleeps `d`, waking early when `shutdown` is set.
fn sleep_unless(shutdown: &AtomicBool, d: Duration) {
    let step = Duration::from_millis(50);
    let mut left = d;
    while !left.is_zero() && !shutdown.load(Ordering::SeqCst) {
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
}

impl BatchLog for AuditLog {
    fn append(&self, batches: Vec<SealedBatch>) -> Result<(), String> {
        let mut tree = self.tree.lock().unwrap_or_else(|p| p.into_inner());
        let first = tree.size();
        let entries: Vec<LogEntry> = batches
            .into_iter()
            .enumerate()
            .map(|(i, b)| LogEntry {
                index: first + i as u64,
                kid: b.kid,
                signed_at: b.signed_at,
                size: b.leaves.len() as u64,
                root: b.root,
                signature: b.signature,
                leaves: b.leaves,
                events: b.events,
            })
            .collect();
        self.store
            .append_log(self.log, &entries)
            .map_err(|e| format!("appending to the audit log: {e}"))?;
        for e in &entries {
            tree.push(e.leaf_hash());
        }
        AuditAppended { size: tree.size() }.emit();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::log::verify_message;
    use crate::evidence::seal::Sealer;
    use crate::store::{Durability, FjallStore, FjallStoreConfig};
    use chrono::Utc;
    use karpoosheh_schemas::{AgencyId, Receipt, ReceiptEvent, TrackingCode};

    fn receipts(n: u16, from: u16) -> Vec<Receipt> {
        (from..from + n)
            .map(|i| {
                let code = TrackingCode::from_parts(1_760_000_000_000, 4, i);
                let mut r = Receipt::new(
                    format!("r-{i}"),
                    AgencyId::parse("tax").unwrap(),
                    Some(format!("ref-{i}")),
                    Utc::now(),
                    ReceiptEvent::Expired {
                        tracking_code: code,
                    },
                );
                crate::evidence::chain::append(0, crate::evidence::chain::GENESIS, &mut r);
                r
            })
            .collect()
    }

    /// A node restarted mid-log: its next head is consistent with the
    /// last one it published; an entry rewritten under a signed head, or
    /// lost, stops the node from starting.
    #[test]
    fn heads_stay_consistent_across_restarts_and_a_rewritten_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = || -> Arc<dyn Store> {
            let mut cfg = FjallStoreConfig::new(dir.path());
            cfg.durability = Durability::Buffered;
            Arc::new(FjallStore::open(cfg).unwrap())
        };
        let key = Arc::new(SigningKey::from_seed("node-4", [4; 32]).unwrap());
        let store = open();
        let log = Arc::new(AuditLog::open(store.clone(), 4, key.clone()).unwrap());
        let sealer = Sealer::new(key.clone()).with_log(log.clone());
        let mut rs = receipts(600, 0);
        sealer.seal(rs.iter_mut()).unwrap();
        assert_eq!(log.size(), 3, "600 receipts: batches of 256, 256 and 88");
        let first = log.next_head(None).unwrap().expect("a first head");
        assert_eq!(first.consistency, None);
        verify_message(&first, None, key.public_key()).unwrap();
        assert_eq!(
            log.next_head(Some(&first.head)).unwrap(),
            None,
            "no growth, no head"
        );
        // The event index points at the batch that carried each event.
        let code = TrackingCode::from_parts(1_760_000_000_000, 4, 300);
        assert_eq!(store.event_entry(code, 1).unwrap(), Some((4, 1)));
        drop((sealer, log, store));

        // Restart: the tree is rebuilt, and grows on.
        let store = open();
        let log = Arc::new(AuditLog::open(store.clone(), 4, key.clone()).unwrap());
        assert_eq!(log.size(), 3);
        assert_eq!(store.last_tree_head(4).unwrap().as_ref(), Some(&first));
        let sealer = Sealer::new(key.clone()).with_log(log.clone());
        let mut rs = receipts(10, 1000);
        sealer.seal(rs.iter_mut()).unwrap();
        let second = log.next_head(Some(&first.head)).unwrap().unwrap();
        assert_eq!(second.head.size, 4);
        verify_message(&second, Some(&first.head), key.public_key()).unwrap();
        drop((sealer, log));

        // Someone rewrites entry 1 under the signed heads.
        let mut e = store.log_entry(4, 1).unwrap().unwrap();
        e.root[0] ^= 1;
        store.append_log(4, &[e]).unwrap();
        drop(store);
        let err = AuditLog::open(open(), 4, key.clone())
            .err()
            .expect("refused");
        assert!(
            matches!(err, AuditError::Inconsistent { size: 4, .. }),
            "{err}"
        );
    }

    /// A store that refuses the batch keeps the receipts back: `seal`
    /// fails, and the log does not grow.
    #[test]
    fn a_refused_append_fails_the_seal() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = FjallStoreConfig::new(dir.path());
        cfg.durability = Durability::Buffered;
        let store: Arc<dyn Store> = Arc::new(FjallStore::open(cfg).unwrap());
        let key = Arc::new(SigningKey::from_seed("node-4", [4; 32]).unwrap());
        struct Refusing;
        impl BatchLog for Refusing {
            fn append(&self, _: Vec<SealedBatch>) -> Result<(), String> {
                Err("disk full".into())
            }
        }
        let sealer = Sealer::new(key.clone()).with_log(Arc::new(Refusing));
        let mut rs = receipts(3, 0);
        assert_eq!(sealer.seal(rs.iter_mut()), Err("disk full".into()));
        let log = AuditLog::open(store, 4, key).unwrap();
        assert_eq!(log.size(), 0);
    }
}
