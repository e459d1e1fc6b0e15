//! The parking lot of [`ScyllaStore`]: `parked_receipts` (migration 006),
//! one partition per node and agency (listed in `parked_agencies`), clustered by a time-ordered ID that
//! is bumped past the partition's last one, so a clock stepped back never
//! files a receipt ahead of older ones.

use super::*;
use crate::store::ParkingStore;

impl ParkingStore for ScyllaStore {
    fn park(&self, agency: &AgencyId, receipts: &[Receipt]) -> Result<(), StoreError> {
        if receipts.is_empty() {
            return Ok(());
        }
        self.guard()?;
        let a = agency.as_str();
        // The node's two receipt sinks may park one agency at once: the
        // read of the last ID and the inserts are one step, or both would
        // take the same IDs and one write would overwrite the other.
        let _one_at_a_time = PARK_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        self.rt.block_on(async {
            // Listed first, so a restarted node finds every lot.
            self.exec(
                &self.st.parked_agency_put,
                (self.node, a),
                "listing a parking lot",
            )
            .await?;
            let res = self
                .exec(
                    &self.st.parked_last,
                    (self.node, a),
                    "reading the parking lot",
                )
                .await?;
            let mut last = collect::<(i64,)>(res, "parked_receipts")?
                .first()
                .map_or(0, |r| r.0 as u64);
            let now = Utc::now().timestamp_millis();
            let rows: Vec<(i64, String)> = receipts
                .iter()
                .map(|r| {
                    let id = rows::next_id(&mut last, self.node as u16, now);
                    (
                        id as i64,
                        serde_json::to_string(r).expect("receipts serialise"),
                    )
                })
                .collect();
            self.all(rows.iter().map(|(id, json)| {
                self.exec(
                    &self.st.parked_put,
                    (self.node, a, *id, json.as_str()),
                    "parking receipts",
                )
            }))
            .await
        })?;
        Ok(())
    }

    fn parked(&self, agency: &AgencyId, limit: usize) -> Result<Vec<(u64, Receipt)>, StoreError> {
        let rows = self.rt.block_on(async {
            let res = self
                .exec(
                    &self.st.parked_read,
                    (
                        self.node,
                        agency.as_str(),
                        limit.min(i32::MAX as usize) as i32,
                    ),
                    "reading the parking lot",
                )
                .await?;
            collect::<(i64, String)>(res, "parked_receipts")
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, json) in rows {
            match serde_json::from_str(&json) {
                Ok(r) => out.push((id as u64, r)),
                Err(e) => {
                    // Set aside, so the rest of the lot is delivered.
                    let e = StoreError::Corrupt(format!("parked receipt {id}: {e}"));
                    crate::store::set_aside(
                        self,
                        "parked_receipt",
                        format!("{agency}:{id}"),
                        &e,
                        json.as_bytes(),
                        String::new(),
                    )?;
                    self.unpark(agency, &[id as u64])?;
                }
            }
        }
        Ok(out)
    }

    fn unpark(&self, agency: &AgencyId, ids: &[u64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.guard()?;
        self.rt.block_on(self.all(ids.iter().map(|&id| {
            self.exec(
                &self.st.parked_delete,
                (self.node, agency.as_str(), id as i64),
                "removing delivered receipts",
            )
        })))?;
        Ok(())
    }

    fn oldest_parked(&self, agency: &AgencyId) -> Result<Option<Receipt>, StoreError> {
        let rows = self.rt.block_on(async {
            let res = self
                .exec(
                    &self.st.parked_read,
                    (self.node, agency.as_str(), 1i32),
                    "reading the parking lot",
                )
                .await?;
            collect::<(i64, String)>(res, "parked_receipts")
        })?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|(_, json)| serde_json::from_str(&json).ok()))
    }

    fn parked_agencies(&self) -> Result<Vec<(AgencyId, u64)>, StoreError> {
        Ok(self.rt.block_on(async {
            let res = self
                .exec(
                    &self.st.parked_agencies,
                    (self.node,),
                    "listing the parking lot",
                )
                .await?;
            let mut out = Vec::new();
            for (agency,) in collect::<(String,)>(res, "parked_agencies")? {
                let Ok(id) = AgencyId::parse(&agency) else {
                    continue;
                };
                let res = self
                    .exec(
                        &self.st.parked_count,
                        (self.node, agency.as_str()),
                        "counting the parking lot",
                    )
                    .await?;
                let n = collect::<(i64,)>(res, "parked_receipts")?
                    .first()
                    .map_or(0, |r| r.0.max(0) as u64);
                if n > 0 {
                    out.push((id, n));
                }
            }
            out.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
            Ok::<_, ScyllaError>(out)
        })?)
    }
}

static PARK_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
