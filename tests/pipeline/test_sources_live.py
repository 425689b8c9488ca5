"""Live sources against real servers (tests/servers.py): RTSP, silent TCP, UDP MPEG-TS, HLS, synthetic."""

from __future__ import annotations

import dataclasses
import datetime as dt
import glob
import logging
import threading
import time
import urllib.parse

import av
import pytest

from pipeline.errors import SourceError
from pipeline.grid import Cell, Gap
from pipeline.sources import SourceOptions, open_source
from tests.live import FAST, GRID, check_contiguous, check_reconnect, event_cells, read_across_restart
from tests.media import MediaSpec, make_media
from tests.servers import (
    free_port,
    have_ffmpeg_cli,
    have_gst_rtsp,
    hls_server,
    release_port,
    rtmp_server,
    rtsp_server,
    silent_tcp_server,
    udp_laggy_link,
    udp_ts_replay,
    udp_ts_sender,
)

SECRET = "s3cr3t-pw"
needs_gst = pytest.mark.skipif(not have_gst_rtsp(), reason="GStreamer RTSP server (python3-gi) not installed")
needs_ffmpeg = pytest.mark.skipif(not have_ffmpeg_cli(), reason="ffmpeg CLI not installed")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """20 s H.264 + AAC with a flash and a click together at 2.3 s (and 12.3 s)."""
    path = tmp_path_factory.mktemp("live") / "clip.mp4"
    return make_media(path, MediaSpec(duration_s=20.0, flashes=(2.3, 12.3), clicks=(2.3, 12.3)), "mp4").path


@needs_gst
@pytest.mark.timeout(90)
def test_rtsp_clip_reconnects_after_server_restart_without_leaking_the_password(clip, caplog):
    caplog.set_level(logging.DEBUG)
    with rtsp_server(clip) as srv:
        url = srv.url.replace("rtsp://", f"rtsp://viewer:{SECRET}@")
        with open_source(url, GRID, options=FAST) as src:
            assert src.is_live and SECRET not in src.source and "***" in src.source
            items = read_across_restart(src, srv.kill, srv.start)
    before, gap, after = check_reconnect(items)
    assert gap.extra["cause"]                                            # e.g. "Connection refused"
    assert gap.wall_end - gap.wall_start >= dt.timedelta(seconds=1.0)
    assert after[0].wall_start >= gap.wall_start
    for item in items:
        assert SECRET not in item.source + item.stream_id
    assert SECRET not in caplog.text and "reconnect" in caplog.text


# what a camera password can hold that a URL reserves: FFmpeg decodes the percent-encoded form
CAMERA_PW = "p@ss:w/rd%?#"


@needs_gst
@pytest.mark.timeout(60)
def test_rtsp_camera_that_wants_a_login_opens_with_a_percent_encoded_password(caplog):
    caplog.set_level(logging.DEBUG)
    encoded = urllib.parse.quote(CAMERA_PW, safe="")
    with rtsp_server(login=("viewer", CAMERA_PW)) as srv:
        with open_source(srv.url.replace("rtsp://", f"rtsp://viewer:{encoded}@"), GRID, live=True,
                         options=FAST) as src:
            cells = [c for _, c in zip(range(3), src)]
            assert encoded not in src.source and "viewer:***@" in src.source
    assert len(cells) == 3 and all(isinstance(c, Cell) and c.frame_mask.any() for c in cells)
    assert encoded not in caplog.text


@needs_gst
@pytest.mark.timeout(60)
@pytest.mark.parametrize("login, reason, hint", [
    ("viewer:wrong-pw@", "401 Unauthorized", "check the user name and password"),
    ("viewer:p@ss@", "401 Unauthorized", "percent-encode @"),     # typed raw: FFmpeg logs in as "p@ss"
    ("", "401 Unauthorized", "the URL carries no login"),
])
def test_rtsp_camera_refusing_the_login_fails_at_open_with_a_hint_and_no_password(login, reason, hint, caplog):
    caplog.set_level(logging.DEBUG)
    with rtsp_server(login=("viewer", CAMERA_PW)) as srv:
        with pytest.raises(SourceError) as err:
            with open_source(srv.url.replace("rtsp://", f"rtsp://{login}"), GRID, live=True, options=FAST) as src:
                list(src)
    msg = str(err.value)
    assert reason in msg and hint in msg, msg
    for secret in ("wrong-pw", "p@ss", "w/rd"):
        assert secret not in msg and secret not in caplog.text


