//! The ScyllaDB backend on a live CQL cluster: the test cluster that
//! `scripts/test` starts with `scripts/cassandra cluster` (Apache Cassandra,
//! data centre `dc_main` on 127.0.0.21-23 and `dc_mirror` on 127.0.0.24),
//! named by `KARPOOSHEH_CQL_CLUSTER`. Nodes are stopped and started
//! during the tests, so they take the cluster one at a time, and every
//! node is running again when a test ends, passed or failed.
//!
//! Without the cluster the tests say SKIPPED, unless
//! `KARPOOSHEH_REQUIRE_CQL=1` (set by `scripts/test`).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use karpoosheh_engine::scylla::{ConsistencyName, ScyllaConfig, ScyllaStore, ScyllaStoreConfig};
use karpoosheh_engine::NoticeStore;
use karpoosheh_schemas::{AgencyId, HumanDuration};

use crate::kafka::{
    assert_all_accepted_once, broker_or_skip, mailbox, produce_batch, read_answers, Answers,
    Engine, Names, Storage,
};

/// The data centre the engines run in, and its three nodes.
const LOCAL_DC: &str = "dc_main";
const LOCAL_NODES: [&str; 3] = ["127.0.0.21:9042", "127.0.0.22:9042", "127.0.0.23:9042"];
/// The other data centre's node.
const MIRROR_DC: &str = "dc_mirror";
const MIRROR_NODE: &str = "127.0.0.24:9042";

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The test cluster, held by one test; restarts what the test stopped.
struct Cluster {
    dir: PathBuf,
    stopped: Vec<usize>,
    _turn: MutexGuard<'static, ()>,
}

fn cluster_or_skip(test: &str) -> Option<Cluster> {
    let Ok(dir) = std::env::var("KARPOOSHEH_CQL_CLUSTER") else {
        assert!(
            std::env::var("KARPOOSHEH_REQUIRE_CQL").is_err(),
            "{test}: the CQL test cluster is required (KARPOOSHEH_REQUIRE_CQL) but KARPOOSHEH_CQL_CLUSTER is not set: scripts/test starts it"
        );
        eprintln!("SKIPPED {test}: no CQL test cluster (scripts/test starts one with scripts/cassandra cluster and sets KARPOOSHEH_CQL_CLUSTER)");
        return None;
    };
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    Some(Cluster {
        dir: PathBuf::from(dir),
        stopped: Vec::new(),
        _turn: turn,
    })
}

fn cassandra_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/cassandra")
}

impl Cluster {
    /// Kills node `n` (1-4) as a crash would.
    fn kill(&mut self, n: usize) {
        let out = Command::new(cassandra_script())
            .args(["stop", &self.node_dir(n), "--kill"])
            .output()
            .expect("scripts/cassandra stop");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.stopped.push(n);
    }

    /// Starts node `n` again and waits until it answers CQL.
    fn restart(&mut self, n: usize) {
        let out = Command::new(cassandra_script())
            .args(["restart", &self.node_dir(n)])
            .output()
            .expect("scripts/cassandra restart");
        assert!(
            out.status.success(),
            "restarting node {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.stopped.retain(|&s| s != n);
    }

    fn node_dir(&self, n: usize) -> String {
        self.dir.join(format!("n{n}")).display().to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in std::mem::take(&mut self.stopped) {
            let ok = Command::new(cassandra_script())
                .args(["restart", &self.node_dir(n)])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!("could not restart CQL test node {n}: the next cluster test will fail");
            }
        }
    }
}

/// A keyspace of this test run's own (the cluster lives for the run).
fn unique_keyspace(case: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("ke_{case}_{}_{nanos:08x}", std::process::id())
}

/// The engine's `--set`s for the cluster: three copies in the main data
/// centre, one in the mirror, LOCAL_QUORUM.
fn engine_sets(keyspace: &str, replication: &str) -> Vec<String> {
    vec![
        "store.backend=\"scylla\"".into(),
        format!(
            "scylla.nodes=[{}]",
            LOCAL_NODES.map(|n| format!("{n:?}")).join(", ")
        ),
        format!("scylla.keyspace={keyspace:?}"),
        format!("scylla.local_datacenter={LOCAL_DC:?}"),
        format!("scylla.replication={replication}"),
        "scylla.consistency=\"local_quorum\"".into(),
        "scylla.request_timeout=\"3s\"".into(),
        "scylla.connect_timeout=\"3s\"".into(),
    ]
}

