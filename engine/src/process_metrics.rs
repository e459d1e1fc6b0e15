//! The process's own metrics, read when `/metrics` is scraped: the
//! standard `process_*` family every Prometheus client library exports
//! (so existing dashboards and alerts for memory, CPU and file
//! descriptors work unchanged), the peak resident size, and the
//! allocator's view of the heap.
//!
//! These are state sampled at scrape time, not events, so they are
//! rendered here in the text format and appended to the recorder's
//! output rather than set through the `metrics` facade (which has no
//! float counter for CPU seconds).
//!
//! The allocator's numbers tell an engine that holds more memory from one
//! that keeps freed memory: `allocated` is what the engine's live objects
//! use, `resident` what jemalloc has in RAM (the rest is freed memory not
//! yet returned, fragmentation, and jemalloc's metadata). They are shown
//! only when the binary says jemalloc is its global allocator
//! ([`jemalloc_is_the_allocator`]): the `karpoosheh` binary does, a test
//! harness linking the engine as a library or a dhat build does not.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::metric_names as m;

/// Appends the process and allocator metrics to `out`, in the
/// Prometheus text format. A value that cannot be read is left out.
pub fn render(out: &mut String) {
    if let Some(p) = read_proc() {
        family(
            out,
            m::PROCESS_CPU_SECONDS,
            "counter",
            "Total user and system CPU time spent in seconds.",
            p.cpu_seconds,
        );
        family(
            out,
            m::PROCESS_RESIDENT_MEMORY,
            "gauge",
            "Resident memory size in bytes.",
            p.resident_bytes,
        );
        family(
            out,
            m::PROCESS_PEAK_RESIDENT_MEMORY,
            "gauge",
            "Highest resident memory size since the process started, in bytes (VmHWM).",
            p.peak_resident_bytes,
        );
        family(
            out,
            m::PROCESS_VIRTUAL_MEMORY,
            "gauge",
            "Virtual memory size in bytes.",
            p.virtual_bytes,
        );
        family(
            out,
            m::PROCESS_START_TIME,
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            p.start_time_seconds,
        );
        if let Some(fds) = p.open_fds {
            family(
                out,
                m::PROCESS_OPEN_FDS,
                "gauge",
                "Number of open file descriptors.",
                fds,
            );
        }
        if let Some(max) = p.max_fds {
            family(
                out,
                m::PROCESS_MAX_FDS,
                "gauge",
                "Maximum number of open file descriptors.",
                max,
            );
        }
    }
    if let Some(io) = read_io() {
        family(
            out,
            m::PROCESS_DISK_WRITTEN,
            "counter",
            "Bytes this process caused to be written to storage (write_bytes of /proc/self/io).",
            io.written as f64,
        );
        family(
            out,
            m::PROCESS_DISK_READ,
            "counter",
            "Bytes this process caused to be read from storage (read_bytes of /proc/self/io).",
            io.read as f64,
        );
    }
    if let Some(a) = read_allocator() {
        family(
            out,
            m::ALLOCATOR_ALLOCATED,
            "gauge",
            "Bytes in live heap objects (jemalloc stats.allocated).",
            a.allocated,
        );
        family(
            out,
            m::ALLOCATOR_ACTIVE,
            "gauge",
            "Bytes in the allocator's pages that hold live objects (jemalloc stats.active).",
            a.active,
        );
        family(out, m::ALLOCATOR_RESIDENT, "gauge", "Bytes the allocator holds in RAM: live, freed but not yet returned, and metadata (jemalloc stats.resident).", a.resident);
        family(out, m::ALLOCATOR_RETAINED, "gauge", "Bytes of virtual memory the allocator keeps mapped after returning their pages to the OS (jemalloc stats.retained).", a.retained);
        family(
            out,
            m::ALLOCATOR_METADATA,
            "gauge",
            "Bytes of the allocator's own metadata (jemalloc stats.metadata).",
            a.metadata,
        );
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProcStats {
    pub cpu_seconds: f64,
    pub resident_bytes: f64,
    pub peak_resident_bytes: f64,
    pub virtual_bytes: f64,
    pub start_time_seconds: f64,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
}

/// This process's figures from `/proc` (Linux); `None` elsewhere.
pub fn read_proc() -> Option<ProcStats> {
    #[cfg(target_os = "linux")]
    {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        // SAFETY: sysconf only reads a system constant.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let mut p = parse_proc(&stat, &status, &boot, ticks as f64)?;
        p.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as f64);
        p.max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| parse_max_fds(&l));
        Some(p)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Parses `/proc/self/stat`, `/proc/self/status` and `/proc/stat` (for
/// the boot time); `ticks` is `sysconf(_SC_CLK_TCK)`.
fn parse_proc(stat: &str, status: &str, boot: &str, ticks: f64) -> Option<ProcStats> {
    if ticks <= 0.0 {
        return None;
    }
    // The command name (field 2) is in parentheses and may hold spaces
    // or parentheses itself: the fields after it start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest's fields: state is field 3, so field N is rest[N - 3].
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    let utime = field(14)?;
    let stime = field(15)?;
    let start_ticks = field(22)?;
    let vsize = field(23)?;
    let btime: f64 = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    Some(ProcStats {
        cpu_seconds: (utime + stime) / ticks,
        resident_bytes: status_bytes(status, "VmRSS")? as f64,
        peak_resident_bytes: status_bytes(status, "VmHWM")? as f64,
        virtual_bytes: vsize,
        start_time_seconds: btime + start_ticks / ticks,
        open_fds: None,
        max_fds: None,
    })
}

/// Resets the process's peak RSS (VmHWM) to its current RSS, so a later
/// [`peak_rss_bytes`] covers only what follows (Linux 4.0+: `5` in
/// /proc/self/clear_refs). False where that is not possible.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Peak resident set size of this process (VmHWM), from /proc (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    status_bytes(&std::fs::read_to_string("/proc/self/status").ok()?, "VmHWM")
}

/// The value of a `KEY: value` line of a `/proc` file, trimmed.
fn proc_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| Some(l.strip_prefix(key)?.strip_prefix(':')?.trim()))
}

