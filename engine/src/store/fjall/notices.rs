//! The notices aggregate of [`FjallStore`]: notices, rejections and dead letters.

use super::*;

impl NoticeStore for FjallStore {
    fn write(&self, entries: &[Entry]) -> Result<Vec<Outcome>, StoreError> {
        self.hold_write_buffer();
        // One writer at a time: the reference check and the insert must not
        // interleave with another batch's.
        let mut st = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = self
            .db
            .batch()
            .durability(Some(self.durability.persist_mode()));
        // References first seen in this batch; the store has not got them yet.
        let mut fresh: std::collections::HashMap<Vec<u8>, RefEntry> =
            std::collections::HashMap::new();
        let mut outcomes = Vec::with_capacity(entries.len());
        // Source positions of rejections and dead letters kept by this
        // batch: a record twice in one batch is kept once too.
        let mut kept: std::collections::HashMap<String, [u8; 16]> =
            std::collections::HashMap::new();
        let mut max_tracking = st.last_tracking;
        let mut rejection_written = false;
        let mut new_timers = Vec::new();
        let mut scratch = Vec::new();

        for entry in entries {
            match entry {
                Entry::Notice(n) => {
                    let key = ref_key(&n.notice.agency, &n.notice.reference);
                    let existing = match fresh.get(&key) {
                        Some(v) => Some(v.clone()),
                        None => self.lookup_ref(&key)?,
                    };
                    let source = crate::model::position_id(&n.position);
                    match existing {
                        Some(RefEntry {
                            code,
                            hash,
                            source: first,
                        }) if hash == n.content_hash => {
                            outcomes.push(Outcome::Duplicate {
                                original: TrackingCode::from_u64(code),
                                redelivery: first.as_deref() == Some(source.as_bytes()),
                            });
                        }
                        Some(RefEntry { code, .. }) => {
                            let original = TrackingCode::from_u64(code);
                            let rejection = NewRejection {
                                agency: Some(n.notice.agency.clone()),
                                reference: Some(n.notice.reference.clone()),
                                problems: vec![Problem::new(
                                    Reason::ReferenceConflict,
                                    "reference".to_owned(),
                                    format!("reference was already used for notice {original} with different content; the original is kept"),
                                )],
                                position: n.position.clone(),
                                at: n.accepted_at,
                            };
                            rejection_written |= self.put_rejection(
                                &mut batch,
                                &mut st.last_rejection_id,
                                &mut kept,
                                &rejection,
                            )?;
                            outcomes.push(Outcome::Conflict { original });
                        }
                        None => {
                            let code = n.tracking_code.as_u64();
                            let record = StoredNoticeRef {
                                tracking_code: n.tracking_code,
                                accepted_at: &n.accepted_at,
                                content_hash: &n.content_hash,
                                notice: &n.notice,
                            };
                            batch.insert(
                                &self.notices,
                                code.to_be_bytes(),
                                encode_in(&mut scratch, FORMAT, &record),
                            );
                            batch.insert(&self.mailbox, mailbox_key(n.notice.recipient, code), []);
                            let mut v = Vec::with_capacity(40 + source.len());
                            v.extend_from_slice(&code.to_be_bytes());
                            v.extend_from_slice(&n.content_hash);
                            v.extend_from_slice(source.as_bytes());
                            batch.insert(&self.refs, key.clone(), v);
                            // The follow-up starts with the notice, atomically.
                            let rec = n.delivery_record();
                            for t in rec.initial_timers() {
                                batch.insert(&self.timers, timer_key(&t), []);
                                new_timers.push(t);
                            }
                            batch.insert(
                                &self.delivery,
                                code.to_be_bytes(),
                                encode_in(&mut scratch, FORMAT_DELIVERY_V6, &rec),
                            );
                            // The chain's first event, `accepted`, is the
                            // notice record itself (`FjallStore::events`):
                            // nothing more to write on the ingest path.
                            fresh.insert(
                                key,
                                RefEntry {
                                    code,
                                    hash: n.content_hash,
                                    source: Some(source.into_bytes()),
                                },
                            );
                            max_tracking = Some(max_tracking.map_or(code, |m| m.max(code)));
                            outcomes.push(Outcome::Stored);
                        }
                    }
                }
                Entry::Rejection(r) => {
                    if self.put_rejection(&mut batch, &mut st.last_rejection_id, &mut kept, r)? {
                        rejection_written = true;
                        outcomes.push(Outcome::Kept);
                    } else {
                        outcomes.push(Outcome::Again);
                    }
                }
                Entry::DeadLetter(d) => {
                    let source = crate::model::dead_letter_source(d);
                    if self.kept_again(&mut kept, source.clone())? {
                        outcomes.push(Outcome::Again);
                        continue;
                    }
                    let id = next_id(&mut st.last_dead_letter_id);
                    batch.insert(&self.dead_letters, id.to_be_bytes(), encode_json(d));
                    self.keep_source(&mut batch, source, id);
                    outcomes.push(Outcome::Kept);
                }
            }
        }
        if max_tracking != st.last_tracking {
            if let Some(m) = max_tracking {
                batch.insert(&self.meta, META_LAST_TRACKING, m.to_be_bytes());
            }
        }
        if rejection_written {
            batch.insert(
                &self.meta,
                META_LAST_REJECTION,
                st.last_rejection_id.to_be_bytes(),
            );
        }
        batch.commit()?;
        st.last_tracking = max_tracking;
        st.durable_rejection_id = st.last_rejection_id;
        self.write_hint(&mut st, false);
        self.wrote_timers(&new_timers);
        Ok(outcomes)
    }

