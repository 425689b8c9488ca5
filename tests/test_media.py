"""The test media kit: every container/codec pair decodes, and its ground truth is where it says."""

import av
import numpy as np
import pytest

from tests.media import FORMATS, MediaSpec, available_formats, frame_times, make_media

# AVI stores no presentation timestamps and mp3 has encoder delay without an edit list,
# so avi gets one video frame / one mp3 frame of slack; everything else must be exact to a frame.
FRAME_S = 1 / 25


def first_bright_frame(path):
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            if f.to_ndarray(format="rgb24").mean() > 200:
                return float(f.pts * f.time_base)


def first_loud_sample(path):
    with av.open(str(path)) as c:
        for f in c.decode(audio=0):
            a = f.to_ndarray().astype(np.float32)
            if a.dtype.kind == "i" or np.abs(a).max() > 2:
                a = a / 32768.0
            hits = np.nonzero(np.abs(a).max(axis=0) > 0.5)[0]
            if len(hits):
                return float(f.pts * f.time_base) + hits[0] / f.sample_rate


@pytest.mark.parametrize("fmt", available_formats())
def test_generated_events_decode_at_their_ground_truth_times(tmp_path, fmt):
    spec = MediaSpec(duration_s=3.0, flashes=(1.5,), clicks=(1.5,), cuts=(0.75,))
    truth = make_media(tmp_path / f"clip{FORMATS[fmt][3]}", spec, fmt)
    flash, click = truth.of("flash")[0], truth.of("click")[0]
    # the flash is first visible on the first frame at or after its start time
    times = frame_times(truth.spec)
    first_flash_frame = times[times >= flash.t_start - 1e-9][0]
    slack = FRAME_S if fmt in ("avi", "ts") else 1e-3
    assert abs(first_bright_frame(truth.path) - first_flash_frame) <= slack + 1e-6
    assert abs(first_loud_sample(truth.path) - click.t_start) <= (0.03 if fmt in ("avi", "ts") else 0.005)
    assert (tmp_path / f"clip{FORMATS[fmt][3]}.truth.json").exists()


def test_options_no_audio_no_video_start_time_odd_size_vfr(tmp_path):
    only_video = make_media(tmp_path / "v.mp4", MediaSpec(duration_s=2, audio=False, clicks=()))
    only_audio = make_media(tmp_path / "a.mp4", MediaSpec(duration_s=2, video=False, flashes=()))
    late = make_media(tmp_path / "s.mp4", MediaSpec(duration_s=2, start_time_s=5.0, flashes=(6.0,), clicks=(6.0,)))
    odd = make_media(tmp_path / "o.mp4", MediaSpec(duration_s=1, width=321, height=181))
    vfr = make_media(tmp_path / "f.mkv", MediaSpec(duration_s=2, vfr=True), "mkv")
    with av.open(only_video.path) as c:
        assert [s.type for s in c.streams] == ["video"]
    with av.open(only_audio.path) as c:
        assert [s.type for s in c.streams] == ["audio"]
    assert abs(first_bright_frame(late.path) - 6.0) < 1e-3
    with av.open(odd.path) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (321, 181)
    with av.open(vfr.path) as c:
        pts = np.array([float(f.pts * f.time_base) for f in c.decode(video=0)])
    steps = np.diff(np.sort(pts))
    assert steps.max() / steps.min() > 1.5, "variable frame rate must give irregular frame intervals"