const REPLICATION: &str = "{ dc_main = 3, dc_mirror = 1 }";

/// A read-only view of the keyspace from one data centre, at `consistency`.
fn reader(keyspace: &str, dc: &str, nodes: &[&str], consistency: ConsistencyName) -> ScyllaStore {
    let scylla = ScyllaConfig {
        nodes: nodes.iter().map(|s| s.to_string()).collect(),
        keyspace: keyspace.to_owned(),
        local_datacenter: dc.to_owned(),
        replication: BTreeMap::from([(LOCAL_DC.to_owned(), 3), (MIRROR_DC.to_owned(), 1)]),
        consistency,
        request_timeout: HumanDuration(Duration::from_secs(5)),
        ..ScyllaConfig::default()
    };
    match ScyllaStore::open(ScyllaStoreConfig {
        scylla,
        node_id: 0,
        record_retention: Duration::from_secs(186 * 24 * 3600),
        read_only: true,
    }) {
        Ok(s) => s,
        Err(e) => panic!("opening {keyspace} read-only in {dc}: {e}"),
    }
}

fn karpoosheh(args: &[&str], sets: &[String]) -> std::process::Output {
    let mut c = karpoosheh_tests::karpoosheh_command();
    for s in sets {
        c.args(["--set", s]);
    }
    c.args(args).output().expect("run karpoosheh")
}

#[test]
fn cql_migrate_creates_the_keyspace_in_both_data_centres_and_reports_a_mismatch() {
    let Some(_cluster) = cluster_or_skip("cql_migrate") else {
        return;
    };
    let ks = unique_keyspace("migrate");
    let sets = engine_sets(&ks, REPLICATION);
    let first = karpoosheh(&["migrate"], &sets);
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(out.contains("applied migration(s)"), "{out}");
    let again = karpoosheh(&["migrate"], &sets);
    assert!(again.status.success());
    let out = String::from_utf8_lossy(&again.stdout);
    assert!(out.contains("nothing to apply"), "migrate twice: {out}");
    assert!(
        !String::from_utf8_lossy(&again.stderr).contains("warning"),
        "the keyspace is replicated as configured"
    );
    // Asked for another replication, migrate never alters the keyspace: it
    // says how it differs.
    let other = engine_sets(&ks, "{ dc_main = 3, dc_mirror = 2 }");
    let changed = karpoosheh(&["migrate"], &other);
    assert!(changed.status.success());
    let err = String::from_utf8_lossy(&changed.stderr);
    assert!(
        err.contains("warning") && err.contains("ALTER KEYSPACE"),
        "{err}"
    );
    // The schema is there for an engine in the mirror data centre too.
    let mirror = reader(&ks, MIRROR_DC, &[MIRROR_NODE], ConsistencyName::LocalOne);
    let tax = AgencyId::parse("tax").unwrap();
    assert!(mirror.reference(&tax, "none").unwrap().is_none());
}

/// Waits until `f` holds, or fails with `what`.
fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn accepted(a: &Answers, refs: &[(String, String)]) -> usize {
    refs.iter()
        .filter(|(r, _)| a.receipts.contains_key(&("tax".to_owned(), r.clone())))
        .count()
}

