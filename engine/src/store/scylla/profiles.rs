//! The profiles aggregate of [`ScyllaStore`]: mailbox profiles.

use super::*;

impl ProfileStore for ScyllaStore {
    fn put_profiles(&self, profiles: &[MailboxProfile]) -> Result<Vec<bool>, StoreError> {
        self.guard()?;
        Ok(self.rt.block_on(async {
            // What is stored now, per mailbox: updated_at (microseconds,
            // the unit of write timestamps) and the write time.
            let ids: Vec<MailboxId> = profiles
                .iter()
                .map(|p| p.id)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let current = self
                .all(ids.iter().map(|id| async move {
                    let res = self
                        .exec(&self.st.profile_get, (id.to_string(),), "reading a profile")
                        .await?;
                    let row =
                        collect::<(Option<String>, Option<i64>, Option<i64>)>(res, "profiles")?
                            .into_iter()
                            .next();
                    Ok::<_, ScyllaError>((*id, row.and_then(|(_, at, ts)| Some((at?, ts?)))))
                }))
                .await?;
            let mut state: HashMap<MailboxId, (i64, i64)> = current
                .into_iter()
                .filter_map(|(id, c)| Some((id, c?)))
                .collect();
            let mut applied = Vec::with_capacity(profiles.len());
            let mut winners: HashMap<MailboxId, (&MailboxProfile, i64)> = HashMap::new();
            for p in profiles {
                let us = p.updated_at.timestamp_micros();
                let ts = match state.get(&p.id) {
                    Some((at, _)) if *at > us => {
                        applied.push(false);
                        continue;
                    }
                    // Same time: a correction, which must also win the
                    // write-time comparison: one microsecond later. (So
                    // must anything after such a correction.)
                    Some((_, written)) => us.max(written + 1),
                    None => us,
                };
                state.insert(p.id, (us, ts));
                winners.insert(p.id, (p, ts));
                applied.push(true);
            }
            self.all(winners.values().map(|(p, ts)| {
                self.exec(
                    &self.st.profile_put,
                    (
                        p.id.to_string(),
                        p.updated_at.timestamp_micros(),
                        serde_json::to_string(p).expect("profiles serialise"),
                        *ts,
                    ),
                    "writing a profile",
                )
            }))
            .await?;
            Ok::<_, ScyllaError>(applied)
        })?)
    }

    fn delete_profiles(&self, ids: &[(MailboxId, DateTime<Utc>)]) -> Result<(), StoreError> {
        self.guard()?;
        self.rt.block_on(self.all(ids.iter().map(|(id, at)| {
            // The tombstone's time decides against profiles' updated_at.
            self.exec(
                &self.st.profile_delete,
                (at.timestamp_micros(), id.to_string()),
                "removing a profile",
            )
        })))?;
        Ok(())
    }

    fn profile(&self, id: MailboxId) -> Result<Option<MailboxProfile>, StoreError> {
        self.rt.block_on(async {
            let res = self
                .exec(&self.st.profile_get, (id.to_string(),), "reading a profile")
                .await?;
            match collect::<(Option<String>, Option<i64>, Option<i64>)>(res, "profiles")?
                .into_iter()
                .next()
            {
                Some((Some(json), _, _)) => {
                    Ok(Some(serde_json::from_str(&json).map_err(|e| {
                        StoreError::Corrupt(format!("profile: {e}"))
                    })?))
                }
                _ => Ok(None),
            }
        })
    }
}
