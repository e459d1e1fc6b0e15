//! Store batch insert, per notice: 1000-notice batches of ~1.3 KB notices
//! to random mailboxes, into the embedded store, buffered and fdatasync'd.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use karpoosheh_engine::conformance::notice;
use karpoosheh_engine::{
    Durability, Entry, FjallStore, FjallStoreConfig, NewNotice, NoticeStore, TrackingCodes,
};
use karpoosheh_schemas::{MailboxId, SourcePosition};

const BATCH: usize = 1000;

fn body() -> String {
    // ~1.2 KB of Persian text, the median notice.
    "بدینوسیله به اطلاع می‌رساند پرونده مالیاتی شما در اداره کل امور مالیاتی بررسی و برگ تشخیص صادر شد. ".repeat(7)
}

fn batch(codes: &mut TrackingCodes, seq: &mut u64, body: &str) -> Vec<Entry> {
    (0..BATCH)
        .map(|_| {
            *seq += 1;
            // A pseudo-random mailbox per notice, as bulk sends arrive.
            let body_id = (seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 34) as u32 % 1_000_000_000;
            let id = (body_id..).find_map(MailboxId::person_from_body).unwrap();
            let n = notice("tax", &format!("bench-{seq}"), id, body);
            let now = chrono::Utc::now();
            Entry::Notice(NewNotice {
                tracking_code: codes.next(now.timestamp_millis()),
                accepted_at: now,
                content_hash: n.content_hash(),
                notice: n,
                position: SourcePosition::InProcess { sequence: *seq },
                priority: Default::default(),
                deliver_at: None,
                respond_by: None,
                queue: None,
            })
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let body = body();
    let mut g = c.benchmark_group("store_insert");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.measurement_time(Duration::from_secs(8));
    g.sample_size(20);
    for (name, durability) in [
        ("buffered", Durability::Buffered),
        ("sync_data", Durability::SyncData),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = FjallStoreConfig::new(dir.path());
        cfg.durability = durability;
        let store = FjallStore::open(cfg).unwrap();
        let mut codes = TrackingCodes::new(0, None);
        let mut seq = 0u64;
        g.bench_function(format!("batch_1000/{name}"), |b| {
            b.iter_batched(
                || batch(&mut codes, &mut seq, &body),
                |entries| store.write(&entries).unwrap(),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
