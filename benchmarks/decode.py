"""Decode + grid throughput against FFmpeg's own decoder on the same file, in the same run.

    python -m benchmarks.decode [--seconds 60] [--repeats 2]

Input: a 720p30 H.264 (x264 veryfast, B-frames on) + AAC clip, made once with the ffmpeg CLI and
cached in ``.cache/bench/``. Baseline: ``ffmpeg -threads 2 -i FILE -f null -`` (decodes every
video frame and the audio, converts nothing). avgrid: ``open_source(FILE, GridConfig())`` iterated
to the end (every frame decoded, 4 of each 30 scaled to 224x224 RGB, audio resampled to 16 kHz).
Both report video frames of the file per second of wall time; best of ``--repeats`` runs each,
interleaved so that load from other processes hits both alike.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import time
from pathlib import Path

import av

from benchmarks._harness import report
from pipeline.grid import GridConfig
from pipeline.sources import open_source

CACHE = Path(__file__).resolve().parent.parent / ".cache" / "bench"


def make_clip(seconds: int) -> Path:
    path = CACHE / f"720p30_h264_aac_{seconds}s.mp4"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part.mp4")
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
                        "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=30:duration={seconds}",
                        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
                        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "60",
                        "-c:a", "aac", "-b:a", "128k", "-shortest", str(tmp)], check=True)
        tmp.rename(path)
    return path


def video_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return c.streams.video[0].frames


def time_ffmpeg(path: Path) -> float:
    t = time.perf_counter()
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-threads", "2", "-i", str(path), "-f", "null", "-"],
                   check=True)
    return time.perf_counter() - t


def time_avgrid(path: Path) -> tuple[float, int]:
    t = time.perf_counter()
    n = 0
    with open_source(str(path), GridConfig()) as src:
        for _ in src:
            n += 1
    return time.perf_counter() - t, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    clip = make_clip(args.seconds)
    frames = video_frames(clip)
    ff, ag, cells = [], [], 0
    for _ in range(args.repeats):
        ff.append(time_ffmpeg(clip))
        s, cells = time_avgrid(clip)
        ag.append(s)
    ffmpeg_fps, avgrid_fps = frames / min(ff), frames / min(ag)
    report("decode", figures={"ffmpeg_fps": ffmpeg_fps, "avgrid_fps": avgrid_fps},
           ratios={"avgrid_vs_ffmpeg": avgrid_fps / ffmpeg_fps}, targets={"avgrid_vs_ffmpeg": 0.9},
           notes={"clip": f"{clip.name}: {frames} frames 1280x720 @30 fps, H.264 veryfast + AAC 48 kHz",
                  "grid": "GridConfig() defaults: 4 frames/s at 224x224 RGB, 16 kHz mono audio, 1 s cells",
                  "cells": cells, "ffmpeg_s": ff, "avgrid_s": ag,
                  # bounded memory: cells stream out as they complete, nothing buffers the whole file
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


if __name__ == "__main__":
    main()
