"""What the driver and the actors say to each other: small dataclasses, never loose dicts.

The driver schedules on metadata only. A source actor answers a pull with a :class:`Pull` whose
items are :class:`CellMeta` (times, masks, counts) and :class:`~pipeline.grid.Gap` objects, plus a
separate *payload* object holding the cells themselves (every array a :class:`~pipeline.grid.Cell`
carries, whatever fields it grows). The driver keeps the payload's handle (a Ray ``ObjectRef``)
inside each ``CellMeta`` and hands it on to an operator actor in a :class:`Job`; the operator
actor resolves it. The driver never unpickles a frame or an audio array.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field

import numpy as np

from pipeline.grid import Cell, GridConfig


@dataclass
class CellMeta:
    """A cell as the driver sees it: where it sits on the grid and what it holds, not its arrays.

    ``frame_mask`` (F,) bool is the cell's own mask (a few bytes); ``audio_fraction`` is the share of
    real audio samples (0..1). ``slot`` is the cell's position in its pull's payload and ``payload``
    the handle of that payload (set by the driver; None on the wire from the source actor).
    """

    stream_id: str
    index: int
    t_start: float
    t_end: float
    frame_mask: np.ndarray
    audio_fraction: float = 0.0
    segment: int = 0
    wall_start: _dt.datetime | None = None
    source: str = ""
    is_live: bool = False
    slot: int = 0
    payload: object = None

    @classmethod
    def of(cls, cell: Cell, slot: int = 0) -> "CellMeta":
        return cls(stream_id=cell.stream_id, index=cell.index, t_start=cell.t_start, t_end=cell.t_end,
                   frame_mask=np.array(cell.frame_mask, bool), audio_fraction=float(np.mean(cell.audio_mask))
                   if cell.audio_mask.size else 0.0, segment=cell.segment, wall_start=cell.wall_start,
                   source=cell.source, is_live=cell.is_live, slot=slot)

    @property
    def frames(self) -> int:
        """Real (decoded) frames in the cell."""
        return int(self.frame_mask.sum())

    @property
    def has_video(self) -> bool:
        return bool(self.frame_mask.any())

    @property
    def has_audio(self) -> bool:
        return self.audio_fraction > 0.0

    def bare(self) -> "CellMeta":
        """This metadata without its payload handle (what the driver keeps and observers see)."""
        return self if self.payload is None else dataclasses.replace(self, payload=None)

    def place(self, cell: Cell) -> Cell:
        """``cell`` moved to where this metadata puts it on the stream's timeline (the driver shifts a
        restarted live source's cells after the gap its restart left)."""
        if (cell.index, cell.t_start, cell.t_end, cell.segment) == (self.index, self.t_start, self.t_end,
                                                                    self.segment):
            return cell
        return dataclasses.replace(cell, index=self.index, t_start=self.t_start, t_end=self.t_end,
                                   segment=self.segment)


@dataclass(frozen=True)
class SourceInfo:
    """What a source actor found when it opened its input."""

    stream_id: str
    source: str                       # the input with any password masked
    is_live: bool
    duration_s: float | None = None


@dataclass(frozen=True)
class Thumbnail:
    """A small JPEG of a recent frame (for a live page); ``t_s`` is its media time."""

    t_s: float
    jpeg: bytes
    width: int
    height: int


@dataclass
class Pull:
    """What one ``SourceWorker.pull`` / ``take`` returns. ``items`` are in stream order: ``Cell`` (pull)
    or :class:`CellMeta` (take) and ``Gap`` objects."""

    items: list
    done: bool = False
    error: str | None = None
    info: SourceInfo | None = None
    decoded_cells: int = 0
    dropped_cells: int = 0
    reconnects: int = 0
    queue_depth: int = 0
    facts: dict | None = None       # the input's codecs, size, rates, t0 and media origin (once known)
    source_state: str = "connecting"   # connecting (opening the input), reading, reconnecting, ended
    source_note: str | None = None     # connecting / reconnecting: why the last attempt to open failed
    thumbnail: Thumbnail | None = None


@dataclass
class Job:
    """Consecutive cells of one stream plus the operators' state after the cell before them.

    Called directly, ``cells`` are :class:`~pipeline.grid.Cell` objects and ``state`` the state itself.
    From the driver, ``cells`` are :class:`CellMeta` whose payloads the operator actor resolves, and
    ``state`` is the handle of the state a previous job returned (``state_from``: that job's ``seq``;
    0 with ``state=None`` is a stream's start, or the start after a gap). ``key`` names the stream
    within the run; the operator actor keeps each stream's latest state under it, so the handle is
    only resolved after a restart or when the stream moved to another actor.
    """

    stream_id: str
    cells: list
    state: object = None
    key: int = 0
    seq: int = 0
    state_from: int = 0
    final: bool = False
    after_gap: bool = False      # media is missing before these cells: detectors start afresh


@dataclass
class JobResult:
    stream_id: str
    observations: list          # one list[Observation] per cell
    state: object = None        # only from ``OperatorWorker.process`` (the state travels apart otherwise)
    seconds: float = 0.0
    tail: list = field(default_factory=list)   # a final job's end-of-stream observations (spans)


@dataclass(frozen=True)
class Described:
    """An operator actor's answer to ``describe``: its models and the grid it needs, or why it could not load."""

    models: tuple[str, ...] = ()
    grid: GridConfig | None = None
    error: str | None = None


@dataclass(frozen=True)
class SinkReady:
    """The sink actor's answer to ``ready``: the inputs already committed, or why a sink could not connect."""

    committed: tuple[str, ...] = ()
    error: str | None = None
    markers: dict = field(default_factory=dict)     # input -> its commit marker (re-run fingerprints)


@dataclass(frozen=True)
class Delivery:
    """The sink actor's answer to ``deliver``. ``committed`` is None when no commit was asked, False
    when a sink lost records of the input (a re-run redoes it); ``incarnation`` changes when the sink
    actor was restarted (what it had not flushed is gone)."""

    delivered: int
    committed: bool | None
    errors: dict = field(default_factory=dict)
    incarnation: str = ""
    sinks: tuple = ()                  # the sinks that took these records without a new error
