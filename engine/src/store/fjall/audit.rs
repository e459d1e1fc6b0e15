//! The audit aggregate of [`FjallStore`]: the node's audit log of signed
//! receipt batches, the index from a notice event to its batch, and the
//! signed tree heads.

use super::*;
use crate::evidence::log::{LogEntry, TreeHeadMessage};

/// A log entry's head as stored (its leaves are kept apart, read only for
/// proofs). Field order is the format; never change it.
#[derive(Serialize, Deserialize)]
struct StoredHead {
    kid: String,
    signed_at_ms: i64,
    root: [u8; 32],
    size: u64,
    signature: Vec<u8>,
}

fn log_key(log: u16, index: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..2].copy_from_slice(&log.to_be_bytes());
    k[2..].copy_from_slice(&index.to_be_bytes());
    k
}

fn entry_of(k: &[u8], v: &[u8]) -> Result<LogEntry, StoreError> {
    let index = u64_of(k.get(2..).unwrap_or_default())?;
    let h: StoredHead = decode("audit log entry", v)?;
    Ok(LogEntry {
        index,
        kid: h.kid,
        signed_at: chrono::DateTime::from_timestamp_millis(h.signed_at_ms)
            .ok_or_else(|| StoreError::Corrupt(format!("audit log entry {index}: time")))?,
        root: h.root,
        size: h.size,
        signature: h.signature,
        leaves: Vec::new(),
        events: Vec::new(),
    })
}

impl AuditStore for FjallStore {
    fn append_log(&self, log: u16, entries: &[LogEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut batch = self
            .db
            .batch()
            .durability(Some(self.durability.persist_mode()));
        let mut buf = Vec::new();
        for e in entries {
            let key = log_key(log, e.index);
            let head = StoredHead {
                kid: e.kid.clone(),
                signed_at_ms: e.signed_at.timestamp_millis(),
                root: e.root,
                size: e.size,
                signature: e.signature.clone(),
            };
            batch.insert(&self.audit_log, key, encode_in(&mut buf, FORMAT, &head));
            batch.insert(&self.audit_leaves, key, e.leaves.concat());
            for (code, seq) in &e.events {
                batch.insert(&self.audit_events, event_key(code.as_u64(), *seq), key);
            }
        }
        batch.commit()?;
        Ok(())
    }

    fn log_entries(&self, log: u16, from: u64, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        let mut out = Vec::new();
        for guard in self
            .audit_log
            .range(log_key(log, from)..log_key(log, u64::MAX))
            .take(limit)
        {
            let (k, v) = guard.into_inner()?;
            out.push(entry_of(&k, &v)?);
        }
        Ok(out)
    }

    fn log_entry(&self, log: u16, index: u64) -> Result<Option<LogEntry>, StoreError> {
        let key = log_key(log, index);
        let Some(v) = self.audit_log.get(key)? else {
            return Ok(None);
        };
        let mut e = entry_of(&key, &v)?;
        let leaves = self.audit_leaves.get(key)?.unwrap_or_default();
        e.set_leaves(&leaves).map_err(StoreError::Corrupt)?;
        Ok(Some(e))
    }

    fn event_entry(&self, code: TrackingCode, seq: u32) -> Result<Option<(u16, u64)>, StoreError> {
        match self.audit_events.get(event_key(code.as_u64(), seq))? {
            Some(v) if v.len() == 10 => {
                Ok(Some((u16::from_be_bytes([v[0], v[1]]), u64_of(&v[2..])?)))
            }
            Some(_) => Err(StoreError::Corrupt(format!(
                "audit index of event {seq} of {code}"
            ))),
            None => Ok(None),
        }
    }

    fn put_tree_head(&self, msg: &TreeHeadMessage) -> Result<(), StoreError> {
        let mut batch = self
            .db
            .batch()
            .durability(Some(self.durability.persist_mode()));
        batch.insert(
            &self.audit_heads,
            log_key(msg.head.log, msg.head.size),
            encode_json(msg),
        );
        batch.commit()?;
        Ok(())
    }

    fn last_tree_head(&self, log: u16) -> Result<Option<TreeHeadMessage>, StoreError> {
        match self
            .audit_heads
            .range(log_key(log, 0)..=log_key(log, u64::MAX))
            .next_back()
        {
            Some(guard) => {
                let (_, v) = guard.into_inner()?;
                Ok(Some(decode("tree head", &v)?))
            }
            None => Ok(None),
        }
    }

    fn mark_published(&self, log: u16, size: u64) -> Result<(), StoreError> {
        let mut batch = self
            .db
            .batch()
            .durability(Some(self.durability.persist_mode()));
        batch.insert(&self.meta, published_key(log), size.to_be_bytes());
        batch.commit()?;
        Ok(())
    }

    fn last_published(&self, log: u16) -> Result<Option<u64>, StoreError> {
        self.meta
            .get(published_key(log))?
            .map(|v| u64_of(&v))
            .transpose()
    }
}

/// In `meta`: the size of the last published tree head of a log.
fn published_key(log: u16) -> Vec<u8> {
    let mut k = b"audit_published:".to_vec();
    k.extend_from_slice(&log.to_be_bytes());
    k
}
