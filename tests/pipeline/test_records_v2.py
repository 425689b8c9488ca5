"""Records v2 end to end: episodes, archive wall times, the streams dataset, v1 and v2 files read together."""

from __future__ import annotations

import datetime as dt
import os
import subprocess

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.inspect import inspect_dir
from pipeline.records import KINDS, V2_FIELDS, arrow_schema, make_record_id
from pipeline.runtime.builder import CellSpan, Observation, RecordBuilder
from tests.datasets import read_kind as read
from tests.media import MediaSpec, make_media

UTC = dt.timezone.utc
ORIGIN = dt.datetime(2026, 11, 30, 8, 0, 0, tzinfo=UTC)
MOTION = Observation("event", "motion", 0.5, "motion:frame-difference", modality="visual", operator="motion")


def test_pieces_of_one_long_run_share_the_episode_of_the_first():
    b = RecordBuilder("cam1", max_cells=3)
    out = []
    for k in range(8):                          # 8 cells of motion, a pause, then motion again
        out += b.add(CellSpan(k, float(k), k + 1.0), [MOTION])
    out += b.add(CellSpan(8, 8.0, 9.0), [])
    out += b.add(CellSpan(9, 9.0, 10.0), [MOTION]) + b.finish()
    spans = [(d.t_start, d.t_end) for d in out]
    assert spans == [(0, 3), (3, 6), (6, 8), (9, 10)]
    first = make_record_id("cam1", "event", 0.0, 3.0, "motion")
    assert [d.episode_id for d in out[:3]] == ["", first, first]      # "" = its own id (the first piece)
    assert out[3].episode_id == ""                                    # after a pause: a new episode
    assert {d.operator for d in out} == {"motion"}


def test_span_observations_keep_their_own_times_and_wall_clock():
    wall = dt.datetime(2026, 1, 1, 12, tzinfo=UTC)
    b = RecordBuilder("cam1")
    said = Observation("caption", "hello there", 0.8, "asr:pocketsphinx", method="asr", span=(3.25, 5.5),
                       operator="asr")
    (d,) = b.add(CellSpan(5, 5.0, 6.0, wall_start=wall), [said])
    assert (d.t_start, d.t_end, d.fields["text"], d.fields["score"]) == (3.25, 5.5, "hello there", 0.8)
    assert d.wall_start == wall - dt.timedelta(seconds=1.75) and d.wall_end == wall + dt.timedelta(seconds=0.5)


@pytest.fixture(scope="module")
def clip_with_creation_time(tmp_path_factory):
    d = tmp_path_factory.mktemp("v2")
    make_media(d / "plain.mp4", MediaSpec(duration_s=4.0, flashes=(1.0,), clicks=(2.0,)))
    tagged = d / "tagged.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(d / "plain.mp4"), "-c", "copy", "-metadata",
                    f"creation_time={ORIGIN.strftime('%Y-%m-%dT%H:%M:%S.000000Z')}", str(tagged)], check=True)
    return d, tagged


def _wall_ok(rows, origin):
    for r in rows:
        assert r["wall_start"] == origin + dt.timedelta(seconds=r["t_start"]), r
        assert r["wall_end"] == origin + dt.timedelta(seconds=r["t_end"]), r


