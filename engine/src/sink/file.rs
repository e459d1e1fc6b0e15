//! The agency's answer file for `karpoosheh ingest`: receipts as NDJSON.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use karpoosheh_schemas::Receipt;

use super::{Handled, Sink, SinkError};

/// Writes receipts as NDJSON, one per line, flushed per batch — the
/// agency's answer file for `karpoosheh ingest`.
pub struct NdjsonReceipts {
    path: PathBuf,
    out: BufWriter<File>,
}

impl NdjsonReceipts {
    pub fn create(path: &Path) -> Result<Self, SinkError> {
        let file = File::create(path).map_err(|source| SinkError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(NdjsonReceipts {
            path: path.to_owned(),
            out: BufWriter::with_capacity(1 << 20, file),
        })
    }
}

impl Sink for NdjsonReceipts {
    fn handled(&mut self, batch: &[Handled]) -> Result<(), SinkError> {
        let err = |source| SinkError::Io {
            path: self.path.clone(),
            source,
        };
        for r in batch.iter().filter_map(|h| h.receipt.as_ref()) {
            serde_json::to_writer(&mut self.out, r).map_err(|e| err(e.into()))?;
            self.out.write_all(b"\n").map_err(err)?;
        }
        self.out.flush().map_err(err)
    }

    fn events(&mut self, receipts: &[Receipt]) -> Result<(), SinkError> {
        let err = |source| SinkError::Io {
            path: self.path.clone(),
            source,
        };
        for r in receipts {
            serde_json::to_writer(&mut self.out, r).map_err(|e| err(e.into()))?;
            self.out.write_all(b"\n").map_err(err)?;
        }
        self.out.flush().map_err(err)
    }

    fn batches(&mut self, batches: &[Receipt]) -> Result<(), SinkError> {
        self.events(batches)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|source| SinkError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.out
            .get_ref()
            .sync_data()
            .map_err(|source| SinkError::Io {
                path: self.path.clone(),
                source,
            })
    }
}
