"""What `avgrid run` prints while it runs, walked with a fake clock: each stream's state in words
(connecting, running, reconnecting, stalled with how long no media came), a lag that is never negative,
and a summary in stream terms (uptime, cells, gaps, reconnects) instead of x-realtime."""

from __future__ import annotations

import datetime as _dt
import io

import numpy as np

from pipeline.grid import Cell
from pipeline.runtime.progress import StatusLines, lag_s, state_text
from pipeline.runtime.state import InputResult, InputSpec, RunSummary, StreamRun


def cell(wall_start) -> Cell:
    return Cell(stream_id="cam", index=0, t_start=0.0, t_end=1.0, segment=0,
                frames=np.zeros((4, 8, 8, 3), np.uint8), frame_mask=np.ones(4, bool), frame_times=np.arange(4) / 4.0,
                audio=np.zeros(16000, np.float32), audio_mask=np.ones(16000, bool), wall_start=wall_start)


def test_status_lines_say_what_each_stream_is_doing():
    run = StreamRun(InputSpec("rtsp://cam/x", name="cam", display="cam=rtsp://cam/x"), None, InputResult("cam"))
    run.result.stream_id = "cam"
    t0 = run.started
    lines = StatusLines(5.0, 1.0, file=io.StringIO())
    assert state_text(run, t0 + 2.0, 1.0) == "connecting (2 s)"
    run.source_state, run.last_media_at = "reading", t0 + 3.0
    run.result.cells, run.result.gaps, run.result.reconnects = 40, 1, 1
    text = lines.line(run, t0 + 4.0)
    assert "cam: running " in text and "cells 40" in text and "gaps 1" in text and "reconnects 1" in text
    assert "up 4 s" in text and "realtime" not in text
    # a 13 s outage: nothing arrives while the source still believes it is reading
    assert state_text(run, t0 + 16.0, 1.0) == "stalled (no media for 13 s)"
    assert "cam: stalled (no media for 13 s)" in lines.line(run, t0 + 16.0)
    run.source_state = "reconnecting"
    assert state_text(run, t0 + 17.0, 1.0) == "reconnecting (no media for 14 s)"
    run.source_state, run.last_media_at = "reading", t0 + 18.0
    assert state_text(run, t0 + 18.5, 1.0) == "running"
    # a longer hop waits 3 cells before calling it stalled
    assert state_text(run, t0 + 18.0 + 6.0, 1.0).startswith("stalled") and state_text(run, t0 + 24.0, 4.0) == "running"


def test_lag_is_never_negative():
    run = StreamRun(InputSpec("synthetic:", name="cam"), None, InputResult("cam"))
    now = _dt.datetime.now(_dt.timezone.utc)
    run.last_cell = cell(now + _dt.timedelta(seconds=2))        # a capture-time estimate a little early
    assert lag_s(run, 1.0) == 0.0
    run.last_cell = cell(now - _dt.timedelta(seconds=5))
    assert 3.9 < lag_s(run, 1.0) < 4.5                          # 5 s ago, minus the cell's own hop


def test_the_live_summary_speaks_of_streams():
    a = InputResult("door", stream_id="door", status="ok", cells=58, gaps=2, reconnects=1, wall_s=61.2,
                    media_s=58.0)
    b = InputResult("yard", stream_id="yard", status="ok", cells=60, wall_s=61.0, media_s=60.0)
    text = RunSummary("r1", [a, b], wall_s=62.0, live=True).table()
    head = text.splitlines()[0].split()
    assert head[:5] == ["stream", "status", "uptime", "s", "cells"] and "gaps" in head
    assert "run r1: 2 streams for 62.0 s: 118 cells, 2 gaps, 1 reconnects, 0 dropped cells" in text
    assert "realtime" not in text
    archive = RunSummary("r2", [b], wall_s=30.0).table()
    assert "(2.00x realtime)" in archive and "media s" in archive.splitlines()[0]


# -- a real outage ------------------------------------------------------------------------------

def test_a_real_feed_outage_shows_as_stalled_then_running_again(tmp_path, ray_local):
    import re

    import pytest

    from pipeline.config import load_config
    from pipeline.runtime import Engine
    from tests.live import Outage
    from tests.media import MediaSpec, make_media
    from tests.servers import have_ffmpeg_cli, udp_ts_sender

    if not have_ffmpeg_cli():
        pytest.skip("needs the ffmpeg command")
    ts = make_media(tmp_path / "cam.ts", MediaSpec(duration_s=4.0, width=160, height=120), "ts").path
    cfg = load_config(overrides={"out": str(tmp_path / "out"), "duration": 24.0})
    printed = io.StringIO()
    with udp_ts_sender(ts) as snd:
        outage = Outage(snd, after_cells=3, down_s=9.0)
        summary = Engine(cfg, observers=[StatusLines(0.5, 1.0, file=printed), outage]).run([f"yard={snd.url}"])
    lines = [ln for ln in printed.getvalue().splitlines() if "yard:" in ln]
    states = [re.search(r"yard: (\w+)", ln).group(1) for ln in lines]
    assert outage.thread.ident is not None and summary.exit_code == 0, summary.table()
    first_stall = states.index("stalled")
    assert "running" in states[:first_stall] and "running" in states[first_stall:], states
    quiet = [int(m.group(1)) for ln in lines if (m := re.search(r"no media for (\d+) s", ln))]
    assert max(quiet) >= 7, quiet                             # it kept saying how long nothing came
    lags = [float(m.group(1)) for ln in lines if (m := re.search(r"lag (-?[\d.]+) s", ln))]
    assert lags and min(lags) >= 0.0
    assert summary.inputs[0].gaps >= 1                        # the outage is a gap in the records too