    fn notice(&self, code: TrackingCode) -> Result<Option<StoredNotice>, StoreError> {
        match self.notices.get(code.as_u64().to_be_bytes())? {
            Some(v) => Ok(Some(decode("notice", &v)?)),
            None => Ok(None),
        }
    }

    fn mailbox(
        &self,
        id: MailboxId,
        before: Option<TrackingCode>,
        limit: usize,
    ) -> Result<MailboxPage, StoreError> {
        let start = match before {
            Some(b) => Bound::Excluded(mailbox_key(id, b.as_u64()).to_vec()),
            None => Bound::Included(mailbox_key(id, u64::MAX).to_vec()),
        };
        let end = Bound::Included(mailbox_key(id, 0).to_vec());
        let mut notices = Vec::with_capacity(limit.min(1000));
        let mut next = None;
        for guard in self.mailbox.range::<Vec<u8>, _>((start, end)) {
            let key = guard.key()?;
            let code = TrackingCode::from_u64(!u64_of(&key[9..])?);
            if notices.len() == limit {
                next = notices.last().map(|n: &StoredNotice| n.tracking_code);
                break;
            }
            match self.notice(code)? {
                Some(n) => notices.push(n),
                None => {
                    return Err(StoreError::Corrupt(format!(
                        "mailbox index points at missing notice {code}"
                    )))
                }
            }
        }
        Ok(MailboxPage { notices, next })
    }

    fn reference(
        &self,
        agency: &AgencyId,
        reference: &str,
    ) -> Result<Option<TrackingCode>, StoreError> {
        Ok(self
            .lookup_ref(&ref_key(agency, reference))?
            .map(|r| TrackingCode::from_u64(r.code)))
    }

