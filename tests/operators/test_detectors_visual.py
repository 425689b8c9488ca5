"""Visual detectors on cells with known content: flashes, cuts, motion, camera motion, faces."""

import cv2
import numpy as np
import pytest

from operators.registry import build
from tests.media import MediaSpec
from tests.operators.cells import decoded_cells, fired_cells, rendered_cells

VISUAL = ["flash", "scene_cut", "motion", "camera_motion", "faces"]


def run(name, cells, state=None, **cfg):
    frames, fmask, audio, amask = cells
    return build(name, **cfg)(frames, fmask, audio, amask, state)


def split(cells, at):
    return tuple(a[:at] for a in cells), tuple(a[at:] for a in cells)


def test_flash_and_cuts_in_the_right_cells():
    spec = MediaSpec(duration_s=6, flashes=(2.0,), cuts=(3.0, 4.5), clicks=())
    cells = rendered_cells(spec)
    flash, _ = run("flash", cells)
    assert fired_cells(flash, "flash") == [2] and flash.times[2, 0] == 0.0
    assert flash.modality == "visual" and flash.method.startswith("luma-jump")
    cut, _ = run("scene_cut", cells)
    assert fired_cells(cut, "cut") == [3, 4]            # the flash at 2.0 s is not a cut
    assert cut.times[3, 0] == 0.0 and cut.times[4, 0] == 0.5
    assert cut.scores.dtype.is_floating_point and cut.scores.shape == (6, 1) and cut.fired.shape == (6, 1)


def test_flash_and_cuts_survive_an_h264_round_trip(tmp_path):
    spec = MediaSpec(duration_s=6, flashes=(1.0, 4.0), cuts=(2.5,), clicks=())
    cells = decoded_cells(tmp_path / "clip.mp4", spec)
    assert fired_cells(run("flash", cells)[0], "flash") == [1, 4]
    assert fired_cells(run("scene_cut", cells)[0], "cut") == [2]


def test_a_cut_on_a_cell_boundary_is_seen_across_calls():
    cells = rendered_cells(MediaSpec(duration_s=4, flashes=(), cuts=(2.0,), clicks=()))
    first, second = split(cells, 2)
    det = build("scene_cut")
    r1, state = det(*first, None)
    r2, _ = det(*second, state)
    assert fired_cells(r1, "cut") == [] and fired_cells(r2, "cut") == [0]
    # without the state the first frame of the second call has nothing to compare with
    assert fired_cells(det(*second, None)[0], "cut") == []


@pytest.mark.parametrize("name", VISUAL)
def test_cells_without_frames_never_fire(name):
    frames, fmask, audio, amask = rendered_cells(MediaSpec(duration_s=4, flashes=(2.0,), cuts=(2.0,), clicks=()))
    fmask = fmask.copy()
    fmask[2] = False
    frames = frames.copy()
    frames[2] = 0                         # missing media is zero-filled by the grid
    res, _ = build(name)(frames, fmask, audio, amask, None)
    assert not res.fired[2].any() and (res.scores[2] == 0).all()
    all_missing, _ = build(name)(frames, np.zeros_like(fmask), audio, amask, None)
    assert not all_missing.fired.any()


def test_dropped_frames_are_skipped_not_compared():
    frames, fmask, audio, amask = rendered_cells(MediaSpec(duration_s=4, flashes=(), cuts=(2.0,), clicks=()))
    fmask = fmask.copy()
    fmask[2, :2] = False                  # first two frames of cell 2 dropped: the cut is seen at slot 2
    res, _ = build("scene_cut")(frames, fmask, audio, amask, None)
    assert fired_cells(res, "cut") == [2] and res.times[2, 0] == 0.5


def test_motion_of_the_square_and_none_when_still():
    moving = rendered_cells(MediaSpec(duration_s=3, flashes=(), clicks=(), square_speed_px_s=40.0))
    still = rendered_cells(MediaSpec(duration_s=3, flashes=(), clicks=(), square_speed_px_s=0.0))
    res, _ = run("motion", moving)
    assert fired_cells(res, "motion") == [0, 1, 2]
    assert res.times[0, 0] == 0.25                        # cell 0's first frame has no predecessor
    assert fired_cells(run("motion", still)[0], "motion") == []


