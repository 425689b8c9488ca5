"""End to end: `avgrid annotate` against FFmpeg decode (and a naive loop), same file, same run.

    python -m benchmarks.e2e [--seconds 300] [--max-live 16] [--live-seconds 20] [--skip-naive] [--skip-archive]

Input: the 720p30 H.264 + AAC clip of benchmarks/decode.py (ffmpeg CLI, cached in .cache/bench/).
Every command runs as a child process; CPU-seconds and memory are summed over the whole process
tree (Ray's daemons and actors, avgrid's decoder processes), sampled from /proc every 0.1 s.

- ``ffmpeg_fps``: ``ffmpeg -threads 2 -i FILE -f null -`` (decode only, nothing computed).
- ``avgrid_vs_ffmpeg_v1ops``: ffmpeg's wall time over avgrid's with the detector set the offline
  profile had in v1 (motion, scene cut, flash, faces, camera motion, loudness, speech); target 0.8.
- ``avgrid_vs_ffmpeg``: the same with the offline profile as it stands (``avgrid annotate
  --profile offline``), reported with each operator's standalone CPU-seconds (its budget).
- ``core_utilisation``: CPU-s of all processes / (wall x cores) over the full-profile run.
- ``pipeline_efficiency``: (decode-only CPU-s + each operator's standalone CPU-s on the same
  cells) / (wall x cores): how much of the run's wall time the work itself needs.
- ``short_clip_wall_s``: median over three runs of `avgrid annotate` on the clip's first 2 s
  (a stream copy), from process start to exit; target <= 3 s.
- ``peak_rss_gb``: most memory held at once by all processes of the full-profile run.
- ``live_streams_realtime``: most concurrent live 720p30 UDP MPEG-TS streams (ffmpeg ``-re``
  senders) that `Engine.run` keeps at real time for ``--live-seconds``: no dropped cells and p95
  cell-to-record latency (capture time of the cell's end -> its records built) <= hop + 0.5 s;
  ``live_streams_vs_decode`` is that count over ffmpeg's real-time decode capacity (ffmpeg fps / 30).
- ``naive_fps``: an OpenCV ``VideoCapture`` loop handing every frame (224x224) to the same
  visual detectors, then a PyAV pass over the audio; ``archive_files_fps``: the clip cut into
  10 s files (stream copy), ``archive_files_vs_one_file`` the one-file time over the many-files time.
fps figures are video frames of the file per wall second.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._harness import report
from benchmarks.decode import make_clip, video_frames

REPO = Path(__file__).resolve().parent.parent
VISUAL = ("motion", "scene_cut", "flash", "faces", "camera_motion")
AUDIO = ("loudness", "speech")
V1_EVENTS = ("motion", "scene_cut", "flash", "loudness", "speech", "faces")   # + camera_motion for actions
LIVE_PORTS = range(18800, 18832)   # one UDP port per live stream; tests use 18500-18749
CORES = os.cpu_count() or 1
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


# -- measuring a process tree ----------------------------------------------------------------------
_TICK, _PAGE = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")


def _proc_table() -> dict[int, tuple[int, float, int]]:
    """pid -> (parent pid, CPU-seconds so far, resident bytes) for every process (Linux /proc)."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            rest = s[s.rindex(")") + 2:].split()
            out[int(d)] = (int(rest[1]), (int(rest[11]) + int(rest[12])) / _TICK, int(rest[21]) * _PAGE)
        except (OSError, ValueError, IndexError):
            pass
    return out


def measure(cmd: list[str], interval_s: float = 0.1) -> dict:
    """Run ``cmd``; wall seconds, CPU-seconds and peak resident memory summed over its process tree."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cpu: dict[int, float] = {}
    peak = 0
    while p.poll() is None:
        table = _proc_table()
        kids: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in table.items():
            kids.setdefault(ppid, []).append(pid)
        tree, todo = [], [p.pid]
        while todo:
            q = todo.pop()
            if q in table:
                tree.append(q)
                todo += kids.get(q, [])
        for q in tree:
            cpu[q] = max(cpu.get(q, 0.0), table[q][1])
        peak = max(peak, sum(table[q][2] for q in tree))
        time.sleep(interval_s)
    wall = time.perf_counter() - t
    err = p.stderr.read().decode(errors="replace")
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])}... exited {p.returncode}: {err[-2000:]}")
    return {"wall_s": wall, "cpu_s": sum(cpu.values()), "peak_rss_gb": peak / 1e9}


def avgrid_cmd(path: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", "annotate", str(path), "--profile", "offline", "--out", str(out),
            "--no-progress", *extra]


def v1_analyzer():
    """The offline profile's detector set of v1 (a picklable factory for Engine(analyzer=...))."""
    from pipeline.config import load_config
    from pipeline.runtime.analyzers import DetectorAnalyzer

    return DetectorAnalyzer(load_config().grid_config, detectors=V1_EVENTS, action_detector="camera_motion")


