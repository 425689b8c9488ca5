"""``srt://`` sources through the ffmpeg CLI relay, against a real SRT sender (ffmpeg as listener)."""

from __future__ import annotations

import doctest
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import pipeline.redact
from pipeline.errors import SourceError
from pipeline.grid import Cell, Gap
from pipeline.redact import redact
from pipeline.sources import SourceOptions, open_source
from pipeline.sources.relay import cli_input_protocols
from tests.live import FAST, GRID, check_contiguous, check_reconnect, event_cells, read_across_restart
from tests.media import MediaSpec, make_media
from tests.servers import free_port, release_port, srt_sender

SECRET = "srt-s3cr3t-passphrase"
needs_srt = pytest.mark.skipif("srt" not in cli_input_protocols(), reason="no ffmpeg CLI with the srt protocol")


@pytest.fixture(scope="module")
def ts_clip(tmp_path_factory):
    """10 s H.264 + AAC in MPEG-TS with a flash and a click together at 2.3 s."""
    path = tmp_path_factory.mktemp("srt") / "cam.ts"
    return make_media(path, MediaSpec(duration_s=10.0, flashes=(2.3,), clicks=(2.3,)), "ts").path


def child_pids(parent: int | None = None) -> list[int]:
    """Processes whose parent is ``parent`` (this one by default)."""
    parent = os.getpid() if parent is None else parent
    pids = []
    for d in Path("/proc").iterdir():
        try:
            if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                pids.append(int(d.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def relay_pids(parent: int | None = None) -> list[int]:
    """avgrid's SRT relays started by process ``parent`` (this one by default): ffmpeg children that
    read a concat script on stdin with only pipe and srt allowed. (The test senders are ffmpeg
    children too, with the URL on their command line.)"""
    pids = []
    for pid in child_pids(parent):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"ffmpeg" in c for c in cmd[:1]) and b"pipe,srt" in cmd:
            pids.append(pid)
    return pids


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:         # it exited meanwhile
        return ""


def wait_gone(pids, timeout_s: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{p}").exists() and "Z" not in _state(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_passphrase_is_masked():
    assert redact("srt://h:9000?mode=caller&passphrase=abcdefghij12&latency=20") == \
        "srt://h:9000?mode=caller&passphrase=***&latency=20"
    assert doctest.testmod(pipeline.redact).failed == 0


@needs_srt
@pytest.mark.timeout(90)
def test_srt_sender_restart_reconnects_with_a_gap_and_keeps_the_passphrase_secret(ts_clip, caplog):
    caplog.set_level(logging.DEBUG)
    with srt_sender(ts_clip, passphrase=SECRET) as snd:
        with open_source(snd.url, GRID, options=FAST) as src:
            assert src.is_live and SECRET not in src.source + src.stream_id and "passphrase=***" in src.source
            # ps shows every local user each process's command line: the relay's holds no URL
            ours = [p for p in child_pids() if p != snd.proc.pid and cmdline(p).split(" ")[0].endswith("ffmpeg")]
            assert SECRET in cmdline(snd.proc.pid) and ours and not any(SECRET in cmdline(p) for p in ours)
            relays = relay_pids()
            assert relays == ours and "srt://" not in cmdline(relays[0])
            items = read_across_restart(src, snd.stop, snd.start)      # mid-stream: the encoder dies and comes back
            relays = relay_pids()
            assert len(relays) == 1 and SECRET not in cmdline(relays[0])
        assert relays and wait_gone(relays), "the relay outlived its source"
    check_reconnect(items)
    for item in items:
        assert SECRET not in item.source + item.stream_id + str(item.extra if isinstance(item, Gap) else "")
    assert SECRET not in caplog.text and "reconnect" in caplog.text


@needs_srt
@pytest.mark.timeout(60)
def test_wrong_passphrase_fails_with_the_relays_reason_masked(ts_clip):
    wrong = "not-the-" + SECRET
    with srt_sender(ts_clip, passphrase=SECRET) as snd:
        url = snd.url.replace(SECRET, wrong)
        with pytest.raises(SourceError) as err:
            open_source(url, GRID, options=SourceOptions(open_timeout_s=5, read_timeout_s=2))
        assert not relay_pids()
    msg = str(err.value)
    assert "ffmpeg CLI relay" in msg and "exited with status" in msg and "passphrase=***" in msg
    assert SECRET not in msg and wrong not in msg


@needs_srt
@pytest.mark.timeout(60)
def test_open_deadline_holds_when_no_encoder_ever_calls():
    deadline = 3.0
    port = free_port()
    url = f"srt://127.0.0.1:{port}?mode=listener&passphrase={SECRET}"      # we listen; nobody calls
    started = time.monotonic()
    try:
        with pytest.raises(SourceError) as err:
            open_source(url, GRID, options=SourceOptions(open_timeout_s=deadline, read_timeout_s=deadline,
                                                         reconnect=False))
        assert time.monotonic() - started < deadline + 2.0
        assert not relay_pids()
    finally:
        release_port(port)
    assert f"no answer within {deadline:g} s" in str(err.value) and SECRET not in str(err.value)


@needs_srt
@pytest.mark.timeout(60)
def test_close_from_another_thread_kills_the_relay(ts_clip):
    with srt_sender(ts_clip) as snd:
        src = open_source(snd.url, GRID, options=SourceOptions(read_timeout_s=60))
        it = iter(src)
        assert isinstance(next(it), Cell)
        relays = relay_pids()
        assert len(relays) == 1
        threading.Timer(0.5, src.close).start()
        started = time.monotonic()
        rest = list(it)
        assert time.monotonic() - started < 3.0
        assert wait_gone(relays)
    assert all(isinstance(i, Cell) for i in rest)


@needs_srt
@pytest.mark.timeout(60)
def test_avgrid_as_srt_listener_that_an_encoder_calls(ts_clip):
    with srt_sender(ts_clip, passphrase=SECRET, listener=False) as snd:
        assert "mode=listener" in snd.url
        with open_source(snd.url, GRID, options=FAST) as src:
            cells = []
            for item in src:
                cells.append(item)
                if len(cells) == 3:
                    break
    check_contiguous(cells)
    assert all(c.frame_mask.all() and c.audio_mask.mean() > 0.95 for c in cells)
    assert event_cells(cells) == ({2}, {2})


_CHILD = """
import sys, time
from pipeline.grid import GridConfig
from pipeline.sources import open_source
src = open_source(sys.argv[1], GridConfig(frame_height=48, frame_width=64))
next(iter(src))
print("READING", flush=True)
time.sleep(60)
"""


@needs_srt
@pytest.mark.timeout(60)
def test_relay_dies_with_a_killed_avgrid_process(ts_clip):
    with srt_sender(ts_clip) as snd:
        child = subprocess.Popen([sys.executable, "-c", _CHILD, snd.url], stdout=subprocess.PIPE, text=True,
                                 cwd=Path(__file__).resolve().parents[2], env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            assert child.stdout.readline().strip() == "READING"
            relays = relay_pids(child.pid)
            assert len(relays) == 1
            # a silent sender: the relay writes nothing, so no broken pipe would end it (SRT's own
            # peer-idle timeout is 5 s)
            snd.stop()
            child.send_signal(signal.SIGKILL)            # no finally, no atexit: only the kernel can clean up
            child.wait()
            assert wait_gone(relays, timeout_s=2.0), "the relay outlived a SIGKILLed avgrid"
        finally:
            child.kill()
            child.wait()
