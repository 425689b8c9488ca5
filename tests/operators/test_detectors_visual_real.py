"""Cuts and camera motion on real footage, with truths written down here.

- opencv-doc's Megamind.avi: an 11 s animated trailer, shot / reverse shot in a dim restaurant, hard
  cuts at 4.13, 6.46 and 8.38 s (the frames where the picture changes; ``ffmpeg -vf scdet`` finds
  the same three).
- vtest.avi: a street filmed by a camera that never moves (locked off) while people walk past.
- Megamind's first 4 s with a flash put in by ffmpeg (a brightened tenth of a second, then a white
  frame for a third of a second), and a fade to black and back in.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from operators.registry import build
from pipeline.grid import GridConfig
from pipeline.sources import open_source
from tests.realmedia import real_file

MEGAMIND_CUTS = (4.13, 6.46, 8.38)
FLASHES = ((1.45, 1.55), (2.4, 2.75))          # the brightened tenth of a second, the white third


def cells_of(path: str, grid=GridConfig()):
    with open_source(path, grid) as src:
        return list(src)


def changes(cells, chunk=4):
    """[(time of the first frame after the change, its fade flag)] from the scene-cut detector."""
    det, state, out = build("scene_cut"), None, []
    for k in range(0, len(cells), chunk):
        ch = cells[k:k + chunk]
        res, state = det(np.stack([c.frames for c in ch]), np.stack([c.frame_mask for c in ch]), None, None, state)
        for i in np.flatnonzero(res.fired[:, 0].numpy()):
            out.append((ch[i].t_start + float(res.times[i, 0]), int(res.extras["fade"][i])))
    return out


def ffmpeg(args, out):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args, "-an", "-c:v", "libx264", "-preset", "ultrafast", str(out)],
                   check=True)
    return str(out)


@pytest.fixture(scope="module")
def megamind():
    return cells_of(str(real_file("megamind")))


@pytest.mark.parametrize("chunk", [4, 1, 3])
def test_the_trailers_three_cuts(megamind, chunk):
    found = [t for t, fade in changes(megamind, chunk) if not fade]
    # the grid samples 4 frames a second: a cut is reported at the first sampled frame after it
    hits = [c for c in MEGAMIND_CUTS if any(-0.05 <= t + 0.125 - c <= 0.3 for t in found)]
    assert hits == list(MEGAMIND_CUTS), found
    assert len(found) - len(hits) <= 1, found


def test_a_flash_is_not_a_cut(tmp_path):
    (a0, a1), (b0, b1) = FLASHES
    path = ffmpeg(["-i", str(real_file("megamind")), "-t", "4", "-vf",
                   f"eq=brightness=0.5:enable='between(t,{a0},{a1})',"
                   f"drawbox=c=white:t=fill:enable='between(t,{b0},{b1})'"], tmp_path / "flash.mp4")
    cells = cells_of(path)
    assert changes(cells) == []
    # the white one is a flash (the grid sampled it), so it was seen, and still not called a cut
    flash, _ = build("flash")(np.stack([c.frames for c in cells]), np.stack([c.frame_mask for c in cells]),
                              None, None, None)
    assert flash.fired[2, 0]


def test_a_fade_out_and_in_is_a_fade(tmp_path):
    # 0-3 s of the trailer fading to black from 1.5 s (1.2 s long), then its 4.5-8 s fading in from
    # black over 1 s (starting 0.3 s in): one hard cut is left in that part, at 6.46 s of the trailer
    path = ffmpeg(["-i", str(real_file("megamind")), "-filter_complex",
                   "[0:v]trim=0:3,setpts=PTS-STARTPTS,fade=t=out:st=1.5:d=1.2[a];"
                   "[0:v]trim=4.5:8,setpts=PTS-STARTPTS,fade=t=in:st=0.3:d=1.0[b];[a][b]concat=n=2:v=1"],
                  tmp_path / "fade.mp4")
    found = changes(cells_of(path))
    fades = [t for t, fade in found if fade]
    cuts = [t for t, fade in found if not fade]
    assert len(fades) == 2 and 1.5 < fades[0] <= 3.0 and 3.3 < fades[1] <= 4.6, found
    assert len(cuts) == 1 and abs(cuts[0] + 0.125 - (3.0 + 6.46 - 4.5)) <= 0.3, found


def camera_labels(cells, chunk=4):
    det, state, out = build("camera_motion"), None, []
    for k in range(0, len(cells), chunk):
        ch = cells[k:k + chunk]
        res, state = det(np.stack([c.frames for c in ch]), np.stack([c.frame_mask for c in ch]), None, None, state)
        out += [res.labels[int(i)] for i in res.fired.int().argmax(1)]
    return out


def test_a_locked_off_street_stays_static():
    assert set(camera_labels(cells_of(str(real_file("vtest"))))) == {"static"}


def test_the_trailers_camera_does_not_flap(megamind):
    # the shots are held (at most a slow drift): one label per shot, no pan/zoom/tilt every second
    labels = camera_labels(megamind)
    shots = np.searchsorted(MEGAMIND_CUTS, [c.t_start + 0.5 for c in megamind])
    for s in set(shots):
        assert len({lab for lab, k in zip(labels, shots) if k == s}) == 1, labels
    assert labels.count("static") >= len(labels) - 1, labels
