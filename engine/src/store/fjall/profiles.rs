//! The profiles aggregate of [`FjallStore`]: mailbox profiles.

use super::*;

impl ProfileStore for FjallStore {
    fn put_profiles(&self, profiles: &[MailboxProfile]) -> Result<Vec<bool>, StoreError> {
        self.hold_write_buffer();
        // Serialised with notice writes: the read-compare-write must not
        // interleave with another profile write.
        let _st = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = self
            .db
            .batch()
            .durability(Some(self.durability.persist_mode()));
        let mut fresh: std::collections::HashMap<[u8; 9], chrono::DateTime<chrono::Utc>> =
            std::collections::HashMap::new();
        let mut applied = Vec::with_capacity(profiles.len());
        for p in profiles {
            let key = p.id.to_key();
            let current = match fresh.get(&key) {
                Some(&t) => Some(t),
                None => match self.profiles.get(key)? {
                    Some(v) => Some(decode::<MailboxProfile>("profile", &v)?.updated_at),
                    None => None,
                },
            };
            if current.is_some_and(|t| t > p.updated_at) {
                applied.push(false);
                continue;
            }
            fresh.insert(key, p.updated_at);
            batch.insert(&self.profiles, key, encode_json(p));
            applied.push(true);
        }
        batch.commit()?;
        Ok(applied)
    }

    fn delete_profiles(
        &self,
        ids: &[(MailboxId, chrono::DateTime<chrono::Utc>)],
    ) -> Result<(), StoreError> {
        let _st = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = self
            .db
            .batch()
            .durability(Some(self.durability.persist_mode()));
        for (id, at) in ids {
            let newer = match self.profiles.get(id.to_key())? {
                Some(v) => decode::<MailboxProfile>("profile", &v)?.updated_at > *at,
                None => false,
            };
            if !newer {
                batch.remove(&self.profiles, id.to_key());
            }
        }
        batch.commit()?;
        Ok(())
    }

    fn profile(&self, id: MailboxId) -> Result<Option<MailboxProfile>, StoreError> {
        match self.profiles.get(id.to_key())? {
            Some(v) => Ok(Some(decode("profile", &v)?)),
            None => Ok(None),
        }
    }
}
