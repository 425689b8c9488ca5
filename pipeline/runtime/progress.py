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
    """How far the annotated media is behind, in seconds, never negative.

    Live cells: now minus the capture time of the end of the last annotated cell. The capture clock
    is an estimate from packet arrival (see the README), so a cell can look a little early; that is
    clamped to 0, since no record can be made before its media arrived. Archives: the median time
    from a cell's arrival in the driver to its records."""
    import datetime as _dt

    last = run.last_cell
    if last is not None and last.wall_start is not None:
        now = _dt.datetime.now(_dt.timezone.utc)
        return max(0.0, (now - last.wall_start).total_seconds() - hop_s)
    if run.latencies:
        return max(0.0, statistics.median(run.latencies))
    return None


def fps(run: StreamRun, window_s: float = 5.0) -> float:
    """Annotated frames per wall second over the last ``window_s``."""
    now = time.monotonic()
    recent = [(t, n) for t, n in run.fps_window if now - t <= window_s]
    if not recent:
        return 0.0
    return sum(n for _, n in recent) / window_s


def stall_after_s(hop_s: float) -> float:
    """No media for this long and a stream counts as stalled: 5 s, or 3 cells of a longer hop."""
    return max(5.0, 3.0 * hop_s)


def state_text(run: StreamRun, now: float, hop_s: float) -> str:
    """``running``, ``connecting (4 s)``, ``reconnecting (no media for 9 s)``, ``stalled (no media for 12 s)``."""
    state = run.liveness(now, stall_after_s(hop_s))
    quiet = run.no_media_s(now)
    why = f", last attempt: {run.source_note}" if run.source_note and state in ("connecting", "reconnecting") else ""
    if state == "connecting":
        return f"connecting ({quiet:.0f} s{why})"
    if state in ("stalled", "reconnecting"):
        return f"{state} (no media for {quiet:.0f} s{why})"
    return state


class StatusLines(Observer):
    """``avgrid run``: one line per stream every ``interval_s``: its state, then fps, lag, cells, gaps,
    drops, reconnects, records and uptime."""

    def __init__(self, interval_s: float, hop_s: float, *, file=None):
        self.interval_s, self.hop_s = interval_s, hop_s
        self.file = file or sys.stderr
        self._last = time.monotonic()

    def line(self, r: StreamRun, now: float) -> str:
        lag = lag_s(r, self.hop_s)
        name = r.result.stream_id or r.spec.display
        res = r.result
        return (f"[{time.strftime('%H:%M:%S')}] {name}: {state_text(r, now, self.hop_s)}  {fps(r):.1f} fps  "
                f"lag {'-' if lag is None else f'{lag:.2f} s'}  cells {res.cells}  gaps {res.gaps}  "
                f"dropped {res.dropped_cells}  reconnects {res.reconnects}  records {sum(res.records.values())}  "
                f"up {now - r.started:.0f} s")

    def tick(self, runs: list[StreamRun]) -> None:
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return
        self._last = now
        for r in runs:
            print(self.line(r, now), file=self.file, flush=True)


class DebugLog(Observer):
    """``-v``: what the driver sees, as debug lines of the ``avgrid.run`` logger (stderr): streams
    opening and ending, state changes, every operator call and sink delivery with its timing."""

    def __init__(self, hop_s: float = 1.0):
        import logging

        self.log = logging.getLogger("avgrid.run")
        self.hop_s = hop_s
        self._states: dict[int, str] = {}

    def stream_started(self, run: StreamRun) -> None:
        info = run.info
        self.log.debug("%s: opened %s (%s, duration %s s)", run.result.stream_id, run.spec.display,
                       "live" if info is not None and info.is_live else "archive",
                       info.duration_s if info is not None else None)

    def cells_annotated(self, run: StreamRun, cells, seconds: float) -> None:
        self.log.debug("%s: cells %d-%d (media %.1f-%.1f s) annotated in %.3f s", run.result.stream_id,
                       cells[0].index, cells[-1].index, cells[0].t_start, cells[-1].t_end, seconds)

    def records_delivered(self, n: int, lag_s: float) -> None:
        self.log.debug("sinks took %d records, %.2f s after they were built", n, lag_s)

    def tick(self, runs: list[StreamRun]) -> None:
        now = time.monotonic()
        for r in runs:
            state = r.liveness(now, stall_after_s(self.hop_s))
            if self._states.get(id(r)) != state:
                self.log.debug("%s: %s -> %s (source reports %s, queue %d cells)", r.result.stream_id or r.spec.display,
                               self._states.get(id(r), "new"), state, r.source_state, r.queue_depth + r.queued_cells)
                self._states[id(r)] = state

    def stream_finished(self, run: StreamRun) -> None:
        res = run.result
        self._states.pop(id(run), None)
        self.log.debug("%s: %s%s after %d cells, %d records, %d gaps, %.1f s", res.stream_id or res.input, res.status,
                       f" ({res.reason})" if res.reason else "", res.cells, sum(res.records.values()), res.gaps,
                       res.wall_s)
