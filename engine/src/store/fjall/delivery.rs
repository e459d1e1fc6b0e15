//! The delivery aggregate of [`FjallStore`]: the article-29 follow-up: delivery records, timers, outbox, confirmations.

use super::*;

impl DeliveryStore for FjallStore {
    fn due_timers(
        &self,
        slot: u8,
        from_ms: i64,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<Timer>, StoreError> {
        // Taken before the read: a timer written meanwhile is either seen
        // by this read or noted for the next one.
        let behind = std::mem::replace(
            &mut self.behind.lock().unwrap_or_else(|p| p.into_inner())[slot as usize],
            i64::MAX,
        );
        let from_ms = from_ms.min(behind);
        let mut start = [0u8; 9];
        start[0] = slot;
        start[1..9].copy_from_slice(&((from_ms as u64) ^ (1 << 63)).to_be_bytes());
        let mut end = [0u8; 9];
        end[0] = slot;
        end[1..9].copy_from_slice(&((now_ms as u64) ^ (1 << 63)).to_be_bytes());
        if from_ms > now_ms {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for guard in self
            .timers
            .range::<&[u8], _>((
                Bound::Included(&start[..]),
                Bound::Excluded(&after_prefix(&end)[..]),
            ))
            .take(limit)
        {
            out.push(timer_of(&guard.key()?)?);
        }
        Ok(out)
    }

    fn timers_written(&self, slot: u8) -> bool {
        self.behind.lock().unwrap_or_else(|p| p.into_inner())[slot as usize] != i64::MAX
    }

    fn delivery(&self, code: TrackingCode) -> Result<Option<DeliveryRecord>, StoreError> {
        match self.delivery.get(code.as_u64().to_be_bytes())? {
            Some(v) => Ok(Some(decode_delivery(&v)?)),
            None => Ok(None),
        }
    }

    fn write_delivery(&self, writes: &[DeliveryWrite]) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        self.hold_write_buffer();
        let mut st = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = self
            .db
            .batch()
            .durability(Some(self.durability.persist_mode()));
        let mut last_outbox = st.last_outbox_id;
        // Chains met in this call: one notice may have several writes.
        let mut chains: HashMap<u64, Vec<StoredEvent>> = HashMap::new();
        for w in writes {
            for t in &w.remove_timers {
                batch.remove(&self.timers, timer_key(t));
            }
            for t in &w.add_timers {
                batch.insert(&self.timers, timer_key(t), []);
            }
            if let Some(rec) = &w.record {
                let code = rec.tracking_code.as_u64();
                batch.insert(&self.delivery, code.to_be_bytes(), encode_delivery(rec));
                match w.awaiting {
                    Some(true) => {
                        batch.insert(&self.awaiting, awaiting_key(rec.recipient, code), [])
                    }
                    Some(false) => batch.remove(&self.awaiting, awaiting_key(rec.recipient, code)),
                    None => {}
                }
                if w.purge_notice {
                    // The chain outlives the body: its first event, until
                    // now derived from the notice, is written down.
                    let key = event_key(code, 1);
                    if self.events.get(key)?.is_none() {
                        if let Some(n) = self.notice(rec.tracking_code)? {
                            batch.insert(&self.events, key, chain::first_event(&n).encode());
                        }
                    }
                    batch.remove(&self.notices, code.to_be_bytes());
                    batch.remove(&self.mailbox, mailbox_key(rec.recipient, code));
                    batch.remove(&self.awaiting, awaiting_key(rec.recipient, code));
                }
            }
            for (id, code) in &w.confirmation_ids {
                batch.insert(
                    &self.confirmations,
                    id.as_bytes(),
                    code.as_u64().to_be_bytes(),
                );
            }
            if let Some(rec) = &w.delete_record {
                let code = rec.tracking_code.as_u64();
                batch.remove(&self.delivery, code.to_be_bytes());
                batch.remove(&self.notices, code.to_be_bytes());
                batch.remove(&self.mailbox, mailbox_key(rec.recipient, code));
                batch.remove(&self.awaiting, awaiting_key(rec.recipient, code));
                batch.remove(&self.refs, ref_key(&rec.agency, &rec.reference));
                for c in &rec.confirmations {
                    batch.remove(&self.confirmations, c.confirmation_id.as_bytes());
                }
                for guard in self.events.prefix(code.to_be_bytes()) {
                    batch.remove(&self.events, guard.key()?);
                }
            }
            for r in &w.receipts {
                let mut r = r.clone();
                if let Some(code) = chain::code_of(&r) {
                    let events = match chains.entry(code.as_u64()) {
                        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => {
                            v.insert(self.events(code)?)
                        }
                    };
                    if w.replay {
                        if !chain::link_known(events, &mut r) {
                            continue;
                        }
                    } else if let Some(event) = chain::place(events, &mut r) {
                        batch.insert(
                            &self.events,
                            event_key(code.as_u64(), event.seq),
                            event.encode(),
                        );
                    }
                }
                let id = next_id(&mut last_outbox);
                batch.insert(&self.outbox, id.to_be_bytes(), encode_json(&r));
            }
        }
        batch.insert(
            &self.meta,
            META_DELIVERY_WRITES,
            (st.delivery_writes + 1).to_be_bytes(),
        );
        batch.commit()?;
        st.delivery_writes += 1;
        st.last_outbox_id = last_outbox;
        self.write_hint(&mut st, false);
        self.wrote_timers(writes.iter().flat_map(|w| &w.add_timers));
        Ok(())
    }

    fn events(&self, code: TrackingCode) -> Result<Vec<StoredEvent>, StoreError> {
        let mut out = Vec::new();
        for guard in self.events.prefix(code.as_u64().to_be_bytes()) {
            let (k, v) = guard.into_inner()?;
            let seq = k
                .get(8..12)
                .and_then(|s| s.try_into().ok())
                .map(u32::from_be_bytes)
                .ok_or_else(|| StoreError::Corrupt("event key".into()))?;
            out.push(
                StoredEvent::decode(seq, &v)
                    .ok_or_else(|| StoreError::Corrupt(format!("event {seq} of {code}")))?,
            );
        }
        if chain::lacks_first(&out) {
            if let Some(n) = self.notice(code)? {
                out.insert(0, chain::first_event(&n));
            }
        }
        Ok(out)
    }

    fn outbox(&self, after: Option<u64>, limit: usize) -> Result<Vec<(u64, Receipt)>, StoreError> {
        let removed = *self
            .outbox_removed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let start = match after.unwrap_or(0).max(removed) {
            0 => Bound::Unbounded,
            a => Bound::Excluded(a.to_be_bytes().to_vec()),
        };
        let mut out = Vec::new();
        let mut unreadable = Vec::new();
        for guard in self
            .outbox
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .take(limit)
        {
            let (k, v) = guard.into_inner()?;
            let id = u64_of(&k)?;
            match decode("outbox receipt", &v) {
                Ok(r) => out.push((id, r)),
                Err(e) => unreadable.push((id, e, v.to_vec())),
            }
        }
        // A receipt that cannot be read would stop every receipt behind
        // it: set aside, and gone from the outbox.
        for (id, e, bytes) in unreadable {
            crate::store::set_aside(
                self,
                "outbox_receipt",
                id.to_string(),
                &e,
                &bytes,
                String::new(),
            )?;
            let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
            batch.remove(&self.outbox, id.to_be_bytes());
            batch.commit()?;
        }
        Ok(out)
    }

    fn outbox_remove(&self, ids: &[u64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        // Losing a removal only re-publishes (receipts are at least once):
        // no fsync needed.
        let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
        for id in ids {
            batch.remove(&self.outbox, id.to_be_bytes());
        }
        batch.commit()?;
        // What was read is gone up to here (the reader returns the oldest
        // first, and its caller removes all it published).
        let max = ids.iter().copied().max().unwrap_or(0);
        let mut removed = self
            .outbox_removed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *removed = (*removed).max(max);
        Ok(())
    }

    fn confirmation(&self, id: &str) -> Result<Option<TrackingCode>, StoreError> {
        Ok(self
            .confirmations
            .get(id.as_bytes())?
            .map(|v| u64_of(&v))
            .transpose()?
            .map(TrackingCode::from_u64))
    }

    fn awaiting_activation(
        &self,
        id: MailboxId,
        limit: usize,
    ) -> Result<Vec<TrackingCode>, StoreError> {
        let mut out = Vec::new();
        for guard in self.awaiting.prefix(id.to_key()).take(limit) {
            let k = guard.key()?;
            out.push(TrackingCode::from_u64(u64_of(&k[9..])?));
        }
        Ok(out)
    }
}
