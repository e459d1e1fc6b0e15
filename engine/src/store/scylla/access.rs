//! The access aggregate of [`ScyllaStore`]: traffic data (`access_log`,
//! migration 004), each row with the TTL of [`ACCESS_RETENTION`], so the
//! cluster purges it on its own.

use super::*;
use crate::model::AccessRecord;
use crate::store::{AccessStore, ACCESS_RETENTION};

static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl AccessStore for ScyllaStore {
    fn record_access(&self, records: &[AccessRecord]) -> Result<(), StoreError> {
        self.guard()?;
        let ttl = ACCESS_RETENTION.as_secs().min(rows::MAX_TTL_SECS as u64) as i32;
        self.rt
            .block_on(self.all(records.iter().enumerate().map(|(i, r)| {
                self.exec(
                    &self.st.access_put,
                    (
                        r.mailbox.to_string(),
                        r.at,
                        // Rows of one mailbox in one millisecond stay apart.
                        SEQ.fetch_add(1 + i as u32, std::sync::atomic::Ordering::Relaxed) as i32,
                        serde_json::to_string(r).expect("access records serialise"),
                        ttl,
                    ),
                    "recording traffic data",
                )
            })))?;
        Ok(())
    }

    fn access_log(
        &self,
        mailbox: MailboxId,
        limit: usize,
    ) -> Result<Vec<AccessRecord>, StoreError> {
        let rows = self.rt.block_on(async {
            let res = self
                .exec(
                    &self.st.access_read,
                    (mailbox.to_string(), limit.min(i32::MAX as usize) as i32),
                    "reading traffic data",
                )
                .await?;
            collect::<(String,)>(res, "access_log")
        })?;
        rows.into_iter()
            .map(|(r,)| {
                serde_json::from_str(&r)
                    .map_err(|e| StoreError::Corrupt(format!("access record: {e}")))
            })
            .collect()
    }

    fn purge_access(&self, _before: DateTime<Utc>) -> Result<u64, StoreError> {
        // The rows expire with their TTL.
        Ok(0)
    }
}
