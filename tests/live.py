"""Reading live sources in tests: the small grid and fast deadlines they use, and the checks and read
loops the live-source tests share (RTSP, UDP, SRT, ...).

    from tests.live import FAST, GRID, check_contiguous, event_cells, read_across_restart
    with open_source(url, GRID, options=FAST) as src:
        items = read_across_restart(src, srv.kill, srv.start)     # cells, one Gap, cells
"""

from __future__ import annotations

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
