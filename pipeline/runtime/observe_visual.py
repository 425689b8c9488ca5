"""How the visual operators are called and how their results become observations (records).

- ``people``: gets the grid's detection view. Per cell: an event ``person`` (``count`` = most
  people in one frame, ``score`` = mean detection score); per tracked person an action
  ``walking`` / ``running`` / ``standing`` with ``subject="person"`` and its ``track_id``, plus one
  action per label with no track id whose ``count`` is how many people do it; ``entering`` in the
  cell a person came into view across the border, ``leaving`` in the cell they were last seen
  before they went out of it (known once they stay gone, so it may come a few cells later).
- ``zones``: per zone and cell with someone inside, an event ``zone_occupancy`` (``detail`` = the
  zone's name, ``count`` = most people inside in one frame); per line, direction and cell with
  crossings, an event ``line_crossing`` (``detail`` = ``<line>:in`` or ``<line>:out``, ``count`` =
  crossings in that cell; each cell its own record, so the counts add up).
- ``scene_cut``: one event ``cut`` per shot change spanning the last frame before it to the first
  after it (a fade: its first frame to its last, ``detail="fade"``).
"""

from __future__ import annotations

import fnmatch
import math

import numpy as np

from pipeline.runtime.analyzers import Call, adapter, runner
from pipeline.runtime.builder import Observation

PEOPLE, ZONES, CUTS = "people", "zones", "scene_cut"


def _detection_view(cells):
    """(T, D, h, w, 3) frames and (T, D) mask of the cells' detection view, or (None, None) when
    no cell has one (the view is off, or no video)."""
    views = [c.detect_frames for c in cells]
    shape = next((v.shape for v in views if v is not None), None)
    if shape is None:
        return None, None
    frames = np.stack([v if v is not None and v.shape == shape else np.zeros(shape, np.uint8) for v in views])
    mask = np.stack([c.detect_mask if c.detect_frames is not None and c.detect_frames.shape == shape
                     else np.zeros(shape[0], bool) for c in cells])
    return frames, mask


@runner(PEOPLE)
def _run_people(name, det, call: Call, state):
    frames, mask = _detection_view(call.cells)
    times = np.stack([c.frame_times for c in call.cells])
    return det(call.frames, call.frame_mask, call.audio, call.audio_mask, state, detect_frames=frames,
               detect_mask=mask, detect_slots=call.grid.detect_slots if frames is not None else None,
               frame_times=times)


def _model(name, res) -> str:
    return f"{name}:{getattr(res, 'method', name)}"


def _cell_span(cells, t_s: float) -> tuple[float, float]:
    """Media seconds of the grid cell holding ``t_s`` (it may lie before the first of ``cells``)."""
    hop = cells[0].t_end - cells[0].t_start
    k = math.floor((t_s - cells[0].t_start) / hop + 1e-9)
    return cells[0].t_start + k * hop, cells[0].t_start + (k + 1) * hop


@adapter(PEOPLE)
def _observe_people(name, det, res, cells) -> list[list[Observation]]:
    model = _model(name, res)
    count = np.asarray(res.extras["count"])
    scores = np.asarray(res.scores, np.float64)
    out: list[list[Observation]] = [[] for _ in cells]
    for t, people in enumerate(res.tracks):
        if res.fired[t, 0]:
            out[t].append(Observation("event", "person", float(scores[t, 0]), model, modality="visual",
                                      operator=name, count=int(count[t])))
        doing: dict[str, list] = {}
        for p in people:
            if p.entering:
                out[t].append(Observation("action", "entering", float(p.score), model,
                                          top_k=(("entering", float(p.score)),), operator=name, subject="person",
                                          track_id=int(p.track_id), count=1))
            if p.action is None:
                continue
            doing.setdefault(p.action, []).append(p)
            out[t].append(Observation("action", p.action, float(dict(p.action_scores)[p.action]), model,
                                      top_k=tuple(p.action_scores), operator=name, subject="person",
                                      track_id=int(p.track_id), count=1))
        for action, who in sorted(doing.items()):
            mean = float(np.mean([dict(p.action_scores)[action] for p in who]))
            out[t].append(Observation("action", action, mean, model, top_k=((action, mean),), operator=name,
                                      subject="person", count=len(who)))
    for d in res.departures:
        span = _cell_span(cells, d.t_s)
        out[-1].append(Observation("action", "leaving", 1.0, model, top_k=(("leaving", 1.0),), operator=name,
                                   subject="person", track_id=int(d.track_id), count=1, span=span))
    return out


