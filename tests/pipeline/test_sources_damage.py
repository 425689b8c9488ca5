"""Damaged files are read as far as they go, as ffmpeg reads them, on real footage (Megamind.avi).

Ground truth, from how each file is made here: an 8 s clip; a copy cut at 55% of its bytes (the
container still declares 8 s); a copy whose audio packets between 3.0 and 4.0 s hold random bytes
(47 AAC packets, each fails to decode); and an MPEG-TS whose audio switches from 48 kHz stereo
to 22.05 kHz mono at 3.0 s on one continuous clock.
"""

from __future__ import annotations

import random
import subprocess

import av
import pytest

from pipeline.grid import Cell, GridConfig
from pipeline.sources import open_source
from tests.datasets import read_kind as read
from tests.realmedia import real_file
from tests.servers import have_ffmpeg_cli

pytestmark = pytest.mark.skipif(not have_ffmpeg_cli(), reason="needs the ffmpeg CLI to cut the real clip")
GRID = GridConfig(frame_height=64, frame_width=64)
DECLARED_S = 8.0
GARBLED = (3.0, 4.0)           # media seconds whose audio packets are overwritten
SWITCH_S = 3.0                 # where the TS audio format changes


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)], check=True)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("damage")
    src = real_file("megamind")
    base = d / "base.mkv"
    ffmpeg("-i", src, "-t", DECLARED_S, "-c:v", "libx264", "-preset", "ultrafast", "-s", "320x240", "-c:a", "aac", base)
    data = base.read_bytes()
    (d / "truncated.mkv").write_bytes(data[: int(len(data) * 0.55)])
    garbled = bytearray(data)
    with av.open(str(base)) as c:
        packets = [(float(p.pts * p.time_base), p.pos, p.size) for p in c.demux(c.streams.audio[0])
                   if p.pts is not None and p.size]
    hit = [(pos, size) for t, pos, size in packets if GARBLED[0] <= t < GARBLED[1]]
    rng = random.Random(7)
    for pos, size in hit:
        garbled[pos + 8: pos + size] = rng.randbytes(size - 8)     # keep the block header, garble the frame
    (d / "garbled.mkv").write_bytes(bytes(garbled))
    ffmpeg("-i", src, "-t", SWITCH_S, "-c:v", "libx264", "-preset", "ultrafast", "-s", "320x240", "-c:a", "mp2",
           "-ar", 48000, "-ac", 2, d / "a.ts")
    ffmpeg("-ss", SWITCH_S, "-i", src, "-t", 3, "-c:v", "libx264", "-preset", "ultrafast", "-s", "320x240", "-c:a",
           "mp2", "-ar", 22050, "-ac", 1, "-output_ts_offset", SWITCH_S, d / "b.ts")
    (d / "switch.ts").write_bytes((d / "a.ts").read_bytes() + (d / "b.ts").read_bytes())
    return d, len(hit)


def read_all(path):
    src = open_source(str(path), GRID)
    cells = [it for it in src if isinstance(it, Cell)]
    return src, cells


def test_an_intact_clip_has_no_damage(clips):
    d, _ = clips
    src, cells = read_all(d / "base.mkv")
    assert len(cells) == 8 and src.bad_packets == 0 and "damaged" not in src.facts


def test_tags_that_are_not_utf8_cost_nothing(clips):
    # a bit flip in a Matroska tag made PyAV's strict UTF-8 decoding reject whole files ffmpeg plays
    # (3 of 1000 fuzzed files in the reliability harness)
    d, _ = clips
    bad = d / "badtags.mkv"
    ffmpeg("-i", d / "base.mkv", "-c", "copy", "-metadata", "title=ab\u00ce", bad)
    raw = bad.read_bytes()
    assert b"ab\xc3\x8e" in raw                  # the tag in UTF-8; now make it bytes that are not UTF-8
    bad.write_bytes(raw.replace(b"ab\xc3\x8e", b"ab\xce\xce", 1))
    with pytest.raises(UnicodeDecodeError):
        av.open(str(bad)).metadata              # what PyAV does by default
    src, cells = read_all(bad)
    assert len(cells) == 8 and src.bad_packets == 0


