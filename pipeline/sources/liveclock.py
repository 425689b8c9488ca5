"""The live capture clock: when a live input's media was captured, from when its packets arrive.

``wall_start`` of a live cell is the estimated capture time: the smallest (arrival - PTS) seen in
the segment's last ``clock_window_s`` (30 s) of packets (:class:`ArrivalClock`), so it errs late by
network and sender latency, never early for a real camera. Cells follow that clock as it moves (a
backlog at start-up drained, a camera clock that runs fast or slow) by at most ``SLEW`` (0.2) hop per
cell: consecutive cells step by 0.8-1.2 hop, never backwards. Times here are ``time.monotonic()``
seconds unless they say UTC.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections import deque

import numpy as np

from pipeline.sources.timeline import Segment

SLEW = 0.2          # the most a cell's capture time moves toward the clock, in hops per cell


class ArrivalClock:
    """The smallest ``arrival - pts`` over the packets of the last ``window_s`` seconds (kept in
    1 s buckets): capture happens no later than arrival, so the least-delayed recent packet maps
    media time to capture time best, and a window lets it follow a camera clock that drifts."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self.value = float("inf")
        self._buckets: deque[list[float]] = deque()     # [first arrival, smallest offset]

    def reset(self) -> None:
        self._buckets.clear()
        self.value = float("inf")

    def observe(self, now: float, offset: float) -> None:
        b = self._buckets
        if b and now - b[-1][0] < 1.0:
            b[-1][1] = min(b[-1][1], offset)
        else:
            b.append([now, offset])
        expired = False
        while len(b) > 1 and b[0][0] < now - self.window_s:
            b.popleft()
            expired = True
        self.value = min(v for _, v in b) if expired else min(self.value, offset)


def wall(mono_t: float, mono_now: float) -> _dt.datetime:
    """UTC wall time of monotonic time ``mono_t`` (``mono_now`` is now)."""
    return _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(seconds=mono_now - mono_t)


class LiveClock:
    """One live source's capture clock: the current segment's :class:`ArrivalClock`, the last
    packet's arrival and the capture time of the previous segment's last media."""

    def __init__(self, window_s: float, hop_s: float):
        self.arrivals = ArrivalClock(window_s)
        self.hop_s = hop_s
        self.last_packet = time.monotonic()        # arrival of the last packet with data
        self.prev_capture_end: float | None = None

    def packet(self) -> None:
        """A packet with data arrived (arrival, not decode: decoders hold frames back)."""
        self.last_packet = time.monotonic()

    def read_timed_out(self, read_timeout_s: float) -> None:
        """Demuxers flush partial packets when a read fails, so packet arrival times overstate how
        long data kept coming: nothing came during the deadline."""
        self.last_packet = min(self.last_packet, time.monotonic() - read_timeout_s)

    def observe(self, seg: Segment | None, t: float) -> None:
        """A live packet at ``t`` (source s) arrived; packets that the open() probe buffered arrive
        "late" and lose to fresh ones, and packets of an old clock say nothing."""
        if seg is None or seg.lo - 1.0 <= t <= seg.hi + 1.0:
            now = time.monotonic()
            self.arrivals.observe(now, now - t)

    def segment_ended(self, seg: Segment, produced: bool) -> None:
        """The segment is over; ``produced``: it made cells (then its capture end is kept: the arrival
        clock's, or at worst the last arrival)."""
        if produced:
            self.prev_capture_end = min(self.last_packet, self.arrivals.value + seg.hi)
        self.arrivals.reset()

    def first_cell(self, seg: Segment) -> tuple[float, float]:
        """``(cap0, now)``: the capture time (monotonic) of the segment's start, fixed just before its
        first cell leaves: the arrival clock, or without one the newest media taken as captured now."""
        mono = time.monotonic()
        clock = self.arrivals.value
        al = seg.aligner
        cap0 = clock + al.t0 if np.isfinite(clock) else mono - max(0.0, seg.hi - al.t0)
        return cap0, mono

    def slew(self, seg: Segment) -> None:
        """Move the segment's capture times toward the arrival clock: earlier when packets now
        arrive sooner after their timestamps than the ones its first cell was timed from (a backlog
        at start-up has drained, a camera clock runs fast), later when the window no longer holds
        any that came that soon (a camera clock runs slow). Corrections under 10 ms are left alone."""
        clock = self.arrivals.value
        if seg.cap0 is None or not np.isfinite(clock):
            return
        al = seg.aligner
        late = seg.cap0 - (clock + al.t0)
        if abs(late) >= 0.01:
            step = float(np.clip(late, -SLEW * self.hop_s, SLEW * self.hop_s))
            seg.cap0 -= step
            al.wall_t0 -= _dt.timedelta(seconds=step)