    fn agency_references(
        &self,
        agency: &AgencyId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<crate::store::ReferencePage, StoreError> {
        let prefix = ref_key(agency, "");
        let mut end = agency.as_str().as_bytes().to_vec();
        end.push(1);
        let start = match after {
            Some(r) => Bound::Excluded(ref_key(agency, r)),
            None => Bound::Included(prefix.clone()),
        };
        let mut out = Vec::new();
        for guard in self
            .refs
            .range::<Vec<u8>, _>((start, Bound::Excluded(end)))
            .take(limit)
        {
            let (k, v) = guard.into_inner()?;
            let reference = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.push((
                reference,
                TrackingCode::from_u64(u64_of(&v[..8.min(v.len())])?),
            ));
        }
        let next = (out.len() == limit)
            .then(|| out.last().map(|r| r.0.clone()))
            .flatten();
        Ok((out, next))
    }

    fn rejections(
        &self,
        agency: Option<&AgencyId>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredRejection>, StoreError> {
        let start = match after {
            Some(a) => Bound::Excluded(rejection_key(agency, a)),
            None => Bound::Included(rejection_key(agency, 0)),
        };
        self.stored_rejections(agency, start, false, limit)
    }

    fn latest_rejections(
        &self,
        agency: Option<&AgencyId>,
        limit: usize,
    ) -> Result<Vec<StoredRejection>, StoreError> {
        let start = Bound::Included(rejection_key(agency, 0));
        self.stored_rejections(agency, start, true, limit)
    }

    fn dead_letters(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, DeadLetter)>, StoreError> {
        let start = match after {
            Some(a) => Bound::Excluded(a.to_be_bytes().to_vec()),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for guard in self
            .dead_letters
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .take(limit)
        {
            let (k, v) = guard.into_inner()?;
            out.push((u64_of(&k)?, decode("dead letter", &v)?));
        }
        Ok(out)
    }

    fn purge_traffic(&self, before: chrono::DateTime<chrono::Utc>) -> Result<u64, StoreError> {
        // IDs are the time they were kept (ms << 16): everything below the
        // cut's ID is older. Dead letters are keyed by ID; rejections by
        // agency ‖ 0 ‖ ID, so each agency's run below the cut is one range.
        let cut = (before.timestamp_millis().max(0) as u64) << 16;
        let mut n = 0;
        n += self.remove_ranges(
            &self.dead_letters,
            vec![(Vec::new(), cut.to_be_bytes().to_vec())],
        )?;
        let mut ranges = Vec::new();
        let mut from: Vec<u8> = Vec::new();
        while let Some(guard) = self.rejections.range(from.clone()..).next() {
            let k = guard.key()?;
            let Some(sep) = k.iter().position(|&b| b == 0) else {
                return Err(StoreError::Corrupt(
                    "a rejection key without its agency".into(),
                ));
            };
            let agency = k[..sep].to_vec();
            let mut lo = agency.clone();
            lo.push(0);
            let mut hi = lo.clone();
            hi.extend_from_slice(&cut.to_be_bytes());
            ranges.push((lo, hi));
            from = agency;
            from.push(1);
        }
        n += self.remove_ranges(&self.rejections, ranges)?;
        // Their sources' index: the ID (the time it was kept) leads each
        // value. One walk of the index, one entry per kept record.
        // Removed 10,000 at a time as the walk goes (it reads a snapshot),
        // so a flood of bad records purged at once never sits in memory.
        let mut old = Vec::new();
        let remove = |old: &mut Vec<Vec<u8>>| -> Result<(), StoreError> {
            let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
            for k in old.drain(..) {
                batch.remove(&self.kept_sources, k);
            }
            batch.commit()?;
            Ok(())
        };
        for guard in self.kept_sources.iter() {
            let (k, v) = guard.into_inner()?;
            if v.len() >= 8 && u64_of(&v[..8])? < cut {
                old.push(k.to_vec());
                if old.len() == 10_000 {
                    remove(&mut old)?;
                }
            }
        }
        remove(&mut old)?;
        Ok(n)
    }

    fn last_tracking_code(&self) -> Result<Option<TrackingCode>, StoreError> {
        let st = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        Ok(st.last_tracking.map(TrackingCode::from_u64))
    }

    fn accepted_out(&self) -> Result<Option<TrackingCode>, StoreError> {
        self.meta
            .get(META_ACCEPTED_OUT)?
            .map(|v| u64_of(&v).map(TrackingCode::from_u64))
            .transpose()
    }

    fn mark_accepted_out(&self, code: TrackingCode) -> Result<(), StoreError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
        batch.insert(&self.meta, META_ACCEPTED_OUT, code.as_u64().to_be_bytes());
        batch.commit()?;
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            disk_bytes: self.db.disk_space().unwrap_or(0) + self.traffic.disk_space().unwrap_or(0),
            notices_approx: self.notices.approximate_len() as u64,
            write_buffer_bytes: self.db.write_buffer_size(),
            cache_bytes: self.db.cache_size(),
            journal_files: self.db.journal_count() as u64,
            pinned_bytes: self
                .keyspaces()
                .map(|k| (k.tree.pinned_filter_size() + k.tree.pinned_block_index_size()) as u64)
                .sum(),
            tables: self.keyspaces().map(|k| k.table_count() as u64).sum(),
        }
    }
}

impl FjallStore {
    /// Adds `r` and its source to `batch` under the next rejection ID,
    /// unless the same record was kept before (it came again): whether it
    /// was added.
    fn put_rejection(
        &self,
        batch: &mut fjall::OwnedWriteBatch,
        last_id: &mut u64,
        kept: &mut std::collections::HashMap<String, [u8; 16]>,
        r: &NewRejection,
    ) -> Result<bool, StoreError> {
        let source = r.kept_source();
        if self.kept_again(kept, source.clone())? {
            return Ok(false);
        }
        let id = next_id(last_id);
        batch.insert(
            &self.rejections,
            rejection_key(r.agency.as_ref(), id),
            encode_json(r),
        );
        self.keep_source(batch, source, id);
        Ok(true)
    }

