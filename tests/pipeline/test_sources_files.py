"""File sources against generated media with known events (tests/media.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline.errors import SourceError
from pipeline.grid import Cell, GridConfig
from pipeline.sources import open_source
from pipeline.knowntruth.media import AVI_AUDIO_DELAY_S
from tests.media import FORMATS, MediaSpec, available_formats, frame_times, make_media

GRID = GridConfig(frame_height=48, frame_width=64)          # defaults: hop 1 s, 4 frames per cell
FINE = dataclasses.replace(GRID, fps=25.0)                   # one slot per frame of a 25 fps clip
EVENT_S = 2.3                                                # inside a cell, away from its edges


def read(path, grid=GRID, **kw) -> list[Cell]:
    with open_source(str(path), grid, **kw) as src:
        items = list(src)
    assert all(isinstance(i, Cell) for i in items), "a file must not produce gaps"
    return items


def flash_time(cells: list[Cell]) -> float:
    """Media time of the first sampled frame that is (nearly) all white."""
    for c in cells:
        bright = c.frame_mask & (c.frames.reshape(len(c.frames), -1).mean(axis=1) > 200)
        if bright.any():
            return float(c.frame_times[np.argmax(bright)])
    raise AssertionError("no flash found")


def click_time(cells: list[Cell]) -> float:
    """Media time of the first audio sample of the click burst (|x| > 0.3)."""
    for c in cells:
        loud = np.flatnonzero(np.abs(c.audio) > 0.3)
        if len(loud):
            return c.t_start + loud[0] / c.audio.shape[0] * (c.t_end - c.t_start)
    raise AssertionError("no click found")


def check_geometry(cells: list[Cell], grid: GridConfig, t0: float) -> None:
    for k, c in enumerate(cells):
        assert c.index == k
        assert c.t_start == pytest.approx(t0 + k * grid.hop_s, abs=1e-9)
        assert c.t_end == pytest.approx(c.t_start + grid.hop_s, abs=1e-9)
        assert c.frames.shape == (grid.frames_per_cell, grid.frame_height, grid.frame_width, 3)
        assert c.frames.dtype == np.uint8
        assert c.audio.shape == (grid.samples_per_cell,) and c.audio.dtype == np.float32
        ft = c.frame_times[c.frame_mask]
        # a slot's frame is the nearest one, so it lies at most one frame interval outside the cell
        assert np.all((ft >= c.t_start - 0.05) & (ft < c.t_end + 0.05))


@pytest.mark.parametrize("fmt", available_formats())
def test_flash_and_click_land_in_the_same_cell_for_every_format(tmp_path, fmt):
    spec = MediaSpec(duration_s=4.0, flashes=(EVENT_S,), clicks=(EVENT_S,))
    truth = make_media(tmp_path / f"clip{FORMATS[fmt][3]}", spec, fmt)
    cells = read(truth.path)
    assert len(cells) == 4
    check_geometry(cells, GRID, 0.0)
    assert all(c.frame_mask.all() and c.audio_mask.mean() > 0.97 for c in cells)
    expected = GRID.cell_index(truth.of("flash")[0].t_start)
    assert expected == GRID.cell_index(truth.of("click")[0].t_start) == 2
    flash_cell = GRID.cell_index(flash_time(cells))
    click_cell = GRID.cell_index(click_time(cells))
    assert flash_cell == click_cell == expected


@pytest.mark.parametrize("fmt", available_formats())
def test_audio_video_skew_is_under_one_frame(tmp_path, fmt):
    spec = MediaSpec(duration_s=4.0, flashes=(EVENT_S,), clicks=(EVENT_S,))
    truth = make_media(tmp_path / f"clip{FORMATS[fmt][3]}", spec, fmt)
    cells = read(truth.path, FINE)
    frame_s = 1 / spec.video_fps
    # mpeg-ts shifts both streams by the AAC priming (1024 samples); avi keeps mp3's encoder delay
    shift = 1024 / spec.sample_rate_hz if fmt == "ts" else 0.0
    audio_delay = AVI_AUDIO_DELAY_S if fmt == "avi" else 0.0
    tf, tc = flash_time(cells), click_time(cells)
    # the flash shows from the first frame at or after EVENT_S; the click starts exactly there
    assert EVENT_S + shift - 1e-6 <= tf < EVENT_S + shift + frame_s
    assert tc == pytest.approx(EVENT_S + shift + audio_delay, abs=0.005)
    assert abs(tf - tc) < frame_s


def test_variable_frame_rate_takes_the_nearest_frame(tmp_path):
    spec = MediaSpec(duration_s=4.0, vfr=True, flashes=(EVENT_S,), clicks=(EVENT_S,))
    truth = make_media(tmp_path / "vfr.mp4", spec, "mp4")
    real = frame_times(spec)
    cells = read(truth.path)
    check_geometry(cells, GRID, 0.0)
    dt = GRID.hop_s / GRID.frames_per_cell
    for c in cells:
        for j, t in enumerate(c.frame_times):
            slot = c.t_start + (j + 0.5) * dt
            nearest = real[np.argmin(np.abs(real - slot))]
            assert t == pytest.approx(nearest, abs=1e-4), (c.index, j)
    assert GRID.cell_index(flash_time(cells)) == 2


def test_non_zero_start_time_starts_cell_zero_there(tmp_path):
    spec = MediaSpec(duration_s=3.0, start_time_s=5.0, flashes=(6.3,), clicks=(6.3,))
    truth = make_media(tmp_path / "late.mkv", spec, "mkv")
    cells = read(truth.path)
    assert len(cells) == 3
    check_geometry(cells, GRID, 5.0)
    assert GRID.cell_index(flash_time(cells), 5.0) == GRID.cell_index(click_time(cells), 5.0) == 1


def test_audio_only_and_video_only(tmp_path):
    a = make_media(tmp_path / "a.mp4", MediaSpec(duration_s=3.0, video=False, flashes=(), clicks=(1.5,)), "mp4")
    cells = read(a.path)
    assert len(cells) == 3
    assert not any(c.frame_mask.any() or c.frames.any() for c in cells)
    assert all(c.audio_mask.mean() > 0.97 for c in cells)
    assert GRID.cell_index(click_time(cells)) == 1
    v = make_media(tmp_path / "v.webm", MediaSpec(duration_s=3.0, audio=False, flashes=(1.5,), clicks=()), "webm")
    cells = read(v.path)
    assert len(cells) == 3
    assert all(c.frame_mask.all() for c in cells)
    assert not any(c.audio_mask.any() or c.audio.any() for c in cells)
    assert GRID.cell_index(flash_time(cells)) == 1


def test_audio_starting_later_and_ending_earlier_is_masked(tmp_path):
    spec = MediaSpec(duration_s=5.0, audio_start_s=1.5, audio_end_s=3.5, flashes=(), clicks=(2.3,))
    truth = make_media(tmp_path / "partial.mkv", spec, "mkv")
    cells = read(truth.path)
    assert len(cells) == 5 and all(c.frame_mask.all() for c in cells)
    mask = np.concatenate([c.audio_mask for c in cells])
    t = np.arange(len(mask)) / GRID.sample_rate_hz
    tol = 0.03   # opus frames are 20 ms; the encoder may pad the last one
    assert not mask[t < 1.5 - tol].any()
    assert mask[(t >= 1.5 + tol) & (t < 3.5 - tol)].all()
    assert not mask[t >= 3.5 + tol].any()
    assert GRID.cell_index(click_time(cells)) == 2


def test_odd_sizes_are_scaled_by_ffmpeg_to_the_grid_size(tmp_path):
    grid = GridConfig(frame_height=61, frame_width=97)
    spec = MediaSpec(duration_s=2.0, width=321, height=241, flashes=(1.3,), clicks=())
    truth = make_media(tmp_path / "odd.mp4", spec, "mp4")
    cells = read(truth.path, grid)
    check_geometry(cells, grid, 0.0)
    frame = cells[0].frames[0].astype(int)
    # the background colour survives scaling: it is field colour 0 away from the square
    assert np.abs(frame[5, -5] - np.array([40, 60, 160])).max() < 12
    assert GRID.cell_index(flash_time(cells)) == 1


def test_progress_attributes(tmp_path):
    truth = make_media(tmp_path / "p.mp4", MediaSpec(duration_s=3.0), "mp4")
    with open_source(truth.path, GRID) as src:
        assert src.duration_s == pytest.approx(3.0, abs=0.05) and not src.is_live
        seen = [src.media_time_s for _ in src]
    assert seen == [1.0, 2.0, 3.0]


# -- broken inputs --------------------------------------------------------------------------------

def _valid_mp4(tmp_path):
    return make_media(tmp_path / "ok.mp4", MediaSpec(duration_s=2.0), "mp4").path


def _zero_byte(tmp_path):
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    return p


def _text_named_mp4(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 50)
    return p


def _truncated_mp4(tmp_path):
    data = open(_valid_mp4(tmp_path), "rb").read()
    p = tmp_path / "truncated.mp4"
    p.write_bytes(data[: len(data) // 2])    # the index (moov) is written last: it is gone
    return p


def _broken_index_mp4(tmp_path):
    data = bytearray(open(_valid_mp4(tmp_path), "rb").read())
    i = data.index(b"moov")
    data[i + 8:i + 400] = b"\xff" * 392       # garbage over the movie header and first track boxes
    p = tmp_path / "broken_index.mp4"
    p.write_bytes(bytes(data))
    return p


@pytest.mark.timeout(60)
@pytest.mark.parametrize("make_bad", [_zero_byte, _text_named_mp4, _truncated_mp4, _broken_index_mp4])
def test_broken_files_give_a_clear_source_error(tmp_path, make_bad):
    bad = make_bad(tmp_path)
    with pytest.raises(SourceError) as err:
        read(bad)
    assert str(bad) in str(err.value)
    assert err.value.reason


def test_missing_file_names_the_input(tmp_path):
    with pytest.raises(SourceError, match="nope.mp4"):
        open_source(str(tmp_path / "nope.mp4"), GRID)


def test_truncated_stream_file_yields_what_is_there(tmp_path):
    truth = make_media(tmp_path / "full.ts", MediaSpec(duration_s=4.0), "ts")
    data = open(truth.path, "rb").read()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: len(data) // 2])
    cells = read(cut)
    assert 1 <= len(cells) <= 3
    check_geometry(cells, GRID, 0.0)
    assert cells[0].frame_mask.all()


@pytest.mark.parametrize("second_start, reason", [(0.0, "pts_reset"), (100.0, "pts_jump")])
def test_timestamp_reset_or_jump_starts_a_new_segment_with_a_gap(tmp_path, second_start, reason):
    # two MPEG-TS recordings back to back: the second restarts its clock (a camera reboot) or jumps
    a = make_media(tmp_path / "a.ts", MediaSpec(duration_s=4.0, flashes=(2.3,), clicks=(2.3,)), "ts")
    b = make_media(tmp_path / "b.ts", MediaSpec(duration_s=4.0, start_time_s=second_start, flashes=(second_start + 2.3,),
                                                clicks=(second_start + 2.3,)), "ts")
    joined = tmp_path / "joined.ts"
    joined.write_bytes(open(a.path, "rb").read() + open(b.path, "rb").read())
    with open_source(str(joined), GRID) as src:
        items = list(src)
    gaps = [i for i in items if not isinstance(i, Cell)]
    assert [g.reason for g in gaps] == [reason]
    k = items.index(gaps[0])
    first, second = items[:k], items[k + 1:]
    assert len(first) == len(second) == 4
    assert {c.segment for c in first} == {0} and {c.segment for c in second} == {1}
    assert gaps[0].t_start == first[-1].t_end and second[0].t_start == pytest.approx(gaps[0].t_end)
    if reason == "pts_reset":      # the timeline keeps going forward instead of repeating 0..4 s
        assert gaps[0].t_end == gaps[0].t_start == 4.0
    else:                          # a file keeps its own times: the gap covers the jump
        assert gaps[0].t_end == pytest.approx(second_start, abs=0.05)
    for seg in (first, second):
        assert all(c.frame_mask.all() and c.audio_mask.mean() > 0.97 for c in seg)
        assert GRID.cell_index(flash_time(seg), seg[0].t_start) == GRID.cell_index(click_time(seg), seg[0].t_start) == 2


def test_raw_elementary_stream_without_timestamps(tmp_path):
    import av

    from tests.media import render_frame

    spec = MediaSpec(duration_s=2.0, flashes=(1.3,))
    path = tmp_path / "raw.h264"
    with av.open(str(path), "w", format="h264") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = spec.width, spec.height, "yuv420p"
        for i, t in enumerate(frame_times(spec)):
            f = av.VideoFrame.from_ndarray(render_frame(spec, t), format="rgb24")
            f.pts = i
            out.mux(vs.encode(f))
        out.mux(vs.encode())
    # no PTS in the file: times continue from frame to frame at the stream's nominal rate
    cells = read(path)
    assert len(cells) == 2 and all(c.frame_mask.all() for c in cells)
    assert not any(c.audio_mask.any() for c in cells)
    assert GRID.cell_index(flash_time(cells)) == 1


def _cells_and_decoded(path, skip: bool, one_cpu: bool, **options) -> tuple[list, int]:
    """Items and decoded frame count; ``one_cpu`` pins the process (and so FFmpeg) to one core:
    no frame threads, so the decoder holds no frames back and the reader sees packets early."""
    import os

    from pipeline.sources import SourceOptions

    cpus = os.sched_getaffinity(0)
    if one_cpu:
        os.sched_setaffinity(0, {min(cpus)})
    try:
        with open_source(str(path), GRID, options=SourceOptions(skip_unsampled=skip, **options)) as src:
            items = list(src)
            return items, src.frames_decoded
    finally:
        os.sched_setaffinity(0, cpus)


def _ffmpeg_clip(path, *args: str, seconds: float = 6.0, start: float = 0.0) -> None:
    import subprocess

    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=size=320x180:rate=30:duration={seconds}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", *args,
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-output_ts_offset", str(start), str(path)], check=True)


@pytest.mark.parametrize("name, args", [
    ("x264.mp4", ("-c:v", "libx264", "-preset", "veryfast", "-g", "60")),        # B-pyramid: some B referenced
    ("x264-nopyramid.mkv", ("-c:v", "libx264", "-x264-params", "bframes=5:b-pyramid=none")),
    ("x265.mp4", ("-c:v", "libx265", "-x265-params", "log-level=error")),
    ("x264-vfr.mkv", ("-c:v", "libx264", "-vf", "settb=1/1000,setpts=PTS+round(12*sin(N))", "-fps_mode", "vfr",
                      "-enc_time_base:v", "1:1000")),     # frames up to 12 ms off the 30 fps raster
    ("interlaced.ts", ("-vf", "fps=60,interlace", "-c:v", "libx264", "-flags", "+ildct+ilme")),   # 30 fps, MBAFF
    # 10 s at 30 fps, then a frame every 0.6 s: a skipped frame must not make the next look like a jump
    ("sparse.mkv", ("-c:v", "libx264", "-vf", "settb=1/1000,setpts='if(lt(N,300),N*1000/30,10000+(N-300)*600)'",
                    "-fps_mode", "vfr", "-enc_time_base:v", "1:1000")),
    ("jump.ts", ()),
])
@pytest.mark.parametrize("one_cpu", [False, True], ids=["threads", "one-cpu"])
def test_skipping_unsampled_frames_gives_the_cells_of_a_full_decode(tmp_path, name, args, one_cpu):
    """Frames no slot can pick and nothing references are not decoded; the cells must not change."""
    if "x265" in name and "libx265" not in __import__("subprocess").run(
            ["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout:
        pytest.skip("this ffmpeg has no libx265")
    path = tmp_path / name
    if name == "jump.ts":     # a recording whose clock jumps 100 s (B-frames on both sides)
        a, b = tmp_path / "a.ts", tmp_path / "b.ts"
        _ffmpeg_clip(a, "-c:v", "libx264", "-preset", "veryfast", seconds=4.0)
        _ffmpeg_clip(b, "-c:v", "libx264", "-preset", "veryfast", seconds=4.0, start=100.0)
        path.write_bytes(a.read_bytes() + b.read_bytes())
    else:
        _ffmpeg_clip(path, *args, seconds=12.0 if name == "sparse.mkv" else 6.0)
    opts = {"jump_s": 1.0} if name == "sparse.mkv" else {}
    full, n_full = _cells_and_decoded(path, False, one_cpu, **opts)
    fast, n_fast = _cells_and_decoded(path, True, one_cpu, **opts)
    assert [type(i) for i in fast] == [type(i) for i in full] and len(full) >= 6
    for a, b in zip(full, fast):
        assert (a.t_start, a.t_end, a.segment) == (b.t_start, b.t_end, b.segment)
        if isinstance(a, Cell):
            assert np.array_equal(a.frame_mask, b.frame_mask), a.index
            assert np.array_equal(a.frame_times, b.frame_times, equal_nan=True), a.index
            assert np.array_equal(a.frames, b.frames), a.index
            assert np.array_equal(a.audio, b.audio) and np.array_equal(a.audio_mask, b.audio_mask)
    # 30 fps into 4 slots a second: every encoding above has unreferenced B-frames far from the slots
    assert n_fast < 0.85 * n_full, (n_fast, n_full)
