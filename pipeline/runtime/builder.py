"""Record builder: per-cell observations of one stream in, merged time segments out.

Operators say, for every grid cell, which event labels fired, which action they see and
what a caption would say. The builder turns runs of consecutive cells with the same
observation into one record spanning them, so a flash seen in cells 7 and 8 becomes one
``event`` record covering ``[7*hop, 9*hop)``. Records are closed as soon as a label stops,
so a live stream emits them at most one cell after they end. Merging depends only on the
cell sequence (never on how cells were batched), which keeps record ids deterministic.

    b = RecordBuilder(make_draft)
    drafts = b.add(cell_span, observations)   # closed segments, ready for pipeline.records
    drafts += b.gap(gap)                      # a gap closes everything open and is itself an event
    drafts += b.finish()                      # end of stream
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class CellSpan:
    """Where a cell sits: its index in the stream's grid, media seconds, capture time (live only)."""

    index: int
    t_start: float
    t_end: float
    segment: int = 0
    wall_start: _dt.datetime | None = None


@dataclass(frozen=True)
class Observation:
    """One thing an operator reports for one cell.

    kind: ``event``, ``action`` or ``caption``; ``label`` is the caption text for captions.
    ``top_k`` (actions): ``((label, score), ...)`` best first. ``model`` names the operator and
    method, so records from different operators never merge.
    """

    kind: str
    label: str
    score: float
    model: str
    modality: str = ""
    top_k: tuple[tuple[str, float], ...] = ()
    method: str = ""
    values: tuple[tuple[str, float], ...] = ()   # sentiment: negative/neutral/positive/valence/arousal


@dataclass
class Draft:
    """A finished segment: everything a record needs except run-level fields (run_id, source)."""

    kind: str
    stream_id: str
    t_start: float
    t_end: float
    wall_start: _dt.datetime | None
    model: str
    fields: dict


@dataclass
class _Open:
    obs: Observation
    first: CellSpan
    last: CellSpan
    scores: list[float] = field(default_factory=list)
    top_k: dict[str, list[float]] = field(default_factory=dict)
    values: dict[str, list[float]] = field(default_factory=dict)


class RecordBuilder:
    """Merges consecutive cells with the same (kind, label, model) into one segment. One per stream.

    ``max_cells``: a segment that reaches this many cells is closed and the next cell starts a new
    one, so a condition that lasts (silence, a static camera) still yields records while a live
    stream goes on. Cut points depend only on the cell sequence, keeping ids deterministic.
    """

    def __init__(self, stream_id: str, max_cells: int | None = None):
        self.stream_id = stream_id
        self.max_cells = max_cells
        self._open: dict[tuple[str, str, str], _Open] = {}
        self._last: CellSpan | None = None

    def add(self, cell: CellSpan, observations: list[Observation]) -> list[Draft]:
        """Feed one cell (in stream order) and what was observed in it; returns segments that ended."""
        out: list[Draft] = []
        contiguous = (self._last is not None and cell.segment == self._last.segment
                      and cell.index == self._last.index + 1)
        if not contiguous:
            out += self._close_all()
        seen = set()
        for obs in observations:
            key = (obs.kind, obs.label, obs.model)
            if key in seen:
                continue
            seen.add(key)
            cur = self._open.get(key)
            if cur is None:
                cur = self._open[key] = _Open(obs, cell, cell)
            cur.last = cell
            cur.scores.append(float(obs.score))
            for lab, s in obs.top_k:
                cur.top_k.setdefault(lab, []).append(float(s))
            for name, v in obs.values:
                cur.values.setdefault(name, []).append(float(v))
        full = self.max_cells is not None
        for key in [k for k, o in self._open.items()
                    if k not in seen or (full and len(o.scores) >= self.max_cells)]:
            out.append(self._close(self._open.pop(key)))
        self._last = cell
        return out

    def gap(self, t_start: float, t_end: float, reason: str, *, model: str,
            wall_start: _dt.datetime | None = None, score: float = 1.0) -> list[Draft]:
        """Missing media: closes every open segment and returns them plus one ``gap`` event."""
        out = self._close_all()
        self._last = None
        out.append(Draft("event", self.stream_id, float(t_start), float(max(t_end, t_start)), wall_start, model,
                         {"label": "gap", "modality": "audiovisual", "score": float(score)}))
        return out

    def finish(self) -> list[Draft]:
        """End of stream: every open segment is closed."""
        self._last = None
        return self._close_all()

    def _close_all(self) -> list[Draft]:
        out = [self._close(o) for o in self._open.values()]
        self._open.clear()
        return out

    def _close(self, o: _Open) -> Draft:
        obs = o.obs
        if obs.kind == "event":
            f = {"label": obs.label, "modality": obs.modality, "score": max(o.scores)}
        elif obs.kind == "action":
            mean = {lab: float(np.sum(v)) / len(o.scores) for lab, v in o.top_k.items()}
            top = sorted(mean.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
            f = {"label": obs.label, "score": float(np.mean(o.scores)),
                 "top_k": [{"label": lab, "score": s} for lab, s in top]}
        elif obs.kind == "caption":
            f = {"text": obs.label, "method": obs.method or "template"}
        elif obs.kind == "sentiment":
            f = {"label": obs.label, **{k: float(np.mean(v)) for k, v in o.values.items()}}
        else:
            raise ValueError(f"unknown observation kind {obs.kind!r}")
        return Draft(obs.kind, self.stream_id, o.first.t_start, o.last.t_end, o.first.wall_start, obs.model, f)
