"""Broker SIGKILLed and restarted under a running sink: nothing acknowledged or queued is lost.

Uses its own broker (the ``own_broker`` fixture: free ports, deploy/kafka/kafka.sh with a separate state
directory), never the shared one. Takes about a minute: a KRaft broker recovering from SIGKILL needs
~30 s to come back.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict

import pytest

from pipeline.records import from_json, to_json
from pipeline.sinks import KafkaConfig, KafkaSink
from tests.brokers import consume
from tests.pipeline.test_records import sample_records

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.mark.timeout(300)
def test_broker_killed_mid_run_every_record_arrives(own_broker, tmp_path):
    def connect(prefix, **kw):
        return KafkaSink.connect(KafkaConfig(own_broker.bootstrap, prefix=prefix, dead_letter_dir=str(tmp_path),
                                             delivery_timeout_s=180, **kw))

    archive = connect("archive", run_id="archive")
    live = connect("live", run_id="live", live=True, buffer_max_records=20)
    bounded = connect("bounded", run_id="bounded", buffer_max_records=20)     # archive mode: waits
    records = [r for r in sample_records("cam1", 300) if r.kind in ("event", "action")]
    first, during, after = records[:200], records[200:400], records[400:]
    archive.write(first)
    live.write([r for r in first if r.kind == "event"][:10])
    while live.pending:                                 # a live flush waits at most live_flush_s
        live.flush()
    bounded.write(first[:10])
    bounded.flush()

    own_broker.kill()                                   # SIGKILL: no clean shutdown
    archive.write(during)                               # buffered: within its bound, no waiting
    assert archive.stats.dead_lettered == 0
    live.write([r for r in during if r.kind == "event"])   # 100 records, room for 20
    assert live.stats.dropped == 80
    live.flush()                                        # a live run goes on: flush does not wait for the broker
    assert live.pending == 20 and live.stats.dead_lettered == 0
    blocked = threading.Thread(target=bounded.write, args=(during,))
    blocked.start()
    blocked.join(timeout=3.0)
    assert blocked.is_alive() and bounded.pending == 20      # waiting for the broker, not dropping
    own_broker.up()                                     # same data directory
    archive.write(after)
    archive.close()
    live.close()
    blocked.join(timeout=120)
    assert not blocked.is_alive()
    bounded.close()
    assert bounded.stats.dropped == 0 and sum(bounded.stats.written.values()) == 210

    assert archive.stats.dead_lettered == live.stats.dead_lettered == bounded.stats.dead_lettered == 0
    assert archive.stats.written == Counter(event=300, action=300)
    msgs = consume(own_broker.bootstrap, ["archive.event", "archive.action"], len(records), settle_s=2.0)
    assert {m.value for m in msgs} == {to_json(r) for r in records}       # every record arrived
    by_id = defaultdict(set)
    for m in msgs:
        by_id[from_json(m.topic.split(".")[1], m.value).record_id].add(m.value)
    # a duplicate (if any) is the very same record: same id, same bytes
    assert len(by_id) == len(records) and all(len(values) == 1 for values in by_id.values())

    kept = [r for r in first if r.kind == "event"][:10] + [r for r in during if r.kind == "event"][:20]
    live_msgs = consume(own_broker.bootstrap, ["live.event"], 30, settle_s=2.0)
    assert live.stats.written["event"] == 30
    assert {m.value for m in live_msgs} == {to_json(r) for r in kept}
