//! Cases of the [`AuditStore`](crate::store::AuditStore) aggregate: the
//! node's audit log.

use super::*;
use crate::evidence::log::{LogEntry, TreeHead, TreeHeadMessage};
use crate::evidence::merkle::leaf_hash;

fn entry(index: u64, events: Vec<(TrackingCode, u32)>) -> LogEntry {
    let leaves: Vec<_> = (0..3u64)
        .map(|i| leaf_hash(&(index * 10 + i).to_be_bytes()))
        .collect();
    LogEntry {
        index,
        kid: "node-7".into(),
        // Milliseconds, as the log keeps them.
        signed_at: t0() + Duration::milliseconds(index as i64 * 1001),
        root: crate::evidence::merkle::root(&leaves),
        size: leaves.len() as u64,
        signature: vec![index as u8; 64],
        leaves,
        events,
    }
}

fn head(log: u16, size: u64) -> TreeHeadMessage {
    TreeHeadMessage {
        kind: "tree_head".into(),
        head: TreeHead {
            log,
            size,
            root: format!("root-{size}"),
            timestamp: t0(),
            kid: "node-7".into(),
            signature: "sig".into(),
        },
        consistency: None,
    }
}

pub fn the_audit_log_is_appended_read_back_and_indexed(store: &dyn Store) {
    let code = |n| TrackingCode::from_parts(t0().timestamp_millis(), 7, n);
    assert!(store.log_entries(7, 0, 10).unwrap().is_empty());
    assert_eq!(store.last_tree_head(7).unwrap(), None);
    assert_eq!(store.event_entry(code(1), 1).unwrap(), None);
    let first: Vec<LogEntry> = (0..3)
        .map(|i| entry(i, vec![(code(i as u16), 1), (code(9), i as u32 + 1)]))
        .collect();
    store.append_log(7, &first).unwrap();
    // A retried append of the same numbers overwrites.
    store.append_log(7, &first[2..]).unwrap();
    store.append_log(7, &[entry(3, vec![])]).unwrap();
    // Another node's log is apart.
    store.append_log(8, &[entry(0, vec![])]).unwrap();

    let all = store.log_entries(7, 0, 100).unwrap();
    assert_eq!(all.len(), 4, "every entry of log 7, once");
    for (i, e) in all.iter().enumerate() {
        let want = entry(i as u64, vec![]);
        assert_eq!(
            (e.index, &e.kid, e.signed_at, e.root, e.size, &e.signature),
            (
                want.index,
                &want.kid,
                want.signed_at,
                want.root,
                want.size,
                &want.signature
            ),
            "entry {i} reads back as written"
        );
        assert!(e.leaves.is_empty(), "listings carry no leaves");
        assert_eq!(e.leaf_hash(), want.leaf_hash());
    }
    assert_eq!(
        store
            .log_entries(7, 2, 1)
            .unwrap()
            .iter()
            .map(|e| e.index)
            .collect::<Vec<_>>(),
        vec![2],
        "from and limit"
    );
    assert_eq!(store.log_entries(8, 0, 100).unwrap().len(), 1);
    let one = store.log_entry(7, 1).unwrap().expect("entry 1");
    assert_eq!(
        one.leaves,
        entry(1, vec![]).leaves,
        "leaves read back in order"
    );
    assert_eq!(store.log_entry(7, 9).unwrap(), None);
    assert_eq!(store.event_entry(code(1), 1).unwrap(), Some((7, 1)));
    assert_eq!(store.event_entry(code(9), 3).unwrap(), Some((7, 2)));
    assert_eq!(store.event_entry(code(9), 4).unwrap(), None);

    store.put_tree_head(&head(7, 2)).unwrap();
    store.put_tree_head(&head(7, 4)).unwrap();
    store.put_tree_head(&head(8, 1)).unwrap();
    assert_eq!(store.last_tree_head(7).unwrap(), Some(head(7, 4)));
    assert_eq!(store.last_tree_head(8).unwrap(), Some(head(8, 1)));

    assert_eq!(store.last_published(7).unwrap(), None);
    store.mark_published(7, 2).unwrap();
    store.mark_published(7, 4).unwrap();
    assert_eq!(store.last_published(7).unwrap(), Some(4));
    assert_eq!(store.last_published(8).unwrap(), None, "per log");
    // Marking does not touch the heads.
    assert_eq!(store.last_tree_head(7).unwrap(), Some(head(7, 4)));
}

pub fn traffic_data_is_kept_per_mailbox_newest_first(store: &dyn Store) {
    use crate::model::AccessRecord;
    let rec = |who: MailboxId, ms: i64, action: &str| AccessRecord {
        at: t0() + Duration::milliseconds(ms),
        mailbox: who,
        actor: Some(who),
        action: action.into(),
        tracking_code: Some(TrackingCode::from_parts(t0().timestamp_millis(), 1, 1)),
        client: Some("inbox-web".into()),
        status: 200,
        address: Some("192.0.2.7".into()),
    };
    let (a, b) = (person(100), person(200));
    assert!(store.access_log(a, 10).unwrap().is_empty());
    store
        .record_access(&[rec(a, 1, "list"), rec(b, 2, "list"), rec(a, 3, "open")])
        .unwrap();
    // Two calls in one millisecond are two records.
    store.record_access(&[rec(a, 3, "open")]).unwrap();
    let log = store.access_log(a, 10).unwrap();
    assert_eq!(
        log.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(),
        vec!["open", "open", "list"],
        "newest first, every call"
    );
    assert_eq!(log[2], rec(a, 1, "list"), "read back as written");
    assert_eq!(store.access_log(a, 1).unwrap().len(), 1);
    assert_eq!(store.access_log(b, 10).unwrap(), vec![rec(b, 2, "list")]);
}