@pytest.mark.parametrize("url, error, hint", [
    ("rtsp://viewer:pw@cam/live", av.HTTPUnauthorizedError(1, "401"), "check the user name and password"),
    ("http://cam/live.m3u8", av.HTTPForbiddenError(1, "403"), "the URL carries no login"),
    # a raw "/" in a password: FFmpeg takes "viewer:p@ss:w" for the host part and fails on it
    ("rtsp://viewer:p@ss:w/rd@127.0.0.1:8554/live", av.InvalidDataError(1, "Invalid argument"), "percent-encode"),
    ("rtsp://viewer:p/w@127.0.0.1/live", av.InvalidDataError(1, "x"), "percent-encode"),
    ("rtsp://viewer:pw@cam/live", av.InvalidDataError(1, "x"), ""),
    ("/media/clip.mp4", av.InvalidDataError(1, "x"), ""),
])
def test_open_errors_hint_at_the_login(url, error, hint):
    from pipeline.sources.opening import login_hint

    got = login_hint(url, error)
    assert (hint in got) if hint else got == ""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("scheme", ["rtsp", "http"])
def test_server_that_sends_nothing_fails_within_the_deadline(scheme):
    deadline = 2.0
    with silent_tcp_server(scheme) as srv:
        url = srv.url.replace(f"{scheme}://", f"{scheme}://admin:{SECRET}@")
        started = time.monotonic()
        with pytest.raises(SourceError) as err:
            with open_source(url, GRID, live=True,
                             options=SourceOptions(open_timeout_s=deadline, read_timeout_s=deadline, reconnect=False)) as src:
                list(src)
        elapsed = time.monotonic() - started
        assert srv.connections >= 1
    assert elapsed < deadline + 2.0
    assert "no answer within 2 s" in str(err.value)
    assert SECRET not in str(err.value) and "admin:***@127.0.0.1" in str(err.value)


@needs_ffmpeg
@pytest.mark.timeout(90)
def test_udp_mpegts_sender_that_stops_and_restarts(tmp_path):
    ts = make_media(tmp_path / "cam.ts", MediaSpec(duration_s=10.0, flashes=(2.3,), clicks=(2.3,)), "ts").path
    with udp_ts_sender(ts) as snd, open_source(snd.url, GRID, options=FAST) as src:
        # down 2.5 s, longer than the read deadline: a reconnect
        items = read_across_restart(src, snd.stop, snd.start, after_cells=3, cells_after_gap=3, down_s=2.5)
    gaps = [i for i in items if isinstance(i, Gap)]
    assert [g.reason for g in gaps] == ["reconnect"]
    k = items.index(gaps[0])
    check_contiguous(items[:k])
    check_contiguous(items[k + 1:])
    assert items[k + 1].t_start == pytest.approx(gaps[0].t_end)
    # 2.5 s without a sender, less what ffmpeg -re had sent ahead (its initial burst is 0.5 s)
    assert gaps[0].t_end - gaps[0].t_start > 1.5
    assert all(c.frame_mask.all() for c in items[k + 1:-1])


