#!/usr/bin/env python3
"""Minimal reproduction: are records lost with Kafka consumer pause/resume
against tansu 0.6, and if so by whom (broker storage, broker fetch after a
seek, librdkafka, or the engine)?

It starts its own tansu on a free port (a fresh SQLite database in a temp
directory, or tansu's memory engine with --storage memory), and for every
mode creates a topic of --partitions partitions, produces N small records
(acks=all; each payload carries its own sequence number), then consumes it
with a bare confluent_kafka Consumer configured like the engine's
(engine/src/source/kafka.rs: enable.auto.commit=false, auto.offset.reset
earliest, fetch.wait.max.ms 100, queued.max.messages.kbytes 65536,
cooperative-sticky) in one of these modes:

  plain         no pausing; records are "processed" like in the other modes
  pause-seek    a partition with K records in flight is paused (at the end
                of the poll batch, like the engine) and resumed below K/2
                after a seek to the offset after the last record handed out
                (exactly what the engine does in `ack`)
  pause-noseek  the same, resume without the seek (plain librdkafka)
  fetch-at      no consuming run: fresh consumers assigned at offsets inside
                each partition (the broker alone: no pause, no seek, no
                group) -- does the first record returned have that offset?

"In flight" records are acknowledged by a simulated store: FIFO, each at
least --delay-ms after it was received, at most --rate records/s in all.

It counts distinct (partition, offset) pairs and payload sequence numbers
received, what the engine's filter (`offset < lane.next` -> skip) would
have handed to the pipeline, forward jumps in offsets per partition (the
signature of a lost run) and whether they line up with a resume, and
finally re-reads the topic from the beginning with a fresh consumer group
(no pausing) to check that the broker still has all N records.

  scripts/repro-pause-resume.py                       # sqlite, 3 modes
  scripts/repro-pause-resume.py --storage memory --modes pause-seek -n 20000

Needs: python3 with confluent-kafka, tansu (default /root/.cargo/bin/tansu
or $TANSU). Exit code 0 when no mode lost anything, 1 otherwise.
"""

import argparse
import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Broker:
    def __init__(self, tansu, storage, workdir):
        self.dir = tempfile.mkdtemp(prefix="tansu-", dir=workdir)
        self.port = free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        # tansu reads a sqlite URL's path relative to its working directory.
        engine = "sqlite://tansu.db" if storage == "sqlite" else "memory://tansu/"
        self.log_path = os.path.join(self.dir, "tansu.log")
        self.proc = subprocess.Popen(
            [tansu, "broker", "--kafka-listener-url", url,
             "--kafka-advertised-listener-url", url, "--storage-engine", engine],
            cwd=self.dir, stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if k != "RUST_LOG"},
        )
        log(f"tansu pid {self.proc.pid} on {url}, storage {engine}, dir {self.dir}")
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"tansu did not start; log: {self.log_path}")
                time.sleep(0.05)
        self.addr = f"127.0.0.1:{self.port}"

    def stop(self, keep):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        log(f"tansu pid {self.proc.pid} stopped")
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def create_topic(addr, topic, partitions):
    admin = AdminClient({"bootstrap.servers": addr})
    for t, f in admin.create_topics([NewTopic(topic, partitions, 1)]).items():
        f.result(30)
    # Wait until the metadata shows every partition with a leader.
    deadline = time.time() + 30
    while time.time() < deadline:
        md = admin.list_topics(topic, timeout=10).topics.get(topic)
        if md and md.error is None and len(md.partitions) == partitions and all(
                p.leader >= 0 for p in md.partitions.values()):
            return
        time.sleep(0.1)
    raise SystemExit(f"topic {topic} not ready")


