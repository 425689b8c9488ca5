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
from pipeline.sources.cellqueue import Backpressure, CellQueue

log = logging.getLogger("avgrid.sources")
_END = object()
# what a source's reader is doing: opening the input, reading it, or waiting to reopen it
SOURCE_STATES = ("connecting", "reading", "reconnecting")


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
    start_timeout_s: live inputs that cannot be opened at start are retried with the reconnect
        backoff (state ``connecting``) for this long, then fail; None retries for ever, like a
        source that dropped later; 0 (the default here) fails at the first attempt, in the
        caller's thread. ``avgrid run`` passes its ``--start-timeout-s`` (default: for ever).
    decoders / decoder_window_s / decoders_min_s: a file of at least ``decoders_min_s`` in a
        seekable container is read by ``decoders`` readers at once, in windows of
        ``decoder_window_s`` (:mod:`pipeline.sources.chunked`); 1 reads every file in one pass.
    decoder_threads: FFmpeg threads per video decoder (0: FFmpeg's choice, one per core).
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
    start_timeout_s: float | None = 0.0
    decoders: int = 1
    decoder_threads: int = 0
    decoder_window_s: float = 30.0
    decoders_min_s: float = 90.0


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
        # the one buffer between the reader thread and the consumer (files block, live drops the oldest)
        self._q = CellQueue(options.queue_cells, Backpressure.DROP_OLDEST if is_live else Backpressure.BLOCK)
        self._held = None      # an end marker or error that take() reached after other items
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._deadline: float | None = None       # monotonic time the reader's current blocking call must end by
        self._deadline_what = ""

    # -- consumer side -----------------------------------------------------------------------
    def start(self) -> None:
        """Start the reader thread (iterating, or the first :meth:`take`, does it too)."""
        if self._thread is not None:
            raise RuntimeError(f"{self.source}: a Source can be iterated only once")
        self._thread = threading.Thread(target=self._reader_main, name=f"avgrid-source:{self.source}", daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[Cell | Gap]:
        self.start()
        while True:
            try:
                item = self._q.get(0.2)
            except queue.Empty:
                if self._stop.is_set():
                    return
                self._check_watchdog()
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, Cell):
                self.media_time_s = item.t_end
            yield item

    def take(self, max_cells: int, timeout_s: float) -> tuple[list, bool]:
        """``(items, ended)``: up to ``max_cells`` cells with the gaps among them, waiting up to
        ``timeout_s`` for the first; ``ended`` once the source has nothing more. The batch form of
        iterating (one call per pull instead of one per cell); raises :class:`SourceError` where the
        iterator would, after the items before the error were taken."""
        if self._thread is None:
            self.start()
        if self._held is None:
            items = self._q.take(max_cells, timeout_s)
            if not items:
                if self._stop.is_set():
                    return [], True
                self._check_watchdog()
                return [], False
            if not isinstance(items[-1], (Cell, Gap)):
                self._held = items.pop()
        else:
            items = []
        for it in reversed(items):
            if isinstance(it, Cell):
                self.media_time_s = it.t_end
                break
        if items:
            return items, self._held is _END
        held = self._held
        if isinstance(held, BaseException):
            self._held = _END
            raise held
        return [], True

    def _check_watchdog(self) -> None:
        dl = self._deadline
        if dl is not None and time.monotonic() > dl + self.options.watchdog_grace_s:
            self._stop.set()
            raise SourceError(self._url, f"{self._deadline_what}: no answer within its deadline "
                                         f"(watchdog, reader thread abandoned)") from None

    @property
    def queued_cells(self) -> int:
        """Cells decoded and waiting to be taken."""
        return self._q.cells

    @property
    def decoded_cells(self) -> int:
        """Cells the reader produced so far (including any dropped)."""
        return self._q.put_cells

    def close(self, drain: bool = False) -> None:
        """Stop reading. Safe from any thread; a blocked iterator returns promptly, or, with ``drain``,
        once it has handed out the cells already decoded (a live run stopping keeps what it captured)."""
        self._stop.set()
        if self._thread is None:
            self._release()
        if drain:
            self._q.put(_END)        # after what waits; the reader puts nothing more once stopped
        else:
            self._q.end_now(_END)

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
