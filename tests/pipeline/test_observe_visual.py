"""From the visual operators to records: the offline analyzer (no Ray) plus the record builder on
footage with known content, and the zones option of the command line."""

from __future__ import annotations

import pyarrow.dataset as ds
import pytest

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.grid import GridConfig
from pipeline.records import RECORD_TYPES
from pipeline.runtime.analyzers import build_analyzer
from pipeline.runtime.builder import CellSpan, RecordBuilder
from pipeline.sources import open_source
from tests.realmedia import real_file
from tests.visual_media import Walk, make_walker_clip

GRID = GridConfig(detect_px=960)
WALK = Walk(xs=(0.25, 0.8, 0.25, 0.8), leg_s=3.5)            # the line at x=0.5: in twice, out once
ZONES = {"walk*": [{"name": "door", "polygon": [[0.6, 0.3], [0.95, 0.3], [0.95, 0.9], [0.6, 0.9]]},
                   {"name": "gate", "line": [[0.5, 0.0], [0.5, 1.0]]}]}
MEGAMIND_CUTS = (4.13, 6.46, 8.38)


def records(path, stream_id, zones=(), chunk=4):
    """Every record the offline profile makes of ``path`` (as dicts), through analyzer and builder."""
    an = build_analyzer(profile="offline", grid=GRID, zones=zones)
    with open_source(str(path), GRID, name=stream_id) as src:
        cells = list(src)
    builder, state, drafts = RecordBuilder(stream_id, max_cells=10), None, []
    for k in range(0, len(cells), chunk):
        ch = cells[k:k + chunk]
        obs, state = an(ch, state)
        for c, o in zip(ch, obs):
            drafts += builder.add(CellSpan(c.index, c.t_start, c.t_end, c.segment), o)
    drafts += builder.finish()
    out = []
    for d in drafts:
        rec = RECORD_TYPES[d.kind].make(stream_id=stream_id, source=str(path), run_id="r", **d.record_kwargs())
        out.append(rec)
    return out


@pytest.fixture(scope="module")
def walk_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("walk") / "walk.mp4"
    make_walker_clip(path, WALK)
    return path


def test_people_zones_and_lines_become_records(walk_clip):
    zones = load_config(None, {"zones": _yaml(walk_clip.parent / "z.yaml", ZONES)}).operators.zones
    recs = records(walk_clip, "walk-1", zones)
    events = [r for r in recs if r.kind == "event"]
    crossings = [r for r in events if r.label == "line_crossing"]
    assert sum(r.count for r in crossings if r.detail == "gate:in") == 2
    assert sum(r.count for r in crossings if r.detail == "gate:out") == 1
    assert all(r.operator == "zones" and r.modality == "visual" and r.t_end - r.t_start == 1.0 for r in crossings)
    door = [r for r in events if r.label == "zone_occupancy"]
    assert door and {r.detail for r in door} == {"door"} and max(r.count for r in door) == 1
    # he is inside the door zone on his two walks to the right: 2 stretches, each 2-4 s
    assert len(door) == 2 and all(2.0 <= r.t_end - r.t_start <= 4.0 for r in door), [(r.t_start, r.t_end) for r in door]
    people = [r for r in events if r.label == "person"]
    assert people and all(r.count == 1 and r.operator == "people" and 0 < r.score <= 1 for r in people)
    assert people[0].t_start == 2.0                               # he walks in 2 s after the start
    actions = [r for r in recs if r.kind == "action" and r.subject == "person"]
    walking = [r for r in actions if r.label == "walking" and r.track_id is not None]
    assert walking and all(r.top_k[0].label == "walking" and r.count == 1 for r in walking)
    group = [r for r in actions if r.track_id is None]
    assert group and all(r.count == 1 for r in group)            # one person walks at a time
    camera = [r for r in recs if r.kind == "action" and r.subject == "camera"]
    assert {r.label for r in camera} == {"static"}
    assert len({r.record_id for r in recs}) == len(recs)