def test_a_file_with_creation_time_gets_wall_times_and_the_flag_wins(clip_with_creation_time, ray_local, tmp_path):
    d, tagged = clip_with_creation_time
    out = tmp_path / "a"
    assert main(["annotate", str(tagged), "--out", str(out), "--no-progress"]) == 0
    rows = [r for k in KINDS for r in read(out, k)]
    assert rows and all(r["wall_start"] is not None for r in rows)
    _wall_ok(rows, ORIGIN)
    (stream,) = read(out, "streams")
    assert stream["media_origin"] == ORIGIN and stream["media_origin_from"] == "creation_time"
    assert stream["status"] == "ok" and stream["t0_s"] == 0.0 and stream["audio_codec"] == "aac"

    given = dt.datetime(2025, 6, 1, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    out2 = tmp_path / "b"
    assert main(["annotate", str(tagged), "--out", str(out2), "--no-progress",
                 "--media-origin", given.isoformat()]) == 0
    _wall_ok([r for k in KINDS for r in read(out2, k)], given.astimezone(UTC))
    (stream,) = read(out2, "streams")
    assert stream["media_origin_from"] == "user"

    # without either: archive records have no wall clock
    out3 = tmp_path / "c"
    assert main(["annotate", str(d / "plain.mp4"), "--out", str(out3), "--no-progress"]) == 0
    assert all(r["wall_start"] is None and r["wall_end"] is None for k in KINDS for r in read(out3, k))


def test_media_origin_per_glob_in_yaml_and_a_time_without_zone_is_refused(clip_with_creation_time, ray_local,
                                                                         tmp_path, capsys):
    d, _ = clip_with_creation_time
    cfg = tmp_path / "avgrid.yaml"
    cfg.write_text(f"media_origin:\n  '{d}/pl*.mp4': 2026-11-29T23:00:00-01:00\n")
    out = tmp_path / "o"
    assert main(["annotate", str(d / "plain.mp4"), "--out", str(out), "--no-progress", "--config", str(cfg)]) == 0
    _wall_ok([r for k in KINDS for r in read(out, k)], dt.datetime(2026, 11, 30, 0, tzinfo=UTC))
    capsys.readouterr()
    assert main(["annotate", str(d / "plain.mp4"), "--out", str(tmp_path / "x"), "--media-origin",
                 "2026-11-30T08:00:00"]) == 2
    err = capsys.readouterr().err
    assert "has no time zone" in err and "Z for UTC" in err


def _as_v1(table: pa.Table, kind: str) -> pa.Table:
    """A table as the version-1 code wrote it: no v2 columns, schema_version 1, v1 metadata."""
    v2 = set(V2_FIELDS["common"]) | set(V2_FIELDS[kind])
    t = table.drop_columns([c for c in table.column_names if c in v2])
    t = t.set_column(t.schema.get_field_index("schema_version"), "schema_version",
                     pa.array([1] * len(t), pa.int32()))
    return t.replace_schema_metadata({"avgrid.schema_version": "1"})


def test_v1_files_and_a_v2_run_read_together(clip_with_creation_time, ray_local, tmp_path, capsys):
    _, tagged = clip_with_creation_time
    out = tmp_path / "mixed"
    assert main(["annotate", str(tagged), "--out", str(out), "--no-progress"]) == 0
    # the same records as a v1 dataset of an earlier input would hold them, next to the v2 files
    for kind in ("event", "caption"):
        files = [f for f in ds.dataset(out / kind, format="parquet").files if "part-empty" not in f]
        v1 = _as_v1(pq.read_table(files[0]), kind)
        v1 = v1.set_column(v1.schema.get_field_index("stream_id"), "stream_id",
                           pa.array(["old-v1-clip"] * len(v1), pa.string()))
        pq.write_table(v1, out / kind / "part-0123456789abcdef-oldrun-000001.parquet")
        got = duckdb.sql(f"SELECT schema_version, count(*) AS n, count(operator) AS with_operator "
                         f"FROM read_parquet('{out}/{kind}/**/*.parquet', hive_partitioning=true, "
                         f"union_by_name=true) GROUP BY 1 ORDER BY 1").fetchall()
        assert [v for v, _, _ in got] == [1, 2] and got[0][1] == len(v1)
        assert got[0][2] == 0 and got[1][2] == got[1][1]     # v1 rows have no operator; every v2 row does
        table = ds.dataset(out / kind, schema=arrow_schema(kind), format="parquet", partitioning="hive").to_table()
        assert sorted(set(table.column("schema_version").to_pylist())) == [1, 2]
    rep = inspect_dir(out)
    assert rep["event"]["schema_versions"] == [1, 2] and rep["caption"]["schema_versions"] == [1, 2]
    assert rep["sentiment"]["records"] == 0 and os.path.isfile(out / "sentiment" / "part-empty.parquet")
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "schema version 1, 2" in text and "old-v1-clip" in text
