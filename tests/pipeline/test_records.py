"""Records: the CONTRACT fields, deterministic ids, JSON and Arrow/Parquet round trips, clear errors."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.records import (KINDS, SCHEMA_VERSION, ActionRecord, CaptionRecord, EventRecord, LabelScore,
                              SentimentRecord, StreamRecord, arrow_schema, empty_table, from_arrow, from_json,
                              make_record_id, to_arrow, to_json)

UTC = dt.timezone.utc
COMMON = ["record_id", "schema_version", "kind", "stream_id", "source", "t_start", "t_end", "wall_start",
          "model", "run_id", "produced_at"]
KIND_FIELDS = {"action": ["label", "score", "top_k"], "event": ["label", "modality", "score"],
               "sentiment": ["label", "negative", "neutral", "positive", "valence", "arousal"],
               "caption": ["text", "method"]}
# schema version 2 adds fields after every v1 column (DESIGN "Records (CONTRACT)")
V2_COMMON = ["wall_end", "operator", "episode_id"]
V2_KIND = {"action": ["subject", "track_id", "count"], "event": ["count", "detail"], "sentiment": ["modality"],
           "caption": ["score"]}


def v2_names(kind: str) -> list[str]:
    return COMMON + KIND_FIELDS[kind] + V2_COMMON + V2_KIND[kind]


def sample_records(stream_id: str, n: int, *, run_id: str = "run1", t0: float = 0.0,
                   source: str | None = None, live: bool = False) -> list:
    """``n`` records per kind for one stream, 1 s apart from ``t0`` (deterministic apart from produced_at)."""
    src = source or f"/data/{stream_id}.mp4"
    wall = dt.datetime(2026, 11, 25, 12, 0, 0, 250_000, tzinfo=UTC) if live else None
    common = dict(stream_id=stream_id, source=src, run_id=run_id)
    out = []
    for i in range(n):
        t = dict(t_start=t0 + i, t_end=t0 + i + 1.0,
                 wall_start=wall + dt.timedelta(seconds=i) if wall else None, **common)
        out.append(ActionRecord.make(**t, model="kinetics400/r2plus1d_18@1", label=f"class{i % 7}",
                                     score=0.5 + i % 5 / 10, top_k=[(f"class{i % 7}", 0.5), ("other", 0.125)]))
        out.append(EventRecord.make(**t, model="detectors/motion@1 (frame difference)", label="motion",
                                    modality="visual", score=1.0 / (i + 1)))
        out.append(SentimentRecord.make(**t, model="bundle/demo@1", label=("negative", "neutral", "positive")[i % 3],
                                        negative=0.2, neutral=0.3, positive=0.5, valence=-0.25, arousal=0.75))
        out.append(CaptionRecord.make(**t, model="captions/template@1", text=f"a person, clip {stream_id} ü {i}",
                                      method="template"))
    return out


def content(rec) -> tuple:
    """What must be equal between two runs (run_id and produced_at legitimately differ)."""
    d = json.loads(to_json(rec))
    d.pop("run_id"), d.pop("produced_at")
    return tuple(sorted((k, json.dumps(v)) for k, v in d.items()))


def test_fields_follow_the_contract():
    for kind in KINDS:
        schema = arrow_schema(kind)
        assert schema.names == v2_names(kind)
        assert schema.names[:len(COMMON) + len(KIND_FIELDS[kind])] == COMMON + KIND_FIELDS[kind]   # v1 prefix
        assert schema.field("wall_end").type == pa.timestamp("us", tz="UTC")
        assert all(schema.field(n).nullable for n in V2_COMMON + V2_KIND[kind])
        assert schema.field("t_start").type == pa.float64() and schema.field("t_end").type == pa.float64()
        assert schema.field("wall_start").type == pa.timestamp("us", tz="UTC")
        assert schema.field("wall_start").nullable
        assert schema.field("produced_at").type == pa.timestamp("us", tz="UTC")
        assert pa.types.is_integer(schema.field("schema_version").type)
    top_k = arrow_schema("action").field("top_k").type
    assert pa.types.is_list(top_k) and [f.name for f in top_k.value_type] == ["label", "score"]
    assert arrow_schema("action").field("track_id").type == pa.int64()
    assert arrow_schema("action").field("count").type == pa.int32()
    assert arrow_schema("event").field("count").type == pa.int32()
    assert arrow_schema("caption").field("score").type == pa.float64()
    streams = arrow_schema("streams")
    for name, typ in [("stream_id", pa.string()), ("status", pa.string()), ("t0_s", pa.float64()),
                      ("duration_s", pa.float64()), ("media_origin", pa.timestamp("us", tz="UTC")),
                      ("video_codec", pa.string()), ("width", pa.int32()), ("sample_rate_hz", pa.int32())]:
        assert streams.field(name).type == typ, name


def test_make_computes_deterministic_ids_and_masks_credentials():
    kw = dict(stream_id="cam1", source="rtsp://admin:hunter2@10.0.0.5/live?token=abc", t_start=4.0,
              t_end=8.0, model="m@1", run_id="r1", label="juggling", score=0.7)
    a, b = ActionRecord.make(**kw), ActionRecord.make(**{**kw, "run_id": "r2"})
    assert a.record_id == b.record_id == make_record_id("cam1", "action", 4.0, 8.0, "juggling")
    assert a.kind == "action" and a.schema_version == SCHEMA_VERSION == 2
    # v2: a record that was not cut from a longer run is its own episode; operator from the model name
    assert a.episode_id == a.record_id and a.operator == "m"
    assert "hunter2" not in a.source and "abc" not in a.source and a.source.startswith("rtsp://admin:***@")
    assert a.produced_at.tzinfo is not None
    assert (dt.datetime.now(UTC) - a.produced_at).total_seconds() < 60
    # times are rounded to 1 us for the id; every part of the key matters
    assert make_record_id("cam1", "action", 4.0000001, 8.0, "juggling") == a.record_id
    others = {make_record_id("cam2", "action", 4.0, 8.0, "juggling"),
              make_record_id("cam1", "event", 4.0, 8.0, "juggling"),
              make_record_id("cam1", "action", 4.001, 8.0, "juggling"),
              make_record_id("cam1", "action", 4.0, 8.5, "juggling"),
              make_record_id("cam1", "action", 4.0, 8.0, "dancing")}
    assert len(others) == 5 and a.record_id not in others
    assert make_record_id("s", "event", -0.0, 1.0, "x") == make_record_id("s", "event", 0.0, 1.0, "x")
    cam = EventRecord.make(stream_id="rtsp://u:pw@cam9/x", source="rtsp://u:pw@cam9/x", t_start=0, t_end=1,
                           model="m", run_id="r", label="gap", modality="visual", score=1.0)
    assert cam.stream_id == "rtsp://cam9/x" and "pw" not in cam.source


def test_json_is_utf8_with_iso_utc_times_and_round_trips():
    for live in (False, True):
        for rec in sample_records("cam/ü", 3, live=live):
            raw = to_json(rec)
            obj = json.loads(raw.decode("utf-8"))
            assert list(obj) == v2_names(rec.kind)
            assert dt.datetime.fromisoformat(obj["produced_at"]).utcoffset() == dt.timedelta(0)
            if live:
                assert obj["wall_start"].endswith("+00:00")
            else:
                assert obj["wall_start"] is None
            assert from_json(rec.kind, raw) == rec
    action = sample_records("c", 1)[0]
    assert json.loads(to_json(action))["top_k"] == [{"label": "class0", "score": 0.5},
                                                   {"label": "other", "score": 0.125}]
    with pytest.raises(ValueError, match="expected a 'event' record"):
        from_json("event", to_json(action))


def test_parquet_round_trip_keeps_every_value(tmp_path):
    records = sample_records("cam1", 5, live=True)
    for kind in KINDS:
        mine = [r for r in records if r.kind == kind]
        pq.write_table(to_arrow(mine), tmp_path / f"{kind}.parquet")
        table = pq.read_table(tmp_path / f"{kind}.parquet")
        assert table.schema.names == arrow_schema(kind).names
        assert from_arrow(table) == mine
    assert isinstance(from_arrow(to_arrow(records[:1]))[0].top_k[0], LabelScore)


def test_bad_records_fail_with_a_clear_reason():
    kw = dict(stream_id="cam1", source="a.mp4", t_start=2.0, t_end=1.0, model="m", run_id="r")
    with pytest.raises(ValueError, match="cam1: bad times"):
        EventRecord.make(**kw, label="x", modality="visual", score=1.0)
    kw["t_end"] = 3.0
    with pytest.raises(ValueError, match="modality must be one of"):
        EventRecord.make(**kw, label="x", modality="smell", score=1.0)
    with pytest.raises(ValueError, match="label must be one of"):
        SentimentRecord.make(**kw, label="happy", negative=0, neutral=0, positive=1, valence=0, arousal=0)
    with pytest.raises(ValueError, match=r"cam1 \[2.0, 3.0\): valence must be finite"):
        SentimentRecord.make(**kw, label="neutral", negative=0, neutral=1, positive=0,
                             valence=float("nan"), arousal=0)
    with pytest.raises(ValueError, match="top_k scores must be finite"):
        ActionRecord.make(**kw, label="x", score=0.5, top_k=[("x", float("inf"))])
    with pytest.raises(ValueError, match="must name its model"):
        CaptionRecord.make(**{**kw, "model": ""}, text="t", method="template")
    with pytest.raises(ValueError, match="wall_start must be timezone-aware"):
        CaptionRecord.make(**kw, wall_start=dt.datetime(2026, 1, 1), text="t", method="template")
    with pytest.raises(ValueError, match="several kinds"):
        to_arrow(sample_records("c", 1))
    with pytest.raises(ValueError, match="unknown record kind 'smell'"):
        arrow_schema("smell")
    with pytest.raises(ValueError, match="top_k\\[0\\] is 'y', label is 'x'"):
        ActionRecord.make(**kw, label="x", score=0.5, top_k=[("y", 0.6), ("x", 0.5)])
    with pytest.raises(ValueError, match="modality must be one of"):
        SentimentRecord.make(**kw, label="neutral", negative=0, neutral=1, positive=0, valence=0, arousal=0,
                             modality="smell")
    with pytest.raises(ValueError, match="wall_end .* is before wall_start"):
        CaptionRecord.make(**kw, wall_start=dt.datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC),
                           wall_end=dt.datetime(2026, 1, 1, tzinfo=UTC), text="t", method="template")
    with pytest.raises(ValueError, match="status must be ok, failed or skipped"):
        StreamRecord.make(stream_id="s", source="s", run_id="r", status="done")


def test_v2_fields_round_trip_and_v1_rows_read_with_defaults(tmp_path):
    kw = dict(stream_id="cam1", source="a.mp4", t_start=2.0, t_end=3.0, model="people:hog", run_id="r",
              wall_start=dt.datetime(2026, 1, 1, tzinfo=UTC), wall_end=dt.datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC))
    recs = [ActionRecord.make(**kw, label="walking", score=0.8, top_k=[("walking", 0.8)], subject="person",
                              track_id=2**40, count=3, operator="people"),
            EventRecord.make(**kw, label="person", modality="visual", score=0.7, count=6, detail="hog",
                             episode_id="e" * 32),
            SentimentRecord.make(**kw, label="positive", negative=0, neutral=0.2, positive=0.8, valence=0.6,
                                 arousal=0.1, modality="speech"),
            CaptionRecord.make(**kw, text="hello", method="asr", score=0.42)]
    for rec in recs:
        assert from_json(rec.kind, to_json(rec)) == rec
        assert from_arrow(to_arrow([rec])) == [rec]
    assert recs[0].track_id == 2**40 and recs[1].episode_id == "e" * 32 and recs[0].operator == "people"
    # a version-1 row (no v2 columns) reads as a v2 record with the defaults
    v1 = {k: v for k, v in json.loads(to_json(recs[1])).items() if k not in V2_COMMON + V2_KIND["event"]}
    v1["schema_version"] = 1
    old = from_json("event", json.dumps(v1))
    assert old.schema_version == 1 and old.episode_id == old.record_id and old.operator == "people"
    assert old.count is None and old.detail is None and old.wall_end is None
    # zero-row tables keep the schema (the file an empty kind's dataset holds)
    for kind in KINDS + ("streams",):
        assert empty_table(kind).num_rows == 0 and empty_table(kind).schema == arrow_schema(kind)
    row = StreamRecord.make(stream_id="rtsp://u:pw@cam/x", source="rtsp://u:pw@cam/x", run_id="r1", status="failed",
                            error="cannot open rtsp://u:pw@cam/x", width=1280, media_origin=kw["wall_start"])
    assert "pw" not in row.source + row.stream_id + row.error
    assert from_arrow(to_arrow([row])) == [row] and from_json("streams", to_json(row)) == row
