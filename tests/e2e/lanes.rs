//! Priority lanes (issue 24) through the real Kafka source: an agency's
//! urgent notices overtake another's bulk backlog that is already in the
//! topics.

use std::ops::Range;
use std::time::{Duration, Instant};

use karpoosheh_tests::{envelope, person};
use rdkafka::producer::{BaseProducer, Producer};

use crate::kafka::{broker_or_skip, produce, read_answers, Engine, Names, Storage};

/// Produces `agency`'s notices `<tag>-<i>`, `i` in `range`, to `topic`,
/// each to a recipient of its own from `first_person` on, and waits until
/// the broker has them all. Returns their references.
fn produce_notices(
    p: &BaseProducer,
    topic: &str,
    agency: &str,
    tag: &str,
    range: Range<u32>,
    first_person: u32,
) -> Vec<String> {
    let mut refs = Vec::new();
    for i in range {
        let id = person(first_person + i * 53);
        let r = format!("{tag}-{i}");
        produce(
            p,
            topic,
            &id,
            envelope(agency, &r, &id, "ابلاغیه").as_bytes(),
        );
        refs.push(r);
    }
    p.flush(Duration::from_secs(120)).unwrap();
    refs
}

#[test]
fn kafka_urgent_notices_overtake_a_bulk_backlog() {
    let Some(broker) = broker_or_skip("kafka_lanes", Storage::Fresh) else {
        return;
    };
    let names = Names::new("lanes");
    names.create(&broker, &["tax", "judiciary"], 2);
    let bulk_topic = format!("{}.bulk", names.notices("tax"));
    let urgent_topic = format!("{}.urgent", names.notices("judiciary"));
    broker.create_topics(&[&bulk_topic, &urgent_topic], 2);

    // The backlog first: a tax campaign on its bulk lane.
    const BULK: u32 = 40_000;
    let p = broker.producer();
    produce_notices(&p, &bulk_topic, "tax", "campaign", 0..BULK, 200_000_000);

    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::start(&broker, &names, dir.path(), 1, &[]);
    let stored = |e: &Engine, agency: &str| {
        e.metric(
            "karpoosheh_notices_stored_total",
            &format!("agency=\"{agency}\""),
        )
    };
    engine.wait_for("the campaign under way", Duration::from_secs(120), |e| {
        stored(e, "tax") >= 2_000.0
    });

    // A court's summonses on its urgent lane while the campaign is read.
    const URGENT: u32 = 20;
    let refs = produce_notices(
        &p,
        &urgent_topic,
        "judiciary",
        "summons",
        0..URGENT,
        400_000_000,
    );
    let sent = Instant::now();
    engine.wait_for("the summonses stored", Duration::from_secs(120), |e| {
        stored(e, "judiciary") >= URGENT as f64
    });
    let took = sent.elapsed();
    let tax_then = stored(&engine, "tax");
    eprintln!(
        "kafka_lanes: {URGENT} urgent notices stored {took:?} after they were sent, \
         with {tax_then} of the {BULK} bulk ones stored by then"
    );
    assert!(
        tax_then < (BULK - 10_000) as f64,
        "the urgent notices waited behind the bulk backlog: {tax_then} of {BULK} were stored first"
    );
    // The backlog by lane is reported.
    let (_, metrics) = engine.get("/metrics");
    for lane in ["urgent", "normal", "bulk"] {
        assert!(
            metrics.contains(&format!(
                "karpoosheh_kafka_backlog_records{{priority=\"{lane}\"}}"
            )),
            "no backlog gauge for {lane}"
        );
    }

    // Everything is answered, on the agencies' one receipt topic each,
    // whatever lane it came on.
    engine.wait_for("the campaign stored", Duration::from_secs(300), |e| {
        stored(e, "tax") >= BULK as f64
    });
    let answers = read_answers(
        &broker,
        &names,
        |a| {
            refs.iter().all(|r| {
                a.receipts
                    .contains_key(&("judiciary".to_owned(), r.clone()))
            }) && (0..BULK).all(|i| {
                a.receipts
                    .contains_key(&("tax".to_owned(), format!("campaign-{i}")))
            })
        },
        Duration::from_secs(120),
    );
    for r in &refs {
        let got = &answers.receipts[&("judiciary".to_owned(), r.clone())];
        assert_eq!(got[0].0, "accepted", "{r}: {got:?}");
    }
    let tax = (0..BULK)
        .filter(|i| {
            answers
                .receipts
                .contains_key(&("tax".to_owned(), format!("campaign-{i}")))
        })
        .count();
    assert_eq!(tax, BULK as usize, "every bulk notice answered");
    engine.terminate();
}

