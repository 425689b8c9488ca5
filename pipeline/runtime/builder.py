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

A run cut at the maximum segment length stays one *episode*: every piece carries the
``episode_id`` of the first (its record id). An observation with a ``span`` (a transcript of a
speech stretch, known only when the stretch ends) is not merged: it becomes one record with
exactly those media times.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

import numpy as np

from pipeline.records import id_text, make_record_id
from pipeline.redact import strip_credentials


@dataclass(frozen=True)
class CellSpan:
    """Where a cell sits: its index in the stream's grid, media seconds, capture time (live only)."""

    index: int
    t_start: float
    t_end: float
    segment: int = 0
    wall_start: _dt.datetime | None = None

    @property
    def wall_end(self) -> _dt.datetime | None:
        return None if self.wall_start is None else self.wall_start + _dt.timedelta(seconds=self.t_end - self.t_start)

    def wall_at(self, t_s: float) -> _dt.datetime | None:
        """Capture time of media second ``t_s`` on this cell's clock (None without one)."""
        return None if self.wall_start is None else self.wall_start + _dt.timedelta(seconds=t_s - self.t_start)


@dataclass(frozen=True)
class Observation:
    """One thing an operator reports for one cell.

    kind: ``event``, ``action``, ``sentiment`` or ``caption``; ``label`` is the caption text for captions.
    ``top_k`` (actions): ``((label, score), ...)`` best first. ``model`` names the operator and
    method, so records from different operators never merge; ``operator`` is the registry name
    (default: ``model`` up to its first ``:``). ``subject``, ``track_id``, ``count`` and ``detail``
    are the v2 record fields; cells merge only when subject, track and detail agree too. ``score`` may be
    None for a caption whose method has no confidence. ``span``: media seconds ``(t_start, t_end)``
    of an observation that covers its own stretch (emitted as one record, never merged).
    """

    kind: str
    label: str
    score: float | None
    model: str
    modality: str = ""
    top_k: tuple[tuple[str, float], ...] = ()
    method: str = ""
    values: tuple[tuple[str, float], ...] = ()   # sentiment: negative/neutral/positive/valence/arousal
    operator: str = ""
    subject: str | None = None
    track_id: int | None = None
    count: int | None = None
    detail: str | None = None
    span: tuple[float, float] | None = None

    @property
    def key(self) -> tuple:
        """What must agree for consecutive cells to merge into one record."""
        return (self.kind, self.label, self.model, self.operator, self.modality, self.subject, self.track_id,
                self.detail)


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
    wall_end: _dt.datetime | None = None
    operator: str = ""
    episode_id: str = ""          # "" = the record is its own episode

    def record_kwargs(self) -> dict:
        """Keyword arguments of ``RECORD_TYPES[kind].make`` besides stream_id, source and run_id."""
        return dict(t_start=self.t_start, t_end=self.t_end, model=self.model, wall_start=self.wall_start,
                    wall_end=self.wall_end, operator=self.operator, episode_id=self.episode_id, **self.fields)


@dataclass
class _Open:
    obs: Observation
    first: CellSpan
    last: CellSpan
    episode_id: str = ""
    scores: list[float] = field(default_factory=list)
    top_k: dict[str, list[float]] = field(default_factory=dict)
    values: dict[str, list[float]] = field(default_factory=dict)
    counts: list[int] = field(default_factory=list)
    detail: str | None = None
    cells: int = 0