def zones_for(stream_id: str, zones) -> tuple:
    """The zones of the first ``(pattern, zones)`` whose pattern is ``stream_id``, or a glob matching
    it or its last path component (a file's stream id is its path: ``cam*`` matches ``/data/cam1.mp4``)."""
    base = stream_id.rstrip("/").rsplit("/", 1)[-1]
    for pattern, specs in zones:
        if pattern == stream_id or fnmatch.fnmatchcase(stream_id, pattern) or fnmatch.fnmatchcase(base, pattern):
            return specs
    return ()


@runner(ZONES)
def _run_zones(name, det, call: Call, state):
    from operators.detectors.zones import Zone

    specs = zones_for(call.cells[0].stream_id, call.options.get("zones", ()))
    people = call.results.get(PEOPLE)
    zones = tuple(Zone(n, kind, tuple(tuple(p) for p in pts)) for n, kind, pts in specs)
    boxes = people.boxes if people is not None else tuple(() for _ in call.cells)
    return det(boxes, zones, state)


@adapter(ZONES)
def _observe_zones(name, det, res, cells) -> list[list[Observation]]:
    model = _model(name, res)
    out: list[list[Observation]] = [[] for _ in cells]
    for t, (occ, crossed) in enumerate(zip(res.occupancy, res.crossings)):
        for zone, n in sorted(occ.items()):
            if n:
                out[t].append(Observation("event", "zone_occupancy", 1.0, model, modality="visual", operator=name,
                                          count=int(n), detail=zone))
        span = (cells[t].t_start, cells[t].t_end)
        for line, (n_in, n_out) in sorted(crossed.items()):
            for direction, n in (("in", n_in), ("out", n_out)):
                if n:
                    out[t].append(Observation("event", "line_crossing", 1.0, model, modality="visual",
                                              operator=name, count=int(n), detail=f"{line}:{direction}", span=span))
    return out


def _frame_time(cells, t: int, offset_s: float) -> float:
    """Media time of the frame ``offset_s`` from the start of cell ``t`` (slot offsets): its real
    PTS time where that frame is in these cells, else the slot's nominal time."""
    F = len(cells[0].frame_times)
    hop = cells[0].t_end - cells[0].t_start
    k = t + math.floor(offset_s / hop + 1e-9)
    slot = int(round((offset_s - (k - t) * hop) * F / hop))
    if 0 <= k < len(cells) and 0 <= slot < F and cells[k].frame_mask[slot]:
        return float(cells[k].frame_times[slot])
    return cells[t].t_start + offset_s + 0.5 * hop / F


@adapter(CUTS)
def _observe_cuts(name, det, res, cells) -> list[list[Observation]]:
    model = _model(name, res)
    out: list[list[Observation]] = [[] for _ in cells]
    scores = np.asarray(res.scores, np.float64)
    before, fade = np.asarray(res.extras["before_s"]), np.asarray(res.extras["fade"])
    for t in np.flatnonzero(np.asarray(res.fired)[:, 0]):
        t0 = _frame_time(cells, t, float(before[t]))
        t1 = _frame_time(cells, t, float(res.times[t, 0]))
        out[t].append(Observation("event", "cut", float(scores[t, 0]), model, modality="visual", operator=name,
                                  detail="fade" if fade[t] else None, span=(t0, max(t0, t1))))
    return out