    /// Whether a rejection or dead letter from `source` was kept before,
    /// saying the same (it came again); if not, notes it as kept by this
    /// batch.
    fn kept_again(
        &self,
        kept: &mut std::collections::HashMap<String, [u8; 16]>,
        source: Option<(String, [u8; 16])>,
    ) -> Result<bool, StoreError> {
        let Some((pos, fp)) = source else {
            return Ok(false);
        };
        if kept.get(&pos) == Some(&fp) {
            return Ok(true);
        }
        let before = self
            .kept_sources
            .get(pos.as_bytes())?
            .is_some_and(|v| v.len() == 24 && v[8..] == fp);
        if !before {
            kept.insert(pos, fp);
        }
        Ok(before)
    }

    /// Indexes a kept rejection or dead letter (ID `id`) by its source.
    fn keep_source(
        &self,
        batch: &mut fjall::OwnedWriteBatch,
        source: Option<(String, [u8; 16])>,
        id: u64,
    ) {
        if let Some((pos, fp)) = source {
            let mut v = Vec::with_capacity(24);
            v.extend_from_slice(&id.to_be_bytes());
            v.extend_from_slice(&fp);
            batch.insert(&self.kept_sources, pos.into_bytes(), v);
        }
    }

    /// An agency's (`None`: unattributed) rejections from `start` to the
    /// end of its bucket, oldest first or (`newest`) newest first, decoded.
    fn stored_rejections(
        &self,
        agency: Option<&AgencyId>,
        start: Bound<Vec<u8>>,
        newest: bool,
        limit: usize,
    ) -> Result<Vec<StoredRejection>, StoreError> {
        let bucket = agency_bucket(agency);
        let mut end = bucket.to_vec();
        end.push(1);
        let range = self
            .rejections
            .range::<Vec<u8>, _>((start, Bound::Excluded(end)));
        let rows: Box<dyn Iterator<Item = _>> = if newest {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        let mut out = Vec::new();
        for guard in rows.take(limit) {
            let (k, v) = guard.into_inner()?;
            let id = u64_of(&k[bucket.len() + 1..])?;
            out.push(StoredRejection {
                id,
                rejection: decode("rejection", &v)?,
            });
        }
        Ok(out)
    }
}
