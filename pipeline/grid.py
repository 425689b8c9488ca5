"""The temporal grid: the one time axis that frames, audio and every record share.

Cell ``k`` of a segment covers media time ``[t0 + k*hop, t0 + (k+1)*hop)`` seconds.
Media time always comes from ``pts * time_base`` (never from counting frames).
A cell holds ``round(hop * fps)`` frames (the decoded frame nearest each sample time)
and exactly ``hop * 16000`` mono float32 audio samples. Missing media is zero-filled
and flagged in the masks, never invented.

Where a profile needs to see small things (people 60 px tall in a 720p frame are 15 px at 224),
cells also carry a *detection view*: ``round(hop * detect_fps)`` of the same frames at up to
``detect_px`` on the long side with the aspect ratio kept (never upscaled), taken from the frame
slots :attr:`GridConfig.detect_slots` names. ``detect_px=0`` (the default) builds none.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

SAMPLE_RATE_HZ = 16_000


@dataclass(frozen=True)
class GridConfig:
    """Grid geometry. Units are in the names."""

    hop_s: float = 1.0
    fps: float = 4.0                      # frames sampled per second of media
    frame_height: int = 224
    frame_width: int = 224
    sample_rate_hz: int = SAMPLE_RATE_HZ
    detect_px: int = 0                    # detection view: long side in pixels (aspect kept); 0 = none
    detect_fps: float = 1.0               # detection view frames per second of media (<= fps)

    @property
    def frames_per_cell(self) -> int:
        return max(1, round(self.hop_s * self.fps))

    @property
    def detect_per_cell(self) -> int:
        """Frames per cell in the detection view (0 when it is off)."""
        if self.detect_px <= 0:
            return 0
        return min(self.frames_per_cell, max(1, round(self.hop_s * self.detect_fps)))

    @property
    def detect_slots(self) -> tuple[int, ...]:
        """The frame slots (0..F-1) whose frames the detection view holds, evenly spread over the
        cell: F=4, D=1 -> (2,); D=2 -> (1, 3); D=4 -> (0, 1, 2, 3)."""
        F, D = self.frames_per_cell, self.detect_per_cell
        return tuple((i * F) // D + (F // D) // 2 for i in range(D))

    def detect_size(self, width: int, height: int) -> tuple[int, int]:
        """(height, width) of the detection view for a ``width`` x ``height`` source: the long side
        at most ``detect_px``, the aspect ratio kept, never upscaled, even numbers (chroma planes)."""
        if width <= 0 or height <= 0:
            raise ValueError(f"detect_size: source size must be positive, got {width}x{height}")
        s = min(1.0, self.detect_px / max(width, height))
        return max(2, 2 * round(height * s / 2)), max(2, 2 * round(width * s / 2))

    @property
    def samples_per_cell(self) -> int:
        return round(self.hop_s * self.sample_rate_hz)

    def cell_index(self, t_s: float, t0_s: float = 0.0) -> int:
        """Index of the cell holding media time ``t_s`` in a grid starting at ``t0_s``."""
        return int(np.floor((t_s - t0_s) / self.hop_s + 1e-9))


@dataclass(frozen=True, eq=False)
class Cell:
    """One grid cell of one stream.

    Arrays:
      frames      (F, H, W, 3) uint8 RGB; zeros where ``frame_mask`` is False
      frame_times (F,) float64 media seconds of the frame used for each slot; NaN where missing
      frame_mask  (F,) bool, True = a real decoded frame
      audio       (S,) float32 mono at ``sample_rate_hz``, S = hop * rate; zeros where missing
      audio_mask  (S,) bool, True = a real decoded sample
      detect_frames (D, h, w, 3) uint8 RGB, the detection view (None when the grid has none): the
                  frames of slots ``grid.detect_slots`` at ``grid.detect_size``; zeros where missing
      detect_mask (D,) bool, True = a real frame (None without a detection view)
    """

    stream_id: str
    index: int
    t_start: float
    t_end: float
    frames: np.ndarray
    frame_times: np.ndarray
    frame_mask: np.ndarray
    audio: np.ndarray
    audio_mask: np.ndarray
    segment: int = 0
    wall_start: _dt.datetime | None = None
    source: str = ""
    is_live: bool = False
    detect_frames: np.ndarray | None = None
    detect_mask: np.ndarray | None = None

    @property
    def has_video(self) -> bool:
        return bool(self.frame_mask.any())

    @property
    def has_audio(self) -> bool:
        return bool(self.audio_mask.any())


# why media is missing: the vocabulary of Gap.reason and of a gap event's ``detail``
GAP_REASONS = ("reconnect", "pts_jump", "pts_reset", "dropped", "source_restart")


@dataclass(frozen=True)
class Gap:
    """Media that a stream did not deliver: a reconnect, a PTS jump, or cells dropped under load.

    Becomes an ``event`` record with label ``gap`` and ``detail`` = ``reason``, one word of
    :data:`GAP_REASONS`. Times are media seconds of the segment before the gap where known;
    ``wall_*`` are UTC capture times (live only); ``extra`` says more (the reconnect's cause, how
    many cells were dropped).
    """

    stream_id: str
    t_start: float
    t_end: float
    reason: str
    segment: int = 0
    wall_start: _dt.datetime | None = None
    wall_end: _dt.datetime | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)


def slot_times(grid: GridConfig, t_start_s: float) -> np.ndarray:
    """Sample times (s) of the ``frames_per_cell`` frame slots of the cell starting at ``t_start_s``.

    Slot ``j`` sits at the middle of its share of the cell: ``t_start + (j + 0.5) * hop / F``.
    """
    dt = grid.hop_s / grid.frames_per_cell
    return t_start_s + (np.arange(grid.frames_per_cell) + 0.5) * dt


class _CellBuffer:
    __slots__ = ("frames", "frame_times", "frame_mask", "audio", "audio_mask", "detect_frames", "detect_mask")

    def __init__(self, grid: GridConfig, detect_hw: tuple[int, int] | None = None):
        f, s = grid.frames_per_cell, grid.samples_per_cell
        self.frames = np.zeros((f, grid.frame_height, grid.frame_width, 3), np.uint8)
        self.frame_times = np.full(f, np.nan)
        self.frame_mask = np.zeros(f, bool)
        self.audio = np.zeros(s, np.float32)
        self.audio_mask = np.zeros(s, bool)
        self.detect_frames = self.detect_mask = None
        if detect_hw is not None:
            d = grid.detect_per_cell
            self.detect_frames = np.zeros((d, *detect_hw, 3), np.uint8)
            self.detect_mask = np.zeros(d, bool)


class GridAligner:
    """Turns one segment's decoded frames and audio into complete :class:`Cell` objects, in order.

    Media times passed in are seconds on the source's own clock (``pts * time_base``); the cells
    carry ``t + time_offset_s`` (0 for files; live sources shift later segments so that their
    timeline keeps going forward across reconnects and PTS resets). ``offset`` may be set
    until the first cell is emitted; ``wall_t0`` is read at each emit (live sources move it earlier
    as their capture clock improves, by less than a hop at a time).

    Video: frame slot ``n`` of the segment sits at ``t0 + (n + 0.5) * hop / F``. It takes the frame
    with the nearest PTS (ties go to the earlier frame) if that frame is at most
    ``frame_tolerance_s`` away (callers pass one nominal frame interval); otherwise the slot stays
    empty (``frame_mask`` False). Frames are opaque objects turned into ``(H, W, 3)`` uint8 by
    ``convert`` only when a slot picks them, so frames nobody samples are never scaled.

    Audio: mono float32 at ``grid.sample_rate_hz``, placed by its start time. A chunk that starts
    within ``audio_slack_s`` of where the previous one ended is appended contiguously (timestamp
    rounding must not punch one-sample holes); a later start leaves a masked hole, an earlier one
    overwrites.

    A cell is emitted once no more media can land in it: video has passed its last slot and audio
    its end (or the stream ended / is absent). A stream lagging more than ``max_lag_s`` behind the
    other stops holding cells back (bounded memory when e.g. audio ends early); what it delivers
    later for an emitted cell is dropped.

    Example::

        al = GridAligner(GridConfig(), stream_id="a", t0_s=0.0, has_video=True, has_audio=True,
                         frame_tolerance_s=0.04, convert=lambda f: f)
        al.push_video(0.02, rgb_frame); al.push_audio(0.0, samples_16k)
        cells = al.pop_ready() + al.flush()
    """

    def __init__(self, grid: GridConfig, *, stream_id: str, t0_s: float, has_video: bool, has_audio: bool,
                 frame_tolerance_s: float, convert: Callable[[Any], np.ndarray] = lambda f: f,
                 segment: int = 0, time_offset_s: float = 0.0, wall_t0: _dt.datetime | None = None,
                 source: str = "", is_live: bool = False, max_lag_s: float = 5.0, audio_slack_s: float = 0.002,
                 convert_detect: Callable[[Any], np.ndarray] | None = None, detect_hw: tuple[int, int] | None = None,
                 first_index: int = 0):
        self.grid, self.stream_id, self.t0 = grid, stream_id, float(t0_s)
        self._detect_hw = None
        if grid.detect_per_cell and has_video:
            if convert_detect is None or detect_hw is None:
                raise ValueError("a grid with a detection view needs convert_detect and detect_hw")
            self._detect_hw = (int(detect_hw[0]), int(detect_hw[1]))
        self.convert_detect = convert_detect
        # frame slot within a cell -> its index in the detection view
        self._detect_index = {s: i for i, s in enumerate(grid.detect_slots)} if self._detect_hw else {}
        self.segment, self.offset, self.wall_t0 = segment, time_offset_s, wall_t0
        self.source, self.is_live = source, is_live
        self.tol, self.convert, self.max_lag = frame_tolerance_s, convert, max_lag_s
        self._dt = grid.hop_s / grid.frames_per_cell
        self._slack = int(round(audio_slack_s * grid.sample_rate_hz))
        self._cells: dict[int, _CellBuffer] = {}
        # ``first_index``: cells before it are not made (a reader that starts mid-file: media before
        # that cell only primes the decoders and slot choices, see pipeline.sources.chunked)
        self._next_emit = max(0, int(first_index))
        # video state: next undecided slot, previous frame (time, obj, converted-or-None)
        self._video_done = not has_video
        self._slot = self._next_emit * grid.frames_per_cell
        self._prev: list | None = None
        self._video_end = -np.inf            # end of the last frame seen (t + tolerance), segment clock
        # audio state: next expected sample position from t0, -1 before the first chunk
        self._audio_done = not has_audio
        self._apos = -1
        self._audio_end = -np.inf

    # -- input -------------------------------------------------------------------------------
    def push_video(self, t_s: float, frame: Any) -> None:
        """Add a decoded frame shown at media time ``t_s`` (frames in presentation order)."""
        if self._prev is not None and t_s <= self._prev[0]:
            return  # duplicate or out-of-order timestamp: keep the first
        cur = [t_s, frame, None, None]                # [time, frame, converted, detection view] (cached)
        self._resolve_slots_before(t_s, cur)
        self._prev = cur
        self._video_end = max(self._video_end, t_s + self.tol)

    def note_video(self, t_s: float) -> None:
        """A frame at ``t_s`` exists but was not decoded (no slot can pick it): it still marks how far
        the video reaches, so a segment ends where it would with every frame decoded."""
        self._video_end = max(self._video_end, t_s + self.tol)

    def push_audio(self, t_s: float, samples: np.ndarray) -> None:
        """Add mono float32 samples at ``grid.sample_rate_hz`` whose first sample is at ``t_s``."""
        sr = self.grid.sample_rate_hz
        pos = int(round((t_s - self.t0) * sr))
        if self._apos >= 0 and abs(pos - self._apos) <= self._slack:
            pos = self._apos
        n = len(samples)
        self._apos = pos + n
        self._audio_end = max(self._audio_end, self.t0 + self._apos / sr)
        if pos < 0:                                   # before the segment start
            samples, pos = samples[-pos:], 0
        spc = self.grid.samples_per_cell
        i = 0
        while i < len(samples):
            c, off = divmod(pos + i, spc)
            take = min(spc - off, len(samples) - i)
            buf = self._buffer(c)
            if buf is not None:
                buf.audio[off:off + take] = samples[i:i + take]
                buf.audio_mask[off:off + take] = True
            i += take

    def end_video(self) -> None:
        """No more video in this segment: slots near the last frame take it, later ones stay empty."""
        if not self._video_done:
            self._resolve_slots_before(self._video_end, None)
            self._video_done = True

    def end_audio(self) -> None:
        self._audio_done = True

    # -- output ------------------------------------------------------------------------------
    def ready_count(self) -> int:
        """How many cells :meth:`pop_ready` would return now."""
        hop, sr = self.grid.hop_s, self.grid.sample_rate_hz
        v_wm = np.inf if self._video_done else self.t0 + self._slot * self._dt
        a_wm = np.inf if self._audio_done else self.t0 + max(self._apos, 0) / sr
        lead = max(self._video_end if not self._video_done else -np.inf,
                   self._audio_end if not self._audio_done else -np.inf)
        if v_wm < lead - self.max_lag:
            v_wm = np.inf
        if a_wm < lead - self.max_lag:
            a_wm = np.inf
        n = self._next_emit
        while min(v_wm, a_wm) >= self.t0 + (n + 1) * hop - 1e-9:
            if not np.isfinite(min(v_wm, a_wm)) and n >= self._n_cells():
                break
            n += 1
        return n - self._next_emit

    def pop_ready(self) -> list[Cell]:
        """Cells that are complete, in index order."""
        return [self._emit() for _ in range(self.ready_count())]

    def flush(self) -> list[Cell]:
        """End the segment: resolve what is left and return every remaining cell up to the media end."""
        self.end_video()
        self.end_audio()
        out = []
        while self._next_emit < self._n_cells():
            out.append(self._emit())
        self._cells.clear()
        return out

    @property
    def emitted_end_s(self) -> float:
        """End of the last emitted cell on the output timeline (``t0 + offset`` before any)."""
        return self.t0 + self._next_emit * self.grid.hop_s + self.offset

    @property
    def media_end_s(self) -> float:
        """Latest media time (segment clock) any stream reached; -inf before any input."""
        return max(self._video_end, self._audio_end)

    # -- internals ---------------------------------------------------------------------------
    def _n_cells(self) -> int:
        end = self.media_end_s
        if not np.isfinite(end):
            return self._next_emit
        # a cell exists when media reaches into it by more than half a frame slot (AAC padding and
        # rounding must not create a nearly empty extra cell at the end)
        return max(self._next_emit, int(np.ceil((end - self.t0) / self.grid.hop_s - 0.5 / self.grid.frames_per_cell)))

    def _buffer(self, c: int) -> _CellBuffer | None:
        if c < self._next_emit:
            return None                               # already emitted: late media is dropped
        buf = self._cells.get(c)
        if buf is None:
            buf = self._cells[c] = _CellBuffer(self.grid, self._detect_hw)
        return buf

    def slot_distance(self, t_s: float) -> float:
        """Seconds from ``t_s`` to the nearest frame slot time (slots at ``t0 + (n + 0.5) * hop / F``)."""
        x = (t_s - self.t0) / self._dt - 0.5
        return abs(x - round(x)) * self._dt

    def _resolve_slots_before(self, t_s: float, nxt: list | None) -> None:
        """Decide every slot whose time is before ``t_s``: it is between the previous frame and ``nxt``."""
        F = self.grid.frames_per_cell
        while self.t0 + (self._slot + 0.5) * self._dt < t_s:
            s = self.t0 + (self._slot + 0.5) * self._dt
            best, dist = None, np.inf
            if self._prev is not None:
                best, dist = self._prev, s - self._prev[0]
            if nxt is not None and nxt[0] - s < dist - 1e-9:   # a tie (to 1 ns) keeps the earlier frame
                best, dist = nxt, nxt[0] - s
            if best is not None and dist <= self.tol + 1e-9:
                buf = self._buffer(self._slot // F)
                if buf is not None:
                    if best[2] is None:
                        best[2] = self.convert(best[1])
                    j = self._slot % F
                    buf.frames[j] = best[2]
                    buf.frame_times[j] = best[0]              # segment clock; the offset is added on emit
                    buf.frame_mask[j] = True
                    d = self._detect_index.get(j)
                    if d is not None:
                        if best[3] is None:
                            best[3] = self.convert_detect(best[1])
                        buf.detect_frames[d] = best[3]
                        buf.detect_mask[d] = True
            self._slot += 1

    def _emit(self) -> Cell:
        k = self._next_emit
        buf = self._cells.pop(k, None) or _CellBuffer(self.grid, self._detect_hw)
        self._next_emit += 1
        t_start = self.t0 + k * self.grid.hop_s
        wall = None
        if self.wall_t0 is not None:
            wall = self.wall_t0 + _dt.timedelta(seconds=t_start - self.t0)
        return Cell(stream_id=self.stream_id, index=k, t_start=t_start + self.offset,
                    t_end=t_start + self.grid.hop_s + self.offset, frames=buf.frames,
                    frame_times=buf.frame_times + self.offset,
                    frame_mask=buf.frame_mask, audio=buf.audio, audio_mask=buf.audio_mask, segment=self.segment,
                    wall_start=wall, source=self.source, is_live=self.is_live,
                    detect_frames=buf.detect_frames, detect_mask=buf.detect_mask)
