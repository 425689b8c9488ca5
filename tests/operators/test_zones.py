"""Zones and lines on footage with known geometry: a real pedestrian walked across the empty street
(tests/visual_media.py), so where his feet are at every instant is known."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from operators.detectors.zones import Zone
from operators.registry import build
from pipeline.grid import GridConfig
from pipeline.sources import open_source
from tests.operators.test_people import run_people
from tests.visual_media import Walk, make_walker_clip

GRID = GridConfig(detect_px=960)
# he walks from x=0.25 to 0.8, back to 0.25 and to 0.8 again: the line at x=0.5 (drawn top to
# bottom) is crossed left-to-right twice ("in") and right-to-left once ("out")
WALK = Walk(xs=(0.25, 0.8, 0.25, 0.8), leg_s=3.5)
DOOR = Zone("door", "polygon", ((0.6, 0.3), (0.95, 0.3), (0.95, 0.9), (0.6, 0.9)))
GATE = Zone("gate", "line", ((0.5, 0.0), (0.5, 1.0)))


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    path = tmp_path_factory.mktemp("walk") / "walk.mp4"
    make_walker_clip(path, WALK)
    with open_source(str(path), GRID) as src:
        cells = list(src)
    return cells, run_people(cells)


def count_zones(people, zones, chunk=4):
    zc, state, occ, crossed = build("zones"), None, [], []
    for k in range(0, len(people), chunk):
        res, state = zc(tuple(b for _, b, _ in people[k:k + chunk]), zones, state)
        state = pickle.loads(pickle.dumps(state))
        occ += res.occupancy
        crossed += res.crossings
    return occ, crossed


def crossing_times(walk, x=0.5, step=0.01):
    """(time, +1 left-to-right / -1 right-to-left) of each time the feet pass ``x``."""
    out, t, prev = [], 0.0, None
    while t < walk.duration_s:
        at = walk.feet_at(t)
        if at is not None and prev is not None and (prev[0] - x) * (at[0] - x) < 0:
            out.append((t, 1 if at[0] > prev[0] else -1))
        prev, t = at, t + step
    return out


@pytest.mark.parametrize("chunk", [4, 1])
def test_a_line_crossed_twice_one_way_and_once_back(walked, chunk):
    cells, people = walked
    _, crossed = count_zones(people, (GATE,), chunk)
    n_in = sum(c.get("gate", (0, 0))[0] for c in crossed)
    n_out = sum(c.get("gate", (0, 0))[1] for c in crossed)
    assert (n_in, n_out) == (2, 1)
    # each in the cell where (or right after) his feet passed the line
    truth = crossing_times(WALK)
    seen = [(k, +1 if c["gate"][0] else -1) for k, c in enumerate(crossed) if "gate" in c]
    assert [d for _, d in seen] == [d for _, d in truth]
    assert all(0 <= cells[k].t_start - np.floor(t) <= 1 for (k, _), (t, _) in zip(seen, truth))


def test_zone_occupancy_follows_the_person(walked):
    cells, people = walked
    occ, _ = count_zones(people, (DOOR, GATE))
    inside = []
    for c in cells:
        at = [WALK.feet_at(t) for t in c.frame_times if np.isfinite(t)]
        inside.append(any(a is not None and 0.6 <= a[0] <= 0.95 for a in at))
    said = [o["door"] > 0 for o in occ]
    assert max(o["door"] for o in occ) == 1                      # one person, never two
    agree = np.mean(np.array(said) == np.array(inside))
    assert agree >= 0.85, list(zip(said, inside))
    # the cells with him inside for the whole cell are all seen
    whole = [k for k, c in enumerate(cells)
             if all(WALK.feet_at(t) is not None and 0.62 <= WALK.feet_at(t)[0] <= 0.93 for t in c.frame_times)]
    assert whole and all(said[k] for k in whole)


def test_one_walk_one_track(walked):
    _, people = walked
    # every leg (3.5 s, straight) is one track; he may get a new id where he turns round
    for t0, t1 in ((2.6, 5.9), (10.6, 13.9)):
        ids = {p.track_id for k, (tracks, _, _) in enumerate(people) if t0 <= k <= t1 for p in tracks}
        assert len(ids) == 1, (t0, t1, ids)
    assert all(p.action in (None, "walking") for tracks, _, _ in people for p in tracks)


def test_zones_must_be_inside_the_frame():
    with pytest.raises(ValueError, match="door.*outside the frame"):
        Zone("door", "polygon", ((0.1, 0.1), (1.2, 0.1), (0.5, 0.5)))
    with pytest.raises(ValueError, match="gate.*2 points"):
        Zone("gate", "line", ((0.1, 0.1), (0.2, 0.2), (0.3, 0.3)))