/// A `KEY:   N kB` line of `/proc/self/status`, in bytes.
fn status_bytes(status: &str, key: &str) -> Option<u64> {
    let kib: u64 = proc_field(status, key)?
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// What this process has read from and written to storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskIo {
    /// `read_bytes`: fetched from storage, not served by the page cache.
    pub read: u64,
    /// `write_bytes`: sent, or to be sent, to storage (counted when the
    /// pages are dirtied).
    pub written: u64,
}

/// This process's storage I/O from `/proc/self/io` (Linux; the kernel
/// must have task I/O accounting, as every distribution's has). `None`
/// where it cannot be read.
pub fn read_io() -> Option<DiskIo> {
    parse_io(&std::fs::read_to_string("/proc/self/io").ok()?)
}

fn parse_io(io: &str) -> Option<DiskIo> {
    let field = |key: &str| proc_field(io, key)?.parse::<u64>().ok();
    Some(DiskIo {
        read: field("read_bytes")?,
        written: field("write_bytes")?,
    })
}

/// The soft limit on open files from `/proc/self/limits`.
fn parse_max_fds(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    match soft {
        "unlimited" => None,
        n => n.parse().ok(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AllocatorStats {
    pub allocated: f64,
    pub active: f64,
    pub resident: f64,
    pub retained: f64,
    pub metadata: f64,
}

static JEMALLOC: AtomicBool = AtomicBool::new(false);

/// Called by a binary whose `#[global_allocator]` is jemalloc, so that
/// `/metrics` shows the allocator's statistics.
pub fn jemalloc_is_the_allocator() {
    JEMALLOC.store(true, Ordering::Relaxed);
}

/// jemalloc's statistics (refreshed first), or `None` when jemalloc is
/// not the process's allocator.
pub fn read_allocator() -> Option<AllocatorStats> {
    use tikv_jemalloc_ctl::{epoch, stats};
    if !JEMALLOC.load(Ordering::Relaxed) {
        return None;
    }
    // One refresh and its reads at a time: two scrapes at once (the
    // server answers on two threads) must not mix two snapshots.
    static READING: Mutex<()> = Mutex::new(());
    let _one = READING.lock().unwrap_or_else(|p| p.into_inner());
    epoch::advance().ok()?;
    Some(AllocatorStats {
        allocated: stats::allocated::read().ok()? as f64,
        active: stats::active::read().ok()? as f64,
        resident: stats::resident::read().ok()? as f64,
        retained: stats::retained::read().ok()? as f64,
        metadata: stats::metadata::read().ok()? as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse_including_a_command_name_with_spaces_and_parentheses() {
        // Fields 14/15 (utime, stime) 250 and 50 ticks, 22 (start) 1000
        // ticks after boot, 23 (vsize) 1 GiB.
        let stat = "4242 (we (ird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 50 0 0 20 0 9 0 1000 1073741824 5000 18446744073709551615";
        let status = "Name:\tk\nVmHWM:\t  300000 kB\nVmRSS:\t  200000 kB\n";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 5\n";
        let p = parse_proc(stat, status, boot, 100.0).unwrap();
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.start_time_seconds, 1_700_000_010.0);
        assert_eq!(p.virtual_bytes, 1_073_741_824.0);
        assert_eq!(p.resident_bytes, 200_000.0 * 1024.0);
        assert_eq!(p.peak_resident_bytes, 300_000.0 * 1024.0);
        assert_eq!(parse_proc("garbage", status, boot, 100.0), None);
        assert_eq!(parse_proc(stat, "Name:\tk\n", boot, 100.0), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024.0));
        assert_eq!(
            parse_max_fds(
                "Max open files            unlimited            unlimited            files\n"
            ),
            None
        );
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn this_process_reads_and_renders() {
        let p = read_proc().expect("/proc is readable");
        assert!(p.resident_bytes > 0.0 && p.peak_resident_bytes >= p.resident_bytes);
        assert!(p.open_fds.unwrap() >= 3.0);
        // The test harness allocates with the system allocator: jemalloc
        // (linked, nearly unused) is not shown.
        assert_eq!(read_allocator(), None);
        let mut out = String::new();
        render(&mut out);
        assert!(out.contains("# TYPE process_cpu_seconds_total counter\n"));
        assert!(out.contains("\nprocess_resident_memory_bytes "));
        assert!(!out.contains("karpoosheh_allocator"));
        // Once declared, it is (what it reports here is its own small
        // use, but every figure is read).
        jemalloc_is_the_allocator();
        let a = read_allocator().expect("jemalloc statistics");
        assert!(a.resident >= a.active && a.active >= a.allocated && a.allocated > 0.0);
        let mut out = String::new();
        render(&mut out);
        assert!(out.contains("# TYPE karpoosheh_allocator_resident_bytes gauge\n"));
        JEMALLOC.store(false, Ordering::Relaxed);
    }

    #[test]
    fn io_accounting_parses_and_a_synced_write_is_counted() {
        let io = "rchar: 6976\nwchar: 12\nsyscr: 10\nsyscw: 1\nread_bytes: 4096\n\
                  write_bytes: 1048576\ncancelled_write_bytes: 0\n";
        assert_eq!(
            parse_io(io),
            Some(DiskIo {
                read: 4096,
                written: 1 << 20
            })
        );
        assert_eq!(parse_io("rchar: 1\n"), None);
        #[cfg(target_os = "linux")]
        if let Some(before) = read_io() {
            // 1 MiB written and synced by this thread shows at once (the
            // kernel counts the pages as they are dirtied). Other test
            // threads only add to it.
            // In the checkout: a disk, where /tmp may be tmpfs (which
            // counts nothing as written to storage).
            let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
            let path = dir.path().join("f");
            let f = std::fs::File::create(&path).unwrap();
            use std::io::Write as _;
            (&f).write_all(&vec![7u8; 1 << 20]).unwrap();
            f.sync_all().unwrap();
            let after = read_io().unwrap();
            assert!(
                after.written >= before.written + (1 << 20),
                "{before:?} -> {after:?}"
            );
            let mut out = String::new();
            render(&mut out);
            assert!(out.contains("# TYPE karpoosheh_process_disk_written_bytes_total counter\n"));
        } else {
            eprintln!("SKIPPED: /proc/self/io is not readable here");
        }
    }
}
