"""Inputs: expanding paths, naming sources, telling live from files; a bad file among good ones."""

from __future__ import annotations

import os
import threading

import pytest

from pipeline.errors import SourceError
from pipeline.grid import GridConfig
from pipeline.sources import expand_inputs, is_live_url, open_source, parse_source_arg, stream_id_for
from pipeline.sources.base import Source, SourceOptions
from tests.media import MediaSpec, make_media


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def test_expand_inputs_directories_globs_files_and_errors(tmp_path):
    d = tmp_path / "archive"
    b = touch(d / "b.mp4")
    a2 = touch(d / "a" / "2.mkv")
    a10 = touch(d / "a" / "10.MOV")
    touch(d / "a" / "notes.txt")
    touch(d / "empty" / "readme.md")
    loose = touch(tmp_path / "odd.bin")
    paths, errors = expand_inputs([str(d), str(tmp_path / "archive/a/*"), loose, "rtsp://cam/1",
                                   str(tmp_path / "missing.mp4"), str(tmp_path / "*.nothing"), str(d / "empty")])
    # sorted by path parts: a/10.MOV < a/2.mkv < b.mp4; the glob repeats a/* (kept once);
    # an explicitly named file is kept whatever its extension; URLs pass through
    assert paths == [a10, a2, b, loose, "rtsp://cam/1"]
    assert errors == [(str(tmp_path / "missing.mp4"), "no such file or directory"),
                      (str(tmp_path / "*.nothing"), "pattern matches no media files"),
                      (str(d / "empty"), "directory contains no media files")]


def test_recursive_glob(tmp_path):
    x = touch(tmp_path / "x" / "y" / "z.ts")
    assert expand_inputs([str(tmp_path / "**" / "*.ts")]) == ([x], [])


def test_parse_source_arg():
    assert parse_source_arg("cam1=rtsp://u:p@h/x?a=b") == ("cam1", "rtsp://u:p@h/x?a=b")
    assert parse_source_arg("rtsp://h/x?a=b") == (None, "rtsp://h/x?a=b")
    assert parse_source_arg("/data/a=b.mp4") == (None, "/data/a=b.mp4")
    assert parse_source_arg("front-door.2=/dev/video0") == ("front-door.2", "/dev/video0")


def test_stream_ids_are_stable_and_carry_no_credentials(tmp_path):
    assert stream_id_for("rtsp://admin:hunter2@cam1:554/live") == "rtsp://cam1:554/live"
    assert "tok123" not in stream_id_for("https://h/live.m3u8?token=tok123")
    f = touch(tmp_path / "c.mp4")
    assert stream_id_for(f) == stream_id_for(os.path.relpath(f)) == os.path.abspath(f)


@pytest.mark.parametrize("url, live", [
    ("rtsp://cam/1", True), ("rtsps://cam/1", True), ("rtmp://h/app/key", True), ("udp://127.0.0.1:5000", True),
    ("srt://h:9000", True), ("http://h/live/index.m3u8", True), ("https://h/video.mp4", False),
    ("/dev/video0", True), ("/data/clip.mp4", False), ("synthetic:?duration=3", False),
    ("synthetic:?realtime=true", True),
])
def test_is_live_url(url, live):
    assert is_live_url(url) is live


def test_a_bad_file_in_a_directory_does_not_stop_the_others(tmp_path):
    grid = GridConfig(frame_height=16, frame_width=16)
    make_media(tmp_path / "1-good.mp4", MediaSpec(duration_s=2.0), "mp4")
    touch(tmp_path / "2-bad.mp4", b"not a video at all")
    make_media(tmp_path / "3-good.webm", MediaSpec(duration_s=1.0), "webm")
    paths, errors = expand_inputs([str(tmp_path)])
    assert errors == [] and [os.path.basename(p) for p in paths] == ["1-good.mp4", "2-bad.mp4", "3-good.webm"]
    done, failed = {}, {}
    for p in paths:
        try:
            with open_source(p, grid) as src:
                done[os.path.basename(p)] = len(list(src))
        except SourceError as e:
            failed[os.path.basename(p)] = str(e)
    assert done == {"1-good.mp4": 2, "3-good.webm": 1}
    assert list(failed) == ["2-bad.mp4"] and failed["2-bad.mp4"].startswith(str(tmp_path / "2-bad.mp4") + ": ")


class _HungReader(Source):
    """A reader stuck in a call that ignores its own timeout: the case FFmpeg's options do not cover
    (PyAV issues 584, 1155). Cannot be produced on demand with a real server, hence this stand-in."""

    def _produce(self):
        self._blocking("read", 0.5)
        threading.Event().wait(30)


@pytest.mark.timeout(20)
def test_watchdog_raises_when_a_read_overruns_its_deadline():
    url = "rtsp://admin:hunter2@cam9/stream"
    src = _HungReader(url, GridConfig(), stream_id="cam9", is_live=True, options=SourceOptions(watchdog_grace_s=0.5))
    with pytest.raises(SourceError) as err:
        list(src)
    assert "read: no answer within its deadline" in str(err.value)
    assert "hunter2" not in str(err.value) and str(err.value).startswith("rtsp://admin:***@cam9/stream: ")


def test_env_references_in_source_urls_expand_and_their_values_are_masked(monkeypatch):
    import doctest

    import pipeline.sources.inputs
    from pipeline.errors import ConfigError
    from pipeline.redact import redact
    from pipeline.sources import expand_env

    assert doctest.testmod(pipeline.sources.inputs).failed == 0
    monkeypatch.setenv("AVGRID_TEST_CAM_KEY", "k3y-in-an-odd-place")
    url = expand_env("rtsp://cam1/live?session=${AVGRID_TEST_CAM_KEY}&x=1")
    assert url == "rtsp://cam1/live?session=k3y-in-an-odd-place&x=1"
    # 'session' is no parameter redact knows, but avgrid put this value there itself
    assert redact(f"cannot open {url}") == "cannot open rtsp://cam1/live?session=***&x=1"
    assert expand_env("/data/$HOME/{x}.mp4") == "/data/$HOME/{x}.mp4"       # only ${NAME} is a reference
    monkeypatch.delenv("AVGRID_TEST_UNSET", raising=False)
    with pytest.raises(ConfigError, match="AVGRID_TEST_UNSET is not set"):
        expand_env("rtsp://u:${AVGRID_TEST_UNSET}@cam/live")
