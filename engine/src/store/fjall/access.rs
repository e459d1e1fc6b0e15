//! The access aggregate of [`FjallStore`]: traffic data, in two
//! keyspaces: `access` by time (at ms ‖ mailbox ‖ seq), so the purge is
//! one range from the start, and `access_by_mailbox` (mailbox ‖ !at ms ‖
//! !seq) for a mailbox's history, newest first. Both hold the record.

use super::*;
use crate::model::AccessRecord;
use crate::store::AccessStore;
use chrono::{DateTime, Utc};

fn time_key(at_ms: u64, mailbox: &[u8; 9], seq: u32) -> [u8; 21] {
    let mut k = [0u8; 21];
    k[..8].copy_from_slice(&at_ms.to_be_bytes());
    k[8..17].copy_from_slice(mailbox);
    k[17..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn mailbox_key(mailbox: &[u8; 9], at_ms: u64, seq: u32) -> [u8; 21] {
    let mut k = [0u8; 21];
    k[..9].copy_from_slice(mailbox);
    k[9..17].copy_from_slice(&(!at_ms).to_be_bytes());
    // Newest first within a millisecond too.
    k[17..].copy_from_slice(&(!seq).to_be_bytes());
    k
}

impl AccessStore for FjallStore {
    fn record_access(&self, records: &[AccessRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut batch = self.traffic.batch().durability(Some(PersistMode::Buffer));
        let mut seq = self.access_seq.lock().unwrap_or_else(|p| p.into_inner());
        for r in records {
            *seq = seq.wrapping_add(1);
            let at = r.at.timestamp_millis().max(0) as u64;
            let m = r.mailbox.to_key();
            let value = encode_json(r);
            batch.insert(&self.access, time_key(at, &m, *seq), value.clone());
            batch.insert(&self.access_by_mailbox, mailbox_key(&m, at, *seq), value);
        }
        batch.commit()?;
        Ok(())
    }

    fn access_log(
        &self,
        mailbox: MailboxId,
        limit: usize,
    ) -> Result<Vec<AccessRecord>, StoreError> {
        let mut out = Vec::new();
        for guard in self.access_by_mailbox.prefix(mailbox.to_key()).take(limit) {
            let (_, v) = guard.into_inner()?;
            out.push(decode("access record", &v)?);
        }
        Ok(out)
    }

    fn purge_access(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let end = (before.timestamp_millis().max(0) as u64).to_be_bytes();
        let mut n = 0;
        loop {
            // In slices, so a long backlog is not one huge batch.
            let mut batch = self.traffic.batch().durability(Some(PersistMode::Buffer));
            let mut taken = 0;
            for guard in self.access.range(..end.to_vec()).take(10_000) {
                let (k, v) = guard.into_inner()?;
                let r: AccessRecord = decode("access record", &v)?;
                let seq = u32::from_be_bytes(
                    k.get(17..21)
                        .and_then(|s| s.try_into().ok())
                        .ok_or_else(|| StoreError::Corrupt("access key".into()))?,
                );
                let at = r.at.timestamp_millis().max(0) as u64;
                batch.remove(&self.access, k.to_vec());
                batch.remove(
                    &self.access_by_mailbox,
                    mailbox_key(&r.mailbox.to_key(), at, seq),
                );
                taken += 1;
            }
            if taken == 0 {
                return Ok(n);
            }
            batch.commit()?;
            n += taken;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{person, t0};

    /// Records older than the cut are purged from both keyspaces; newer
    /// ones stay.
    #[test]
    fn old_traffic_data_is_purged() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = FjallStoreConfig::new(dir.path());
        cfg.durability = Durability::Buffered;
        let store = FjallStore::open(cfg).unwrap();
        let rec = |days: i64| AccessRecord {
            at: t0() + chrono::Duration::days(days),
            mailbox: person(100),
            actor: Some(person(100)),
            action: "list".into(),
            tracking_code: None,
            client: None,
            status: 200,
            address: None,
        };
        let records: Vec<_> = (0..300).map(rec).collect();
        store.record_access(&records).unwrap();
        let purged = store
            .purge_access(t0() + chrono::Duration::days(200))
            .unwrap();
        assert_eq!(purged, 200);
        let left = store.access_log(person(100), 1000).unwrap();
        assert_eq!(left.len(), 100);
        assert_eq!(left.last().unwrap().at, t0() + chrono::Duration::days(200));
        assert_eq!(store.access.iter().count(), 100);
        assert_eq!(store.purge_access(t0()).unwrap(), 0);
    }
}