/// An urgent partition read from its own queue goes to another member of
/// the group and comes back: the node reads it again (librdkafka keeps a
/// split partition apart from the shared queue for good, so the node
/// keeps its queue across the move).
#[test]
fn kafka_an_urgent_partition_that_moves_away_and_back_is_read_again() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let Some(broker) = broker_or_skip("kafka_lanes_move", Storage::Fresh) else {
        return;
    };
    let names = Names::new("lanesmove");
    names.create(&broker, &["judiciary"], 1);
    let urgent_topic = format!("{}.urgent", names.notices("judiciary"));
    broker.create_topics(&[&urgent_topic], 4);
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::start(&broker, &names, dir.path(), 1, &[]);
    let p = broker.producer();
    let send = |from: u32, n: u32| {
        produce_notices(
            &p,
            &urgent_topic,
            "judiciary",
            "summons",
            from..from + n,
            500_000_000,
        )
    };
    let stored = |e: &Engine| e.metric("karpoosheh_notices_stored_total", "agency=\"judiciary\"");
    // Every partition read once, so each has its own queue.
    send(0, 40);
    engine.wait_for("the first summonses", Duration::from_secs(60), |e| {
        stored(e) >= 40.0
    });
    let all = engine.metric("karpoosheh_kafka_assigned_partitions", "");

    // Another member takes part of the urgent topic, then leaves.
    let mut c = broker.client();
    c.set("group.id", format!("{}-group", names.prefix))
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000");
    let other: BaseConsumer = c.create().unwrap();
    other.subscribe(&[&urgent_topic]).unwrap();
    let t = Instant::now();
    while other.assignment().map_or(0, |a| a.count()) == 0 {
        let _ = other.poll(Duration::from_millis(100));
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the other member was never given a partition"
        );
    }
    let taken = other.assignment().unwrap().count();
    engine.wait_for("the node giving them up", Duration::from_secs(60), |e| {
        e.metric("karpoosheh_kafka_assigned_partitions", "") <= all - taken as f64
    });
    other.unsubscribe();
    drop(other);
    engine.wait_for("its partitions back", Duration::from_secs(90), |e| {
        e.metric("karpoosheh_kafka_assigned_partitions", "") >= all
    });

    // Summonses to every partition again, the moved ones included.
    send(40, 40);
    engine.wait_for(
        "the summonses after the move",
        Duration::from_secs(60),
        |e| stored(e) >= 80.0,
    );
    let answers = read_answers(
        &broker,
        &names,
        |a| {
            (0..80).all(|i| {
                a.receipts
                    .contains_key(&("judiciary".to_owned(), format!("summons-{i}")))
            })
        },
        Duration::from_secs(60),
    );
    for i in 0..80 {
        let got = &answers.receipts[&("judiciary".to_owned(), format!("summons-{i}"))];
        assert_eq!(got[0].0, "accepted", "summons-{i}: {got:?}");
    }
    engine.terminate();
}

