"""GridAligner on hand-made inputs: which frame each slot takes, where audio lands, when cells come out."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.grid import GridAligner, GridConfig, slot_times

GRID = GridConfig(hop_s=1.0, fps=4.0, frame_height=2, frame_width=3)
SR = GRID.sample_rate_hz


def frame(value: int) -> np.ndarray:
    return np.full((2, 3, 3), value, np.uint8)


def aligner(**kw) -> GridAligner:
    args = dict(stream_id="s", t0_s=0.0, has_video=True, has_audio=True, frame_tolerance_s=0.1)
    return GridAligner(GRID, **{**args, **kw})


def test_slots_take_the_nearest_frame_and_convert_only_those():
    converted = []
    al = aligner(has_audio=False, convert=lambda f: converted.append(f) or frame(f))
    # slots of cell 0 are at 0.125, 0.375, 0.625, 0.875
    times = [0.0, 0.1, 0.2, 0.35, 0.5, 0.6, 0.75, 0.95]
    for i, t in enumerate(times):
        al.push_video(t, i)
    al.push_video(1.05, 99)
    cells = al.pop_ready()
    assert len(cells) == 1
    c = cells[0]
    assert list(c.frame_times) == [0.1, 0.35, 0.6, 0.95]     # 0.75 vs 0.95 for 0.875: 0.95 is nearer
    assert list(c.frames[:, 0, 0, 0]) == [1, 3, 5, 7]
    assert converted == [1, 3, 5, 7]                          # the other frames were never converted
    assert c.frame_mask.all() and not c.has_audio


def test_tie_goes_to_the_earlier_frame_and_far_frames_leave_the_slot_empty():
    al = aligner(has_audio=False, frame_tolerance_s=0.1)
    al.push_video(0.075, 1)       # 0.05 before slot 0.125
    al.push_video(0.175, 2)       # 0.05 after it: a tie
    al.push_video(0.9, 3)         # slots 0.375 and 0.625 have no frame within 0.1 s
    (c,) = al.flush()
    assert list(c.frame_mask) == [True, False, False, True]
    assert c.frame_times[0] == 0.075 and c.frame_times[3] == 0.9
    assert np.isnan(c.frame_times[1]) and not c.frames[1].any()


def test_audio_is_placed_by_timestamp_with_holes_masked():
    al = aligner(has_video=False)
    al.push_audio(0.0, np.ones(4000, np.float32))             # 0 .. 0.25 s
    al.push_audio(0.5, np.full(12000, 2.0, np.float32))       # 0.5 .. 1.25 s: a 0.25 s hole before
    c0, c1 = al.flush()
    assert c0.audio_mask[:4000].all() and not c0.audio_mask[4000:8000].any() and c0.audio_mask[8000:].all()
    assert not c0.audio[4000:8000].any()
    assert c1.audio_mask[:4000].all() and not c1.audio_mask[4000:].any()
    assert c1.audio[:4000].tolist() == [2.0] * 4000


def test_audio_timestamp_jitter_below_the_slack_stays_contiguous():
    al = aligner(has_video=False)
    t, n = 0.0, 0
    for k in range(20):
        chunk = np.full(800, k, np.float32)
        jitter = 0.0 if k == 0 else 0.0001 if k % 2 else -0.0001    # +-1.6 samples of rounding noise
        al.push_audio(t + jitter, chunk)
        t += 800 / SR
        n += 800
    (c,) = al.flush()
    assert c.audio_mask.all()
    assert np.array_equal(c.audio, np.repeat(np.arange(20, dtype=np.float32), 800))


def test_cells_wait_for_the_slower_stream_up_to_the_lag_limit():
    al = aligner(max_lag_s=2.0)
    for i in range(15):                                       # video to 1.5 s
        al.push_video(i * 0.1, i)
    assert al.pop_ready() == []                               # no audio yet: cell 0 waits for it
    al.push_audio(0.0, np.zeros(SR, np.float32))
    assert [c.index for c in al.pop_ready()] == [0]
    for i in range(15, 45):                                   # video reaches 4.4 s, audio stuck at 1 s
        al.push_video(i * 0.1, i)
    ready = al.pop_ready()
    assert [c.index for c in ready] == [1, 2, 3]              # audio is > 2 s behind: stop waiting for it
    assert not ready[0].has_audio and ready[0].frame_mask.all()
    al.push_audio(1.0, np.ones(SR, np.float32))               # late audio for an emitted cell is dropped
    rest = al.flush()
    assert [c.index for c in rest] == [4] and not rest[0].has_audio


def test_segment_offset_and_wall_clock():
    import datetime as dt

    wall = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    al = aligner(t0_s=100.0, time_offset_s=-90.0, wall_t0=wall, segment=3, is_live=True, has_audio=False)
    for i in range(21):
        al.push_video(100.0 + i * 0.1, i)
    c0, c1 = al.flush()
    assert (c0.t_start, c0.t_end, c1.t_start) == (10.0, 11.0, 11.0)
    assert c0.frame_times[0] == pytest.approx(10.1)
    assert c1.wall_start == wall + dt.timedelta(seconds=1) and c1.segment == 3 and c1.is_live


def test_slot_times_and_cell_count_at_the_end():
    assert list(slot_times(GRID, 2.0)) == [2.125, 2.375, 2.625, 2.875]
    al = aligner(has_audio=False, frame_tolerance_s=0.04)
    for i in range(75):                                       # 3.0 s of 25 fps video
        al.push_video(i * 0.04, i)
    assert len(al.pop_ready() + al.flush()) == 3              # no near-empty 4th cell