@needs_ffmpeg
@pytest.mark.timeout(90)
def test_capture_times_recover_after_a_link_that_delivered_the_start_late(tmp_path):
    """A link holds the first 3 s of a UDP camera 0.8 s, then drains: cells made from late packets
    have capture times 0.8 s late (nothing better was known); once packets arrive on time, the
    capture times move back, by at most a fifth of a hop per cell, so they stay in order."""
    ts = make_media(tmp_path / "cam.ts", MediaSpec(duration_s=20.0), "ts").path
    port = free_port()
    got: list[tuple[dt.datetime, Cell]] = []
    try:
        with udp_laggy_link(port, delay_s=0.8, lag_for_s=3.0) as link, udp_ts_sender(ts, port=link.port):
            with open_source(f"udp://127.0.0.1:{port}", GRID, options=FAST) as src:
                for item in src:
                    got.append((dt.datetime.now(dt.timezone.utc), item))
                    if len(got) == 11:
                        break
    finally:
        release_port(port)
    cells = [c for _, c in got]
    assert all(isinstance(c, Cell) for c in cells), "no gap expected: the link delays, it does not drop"
    hop = GRID.hop_s
    steps = [(b.wall_start - a.wall_start).total_seconds() for a, b in zip(cells, cells[1:])]
    assert all(0.8 * hop - 1e-6 <= s <= hop + 1e-6 for s in steps), steps
    # how long after the capture of its end each cell reached us: never before it (a negative value
    # is a capture time that is too late), and the last cells, made of on-time packets, soon after
    waited = [(at - c.wall_start).total_seconds() - hop for at, c in got]
    assert min(waited[-3:]) >= -0.1, waited
    # they moved back by about the 0.8 s the link held the start (the min never undershoots it)
    moved = len(steps) * hop - sum(steps)
    assert 0.4 <= moved <= 1.2, (moved, steps)


@needs_ffmpeg
@pytest.mark.timeout(90)
def test_capture_times_follow_a_camera_clock_that_runs_slow(tmp_path):
    """A camera whose clock runs 5% slow sends 1 s of timestamps every 1.053 s: its capture times
    must step by 1.053 s too, not by the 1 s its timestamps say (that would drift earlier and
    earlier, a minute a day at 700 ppm)."""
    ts = make_media(tmp_path / "cam.ts", MediaSpec(duration_s=30.0), "ts").path
    opts = dataclasses.replace(FAST, clock_window_s=3.0)
    with udp_ts_sender(ts, readrate=0.95) as snd, open_source(snd.url, GRID, options=opts) as src:
        cells = [c for _, c in zip(range(16), src)]
    assert all(isinstance(c, Cell) for c in cells)
    steps = [(b.wall_start - a.wall_start).total_seconds() for a, b in zip(cells, cells[1:])]
    assert all(0.8 - 1e-6 <= s <= 1.2 + 1e-6 for s in steps), steps
    late = steps[6:]                    # once the window holds only packets of the slow clock
    assert sum(late) / len(late) == pytest.approx(1 / 0.95, abs=0.03), steps   # 1.0 without the window


@needs_ffmpeg
@pytest.mark.timeout(60)
def test_udp_read_deadline_and_giving_up_after_max_reconnects(tmp_path):
    ts = make_media(tmp_path / "cam.ts", MediaSpec(duration_s=10.0), "ts").path
    opts = SourceOptions(open_timeout_s=1, read_timeout_s=1, backoff_initial_s=0.1, max_reconnects=2)
    with udp_ts_sender(ts) as snd:
        cells = []
        with pytest.raises(SourceError) as err:
            with open_source(snd.url, GRID, options=opts) as src:
                for item in src:
                    cells.append(item)
                    if len(cells) == 2:
                        snd.stop()
                        stopped = time.monotonic()
        # 1 s read deadline, then two reopen attempts of 1 s each after 0.1 s and 0.2 s of backoff
        assert time.monotonic() - stopped < 1 + 2 * 1 + 0.3 + 2.0
    assert "gave up after 2 reconnect attempts" in str(err.value)
    assert snd.url in str(err.value)


@needs_ffmpeg
@pytest.mark.timeout(60)
def test_close_from_another_thread_unblocks_a_waiting_iterator(tmp_path):
    ts = make_media(tmp_path / "cam.ts", MediaSpec(duration_s=10.0), "ts").path
    with udp_ts_sender(ts) as snd:
        src = open_source(snd.url, GRID, options=SourceOptions(read_timeout_s=60))
        it = iter(src)
        assert isinstance(next(it), Cell)
        snd.stop()                                           # the next read blocks (60 s deadline)
        threading.Timer(0.5, src.close).start()
        started = time.monotonic()
        rest = list(it)
        assert time.monotonic() - started < 3.0
    assert all(isinstance(i, Cell) for i in rest)