def _texture(seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur((rng.random((600, 800, 3)) * 255).astype(np.uint8), (0, 0), 3)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)


def _camera(big, dx=0, dy=0, zoom=1.0):
    cx, cy, hw, hh = 400 + dx, 300 + dy, int(160 / zoom), int(120 / zoom)
    return cv2.resize(big[cy - hh:cy + hh, cx - hw:cx + hw], (320, 240), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("expected, shot", [
    ("pan", lambda big, i: _camera(big, dx=6 * i)),
    ("tilt", lambda big, i: _camera(big, dy=-6 * i)),
    ("zoom", lambda big, i: _camera(big, zoom=1 + 0.05 * i)),
    ("static", lambda big, i: _camera(big)),
    # a locked-off camera with something moving in front of it: the camera is static
    ("static", lambda big, i: _with_square(_camera(big), 40 + 8 * i)),
])
def test_camera_motion_labels(expected, shot):
    big = _texture()
    frames = np.stack([shot(big, i) for i in range(8)]).reshape(2, 4, 240, 320, 3)
    res, _ = build("camera_motion")(frames, np.ones((2, 4), bool), np.zeros((2, 16000), np.float32),
                                    np.ones((2, 16000), bool), None)
    assert fired_cells(res, expected) == [0, 1], res.scores
    assert res.fired.sum() == 2                              # one label per cell
    # the label that fires has the highest score, so it is top_k[0] of the action
    assert (res.scores.argmax(1) == res.fired.int().argmax(1)).all()


def _with_square(img, x):
    img = img.copy()
    img[100:140, x:x + 40] = 255
    return img


def test_camera_motion_on_the_test_media_is_static():
    res, _ = run("camera_motion", rendered_cells(MediaSpec(duration_s=3, flashes=(), clicks=())))
    assert fired_cells(res, "static") == [0, 1, 2]


def draw_face(size=160):
    """A drawn frontal face (skin oval, hair, brows, eyes, nose, mouth) that OpenCV's cascade accepts."""
    img = np.full((size, size, 3), 200, np.uint8)
    c = size // 2
    s = lambda f: int(size * f)
    cv2.ellipse(img, (c, c), (s(0.28), s(0.36)), 0, 0, 360, (180, 140, 120), -1)
    cv2.ellipse(img, (c, c - s(0.30)), (s(0.30), s(0.12)), 0, 180, 360, (40, 30, 20), -1)
    for dx in (-1, 1):
        cv2.ellipse(img, (c + dx * s(0.11), c - s(0.12)), (s(0.07), s(0.02)), 0, 0, 360, (50, 40, 30), -1)
        cv2.ellipse(img, (c + dx * s(0.11), c - s(0.06)), (s(0.055), s(0.03)), 0, 0, 360, (40, 30, 30), -1)
    cv2.line(img, (c, c - s(0.04)), (c - s(0.02), c + s(0.08)), (140, 100, 90), 3)
    cv2.ellipse(img, (c, c + s(0.17)), (s(0.09), s(0.03)), 0, 0, 360, (110, 50, 50), -1)
    return cv2.GaussianBlur(img, (5, 5), 0)


def test_a_face_is_found_and_none_in_blank_frames():
    frames = np.full((3, 2, 240, 320, 3), 128, np.uint8)
    frames[1, 1, 40:200, 100:260] = draw_face(160)
    res, _ = build("faces", max_fps=2.0)(frames, np.ones((3, 2), bool), np.zeros((3, 16000), np.float32),
                                         np.ones((3, 16000), bool), None)
    assert fired_cells(res, "face") == [1]
    assert res.times[1, 0] == 0.5 and res.scores[1, 0] == 0.5 and res.extras["count"].tolist() == [0, 1, 0]
    assert res.method == "opencv-haar(haarcascade_frontalface_default)"


def test_a_face_without_eyes_is_not_a_face():
    img = draw_face(160)
    img[40:80, 40:120] = img[85, 80]       # paint over brows and eyes with cheek colour
    frames = np.full((1, 1, 240, 320, 3), 128, np.uint8)
    frames[0, 0, 40:200, 100:260] = img
    res, _ = build("faces")(frames, np.ones((1, 1), bool), np.zeros((1, 16000), np.float32),
                            np.ones((1, 16000), bool), None)
    assert fired_cells(res, "face") == []


def test_detectors_are_deterministic():
    cells = rendered_cells(MediaSpec(duration_s=3, flashes=(1.0,), cuts=(2.0,), clicks=()))
    for name in VISUAL:
        a, _ = run(name, cells)
        b, _ = run(name, cells)
        assert np.array_equal(a.scores.numpy(), b.scores.numpy()) and np.array_equal(a.fired, b.fired), name


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="frames"):
        build("flash")(np.zeros((2, 4, 8, 8, 3), np.float32), np.ones((2, 4), bool), None, None, None)
    with pytest.raises(ValueError, match="do not match"):
        build("flash")(np.zeros((2, 4, 8, 8, 3), np.uint8), np.ones((2, 3), bool), None, None, None)


