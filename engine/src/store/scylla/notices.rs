//! The notices aggregate of [`ScyllaStore`]: notices, rejections and dead letters.

use super::*;

impl NoticeStore for ScyllaStore {
    fn write(&self, entries: &[Entry]) -> Result<Vec<Outcome>, StoreError> {
        self.guard()?;
        Ok(self.rt.block_on(async {
            // One writer at a time: IDs and high-water marks.
            let mut w = self.writer.lock().await;
            let print = fingerprint(entries);
            let mut ids = Ids {
                reuse: match w.failed.take() {
                    Some((f, ids)) if f == print => ids.into(),
                    _ => Default::default(),
                },
                used: Vec::new(),
                node: self.node as u16,
                now_ms: Utc::now().timestamp_millis(),
            };
            let result = self.write_entries(&mut w, entries, &mut ids).await;
            if result.is_err() {
                // The pipeline retries these entries: they keep their IDs.
                w.failed = Some((print, ids.used));
            }
            result
        })?)
    }

    fn notice(&self, code: TrackingCode) -> Result<Option<StoredNotice>, StoreError> {
        self.rt.block_on(async {
            let res = self
                .exec(&self.st.notice_get, (code_col(code),), "reading a notice")
                .await?;
            match collect::<NoticeRow>(res, "notices")?.into_iter().next() {
                Some(row) => Ok(Some(row.into_stored()?)),
                None => Ok(None),
            }
        })
    }

    fn mailbox(
        &self,
        id: MailboxId,
        before: Option<TrackingCode>,
        limit: usize,
    ) -> Result<MailboxPage, StoreError> {
        if limit == 0 {
            return Ok(MailboxPage {
                notices: Vec::new(),
                next: None,
            });
        }
        let limit = limit.min(i32::MAX as usize - 1);
        let mid = id.to_string();
        let codes: Vec<TrackingCode> = self.rt.block_on(async {
            let res = match before {
                Some(b) => {
                    self.exec(
                        &self.st.months_before,
                        (&mid, month_of(b)),
                        "listing mailbox months",
                    )
                    .await?
                }
                None => {
                    self.exec(&self.st.months, (&mid,), "listing mailbox months")
                        .await?
                }
            };
            let months = collect::<(i32,)>(res, "mailbox_months")?;
            let mut codes = Vec::new();
            // One more than asked, to know whether there is a next page.
            for (month,) in months {
                let want = (limit + 1 - codes.len()) as i32;
                let res = match before {
                    Some(b) if month == month_of(b) => {
                        self.exec(
                            &self.st.mailbox_page_before,
                            (&mid, month, code_col(b), want),
                            "reading a mailbox",
                        )
                        .await?
                    }
                    _ => {
                        self.exec(
                            &self.st.mailbox_page,
                            (&mid, month, want),
                            "reading a mailbox",
                        )
                        .await?
                    }
                };
                codes.extend(
                    collect::<(i64,)>(res, "mailbox_notices")?
                        .into_iter()
                        .map(|(c,)| code_of(c)),
                );
                if codes.len() > limit {
                    break;
                }
            }
            Ok::<_, ScyllaError>(codes)
        })?;
        let more = codes.len() > limit;
        let page: Vec<TrackingCode> = codes.into_iter().take(limit).collect();
        let notices = self.rt.block_on(async {
            self.all(page.iter().map(|&c| async move {
                let res = self
                    .exec(&self.st.notice_get, (code_col(c),), "reading a notice")
                    .await?;
                Ok::<_, ScyllaError>(collect::<NoticeRow>(res, "notices")?.into_iter().next())
            }))
            .await
        })?;
        let mut out = Vec::with_capacity(notices.len());
        for row in notices {
            match row {
                Some(r) => out.push(r.into_stored()?),
                // Expired between the listing and the read, or a write
                // still being completed: not shown.
                None => StoreRepaired::OrphanMailboxEntry.emit(),
            }
        }
        let next = if more { page.last().copied() } else { None };
        Ok(MailboxPage { notices: out, next })
    }

    fn reference(
        &self,
        agency: &AgencyId,
        reference: &str,
    ) -> Result<Option<TrackingCode>, StoreError> {
        Ok(self.rt.block_on(async {
            let res = self
                .exec(
                    &self.st.ref_get,
                    (agency.as_str(), reference),
                    "reading a reference",
                )
                .await?;
            Ok::<_, ScyllaError>(
                collect::<(Option<i64>, Option<Vec<u8>>, Option<DateTime<Utc>>)>(
                    res,
                    "agency_refs",
                )?
                .into_iter()
                .next()
                .and_then(|(c, _, _)| c.map(code_of)),
            )
        })?)
    }

