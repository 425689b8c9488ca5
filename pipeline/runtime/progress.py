"""What the user sees while a run goes: tqdm bars for archives, status lines for live streams."""

from __future__ import annotations

import os
import statistics
import sys
import time

from pipeline.runtime.engine import Observer
from pipeline.runtime.state import StreamRun


class ProgressBars(Observer):
    """One bar per input (media seconds, frames, x-realtime) and one overall bar."""

    def __init__(self, n_inputs: int, *, file=None):
        from tqdm import tqdm

        self._tqdm = tqdm
        self.file = file or sys.stderr
        self.t0 = time.monotonic()
        self.frames = 0
        self.total = tqdm(total=0, desc=f"all {n_inputs} inputs", unit="s", position=0, file=self.file,
                          bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} media s{postfix}",
                          dynamic_ncols=True)
        self.bars: dict[int, object] = {}
        self._slots: list[int] = []

    def stream_started(self, run: StreamRun) -> None:
        if not self.bars and self.total.n == 0:
            self.t0 = time.monotonic()      # x-realtime counts from the first stream, not from Ray start-up
        slot = next(i for i in range(1, len(self._slots) + 2) if i not in self._slots)
        self._slots.append(slot)
        total = run.result.duration_s or 0.0
        self.total.total = (self.total.total or 0) + total
        self.total.refresh()
        name = os.path.basename(run.spec.display.rstrip("/")) or run.spec.display
        bar = self._tqdm(total=total or None, desc=name[-32:], unit="s", position=slot, leave=False, file=self.file,
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s{postfix}",
                         dynamic_ncols=True)
        bar.slot, bar.t0, bar.frames = slot, time.monotonic(), 0
        self.bars[id(run)] = bar

    def cells_annotated(self, run: StreamRun, cells, seconds: float) -> None:
        bar = self.bars.get(id(run))
        media = sum(c.t_end - c.t_start for c in cells)
        frames = sum(int(c.frame_mask.sum()) for c in cells)
        self.frames += frames
        if bar is not None:
            bar.frames += frames
            bar.update(media)
            bar.set_postfix_str(f"{bar.frames} frames, {bar.n / max(1e-6, time.monotonic() - bar.t0):.1f}x realtime")
        self.total.update(media)
        self.total.set_postfix_str(f"{self.frames} frames, "
                                   f"{self.total.n / max(1e-6, time.monotonic() - self.t0):.1f}x realtime")

    def stream_finished(self, run: StreamRun) -> None:
        bar = self.bars.pop(id(run), None)
        if bar is not None:
            self._slots.remove(bar.slot)
            bar.close()

    def close(self) -> None:
        for bar in list(self.bars.values()):
            bar.close()
        self.total.close()


def lag_s(run: StreamRun, hop_s: float) -> float | None:
    """How far the annotated media is behind: capture clock for live cells, else median cell latency."""
    import datetime as _dt

    last = run.last_cell
    if last is not None and last.wall_start is not None:
        now = _dt.datetime.now(_dt.timezone.utc)
        return (now - last.wall_start).total_seconds() - hop_s
    if run.latencies:
        return statistics.median(run.latencies)
    return None


def fps(run: StreamRun, window_s: float = 5.0) -> float:
    """Annotated frames per wall second over the last ``window_s``."""
    now = time.monotonic()
    recent = [(t, n) for t, n in run.fps_window if now - t <= window_s]
    if not recent:
        return 0.0
    return sum(n for _, n in recent) / window_s


class StatusLines(Observer):
    """``avgrid run``: one line per stream every ``interval_s`` (fps, lag, drops, reconnects, records)."""

    def __init__(self, interval_s: float, hop_s: float, *, file=None):
        self.interval_s, self.hop_s = interval_s, hop_s
        self.file = file or sys.stderr
        self._last = time.monotonic()

    def tick(self, runs: list[StreamRun]) -> None:
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return
        self._last = now
        for r in runs:
            lag = lag_s(r, self.hop_s)
            name = r.result.stream_id or r.spec.display
            print(f"[{time.strftime('%H:%M:%S')}] {name}: {fps(r):5.1f} fps  lag "
                  f"{'-' if lag is None else f'{lag:.2f} s'}  dropped {r.result.dropped_cells}  "
                  f"reconnects {r.result.reconnects}  records {sum(r.result.records.values())}",
                  file=self.file, flush=True)