def produce(addr, topic, n, partitions, payload_size):
    p = Producer({"bootstrap.servers": addr, "acks": "all",
                  "queue.buffering.max.messages": 1000000})
    errors = []
    delivered = [0]

    def cb(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            delivered[0] += 1

    pad = b"x" * max(0, payload_size - 9)
    t0 = time.time()
    for seq in range(n):
        payload = b"%08d:" % seq + pad
        while True:
            try:
                p.produce(topic, payload, partition=seq % partitions, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.05)
        if seq % 10000 == 0:
            p.poll(0)
    left = p.flush(120)
    log(f"produced {delivered[0]}/{n} in {time.time() - t0:.1f}s, errors {len(errors)}, unflushed {left}")
    if errors or left or delivered[0] != n:
        raise SystemExit(f"produce failed: {errors[:5]} left={left}")


def watermarks(c, topic, partitions):
    out = {}
    for p in range(partitions):
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        out[p] = (lo, hi)
    return out


def runs(sorted_offsets):
    """[(first, last)] contiguous runs of a sorted list of ints."""
    out = []
    for o in sorted_offsets:
        if out and o == out[-1][1] + 1:
            out[-1][1] = o
        else:
            out.append([o, o])
    return [tuple(r) for r in out]


def consumer_conf(addr, group, debug):
    c = {
        "bootstrap.servers": addr,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "queued.max.messages.kbytes": 65536,
        "fetch.wait.max.ms": 100,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
    }
    if debug:
        c["debug"] = debug
    return c


def consume(addr, topic, partitions, n, mode, a):
    """One consuming run. Returns a dict of results."""
    group = f"repro-{mode}-{uuid.uuid4().hex[:8]}"
    c = Consumer(consumer_conf(addr, group, a.debug))
    c.subscribe([topic])
    k = a.max_in_flight
    pausing = mode in ("pause-seek", "pause-noseek")
    seek = mode == "pause-seek"

    seen = collections.defaultdict(set)        # partition -> offsets received
    seqs = set()
    received = 0
    dup = 0
    backwards = 0
    nxt = {}                                   # partition -> engine's lane.next
    handed = collections.defaultdict(set)      # what the engine would hand out
    inflight = collections.defaultdict(collections.deque)  # p -> (offset, t)
    paused = set()
    events = collections.defaultdict(list)     # p -> [(kind, offset, t)]
    jumps = collections.defaultdict(list)      # p -> (expected, got, last event)
    pauses = resumes = 0
    seek_errors = []
    budget = 0.0
    last_t = time.time()
    t0 = time.time()
    last_progress = time.time()
    rr = 0

    while True:
        now = time.time()
        msgs = c.consume(num_messages=a.batch, timeout=0.1)
        to_pause = []
        for m in msgs:
            if m.error():
                log(f"[{mode}] consume error: {m.error()}")
                continue
            p, o = m.partition(), m.offset()
            received += 1
            if o in seen[p]:
                dup += 1
            seen[p].add(o)
            try:
                seqs.add(int(m.value()[:8]))
            except ValueError:
                pass
            last_progress = now
            # The engine's lane logic (poll, "fetched again after a pause").
            nx = nxt.get(p, -1)
            if o < nx:
                backwards += 1
                continue
            if nx >= 0 and o > nx:
                ev = events[p][-1] if events[p] else None
                jumps[p].append((nx, o, ev))
            nxt[p] = o + 1
            handed[p].add(o)
            inflight[p].append((o, now))
            if pausing and p not in paused and len(inflight[p]) >= k:
                paused.add(p)
                to_pause.append(p)
        for p in to_pause:
            c.pause([TopicPartition(topic, p)])
            pauses += 1
            events[p].append(("pause", nxt[p], round(now - t0, 3)))

        # The simulated store: FIFO acks, each record at least delay_ms old,
        # at most `rate` records per second over all partitions.
        now = time.time()
        budget = min(budget + a.rate * (now - last_t), a.rate)  # at most 1 s of credit
        last_t = now
        parts = sorted(inflight)
        if parts:
            for i in range(len(parts)):
                p = parts[(rr + i) % len(parts)]
                q = inflight[p]
                while q and budget >= 1 and now - q[0][1] >= a.delay_ms / 1000:
                    q.popleft()
                    budget -= 1
            rr += 1

        # Resume below half (the engine's `ack`), with or without the seek.
        for p in sorted(paused):
            if len(inflight[p]) <= k // 2:
                paused.discard(p)
                tp = TopicPartition(topic, p, nxt[p])
                if seek:
                    try:
                        c.seek(tp)
                    except KafkaException as e:
                        seek_errors.append((p, nxt[p], str(e)))
                c.resume([TopicPartition(topic, p)])
                resumes += 1
                events[p].append(("resume+seek" if seek else "resume", nxt[p], round(now - t0, 3)))

        total = sum(len(s) for s in seen.values())
        if total >= n and not any(inflight.values()):
            break
        if now - last_progress > a.idle_timeout and not paused:
            log(f"[{mode}] no new record for {a.idle_timeout}s, stopping")
            break
        if now - t0 > a.max_seconds:
            log(f"[{mode}] time limit {a.max_seconds}s reached, stopping")
            break

    elapsed = time.time() - t0
    wm = watermarks(c, topic, partitions)
    positions = {tp.partition: tp.offset for tp in c.position(
        [TopicPartition(topic, p) for p in range(partitions)])}
    c.close()
    return {
        "mode": mode,
        "group": group,
        "seconds": round(elapsed, 1),
        "received_messages": received,
        "distinct_partition_offsets": sum(len(s) for s in seen.values()),
        "distinct_sequence_numbers": len(seqs),
        "missing_sequence_numbers": n - len(set(range(n)) & seqs),
        "duplicates_received": dup,
        "skipped_by_engine_filter": backwards,
        "handed_out_by_engine_filter": sum(len(s) for s in handed.values()),
        "pauses": pauses,
        "resumes": resumes,
        "seek_errors": seek_errors[:5],
        "_seen": seen, "_events": events, "_jumps": jumps, "_handed": handed,
        "_wm": wm, "_positions": positions,
    }


def analyse(r, ref, partitions):
    """Per partition: what the consuming run missed of what a fresh re-read
    (`ref`: partition -> offsets) found, as contiguous runs, and whether
    each run starts at an offset the consumer resumed (or seeked) at."""
    seen, events, jumps, handed = r.pop("_seen"), r.pop("_events"), r.pop("_jumps"), r.pop("_handed")
    wm, positions = r.pop("_wm"), r.pop("_positions")
    per_part = {}
    total = 0
    for p in range(partitions):
        missing = sorted(ref[p] - seen[p])
        total += len(missing)
        mr = runs(missing)
        resume_offsets = {e[1] for e in events[p] if e[0].startswith("resume")}
        per_part[p] = {
            "offsets_in_topic": len(ref[p]),
            "listoffsets_latest": wm[p][1],
            "received_distinct": len(seen[p]),
            "handed_out_by_engine_filter": len(handed[p]),
            "missing": len(missing),
            "missing_runs": mr[:20],
            "missing_runs_count": len(mr),
            "runs_starting_at_a_resume_offset": sum(1 for x in mr if x[0] in resume_offsets),
            "forward_jumps": jumps[p][:10],
            "forward_jumps_count": len(jumps[p]),
            "final_position": positions.get(p),
            "pause_resume_events": len(events[p]),
            "first_events": events[p][:6],
        }
    r["missing_offsets"] = total
    r["partitions"] = per_part


def verify(addr, topic, partitions, n, a):
    """Re-read everything with a fresh group and no pausing."""
    c = Consumer(consumer_conf(addr, f"verify-{uuid.uuid4().hex[:8]}", None))
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seqs = set()
    offsets = collections.defaultdict(set)
    count = 0
    last = time.time()
    while count < n and time.time() - last < a.idle_timeout:
        for m in c.consume(num_messages=1000, timeout=0.2):
            if m.error():
                continue
            if m.offset() not in offsets[m.partition()]:
                count += 1
            offsets[m.partition()].add(m.offset())
            seqs.add(int(m.value()[:8]))
            last = time.time()
    wm = watermarks(c, topic, partitions)
    c.close()
    return {
        "distinct_partition_offsets": count,
        "distinct_sequence_numbers": len(seqs),
        "listoffsets_latest_sum": sum(hi for _, hi in wm.values()),
        "_offsets": offsets,
    }


def fetch_at(addr, topic, partitions, ref, a):
    """The broker alone: a fresh consumer assigned at an offset (no pause,
    no seek, no group position) -- which offset does it get first?"""
    out = []
    for p in range(partitions):
        offs = sorted(ref[p])
        if not offs:
            continue
        for x in sorted({offs[0] + 1, offs[len(offs) // 3] + 1, offs[len(offs) // 2], offs[-1]}):
            c = Consumer(consumer_conf(addr, f"probe-{uuid.uuid4().hex[:8]}", None))
            c.assign([TopicPartition(topic, p, x)])
            first = None
            deadline = time.time() + 5
            while first is None and time.time() < deadline:
                for m in c.consume(num_messages=1, timeout=0.2):
                    if not m.error():
                        first = m.offset()
            c.close()
            out.append((p, x, first))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=100000, help="records to produce (default 100000)")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--storage", choices=["sqlite", "memory"], default="sqlite")
    ap.add_argument("--modes", default="plain,pause-seek,pause-noseek",
                    help="comma-separated: plain, pause-seek, pause-noseek, fetch-at")
    ap.add_argument("--max-in-flight", "-k", type=int, default=2000,
                    help="pause a partition at K records in flight, resume at K/2 (default 2000)")
    ap.add_argument("--rate", type=float, default=20000, help="simulated store: acks per second (default 20000)")
    ap.add_argument("--delay-ms", type=float, default=20, help="simulated store: minimum age before an ack")
    ap.add_argument("--batch", type=int, default=500, help="records per consume() call")
    ap.add_argument("--payload-size", type=int, default=16, help="bytes per payload (>= 9)")
    ap.add_argument("--idle-timeout", type=float, default=15)
    ap.add_argument("--max-seconds", type=float, default=300)
    ap.add_argument("--debug", default=None, help="librdkafka debug contexts, e.g. fetch,consumer")
    ap.add_argument("--workdir", default=None, help="where the broker's temp dir goes")
    ap.add_argument("--keep", action="store_true", help="keep the broker's directory (log, db)")
    ap.add_argument("--tansu", default=os.environ.get("TANSU", "/root/.cargo/bin/tansu"))
    ap.add_argument("--json", default=None, help="also write the full results here")
    a = ap.parse_args()
    if a.workdir:
        os.makedirs(a.workdir, exist_ok=True)

    broker = Broker(a.tansu, a.storage, a.workdir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
    results = []
    try:
        for mode in a.modes.split(","):
            topic = f"repro-{mode}-{uuid.uuid4().hex[:6]}"
            log(f"[{mode}] topic {topic}: {a.partitions} partitions, {a.n} records")
            create_topic(broker.addr, topic, a.partitions)
            produce(broker.addr, topic, a.n, a.partitions, a.payload_size)
            if mode == "fetch-at":
                # No consuming run: only the broker's answer to a fetch that
                # starts inside the partition.
                v = verify(broker.addr, topic, a.partitions, a.n, a)
                ref = v.pop("_offsets")
                probes = fetch_at(broker.addr, topic, a.partitions, ref, a)
                bad = [x for x in probes if x[2] != x[1]]
                verdict = ("NO LOSS: every fetch starts at the offset asked for" if not bad else
                           f"BROKER FETCH SKIPS RECORDS: {len(bad)} of {len(probes)} fetches did not start "
                           f"at the offset asked for, (partition, asked, first returned): {bad[:6]}")
                r = {"mode": mode, "storage": a.storage, "n": a.n, "verify": v, "probes": probes,
                     "verdict": verdict}
                results.append(r)
                print(f"\n=== storage={a.storage} mode={mode} n={a.n} ===")
                print(f"  fresh consumer assigned at an offset, (partition, asked, first returned): {probes}")
                print(f"  verify (fresh group, from the beginning): {v}")
                print(f"  VERDICT: {verdict}", flush=True)
                continue
            r = consume(broker.addr, topic, a.partitions, a.n, mode, a)
            v = verify(broker.addr, topic, a.partitions, a.n, a)
            ref = v.pop("_offsets")
            analyse(r, ref, a.partitions)
            r["verify"] = v
            r["storage"] = a.storage
            r["n"] = a.n
            results.append(r)
            broker_ok = v["distinct_sequence_numbers"] == a.n
            client_ok = r["distinct_sequence_numbers"] == a.n
            engine_ok = r["handed_out_by_engine_filter"] >= a.n
            lost = a.n - r["distinct_sequence_numbers"]
            runs_total = sum(d["missing_runs_count"] for d in r["partitions"].values())
            at_resume = sum(d["runs_starting_at_a_resume_offset"] for d in r["partitions"].values())
            if not broker_ok:
                verdict = (f"BROKER LOST RECORDS: a fresh re-read finds {v['distinct_sequence_numbers']} of {a.n}")
            elif client_ok and engine_ok:
                verdict = "NO LOSS: every record received"
            elif client_ok:
                verdict = "CLIENT GOT ALL, ENGINE FILTER WOULD SKIP SOME"
            else:
                verdict = (f"LOST IN CONSUMING: {lost} records ({100 * lost / a.n:.1f}%) never received, although "
                           f"the broker still serves all {a.n} to a fresh group; {runs_total} contiguous missing "
                           f"run(s), {at_resume} of them starting exactly at the offset the consumer resumed at")
            if v["listoffsets_latest_sum"] != a.n:
                verdict += (f" [broker's ListOffsets(latest) is wrong: sum {v['listoffsets_latest_sum']}, "
                            f"not {a.n}]")
            r["verdict"] = verdict
            print(f"\n=== storage={a.storage} mode={mode} n={a.n} k={a.max_in_flight} ===")
            print(f"received {r['received_messages']} messages, distinct offsets {r['distinct_partition_offsets']}, "
                  f"distinct seqs {r['distinct_sequence_numbers']}, duplicates {r['duplicates_received']}, "
                  f"engine would hand out {r['handed_out_by_engine_filter']} (skipped as re-fetched "
                  f"{r['skipped_by_engine_filter']}); pauses {r['pauses']}, resumes {r['resumes']}, "
                  f"seek errors {len(r['seek_errors'])}, {r['seconds']}s")
            for p, d in r["partitions"].items():
                print(f"  p{p}: in topic {d['offsets_in_topic']} got {d['received_distinct']} missing {d['missing']} "
                      f"in {d['missing_runs_count']} run(s) {d['missing_runs'][:4]}; runs starting at a resume "
                      f"offset {d['runs_starting_at_a_resume_offset']}; forward jumps {d['forward_jumps_count']} "
                      f"(expected, got, last event) {d['forward_jumps'][:2]}; final position {d['final_position']}")
            print(f"  verify (fresh group, from the beginning): {v}")
            print(f"  VERDICT: {verdict}", flush=True)
    finally:
        broker.stop(a.keep)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    lost = [r for r in results if "NO LOSS" not in r["verdict"]]
    print("\nSUMMARY: " + "; ".join(f"{r['storage']}/{r['mode']}: {r['verdict']}" for r in results))
    sys.exit(1 if lost else 0)


if __name__ == "__main__":
    main()