def test_faces_searched_at_most_max_fps_and_the_method_says_so():
    frames = np.full((2, 4, 240, 320, 3), 128, np.uint8)
    frames[0, 2, 40:200, 100:260] = draw_face(160)       # a searched slot (0 and 2 at 2 fps)
    frames[1, 1, 40:200, 100:260] = draw_face(160)       # a skipped one
    args = (np.ones((2, 4), bool), np.zeros((2, 16000), np.float32), np.ones((2, 16000), bool), None)
    res, _ = build("faces", max_fps=2.0)(frames, *args)
    assert fired_cells(res, "face") == [0] and res.times[0, 0] == 0.5 and res.scores[0, 0] == 0.5
    assert res.method == "opencv-haar(haarcascade_frontalface_default,2/4 frames)"
    every, _ = build("faces", max_fps=None)(frames, *args)
    assert fired_cells(every, "face") == [0, 1] and every.scores[1, 0] == 0.25
    assert every.method == "opencv-haar(haarcascade_frontalface_default)"


def test_faces_search_real_frames_when_the_first_slots_were_dropped():
    frames = np.full((1, 4, 240, 320, 3), 128, np.uint8)
    frames[0, 1, 40:200, 100:260] = draw_face(160)
    fmask = np.array([[False, True, False, True]])
    res, _ = build("faces")(frames, fmask, np.zeros((1, 16000), np.float32), np.ones((1, 16000), bool), None)
    assert fired_cells(res, "face") == [0] and res.times[0, 0] == 0.25


def _shots(big, per_cell):
    """Cells of 4 frames at 224x224 (like the grid's) from one shot function per cell; the camera's
    position carries on from cell to cell."""
    frames, x = [], 0
    for shot in per_cell:
        for _ in range(4):
            x = shot(x)
            frames.append(cv2.resize(_camera(big, dx=int(round(x))), (224, 224), interpolation=cv2.INTER_AREA))
    return np.stack(frames).reshape(len(per_cell), 4, 224, 224, 3), np.ones((len(per_cell), 4), bool)


def _labels(res):
    return [res.labels[int(i)] for i in res.fired.int().argmax(1)]


def test_camera_motion_hysteresis_keeps_a_label_through_one_odd_cell():
    big = _texture(3)
    pan, still = (lambda x: x + 6), (lambda x: x)
    # a steady pan with one cell where the camera paused: still a pan
    frames, mask = _shots(big, [pan, pan, pan, still, pan, pan])
    res, _ = build("camera_motion")(frames, mask, None, None, None)
    assert _labels(res) == ["pan"] * 6, res.scores
    # a locked-off shot nudged in one cell (a tripod knock) stays static
    nudge = lambda x: x + 5          # noqa: E731  (alone, 6%/s of the frame: a pan)
    frames, mask = _shots(big, [still, still, nudge, still, still])
    res, _ = build("camera_motion")(frames, mask, None, None, None)
    assert _labels(res) == ["static"] * 5, res.scores
    alone, _ = build("camera_motion")(*_shots(big, [nudge]), None, None, None)
    assert _labels(alone) == ["pan"]
    # ... across calls too: the state carries the smoothed evidence
    det, state, out = build("camera_motion"), None, []
    for k in range(5):
        r, state = det(frames[k:k + 1], mask[k:k + 1], None, None, state)
        out += _labels(r)
    assert out == ["static"] * 5
