"""`avgrid report`: one self-contained HTML timeline, checked in Debian's headless Chromium by its pixels.

The truth each check compares with is read from the dataset here (pyarrow), not from the page: every
record must show as a bar in its lane and row at its times, and nothing where there is none.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

from pipeline.cli import main
from pipeline.records import KINDS, CaptionRecord, EventRecord, SentimentRecord, StreamRecord
from tests.browser import Browser, have_chromium
from tests.media import MediaSpec, make_media
from tests.realmedia import real_file

pytestmark = pytest.mark.skipif(not have_chromium(), reason="needs /usr/bin/chromium (make sysdeps)")
UTC = dt.timezone.utc
ROW_KEY = {"event": "label", "action": "label", "caption": "method", "sentiment": "modality"}


def _open(browser: Browser, html: Path) -> dict:
    browser.open(html.resolve().as_uri())
    browser.wait_for("window.__avgrid && window.__avgrid.ready", timeout_s=60)
    return browser.evaluate("""(() => window.__avgrid.layout.map((l) => {
        const r = document.getElementById(l.canvas).getBoundingClientRect();
        return Object.assign({}, l, {left: r.left + window.scrollX, top: r.top + window.scrollY, width: r.width});
    }))()""")


def _no_network(browser: Browser, html: Path) -> None:
    assert browser.errors == []
    others = [u for u in browser.requests if u != html.resolve().as_uri() and not u.startswith("data:")]
    assert others == [], "the report must not fetch anything"


def _x(lay: dict, t: float) -> float:
    return lay["left"] + lay["x0"] + (t - lay["v0"]) / (lay["v1"] - lay["v0"]) * (lay["x1"] - lay["x0"])


def _inked(img: np.ndarray, lay: dict, x: float, y0: float, y1: float) -> bool:
    """Most pixels of a 3 px wide column inside [y0, y1) of the canvas are not the pale background."""
    top, bottom = int(lay["top"] + y0 + 3), int(lay["top"] + y1 - 3)
    patch = img[top:bottom, int(x) - 1:int(x) + 2].reshape(-1, 3)
    return bool((patch.min(axis=1) < 215).mean() > 0.5)


def _union(spans):
    out = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def _check_lanes(img, lay: dict, out: Path, stream_id: str) -> int:
    """Every row of every lane: inked where the dataset has a record, blank where it has none."""
    checked = 0
    for lane in lay["lanes"]:
        kind = lane["kind"]
        rows = ds.dataset(out / kind, partitioning="hive").to_table().to_pylist()
        rows = [r for r in rows if r["stream_id"] == stream_id]
        by_row: dict[str, list] = {}
        for r in rows:
            by_row.setdefault(r[ROW_KEY[kind]], []).append((r["t_start"], r["t_end"]))
        if not rows:
            (row,) = lane["rows"]
            assert row["label"] is None
        for row in lane["rows"]:
            if row["label"] is None:          # the "no records" row of an empty lane: nothing drawn
                xs = np.linspace(lay["left"] + lay["x0"] + 2, lay["left"] + lay["x1"] - 2, 80)
                assert not any(_inked(img, lay, x, row["y0"], row["y1"]) for x in xs), kind
                continue
            if row["label"] in by_row:
                spans = _union(by_row[row["label"]])
            else:                             # "other (N labels)": every label without a row of its own
                named = {r["label"] for r in lane["rows"]}
                assert row["label"].startswith("other (")
                spans = _union([s for k, v in by_row.items() if k not in named for s in v])
            px_s = (lay["v1"] - lay["v0"]) / (lay["x1"] - lay["x0"])
            for t in np.linspace(lay["v0"], lay["v1"], 120)[1:-1]:
                near_edge = any(abs(t - e) < 4 * px_s for s in spans for e in s)
                if near_edge:
                    continue
                covered = any(a <= t < b for a, b in spans)
                assert _inked(img, lay, _x(lay, t), row["y0"], row["y1"]) == covered, (kind, row["label"], t)
                checked += 1
    return checked


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, ray_local):
    """The offline profile on real footage: Megamind.avi (11.3 s animated dialogue with sound)."""
    out = tmp_path_factory.mktemp("report") / "out"
    clip = real_file("megamind")
    assert main(["annotate", str(clip), "--out", str(out), "--no-progress"]) == 0
    return out, str(clip)


def test_report_of_a_real_run_shows_every_record_where_it_is(real_run, tmp_path, capsys):
    out, clip = real_run
    html = tmp_path / "report.html"
    capsys.readouterr()
    assert main(["report", str(out), "--out", str(html)]) == 0
    assert str(html) in capsys.readouterr().out
    counts = {k: ds.dataset(out / k, partitioning="hive").count_rows() for k in KINDS}
    # the trailer's dialogue: transcripts and their sentiment too, so every lane has records here (the
    # blank lane of a kind with none is checked on the hand-made dataset below)
    assert all(counts[k] > 0 for k in KINDS), counts
    with Browser(width=1400, height=900) as b:
        (lay,) = _open(b, html)
        img = b.screenshot()
        drawn = b.evaluate("window.__avgrid.streams[0].drawnThumbs.length")
        _no_network(b, html)
    assert lay["id"] == clip
    assert [ln["kind"] for ln in lay["lanes"]] == list(KINDS)
    assert _check_lanes(img, lay, out, clip) > 300
    # thumbnails: real frames, side by side across the strip (an animated film: many colours)
    assert drawn >= 8
    y0, y1 = int(lay["top"] + lay["thumbs"][0]), int(lay["top"] + lay["thumbs"][1])
    strip = img[y0:y1, int(lay["left"] + lay["x0"]):int(lay["left"] + lay["x1"])]
    assert strip.std() > 30 and len(np.unique(strip.reshape(-1, 3) // 32, axis=0)) > 40
    # the audio curve: drawn while there is sound (the film has 11.3 s), not after
    a0, a1 = lay["audio"]
    assert _inked(img, lay, _x(lay, 5.0), a1 - 8, a1 + 3)
    assert not _inked(img, lay, _x(lay, 11.8), a0, a1)


ORIGIN = dt.datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def _person(sid, src, t0, t1, n):
    return EventRecord.make(stream_id=sid, source=src, t_start=t0, t_end=t1, model="people:hog+bytetrack",
                            run_id="r1", label="person", modality="visual", score=0.8, count=n, operator="people",
                            wall_start=ORIGIN + dt.timedelta(seconds=t0), wall_end=ORIGIN + dt.timedelta(seconds=t1))


def test_people_transcript_hover_and_one_stream(tmp_path):
    """Records shaped like the perception operators' (person counts, asr captions, speech sentiment)."""
    from pipeline.sinks import ParquetSink

    clip = tmp_path / "street.mp4"
    make_media(clip, MediaSpec(duration_s=20.0, flashes=(3.0,), clicks=(3.0,)))
    src, other = str(clip), "cam2"
    sneaky = "</script><img src=x onerror=alert(1)> said <b>hi</b>"
    recs = [_person(src, src, 0.0, 4.0, 2), _person(src, src, 4.0, 8.0, 5), _person(src, src, 10.0, 14.0, 1),
            CaptionRecord.make(stream_id=src, source=src, t_start=2.5, t_end=4.0, model="asr:pocketsphinx",
                               run_id="r1", text="the bus is late", method="asr", score=0.7, operator="asr"),
            CaptionRecord.make(stream_id=src, source=src, t_start=12.0, t_end=13.5, model="asr:pocketsphinx",
                               run_id="r1", text=sneaky, method="asr", score=0.4, operator="asr"),
            SentimentRecord.make(stream_id=src, source=src, t_start=2.5, t_end=4.0, model="text_sentiment:vader",
                                 run_id="r1", label="negative", negative=0.7, neutral=0.3, positive=0.0,
                                 valence=-0.5, arousal=0.2, modality="speech", operator="text_sentiment"),
            _person(other, "rtsp://cam2/live", 0.0, 30.0, 3)]
    sink = ParquetSink.open(tmp_path / "out", run_id="r1")
    sink.write(recs)
    sink.write([StreamRecord.make(stream_id=src, source=src, run_id="r1", status="ok", t0_s=0.0, duration_s=20.0,
                                  media_origin=ORIGIN, media_origin_from="user", video_codec="h264", width=320,
                                  height=240, fps=25.0, audio_codec="aac", sample_rate_hz=44100, channels=1)])
    sink.close()
    html = tmp_path / "one.html"
    assert main(["report", str(tmp_path / "out"), "--out", str(html), "--stream", src]) == 0
    with Browser(width=1200, height=800) as b:
        (lay,) = _open(b, html)                       # --stream: only that one, not cam2
        img = b.screenshot()
        _no_network(b, html)
        # no actions in this dataset: that lane is one blank "no records" row; the others ink their records
        assert not ds.dataset(tmp_path / "out" / "action", partitioning="hive").count_rows()
        assert _check_lanes(img, lay, tmp_path / "out", src) > 50
        p0, p1 = lay["people"]
        heights = {}
        for t in (2.0, 6.0, 9.0, 12.0):
            col = img[int(lay["top"] + p0):int(lay["top"] + p1), int(_x(lay, t))]
            heights[t] = int((col.min(axis=1) < 215).sum())
        assert heights[9.0] == 0 and heights[6.0] > heights[2.0] > heights[12.0] > 0
        assert heights[2.0] / heights[6.0] == pytest.approx(2 / 5, abs=0.08)
        lines = b.evaluate("[...document.querySelectorAll('.transcript li')].map((li) => li.textContent)")
        assert lines == ["0:02.5the bus is late0.70", f"0:12{sneaky}0.40"]    # the markup stays text
        assert b.evaluate("document.querySelectorAll('.transcript img, .transcript b').length") == 0
        # hover the 5-people bar: the tooltip shows that record
        ev = next(ln for ln in lay["lanes"] if ln["kind"] == "event")
        (row,) = [r for r in ev["rows"] if r["label"] == "person"]
        y = lay["top"] + (row["y0"] + row["y1"]) / 2 - b.evaluate("window.scrollY")
        b.call("Input.dispatchMouseEvent", type="mouseMoved", x=_x(lay, 6.0), y=y)
        tip = b.wait_for("!document.getElementById('tip').hidden && document.getElementById('tip').innerText")
        assert recs[1].record_id in tip and "count5" in tip.replace(" ", "").replace("\n", "")
        assert "people:hog+bytetrack" in tip and "08:00:04" in tip
        assert b.errors == []
    with Browser(width=1200, height=800) as b:
        both = tmp_path / "both.html"
        assert main(["report", str(tmp_path / "out"), "--out", str(both), "--no-media"]) == 0
        lays = _open(b, both)
        assert sorted(x["id"] for x in lays) == sorted([src, other])
        assert b.errors == []