def test_an_mpegts_stream_announced_mid_file_costs_nothing(tmp_path):
    # a bit flip in an MPEG-TS program table can announce a stream that was not there at open; PyAV's
    # demux then fails in its end-of-file flush with IndexError (1 of 1000 fuzzed files in the
    # reliability harness). Here: 3 s of video-only TS stuffed past FFmpeg's 5 MB probe, 2 s of video
    # plus an audio PID it has not seen, then the first part again.
    plain, extra = tmp_path / "plain.ts", tmp_path / "extra.ts"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", 3, "-c:v", "libx264", "-preset", "ultrafast",
           "-b:v", "20M", "-minrate", "20M", "-maxrate", "20M", "-bufsize", "2M", "-x264-params", "nal-hrd=cbr", plain)
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=440", "-t", 2,
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "mp2", "-streamid", "0:256", "-streamid", "1:300", extra)
    joined = tmp_path / "joined.ts"
    joined.write_bytes(plain.read_bytes() + extra.read_bytes() + plain.read_bytes())
    with av.open(str(joined)) as c:
        assert len(c.streams) == 1
        with pytest.raises(IndexError):           # what PyAV does
            for _ in c.demux(c.streams.video[0]):
                pass
    src, cells = read_all(joined)
    assert len(cells) == 8                         # 3 + 2 + 3 s, the last flushed frames included
    assert src.bad_packets == 0


def test_a_truncated_file_keeps_its_media_and_says_where_it_ends(clips):
    d, _ = clips
    src, cells = read_all(d / "truncated.mkv")
    assert src.duration_s == pytest.approx(DECLARED_S, abs=0.1)          # the header still says 8 s
    assert 2 <= len(cells) <= 6                                          # about 55% of the media is there
    (t0, t1, detail), = src.facts["damaged"]
    assert detail == "truncated"
    assert abs(t0 - cells[-1].t_end) <= GRID.hop_s and t1 == pytest.approx(DECLARED_S, abs=0.1)
    assert src.facts["warning"].startswith(f"truncated: media ends at {t0:.1f} s of the 8.0 s")


def test_packets_that_do_not_decode_are_skipped_and_their_stretch_reported(clips):
    d, n_garbled = clips
    src, cells = read_all(d / "garbled.mkv")
    assert len(cells) == 8                                  # the rest of the file is all there
    assert n_garbled >= 40 and src.bad_packets == n_garbled
    (t0, t1, detail), = src.facts["damaged"]
    assert detail == f"decode_errors={n_garbled}"
    assert abs(t0 - GARBLED[0]) <= 0.1 and abs(t1 - GARBLED[1]) <= 0.1
    # the cell over the garbled second lacks most of its audio; its neighbours have theirs
    assert cells[3].audio_mask.mean() < 0.2 and cells[1].audio_mask.all() and cells[5].audio_mask.all()
    assert "could not be decoded (audio aac:" in src.facts["warning"]


def test_an_audio_format_change_mid_stream_gets_a_new_resampler(clips):
    d, _ = clips
    src, cells = read_all(d / "switch.ts")
    assert len(cells) == 6 and not src.facts.get("damaged")
    assert all(c.audio_mask.mean() > 0.9 for c in cells)    # audio on both sides of the switch


def test_annotate_reports_damage_as_events_and_warnings_and_stays_ok(clips, tmp_path, ray_local):
    from pipeline.config import load_config
    from pipeline.runtime import Engine

    d, n_garbled = clips
    out = tmp_path / "out"
    paths = [d / "truncated.mkv", d / "garbled.mkv", d / "base.mkv"]
    summary = Engine(load_config(overrides={"out": str(out)})).annotate([str(p) for p in paths])
    assert summary.exit_code == 0 and [r.status for r in summary.inputs] == ["ok"] * 3, summary.table()
    table = summary.table()
    assert "2 input(s) annotated as far as they could be decoded" in table
    assert "truncated.mkv: truncated: media ends at" in table
    assert f"garbled.mkv: {n_garbled} packets could not be decoded (audio aac: {n_garbled})" in table
    damaged = {(r["stream_id"].rsplit("/", 1)[-1], r["detail"]): r for r in read(out, "event") if r["label"] == "damaged"}
    assert set(damaged) == {("truncated.mkv", "truncated"), ("garbled.mkv", f"decode_errors={n_garbled}")}
    g = damaged[("garbled.mkv", f"decode_errors={n_garbled}")]
    assert abs(g["t_start"] - GARBLED[0]) <= 0.1 and abs(g["t_end"] - GARBLED[1]) <= 0.1
    assert g["operator"] == "runtime" and g["model"].startswith("avgrid-runtime/1 damaged")
    t = damaged[("truncated.mkv", "truncated")]
    assert t["t_end"] == pytest.approx(DECLARED_S, abs=0.1) and t["t_start"] < 6.0
    rows = {r["stream_id"].rsplit("/", 1)[-1]: r for r in read(out, "streams")}
    assert rows["truncated.mkv"]["status"] == "ok" and rows["truncated.mkv"]["error"].startswith("truncated")
    assert rows["base.mkv"]["error"] is None