/// Article 29 on the cluster: with one of the three local replicas down
/// the engine goes on (LOCAL_QUORUM is two); with two down it acknowledges
/// nothing — no receipt for a notice that is not durable on a quorum — and
/// says it is not ready; once a node is back it resumes, and every notice
/// is stored once, followed up, and copied to the mirror data centre.
#[test]
fn cql_local_quorum_one_node_down_goes_on_two_down_refuses_then_resumes() {
    let Some(mut cluster) = cluster_or_skip("cql_local_quorum") else {
        return;
    };
    let Some(broker) = broker_or_skip("cql_local_quorum", Storage::Fresh) else {
        return;
    };
    let names = Names::new("cqlq");
    names.create(&broker, &["tax"], 2);
    let dir = tempfile::tempdir().unwrap();
    let ks = unique_keyspace("quorum");
    let mut sets = engine_sets(&ks, REPLICATION);
    sets.extend([
        "scylla.migrate_on_start=true".to_owned(),
        // The article-29 follow-up: a recipient without a mailbox is
        // reported unreachable by the scheduler, from the store.
        "delivery.enabled=true".to_owned(),
        "channels.allow_simulated=true".to_owned(),
        "delivery.quiet_hours=\"\"".to_owned(),
    ]);
    let set_refs: Vec<&str> = sets.iter().map(String::as_str).collect();
    let engine = Engine::start(&broker, &names, dir.path(), 1, &set_refs);
    let events = |a: &Answers, r: &str| a.events("tax", r);

    // All up.
    let first = produce_batch(&broker, &names, 0, 300);
    // One local replica down: LOCAL_QUORUM still has two of three.
    cluster.kill(3);
    let second = produce_batch(&broker, &names, 300, 300);
    let both: Vec<_> = first.iter().chain(&second).cloned().collect();
    let a = read_answers(
        &broker,
        &names,
        |a| accepted(a, &both) == both.len(),
        Duration::from_secs(120),
    );
    assert_eq!(
        accepted(&a, &both),
        both.len(),
        "all accepted, one node down"
    );

    // Two local replicas down: no quorum.
    cluster.kill(2);
    let third = produce_batch(&broker, &names, 600, 200);
    engine.wait_for("the store's write errors", Duration::from_secs(60), |e| {
        e.metric("karpoosheh_store_write_errors_total", "") >= 1.0
    });
    std::thread::sleep(Duration::from_secs(3));
    let (ready, why) = engine.get("/health/ready");
    assert_eq!(ready, 503, "not ready without a quorum: {why}");
    let a = read_answers(&broker, &names, |_| false, Duration::from_secs(3));
    assert_eq!(
        accepted(&a, &third),
        0,
        "nothing acknowledged without a quorum"
    );

    // One back: a quorum again; the engine resumes by itself.
    cluster.restart(2);
    let all: Vec<_> = both.iter().chain(&third).cloned().collect();
    let a = read_answers(
        &broker,
        &names,
        |a| {
            accepted(a, &all) == all.len()
                && all
                    .iter()
                    .all(|(r, _)| events(a, r).contains(&"mailbox_unreachable".to_owned()))
        },
        Duration::from_secs(180),
    );
    for (r, _) in &all {
        let got = &a.receipts[&("tax".to_owned(), r.clone())];
        let codes: HashSet<_> = got.iter().map(|g| g.1.clone()).collect();
        assert_eq!(codes.len(), 1, "{r}: one tracking code: {got:?}");
        assert_eq!(got[0].0, "accepted", "{r}: {got:?}");
        assert!(
            events(&a, r).contains(&"mailbox_unreachable".to_owned()),
            "{r}: the article-29 follow-up ran: {:?}",
            events(&a, r)
        );
    }
    engine.wait_for("ready again", Duration::from_secs(60), |e| {
        e.get("/health/ready").0 == 200
    });
    let (code, _, log) = engine.terminate();
    assert_eq!(code, Some(0), "{log}");
    cluster.restart(3);

    // Every notice once, in the main data centre and in the mirror.
    let tax = AgencyId::parse("tax").unwrap();
    let main = reader(&ks, LOCAL_DC, &LOCAL_NODES, ConsistencyName::LocalQuorum);
    for (r, id) in &all {
        assert!(main.reference(&tax, r).unwrap().is_some(), "{r} stored");
        let page = main.mailbox(mailbox(id), None, 10).unwrap();
        assert_eq!(page.notices.len(), 1, "{r} stored exactly once");
    }
    let mirror = reader(&ks, MIRROR_DC, &[MIRROR_NODE], ConsistencyName::LocalOne);
    eventually(
        "every notice in the mirror data centre",
        Duration::from_secs(60),
        || {
            all.iter()
                .all(|(r, _)| matches!(mirror.reference(&tax, r), Ok(Some(_))))
        },
    );
}

