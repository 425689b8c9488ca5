"""The readers a data team uses read every kind of one real run, also the kind nothing was found of.

One ``avgrid annotate`` run of a clip with a flash, a cut and clicks but no speech and no faces, to
Parquet and Kafka at once: the offline profile finds actions, events and captions and no sentiment,
so ``sentiment`` is the empty kind. pyarrow.dataset, pandas, Polars, DuckDB, Spark (local, on the
machine's Java), kafka-python and Kafka's own console consumer (``deploy/kafka/kafka.sh consume``) each
read the four kinds and ``streams``, with timestamps as timestamps and ``top_k`` as a list of structs,
and all of them see the same record ids.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from pipeline.cli import main
from pipeline.records import KINDS, STREAMS, arrow_schema, from_json
from tests.media import MediaSpec, make_media

REPO = Path(__file__).resolve().parents[2]
UTC = dt.timezone.utc
ORIGIN = dt.datetime(2026, 11, 30, 8, 0, 0, tzinfo=UTC)
ALL = KINDS + (STREAMS,)
EMPTY = "sentiment"
TIMES = {k: ("wall_start", "wall_end", "produced_at") for k in KINDS} | {STREAMS: ("media_origin", "started_at",
                                                                                    "finished_at")}


@pytest.fixture(scope="module")
def run(tmp_path_factory, ray_local, kafka):
    d = tmp_path_factory.mktemp("readers")
    clip = d / "street.mp4"
    # ground truth: a flash at 2.0 s (0.3 s long), a hard cut at 3.0 s, clicks at 2.0 and 4.5 s; no speech
    make_media(clip, MediaSpec(duration_s=6.0, flashes=(2.0,), cuts=(3.0,), clicks=(2.0, 4.5)))
    out = d / "avgrid-out"              # the README's blocks read ./avgrid-out
    prefix = f"readers-{uuid.uuid4().hex[:8]}"
    assert main(["annotate", str(clip), "--out", str(out), "--kafka", kafka, "--kafka-prefix", prefix,
                 "--media-origin", ORIGIN.isoformat(), "--no-progress"]) == 0
    # the reference every reader is compared with: pyarrow.dataset, as the README shows it
    ref = {k: ds.dataset(out / k, partitioning="hive").to_table() for k in ALL}
    return {"out": out, "dir": d, "prefix": prefix, "clip": str(clip), "ref": ref,
            "ids": {k: sorted(_ids(ref[k], k)) for k in ALL}}


def _ids(table: pa.Table, kind: str) -> list[str]:
    if kind == STREAMS:
        return [f"{s}|{r}" for s, r in zip(table.column("stream_id").to_pylist(), table.column("run_id").to_pylist())]
    return table.column("record_id").to_pylist()


def test_the_run_has_one_empty_kind_and_the_truth_in_the_others(run):
    ref = run["ref"]
    assert ref[EMPTY].num_rows == 0
    assert all(ref[k].num_rows > 0 for k in ALL if k != EMPTY)
    events = {(r["label"], r["t_start"]) for r in ref["event"].to_pylist()}
    assert ("flash", 2.0) in events and ("cut", 3.0) in events, events
    (stream,) = ref[STREAMS].to_pylist()
    assert stream["stream_id"] == run["clip"] and stream["status"] == "ok"
    assert stream["media_origin"] == ORIGIN and stream["duration_s"] == pytest.approx(6.0, abs=0.1)
    for r in ref["event"].to_pylist():
        assert r["wall_start"] == ORIGIN + dt.timedelta(seconds=r["t_start"])


def test_pyarrow_dataset_types(run):
    for kind in ALL:
        dataset = ds.dataset(run["out"] / kind, partitioning="hive")
        assert dataset.schema.remove_metadata() == arrow_schema(kind).remove_metadata(), kind
    top_k = run["ref"]["action"].column("top_k").type
    assert top_k == pa.list_(pa.struct([pa.field("label", pa.string(), nullable=False),
                                        pa.field("score", pa.float64(), nullable=False)]))
    assert run["ref"]["event"].schema.field("wall_start").type == pa.timestamp("us", tz="UTC")


def test_pandas(run):
    import pandas as pd

    for kind in ALL:
        df = pd.read_parquet(run["out"] / kind)
        assert sorted(_ids(pa.Table.from_pandas(df, preserve_index=False), kind)) == run["ids"][kind], kind
        for col in TIMES[kind]:
            assert isinstance(df[col].dtype, pd.DatetimeTZDtype) and str(df[col].dtype.tz) == "UTC", (kind, col)
    df = pd.read_parquet(run["out"] / "action")
    first = df["top_k"].iloc[0]
    assert first[0]["label"] == df["label"].iloc[0] and isinstance(first[0]["score"], float)
    ev = pd.read_parquet(run["out"] / "event")
    flash = ev[ev["label"] == "flash"].iloc[0]
    assert flash["wall_start"] == pd.Timestamp(ORIGIN) + pd.Timedelta(seconds=2)


def test_polars(run):
    import polars as pl

    for kind in ALL:
        lf = pl.scan_parquet(f"{run['out']}/{kind}/**/*.parquet", hive_partitioning=True)
        df = lf.collect()
        schema = df.schema
        ids = df["record_id"].to_list() if kind != STREAMS else [f"{s}|{r}" for s, r in
                                                                 zip(df["stream_id"], df["run_id"])]
        assert sorted(ids) == run["ids"][kind], kind
        for col in TIMES[kind]:
            assert schema[col] == pl.Datetime("us", "UTC"), (kind, col, schema[col])
    action = pl.read_parquet(f"{run['out']}/action/**/*.parquet")
    assert action.schema["top_k"] == pl.List(pl.Struct({"label": pl.String, "score": pl.Float64}))
    assert action.schema["track_id"] == pl.Int64 and action.schema["count"] == pl.Int32
    assert action["top_k"][0][0]["label"] == action["label"][0]


def test_duckdb(run):
    import duckdb

    con = duckdb.connect()
    for kind in ALL:
        src = f"read_parquet('{run['out']}/{kind}/**/*.parquet', hive_partitioning=true)"
        types = dict(con.sql(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {src})").fetchall())
        for col in TIMES[kind]:
            assert types[col] == "TIMESTAMP WITH TIME ZONE", (kind, col, types[col])
        if kind == STREAMS:
            ids = [f"{s}|{r}" for s, r in con.sql(f"SELECT stream_id, run_id FROM {src}").fetchall()]
        else:
            ids = [r for (r,) in con.sql(f"SELECT record_id FROM {src}").fetchall()]
        assert sorted(ids) == run["ids"][kind], kind
    types = dict(con.sql(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM "
                         f"read_parquet('{run['out']}/action/**/*.parquet'))").fetchall())
    assert types["top_k"].replace('"', "") == "STRUCT(label VARCHAR, score DOUBLE)[]"    # DuckDB quotes "label"
    assert types["track_id"] == "BIGINT" and types["count"] == "INTEGER" and types["t_start"] == "DOUBLE"
    (label, first) = con.sql(f"SELECT label, top_k[1].label FROM read_parquet('{run['out']}/action/**/*.parquet')"
                             ).fetchall()[0]
    assert first == label


@pytest.fixture(scope="module")
def spark():
    pyspark_sql = pytest.importorskip("pyspark.sql")
    session = (pyspark_sql.SparkSession.builder.master("local[1]").appName("avgrid-readers")
               .config("spark.ui.enabled", "false").config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.driver.host", "127.0.0.1").config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.shuffle.partitions", "1").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_spark(run, spark):
    from pyspark.sql import types as T

    for kind in ALL:
        df = spark.read.parquet(str(run["out"] / kind))
        fields = {f.name: f.dataType for f in df.schema.fields}
        for col in TIMES[kind]:
            assert isinstance(fields[col], T.TimestampType), (kind, col, fields[col])
        rows = df.collect()
        ids = [r["record_id"] for r in rows] if kind != STREAMS else [f"{r['stream_id']}|{r['run_id']}" for r in rows]
        assert sorted(ids) == run["ids"][kind], kind
    action = spark.read.parquet(str(run["out"] / "action"))
    top_k = action.schema["top_k"].dataType
    assert isinstance(top_k, T.ArrayType) and isinstance(top_k.elementType, T.StructType)
    assert [(f.name, f.dataType) for f in top_k.elementType.fields] == [("label", T.StringType()),
                                                                         ("score", T.DoubleType())]
    assert isinstance(action.schema["track_id"].dataType, T.LongType)
    flash = spark.read.parquet(str(run["out"] / "event")).where("label = 'flash'").collect()[0]
    assert flash["wall_start"].replace(tzinfo=UTC) == ORIGIN + dt.timedelta(seconds=2)   # session zone UTC


def _check_kafka_values(run, got: dict[str, list[tuple[dict, bytes | str, dict]]]) -> None:
    """``got[kind]``: (headers, key, JSON object) per message, as a consumer saw them."""
    for kind in ALL:
        msgs = got.get(kind, [])
        ids = [f"{v['stream_id']}|{v['run_id']}" if kind == STREAMS else v["record_id"] for _, _, v in msgs]
        assert sorted(ids) == run["ids"][kind], kind
        for headers, key, value in msgs:
            assert headers.get("schema_version") == "2" and key == value["stream_id"] == run["clip"]
            for col in TIMES[kind]:
                if value[col] is not None:
                    t = dt.datetime.fromisoformat(value[col])
                    assert t.utcoffset() == dt.timedelta(0), (kind, col, value[col])
            if kind != STREAMS:
                from_json(kind, json.dumps(value))      # the record class accepts it back
    (action, *_) = [v for _, _, v in got["action"]]
    assert isinstance(action["top_k"], list) and set(action["top_k"][0]) == {"label", "score"}


def test_kafka_python(run, kafka):
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False, consumer_timeout_ms=5000)
    try:
        topics = {f"{run['prefix']}.{k}": k for k in ALL}
        assert set(topics) <= consumer.topics(), "every kind's topic exists, the empty one too"
        parts = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        want = sum(end.values())
        got: dict[str, list] = {}
        seen = 0
        for msg in consumer:
            headers = {k: v.decode() for k, v in msg.headers}
            got.setdefault(topics[msg.topic], []).append((headers, msg.key.decode(), json.loads(msg.value)))
            seen += 1
            if seen >= want:
                break
    finally:
        consumer.close()
    assert sum(end[tp] for tp in parts if tp.topic == f"{run['prefix']}.{EMPTY}") == 0
    _check_kafka_values(run, got)


def test_java_console_consumer(run, kafka):
    """Kafka's own kafka-console-consumer, from the broker's jar set (deploy/kafka/kafka.sh consume)."""
    total = sum(len(v) for v in run["ids"].values())
    res = subprocess.run([str(REPO / "deploy" / "kafka" / "kafka.sh"), "consume", "--include",
                          rf"{run['prefix']}\.({'|'.join(ALL)})", "--from-beginning", "--max-messages", str(total),
                          "--timeout-ms", "30000", "--property", "print.key=true", "--property",
                          "print.headers=true"],
                         env=dict(os.environ, AVGRID_KAFKA_BOOTSTRAP=kafka),
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"Processed a total of {total} messages" in res.stderr
    got: dict[str, list] = {}
    for line in res.stdout.splitlines():
        headers, key, value = line.split("\t", 2)      # print.headers, print.key: tab separated
        obj = json.loads(value)
        got.setdefault(obj["kind"], []).append((dict(h.split(":", 1) for h in headers.split(",")), key, obj))
    _check_kafka_values(run, got)


def test_console_consumer_usage_error():
    res = subprocess.run([str(REPO / "deploy" / "kafka" / "kafka.sh"), "consume"], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 2 and "usage:" in res.stderr and "consume TOPIC" in res.stderr


# ---- the README's "Records and readers": its schema tables and its code, run as written ----------------

def _readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


_DOC_TYPES = {"string": pa.string(), "int32": pa.int32(), "int64": pa.int64(), "float64": pa.float64(),
              "bool": pa.bool_(), "timestamp (UTC)": pa.timestamp("us", tz="UTC"),
              "list of struct{`label` string, `score` float64}": arrow_schema("action").field("top_k").type}


def _table_rows(section: str, heading: str) -> list[list[str]]:
    """The rows of the first markdown table after the line ``heading``."""
    part = section[section.index(heading):]
    rows, started = [], False
    for line in part.splitlines()[1:]:
        if line.startswith("|"):
            started = True
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not set(cells[0]) <= {"-"} and cells[0] not in ("field", "kind"):
                rows.append(cells)
        elif started:
            break
    return rows


def test_readme_documents_every_field_with_its_type():
    section = _readme_section("Records and readers")
    common = {r[0].strip("`"): r[1] for r in _table_rows(section, "Fields every record has")}
    per_kind: dict[str, dict[str, str]] = {}
    for kind, name, typ, _ in _table_rows(section, "Per kind:"):
        per_kind.setdefault(kind, {})[name.strip("`")] = typ
    streams = {r[0].strip("`"): r[1] for r in _table_rows(section, "The **streams** rows")}
    for kind in ALL:
        documented = streams if kind == STREAMS else {**common, **per_kind[kind]}
        schema = arrow_schema(kind)
        assert set(documented) == set(schema.names), (kind, set(documented) ^ set(schema.names))
        for name, typ in documented.items():
            nullable = typ.endswith(", nullable")
            assert _DOC_TYPES[typ.removesuffix(", nullable")] == schema.field(name).type, (kind, name, typ)
            assert not nullable or schema.field(name).nullable, (kind, name)


@pytest.fixture(scope="module")
def with_people(run, tmp_path_factory):
    """The run's dataset plus a camera's person counts, shaped as the people operator writes them."""
    from pipeline.records import EventRecord
    from pipeline.sinks import ParquetSink

    d = tmp_path_factory.mktemp("readme")
    shutil.copytree(run["out"], d / "avgrid-out")
    t0 = dt.datetime(2026, 11, 30, 9, 0, 10, tzinfo=UTC)
    # (media s from, to, people): minute 09:00 sees at most 3, minute 09:01 at most 5, 09:02 at most 1
    counts = [(10.0, 20.0, 2), (20.0, 30.0, 3), (60.0, 70.0, 5), (70.0, 80.0, 4), (120.0, 125.0, 1)]
    recs = [EventRecord.make(stream_id="cam-people", source="rtsp://cam-people/live", t_start=a, t_end=b,
                             wall_start=t0 + dt.timedelta(seconds=a - 10), wall_end=t0 + dt.timedelta(seconds=b - 10),
                             model="people:hog+bytetrack", operator="people", run_id="people-run", label="person",
                             modality="visual", score=0.9, count=n) for a, b, n in counts]
    sink = ParquetSink.open(d / "avgrid-out", run_id="people-run")
    sink.write(recs)
    sink.close()
    return d


def _sql(directory, query: str) -> list[tuple]:
    import duckdb

    cwd = os.getcwd()
    os.chdir(directory)
    try:
        return duckdb.connect().sql(query).fetchall()
    finally:
        os.chdir(cwd)


def test_readme_dashboard_queries_work_as_written(run, with_people):
    queries = _blocks(_readme_section("Records and readers"), "sql")
    assert len(queries) == 4
    per_minute, people, captions, streams = (_sql(with_people, q) for q in queries)
    # events per minute by label: what pyarrow counts, bucketed by wall_start's minute
    want: dict = {}
    events = ds.dataset(with_people / "avgrid-out" / "event", partitioning="hive").to_table().to_pylist()
    for r in events:
        key = (r["wall_start"].replace(second=0, microsecond=0), r["label"])
        want[key] = want.get(key, 0) + 1
    assert {(m.astimezone(UTC), label): n for m, label, n in per_minute} == want
    assert ("flash" in {label for _, label, _ in per_minute}) and len(per_minute) >= 4
    # people over time: the most people counted in each minute
    assert [(s, m.astimezone(UTC).strftime("%H:%M"), n) for s, m, n in people] == [
        ("cam-people", "09:00", 3), ("cam-people", "09:01", 5), ("cam-people", "09:02", 1)]
    # captions over time: every caption, in time order, with its wall clock
    assert [c[5] for c in captions] == [r["text"] for r in sorted(run["ref"]["caption"].to_pylist(),
                                                                   key=lambda r: r["t_start"])]
    assert all(c[1] == ORIGIN + dt.timedelta(seconds=c[2]) for c in captions)
    assert [(s[0], s[1]) for s in streams] == [(run["clip"], "ok")]


def test_readme_python_blocks_run_as_written(run):
    """Every Python block of the README that reads ./avgrid-out (Spark's too slow here: test_spark covers it)."""
    blocks = [b for b in _blocks((REPO / "README.md").read_text(), "python") if "avgrid-out" in b]
    assert len(blocks) >= 3
    for code in blocks:
        if "pyspark" in code:
            continue
        res = subprocess.run([sys.executable, "-c", code], cwd=run["dir"], capture_output=True, text=True,
                             timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert res.returncode == 0, (code, res.stderr[-2000:])
        assert res.stdout.strip(), code
