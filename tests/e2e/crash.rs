//! Killing the engine mid-batch loses nothing and stores nothing twice.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use karpoosheh_engine::{FjallStore, FjallStoreConfig, NoticeStore};
use karpoosheh_schemas::{AgencyId, MailboxId};
use karpoosheh_tests::run;
use karpoosheh_traffic::{Expect, Traffic, TrafficConfig};

#[test]
fn ingest_killed_midway_then_rerun_stores_each_notice_once() {
    const N: u64 = 40_000;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("batch.ndjson");
    let receipts = dir.path().join("receipts.ndjson");
    let data = dir.path().join("data");
    let traffic = Traffic::new(TrafficConfig {
        notices: N,
        ..Default::default()
    });
    let records = traffic.chunk(0, N);
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        for r in &records {
            w.write_all(&r.payload).unwrap();
            w.write_all(b"\n").unwrap();
        }
    }

    // First run: SIGKILL once some receipts are out — mid-batch, no clean-up.
    let mut child = karpoosheh_tests::karpoosheh_command()
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "ingest",
            "--file",
            file.to_str().unwrap(),
        ])
        .args([
            "--receipts",
            receipts.to_str().unwrap(),
            "--set",
            "pipeline.batch_max_notices=500",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    loop {
        let lines = std::fs::read(&receipts)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
            .unwrap_or(0);
        if lines > 2_000 || t.elapsed() > Duration::from_secs(60) {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            panic!("ingest finished before it could be killed; make the file larger");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // Second run: the whole file again.
    let out = run(
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "ingest",
            "--file",
            file.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every notice the generator meant to be stored is there exactly once.
    let store = FjallStore::open(FjallStoreConfig::new(&data)).unwrap();
    let mut per_mailbox: HashMap<MailboxId, usize> = HashMap::new();
    let mut codes = HashSet::new();
    for (i, r) in records.iter().enumerate() {
        if r.expect != Expect::Stored {
            continue;
        }
        let notice =
            karpoosheh_schemas::decode_notice(&r.payload, &Default::default(), chrono::Utc::now())
                .unwrap();
        let code = store
            .reference(&AgencyId::parse(r.agency).unwrap(), &notice.reference)
            .unwrap()
            .unwrap_or_else(|| panic!("record {i} was lost"));
        assert!(
            codes.insert(code),
            "two references share tracking code {code}"
        );
        *per_mailbox.entry(notice.recipient).or_default() += 1;
    }
    for (id, expected) in per_mailbox {
        let page = store.mailbox(id, None, 10_000).unwrap();
        assert_eq!(
            page.notices.len(),
            expected,
            "a mailbox shows a notice twice or misses one"
        );
    }
}
