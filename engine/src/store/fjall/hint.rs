//! The durable hint: what the store had durably written, kept beside it,
//! so that a journal damaged in the middle is caught at open instead of
//! silently losing what was acknowledged.
//!
//! fjall recovers its journal by reading batches until the first one that
//! does not check out, and truncates the journal there: it assumes the
//! damage is a torn tail after a crash. A journal damaged earlier (a bad
//! sector, a flipped bit, a copy cut short) loses every batch after the
//! damage, and the store opens as if they had never been written --
//! notices acknowledged to agencies, legal events, and the high-water mark
//! of tracking codes, which would then be issued a second time.
//!
//! So, with a durable `store.durability`, the store writes its high-water
//! marks (last tracking code, last rejection ID, count of delivery writes,
//! all written in the same batches as what they count) to
//! `<store>/durable-hint` at most once a second and when it closes, each
//! time after the batches they count were synced, and fsyncs the file. At
//! open, a store behind its hint has lost acknowledged writes, and is
//! refused with what was lost. The hint lags by up to a second: losses of
//! the last second before a crash are not seen (they are the torn tail
//! the journal's recovery expects). `store.durability = "buffered"` makes
//! no durable promise and keeps no hint.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::store::StoreError;

pub(super) const HINT_FILE: &str = "durable-hint";
const HINT_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Hint {
    pub last_tracking: u64,
    pub last_rejection_id: u64,
    pub delivery_writes: u64,
}

impl Hint {
    /// What `self` (the store as opened) lacks of `hint` (what it had
    /// written), if anything.
    pub fn behind(&self, hint: &Hint) -> Option<String> {
        let mut lost = Vec::new();
        if hint.last_tracking > self.last_tracking {
            lost.push(format!(
                "notices: it ends at tracking code {}, but {} had been issued",
                karpoosheh_schemas::TrackingCode::from_u64(self.last_tracking),
                karpoosheh_schemas::TrackingCode::from_u64(hint.last_tracking)
            ));
        }
        if hint.last_rejection_id > self.last_rejection_id {
            lost.push(format!(
                "rejections: it ends at ID {}, but {} had been kept",
                self.last_rejection_id, hint.last_rejection_id
            ));
        }
        if hint.delivery_writes > self.delivery_writes {
            lost.push(format!(
                "article-29 follow-up: {} of {} writes are there",
                self.delivery_writes, hint.delivery_writes
            ));
        }
        (!lost.is_empty()).then(|| lost.join("; "))
    }
}

pub(super) fn read(dir: &Path) -> Result<Option<Hint>, StoreError> {
    match std::fs::read(dir.join(HINT_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            StoreError::Corrupt(format!(
                "{}: {e} (delete it to open the store without the check)",
                dir.join(HINT_FILE).display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes `hint` (to a temporary file, synced, then renamed over).
pub(super) fn write(dir: &Path, hint: &Hint) -> std::io::Result<()> {
    let tmp = dir.join(format!("{HINT_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(hint).expect("a hint serialises"))?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(HINT_FILE))?;
    // The rename itself, durable.
    std::fs::File::open(dir)?.sync_all()
}

/// When the hint was last written.
pub(super) struct HintClock(pub Option<Instant>);

impl HintClock {
    pub fn due(&self) -> bool {
        self.0.is_none_or(|t| t.elapsed() >= HINT_EVERY)
    }
}