def test_two_hour_report_stays_small_and_draws(tmp_path):
    from benchmarks.report import make_long_dataset, make_long_media

    media = make_long_media(tmp_path / "long.mp4", 7200.0)
    counts = make_long_dataset(tmp_path / "out", media, 7200.0)
    assert counts["event"] > 2000                     # more than a lane keeps raw: aggregated
    html = tmp_path / "long.html"
    assert main(["report", str(tmp_path / "out"), "--out", str(html)]) == 0
    size = html.stat().st_size
    assert size < 5_000_000, f"{size / 1e6:.2f} MB"
    data = json.loads(html.read_text().split('id="avgrid-data">', 1)[1].split("</script>", 1)[0])
    (st,) = data["streams"]
    lanes = {ln["kind"]: ln for ln in st["lanes"]}
    assert "bins" in lanes["event"] and "records" in lanes["caption"]
    assert 8 <= len(st["thumbs"]) <= 48 and len(st["audio"]["db"]) == 1200
    with Browser(width=1400, height=900) as b:
        (lay,) = _open(b, html)
        img = b.screenshot()
        _no_network(b, html)
    ev = next(ln for ln in lay["lanes"] if ln["kind"] == "event")
    labels = [r["label"] for r in ev["rows"]]
    assert labels[0] == "gap" and "person" in labels and labels[-1].startswith("other (")
    (person,) = [r for r in ev["rows"] if r["label"] == "person"]
    xs = np.linspace(lay["left"] + lay["x0"] + 2, lay["left"] + lay["x1"] - 2, 200)
    assert np.mean([_inked(img, lay, x, person["y0"], person["y1"]) for x in xs]) > 0.5