@needs_ffmpeg
@pytest.mark.timeout(60)
@pytest.mark.parametrize("serve, n_cells, events", [
    # a live playlist starts segments behind its edge: the first media is old, later media is fresh,
    # and where in the clip it starts depends on the playlist's window
    (hls_server, 4, None),
    # ffmpeg -listen plays the clip from its start to the client (measured: the first RTMP media
    # comes ~0.4 s later than the rest)
    (rtmp_server, 3, ({2}, {2})),
], ids=["hls", "rtmp"])
def test_live_server_of_a_clip(serve, n_cells, events, clip):
    with serve(clip) as srv:
        with open_source(srv.url, GRID, options=FAST) as src:
            assert src.is_live
            cells = [c for _, c in zip(range(n_cells), src)]
    assert all(isinstance(c, Cell) for c in cells)
    check_contiguous(cells, catch_up_s=None)
    assert all(c.frame_mask.all() and c.audio_mask.mean() > 0.95 for c in cells)
    if events is not None:
        assert event_cells(cells) == events


@pytest.mark.timeout(30)
def test_synthetic_pattern_realtime_and_not():
    url = "synthetic:?duration=3&flashes=1.3&clicks=1.3"
    with open_source(url, GRID) as src:
        assert not src.is_live and src.duration_s == 3.0
        cells = list(src)
    assert [c.t_start for c in cells] == [0.0, 1.0, 2.0]
    assert all(c.frame_mask.all() and c.audio_mask.all() and c.wall_start is None for c in cells)
    assert event_cells(cells) == ({1}, {1})
    started = time.monotonic()
    with open_source(url + "&realtime=true", GRID) as src:
        assert src.is_live
        live = list(src)
    assert time.monotonic() - started >= 2.5                 # paced at wall-clock speed
    check_contiguous(live)
    assert event_cells(live) == ({1}, {1})


def test_bad_synthetic_parameters_are_named():
    with pytest.raises(SourceError, match="synthetic:.*bad synthetic parameter"):
        open_source("synthetic:?fps=fast", GRID)


@pytest.mark.timeout(30)
def test_live_consumer_falling_behind_gets_dropped_gaps_that_tile_the_timeline():
    with open_source("synthetic:?duration=30", GRID, live=True, options=SourceOptions(queue_cells=2)) as src:
        items = []
        for item in src:
            items.append(item)
            if len(items) == 1:
                time.sleep(1.0)          # a slow consumer: the reader runs ahead and must drop
        dropped = src.dropped_cells
    gaps = [i for i in items if isinstance(i, Gap)]
    assert gaps and all(g.reason == "dropped" for g in gaps)
    # cells and gaps cover [0, 30) in order, with no hole and no overlap
    assert items[0].t_start == 0.0 and items[-1].t_end == 30.0
    for a, b in zip(items, items[1:]):
        assert b.t_start == pytest.approx(a.t_end)
    assert sum(round(g.t_end - g.t_start) for g in gaps) == dropped
    assert all(g.wall_end - g.wall_start == dt.timedelta(seconds=g.t_end - g.t_start) for g in gaps)