v1_analyzer.keeps_grid = True       # it runs on the configured grid: sources need not wait for it


def _annotate_v1(path: str, out: str) -> int:
    from pipeline.config import load_config
    from pipeline.runtime import Engine

    summary = Engine(load_config(overrides={"out": out}), analyzer=v1_analyzer).annotate([path])
    return summary.exit_code


def _operator_budget(path: str) -> dict:
    """Decode-only CPU-seconds, then each operator's standalone CPU-seconds on the same cells (one
    thread, chunks of 4 cells, as the operator actors run them)."""
    import torch

    torch.set_num_threads(1)
    import cv2

    cv2.setNumThreads(1)
    from pipeline.config import load_config
    from pipeline.grid import Cell
    from pipeline.runtime.analyzers import DetectorAnalyzer, stack
    from pipeline.sources import open_source

    grid = load_config().grid_config
    c0 = time.process_time()
    with open_source(path, grid) as src:
        cells = [c for c in src if isinstance(c, Cell)]
    out = {"decode_cpu_s": time.process_time() - c0, "cells": len(cells), "operators": {}}
    full = DetectorAnalyzer(grid)
    ops = dict(full.detectors)
    if full.action is not None:
        ops["camera_motion"] = full.action
    for name, det in ops.items():
        c0, state = time.process_time(), None
        for i in range(0, len(cells), 4):
            _, state = det(*stack(cells[i:i + 4]), state)
        out["operators"][name] = time.process_time() - c0
    c0 = time.process_time()
    state = None
    for i in range(0, len(cells), 4):
        _, state = full(cells[i:i + 4], state)
    out["analyzer_cpu_s"] = time.process_time() - c0      # adapters and captions included
    return out


def time_ffmpeg(path: Path) -> dict:
    return measure(["ffmpeg", "-nostdin", "-loglevel", "error", "-threads", "2", "-i", str(path), "-f", "null", "-"])


def time_naive(path: Path) -> float:
    """OpenCV frame loop through the visual detectors, then an audio pass; returns seconds."""
    import av
    import cv2
    import torch

    from operators.registry import build

    torch.set_num_threads(1)
    t = time.perf_counter()
    dets = {n: build(n) for n in VISUAL}
    states = dict.fromkeys(VISUAL)
    no_audio, no_audio_mask = np.zeros((1, 16000), np.float32), np.zeros((1, 16000), bool)
    one = np.ones((1, 1), bool)
    cap = cv2.VideoCapture(str(path))
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(cv2.resize(frame, (224, 224), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        for n, d in dets.items():
            _, states[n] = d(rgb[None, None], one, no_audio, no_audio_mask, states[n])
    cap.release()
    adets = {n: build(n) for n in AUDIO}
    astates = dict.fromkeys(AUDIO)
    frames0, mask0 = np.zeros((1, 1, 224, 224, 3), np.uint8), np.zeros((1, 1), bool)
    buf = np.zeros(0, np.float32)
    with av.open(str(path)) as c:
        rs = av.AudioResampler(format="flt", layout="mono", rate=16000)
        for fr in c.decode(audio=0):
            for o in rs.resample(fr):
                buf = np.concatenate([buf, o.to_ndarray()[0]])
            while len(buf) >= 16000:
                cell, buf = buf[:16000][None], buf[16000:]
                for n, d in adets.items():
                    _, astates[n] = d(frames0, mask0, cell, np.ones_like(cell, bool), astates[n])
    return time.perf_counter() - t


def cut(clip: Path, seconds: float, dest: Path) -> Path:
    """The clip's first ``seconds`` (stream copy: the same media, cut at a keyframe)."""
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-t", str(seconds), "-i", str(clip), "-c", "copy",
                    str(dest)], check=True)
    return dest


