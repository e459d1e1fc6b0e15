//! The metrics endpoint, in process: after real traffic, every metric the
//! monitor may read is emitted (with the labels and type the monitor
//! expects), with no national ID anywhere in the text, and health answers.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use karpoosheh_engine::metric_names;
use karpoosheh_engine::{
    install_recorder, notifier, ConfirmOutcome, Health, HttpServer, MemorySource, Outbox,
    Scheduler, StoreRegistry, SystemClock, Tally, TallySink,
};
use karpoosheh_engine::{open_store, pipeline, Config};
use karpoosheh_schemas::{
    AgencyId, Confirmation, MailboxId, MailboxProfile, MailboxStatus, SCHEMA_VERSION,
};
use karpoosheh_tests::{envelope, person};

fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = buf
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn everything_the_monitor_reads_is_emitted_and_no_id_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.store.path = dir.path().to_owned();
    let store = open_store(&cfg).unwrap();
    let store_handle = store.clone();
    let health = Health::default();
    let server = HttpServer::start(
        "127.0.0.1:0",
        install_recorder(),
        health.clone(),
        None,
        None,
    )
    .unwrap();
    let (status, body) = get(server.addr, "/health/ready");
    assert_eq!(status, 503, "not ready before the pipeline runs: {body}");
    assert_eq!(get(server.addr, "/health/live").0, 200);

    let ids: Vec<String> = (0..20).map(|i| person(611_000_000 + i * 7919)).collect();
    let mut payloads: Vec<Vec<u8>> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| envelope("tax", &format!("m-{i}"), id, "t").into_bytes())
        .collect();
    payloads.push(envelope("tax", "m-0", &ids[0], "t").into_bytes()); // duplicate
    payloads.push(envelope("tax", "bad", "1234567890", "t").into_bytes()); // rejected
    payloads.push(b"][".to_vec()); // dead letter
    let (tx, source) = MemorySource::channel(4, None);
    assert!(tx.send(payloads));
    drop(tx);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let pipeline =
        pipeline(&cfg, store, vec![Box::new(TallySink(tally.clone()))]).with_health(health.clone());
    pipeline.run(Box::new(source)).unwrap();
    // Read to its end: not ready, and saying why (not a fault).
    let (status, body) = get(server.addr, "/health/ready");
    assert_eq!(
        (status, body.trim()),
        (503, "not ready: source finished"),
        "after a finite source"
    );
    let t = tally.lock().unwrap();
    assert_eq!(
        (
            t.stored,
            t.duplicates,
            t.rejected_total(),
            t.dead_letters_total()
        ),
        (20, 1, 1, 1)
    );

    drop(t);

    // The article-29 follow-up on the same store: rounds through the
    // configured (simulated) channels, two confirmations, receipts out.
    cfg.delivery.quiet_hours = String::new();
    let registry_store = store_handle.clone();
    let profiles: Vec<MailboxProfile> = ids
        .iter()
        .map(|id| MailboxProfile {
            schema_version: SCHEMA_VERSION,
            id: MailboxId::parse(id).unwrap(),
            status: MailboxStatus::Active,
            access_level: 1,
            mobile: Some("09121234567".into()),
            email: None,
            push: true,
            representatives: vec![],
            delegations: vec![],
            updated_at: chrono::Utc::now(),
        })
        .collect();
    registry_store.put_profiles(&profiles).unwrap();
    let scheduler = Scheduler {
        config: cfg.delivery.clone(),
        store: registry_store.clone(),
        notifier: notifier(&cfg).unwrap(),
        registry: Arc::new(StoreRegistry(registry_store.clone())),
        clock: Arc::new(SystemClock),
        observer: None,
        agencies: None,
    };
    assert!(
        scheduler.run_due().unwrap() >= 20,
        "round 1 of every stored notice"
    );
    let code = registry_store
        .reference(&AgencyId::parse("tax").unwrap(), "m-1")
        .unwrap()
        .unwrap();
    let confirm = |cid: &str| Confirmation {
        schema_version: SCHEMA_VERSION,
        confirmation_id: cid.into(),
        tracking_code: code,
        confirmed_by: MailboxId::parse(&ids[1]).unwrap(),
        confirmed_at: chrono::Utc::now(),
    };
    let out = scheduler
        .confirm_now(vec![confirm("a"), confirm("b"), confirm("a")])
        .unwrap();
    assert_eq!(
        out[1],
        ConfirmOutcome::Applied {
            count: 2,
            served: true
        }
    );
    let published = Outbox {
        store: registry_store.clone(),
        sinks: vec![],
        batch: 100,
        sealer: None,
        gate: None,
    }
    .drain()
    .unwrap();
    assert!(
        published >= 23,
        "sent, confirmed x2, served receipts: {published}"
    );

    let (status, text) = get(server.addr, "/metrics");
    assert_eq!(status, 200);
    let missing: Vec<_> = metric_names::every()
        .into_iter()
        .filter(|m| !text.contains(m))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics never emitted: {missing:?}\n{text}"
    );
    for id in &ids {
        assert!(
            !text.contains(id.as_str()),
            "a national ID leaked into /metrics"
        );
    }
    assert!(text.contains("reason=\"bad_check_digit\""));
    assert!(
        text.contains("karpoosheh_ingest_latency_seconds_bucket"),
        "latency is a real histogram"
    );
    // Every family is described (as `promtool check metrics` asks).
    let undescribed: Vec<_> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| !text.contains(&format!("# HELP {name} ")))
        .collect();
    assert!(undescribed.is_empty(), "no help text: {undescribed:?}");
    crate::monitor::assert_emits_what_the_monitor_reads(&text);
    assert_eq!(get(server.addr, "/nope").0, 404);
}
