"""Sink throughput against the raw libraries, measured in the same run.

    python -m benchmarks.sinks            # needs the local broker (make kafka-up)

Kafka: KafkaSink (acks=all, idempotent, JSON encoding and future checks included) vs a raw
kafka-python KafkaProducer with the same settings sending already-encoded values.
Parquet: ParquetSink (grouping, per-batch Arrow conversion, fsync, atomic rename, manifest) vs
``to_arrow`` + ``pyarrow.parquet.write_table`` per kind in one go.
The two sides run back to back ``ROUNDS`` times, the order alternating each round; the figures are
medians and each ratio is the median of the per-round ratios (robust on a shared machine).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
from kafka import KafkaProducer

from benchmarks._harness import report, timed
from pipeline.records import KINDS, SCHEMA_VERSION, ActionRecord, CaptionRecord, EventRecord, SentimentRecord, \
    to_arrow, to_json
from pipeline.sinks import KafkaConfig, KafkaSink, ParquetSink
from pipeline.sinks.kafka.options import producer_config

KAFKA_RECORDS = int(os.environ.get("AVGRID_BENCH_KAFKA_RECORDS", 40_000))
PARQUET_RECORDS = int(os.environ.get("AVGRID_BENCH_PARQUET_RECORDS", 400_000))
BATCH = 1000            # records per write() call, as the record builder hands them over
ROUNDS = 5
STREAMS = 4


def make_records(n: int) -> list:
    """``n`` records, the four kinds in turn, over ``STREAMS`` streams (1 s segments)."""
    out = []
    for i in range(n):
        common = dict(stream_id=f"cam{i % STREAMS}", source=f"rtsp://user:***@10.0.0.{i % STREAMS}/live",
                      t_start=float(i // 4), t_end=float(i // 4 + 1), run_id="bench")
        kind = i % 4
        if kind == 0:
            out.append(ActionRecord.make(**common, model="kinetics400/r2plus1d_18@1", label="juggling balls",
                                         score=0.61, top_k=[("juggling balls", 0.61), ("dancing", 0.2),
                                                            ("skipping rope", 0.05)]))
        elif kind == 1:
            out.append(EventRecord.make(**common, model="detectors/onset@1", label="speech", modality="audio",
                                        score=0.9))
        elif kind == 2:
            out.append(SentimentRecord.make(**common, model="bundle/demo@1", label="neutral", negative=0.2,
                                            neutral=0.5, positive=0.3, valence=0.05, arousal=0.4))
        else:
            out.append(CaptionRecord.make(**common, model="captions/template@1", method="template",
                                          text="a person juggles three balls in a lobby"))
    return out


def bench_kafka(bootstrap: str, records: list) -> tuple[float, float, float]:
    def run_sink() -> float:
        prefix = f"bench{uuid.uuid4().hex[:8]}"
        sink = KafkaSink.connect(KafkaConfig(bootstrap, prefix=prefix, run_id="bench"))
        sink.write([next(r for r in records if r.kind == k) for k in KINDS])   # creates the topics
        sink.flush()
        with timed() as t:
            for i in range(0, len(records), BATCH):
                sink.write(records[i:i + BATCH])
            sink.flush()
        assert sink.stats.dead_lettered == 0 and sum(sink.stats.written.values()) == len(records) + 4
        sink.close()
        return len(records) / t()

    def run_raw() -> float:
        cfg = KafkaConfig(bootstrap, prefix=f"bench{uuid.uuid4().hex[:8]}", run_id="bench")
        producer = KafkaProducer(**producer_config(cfg))
        headers = [("schema_version", str(SCHEMA_VERSION).encode())]
        encoded = [(cfg.topic(r.kind), r.stream_id.encode(), to_json(r)) for r in records]
        for k in KINDS:
            producer.send(cfg.topic(k), value=b"{}", key=b"warmup", headers=headers)
        producer.flush()
        with timed() as t:
            futures = [producer.send(topic, value=value, key=key, headers=headers) for topic, key, value in encoded]
            producer.flush()
        assert all(f.succeeded() for f in futures)
        producer.close()
        return len(records) / t()

    return _rounds(run_sink, run_raw)


def bench_parquet(records: list) -> tuple[float, float, float]:
    by_kind = {k: [r for r in records if r.kind == k] for k in KINDS}

    def run_sink(out: Path) -> float:
        sink = ParquetSink.open(out, run_id=f"bench{uuid.uuid4().hex[:8]}", roll_rows=1_000_000)
        with timed() as t:
            for i in range(0, len(records), BATCH):
                sink.write(records[i:i + BATCH])
            sink.close()
        return len(records) / t()

    def run_raw(out: Path) -> float:
        out.mkdir(parents=True)
        with timed() as t:
            for kind, recs in by_kind.items():
                pq.write_table(to_arrow(recs), out / f"{kind}.parquet", compression="snappy")
        return len(records) / t()

    tmp = Path(tempfile.mkdtemp(prefix="avgrid-bench-"))
    try:
        return _rounds(lambda: run_sink(tmp / uuid.uuid4().hex), lambda: run_raw(tmp / uuid.uuid4().hex))
    finally:
        shutil.rmtree(tmp)


def _rounds(run_sink, run_raw) -> tuple[float, float, float]:
    """Median sink rate, median raw rate, median of the per-round sink/raw ratios (records/s)."""
    sink_rates, raw_rates, ratios = [], [], []
    for i in range(ROUNDS):
        if i % 2:
            sink, raw = run_sink(), run_raw()
        else:
            raw = run_raw()
            sink = run_sink()
        sink_rates.append(sink)
        raw_rates.append(raw)
        ratios.append(sink / raw)
    return statistics.median(sink_rates), statistics.median(raw_rates), statistics.median(ratios)


def main() -> dict:
    bootstrap = os.environ.get("AVGRID_KAFKA_BOOTSTRAP", f"127.0.0.1:{os.environ.get('AVGRID_KAFKA_PORT', '9092')}")
    started = time.perf_counter()
    parquet, parquet_raw, parquet_ratio = bench_parquet(make_records(PARQUET_RECORDS))
    kafka, kafka_raw, kafka_ratio = bench_kafka(bootstrap, make_records(KAFKA_RECORDS))
    return report(
        "sinks",
        figures={"kafka_records_per_s": kafka, "kafka_raw_records_per_s": kafka_raw,
                 "parquet_records_per_s": parquet, "parquet_raw_records_per_s": parquet_raw},
        ratios={"kafka_vs_raw": kafka_ratio, "parquet_vs_raw": parquet_ratio},
        targets={"kafka_records_per_s": 10_000, "parquet_records_per_s": 200_000,
                 "kafka_vs_raw": 0.8, "parquet_vs_raw": 0.8},
        notes={"kafka_records": KAFKA_RECORDS, "parquet_records": PARQUET_RECORDS, "batch": BATCH,
               "rounds": ROUNDS, "statistic": "medians; ratio = median of per-round ratios, order alternating",
               "kafka_settings": "acks=all, enable_idempotence=True, linger_ms=5, batch_size=256 KiB",
               "raw_kafka": "pre-encoded values (JSON encoding not timed)",
               "raw_parquet": "to_arrow + write_table per kind, no fsync/rename",
               "wall_s": round(time.perf_counter() - started, 1)})


if __name__ == "__main__":
    main()
