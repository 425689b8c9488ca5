"""The :class:`Source` every input becomes: an iterator of cells and gaps fed by a reader thread.

The reader thread does all blocking work (open, demux, decode, sleep between reconnects) and puts
finished items on a small bounded queue; the iterating thread only waits on that queue. That gives
two guarantees FFmpeg alone does not (PyAV issues 584, 325, 1155, 1243):

* ``close()`` from any thread unblocks the iterator at once, even while a network read hangs;
* a watchdog: the reader announces a deadline before every blocking call, and if it overruns it
  by more than ``SourceOptions.watchdog_grace_s`` the iterator raises :class:`SourceError` instead
  of waiting forever (the stuck reader thread is a daemon and is abandoned).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as _dt
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Iterator

from pipeline.errors import SourceError
from pipeline.grid import Cell, Gap, GridConfig
from pipeline.redact import redact

log = logging.getLogger("avgrid.sources")
_END = object()
# what a source's reader is doing: opening the input, reading it, or waiting to reopen it
SOURCE_STATES = ("connecting", "reading", "reconnecting")


class _Handoff:
    """Bounded FIFO from the reader thread to the consumer, counted in cells.

    Files block the reader while ``max_cells`` cells wait (archives never drop). Live sources
    never block: the oldest waiting cell is dropped and a ``Gap(reason="dropped")`` takes its
    place, merged with the one before it, so the consumer still learns what it missed, in order.
    """

    def __init__(self, max_cells: int, drop_oldest: bool):
        self.max_cells, self.drop_oldest = max(1, max_cells), drop_oldest
        self.dropped_cells = 0
        self._items: collections.deque = collections.deque()
        self._cells = 0
        self._cv = threading.Condition()

    def put(self, item, stop: threading.Event) -> bool:
        with self._cv:
            if isinstance(item, Cell):
                while self._cells >= self.max_cells:
                    if stop.is_set():
                        return False
                    if self.drop_oldest:
                        self._drop_oldest_cell()
                    else:
                        self._cv.wait(0.2)
                self._cells += 1
            self._items.append(item)
            self._cv.notify_all()
            return True

    def get(self, timeout_s: float):
        """The next item, or ``queue.Empty`` after ``timeout_s``."""
        with self._cv:
            if not self._items and not self._cv.wait_for(lambda: self._items, timeout_s):
                raise queue.Empty
            item = self._items.popleft()
            if isinstance(item, Cell):
                self._cells -= 1
                self._cv.notify_all()
            return item

    def end_now(self) -> None:
        """Drop everything waiting and make the next ``get`` return the end marker."""
        with self._cv:
            self._items.clear()
            self._cells = 0
            self._items.append(_END)
            self._cv.notify_all()

    def _drop_oldest_cell(self) -> None:
        i = next(i for i, it in enumerate(self._items) if isinstance(it, Cell))
        cell = self._items[i]
        wall_end = cell.wall_start + _dt.timedelta(seconds=cell.t_end - cell.t_start) if cell.wall_start else None
        prev = self._items[i - 1] if i > 0 else None
        if isinstance(prev, Gap) and prev.reason == "dropped" and abs(prev.t_end - cell.t_start) < 1e-6:
            self._items[i - 1] = dataclasses.replace(prev, t_end=cell.t_end, wall_end=wall_end)
            del self._items[i]
        else:
            self._items[i] = Gap(stream_id=cell.stream_id, t_start=cell.t_start, t_end=cell.t_end, reason="dropped",
                                 segment=cell.segment, wall_start=cell.wall_start, wall_end=wall_end,
                                 source=cell.source)
        self._cells -= 1
        self.dropped_cells += 1


@dataclass(frozen=True)
class SourceOptions:
    """How a source opens, waits and recovers. Times in seconds.

    open_timeout_s / read_timeout_s: deadline for opening and for each packet read (live inputs;
        passed to FFmpeg as socket timeouts and enforced by the watchdog).
    reconnect: live inputs reopen after an error or end of stream, waiting ``backoff_initial_s``,
        doubling up to ``backoff_max_s``; ``max_reconnects`` consecutive failures (None = forever)
        end the source with a SourceError.
    realtime: files and ``synthetic:`` sources hand out cells at wall-clock speed (demos).
    jump_s: a timestamp moving forward by more than this (or backward by more than 1 s) starts a
        new segment with a gap.
    max_lag_s: how far one stream (audio or video) may run ahead of the other before cells stop
        waiting for the slower one.
    queue_cells: cells waiting between the reader thread and the consumer; when full, files
        block the reader and live sources drop the oldest cell (reported as a ``dropped`` gap).
    skip_unsampled: H.264/HEVC frames that no other frame references and that no grid slot can
        pick (none lies within one frame interval of their PTS) are not decoded (FFmpeg's
        ``skip_frame``). The cells are identical to a full decode; False decodes every frame.
    clock_window_s: live capture times come from the packets of the last this many seconds that
        arrived soonest after their timestamps; a window (not the whole stream) lets them follow a
        camera clock that runs slower or faster than this machine's.
    media_origin: files: the UTC capture time of the first cell's start (``--media-origin``); wins
        over the container's ``creation_time``. With either, archive cells carry ``wall_start``.
    """

    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    reconnect: bool = True
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    max_reconnects: int | None = None
    realtime: bool = False
    jump_s: float = 5.0
    max_lag_s: float = 5.0
    queue_cells: int = 8
    watchdog_grace_s: float = 1.5
    rtsp_transport: str = "tcp"
    skip_unsampled: bool = True
    clock_window_s: float = 30.0
    media_origin: _dt.datetime | None = None


class Source:
    """Iterate to get :class:`Cell` items in order, and :class:`Gap` items where media is missing.

    Attributes: ``stream_id``, ``source`` (input with password masked), ``is_live``,
    ``duration_s`` (files, else None) and ``media_time_s`` (end of the last cell handed out),
    for progress bars. Iterate once. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, url: str, grid: GridConfig, *, stream_id: str, is_live: bool, options: SourceOptions):
        self._url = url
        self.source = redact(url)
        self.stream_id = stream_id
        self.is_live = is_live
        self.grid = grid
        self.options = options
        self.duration_s: float | None = None
        self.media_time_s = 0.0
        # what the input holds (for the streams dataset): codecs, size, rates, t0, media origin
        self.facts: dict = {}
        # SOURCE_STATES: what the reader is doing now (status lines, the live page)
        self.state = "reading"
        self._q = _Handoff(options.queue_cells, drop_oldest=is_live)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._deadline: float | None = None       # monotonic time the reader's current blocking call must end by
        self._deadline_what = ""

    # -- consumer side -----------------------------------------------------------------------
    def __iter__(self) -> Iterator[Cell | Gap]:
        if self._thread is not None:
            raise RuntimeError(f"{self.source}: a Source can be iterated only once")
        self._thread = threading.Thread(target=self._reader_main, name=f"avgrid-source:{self.source}", daemon=True)
        self._thread.start()
        while True:
            try:
                item = self._q.get(0.2)
            except queue.Empty:
                if self._stop.is_set():
                    return
                dl = self._deadline
                if dl is not None and time.monotonic() > dl + self.options.watchdog_grace_s:
                    self._stop.set()
                    raise SourceError(self._url, f"{self._deadline_what}: no answer within its deadline "
                                                 f"(watchdog, reader thread abandoned)") from None
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, Cell):
                self.media_time_s = item.t_end
            yield item

    def close(self) -> None:
        """Stop reading. Safe from any thread; a blocked iterator returns promptly."""
        self._stop.set()
        if self._thread is None:
            self._release()
        self._q.end_now()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- reader side -------------------------------------------------------------------------
    def _reader_main(self) -> None:
        try:
            self._produce()
        except SourceError as e:
            self._put(e)
        except Exception as e:  # noqa: BLE001  (anything else is still this input's failure, named)
            err = SourceError(self._url, f"{type(e).__name__}: {e}")   # redacts the message
            log.debug("%s: reader failed: %s", self.source, err.reason)  # no traceback: it may hold the URL
            self._put(err)
        finally:
            self._deadline = None
            self._release()
            self._put(_END)

    def _put(self, item) -> bool:
        """Hand an item to the consumer (files: blocks while the handoff is full). False once closed."""
        return not self._stop.is_set() and self._q.put(item, self._stop)

    @property
    def dropped_cells(self) -> int:
        """Live cells dropped because the consumer fell behind (each reported in a ``dropped`` gap)."""
        return self._q.dropped_cells

    def _blocking(self, what: str, timeout_s: float | None) -> None:
        """Announce the next blocking call and its deadline to the watchdog (None: done)."""
        self._deadline_what = what
        self._deadline = None if timeout_s is None else time.monotonic() + timeout_s

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless closed meanwhile; returns False when closed."""
        return not self._stop.wait(seconds)

    def _produce(self) -> None:
        """Reader thread body: ``self._put`` every Cell/Gap in order; raise SourceError on failure."""
        raise NotImplementedError

    def _release(self) -> None:
        """Free resources (called from the reader thread at its end, or by close() before iteration)."""
