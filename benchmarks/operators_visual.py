"""CPU cost of the visual operators per 1 s grid cell, on 720p street footage and on a static 720p
scene with nobody in it (the ``visual`` part of ``python -m benchmarks.operators``).

Footage: opencv-doc's vtest.avi street (768x576, 10 fps, people walking all the time) scaled by
FFmpeg to 960x720 and padded to 1280x720 (720p, the aspect kept); and the same street emptied (the
per-pixel median over the clip, tests/visual_media.py) with sensor-like noise, 20 s at 720p. Both
are decoded on the offline profile's grid (4 frames at 224x224 per cell, one detection-view frame at
960x540), then every operator runs alone over all cells, 4 cells per call as the runtime sends them,
timed with ``process_time`` on one thread (OpenCV and torch set to 1).

Figures: ``<operator>_ms_street`` / ``<operator>_ms_static`` (a stream's first call left out: the
people detector searches its first frame whole, once; that call's cost is ``people_first_call_ms_*``),
the totals
``visual_ms_per_cell_street`` and ``visual_ms_per_cell_static`` (targets: <= 35 and <= 5), and
the totals with the cost levers pulled (``..._levers``: people detected every 2 s instead of every
second, faces searched once a second with a coarser pyramid), so the notes can say what each buys.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

VISUAL = ("motion", "scene_cut", "flash", "faces", "camera_motion", "people")
LEVERS = {"people": {"detect_every_s": 2.0, "carry_s": 3.5}, "faces": {"scale_factor": 1.2, "max_fps": 0.5}}
STREET_S = 40


def _street_720p(tmp: Path) -> str:
    from tests.realmedia import real_file

    out = tmp / "street720.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(real_file("vtest")), "-t", str(STREET_S), "-vf",
                    "scale=-2:720,pad=1280:720:(ow-iw)/2:0", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
                    str(out)], check=True)
    return str(out)


def _static_720p(tmp: Path) -> str:
    import cv2

    from pipeline.knowntruth.media import MediaSpec, encode
    from tests.visual_media import street_and_person

    plate = cv2.resize(street_and_person()[0], (960, 720), interpolation=cv2.INTER_LINEAR)
    plate = cv2.copyMakeBorder(plate, 0, 0, 160, 160, cv2.BORDER_CONSTANT)
    noise = np.random.default_rng(1).normal(0, 2.0, (5, *plate.shape)).round().astype(np.int16)

    def frame(spec, t):
        return np.clip(plate.astype(np.int16) + noise[int(round(t * 10)) % 5], 0, 255).astype(np.uint8)

    out = tmp / "static720.mp4"
    encode(out, MediaSpec(duration_s=20, width=1280, height=720, video_fps=10, audio=False, flashes=(), clicks=()),
           "mp4", frame_fn=frame, audio_fn=lambda s: np.zeros(0, np.float32))
    return str(out)


def _cells(path: str):
    from pipeline.config import Config
    from pipeline.sources import open_source

    with open_source(path, Config().grid_config) as src:
        return list(src)


def _cost(name: str, cells, *, first: list | None = None, repeats: int = 3, **options) -> float:
    """CPU ms per cell of operator ``name`` over ``cells``, 4 cells per call, the state carried, the
    stream's first call left out (the people detector searches a stream's first frame whole, once:
    its cost goes to ``first``, in ms). The least of ``repeats`` runs: neighbours on a shared machine
    only ever add time."""
    runs = [_cost_once(name, cells, first if i == 0 else None, options) for i in range(repeats)]
    return min(runs)


def _cost_once(name: str, cells, first, options) -> float:
    from operators.registry import build
    from pipeline.grid import GridConfig
    from pipeline.runtime.analyzers import RUNNERS, Call, _call_plain, stack

    det = build(name, **options)
    grid = GridConfig(detect_px=960)
    run = RUNNERS.get(name, _call_plain)
    state, spent = None, 0.0
    for k in range(0, len(cells), 4):
        ch = cells[k:k + 4]
        call = Call(ch, *stack(ch), grid)
        t = time.process_time()
        _, state = run(name, det, call, state)
        if k == 0:
            if first is not None:
                first.append(1000 * (time.process_time() - t))
            continue
        spent += time.process_time() - t
    return 1000 * spent / (len(cells) - 4)


def measure() -> tuple[dict, dict]:
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    from operators.registry import build

    build("people")                      # imports (supervision, scipy) before the clock runs
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        scenes = {"street": _cells(_street_720p(tmp)), "static": _cells(_static_720p(tmp))}
    for scene, cells in scenes.items():
        _cost("people", cells[:8], repeats=1)          # warm (first-call allocations)
        total = levered = 0.0
        for name in VISUAL:
            once: list = []
            ms = _cost(name, cells, first=once)
            if name == "people":
                figures[f"people_first_call_ms_{scene}"] = round(once[0], 1)
            figures[f"{name}_ms_{scene}"] = round(ms, 2)
            total += ms
            if name in LEVERS:
                lever = _cost(name, cells, **LEVERS[name])
                figures[f"{name}_ms_{scene}_levers"] = round(lever, 2)
                levered += lever
            else:
                levered += ms
        figures[f"visual_ms_per_cell_{scene}"] = round(total, 2)
        figures[f"visual_ms_per_cell_{scene}_levers"] = round(levered, 2)
    notes = {
        "visual": (
            f"street: vtest.avi's first {STREET_S} s at 1280x720 (scaled to 960x720, padded), 4-8 people in view; "
            "static: the same street emptied, sensor noise, 20 s at 720p; offline grid (4 frames at 224 px + "
            "one 960x540 detection-view frame per cell); CPU ms per 1 s cell (process_time), one thread, each "
            "operator alone, a stream's first call left out (people_first_call_ms_*: the whole first frame "
            f"searched once). levers: {LEVERS}. The street budget (35) is not met: two operators are each near "
            "it alone. people (~30): OpenCV's HOG, a linear SVM over 64x128 windows (~120 ms for a whole "
            "768x576 frame on one core), run only on moving regions and tracked people scaled to ~128 px person "
            "height (~18 ms), plus ByteTrack and sparse optical flow at 4 fps (~10 ms); detecting every 2 s "
            "instead of every second saves ~10 ms at a cost in counts (quality: person_count_mae_levers). "
            "faces (~25): OpenCV's Haar cascade on one 224x224 frame a second (~24 ms a frame; 2 a second was "
            "the default before, ~50 ms); pyramid step 1.2 saves ~40%, and it cannot search less than one frame "
            "per cell. Without faces, the levers reach ~29 ms. Meeting 35 ms with people and faces at full "
            "quality needs detectors costing a fraction of HOG and Haar per frame on one CPU core (a small "
            "quantised CNN on the detection view); none ships in a package here. static (met): detectors skip "
            "frames that did not change (32x32 thumbnails within noise) and HOG never runs where nothing moves. "
            "Each figure is the least of 3 runs (the machine is shared: load average ~10 on 2 cores while "
            "measured)."),
    }
    return figures, notes
