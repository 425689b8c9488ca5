"""Reading live sources in tests: the small grid and fast deadlines they use, and the checks and read
loops the live-source tests share (RTSP, UDP, SRT, ...).

    from tests.live import FAST, GRID, Outage, check_contiguous, check_reconnect, event_cells, read_across_restart
    with open_source(url, GRID, options=FAST) as src:
        items = read_across_restart(src, srv.kill, srv.start)     # cells, one Gap, cells
    before, gap, after = check_reconnect(items)           # what every server restart must read as
    outage = Outage(srv, after_cells=3, down_s=1.0)    # the same outage, for Engine(observers=[outage])
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from pipeline.grid import Cell, Gap, GridConfig
from pipeline.sources import SourceOptions

GRID = GridConfig(frame_height=48, frame_width=64)
FAST = SourceOptions(open_timeout_s=5, read_timeout_s=2, backoff_initial_s=0.2, backoff_max_s=1.0)


def event_cells(cells: list[Cell]) -> tuple[set[int], set[int]]:
    """Indices of cells holding a white frame and of cells holding a loud audio burst."""
    flash = {c.index for c in cells if (c.frames[c.frame_mask].reshape(-1, 48 * 64 * 3).mean(axis=1) > 200).any()}
    click = {c.index for c in cells if np.abs(c.audio).max() > 0.3}
    return flash, click


def check_contiguous(cells: list[Cell], catch_up_s: float | None = 0.3) -> None:
    """Consecutive live cells, capture times in order; ``catch_up_s``: the most the capture times
    may have moved in all (None: no bound, for servers that send old media first)."""
    hop = GRID.hop_s
    for a, b in zip(cells, cells[1:]):
        assert b.index == a.index + 1 and b.t_start == pytest.approx(a.t_end)
        # a hop, give or take what the capture times moved by to follow the arrival clock
        assert 0.8 * hop - 1e-6 <= (b.wall_start - a.wall_start).total_seconds() <= 1.2 * hop + 1e-6
    # from local servers that send media as it is made the first packets come nearly on time
    if catch_up_s is not None and len(cells) > 1:
        span = (cells[-1].wall_start - cells[0].wall_start).total_seconds()
        assert abs((len(cells) - 1) * hop - span) <= catch_up_s
    for c in cells:
        assert c.is_live and c.wall_start.tzinfo is not None


def read_across_restart(src, stop, start, after_cells: int = 4, cells_after_gap: int = 3,
                        down_s: float = 1.0) -> list[Cell | Gap]:
    """Read ``src``; after ``after_cells`` items ``stop()`` the server and ``start()`` it again ``down_s``
    later (the outage itself: how long the camera is gone, not a wait for work).

    Stops once ``cells_after_gap`` items followed the first gap (or the source ended).
    """
    items: list[Cell | Gap] = []
    for item in src:
        items.append(item)
        if len(items) == after_cells:                    # mid-stream: the server dies and comes back
            stop()
            time.sleep(down_s)
            start()
        gaps = [i for i in items if isinstance(i, Gap)]
        if gaps and len(items) - items.index(gaps[0]) > cells_after_gap:
            break
    return items


def check_reconnect(items: list[Cell | Gap], event_cell: int = 2) -> tuple[list[Cell], Gap, list[Cell]]:
    """What :func:`read_across_restart` must have read from a server that plays the clip from its
    start on each connection (a flash and a click together in cell ``event_cell``) and was down 1 s:
    one ``reconnect`` gap between two contiguous segments (0 then 1) that it joins exactly, at least
    the second of downtime long, after at least one attempt; full frames and audio around it.
    Returns ``(before, gap, after)`` for the checks particular to a protocol."""
    gaps = [i for i in items if isinstance(i, Gap)]
    assert [g.reason for g in gaps] == ["reconnect"]
    gap = gaps[0]
    k = items.index(gap)
    before, after = items[:k], items[k + 1:]
    check_contiguous(before)
    check_contiguous(after)
    assert {c.segment for c in before} == {0} and {c.segment for c in after} == {1}
    # the gap starts where the old segment's cells end and covers at least the second of downtime
    assert gap.t_start == pytest.approx(before[-1].t_end) and after[0].t_start == pytest.approx(gap.t_end)
    assert gap.t_end - gap.t_start >= 1.0 and gap.extra["attempts"] >= 1
    assert all(c.frame_mask.all() and c.audio_mask.mean() > 0.95 for c in before[:-1] + after[:-1])
    for seg in (before, after):
        assert event_cells(seg) == ({event_cell}, {event_cell})
    return before, gap, after


class Outage:
    """An observer for ``Engine(observers=[...])``: once ``stream`` (None: any stream) has annotated
    ``after_cells`` cells, ``server.stop()`` (the servers in tests/servers.py: SIGKILL), and
    ``server.start()`` again ``down_s`` later, once, in ``thread`` (its ``ident`` stays None if it never
    came to that). The outage of :func:`read_across_restart`, for a run through the runtime."""

    def __init__(self, server, after_cells: int, down_s: float, stream: str | None = None):
        self.server, self.after, self.down_s, self.stream = server, after_cells, down_s, stream
        self.thread = threading.Thread(target=self._outage, daemon=True)

    def cells_annotated(self, run, cells, seconds):
        if (self.stream is None or run.result.stream_id == self.stream) and run.result.cells >= self.after \
                and self.thread.ident is None:
            self.thread.start()

    def _outage(self):
        self.server.stop()
        time.sleep(self.down_s)
        self.server.start()
