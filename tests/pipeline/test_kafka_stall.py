"""A broker frozen with SIGSTOP (it accepts connections and answers nothing) past the delivery timeout:
every wait ends by its deadline, every record is acknowledged or dead-lettered, the run says so.

Uses its own broker (free ports, deploy/kafka/kafka.sh with a separate state directory), never the
shared one, and short delivery timeouts (4 s), so the whole module takes well under a minute.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path

import pytest

from pipeline.errors import SinkError
from pipeline.records import KINDS, from_json
from pipeline.sinks import KafkaConfig, KafkaSink
from tests.brokers import consume, unique_prefix
from tests.pipeline.test_records import sample_records

pytestmark = [pytest.mark.kafka]
DELIVERY_S = 4.0            # kafka-python's delivery timeout in these tests; avgrid's deadline is 5 s more


def dead_lettered(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_frozen_broker_costs_one_deadline_and_every_record_lands_somewhere(own_broker, tmp_path):
    prefix = unique_prefix()
    cfg = KafkaConfig(own_broker.bootstrap, prefix=prefix, dead_letter_dir=str(tmp_path), run_id="stall",
                      delivery_timeout_s=DELIVERY_S, request_timeout_s=2.0)
    sink = KafkaSink.connect(cfg)
    a, b, c, d = (sample_records(s, 10) for s in ("a", "b", "c", "d"))
    sink.write(a)
    sink.commit_input("a")
    assert sink.health().up
    with own_broker.frozen():
        sink.write(b)
        t0 = time.monotonic()
        with pytest.raises(SinkError) as err:
            sink.commit_input("b")            # kafka-python alone would wait here for ever
        waited_b = time.monotonic() - t0
        health = sink.health()
        sink.write(c)
        t0 = time.monotonic()
        with pytest.raises(SinkError):
            sink.commit_input("c")            # the broker is known unreachable: no second full deadline
        waited_c = time.monotonic() - t0
    # b waits one deadline at most; c, sent while nothing had answered for a deadline, a moment more
    assert waited_b <= cfg.ack_deadline_s + 1.0, waited_b
    assert waited_b + waited_c <= cfg.ack_deadline_s + cfg.unreachable_wait_s + 1.0, (waited_b, waited_c)
    assert f"kafka 127.0.0.1:{own_broker.port}" in str(err.value) and "40 dead-lettered" in str(err.value)
    assert "nothing acknowledged for" in str(err.value)
    assert not health.up and health.down_since is not None and health.dead_lettered == 40

    # answering again: the same producer delivers again (kafka-python's producer-id reset, fixed here).
    # Records sent at once may still join a batch from the outage and expire with it: later inputs get
    # through, within seconds
    t0, probes = time.monotonic(), 0
    while True:
        probe = sample_records(f"probe{probes}", 1)
        sink.write(probe)
        try:
            sink.commit_input(f"probe{probes}")
            break
        except SinkError:
            probes += 1
            assert time.monotonic() - t0 < 30, "the sink never delivered again"
            time.sleep(0.5)
    sink.write(d)
    sink.commit_input("d")
    assert sink.health().up
    sink.close()
    assert sink.pending == 0

    dl = dead_lettered(tmp_path / "_deadletter" / "kafka-stall.jsonl")
    assert len(dl) == sink.stats.dead_lettered >= 80
    assert all("not acknowledged within" in x["reason"] or "Expiring" in x["reason"] for x in dl)
    in_dl = {x["record"]["record_id"] for x in dl}
    msgs = consume(own_broker.bootstrap, [f"{prefix}.{k}" for k in KINDS], 80, timeout_s=20, settle_s=2.0)
    in_kafka = {from_json(m.topic.rsplit(".", 1)[1], m.value).record_id for m in msgs}
    assert {r.record_id for r in a + d} <= in_kafka
    assert {r.record_id for r in b + c} <= in_kafka | in_dl           # none in neither
    assert not {r.record_id for r in a + d} & in_dl


def test_closing_while_the_broker_is_frozen_takes_the_timeout_given_and_dead_letters_the_rest(own_broker, tmp_path):
    cfg = KafkaConfig(own_broker.bootstrap, prefix=unique_prefix(), dead_letter_dir=str(tmp_path), run_id="close",
                      delivery_timeout_s=DELIVERY_S, request_timeout_s=2.0, live=True, live_flush_s=0.5)
    sink = KafkaSink.connect(cfg)
    records = sample_records("cam", 5)
    with own_broker.frozen():
        sink.write(records)
        t0 = time.monotonic()
        sink.flush()                      # live: goes on at once
        flushed = time.monotonic() - t0
        t0 = time.monotonic()
        sink.close(timeout_s=1.0)
        closed = time.monotonic() - t0
    assert flushed < 1.5 and closed < 2.0, (flushed, closed)
    assert sink.pending == 0 and sink.stats.dead_lettered == len(records)
    assert len(dead_lettered(tmp_path / "_deadletter" / "kafka-close.jsonl")) == len(records)


def test_annotate_with_a_broker_frozen_mid_run_exits_1_naming_the_broker_and_the_count(own_broker, tmp_path,
                                                                                       ray_local, caplog):
    """The whole run: inputs whose records could not be delivered fail (a re-run sends them again),
    the console says once that the broker is down, and nothing is in neither Kafka nor the dead-letter file."""
    from pipeline.config import load_config
    from pipeline.runtime import Engine, Observer
    from tests.datasets import read_kind
    from tests.media import MediaSpec, make_media

    media = tmp_path / "in"
    media.mkdir()
    for i in range(3):
        make_media(media / f"c{i}.mp4", MediaSpec(duration_s=3.0, width=160, height=120, flashes=(1.0,), clicks=()))
    pid = own_broker.pid

    class Freeze(Observer):
        at = None

        def cells_annotated(self, run, cells, seconds):
            if self.at is None:
                os.kill(pid, signal.SIGSTOP)
                self.at = time.monotonic()

    prefix = unique_prefix()
    out = tmp_path / "out"
    cfg = load_config(overrides={"out": str(out), "kafka": own_broker.bootstrap, "kafka_prefix": prefix,
                                 "kafka_delivery_timeout_s": DELIVERY_S, "concurrency": 1})
    freeze = Freeze()
    caplog.set_level(logging.WARNING, logger="avgrid.kafka")
    try:
        summary = Engine(cfg, observers=[freeze], run_id="frozen").annotate([str(media)])
        ended = time.monotonic()
    finally:
        os.kill(pid, signal.SIGCONT)
    assert freeze.at is not None
    assert ended - freeze.at <= DELIVERY_S + 30, ended - freeze.at
    assert summary.exit_code == 1
    failed = summary.failures
    assert failed and all(f"kafka 127.0.0.1:{own_broker.port}" in f.reason and "dead-lettered" in f.reason for f in failed), \
        summary.table()
    table = summary.table()
    assert f"kafka 127.0.0.1:{own_broker.port}:" in table and "records dead-lettered" in table
    downs = [r for r in caplog.records if "down since" in r.getMessage()]
    assert len(downs) == 1, [r.getMessage() for r in caplog.records]

    dl = dead_lettered(out / "_deadletter" / "kafka-frozen.jsonl")
    assert dl
    in_dl = {x["record"]["record_id"] for x in dl if "record_id" in x["record"]}    # (streams rows have none)
    print(table)
    built = {r["record_id"] for k in KINDS for r in read_kind(out, k)}     # Parquet holds every record built
    msgs = consume(own_broker.bootstrap, [f"{prefix}.{k}" for k in KINDS], len(built), timeout_s=15, settle_s=1.0)
    in_kafka = {json.loads(m.value)["record_id"] for m in msgs}
    assert built and built <= in_kafka | in_dl


def test_a_live_run_keeps_going_while_the_broker_is_frozen_and_reports_what_waited(own_broker, tmp_path,
                                                                                    ray_local, caplog):
    """`avgrid run` with the broker frozen from the second record on: cells keep being annotated and
    written to Parquet, the outage is logged once, and the summary says how many records were
    dead-lettered; the run's own exit status stays 0 (every stream ran)."""
    from pipeline.config import load_config
    from pipeline.runtime import Engine, Observer
    from tests.datasets import read_kind

    pid = own_broker.pid

    class Freeze(Observer):
        at = None

        def records_delivered(self, n, lag_s):
            if self.at is None and n:
                os.kill(pid, signal.SIGSTOP)
                self.at = time.monotonic()

    freeze = Freeze()
    out = tmp_path / "out"
    cfg = load_config(overrides={"out": str(out), "kafka": own_broker.bootstrap, "kafka_prefix": unique_prefix(),
                                 "kafka_delivery_timeout_s": DELIVERY_S, "duration": 20.0,
                                 "max_segment_s": 2.0})     # records every 2 s, so some always wait
    caplog.set_level(logging.WARNING, logger="avgrid.kafka")
    try:
        summary = Engine(cfg, observers=[freeze], run_id="livefrozen").run(["cam=synthetic:?realtime=true&fps=10"])
    finally:
        os.kill(pid, signal.SIGCONT)
    assert freeze.at is not None
    (cam,) = summary.inputs
    assert summary.exit_code == 0 and cam.status == "ok" and cam.cells >= 15, summary.table()
    assert [r for r in caplog.records if "down since" in r.getMessage()], [r.getMessage() for r in caplog.records]
    assert "records dead-lettered" in summary.table()
    dl = dead_lettered(out / "_deadletter" / "kafka-livefrozen.jsonl")
    assert dl and read_kind(out, "caption")          # Parquet kept every record; Kafka's wait went to the file
