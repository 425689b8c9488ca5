"""Visual understanding on real footage with written-down truths (the ``visual`` part of
``python -m benchmarks.quality``).

- People: opencv-doc's vtest.avi street, people counted by eye at 8 frames (the detection frame,
  0.6 s into the cell); ``person_count_mae`` is the mean absolute error of the per-cell count there.
  ``walking_recall``: the fraction of the clip's 80 cells (someone walks in every one of them) with a
  ``walking`` person. ``line_crossing_error``: |in - 2| + |out - 1| on the walked-pedestrian clip of
  tests/visual_media.py (a line crossed twice one way and once back).
- Cuts: Megamind.avi (hard cuts at 4.13, 6.46, 8.38 s), the same with a flash put in (no cut), a fade
  to black and back in with one hard cut left (6.46 s of the trailer, at 4.96 s of that clip), and
  the street (no cut). A found cut matches a truth when its first frame after the change is at most
  0.3 s after it (the grid samples 4 frames a second). Baseline on the same clips: ``ffmpeg -vf
  scdet`` at its default threshold (10), on every decoded frame.
- ``camera_static_fraction``: cells of the locked-off street the camera-motion operator calls static.

``*_levers`` figures are the same with the cost levers of benchmarks/operators_visual.py pulled.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

# people in view of vtest.avi at T + 0.6 s (counted by eye on the frames; see tests/operators/test_people.py)
STREET_COUNTS = {5: 6, 12: 8, 20: 7, 30: 6, 40: 2, 50: 7, 60: 7, 70: 8}
MEGAMIND_CUTS = (4.13, 6.46, 8.38)
TOLERANCE_S = 0.3


def _clips(tmp: Path) -> dict[str, tuple[str, tuple[float, ...]]]:
    """name -> (path, hard cut times)."""
    from tests.realmedia import real_file

    mm = str(real_file("megamind"))

    def ffmpeg(name, args):
        out = tmp / f"{name}.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-y", *args, "-an", "-c:v", "libx264", "-preset", "ultrafast",
                        str(out)], check=True)
        return str(out)

    flash = ffmpeg("flash", ["-i", mm, "-t", "4", "-vf", "eq=brightness=0.5:enable='between(t,1.45,1.55)',"
                                                         "drawbox=c=white:t=fill:enable='between(t,2.4,2.75)'"])
    fade = ffmpeg("fade", ["-i", mm, "-filter_complex",
                           "[0:v]trim=0:3,setpts=PTS-STARTPTS,fade=t=out:st=1.5:d=1.2[a];"
                           "[0:v]trim=4.5:8,setpts=PTS-STARTPTS,fade=t=in:st=0.3:d=1.0[b];[a][b]concat=n=2:v=1"])
    return {"megamind": (mm, MEGAMIND_CUTS), "flash": (flash, ()), "fade": (fade, (3.0 + 6.46 - 4.5,)),
            "street": (str(real_file("vtest")), ())}


def _match(found, truth) -> tuple[int, int]:
    """(truths found, found that match a truth)."""
    hit = sum(1 for c in truth if any(-0.05 <= f - c <= TOLERANCE_S for f in found))
    ok = sum(1 for f in found if any(-0.05 <= f - c <= TOLERANCE_S for c in truth))
    return hit, ok


def _scdet(path: str) -> list[float]:
    err = subprocess.run(["ffmpeg", "-v", "info", "-i", path, "-vf", "scdet", "-an", "-f", "null", "-"],
                         capture_output=True, text=True).stderr
    return [float(m) for m in re.findall(r"lavfi\.scd\.time: ([0-9.]+)", err)]


def _cuts(path: str) -> list[float]:
    from tests.operators.test_detectors_visual_real import cells_of, changes

    return [t + 0.125 for t, fade in changes(cells_of(path)) if not fade]


def _people(options: dict) -> tuple[float, float]:
    from operators.registry import build
    from pipeline.grid import GridConfig
    from pipeline.sources import open_source
    from tests.operators.test_people import run_people
    from tests.realmedia import real_file

    with open_source(str(real_file("vtest")), GridConfig(detect_px=960)) as src:
        cells = list(src)
    out = run_people(cells, det=build("people", **options))
    mae = float(np.mean([abs(out[t][2] - n) for t, n in STREET_COUNTS.items()]))
    walking = float(np.mean([any(p.action == "walking" for p in tracks) for tracks, _, _ in out]))
    return mae, walking


def _crossings(tmp: Path) -> int:
    from operators.detectors.zones import Zone
    from pipeline.grid import GridConfig
    from pipeline.sources import open_source
    from tests.operators.test_people import run_people
    from tests.operators.test_zones import count_zones
    from tests.visual_media import Walk, make_walker_clip

    make_walker_clip(tmp / "walk.mp4", Walk(xs=(0.25, 0.8, 0.25, 0.8), leg_s=3.5))
    with open_source(str(tmp / "walk.mp4"), GridConfig(detect_px=960)) as src:
        people = run_people(list(src))
    _, crossed = count_zones(people, (Zone("gate", "line", ((0.5, 0.0), (0.5, 1.0))),))
    n_in = sum(c.get("gate", (0, 0))[0] for c in crossed)
    n_out = sum(c.get("gate", (0, 0))[1] for c in crossed)
    return abs(n_in - 2) + abs(n_out - 1)


def measure() -> tuple[dict, dict]:
    from benchmarks.operators_visual import LEVERS
    from tests.operators.test_detectors_visual_real import camera_labels, cells_of
    from tests.realmedia import real_file

    figures: dict[str, float] = {}
    figures["person_count_mae"], figures["walking_recall"] = _people({})
    figures["person_count_mae_levers"], figures["walking_recall_levers"] = _people(LEVERS["people"])
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        figures["line_crossing_error"] = float(_crossings(tmp))
        clips = _clips(tmp)
        for method, find in (("", _cuts), ("_ffmpeg_scdet", _scdet)):
            truths = hits = found = ok = 0
            for path, truth in clips.values():
                got = find(path)
                h, o = _match(got, truth)
                truths, hits, found, ok = truths + len(truth), hits + h, found + len(got), ok + o
            figures[f"cut_recall{method}"] = hits / truths
            figures[f"cut_precision{method}"] = ok / found if found else 1.0
    labels = camera_labels(cells_of(str(real_file("vtest"))))
    figures["camera_static_fraction"] = labels.count("static") / len(labels)
    notes = {"visual": "people: vtest.avi, 8 frames counted by eye; cuts: Megamind.avi + flash/fade variants + "
                       "the street, 4 hard cuts in all; baseline ffmpeg scdet (threshold 10) on every frame; "
                       f"levers: {LEVERS}"}
    return figures, notes
