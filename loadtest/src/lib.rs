//! The load generator's drivers: realistic traffic (the model lives in
//! `karpoosheh-traffic`, shared with `karpoosheh demo`) written to
//! NDJSON files or fed to the engine in process, and the whole-pipeline
//! benchmark that compares the pipeline with the raw store and the raw
//! disk in one run.

mod bench;
pub mod engine_metrics;
pub mod inbox_bench;
pub mod kafka;
pub mod read_bench;
pub mod rounds_lanes;
pub mod sched_bench;

pub use bench::{pipeline_benchmark, BenchOptions, BenchResult};

use std::io::{BufWriter, Write};
use std::path::Path;

use karpoosheh_traffic::{Traffic, TrafficConfig};

/// Writes `cfg.notices` records as NDJSON, one file per agency when
/// `per_agency`, else all into `out`. Returns records written.
pub fn write_files(cfg: TrafficConfig, out: &Path, per_agency: bool) -> std::io::Result<u64> {
    let traffic = Traffic::new(cfg);
    let total = traffic.config().notices;
    let mut files: std::collections::BTreeMap<&'static str, BufWriter<std::fs::File>> =
        Default::default();
    if per_agency {
        std::fs::create_dir_all(out)?;
    }
    let mut single = if per_agency {
        None
    } else {
        Some(BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(out)?,
        ))
    };
    let mut i = 0;
    while i < total {
        let end = (i + 8192).min(total);
        for g in traffic.chunk(i, end) {
            let w = match &mut single {
                Some(w) => w,
                None => match files.entry(g.agency) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert(BufWriter::with_capacity(
                            1 << 20,
                            std::fs::File::create(out.join(format!("{}.ndjson", g.agency)))?,
                        ))
                    }
                },
            };
            w.write_all(&g.payload)?;
            w.write_all(b"\n")?;
        }
        i = end;
    }
    if let Some(mut w) = single {
        w.flush()?;
    }
    for (_, mut w) in files {
        w.flush()?;
    }
    Ok(total)
}
