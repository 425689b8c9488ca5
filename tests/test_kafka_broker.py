"""The local broker (deploy/kafka/kafka.sh) is real and works: CI proves it on every run."""

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.servers import free_port_block

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "deploy" / "kafka" / "kafka.sh"


def test_produce_and_consume_round_trip(kafka):
    topic = f"avgrid-test-roundtrip-{uuid.uuid4().hex[:8]}"
    value = {"record_id": uuid.uuid4().hex, "kind": "event", "t_start": 1.0}
    producer = KafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True)
    meta = producer.send(topic, key=b"cam1", value=json.dumps(value).encode(),
                         headers=[("schema_version", b"1")]).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False, consumer_timeout_ms=10_000)
    tp = TopicPartition(topic, meta.partition)
    consumer.assign([tp])
    consumer.seek(tp, meta.offset)
    got = next(iter(consumer))
    consumer.close()
    assert got.key == b"cam1"
    assert json.loads(got.value) == value
    assert dict(got.headers)["schema_version"] == b"1"


def _java_pids_for(state: Path) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes()
            except OSError:
                continue
            if b"kafka.Kafka" in cmd and str(state).encode() in cmd:
                out.append(int(p.name))
    return out


@pytest.mark.slow
def test_kafka_up_is_idempotent_and_down_leaves_nothing(tmp_path):
    """`kafka-up` twice is safe (same broker, same address); `kafka-down` leaves no java process of ours."""
    state = tmp_path / "broker"
    port = free_port_block(2)                          # the broker's and its KRaft controller's
    env = dict(os.environ, AVGRID_KAFKA_PORT=str(port), AVGRID_KAFKA_STATE=str(state))
    try:
        first = subprocess.run([str(SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=180)
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip() == f"127.0.0.1:{port}"
        pid = int((state / "broker.pid").read_text())
        second = subprocess.run([str(SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip() == f"127.0.0.1:{port}"
        assert int((state / "broker.pid").read_text()) == pid, "second `up` must reuse the running broker"
        assert _java_pids_for(state) == [pid]
    finally:
        down = subprocess.run([str(SCRIPT), "down"], env=env, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert _java_pids_for(state) == []
    assert not state.exists()