def test_entering_and_leaving_are_actions_of_the_track(tmp_path):
    walk = make_walker_clip(tmp_path / "across.mp4", Walk(xs=(0.02, 0.5, 0.98), leg_s=4.0, start_s=2.0, gone_s=4.0))
    recs = [r for r in records(tmp_path / "across.mp4", "across") if r.kind == "action" and r.subject == "person"]
    came = [r for r in recs if r.label == "entering"]
    went = [r for r in recs if r.label == "leaving"]
    assert len(came) == 1 and len(went) == 1 and came[0].track_id == went[0].track_id is not None
    assert came[0].t_start == 2.0 and came[0].t_end == 3.0                   # the cell he came in
    assert went[0].t_start <= walk.end_s <= went[0].t_end + 1.0               # the cell he was last seen in
    assert {r.track_id for r in recs if r.track_id is not None} == {came[0].track_id}


def test_a_stream_without_zones_gets_none(walk_clip):
    zones = load_config(None, {"zones": _yaml(walk_clip.parent / "z2.yaml", ZONES)}).operators.zones
    recs = records(walk_clip, "street-2", zones)                 # "walk*" does not match this stream
    assert not [r for r in recs if r.kind == "event" and r.label in ("line_crossing", "zone_occupancy")]
    assert [r for r in recs if r.kind == "event" and r.label == "person"]


def test_cut_records_span_the_change():
    recs = records(real_file("megamind"), "megamind")
    cuts = [r for r in recs if r.kind == "event" and r.label == "cut"]
    assert len(cuts) == 3, [(r.t_start, r.t_end) for r in cuts]
    for r, truth in zip(cuts, MEGAMIND_CUTS):
        # from the last sampled frame before the cut to the first after it (their real frame times)
        assert r.t_start < truth <= r.t_end + 0.01 and r.t_end - r.t_start < 0.35 and r.detail is None
    # the faces in the trailer are counted
    faces = [r for r in recs if r.kind == "event" and r.label == "face"]
    assert faces and all(r.count >= 1 for r in faces)


def _yaml(path, zones):
    import yaml

    path.write_text(yaml.safe_dump(zones))
    return str(path)


def test_a_zone_outside_the_frame_is_a_usage_error(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("zones:\n  'cam*':\n    - {name: door, polygon: [[0.6, 0.2], [1.4, 0.2], [0.95, 0.9]]}\n")
    assert main(["annotate", str(tmp_path), "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "door" in err and "outside the frame" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    bad = tmp_path / "z.yaml"
    bad.write_text("cam1:\n  - {name: gate, line: [[0.1, 0.1]]}\n")
    assert main(["annotate", str(tmp_path), "--zones", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "gate" in capsys.readouterr().err


def test_annotate_with_zones_from_the_command_line(walk_clip, tmp_path, ray_local):
    zones = _yaml(tmp_path / "zones.yaml", ZONES)
    out = tmp_path / "out"
    assert main(["annotate", f"{walk_clip}", "--zones", zones, "--out", str(out), "--no-progress"]) == 0
    events = ds.dataset(str(out / "event"), partitioning="hive").to_table().to_pylist()
    crossing = {e["detail"]: 0 for e in events if e["label"] == "line_crossing"}
    for e in events:
        if e["label"] == "line_crossing":
            crossing[e["detail"]] += e["count"]
    assert crossing == {"gate:in": 2, "gate:out": 1}
    actions = ds.dataset(str(out / "action"), partitioning="hive").to_table().to_pylist()
    assert {a["subject"] for a in actions} == {"person", "camera"}
    assert any(a["track_id"] is not None and a["label"] == "walking" for a in actions)


def test_zones_need_the_people_detector(tmp_path, capsys):
    zones = _yaml(tmp_path / "zones.yaml", ZONES)
    assert main(["annotate", str(tmp_path), "--zones", zones, "--detect-px", "0"]) == 2
    assert "zones" in capsys.readouterr().err

