"""Shared reporting for benchmarks: a markdown table on stdout and ``benchmarks/results/NAME.json``.

    from benchmarks._harness import report, timed
    report("decode", figures={"ffmpeg_fps": 410.0, "avgrid_fps": 395.2},
           ratios={"avgrid_vs_ffmpeg": 0.96}, targets={"avgrid_vs_ffmpeg": 0.9})

JSON layout: ``{"name", "machine", "versions", "figures": {...}, "ratios": {...}}``,
flat name -> number maps (plus ``targets`` and ``notes`` for humans).

A benchmark made of parts (``benchmarks.operators``, ``benchmarks.quality``) runs them with
:func:`run_parts`; a part's ``measure()`` wrapped in :func:`part` raises :class:`NotMeasured` when what
it needs is missing, and reports a ``not measured: <reason>`` note instead of figures.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import platform
import tempfile
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

RESULTS_DIR = Path(os.environ.get("AVGRID_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))
_PACKAGES = ("avgrid", "torch", "torchvision", "torchaudio", "av", "ray", "pyarrow", "kafka-python", "numpy",
             "opencv-python-headless")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem_gb = f", {kb / 1024 / 1024:.0f} GB"
    except (OSError, ValueError, IndexError):
        pass
    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():
            gpu = ", GPU " + torch.cuda.get_device_name(0)
    except Exception:
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}){mem_gb}{gpu}"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in _PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


@contextmanager
def timed():
    """``with timed() as t: ...`` then ``t()`` is the elapsed wall seconds."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def report(name: str, figures: dict[str, float], ratios: dict[str, float], *,
           targets: dict[str, float] | None = None, notes: dict | None = None,
           limits: dict[str, float] | None = None) -> dict:
    """Print a markdown table and write ``RESULTS_DIR/<name>.json``; returns the written dict.

    ``targets``: figure or ratio -> the least it should be; ``limits``: figure -> the most it may be
    (errors, costs)."""
    targets, limits = targets or {}, limits or {}
    result = {"name": name, "machine": machine(), "versions": versions(),
              "figures": {k: float(v) for k, v in figures.items()},
              "ratios": {k: float(v) for k, v in ratios.items()},
              "targets": targets, "notes": notes or {}}
    if limits:
        result["limits"] = limits
    lines = [f"## benchmark `{name}`", "", f"machine: {result['machine']}", "",
             "| metric | value | target |", "|---|---:|---:|"]
    for k, v in result["figures"].items():
        if k in limits:
            met = " (met)" if v <= limits[k] else " (NOT met)"
            lines.append(f"| {k} | {v:,.3f}{met} | <= {limits[k]:g} |")
            continue
        met = "" if k not in targets else " (met)" if v >= targets[k] else " (NOT met)"
        lines.append(f"| {k} | {v:,.3f}{met} | {_target(targets.get(k))} |")
    for k, v in result["ratios"].items():
        status = ""
        if k in targets:
            status = " (met)" if v >= targets[k] else " (NOT met)"
        lines.append(f"| {k} (ratio) | {v:.3f}{status} | {_target(targets.get(k))} |")
    print("\n".join(lines), flush=True)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    return result


def _target(t):
    return "" if t is None else f">= {t:g}"


class NotMeasured(Exception):
    """Raised inside a :func:`part`'s ``measure()``: what it needs is missing (the message says what)."""


def part(name: str):
    """Decorate part ``name``'s ``measure() -> (figures, notes)``: a :class:`NotMeasured` raised inside
    becomes ``({}, {name: "not measured: <reason>"})``."""
    def wrap(measure):
        @functools.wraps(measure)
        def run() -> tuple[dict, dict]:
            try:
                return measure()
            except NotMeasured as e:
                return {}, {name: f"not measured: {e}"}
        return run
    return wrap


def run_parts(family: str, only: str) -> tuple[dict, dict]:
    """Run the comma-separated parts ``only`` of ``family`` (``benchmarks/<family>_<part>.py``, each with
    ``measure() -> (figures, notes)``); merged (figures, notes). A part with no module yet is a note."""
    figures, notes = {}, {}
    for name in [p for p in only.split(",") if p]:
        try:
            mod = importlib.import_module(f"benchmarks.{family}_{name}")
        except ModuleNotFoundError as e:
            if e.name != f"benchmarks.{family}_{name}":
                raise
            notes[name] = f"not measured: no benchmarks/{family}_{name}.py yet"
            continue
        f, n = mod.measure()
        figures.update(f)
        notes.update(n)
    return figures, notes


@contextmanager
def sound_clips():
    """``with sound_clips() as (tmp, clips)``: the real-sound clips the tests build
    (``tests.soundscene.build_clips``) in ``tmp / "clips"``, a temporary folder removed afterwards.
    Raises :class:`NotMeasured` where the tools that build them are missing."""
    from tests.soundscene import build_clips, tools_missing

    missing = tools_missing()
    if missing:
        raise NotMeasured(missing)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        yield tmp, build_clips(tmp / "clips")


def annotate_rows(inputs, out: Path, kinds, *options: str) -> dict[str, list]:
    """Run ``avgrid annotate INPUT... --out OUT OPTION...`` in this process, then read each kind's records
    back (kind -> rows). Raises :class:`NotMeasured` when annotate exits non-zero."""
    from pipeline.cli import main
    from tests.datasets import read_kind

    rc = main(["annotate", *map(str, inputs), "--out", str(out), *options])
    if rc != 0:
        raise NotMeasured(f"avgrid annotate exited {rc}")
    return {k: read_kind(out, k) for k in kinds}
