"""People on real footage: counts against frames counted by eye, what they do, and their tracks.

The street is opencv-doc's vtest.avi (80 s, 768x576, a fixed camera over a campus path). The
truths below were counted by looking at the frames (``ffmpeg -ss T -i vtest.avi -frames:v 1``).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from operators.registry import build
from pipeline.grid import GridConfig
from pipeline.sources import open_source
from tests.realmedia import real_file
from tests.visual_media import Walk, make_walker_clip

GRID = GridConfig(detect_px=960)                     # the offline profile's grid: detection view at slot 2
# people in view at T + 0.6 s, the detection frame of the cell starting at T (counted by eye; the
# far-away walker at the top left of 12.6 s, ~35 px tall, included)
STREET_COUNTS = {5: 6, 12: 8, 20: 7, 30: 6, 40: 2, 60: 7}
# a man walks to the edge of the path at 38-39 s and stands there on the phone from 40 s to 43 s,
# his feet at about (305, 252) px of 768x576
PHONE_CALL = {"walking": (38,), "standing": (41, 42), "feet": (305 / 768, 252 / 576)}


def run_people(cells, chunk=4, det=None, roundtrip=True):
    """The people operator over ``cells`` in calls of ``chunk`` cells, the state pickled in between
    (as it travels between operator actors); one (PersonInCell tuple, boxes, count) per cell."""
    det = det or build("people")
    state, out = None, []
    for k in range(0, len(cells), chunk):
        ch = cells[k:k + chunk]
        res, state = det(np.stack([c.frames for c in ch]), np.stack([c.frame_mask for c in ch]), state=state,
                         detect_frames=np.stack([c.detect_frames for c in ch]),
                         detect_mask=np.stack([c.detect_mask for c in ch]), detect_slots=GRID.detect_slots,
                         frame_times=np.stack([c.frame_times for c in ch]))
        if roundtrip:
            state = pickle.loads(pickle.dumps(state))
        out += [(res.tracks[i], res.boxes[i], int(res.extras["count"][i])) for i in range(len(ch))]
    return out


@pytest.fixture(scope="module")
def street_cells():
    with open_source(str(real_file("vtest")), GRID) as src:
        return list(src)


@pytest.fixture(scope="module")
def street(street_cells):
    return run_people(street_cells)


def test_people_counted_on_the_street(street):
    counts = {t: street[t][2] for t in STREET_COUNTS}
    close = [t for t, n in STREET_COUNTS.items() if abs(counts[t] - n) <= 2]
    assert len(close) >= 5, (counts, STREET_COUNTS)


def test_walking_covers_most_of_the_street(street):
    # someone walks along the path in every second of the clip (checked by eye every 10 s or so)
    walking = [any(p.action == "walking" for p in tracks) for tracks, _, _ in street]
    assert np.mean(walking) >= 0.8, np.flatnonzero(~np.array(walking))
    assert not any(p.action == "running" for tracks, _, _ in street for p in tracks)   # nobody runs


def _at(tracks, xy):
    """The person whose box holds the point ``xy`` (relative), or None."""
    for p in tracks:
        x0, y0, x1, y1 = p.box
        if x0 <= xy[0] <= x1 and y0 <= xy[1] <= y1 + 0.03:
            return p
    return None


def test_a_man_stops_to_phone_and_keeps_his_track(street):
    x, y = PHONE_CALL["feet"]
    standing = [_at(street[t][0], (x, y - 0.05)) for t in PHONE_CALL["standing"]]
    assert all(p is not None and p.action == "standing" for p in standing), standing
    assert len({p.track_id for p in standing}) == 1                 # one person, one id while he stands


def test_tracks_do_not_hop_between_people(street):
    last, jumps, lengths = {}, [], {}
    for _, boxes, _ in street:
        for _, arr in boxes:
            for x0, y0, x1, y1, tid in arr:
                foot = np.array([(x0 + x1) / 2 * 768, y1 * 576])
                if tid in last:
                    jumps.append(np.linalg.norm(foot - last[tid]) / ((y1 - y0) * 576))
                last[tid] = foot
                lengths[tid] = lengths.get(tid, 0) + 1
    # 0.25 s between tracker frames: a walker moves ~0.2 of their height; a hop to another person is more
    assert max(jumps) < 1.0 and np.percentile(jumps, 99) < 0.5
    # most of the time is spent in long tracks, not in fragments
    long = sum(n for n in lengths.values() if n >= 12)                # 3 s or more
    assert long >= 0.8 * sum(lengths.values())


def test_results_do_not_depend_on_how_cells_are_batched(street_cells, street):
    # the state carries everything: single cells, or chunks of 3, give the same tracks as chunks of 4
    for chunk in (1, 3):
        other = run_people(street_cells[:24], chunk=chunk)
        assert [[(p.track_id, p.action, p.box) for p in t] for t, _, _ in other] == \
               [[(p.track_id, p.action, p.box) for p in t] for t, _, _ in street[:24]]


def test_nothing_moving_means_no_detector_run(tmp_path):
    # the empty street (the walker clip's first 2 s have nobody in them) and then a person
    walk = make_walker_clip(tmp_path / "walk.mp4", Walk(xs=(0.25, 0.5), start_s=3.0))
    with open_source(str(tmp_path / "walk.mp4"), GRID) as src:
        cells = list(src)
    det = build("people")
    crops, detects = [], []
    real_crops, real_detect = det.crops, det.detect
    det.crops = lambda *a: (lambda r: crops.append(len(r)) or r)(real_crops(*a))
    det.detect = lambda frame, where: detects.append(len(where)) or real_detect(frame, where)
    out = run_people(cells, det=det)
    # the first frame is searched whole (people standing still from the start); after that nothing
    # moves until the man walks in at 3 s, and HOG does not run at all
    assert detects[0] == 1 and crops[:2] == [0, 0]
    assert len(detects) == 1 + sum(1 for n in crops if n)
    assert [n for _, _, n in out[:3]] == [0, 0, 0]
    assert all(n == 1 for _, _, n in out[4:int(walk.duration_s)])


def test_entering_and_leaving_the_view(tmp_path):
    # he walks in over the left border at 2 s, across the street, and out over the right border at 11.5 s
    walk = make_walker_clip(tmp_path / "across.mp4", Walk(xs=(0.02, 0.5, 0.98), leg_s=4.0, start_s=2.0, gone_s=4.0))
    with open_source(str(tmp_path / "across.mp4"), GRID) as src:
        cells = list(src)
    det, state, entering, departures = build("people"), None, [], []
    for k in range(0, len(cells), 4):
        ch = cells[k:k + 4]
        res, state = det(np.stack([c.frames for c in ch]), np.stack([c.frame_mask for c in ch]), state=state,
                         detect_frames=np.stack([c.detect_frames for c in ch]),
                         detect_mask=np.stack([c.detect_mask for c in ch]), detect_slots=GRID.detect_slots,
                         frame_times=np.stack([c.frame_times for c in ch]))
        entering += [(ch[i].t_start, p.track_id) for i, tr in enumerate(res.tracks) for p in tr if p.entering]
        departures += res.departures
    assert len(entering) == 1 and 2.0 <= entering[0][0] <= 3.0
    assert [d.track_id for d in departures] == [entering[0][1]]          # the same man, one id all the way
    assert walk.end_s - 1.0 <= departures[0].t_s <= walk.end_s
