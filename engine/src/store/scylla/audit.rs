//! The audit aggregate of [`ScyllaStore`]: the node's audit log of signed
//! receipt batches (`audit_log`, `audit_leaves`), the index from a notice
//! event to its batch (`audit_events`), and the signed tree heads
//! (`audit_heads`, `audit_latest`). Migration 003.

use super::*;
use crate::evidence::log::{LogEntry, TreeHeadMessage};
use crate::store::AuditStore;

/// Log entries (and tree heads) per partition.
const AUDIT_BUCKET: u64 = 65_536;

type HeadRow = (i64, String, DateTime<Utc>, Vec<u8>, i32, Vec<u8>);

fn entry_of(row: HeadRow) -> Result<LogEntry, ScyllaError> {
    let (idx, kid, signed_at, root, size, signature) = row;
    Ok(LogEntry {
        index: idx as u64,
        kid,
        signed_at,
        root: root.try_into().map_err(|_| ScyllaError::Rows {
            what: "audit_log".into(),
            message: format!("entry {idx}: root is not 32 bytes"),
        })?,
        size: size as u64,
        signature,
        leaves: Vec::new(),
        events: Vec::new(),
    })
}

fn head_of(json: &str) -> Result<TreeHeadMessage, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("tree head: {e}")))
}

impl AuditStore for ScyllaStore {
    fn append_log(&self, log: u16, entries: &[LogEntry]) -> Result<(), StoreError> {
        self.guard()?;
        let log = log as i32;
        self.rt.block_on(async {
            // Leaves and the event index first: an entry that is listed
            // always has them.
            self.all(entries.iter().map(|e| {
                self.exec(
                    &self.st.audit_leaves_put,
                    (log, e.index as i64, e.leaves.concat()),
                    "writing an audit log entry's leaves",
                )
            }))
            .await?;
            self.all(entries.iter().flat_map(|e| {
                e.events.iter().map(move |(code, seq)| {
                    self.exec(
                        &self.st.audit_event_put,
                        (code_col(*code), *seq as i32, log, e.index as i64),
                        "indexing an event in the audit log",
                    )
                })
            }))
            .await?;
            // The entries themselves one by one, in order: a failed call
            // leaves a prefix, never a gap that a restart would take for a
            // rewritten log.
            for e in entries {
                self.exec(
                    &self.st.audit_put,
                    (
                        log,
                        (e.index / AUDIT_BUCKET) as i64,
                        e.index as i64,
                        e.kid.as_str(),
                        e.signed_at,
                        e.root.to_vec(),
                        e.size as i32,
                        e.signature.as_slice(),
                    ),
                    "appending to the audit log",
                )
                .await?;
            }
            Ok::<_, ScyllaError>(())
        })?;
        Ok(())
    }

    fn log_entries(&self, log: u16, from: u64, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        Ok(self.rt.block_on(async {
            let mut out = Vec::new();
            let mut next = from;
            while out.len() < limit {
                let bucket = next / AUDIT_BUCKET;
                let want = (limit - out.len()).min(i32::MAX as usize) as i32;
                let res = self
                    .exec(
                        &self.st.audit_read,
                        (log as i32, bucket as i64, next as i64, want),
                        "reading the audit log",
                    )
                    .await?;
                let rows = collect::<HeadRow>(res, "audit_log")?;
                let got = rows.len();
                for row in rows {
                    out.push(entry_of(row)?);
                }
                next += got as u64;
                // Entries are numbered without gaps: the next bucket is
                // read only when this one was full to its end.
                if got < want as usize && next % AUDIT_BUCKET != 0 || got == 0 {
                    break;
                }
            }
            Ok::<_, ScyllaError>(out)
        })?)
    }

    fn log_entry(&self, log: u16, index: u64) -> Result<Option<LogEntry>, StoreError> {
        Ok(self.rt.block_on(async {
            let res = self
                .exec(
                    &self.st.audit_get,
                    (log as i32, (index / AUDIT_BUCKET) as i64, index as i64),
                    "reading an audit log entry",
                )
                .await?;
            let Some(row) = collect::<HeadRow>(res, "audit_log")?.into_iter().next() else {
                return Ok(None);
            };
            let mut e = entry_of(row)?;
            let res = self
                .exec(
                    &self.st.audit_leaves_get,
                    (log as i32, index as i64),
                    "reading an audit log entry's leaves",
                )
                .await?;
            let leaves = collect::<(Vec<u8>,)>(res, "audit_leaves")?
                .into_iter()
                .next()
                .map(|(l,)| l)
                .unwrap_or_default();
            e.set_leaves(&leaves).map_err(|message| ScyllaError::Rows {
                what: "audit_leaves".into(),
                message,
            })?;
            Ok::<_, ScyllaError>(Some(e))
        })?)
    }

    fn event_entry(&self, code: TrackingCode, seq: u32) -> Result<Option<(u16, u64)>, StoreError> {
        Ok(self.rt.block_on(async {
            let res = self
                .exec(
                    &self.st.audit_event_get,
                    (code_col(code), seq as i32),
                    "reading the audit index",
                )
                .await?;
            Ok::<_, ScyllaError>(
                collect::<(i32, i64)>(res, "audit_events")?
                    .into_iter()
                    .next()
                    .map(|(log, idx)| (log as u16, idx as u64)),
            )
        })?)
    }

    fn put_tree_head(&self, msg: &TreeHeadMessage) -> Result<(), StoreError> {
        self.guard()?;
        let head = &msg.head;
        let json = serde_json::to_string(msg).expect("a tree head serialises");
        self.rt.block_on(async {
            self.exec(
                &self.st.audit_head_put,
                (
                    head.log as i32,
                    (head.size / AUDIT_BUCKET) as i64,
                    head.size as i64,
                    json.as_str(),
                ),
                "keeping a tree head",
            )
            .await?;
            // The write time is the size: the largest head wins, whatever
            // the clocks of the nodes that wrote it.
            self.exec(
                &self.st.audit_latest_put,
                (head.log as i32, json.as_str(), head.size as i64),
                "keeping the latest tree head",
            )
            .await?;
            Ok::<_, ScyllaError>(())
        })?;
        Ok(())
    }

    fn last_tree_head(&self, log: u16) -> Result<Option<TreeHeadMessage>, StoreError> {
        let json = self.rt.block_on(async {
            let res = self
                .exec(
                    &self.st.audit_latest_get,
                    (log as i32,),
                    "reading the latest tree head",
                )
                .await?;
            Ok::<_, ScyllaError>(
                collect::<(Option<String>,)>(res, "audit_latest")?
                    .into_iter()
                    .next()
                    .and_then(|(h,)| h),
            )
        })?;
        json.map(|j| head_of(&j)).transpose()
    }

    fn mark_published(&self, log: u16, size: u64) -> Result<(), StoreError> {
        self.guard()?;
        self.rt.block_on(self.exec(
            &self.st.audit_published_put,
            (size as i64, size as i64, log as i32),
            "noting a published tree head",
        ))?;
        Ok(())
    }

    fn last_published(&self, log: u16) -> Result<Option<u64>, StoreError> {
        Ok(self.rt.block_on(async {
            let res = self
                .exec(
                    &self.st.audit_published_get,
                    (log as i32,),
                    "reading the last published tree head",
                )
                .await?;
            Ok::<_, ScyllaError>(
                collect::<(Option<i64>,)>(res, "audit_latest")?
                    .into_iter()
                    .next()
                    .and_then(|(p,)| p)
                    .map(|p| p as u64),
            )
        })?)
    }
}