/// An agency's daily quota (`notices_per_day` in the registry) through
/// the real Kafka source: what is over it is answered `quota_exceeded` on
/// the agency's receipt topic, nothing dropped; its urgent notices are
/// not counted, and another agency is not held back.
#[test]
fn kafka_an_agency_over_its_daily_quota_is_answered_quota_exceeded() {
    let Some(broker) = broker_or_skip("kafka_quota", Storage::Fresh) else {
        return;
    };
    let names = Names::new("quota");
    names.create(&broker, &["tax", "judiciary"], 1);
    let urgent_topic = format!("{}.urgent", names.notices("tax"));
    broker.create_topics(&[&urgent_topic], 1);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("agencies.toml"),
        "[agency.tax]\nstatus = \"approved\"\nnotices_per_day = 30\n\
         [agency.judiciary]\nstatus = \"approved\"\n",
    )
    .unwrap();
    let p = broker.producer();
    let tax = produce_notices(&p, &names.notices("tax"), "tax", "q", 0..50, 230_000_000);
    let courts = produce_notices(
        &p,
        &names.notices("judiciary"),
        "judiciary",
        "j",
        0..20,
        240_000_000,
    );
    let engine = Engine::start(&broker, &names, dir.path(), 1, &[]);
    let count = |e: &Engine, name: &str, filter: &str| e.metric(name, filter);
    engine.wait_for("the quota spent", Duration::from_secs(120), |e| {
        count(e, "karpoosheh_notices_stored_total", "agency=\"tax\"")
            + count(e, "karpoosheh_notices_rejected_total", "agency=\"tax\"")
            >= 50.0
    });
    // Urgent notices once the day's quota is spent: still taken. So is an
    // exact re-send of a notice stored before (as a record read again
    // after a crash would be): it gets its answer, `accepted`, not a
    // refusal.
    let summons = produce_notices(&p, &urgent_topic, "tax", "u", 0..5, 250_000_000);
    let again = produce_notices(&p, &names.notices("tax"), "tax", "q", 0..1, 230_000_000);
    engine.wait_for("every record handled", Duration::from_secs(120), |e| {
        count(e, "karpoosheh_notices_stored_total", "agency=\"tax\"")
            + count(e, "karpoosheh_notices_rejected_total", "agency=\"tax\"")
            >= 55.0
            && count(e, "karpoosheh_notices_duplicate_total", "agency=\"tax\"") >= 1.0
            && count(e, "karpoosheh_notices_stored_total", "agency=\"judiciary\"") >= 20.0
    });
    assert_eq!(
        count(&engine, "karpoosheh_notices_stored_total", "agency=\"tax\""),
        35.0
    );
    assert_eq!(
        count(
            &engine,
            "karpoosheh_notices_rejected_total",
            "reason=\"quota_exceeded\""
        ),
        20.0
    );
    let answers = read_answers(
        &broker,
        &names,
        |a| {
            tax.iter()
                .chain(&summons)
                .all(|r| a.receipts.contains_key(&("tax".to_owned(), r.clone())))
                && courts.iter().all(|r| {
                    a.receipts
                        .contains_key(&("judiciary".to_owned(), r.clone()))
                })
        },
        Duration::from_secs(120),
    );
    let events = |agency: &str, refs: &[String]| -> Vec<String> {
        refs.iter()
            .map(|r| {
                answers.receipts[&(agency.to_owned(), r.clone())][0]
                    .0
                    .clone()
            })
            .collect()
    };
    let tax_events = events("tax", &tax);
    // One partition: the first 30 in order, then the day's quota is spent.
    assert!(
        tax_events[..30].iter().all(|e| e == "accepted"),
        "{tax_events:?}"
    );
    assert!(
        tax_events[30..]
            .iter()
            .all(|e| e == "rejected:quota_exceeded"),
        "{tax_events:?}"
    );
    assert!(events("judiciary", &courts).iter().all(|e| e == "accepted"));
    assert!(events("tax", &summons).iter().all(|e| e == "accepted"));
    assert_eq!(again, ["q-0"]);
    let q0 = &answers.receipts[&("tax".to_owned(), "q-0".to_owned())];
    assert!(
        q0.iter().all(|r| r.0 == "accepted"),
        "the re-send of a stored notice is answered accepted: {q0:?}"
    );
    assert!(q0.iter().any(|r| r.2), "as a duplicate: {q0:?}");
}

