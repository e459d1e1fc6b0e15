//! `karpoosheh ingest`: one NDJSON batch file through the pipeline into the
//! store, with a receipt per record to an NDJSON file if asked.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use karpoosheh_schemas::AgencyId;

use crate::agencies::AgencyRegistry;
use crate::config::Config;
use crate::pipeline::RunSummary;
use crate::sink::{NdjsonReceipts, Sink, Tally, TallySink};
use crate::source::FileSource;

/// Ingests `file`, sent for `agency` (approved in the registry; every
/// envelope must name it), until its end or until `shutdown` is set;
/// receipts to `receipts`.
/// Returns the run and what became of its records.
pub fn ingest(
    cfg: &Config,
    file: &Path,
    agency: AgencyId,
    receipts: Option<&Path>,
    shutdown: Arc<AtomicBool>,
) -> anyhow::Result<(RunSummary, Tally)> {
    // The file speaks for one agency, which must be approved, as on Kafka;
    // refused before anything is read (the file stays for a later run).
    let registry = AgencyRegistry::open(&cfg.agencies)?;
    if let Some(p) = registry.refusal(&agency) {
        anyhow::bail!(
            "{} (reason {}): nothing was read from {}",
            p.message,
            p.reason.code(),
            file.display()
        );
    }
    // Receipts go to the agency: signed, like a node's on Kafka.
    let sealer = match receipts {
        Some(_) => Some(super::required_sealer(cfg)?),
        None => super::sealer(cfg)?,
    };
    let store = super::open_store(cfg)?;
    // Every signed batch goes to the node's audit log; one tree head is
    // signed at the end.
    let (sealer, audit) = match sealer {
        Some(s) => {
            let (s, log) = super::audited(cfg, &store, s)?;
            (Some(s), Some(log))
        }
        None => (None, None),
    };
    let source = FileSource::open(
        file,
        Some(agency),
        cfg.limits.max_payload_bytes.as_u64() as usize,
    )?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(TallySink(tally.clone()))];
    if let Some(r) = receipts {
        sinks.push(Box::new(NdjsonReceipts::create(r)?));
    }
    let summary = super::pipeline(cfg, store.clone(), sinks)
        .with_agencies(Some(registry.clone()))
        .with_sealer(sealer)
        .with_shutdown(shutdown)
        .run(Box::new(source))?;
    if let Some(log) = audit {
        log.sign_head()?;
    }
    let tally = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
    Ok((summary, tally))
}