@pytest.mark.timeout(60)
def test_live_camera_restarting_its_clock_starts_a_segment_on_a_continuing_timeline(tmp_path):
    # a camera that reboots: its MPEG-TS timestamps go back to 0 mid-stream, the connection stays
    a = make_media(tmp_path / "a.ts", MediaSpec(duration_s=3.0, flashes=(1.3,), clicks=(1.3,)), "ts")
    b = make_media(tmp_path / "b.ts", MediaSpec(duration_s=3.0, flashes=(1.3,), clicks=(1.3,)), "ts")
    joined = tmp_path / "reboot.ts"
    joined.write_bytes(open(a.path, "rb").read() + open(b.path, "rb").read())
    with udp_ts_replay(joined, 6.0) as snd:
        with open_source(snd.url, GRID, options=SourceOptions(read_timeout_s=1.5, reconnect=False)) as src:
            items = []
            with pytest.raises(SourceError, match="no data for 1.5 s"):
                for item in src:                 # the stream ends in a read timeout once the camera is done
                    items.append(item)
    gaps = [i for i in items if isinstance(i, Gap)]
    assert [g.reason for g in gaps] == ["pts_reset"]
    k = items.index(gaps[0])
    before, after = items[:k], items[k + 1:]
    assert {c.segment for c in before} == {0} and {c.segment for c in after} == {1}
    check_contiguous(before)
    check_contiguous(after)
    # the timeline keeps going forward: the new segment starts where the wall clock says, not at 0
    assert after[0].t_start >= before[-1].t_end and after[0].t_start == pytest.approx(gaps[0].t_end)
    assert after[0].wall_start >= before[-1].wall_start
    for seg in (before, after):
        flash, click = event_cells(seg)
        assert flash == click == {1}


@pytest.mark.skipif(not glob.glob("/dev/video*"), reason="no V4L2 device on this machine")
@pytest.mark.timeout(30)
def test_v4l2_camera_gives_live_cells():
    dev = sorted(glob.glob("/dev/video*"))[0]
    with open_source(dev, GRID, options=SourceOptions(open_timeout_s=5, read_timeout_s=5, reconnect=False)) as src:
        assert src.is_live
        cells = [c for _, c in zip(range(2), src)]
    check_contiguous(cells)
    assert all(c.frame_mask.any() for c in cells)


@needs_ffmpeg
@pytest.mark.timeout(60)
def test_vod_hls_playlist_is_read_once_like_a_file(tmp_path):
    import subprocess

    from tests.servers import static_http_server

    clip = make_media(tmp_path / "vod.mp4", MediaSpec(duration_s=5.0, flashes=(2.3,), clicks=(2.3,)), "mp4").path
    (tmp_path / "hls").mkdir()
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", clip, "-c", "copy", "-f", "hls", "-hls_time", "2",
                    "-hls_list_size", "0", "-hls_playlist_type", "vod", str(tmp_path / "hls" / "index.m3u8")], check=True)
    with static_http_server(tmp_path / "hls") as base:
        with open_source(base + "/index.m3u8", GRID, options=FAST) as src:
            assert not src.is_live and src.duration_s == pytest.approx(5.0, abs=0.1)
            cells = list(src)
    assert all(isinstance(c, Cell) and c.wall_start is None for c in cells)
    assert [c.index for c in cells] == [0, 1, 2, 3, 4]
    assert event_cells(cells) == ({2}, {2})


@pytest.mark.timeout(30)
def test_realtime_replay_of_a_file(tmp_path):
    clip = make_media(tmp_path / "rt.mp4", MediaSpec(duration_s=2.0), "mp4").path
    started = time.monotonic()
    with open_source(clip, GRID, options=SourceOptions(realtime=True)) as src:
        ends = [(c.t_end, time.monotonic() - started) for c in src]
    assert [e for e, _ in ends] == [1.0, 2.0]
    # each cell leaves once its end is due (the first one sets the origin when it is ready)
    assert ends[1][1] - ends[0][1] >= 0.9


def test_a_protocol_missing_from_ffmpeg_is_named(monkeypatch):
    """Without an ffmpeg CLI that could relay it, an SRT input fails naming the missing protocol."""
    import av

    monkeypatch.setattr("pipeline.sources.opening.can_relay", lambda url: False)

    try:
        av.open("srt://127.0.0.1:1?mode=caller", timeout=1).close()
        pytest.skip("this PyAV's FFmpeg has SRT")
    except av.ProtocolNotFoundError:
        pass
    except av.FFmpegError:
        pytest.skip("this PyAV's FFmpeg has SRT")
    with pytest.raises(SourceError, match="srt://127.0.0.1:1.*has no 'srt' protocol"):
        open_source("srt://127.0.0.1:1?mode=caller", GRID, options=SourceOptions(open_timeout_s=1))
