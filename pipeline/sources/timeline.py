"""Timeline repair: media whose timestamps reset or jump still lands on one ordered timeline.

Each stream's clock is checked against its own previous frame: moving back by more than 1 s or
ahead by more than ``jump_s`` ends the current :class:`Segment` and starts a new one, announced by
a ``Gap`` (``pts_reset`` / ``pts_jump``; ``reconnect`` after a live reopen). After one stream
jumped, the other's frames that still follow the old clock (muxers interleave loosely) are dropped
until it jumps too. Files keep their own times unless they go backwards (a reset continues after
the previous cell instead of repeating times); live segments are placed from the capture clock
(:mod:`pipeline.sources.liveclock`): the gap covers the wall time nobody delivered media for.
"""

from __future__ import annotations

from fractions import Fraction

from pipeline.grid import GridAligner


def seconds(pts: int, time_base: Fraction) -> float:
    """``float(pts * time_base)`` without Fraction arithmetic (int / int is correctly rounded too)."""
    return pts * time_base.numerator / time_base.denominator


class Segment:
    """A stretch of media with continuous timestamps: one aligner plus each stream's last time."""

    def __init__(self, aligner: GridAligner, t0: float):
        self.aligner, self.lo, self.hi = aligner, t0, t0
        self.joined: set[str] = set()       # streams whose clock this segment follows
        self.cap0: float | None = None      # live: monotonic capture time of t0 behind aligner.wall_t0


# what Timeline.route tells the reader to do with a frame
TAKE, DROP, START, RESTART = "take", "drop", "start", "restart"


class Timeline:
    """The segments of one source and where each sits on the timeline (timeline seconds: what cells carry).

    The reader asks :meth:`route` where each frame goes, builds the aligner of a new segment
    (:meth:`begin`, with :meth:`file_offset` for files) and reports its end (:meth:`ended`)."""

    def __init__(self, jump_s: float):
        self.jump_s = jump_s
        self.seg: Segment | None = None
        self.n_segments = 0
        self.end_s: float | None = None        # end (timeline s) of the last cell of the previous segment
        self.prev_offset = 0.0                 # its offset (timeline s - source s)
        self.prev_data_end: float | None = None    # its last media (timeline s)
        self.pending_gap = ""                  # reason for the gap the next segment starts with
        self.last_t: dict[str, float] = {}     # each stream's previous frame time, source clock
        self.file_t0: float | None = None      # files: the streams' earliest start time

    def new_container(self, file_t0: float | None) -> None:
        """A (re)opened input: its clocks start afresh."""
        self.file_t0 = file_t0
        self.last_t = {}

    def continues(self, last: float | None, t: float) -> bool:
        """True when ``t`` follows ``last`` on the same clock."""
        return last is not None and last - 1.0 <= t <= last + self.jump_s

    def frame_time(self, kind: str, t: float | None, duration_s: float) -> float:
        """A frame's time (source s): its PTS ``t``, or, for raw elementary streams (.h264, some ADTS)
        that carry no timestamps, the previous frame's plus ``duration_s``."""
        if t is not None:
            return t
        last = self.last_t.get(kind)
        return (self.file_t0 or 0.0) if last is None else last + duration_s

    def route(self, kind: str, t: float, skipped_before: float | None = None) -> str:
        """Where a frame of stream ``kind`` at ``t`` (source clock) goes: ``TAKE`` it into the
        current segment, ``DROP`` it (the other stream's old clock), ``START`` the first segment
        (at :meth:`first_t0`) or ``RESTART`` (end the segment, start one at ``t``, then take it).
        ``skipped_before``: the latest frame before ``t`` that was not decoded (the step to check is
        from it, or sparse frames would look like a jump)."""
        last = self.last_t.get(kind)
        if skipped_before is not None and last is not None:
            last = max(last, skipped_before)
        self.last_t[kind] = t
        continuous = self.continues(last, t)
        seg = self.seg
        if seg is None:
            return START
        if kind in seg.joined:
            if not continuous:
                self.pending_gap = "pts_reset" if t < last else "pts_jump"
                return RESTART
            return TAKE
        if continuous or not (seg.lo - 1.0 <= t <= seg.hi + self.jump_s):
            return DROP
        return TAKE

    def first_t0(self, t: float) -> float:
        """Where the first segment starts for a frame at ``t``: a file's earliest stream start."""
        t0 = self.file_t0 if self.file_t0 is not None and self.n_segments == 0 else t
        return min(t0, t)

    def joined(self, kind: str, t: float) -> None:
        """A frame taken into the current segment."""
        seg = self.seg
        seg.joined.add(kind)
        seg.hi = max(seg.hi, t)

    def file_offset(self, t0: float) -> float:
        """Files: the offset of a segment starting at ``t0``; they keep their own times unless they go
        backwards (the gap covers any jump)."""
        return max(self.prev_offset, self.end_s - t0)

    def begin(self, aligner: GridAligner, t0: float) -> Segment:
        self.seg = Segment(aligner, t0)
        self.n_segments += 1
        self.pending_gap = ""
        return self.seg

    def ended(self) -> bool:
        """The current segment has been flushed; True if it produced cells (one that produced
        nothing changes nothing)."""
        seg, self.seg = self.seg, None
        al = seg.aligner
        if al.emitted_end_s > al.t0 + al.offset:
            self.end_s, self.prev_offset = al.emitted_end_s, al.offset
            self.prev_data_end = seg.hi + al.offset
            return True
        return False

    def place_live(self, al: GridAligner, missed_s: float) -> None:
        """Live: put a segment after a gap on the timeline, ``missed_s`` (the wall time nobody
        delivered media for) after the previous segment's last media, never before its last cell."""
        al.offset = max(self.end_s, self.prev_data_end + missed_s) - al.t0