    fn agency_references(
        &self,
        agency: &AgencyId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<crate::store::ReferencePage, StoreError> {
        // The table is keyed by (agency, reference): walk every token in
        // order, keep this agency's rows; the cursor is the last token read.
        let mut token: i64 = match after {
            Some(t) => t
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("not a cursor: {t:?}")))?,
            None => i64::MIN,
        };
        let page = limit.clamp(1, 5000) as i32;
        Ok(self.rt.block_on(async {
            let mut out = Vec::new();
            loop {
                let res = self
                    .exec(&self.st.refs_scan, (token, page), "scanning the references")
                    .await?;
                let rows = collect::<(i64, Option<String>, Option<String>, Option<i64>)>(
                    res,
                    "agency_refs",
                )?;
                let n = rows.len();
                for (t, a, r, c) in rows {
                    token = t;
                    if let (Some(a), Some(r), Some(c)) = (a, r, c) {
                        if a == agency.as_str() {
                            out.push((r, code_of(c)));
                        }
                    }
                }
                if (n as i32) < page {
                    return Ok::<_, ScyllaError>((out, None));
                }
                if out.len() >= limit {
                    return Ok((out, Some(token.to_string())));
                }
            }
        })?)
    }

    fn rejections(
        &self,
        agency: Option<&AgencyId>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredRejection>, StoreError> {
        let read = TrafficRead::After(after.unwrap_or(0));
        self.stored_rejections(agency, read, limit)
    }

    fn latest_rejections(
        &self,
        agency: Option<&AgencyId>,
        limit: usize,
    ) -> Result<Vec<StoredRejection>, StoreError> {
        self.stored_rejections(agency, TrafficRead::Newest, limit)
    }

    fn dead_letters(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, DeadLetter)>, StoreError> {
        let rows = self.rt.block_on(self.traffic(
            "d",
            DEAD_LETTER_DAYS,
            TrafficRead::After(after.unwrap_or(0)),
            limit,
        ))?;
        rows.into_iter()
            .map(|(id, rec)| {
                Ok((
                    id,
                    serde_json::from_str(&rec)
                        .map_err(|e| StoreError::Corrupt(format!("dead letter {id}: {e}")))?,
                ))
            })
            .collect()
    }

    fn purge_traffic(&self, _before: DateTime<Utc>) -> Result<u64, StoreError> {
        // Rejections and dead letters carry the TTL of
        // scylla.traffic_retention: the cluster removes them.
        Ok(0)
    }

    fn last_tracking_code(&self) -> Result<Option<TrackingCode>, StoreError> {
        Ok(self
            .rt
            .block_on(self.writer.lock())
            .last_tracking
            .map(TrackingCode::from_u64))
    }

    fn accepted_out(&self) -> Result<Option<TrackingCode>, StoreError> {
        let rows = self.rt.block_on(async {
            let res = self
                .exec(&self.st.state_get, (self.node,), "reading node state")
                .await?;
            collect::<(String, i64)>(res, "node_state")
        })?;
        Ok(rows
            .into_iter()
            .find(|(name, _)| name == ACCEPTED_OUT)
            .map(|(_, v)| TrackingCode::from_u64(v as u64)))
    }

    fn mark_accepted_out(&self, code: TrackingCode) -> Result<(), StoreError> {
        self.guard()?;
        self.rt.block_on(self.exec(
            &self.st.state_put,
            (self.node, ACCEPTED_OUT, code.as_u64() as i64),
            "marking the accepted receipts out",
        ))?;
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        // The cluster's estimate, read once a minute (`size`); the other
        // sizes are the embedded store's own.
        StoreStats {
            disk_bytes: self.disk_bytes.load(std::sync::atomic::Ordering::Relaxed),
            ..StoreStats::default()
        }
    }
}

impl ScyllaStore {
    /// An agency's (`None`: unattributed) rejections as `read` asks,
    /// decoded.
    fn stored_rejections(
        &self,
        agency: Option<&AgencyId>,
        read: TrafficRead,
        limit: usize,
    ) -> Result<Vec<StoredRejection>, StoreError> {
        let agency = agency.map_or(UNATTRIBUTED, |a| a.as_str());
        let rows = self.rt.block_on(self.traffic("r", agency, read, limit))?;
        rows.into_iter()
            .map(|(id, rec)| {
                Ok(StoredRejection {
                    id,
                    rejection: serde_json::from_str(&rec)
                        .map_err(|e| StoreError::Corrupt(format!("rejection {id}: {e}")))?,
                })
            })
            .collect()
    }
}