def test_a_dataset_with_version_1_files_reports_both(real_run, tmp_path):
    """v1 files (no operator, episode, count, ...) next to the v2 run: every record is drawn, none lost."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.records import V2_FIELDS

    out, clip = real_run
    mixed = tmp_path / "mixed"
    shutil.copytree(out, mixed)
    v2 = pq.read_table([f for f in ds.dataset(mixed / "event").files if "part-empty" not in f][0])
    v1 = v2.drop_columns([c for c in v2.column_names if c in V2_FIELDS["common"] + V2_FIELDS["event"]])
    v1 = v1.set_column(v1.schema.get_field_index("schema_version"), "schema_version", pa.array([1] * len(v1),
                                                                                                pa.int32()))
    v1 = v1.set_column(v1.schema.get_field_index("stream_id"), "stream_id", pa.array(["old-v1"] * len(v1)))
    pq.write_table(v1, mixed / "event" / "part-0123456789abcdef-oldrun-000001.parquet")
    html = tmp_path / "mixed.html"
    assert main(["report", str(mixed), "--out", str(html), "--no-media"]) == 0
    with Browser(width=1200, height=800) as b:
        lays = {x["id"]: x for x in _open(b, html)}
        _no_network(b, html)
        counts = b.evaluate("window.__avgrid.streams.map((s) => [s.id, s.st.counts.event])")
    assert set(lays) == {clip, "old-v1"}
    assert dict(counts) == {clip: v2.num_rows, "old-v1": v1.num_rows}


def test_report_usage_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "not a directory" in err[0] and "no avgrid dataset here" in err[1]


def test_dense_people_counts_keep_the_most_per_bin():
    from pipeline.report import build

    events = [{"label": "person", "t_start": float(k), "t_end": k + 1.0, "count": 1 + k % 4} for k in range(7200)]
    events[3601]["count"] = 9                        # one busy second in the middle
    steps = build._people(events, 0.0, 7200.0)
    assert len(steps) == build.AGG_BINS
    assert max(n for _, _, n in steps) == 9
    (busy,) = [s for s in steps if s[2] == 9]
    assert busy[0] <= 3601.0 < busy[1]
    assert build._people(events[:10], 0.0, 7200.0) == [[float(k), k + 1.0, 1 + k % 4] for k in range(10)]