/// The guarantee the embedded store cannot give: two engines on one
/// shared store, one killed mid-batch, and every notice stored once with
/// one tracking code — the records the dead node had stored but not
/// committed are absorbed as duplicates by the survivors. The dead node's
/// ID stays leased until its lease lapses; a restarted engine with that ID
/// waits for it and then takes it.
#[test]
fn cql_two_engines_on_one_store_one_killed_every_notice_once_and_its_lease_passes_on() {
    let Some(_cluster) = cluster_or_skip("cql_two_engines") else {
        return;
    };
    let Some(broker) = broker_or_skip("cql_two_engines", Storage::Fresh) else {
        return;
    };
    let names = Names::new("cqlpair");
    names.create(&broker, &["tax"], 4);
    let dir = tempfile::tempdir().unwrap();
    let ks = unique_keyspace("pair");
    let mut sets = engine_sets(&ks, REPLICATION);
    sets.push("scylla.migrate_on_start=true".to_owned());
    let set_refs: Vec<&str> = sets.iter().map(String::as_str).collect();
    // B leads the group, A is killed (see the embedded two-node test).
    let b = Engine::start(&broker, &names, dir.path(), 2, &set_refs);
    b.wait_for("B alone owns the group", Duration::from_secs(60), |e| {
        e.metric("karpoosheh_kafka_assigned_partitions", "") >= 4.0
    });
    let a = Engine::start(&broker, &names, dir.path(), 1, &set_refs);
    for e in [&a, &b] {
        e.wait_for("a share of the partitions", Duration::from_secs(60), |e| {
            e.metric("karpoosheh_kafka_assigned_partitions", "") >= 1.0
        });
    }
    let first = produce_batch(&broker, &names, 0, 3000);
    a.wait_for("node A working", Duration::from_secs(60), |e| {
        e.metric("karpoosheh_notices_stored_total", "") >= 200.0
    });
    let killed_at = Instant::now();
    a.kill9();
    // A's ID is still leased by the dead process: a new engine with it,
    // started at once, waits for the lease to lapse (between LEASE_TTL
    // minus one renewal interval and LEASE_TTL after the kill), then takes
    // it and joins the group. Started at once so that the wait is tested
    // however long the reads below take on a slow machine.
    let a2 = Engine::start(&broker, &names, dir.path(), 1, &set_refs);
    let second = produce_batch(&broker, &names, 3000, 1000);
    a2.wait_for("the lease taken over", Duration::from_secs(90), |e| {
        e.log().contains("node lease taken")
    });
    let took = killed_at.elapsed();
    assert!(
        a2.log().contains("waiting for its lease to expire"),
        "the restarted engine waited for the dead one's lease:\n{}",
        a2.log()
    );
    assert!(
        took >= Duration::from_secs(15),
        "the lease passed {took:?} after the kill, before it could have lapsed"
    );
    eprintln!("cql_two_engines: node 1's lease passed to its new engine {took:?} after the kill");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let owned = b.metric("karpoosheh_kafka_assigned_partitions", "")
            + a2.metric("karpoosheh_kafka_assigned_partitions", "");
        if owned >= 4.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the survivor and the new engine never owned every partition ({owned}):\n{}\n{}",
            b.log(),
            a2.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let all: Vec<_> = first.into_iter().chain(second).collect();
    let answers = read_answers(
        &broker,
        &names,
        |a| accepted(a, &all) == all.len(),
        Duration::from_secs(180),
    );
    // One tracking code per reference, whichever node answered it.
    assert_all_accepted_once(&answers, &all);
    let codes: HashSet<_> = answers
        .receipts
        .values()
        .flat_map(|v| v.iter().filter_map(|x| x.1.clone()))
        .collect();
    assert_eq!(codes.len(), all.len(), "one code per notice, none shared");
    eprintln!(
        "cql_two_engines: the survivors absorbed {} re-delivered notices as duplicates",
        b.metric("karpoosheh_notices_duplicate_total", "")
            + a2.metric("karpoosheh_notices_duplicate_total", "")
    );
    for e in [a2, b] {
        let (code, _, log) = e.terminate();
        assert_eq!(code, Some(0), "{log}");
    }

    let store = reader(&ks, LOCAL_DC, &LOCAL_NODES, ConsistencyName::LocalQuorum);
    let tax = AgencyId::parse("tax").unwrap();
    for (r, id) in &all {
        assert!(store.reference(&tax, r).unwrap().is_some(), "{r} stored");
        let page = store.mailbox(mailbox(id), None, 10).unwrap();
        assert_eq!(page.notices.len(), 1, "{r} stored exactly once");
    }
}
