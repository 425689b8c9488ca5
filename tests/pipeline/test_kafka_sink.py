"""Kafka sink against the shared local broker (non-destructive: a unique topic prefix per test)."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from kafka import KafkaProducer

from pipeline.errors import SinkError
from pipeline.records import KINDS, SCHEMA_VERSION, from_json, to_dict
from pipeline.sinks import FanOut, KafkaConfig, KafkaSink, ParquetSink
from tests.brokers import consume, unique_prefix
from tests.pipeline.test_records import sample_records
from tests.pipeline.test_sinks_parquet import read_dataset

pytestmark = pytest.mark.kafka
CLOSED = "127.0.0.1:9"          # discard port: nothing listens there
QUICK_FAIL = dict(api_version=(3, 9), connect_timeout_s=1.0, request_timeout_s=1.0, max_block_s=0.5,
                  delivery_timeout_s=2.0)


def test_consumer_records_equal_parquet_records(kafka, tmp_path):
    prefix = unique_prefix()
    cfg = KafkaConfig(kafka, prefix=prefix, partitions=2, dead_letter_dir=str(tmp_path), run_id="r1")
    sinks = FanOut([ParquetSink.open(tmp_path, run_id="r1", roll_rows=7, partition_by=("stream_id",)),
                    KafkaSink.connect(cfg)])
    streams = ["cam1", "lobby ü", "clip-3"]
    for sid in streams:
        sinks.write(sample_records(sid, 12, run_id="r1", live=sid == "cam1"))
        assert sinks.commit_input(sid)
    sinks.close()
    assert sinks.committed_inputs() == set(streams)
    stats = sinks.stats
    assert stats["KafkaSink"]["written"] == stats["ParquetSink"]["written"] == {k: 36 for k in KINDS}
    assert stats["KafkaSink"]["dead_lettered"] == 0 and not sinks.errors

    msgs = consume(kafka, [f"{prefix}.{k}" for k in KINDS], 4 * 36, settle_s=1.0)
    assert len(msgs) == 4 * 36
    for m in msgs:
        kind = m.topic.rsplit(".", 1)[1]
        rec = from_json(kind, m.value)
        assert m.key == rec.stream_id.encode()
        assert dict(m.headers) == {"schema_version": str(SCHEMA_VERSION).encode()}
        assert json.loads(m.value)["produced_at"].endswith("+00:00")
    assert {m.partition for m in msgs} == {0, 1}        # the sink created the topics with 2 partitions
    # a key lands where kafka-python's default partitioner (murmur2, as the Java client) puts it
    raw = KafkaProducer(bootstrap_servers=kafka)
    expected = {sid.encode(): raw.send(f"{prefix}.caption", value=b"{}", key=sid.encode()).get(30).partition
                for sid in streams}
    raw.close()
    assert {(m.key, m.partition) for m in msgs} == set(expected.items())
    for kind in KINDS:
        from_kafka = {r.record_id: r for r in (from_json(kind, m.value) for m in msgs if m.topic.endswith(kind))}
        from_parquet = {r.record_id: r for r in read_dataset(tmp_path, kind)}
        assert len(from_kafka) == len(from_parquet) == 36
        assert from_kafka == from_parquet


def test_exactly_once_consumers_see_only_committed_transactions(kafka, tmp_path):
    prefix = unique_prefix()
    sink = KafkaSink.connect(KafkaConfig(kafka, prefix=prefix, exactly_once=True,
                                         transactional_id=f"{prefix}-txn", dead_letter_dir=str(tmp_path)))
    committed = [r for r in sample_records("clip0", 5) if r.kind == "event"]
    sink.write(committed)
    sink.commit_input("clip0")
    sink.write([r for r in sample_records("clip1", 5) if r.kind == "event"])
    sink.abort()
    later = [r for r in sample_records("clip2", 3) if r.kind == "event"]
    sink.write(later)
    sink.close()                                   # close commits the open transaction
    assert sink.stats.written["event"] == 8
    msgs = consume(kafka, [f"{prefix}.event"], 8, isolation="read_committed", settle_s=1.0)
    assert [from_json("event", m.value) for m in msgs] == committed + later


def test_permanent_failure_goes_to_the_dead_letter_file(tmp_path, caplog):
    cfg = KafkaConfig(CLOSED, prefix="dlq", dead_letter_dir=str(tmp_path), run_id="r7", **QUICK_FAIL)
    records = [r for r in sample_records("clip0", 3) if r.kind == "caption"]
    sink = KafkaSink.connect(cfg)
    sink.write(records)
    sink.flush()
    assert sink.stats.dead_lettered == 3 and sink.stats.written["caption"] == 0
    lines = [json.loads(line) for line in (tmp_path / "_deadletter" / "kafka-r7.jsonl").read_text().splitlines()]
    assert [d["record"] for d in lines] == [to_dict(r) for r in records]
    assert all(d["topic"] == "dlq.caption" and "Timeout" in d["reason"] for d in lines)
    with pytest.raises(SinkError, match="records of input clip0 could not be delivered"):
        sink.commit_input("clip0")
    sink.close()
    assert "3 records failed permanently" in caplog.text and "127.0.0.1:9" in caplog.text


def test_sasl_secrets_never_reach_logs_or_errors(kafka, tmp_path, caplog):
    secret = "pa55-" + uuid.uuid4().hex
    caplog.set_level(logging.DEBUG)
    base = dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="avgrid",
                sasl_password=secret, dead_letter_dir=str(tmp_path))
    errors = []
    # the broker's listener speaks PLAINTEXT: the SASL handshake fails at connect time
    with pytest.raises(SinkError) as err:
        KafkaSink.connect(KafkaConfig(kafka, connect_timeout_s=2.0, **base))
    errors.append(str(err.value))
    # with a preset api_version the producer starts without a broker: the admin client (which logs
    # its whole configuration at DEBUG) and every send run and fail
    sink = KafkaSink.connect(KafkaConfig(CLOSED, **base, **QUICK_FAIL))
    sink.write(sample_records("cam1", 1)[:2])
    sink.close()
    scram = KafkaConfig(CLOSED, **{**base, "sasl_mechanism": "SCRAM-SHA-512"}, **QUICK_FAIL)
    KafkaSink.connect(scram).close()
    assert sink.stats.dead_lettered == 2
    assert any("KafkaAdminClient with configuration" in r.getMessage() for r in caplog.records)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert secret not in logged and secret not in caplog.text
    assert all(secret not in e for e in errors + sink.stats.errors)
    assert secret not in repr(scram)
    assert all(secret not in p.read_text() for p in (tmp_path / "_deadletter").iterdir())


def test_fanout_keeps_writing_when_one_sink_fails(tmp_path):
    broken = KafkaSink.connect(KafkaConfig(CLOSED, prefix="broken", **QUICK_FAIL))   # no dead-letter dir
    parquet = ParquetSink.open(tmp_path, run_id="r1")
    sinks = FanOut([broken, parquet])
    records = [r for r in sample_records("clip0", 4) if r.kind == "event"]
    sinks.write(records)                 # the Kafka sink raises inside: records lost there
    assert sinks.commit_input("clip0") is False
    assert parquet.committed_inputs() == set() and sinks.committed_inputs() == set()
    more = [r for r in sample_records("clip1", 2) if r.kind == "event"]
    sinks.write(more)
    sinks.close()
    assert sorted(read_dataset(tmp_path, "event"), key=lambda r: r.record_id) == \
        sorted(records + more, key=lambda r: r.record_id)
    errs = sinks.errors["KafkaSink"]
    assert errs and all("kafka 127.0.0.1:9" in e for e in errs) and not sinks.errors.get("ParquetSink")
    assert "records lost" in errs[0]
    assert sinks.stats["ParquetSink"]["written"] == {"event": 6}
