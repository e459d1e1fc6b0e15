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
    BatchLog, Consistency, LogEntry, LogError, SealedBatch, Tree, TreeHead, TreeHeadMessage,
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
        let (tree, _) = AuditLog::check(store.as_ref(), log)?;
        AuditAppended { size: tree.size() }.emit();
        Ok(AuditLog {
            store,
            log,
            key,
            tree: Mutex::new(tree),
        })
    }

    /// The log's tree, rebuilt from the store, and the last tree head the
    /// node signed, once the tree's first entries make that head's root.
    pub fn check(
        store: &dyn Store,
        log: u16,
    ) -> Result<(Tree, Option<TreeHeadMessage>), AuditError> {
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
        let last = store.last_tree_head(log)?;
        if let Some(last) = &last {
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
        Ok((tree, last))
    }

    pub fn log(&self) -> u16 {
        self.log
    }

    /// Batches in the log.
    pub fn size(&self) -> u64 {
        self.tree.lock().unwrap_or_else(|p| p.into_inner()).size()
    }

    /// Signs and keeps a new tree head when the tree grew past the last
    /// head signed (`signed`, its size), with the consistency proof from
    /// the last head published (`published`): the one readers have.
    pub fn next_head(
        &self,
        signed: Option<u64>,
        published: Option<u64>,
    ) -> Result<Option<TreeHeadMessage>, StoreError> {
        let tree = self.tree.lock().unwrap_or_else(|p| p.into_inner());
        let size = tree.size();
        if size == 0 || signed.is_some_and(|s| s >= size) {
            return Ok(None);
        }
        let root = tree.root(size).expect("the tree's own size");
        let head = TreeHead::sign(self.log, size, &root, &self.key);
        let consistency = published
            .filter(|p| *p > 0 && *p < size)
            .map(|p| Consistency {
                from_size: p,
                from_root: b64url(&tree.root(p).expect("an earlier size of the same tree")),
                path: tree
                    .consistency(p, size)
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

    /// Signs and keeps a head for what this process sealed (for `ingest`,
    /// which publishes nothing: the next node to run publishes it).
    pub fn sign_head(&self) -> Result<Option<TreeHeadMessage>, StoreError> {
        let signed = self.store.last_tree_head(self.log)?.map(|m| m.head.size);
        let published = self.store.last_published(self.log)?;
        self.next_head(signed, published)
    }

    /// Publishes tree heads every `interval` through `publish` until
    /// `shutdown`, then once more for what was sealed last. A head signed
    /// and kept but not yet published (a crash, an `ingest`, a broker
    /// down) is published first; each head's proof starts from the last
    /// one published, and a head is never signed while another waits.
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
                let mut backoff = Duration::from_millis(200);
                // Where the log stands: retried until the store answers.
                let (last, mut published) = loop {
                    let read = self
                        .store
                        .last_tree_head(self.log)
                        .and_then(|h| Ok((h, self.store.last_published(self.log)?)));
                    match read {
                        Ok(x) => break x,
                        Err(e) => {
                            TreeHeadPublished::failed(&e.to_string());
                            if shutdown.load(Ordering::SeqCst) {
                                return;
                            }
                            sleep_unless(&shutdown, backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                        }
                    }
                };
                TreeHeadPublished::marked(published.unwrap_or(0));
                let mut signed_size = last.as_ref().map(|h| h.head.size);
                let mut pending = last.filter(|h| published.is_none_or(|p| h.head.size > p));
                let mut final_pass = false;
                loop {
                    if let Some(m) = &pending {
                        match publish(m) {
                            Ok(()) => {
                                TreeHeadPublished::published(m.head.size, m.head.timestamp);
                                // Kept so the next head's proof starts here;
                                // if this fails, that head is published again.
                                if let Err(e) = self.store.mark_published(self.log, m.head.size) {
                                    TreeHeadPublished::failed(&e.to_string());
                                } else {
                                    published = Some(m.head.size);
                                    TreeHeadPublished::marked(m.head.size);
                                }
                                pending = None;
                                backoff = Duration::from_millis(200);
                            }
                            Err(e) => {
                                TreeHeadPublished::failed(&e);
                                // Stopping: it stays kept, and goes first
                                // at the next start.
                                if shutdown.load(Ordering::SeqCst) {
                                    return;
                                }
                                sleep_unless(&shutdown, backoff);
                                backoff = (backoff * 2).min(Duration::from_secs(10));
                                continue;
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
                    match self.next_head(signed_size, published) {
                        Ok(Some(m)) => {
                            signed_size = Some(m.head.size);
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
    fn append(&self, batches: Vec<SealedBatch>) -> Result<(), LogError> {
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
            .map_err(|e| LogError {
                message: e.to_string(),
                fatal: e.is_fatal(),
            })?;
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
        let first = log.next_head(None, None).unwrap().expect("a first head");
        assert_eq!(first.consistency, None);
        verify_message(&first, None, key.public_key()).unwrap();
        assert_eq!(
            log.next_head(Some(3), None).unwrap(),
            None,
            "no growth, no head"
        );
        store.mark_published(4, 3).unwrap();
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
        // As `ingest` signs one (nothing published), twice: each proof
        // starts from the head readers have, the one published.
        assert_eq!(store.last_published(4).unwrap(), Some(3));
        let second = log.sign_head().unwrap().unwrap();
        assert_eq!(second.head.size, 4);
        verify_message(&second, Some(&first.head), key.public_key()).unwrap();
        let mut rs = receipts(10, 2000);
        sealer.seal(rs.iter_mut()).unwrap();
        let third = log.sign_head().unwrap().unwrap();
        assert_eq!(third.head.size, 5);
        verify_message(&third, Some(&first.head), key.public_key()).unwrap();
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
            matches!(err, AuditError::Inconsistent { size: 5, .. }),
            "{err}"
        );
    }

    /// A store that refuses the batch keeps the receipts back: `seal`
    /// fails, the log does not grow, and the next seal takes its place.
    #[test]
    fn a_refused_append_fails_the_seal_and_the_log_stays_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = FjallStoreConfig::new(dir.path());
        cfg.durability = Durability::Buffered;
        let inner: Arc<dyn Store> = Arc::new(FjallStore::open(cfg).unwrap());
        let store: Arc<dyn Store> =
            Arc::new(crate::store::faulty::Faulty::new(inner.clone()).failing_audit_appends(1));
        let key = Arc::new(SigningKey::from_seed("node-4", [4; 32]).unwrap());
        let log = Arc::new(AuditLog::open(store.clone(), 4, key.clone()).unwrap());
        let sealer = Sealer::new(key.clone()).with_log(log.clone());
        let mut rs = receipts(3, 0);
        let err = sealer.seal(rs.iter_mut()).unwrap_err();
        assert!(err.message.contains("injected") && !err.fatal, "{err}");
        assert_eq!(log.size(), 0);
        assert!(inner.log_entries(4, 0, 10).unwrap().is_empty());
        // Sealed again, as the pipeline retries: entry 0, and the receipts
        // name the batch that was kept.
        let batches = sealer.seal(rs.iter_mut()).unwrap();
        assert_eq!(log.size(), 1);
        let kept = inner.log_entries(4, 0, 10).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(
            batches[0].receipt_id,
            format!("batch:{}", b64url(&kept[0].root))
        );
        assert_eq!(
            rs[0]
                .evidence
                .as_ref()
                .unwrap()
                .batch
                .as_ref()
                .unwrap()
                .root,
            b64url(&kept[0].root)
        );
    }

    /// The publisher: a head that fails to go out is retried and no other
    /// is signed meanwhile; every head published extends the one before;
    /// at the end the last head covers everything sealed and is marked
    /// published. A restart publishes the kept head again first.
    #[test]
    fn the_publisher_retries_never_skips_and_covers_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = FjallStoreConfig::new(dir.path());
        cfg.durability = Durability::Buffered;
        let store: Arc<dyn Store> = Arc::new(FjallStore::open(cfg).unwrap());
        let key = Arc::new(SigningKey::from_seed("node-4", [4; 32]).unwrap());
        let log = Arc::new(AuditLog::open(store.clone(), 4, key.clone()).unwrap());
        let sealer = Sealer::new(key.clone()).with_log(log.clone());
        let out = Arc::new(std::sync::Mutex::new(Vec::<TreeHeadMessage>::new()));
        let start = |fail_first: u32| {
            let (out, stop) = (out.clone(), Arc::new(AtomicBool::new(false)));
            let mut calls = 0;
            let h = log
                .clone()
                .spawn_publisher(
                    Duration::from_millis(20),
                    stop.clone(),
                    Box::new(move |m| {
                        calls += 1;
                        if calls <= fail_first {
                            return Err("broker down".into());
                        }
                        out.lock().unwrap().push(m.clone());
                        Ok(())
                    }),
                )
                .unwrap();
            (h, stop)
        };
        let (h, stop) = start(2);
        for i in 0..5u16 {
            let mut rs = receipts(300, i * 1000);
            sealer.seal(rs.iter_mut()).unwrap();
            std::thread::sleep(Duration::from_millis(60));
        }
        // Past the failures (retried after 200 and 400 ms).
        let t = std::time::Instant::now();
        while out.lock().unwrap().is_empty() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Sealed just before the stop: the last head still covers it.
        let mut rs = receipts(5, 8000);
        sealer.seal(rs.iter_mut()).unwrap();
        stop.store(true, Ordering::SeqCst);
        h.join().unwrap();
        let heads = out.lock().unwrap().clone();
        assert!(heads.len() >= 2, "{} heads", heads.len());
        let mut prev: Option<TreeHead> = None;
        for m in &heads {
            verify_message(m, prev.as_ref(), key.public_key()).unwrap();
            prev = Some(m.head.clone());
        }
        assert_eq!(
            prev.as_ref().unwrap().size,
            log.size(),
            "the end is covered"
        );
        assert_eq!(store.last_published(4).unwrap(), Some(log.size()));

        // A head signed and kept but never published (as `ingest` leaves
        // one) goes out first at the next start, extending the last one.
        let mut rs = receipts(10, 9000);
        sealer.seal(rs.iter_mut()).unwrap();
        let kept = log.sign_head().unwrap().unwrap();
        out.lock().unwrap().clear();
        let (h, stop) = start(0);
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::SeqCst);
        h.join().unwrap();
        let heads = out.lock().unwrap().clone();
        assert_eq!(heads.first(), Some(&kept));
        verify_message(&heads[0], prev.as_ref(), key.public_key()).unwrap();
    }
}
