"""The one bounded buffer between decoding and whatever consumes cells, and its backpressure policy.

A source's reader thread puts cells (and gaps) in; the consumer (an iterator, or a source actor
answering the driver's pulls) takes them out. The buffer is counted in cells. When it is full:

- ``Backpressure.BLOCK`` (archives): the producer waits; nothing is ever lost.
- ``Backpressure.DROP_OLDEST`` (live): the oldest waiting cell makes room and becomes a
  ``Gap(reason="dropped")`` in its place, merged with a dropped gap just before it, so the consumer
  still learns, in order, which media it missed. Every dropped cell is counted once, in
  :attr:`CellQueue.dropped_cells`, and once in its gap's ``extra["dropped_cells"]``.

This is the only place avgrid drops cells; the gap words are :data:`pipeline.grid.GAP_REASONS`.

    q = CellQueue(max_cells=8, policy=Backpressure.DROP_OLDEST)
    q.put(cell)                       # never blocks for DROP_OLDEST
    items = q.take(max_cells=4, timeout_s=0.2)   # up to 4 cells plus the gaps among them
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as _dt
import enum
import queue
import threading

from pipeline.grid import Cell, Gap


class Backpressure(enum.Enum):
    """What a full buffer does to the producer."""

    BLOCK = "block"               # wait for room (archives: nothing is lost)
    DROP_OLDEST = "drop_oldest"   # drop the oldest waiting cell, reported as a ``dropped`` gap (live)


def _wall_end(cell: Cell) -> _dt.datetime | None:
    return None if cell.wall_start is None else cell.wall_start + _dt.timedelta(seconds=cell.t_end - cell.t_start)


def extends(before, cell: Cell) -> bool:
    """Whether ``before`` is a dropped gap that ends where ``cell`` starts (so the two merge)."""
    return (isinstance(before, Gap) and before.reason == "dropped" and before.segment == cell.segment
            and abs(before.t_end - cell.t_start) < 1e-6)


def dropped_gap(cell: Cell, before: Gap | None = None) -> Gap:
    """The ``dropped`` gap that stands for ``cell``: ``before`` extended over it when it
    :func:`extends` to the cell, else a new one. ``extra["dropped_cells"]`` counts the cells."""
    if before is not None and extends(before, cell):
        n = int(before.extra.get("dropped_cells", 1)) + 1
        return dataclasses.replace(before, t_end=cell.t_end, wall_end=_wall_end(cell),
                                   extra={**before.extra, "dropped_cells": n})
    return Gap(stream_id=cell.stream_id, t_start=cell.t_start, t_end=cell.t_end, reason="dropped",
               segment=cell.segment, wall_start=cell.wall_start, wall_end=_wall_end(cell), source=cell.source,
               extra={"dropped_cells": 1})


class CellQueue:
    """Bounded FIFO counted in cells; other items (gaps, end markers, errors) ride along uncounted.

    Thread-safe: one or more producers call :meth:`put`, consumers :meth:`get` or :meth:`take`.
    """

    def __init__(self, max_cells: int, policy: Backpressure):
        self.max_cells, self.policy = max(1, int(max_cells)), policy
        self.put_cells = 0          # cells ever put (decoded)
        self.dropped_cells = 0      # of those, dropped to make room (DROP_OLDEST only)
        self._items: collections.deque = collections.deque()
        self._cells = 0
        self._cv = threading.Condition()

    @property
    def cells(self) -> int:
        """Cells waiting now."""
        return self._cells

    def put(self, item, stop: threading.Event | None = None) -> bool:
        """Append ``item``. A cell waits for room (BLOCK) or drops the oldest (DROP_OLDEST).
        Returns False, without adding it, if ``stop`` is set while waiting."""
        with self._cv:
            if isinstance(item, Cell):
                while self._cells >= self.max_cells:
                    if stop is not None and stop.is_set():
                        return False
                    if self.policy is Backpressure.DROP_OLDEST:
                        self._drop_oldest()
                    else:
                        self._cv.wait(0.2)
                self._cells += 1
                self.put_cells += 1
            self._items.append(item)
            self._cv.notify_all()
            return True

    def get(self, timeout_s: float):
        """The next item, or ``queue.Empty`` after ``timeout_s``."""
        with self._cv:
            if not self._items and not self._cv.wait_for(lambda: self._items, timeout_s):
                raise queue.Empty
            return self._pop()

    def take(self, max_cells: int, timeout_s: float) -> list:
        """Up to ``max_cells`` cells, in order, with the gaps before and among them; waits up to
        ``timeout_s`` for the first item ([] if none came). Stops after any item that is neither a
        cell nor a gap (an end marker or an error), which is then the last one returned."""
        with self._cv:
            if not self._items and not self._cv.wait_for(lambda: self._items, timeout_s):
                return []
            out, n = [], 0
            while self._items:
                head = self._items[0]
                if isinstance(head, Cell) and n >= max_cells:
                    break            # gaps right after the last cell still go: they are news, and cost nothing
                out.append(self._pop())
                if isinstance(head, Cell):
                    n += 1
                elif not isinstance(head, Gap):
                    break
            return out

    def end_now(self, marker) -> None:
        """Drop everything waiting and make ``marker`` the next item."""
        with self._cv:
            self._items.clear()
            self._cells = 0
            self._items.append(marker)
            self._cv.notify_all()

    def _pop(self):
        item = self._items.popleft()
        if isinstance(item, Cell):
            self._cells -= 1
            self._cv.notify_all()
        return item

    def _drop_oldest(self) -> None:
        i = next(i for i, it in enumerate(self._items) if isinstance(it, Cell))
        cell, prev = self._items[i], self._items[i - 1] if i > 0 else None
        if extends(prev, cell):
            self._items[i - 1] = dropped_gap(cell, prev)
            del self._items[i]
        else:
            self._items[i] = dropped_gap(cell)
        self._cells -= 1
        self.dropped_cells += 1