def split_clip(clip: Path, seconds_each: int = 10) -> Path:
    """The clip cut into files of ``seconds_each`` s at keyframes (no re-encoding); cached."""
    d = clip.parent / f"{clip.stem}_split{seconds_each}s"
    if not d.exists():
        tmp = d.with_name(d.name + ".part")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(clip), "-c", "copy", "-f", "segment",
                        "-segment_time", str(seconds_each), "-reset_timestamps", "1", str(tmp / "part%03d.mp4")],
                       check=True)
        tmp.rename(d)
    return d


class _Latency:
    """Engine observer: capture time of each cell's end -> the moment its records were built."""

    def __init__(self):
        self.samples: list[float] = []

    def cells_annotated(self, run, cells, seconds):
        now = _dt.datetime.now(_dt.timezone.utc)
        for c in cells:
            if c.wall_start is not None:
                self.samples.append((now - c.wall_start).total_seconds() - (c.t_end - c.t_start))


def live_round(ts: Path, n: int, seconds: float, out: Path) -> tuple[bool, float, int]:
    """n UDP senders at real time -> (held real time, p95 latency s, dropped cells)."""
    from pipeline.config import load_config
    from pipeline.runtime import Engine

    senders = [subprocess.Popen(["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i",
                                 str(ts), "-c", "copy", "-f", "mpegts", f"udp://127.0.0.1:{p}?pkt_size=1316"])
               for p in list(LIVE_PORTS)[:n]]
    try:
        lat = _Latency()
        cfg = load_config(overrides={"out": str(out), "duration": seconds, "operator_actors": 1})
        summary = Engine(cfg, observers=[lat]).run([f"cam{i}=udp://127.0.0.1:{p}"
                                                    for i, p in enumerate(list(LIVE_PORTS)[:n])])
    finally:
        for s in senders:
            s.kill()
            s.wait()
    steady = lat.samples[len(lat.samples) // 4:]     # skip start-up (actors loading, first keyframe)
    p95 = float(np.percentile(steady, 95)) if steady else float("inf")
    dropped = sum(r.dropped_cells for r in summary.inputs)
    ok = summary.exit_code == 0 and dropped == 0 and p95 <= cfg.grid.hop_s + 0.5
    return ok, p95, dropped


def _child(argv: list[str]) -> int:
    """`python -m benchmarks.e2e --child WHAT ...`: the measured parts that must run in a process of their own."""
    what, *rest = argv
    if what == "annotate-v1":
        return _annotate_v1(*rest)
    if what == "budget":
        print(json.dumps(_operator_budget(*rest)))
        return 0
    raise SystemExit(f"unknown child {what!r}")


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        sys.exit(_child(sys.argv[2:]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=300, help="clip length (>= 300 for the reported figures)")
    ap.add_argument("--max-live", type=int, default=16, help="most live streams to try")
    ap.add_argument("--live-seconds", type=float, default=20.0, help="length of each live round")
    ap.add_argument("--skip-naive", action="store_true", help="leave the (slow) naive baseline out")
    ap.add_argument("--skip-archive", action="store_true", help="leave the many-files run out")
    ap.add_argument("--skip-live", action="store_true", help="leave the live rounds out")
    args = ap.parse_args()
    clip = make_clip(args.seconds)
    frames = video_frames(clip)
    work = Path(tempfile.mkdtemp(prefix="avgrid-e2e-"))
    try:
        ff = time_ffmpeg(clip)
        full = measure(avgrid_cmd(clip, work / "out"))
        v1 = measure([sys.executable, "-m", "benchmarks.e2e", "--child", "annotate-v1", str(clip), str(work / "v1")])
        budget = json.loads(subprocess.run([sys.executable, "-m", "benchmarks.e2e", "--child", "budget", str(clip)],
                                           cwd=REPO, env=ENV, check=True, capture_output=True, text=True).stdout)
        short = cut(clip, 2.0, work / "short.mp4")
        short_runs = []
        for i in range(3):
            short_runs.append(measure(avgrid_cmd(short, work / f"short{i}"))["wall_s"])
        parts = None if args.skip_archive else split_clip(clip)
        files = None if parts is None else measure(avgrid_cmd(parts, work / "out_files"))
        nv = float("nan") if args.skip_naive else time_naive(clip)
        held, p95_held, rounds = 0, float("nan"), {}
        if not args.skip_live:
            ts = work / "live.ts"
            subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-t", "30", "-i", str(clip), "-c", "copy",
                            "-f", "mpegts", str(ts)], check=True)
            from pipeline.runtime.cluster import ray_session

            with ray_session():     # one Ray for every round, started as avgrid starts it (loopback only)
                for n in range(1, args.max_live + 1):
                    ok, p95, dropped = live_round(ts, n, args.live_seconds, work / f"live{n}")
                    rounds[n] = {"held": ok, "p95_latency_s": p95, "dropped_cells": dropped}
                    print(f"live x{n}: {'real time' if ok else 'NOT real time'}, p95 {p95:.2f} s, dropped {dropped}",
                          flush=True)
                    if not ok:
                        break
                    held, p95_held = n, p95
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ops = budget["operators"]
    v1_ops = {k: v for k, v in ops.items() if k in V1_EVENTS or k == "camera_motion"}
    work_full = budget["decode_cpu_s"] + sum(ops.values())
    work_v1 = budget["decode_cpu_s"] + sum(v1_ops.values())
    ffmpeg_fps = frames / ff["wall_s"]
    figures = {
        "ffmpeg_fps": ffmpeg_fps, "avgrid_fps": frames / full["wall_s"], "avgrid_v1ops_fps": frames / v1["wall_s"],
        "core_utilisation": full["cpu_s"] / (full["wall_s"] * CORES),
        "pipeline_efficiency": work_full / (full["wall_s"] * CORES),
        "short_clip_wall_s": statistics.median(short_runs),
        "peak_rss_gb": full["peak_rss_gb"],
        "naive_fps": frames / nv,
        "archive_files_fps": frames / files["wall_s"] if files else float("nan"),
    }
    ratios = {"avgrid_vs_ffmpeg_v1ops": ff["wall_s"] / v1["wall_s"], "avgrid_vs_ffmpeg": ff["wall_s"] / full["wall_s"],
              "avgrid_vs_naive": nv / full["wall_s"],
              "archive_files_vs_one_file": full["wall_s"] / files["wall_s"] if files else float("nan")}
    if not args.skip_live:
        figures.update(live_streams_realtime=held, live_p95_latency_s=p95_held)
        ratios["live_streams_vs_decode"] = held / (ffmpeg_fps / 30.0)
    report("e2e", figures=figures, ratios=ratios,
           targets={"avgrid_vs_ffmpeg_v1ops": 0.8, "avgrid_vs_naive": 3.0, "core_utilisation": 0.9,
                    "pipeline_efficiency": 0.85, "live_streams_vs_decode": 0.6},
           limits={"short_clip_wall_s": 3.0, "peak_rss_gb": 2.0},
           notes={"clip": f"{clip.name}: {frames} frames 1280x720 @30 fps, H.264 + AAC", "cores": CORES,
                  "ffmpeg": ff, "avgrid_full": full, "avgrid_v1ops": v1,
                  "v1ops_core_utilisation": v1["cpu_s"] / (v1["wall_s"] * CORES),
                  "v1ops_pipeline_efficiency": work_v1 / (v1["wall_s"] * CORES),
                  "operator_budget_cpu_s": {"decode": budget["decode_cpu_s"], **ops,
                                            "analyzer_total": budget["analyzer_cpu_s"]},
                  "short_clip_runs_s": short_runs, "archive_files": files,
                  "archive_files_layout": "none" if parts is None else
                                          f"{len(list(parts.glob('*.mp4')))} files of 10 s cut from the clip (stream copy)",
                  "avgrid": "avgrid annotate --profile offline, the whole command (executor auto: no Ray for local "
                            "files up to --local-max-mb), Parquet written; 4 frames/s at 224x224",
                  "naive_s": nv, "live_rounds": rounds, "live_seconds": args.live_seconds,
                  # when every round held, the machine's limit is above the cap: run with a larger --max-live
                  "live_capped_by_max_live": held == args.max_live})


if __name__ == "__main__":
    main()
