//! The quarantine of [`ScyllaStore`]: `quarantine` (migration 007), one
//! partition per node, clustered by a time-ordered ID.

use super::*;
use crate::model::Quarantined;
use crate::store::QuarantineStore;

impl QuarantineStore for ScyllaStore {
    fn quarantine(&self, q: &Quarantined) -> Result<(), StoreError> {
        self.guard()?;
        let mut q = q.clone();
        let mut last = 0;
        q.id = rows::next_id(&mut last, self.node as u16, Utc::now().timestamp_millis())
            // Two in one millisecond stay apart.
            | (QUARANTINE_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xfff);
        let entry = serde_json::to_string(&q).expect("quarantine entries serialise");
        self.rt.block_on(self.exec(
            &self.st.quarantine_put,
            (self.node, q.id as i64, entry),
            "setting a record aside",
        ))?;
        Ok(())
    }

    fn quarantined(&self, limit: usize) -> Result<Vec<Quarantined>, StoreError> {
        let rows = self.rt.block_on(async {
            let res = self
                .exec(
                    &self.st.quarantine_read,
                    (self.node, limit.min(i32::MAX as usize) as i32),
                    "reading the quarantine",
                )
                .await?;
            collect::<(String,)>(res, "quarantine")
        })?;
        rows.into_iter()
            .map(|(e,)| {
                serde_json::from_str(&e)
                    .map_err(|e| StoreError::Corrupt(format!("quarantine entry: {e}")))
            })
            .collect()
    }
}

static QUARANTINE_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
