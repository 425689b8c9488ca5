"""One long file read by several decoders at once, in windows of cells, handed on in order.

A single file has a single demux-and-decode pass, and on a small machine that pass is half the
work of annotating it: while the operators wait for cells one core idles, however many files
could run side by side. A :class:`ChunkedSource` splits a long file into windows of
``decoder_window_s`` (whole cells) and lets ``decoders`` readers work on consecutive windows at
once, each in a thread of its own (PyAV and FFmpeg's scaler release the GIL while they work).
Each window's reader is an ordinary :class:`~pipeline.sources.av_source.AVSource` that seeks to the
keyframe half a second before its first cell and makes only the window's cells
(:class:`~pipeline.grid.GridAligner` ``first_index``); the cells leave in order, window after window.

What a user can rely on:

* Video frames, masks and cell times are those of one sequential read: slots pick from the same
  decoded frames, and a window starts from a keyframe before its first slot. Audio is resampled on
  the sample grid of a read from the file's start (a window's first input frame is trimmed to it),
  after half a second of lead for the decoder and resampler to settle: equal to ~1e-4 of full
  scale, except in the file's last cell (the resampler's final flush, ~5e-4) and where a file's own
  audio timestamps jitter (one pass keeps samples contiguous within 2 ms; a window places them by
  its timestamps, so they can sit up to 2 ms apart). Records come out with the same ids, labels and
  times (tests/pipeline/test_sources_chunked.py).
* Memory: at most ``decoders`` windows are open; the one being handed on streams through the
  source's own queue, the next ones wait in theirs (a window's worth of cells each).
* Only plain files: one clock (a PTS jump or reset in a window, which a sequential read would turn
  into a new segment, makes that window's cells follow the previous ones, never overlap them),
  a video stream, a known duration of at least ``decoders_min_s``. Damage is reported as a
  sequential read reports it: undecodable packets per window, a file that ends early as
  ``truncated`` from where its media ends to the declared end.
"""

from __future__ import annotations

import math
from collections import deque

from pipeline.errors import SourceError
from pipeline.grid import Cell, Gap
from pipeline.sources.base import Source, log
from pipeline.sources.damage import DamageLog

# formats whose index makes a seek land on a keyframe at the time asked (a stream without one,
# MPEG-TS or raw H.264, is read in one pass)
SEEKABLE = {"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "flv", "nut"}


def plan(src, options) -> list[int]:
    """The first cell of each window to read ``src`` (an opened AVSource) in; ``[0]``: one pass."""
    if options.decoders < 2 or src.is_live or options.realtime or not src.duration_s:
        return [0]
    c = src._container
    if c is None or c.format.name not in SEEKABLE or not c.streams.video or src.duration_s < options.decoders_min_s:
        return [0]
    return window_starts(math.ceil(src.duration_s / src.grid.hop_s),
                         max(1, round(options.decoder_window_s / src.grid.hop_s)), options.decoders)


def window_starts(cells: int, window: int, decoders: int) -> list[int]:
    """Windows of ``window`` cells, and at the end, where fewer windows than decoders would be left,
    smaller ones (at least 5 cells, or ``window``): the last window is read by one decoder while the
    others have nothing left, so it should be short."""
    starts, pos = [], 0
    while cells - pos > decoders * window:
        starts.append(pos)
        pos += window
    small = max(min(window, 5), math.ceil((cells - pos) / (2 * decoders)))
    while pos < cells or not starts:
        starts.append(pos)
        pos += small
    return starts


class ChunkedSource(Source):
    """``first`` (an opened AVSource) for the window from cell ``starts[0]`` (0), and a reader more of the
    same file for each later start, at most ``options.decoders`` at a time. See the module docstring."""

    def __init__(self, first, starts: list[int], opener):
        opts = first.options
        super().__init__(first._url, first.grid, stream_id=first.stream_id, is_live=False, options=opts)
        self.duration_s = first.duration_s
        self.facts = first.facts          # the same dict: what the first window learns (t0_s) shows at once
        self._first, self._open_more = first, opener
        self.starts = list(starts)            # each window's first cell
        self.n_windows = len(self.starts)
        self.decoders = max(1, opts.decoders)
        self.bad_packets = 0
        self._readers: deque = deque()

    # -- the reader thread -----------------------------------------------------------------------
    def _window(self, k: int):
        src = self._first if k == 0 else self._open_more()
        last = k == self.n_windows - 1
        src.window = (self.starts[k], None if last else self.starts[k + 1])
        src.start()
        return src

    def _produce(self) -> None:
        nxt, last_end, cells = 0, None, 0
        stretches, warnings, beyond_media = [], [], False
        try:
            while nxt < min(self.decoders, self.n_windows):
                self._readers.append((nxt, self._window(nxt)))
                nxt += 1
            while self._readers:
                k, src = self._readers[0]
                try:
                    for item in self._items(src):
                        if isinstance(item, Cell):
                            if last_end is not None and item.t_start < last_end - 1e-6:
                                continue       # a clock that went back inside a window: never overlap
                            last_end = item.t_end
                            cells += 1
                        elif isinstance(item, Gap) and last_end is not None and item.t_end <= last_end + 1e-6:
                            continue
                        if not self._put(item):
                            return
                except SourceError as e:
                    if not cells:
                        raise
                    # a later window with nothing decodable: the media ended before it
                    log.debug("%s: window %d: %s", self.source, k, e.reason)
                    beyond_media = True
                self._readers.popleft()
                self.bad_packets += src.bad_packets
                if src.facts.get("damaged"):
                    stretches += src.facts["damaged"]
                    warnings.append(src.facts["warning"])
                if beyond_media or (not src.window_done and k < self.n_windows - 1):
                    break      # the media ended inside this window (its reader said so): no more windows
                if nxt < self.n_windows:
                    self._readers.append((nxt, self._window(nxt)))
                    nxt += 1
        finally:
            for _, src in self._readers:
                src.close()
            self._readers.clear()
        if beyond_media and self.duration_s:
            d = DamageLog(self.grid.hop_s)
            d.finish(data_end_s=last_end, declared_end_s=(self.facts.get("t0_s") or 0.0) + self.duration_s,
                     read_error=None)
            if d.truncated:
                stretches += d.stretches()
                warnings.append(d.warning())
        if stretches:
            self.facts.update(damaged=sorted(stretches), warning="; ".join(warnings), decode_errors=self.bad_packets)

    def _items(self, src):
        """A started window's cells and gaps, in order, until it ends (raises as it fails)."""
        while not self._stop.is_set():
            items, ended = src.take(self.options.queue_cells, 0.5)
            yield from items
            if ended:
                return

    def _release(self) -> None:
        for _, src in list(self._readers):
            src.close()

    def close(self, drain: bool = False) -> None:
        self._release()        # a window's reader blocked on a full queue, or a take waiting on one, returns
        super().close(drain)