/// `over_quota = "defer"`: an agency's bulk notices over its daily quota
/// are neither refused nor lost: they wait in the topic (the lane paused,
/// the group's position before them) until the day turns, while other
/// agencies flow; a node started again with room reads them then.
#[test]
fn kafka_an_agency_that_defers_over_quota_has_its_bulk_notices_wait_in_the_topic() {
    let Some(broker) = broker_or_skip("kafka_quota_defer", Storage::Fresh) else {
        return;
    };
    let names = Names::new("defer");
    names.create(&broker, &["tax", "judiciary"], 1);
    let bulk_topic = format!("{}.bulk", names.notices("tax"));
    broker.create_topics(&[&bulk_topic], 1);
    let dir = tempfile::tempdir().unwrap();
    let registry = |quota: u32| {
        std::fs::write(
            dir.path().join("agencies.toml"),
            format!(
                "[agency.tax]\nstatus = \"approved\"\nnotices_per_day = {quota}\nover_quota = \"defer\"\nqueue = 2\n\
                 [agency.judiciary]\nstatus = \"approved\"\n"
            ),
        )
        .unwrap()
    };
    registry(30);
    let p = broker.producer();
    let campaign = produce_notices(&p, &bulk_topic, "tax", "b", 0..50, 260_000_000);
    let courts = produce_notices(
        &p,
        &names.notices("judiciary"),
        "judiciary",
        "j",
        0..10,
        270_000_000,
    );
    let engine = Engine::start(&broker, &names, dir.path(), 1, &[]);
    let count = |e: &Engine, name: &str, filter: &str| e.metric(name, filter);
    engine.wait_for(
        "the quota spent, the others in",
        Duration::from_secs(120),
        |e| {
            count(e, "karpoosheh_notices_stored_total", "agency=\"tax\"") >= 30.0
                && count(e, "karpoosheh_notices_stored_total", "agency=\"judiciary\"") >= 10.0
        },
    );
    // A while longer: nothing more of tax's is taken, nothing refused.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        count(&engine, "karpoosheh_notices_stored_total", "agency=\"tax\""),
        30.0
    );
    assert_eq!(
        count(
            &engine,
            "karpoosheh_notices_rejected_total",
            "agency=\"tax\""
        ),
        0.0,
        "deferred, not refused"
    );
    assert!(
        count(&engine, "karpoosheh_kafka_paused_partitions", "") >= 1.0,
        "its bulk lane waits paused"
    );
    // The dashboard's flag: tax's bulk partition deferred, judiciary's none.
    assert_eq!(
        count(
            &engine,
            "karpoosheh_agency_bulk_deferred_partitions",
            "agency=\"tax\""
        ),
        1.0
    );
    assert_eq!(
        count(
            &engine,
            "karpoosheh_agency_bulk_deferred_partitions",
            "agency=\"judiciary\""
        ),
        0.0
    );
    let (code, _, log) = engine.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("left unread until Tehran midnight"), "{log}");
    // The next day, as far as the quota goes: room for the rest. They were
    // left in the topic, unread and uncommitted: every one is taken now.
    registry(100);
    let engine = Engine::start(&broker, &names, dir.path(), 1, &[]);
    engine.wait_for("the rest taken", Duration::from_secs(120), |e| {
        count(e, "karpoosheh_notices_stored_total", "agency=\"tax\"") >= 20.0
    });
    let answers = read_answers(
        &broker,
        &names,
        |a| {
            campaign
                .iter()
                .all(|r| a.receipts.contains_key(&("tax".to_owned(), r.clone())))
        },
        Duration::from_secs(120),
    );
    for r in &campaign {
        let got = &answers.receipts[&("tax".to_owned(), r.clone())];
        assert!(
            got.iter().all(|g| g.0 == "accepted" && !g.2),
            "{r}: {got:?}"
        );
    }
    assert!(courts
        .iter()
        .all(|r| answers.receipts[&("judiciary".to_owned(), r.clone())][0].0 == "accepted"));
    assert_eq!(
        count(&engine, "karpoosheh_notices_stored_total", "agency=\"tax\""),
        20.0,
        "the twenty left, each once"
    );
    let (code, _, log) = engine.terminate();
    assert_eq!(code, Some(0), "{log}");
    // Stored in the agencies' queue the registry gives tax (its ID's hash
    // is 6), judiciary's in its hash's.
    use karpoosheh_engine::{DeliveryStore, NoticeStore};
    use karpoosheh_schemas::AgencyId;
    let store = crate::kafka::open_store(&dir.path().join("node1"));
    let queue = |agency: &str, reference: &str| {
        let a = AgencyId::parse(agency).unwrap();
        let code = store.reference(&a, reference).unwrap().expect("stored");
        let rec = store.delivery(code).unwrap().unwrap();
        (rec.queue, rec.queue().index)
    };
    for r in &campaign {
        assert_eq!(queue("tax", r), (Some(2), 2), "{r}");
    }
    assert_eq!(queue("judiciary", &courts[0]), (Some(1), 1));
}
