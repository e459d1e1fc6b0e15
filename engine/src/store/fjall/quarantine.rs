//! The quarantine of [`FjallStore`]: records that could not be read back,
//! in the `quarantine` keyspace (time-ordered ID → JSON), oldest first.

use super::*;
use crate::model::Quarantined;
use crate::store::QuarantineStore;

impl QuarantineStore for FjallStore {
    fn quarantine(&self, q: &Quarantined) -> Result<(), StoreError> {
        let mut last = self.parked_last.lock().unwrap_or_else(|p| p.into_inner());
        let mut q = q.clone();
        q.id = next_id(&mut last);
        let mut batch = self
            .db
            .batch()
            .durability(Some(self.durability.persist_mode()));
        batch.insert(&self.quarantine, q.id.to_be_bytes(), encode_json(&q));
        batch.commit()?;
        Ok(())
    }

    fn quarantined(&self, limit: usize) -> Result<Vec<Quarantined>, StoreError> {
        let mut out = Vec::new();
        for guard in self.quarantine.iter().take(limit) {
            let (_, v) = guard.into_inner()?;
            out.push(decode("quarantined record", &v)?);
        }
        Ok(out)
    }
}
