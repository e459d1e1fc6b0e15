//! The parking lot of [`FjallStore`]: receipts an agency's topic refused,
//! in the `parked` keyspace, agency ‖ 0x00 ‖ ID (big-endian), so each
//! agency's receipts are one prefix, oldest first. IDs are time-ordered
//! and bumped past the highest stored one at open, so a clock stepped
//! back never files a receipt ahead of older ones.

use super::*;
use crate::store::ParkingStore;

fn parked_key(agency: &AgencyId, id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(agency.as_str().len() + 9);
    k.extend_from_slice(agency.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn agency_prefix(agency: &AgencyId) -> Vec<u8> {
    let mut k = agency.as_str().as_bytes().to_vec();
    k.push(0);
    k
}

/// The agency and ID of a stored key.
fn split_key(k: &[u8]) -> Result<(AgencyId, u64), StoreError> {
    let bad = || StoreError::Corrupt("parked receipt key".into());
    let cut = k.len().checked_sub(9).ok_or_else(bad)?;
    if k[cut] != 0 {
        return Err(bad());
    }
    let agency = std::str::from_utf8(&k[..cut])
        .ok()
        .and_then(|s| AgencyId::parse(s).ok())
        .ok_or_else(bad)?;
    Ok((agency, u64_of(&k[cut + 1..])?))
}

/// The highest parked ID, read at open.
pub(super) fn last_parked_id(parked: &Keyspace) -> Result<u64, StoreError> {
    let mut last = 0;
    for guard in parked.iter() {
        let k = guard.key()?;
        last = last.max(split_key(&k)?.1);
    }
    Ok(last)
}

impl ParkingStore for FjallStore {
    fn park(&self, agency: &AgencyId, receipts: &[Receipt]) -> Result<(), StoreError> {
        if receipts.is_empty() {
            return Ok(());
        }
        let mut last = self.parked_last.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = self
            .db
            .batch()
            .durability(Some(self.durability.persist_mode()));
        for r in receipts {
            let id = next_id(&mut last);
            batch.insert(&self.parked, parked_key(agency, id), encode_json(r));
        }
        batch.commit()?;
        Ok(())
    }

    fn parked(&self, agency: &AgencyId, limit: usize) -> Result<Vec<(u64, Receipt)>, StoreError> {
        let mut out = Vec::new();
        let mut unreadable = Vec::new();
        for guard in self.parked.prefix(agency_prefix(agency)).take(limit) {
            let (k, v) = guard.into_inner()?;
            let id = split_key(&k)?.1;
            match decode("parked receipt", &v) {
                Ok(r) => out.push((id, r)),
                Err(e) => unreadable.push((id, e, v.to_vec())),
            }
        }
        // Set aside, so the rest of the lot is delivered.
        for (id, e, bytes) in unreadable {
            crate::store::set_aside(
                self,
                "parked_receipt",
                format!("{agency}:{id}"),
                &e,
                &bytes,
                String::new(),
            )?;
            self.unpark(agency, &[id])?;
        }
        Ok(out)
    }

    fn oldest_parked(&self, agency: &AgencyId) -> Result<Option<Receipt>, StoreError> {
        match self.parked.prefix(agency_prefix(agency)).next() {
            None => Ok(None),
            Some(guard) => {
                let (_, v) = guard.into_inner()?;
                Ok(decode("parked receipt", &v).ok())
            }
        }
    }

    fn unpark(&self, agency: &AgencyId, ids: &[u64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        // Losing a removal only delivers a receipt again (at least once).
        let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
        for &id in ids {
            batch.remove(&self.parked, parked_key(agency, id));
        }
        batch.commit()?;
        Ok(())
    }

    fn parked_agencies(&self) -> Result<Vec<(AgencyId, u64)>, StoreError> {
        let mut out: Vec<(AgencyId, u64)> = Vec::new();
        for guard in self.parked.iter() {
            let (agency, _) = split_key(&guard.key()?)?;
            match out.last_mut() {
                Some((a, n)) if *a == agency => *n += 1,
                _ => out.push((agency, 1)),
            }
        }
        Ok(out)
    }
}
