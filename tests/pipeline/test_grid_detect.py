"""The detection view: a second, larger copy of some grid frames (aspect kept), for the detectors
that need to see small things. Off by default, so the small-frame paths stay as they are."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.grid import GridAligner, GridConfig
from pipeline.sources import open_source
from tests.media import MediaSpec, make_media


def test_which_slots_and_what_size():
    assert GridConfig().detect_per_cell == 0 and GridConfig().detect_slots == ()
    assert GridConfig(detect_px=960).detect_slots == (2,)
    assert GridConfig(detect_px=960, detect_fps=2).detect_slots == (1, 3)
    assert GridConfig(detect_px=960, detect_fps=4).detect_slots == (0, 1, 2, 3)
    assert GridConfig(detect_px=960, detect_fps=9).detect_slots == (0, 1, 2, 3)    # at most every slot
    g = GridConfig(detect_px=960)
    assert g.detect_size(1280, 720) == (540, 960)          # (height, width), aspect kept
    assert g.detect_size(768, 576) == (576, 768)           # never upscaled
    assert g.detect_size(1080, 1920) == (960, 540)         # portrait: the long side is the height
    assert GridConfig(detect_px=333).detect_size(1280, 720) == (188, 332)   # even numbers, at most detect_px


def test_aligner_converts_only_the_detection_slots():
    g = GridConfig(frame_height=2, frame_width=2, detect_px=8)
    small, big = [], []
    al = GridAligner(g, stream_id="s", t0_s=0.0, has_video=True, has_audio=False, frame_tolerance_s=0.1,
                     convert=lambda f: small.append(f) or np.full((2, 2, 3), f, np.uint8),
                     convert_detect=lambda f: big.append(f) or np.full((4, 8, 3), f, np.uint8), detect_hw=(4, 8))
    for i, t in enumerate([0.125, 0.375, 0.625, 0.875, 1.125, 1.375, 1.875]):
        al.push_video(t, i + 1)
    c0, c1 = al.flush()
    assert small == [1, 2, 3, 4, 5, 6, 7] and big == [3]          # slot 2 of cell 1 has no frame
    assert c0.detect_frames.shape == (1, 4, 8, 3) and c0.detect_frames[0, 0, 0, 0] == 3 and c0.detect_mask.tolist() == [True]
    assert c1.detect_mask.tolist() == [False] and not c1.detect_frames.any()     # missing: zeros, masked


def test_a_file_gets_the_view_of_the_same_instants(tmp_path):
    # a white square moving at 200 px/s across a 640x360 field: where it is says which instant a frame shows
    spec = MediaSpec(duration_s=3, width=640, height=360, flashes=(), clicks=(), square_speed_px_s=200.0,
                     square_size_px=40)
    make_media(tmp_path / "a.mp4", spec)
    g = GridConfig(detect_px=320, detect_fps=2)
    with open_source(str(tmp_path / "a.mp4"), g) as src:
        cells = list(src)
    assert len(cells) == 3
    for c in cells:
        assert c.frames.shape == (4, 224, 224, 3)
        assert c.detect_frames.shape == (2, 180, 320, 3) and c.detect_mask.all()
        for d, slot in enumerate(g.detect_slots):
            big_x = np.flatnonzero(c.detect_frames[d, 90, :, 0] > 200).mean() / 320
            small_x = np.flatnonzero(c.frames[slot, 112, :, 0] > 200).mean() / 224
            assert abs(big_x - small_x) < 0.02, (c.index, slot)
    # the view stays off unless asked for: the small frames alone, as before
    with open_source(str(tmp_path / "a.mp4"), GridConfig()) as src:
        assert all(c.detect_frames is None and c.detect_mask is None for c in src)


def test_audio_only_input_has_no_view(tmp_path):
    make_media(tmp_path / "a.mp4", MediaSpec(duration_s=2, video=False, flashes=()))
    with open_source(str(tmp_path / "a.mp4"), GridConfig(detect_px=960)) as src:
        cells = list(src)
    assert cells and all(c.detect_frames is None for c in cells)


@pytest.mark.parametrize("fps", [1, 2])
def test_synthetic_source_renders_the_view(fps):
    g = GridConfig(detect_px=960, detect_fps=fps)
    with open_source("synthetic:?duration=2&flashes=1.35", g) as src:
        cells = list(src)
    assert [c.detect_frames.shape for c in cells] == [(fps, 360, 640, 3)] * 2
    # the flash (1.35-1.65 s) is in the view where it is in the small frames of the same slots
    flashed = [[bool(c.detect_frames[d].min() == 255) for d in range(fps)] for c in cells]
    assert flashed == [[bool(c.frames[s].min() == 255) for s in g.detect_slots] for c in cells]
    assert any(flashed[1])