class RecordBuilder:
    """Merges consecutive cells with the same (kind, label, model) into one segment. One per stream.

    ``max_cells``: a segment that reaches this many cells is closed and the next cell starts a new
    one, so a condition that lasts (silence, a static camera) still yields records while a live
    stream goes on. Cut points depend only on the cell sequence, keeping ids deterministic.
    """

    def __init__(self, stream_id: str, max_cells: int | None = None):
        self.stream_id = stream_id
        self.max_cells = max_cells
        self._open: dict[tuple, _Open] = {}
        self._last: CellSpan | None = None
        self._id_stream = strip_credentials(stream_id)     # as the records name it
        self._carried: dict[tuple, str] = {}   # key -> episode of a piece cut at max length in the last cell
        self._edges: dict[int, float] = {}     # microsecond -> exact cell edge time (recent cells), for spans

    def add(self, cell: CellSpan, observations: list[Observation]) -> list[Draft]:
        """Feed one cell (in stream order) and what was observed in it; returns segments that ended."""
        out: list[Draft] = []
        self._edge(cell.t_start)
        self._edge(cell.t_end)
        contiguous = (self._last is not None and cell.segment == self._last.segment
                      and cell.index == self._last.index + 1)
        carry: dict[tuple, str] = {}
        if not contiguous:
            out += self._close_all()
        seen = set()
        for obs in observations:
            if obs.span is not None:
                out.append(self._span_draft(cell, obs))
                continue
            key = obs.key
            if key in seen:
                continue
            seen.add(key)
            cur = self._open.get(key)
            if cur is None:
                cur = self._open[key] = _Open(obs, cell, cell, episode_id=self._carried.pop(key, ""))
            cur.last = cell
            if obs.score is not None:
                cur.scores.append(float(obs.score))
            for lab, s in obs.top_k:
                cur.top_k.setdefault(lab, []).append(float(s))
            for name, v in obs.values:
                cur.values.setdefault(name, []).append(float(v))
            if obs.count is not None:
                cur.counts.append(int(obs.count))
            if cur.detail is None and obs.detail is not None:
                cur.detail = obs.detail
            cur.cells += 1
        full = self.max_cells is not None
        for key in [k for k, o in self._open.items()
                    if k not in seen or (full and o.cells >= self.max_cells)]:
            o = self._open.pop(key)
            d = self._close(o)
            if key in seen:              # cut at the maximum length: the next piece continues its episode
                carry[key] = d.episode_id or self._own_id(d)
            out.append(d)
        self._carried = carry
        self._last = cell
        return out

    def gap(self, t_start: float, t_end: float, reason: str, *, model: str,
            wall_start: _dt.datetime | None = None, score: float = 1.0,
            wall_end: _dt.datetime | None = None) -> list[Draft]:
        """Missing media: closes every open segment and returns them plus one ``gap`` event whose
        ``detail`` is ``reason`` (``reconnect``, ``pts_jump``, ``pts_reset``, ``dropped``, ...)."""
        out = self._close_all()
        self._last = None
        self._edge(float(t_start))
        self._edge(float(t_end))
        if wall_start is not None and wall_end is not None and wall_end < wall_start:
            wall_end = wall_start
        out.append(Draft("event", self.stream_id, float(t_start), float(max(t_end, t_start)), wall_start, model,
                         {"label": "gap", "modality": "audiovisual", "score": float(score), "detail": reason},
                         wall_end=wall_end, operator="runtime"))
        return out

    def add_spans(self, cell: CellSpan, observations: list[Observation]) -> list[Draft]:
        """Span observations that came after ``cell`` was added (e.g. at the end of the stream): one
        record each, with their own times; the cell's clock gives their wall times. Merging is untouched."""
        return [self._span_draft(cell, o) for o in observations if o.span is not None]

    def finish(self) -> list[Draft]:
        """End of stream: every open segment is closed."""
        self._last = None
        return self._close_all()

    def _close_all(self) -> list[Draft]:
        out = [self._close(o) for o in self._open.values()]
        self._open.clear()
        self._carried = {}
        return out

    def _own_id(self, d: Draft) -> str:
        return make_record_id(self._id_stream, d.kind, d.t_start, d.t_end, id_text(d.kind, d.fields))

    def _fields(self, obs: Observation, scores: list[float], top_k: dict, values: dict, counts: list[int],
                detail: str | None, n_cells: int) -> dict:
        count = max(counts) if counts else None
        if obs.kind == "event":
            f = {"label": obs.label, "modality": obs.modality, "score": max(scores) if scores else 0.0,
                 "count": count, "detail": detail}
        elif obs.kind == "action":
            score = float(np.mean(scores)) if scores else 0.0
            top = []
            if top_k:
                # top_k[0] is the label by contract (the label every merged cell reported), then the rest
                mean = {lab: float(np.sum(v)) / max(1, n_cells) for lab, v in top_k.items()}
                lead = mean.pop(obs.label, score)
                top = [(obs.label, lead)] + sorted(mean.items(), key=lambda kv: (-kv[1], kv[0]))[:4]
            f = {"label": obs.label, "score": score,
                 "top_k": [{"label": lab, "score": s} for lab, s in top],
                 "subject": obs.subject, "track_id": obs.track_id, "count": count}
        elif obs.kind == "caption":
            f = {"text": obs.label, "method": obs.method or "template",
                 "score": float(np.mean(scores)) if scores else None}
        elif obs.kind == "sentiment":
            f = {"label": obs.label, **{k: float(np.mean(v)) for k, v in values.items()},
                 "modality": obs.modality or "audiovisual"}
        else:
            raise ValueError(f"unknown observation kind {obs.kind!r}")
        return f

    def _close(self, o: _Open) -> Draft:
        obs = o.obs
        f = self._fields(obs, o.scores, o.top_k, o.values, o.counts, o.detail, o.cells)
        return Draft(obs.kind, self.stream_id, o.first.t_start, o.last.t_end, o.first.wall_start, obs.model, f,
                     wall_end=o.last.wall_end, operator=obs.operator, episode_id=o.episode_id)

    def _edge(self, t: float) -> None:
        self._edges[round(t * 1e6)] = t
        if len(self._edges) > 4096:          # only recent cells matter: spans end at most minutes back
            for k in list(self._edges)[:2048]:
                del self._edges[k]

    def _snap(self, t: float) -> float:
        """A span time to the microsecond (as record ids are): the same span computed from calls that
        start at different cells (batching) differs in the last bit of a float, never in the record.
        A time on a cell edge is that edge exactly, so a caption after a gap starts where the gap ends."""
        k = round(float(t) * 1e6)
        return self._edges.get(k, k / 1e6)

    def _span_draft(self, cell: CellSpan, obs: Observation) -> Draft:
        t0, t1 = self._snap(obs.span[0]), self._snap(max(obs.span))
        f = self._fields(obs, [] if obs.score is None else [float(obs.score)], {k: [v] for k, v in obs.top_k},
                         {k: [v] for k, v in obs.values}, [] if obs.count is None else [obs.count], obs.detail, 1)
        return Draft(obs.kind, self.stream_id, t0, t1, cell.wall_at(t0), obs.model, f, wall_end=cell.wall_at(t1),
                     operator=obs.operator)
