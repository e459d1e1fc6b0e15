//! The delivery aggregate of [`ScyllaStore`]: the article-29 follow-up: delivery records, timers, outbox, confirmations.

use super::*;

impl DeliveryStore for ScyllaStore {
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
            &mut self
                .timer_state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .behind[slot as usize],
            i64::MAX,
        );
        let from_ms = from_ms.min(behind);
        if from_ms > now_ms || limit == 0 {
            return Ok(Vec::new());
        }
        let sh = slot as i8;
        let (first, last) = (hour_of(from_ms), hour_of(now_ms));
        Ok(self.rt.block_on(async {
            // Only the hours that hold timers (an idle stretch costs nothing).
            let res = self
                .exec(
                    &self.st.timer_hours,
                    (self.node, sh, first, last, 10_000i32),
                    "listing timer hours",
                )
                .await?;
            let hours = collect::<(i32,)>(res, "timer_hours")?;
            let mut out = Vec::new();
            for (h,) in hours {
                if out.len() >= limit {
                    break;
                }
                let want = (limit - out.len()).min(i32::MAX as usize) as i32;
                let res = self
                    .exec(
                        &self.st.timers_due,
                        (self.node, sh, h, from_ms, now_ms, want),
                        "reading due timers",
                    )
                    .await?;
                let rows = collect::<(i64, i64, i8)>(res, "timers")?;
                if rows.is_empty() && h < last && from_ms <= hour_start_ms(h) && !self.read_only {
                    // A past hour read whole and found empty: handled, and
                    // never read again.
                    self.forget_hour(sh, h).await?;
                }
                for (due_ms, code, kind) in rows {
                    let kind = TimerKind::from_u8(kind as u8).ok_or_else(|| ScyllaError::Rows {
                        what: "timers".into(),
                        message: format!("unknown timer kind {kind}"),
                    })?;
                    out.push(Timer {
                        slot,
                        due_ms,
                        code: code_of(code),
                        kind,
                    });
                }
            }
            Ok::<_, ScyllaError>(out)
        })?)
    }

    fn timers_written(&self, slot: u8) -> bool {
        self.timer_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .behind[slot as usize]
            != i64::MAX
    }

    fn delivery(&self, code: TrackingCode) -> Result<Option<DeliveryRecord>, StoreError> {
        self.rt.block_on(async {
            let res = self
                .exec(
                    &self.st.delivery_get,
                    (code_col(code),),
                    "reading a delivery record",
                )
                .await?;
            match collect::<(Option<String>,)>(res, "deliveries")?
                .into_iter()
                .next()
            {
                Some((Some(json),)) => {
                    Ok(Some(serde_json::from_str(&json).map_err(|e| {
                        StoreError::Corrupt(format!("delivery record {code}: {e}"))
                    })?))
                }
                _ => Ok(None),
            }
        })
    }

    fn events(&self, code: TrackingCode) -> Result<Vec<crate::model::StoredEvent>, StoreError> {
        Ok(self.rt.block_on(self.read_events(code))?)
    }

    fn write_delivery(&self, writes: &[DeliveryWrite]) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        self.guard()?;
        let now = Utc::now();
        // Outbox IDs, held in flight until written so a reader never
        // passes one that is not durable yet.
        let ids: Vec<Vec<u64>> = {
            let mut o = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
            writes
                .iter()
                .map(|w| {
                    w.receipts
                        .iter()
                        .map(|_| {
                            let id =
                                next_id(&mut o.last_id, self.node as u16, now.timestamp_millis());
                            o.in_flight.insert(id);
                            id
                        })
                        .collect()
                })
                .collect()
        };
        let result = self.rt.block_on(async {
            // 0. Each receipt is its notice's next event: read the chains
            //    (a retried write finds its events there and reuses them).
            let mut chains: HashMap<TrackingCode, Vec<crate::model::StoredEvent>> = HashMap::new();
            let codes: HashSet<TrackingCode> = writes
                .iter()
                .flat_map(|w| w.receipts.iter().filter_map(chain::code_of))
                .collect();
            for code in codes {
                chains.insert(code, self.read_events(code).await?);
            }
            let mut events = Vec::new();
            let mut sealed: Vec<Vec<Receipt>> = Vec::with_capacity(writes.len());
            for w in writes {
                let rec = w.record.as_ref().or(w.delete_record.as_ref());
                let ttl = rec.map_or(0, |r| self.record_ttl(r, now));
                let mut out = Vec::with_capacity(w.receipts.len());
                for r in &w.receipts {
                    let mut r = r.clone();
                    if let Some(code) = chain::code_of(&r) {
                        let chain = chains.entry(code).or_default();
                        if w.replay {
                            // Its unused outbox ID is released with the rest.
                            if !chain::link_known(chain, &mut r) {
                                continue;
                            }
                        } else if let Some(e) = chain::place(chain, &mut r) {
                            events.push((code, e, ttl));
                        }
                    }
                    out.push(r);
                }
                sealed.push(out);
            }
            // The chain outlives the body: a notice purged now gets its
            // first event, until now derived from its row, written down.
            for w in writes.iter().filter(|w| w.purge_notice) {
                let Some(rec) = &w.record else { continue };
                let code = rec.tracking_code;
                if chain::lacks_first(&self.stored_events(code).await?) {
                    if let Some(n) = self.read_notice(code).await? {
                        events.push((code, chain::first_event(&n), self.record_ttl(rec, now)));
                    }
                }
            }
            self.all(
                events
                    .iter()
                    .map(|(code, e, ttl)| self.put_event(*code, e, *ttl)),
            )
            .await?;
            // 1. Receipts, new timers and awaiting entries: additive.
            let receipts = sealed
                .iter()
                .zip(&ids)
                .flat_map(|(rs, ids)| rs.iter().zip(ids));
            self.all(receipts.map(|(r, &id)| {
                self.exec(
                    &self.st.outbox_put,
                    (
                        self.node,
                        hour_of(id_ms(id)),
                        id as i64,
                        serde_json::to_string(r).expect("receipts serialise"),
                    ),
                    "writing the outbox",
                )
            }))
            .await?;
            let adds: Vec<Timer> = writes
                .iter()
                .flat_map(|w| w.add_timers.iter().copied())
                .collect();
            self.put_timers(&adds).await?;
            let awaiting = writes.iter().filter_map(|w| match (&w.record, w.awaiting) {
                (Some(rec), Some(true)) if !w.purge_notice => Some(rec),
                _ => None,
            });
            self.all(awaiting.map(|rec| {
                self.exec(
                    &self.st.awaiting_put,
                    (
                        rec.recipient.to_string(),
                        self.node_of(rec.tracking_code),
                        code_col(rec.tracking_code),
                        ttl_until(rec.expires_at, now, NOTICE_TTL_SLACK_SECS),
                    ),
                    "writing an awaiting entry",
                )
            }))
            .await?;
            // 2. The records.
            self.all(writes.iter().filter_map(|w| w.record.as_ref()).map(|rec| {
                self.exec(
                    &self.st.delivery_put,
                    (
                        code_col(rec.tracking_code),
                        rec.state.name(),
                        serde_json::to_string(rec).expect("delivery records serialise"),
                        self.record_ttl(rec, now),
                    ),
                    "writing a delivery record",
                )
            }))
            .await?;
            // 3. Confirmation IDs (the record already holds them).
            self.all(
                writes
                    .iter()
                    .flat_map(|w| {
                        // As long as the record (without one: no TTL).
                        let ttl = w.record.as_ref().map_or(0, |r| self.record_ttl(r, now));
                        w.confirmation_ids
                            .iter()
                            .map(move |(id, code)| (id, *code, ttl))
                    })
                    .map(|(id, code, ttl)| {
                        self.exec(
                            &self.st.confirmation_put,
                            (id, code_col(code), ttl),
                            "recording a confirmation",
                        )
                    }),
            )
            .await?;
            // 4. Removals: what expired or ended, then (5) the timers that
            //    led here, last of all, so a write that stops part-way
            //    leaves a timer to redo it. A timer removed and added again
            //    in one write (the same due time) stays.
            for w in writes {
                if let (Some(rec), Some(false)) = (&w.record, w.awaiting) {
                    self.exec(
                        &self.st.awaiting_delete,
                        (
                            rec.recipient.to_string(),
                            self.node_of(rec.tracking_code),
                            code_col(rec.tracking_code),
                        ),
                        "removing an awaiting entry",
                    )
                    .await?;
                }
                let gone = w.delete_record.as_ref().or(if w.purge_notice {
                    w.record.as_ref()
                } else {
                    None
                });
                if let Some(rec) = gone {
                    let (c, mid) = (code_col(rec.tracking_code), rec.recipient.to_string());
                    let (a, b, d) = tokio::join!(
                        self.exec(&self.st.notice_delete, (c,), "removing a notice"),
                        self.exec(
                            &self.st.mailbox_delete,
                            (&mid, month_of(rec.tracking_code), c),
                            "removing a mailbox entry"
                        ),
                        self.exec(
                            &self.st.awaiting_delete,
                            (&mid, self.node_of(rec.tracking_code), c),
                            "removing an awaiting entry"
                        ),
                    );
                    a?;
                    b?;
                    d?;
                }
                if let Some(rec) = &w.delete_record {
                    let c = code_col(rec.tracking_code);
                    self.exec(&self.st.delivery_delete, (c,), "removing a delivery record")
                        .await?;
                    self.exec(&self.st.events_delete, (c,), "removing notice events")
                        .await?;
                    self.exec(
                        &self.st.source_delete,
                        (rec.agency.as_str(), &rec.reference),
                        "forgetting a reference's source",
                    )
                    .await?;
                    self.exec(
                        &self.st.ref_delete,
                        (rec.agency.as_str(), &rec.reference, c),
                        "releasing a reference",
                    )
                    .await?;
                    self.all(rec.confirmations.iter().map(|x| {
                        self.exec(
                            &self.st.confirmation_delete,
                            (&x.confirmation_id,),
                            "removing a confirmation",
                        )
                    }))
                    .await?;
                }
            }
            let added: HashSet<Timer> = adds.iter().copied().collect();
            self.all(
                writes
                    .iter()
                    .flat_map(|w| w.remove_timers.iter())
                    .filter(|t| !added.contains(t))
                    .map(|t| self.delete_timer(t)),
            )
            .await?;
            Ok::<_, ScyllaError>(())
        });
        let mut o = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids.iter().flatten() {
            o.in_flight.remove(id);
        }
        Ok(result?)
    }

    fn outbox(&self, after: Option<u64>, limit: usize) -> Result<Vec<(u64, Receipt)>, StoreError> {
        let (from, horizon, lw) = {
            let o = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
            (
                after.unwrap_or(0).max(o.removed_upto),
                o.horizon(),
                o.low_water_hour,
            )
        };
        if horizon <= from.saturating_add(1) || limit == 0 {
            return Ok(Vec::new());
        }
        let now_ms = Utc::now().timestamp_millis();
        let rows = self.rt.block_on(async {
            let mut out = Vec::new();
            // IDs are issued from the clock: none lies past the current
            // hour (an hour of slack for a clock that jumped).
            let last = hour_of(id_ms(horizon.saturating_sub(1)).min(now_ms + 3_600_000));
            let mut h = hour_of(id_ms(from)).max(lw);
            while h <= last && out.len() < limit {
                let want = (limit - out.len()).min(i32::MAX as usize) as i32;
                let res = self
                    .exec(
                        &self.st.outbox_read,
                        (self.node, h, from as i64, horizon as i64, want),
                        "reading the outbox",
                    )
                    .await?;
                out.extend(collect::<(i64, String)>(res, "outbox")?);
                h += 1;
            }
            Ok::<_, ScyllaError>(out)
        })?;
        if rows.is_empty() && !self.read_only {
            // Nothing below the horizon: later IDs are above it, so later
            // reads can start at this hour (or the horizon) instead of
            // walking back over idle hours.
            let start = TrackingCode::from_parts(hour_start_ms(hour_of(now_ms)), 0, 0).as_u64();
            self.outbox_read_to(start.min(horizon).saturating_sub(1));
        }
        let mut out = Vec::with_capacity(rows.len());
        for (id, json) in rows {
            match serde_json::from_str(&json) {
                Ok(r) => out.push((id as u64, r)),
                Err(e) if !self.read_only => {
                    // A receipt that cannot be read would stop every
                    // receipt behind it: set aside, and gone from the outbox.
                    let e = StoreError::Corrupt(format!("outbox receipt {id}: {e}"));
                    crate::store::set_aside(
                        self,
                        "outbox_receipt",
                        id.to_string(),
                        &e,
                        json.as_bytes(),
                        String::new(),
                    )?;
                    self.rt.block_on(self.exec(
                        &self.st.outbox_delete,
                        (self.node, hour_of(id_ms(id as u64)), id),
                        "removing an unreadable receipt",
                    ))?;
                }
                Err(e) => {
                    return Err(StoreError::Corrupt(format!("outbox receipt {id}: {e}")));
                }
            }
        }
        Ok(out)
    }

    fn outbox_remove(&self, ids: &[u64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.guard()?;
        self.rt.block_on(self.all(ids.iter().map(|&id| {
            self.exec(
                &self.st.outbox_delete,
                (self.node, hour_of(id_ms(id)), id as i64),
                "removing published receipts",
            )
        })))?;
        // Everything read up to here is gone: later reads start after it
        // (the reader returned every durable ID below the largest, in order).
        self.outbox_read_to(ids.iter().copied().max().unwrap_or(0));
        Ok(())
    }

    fn confirmation(&self, id: &str) -> Result<Option<TrackingCode>, StoreError> {
        Ok(self.rt.block_on(async {
            let res = self
                .exec(&self.st.confirmation_get, (id,), "reading a confirmation")
                .await?;
            Ok::<_, ScyllaError>(
                collect::<(Option<i64>,)>(res, "confirmations")?
                    .into_iter()
                    .next()
                    .and_then(|(c,)| c.map(code_of)),
            )
        })?)
    }

    fn awaiting_activation(
        &self,
        id: MailboxId,
        limit: usize,
    ) -> Result<Vec<TrackingCode>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        Ok(self.rt.block_on(async {
            let lim = limit.min(i32::MAX as usize) as i32;
            let res = self
                .exec(
                    &self.st.awaiting_list,
                    (id.to_string(), self.node, lim),
                    "reading awaiting notices",
                )
                .await?;
            Ok::<_, ScyllaError>(
                collect::<(i64,)>(res, "awaiting")?
                    .into_iter()
                    .map(|(c,)| code_of(c))
                    .collect(),
            )
        })?)
    }
}
