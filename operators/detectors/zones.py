"""Zones and lines on a camera's view: how many tracked people are inside each zone, and who crossed
each line in which direction (supervision's ``PolygonZone`` and ``LineZone``; the classic
camera-fleet analytics).

    zones = (Zone("door", "polygon", ((0.6, 0.2), (0.9, 0.2), (0.9, 0.8), (0.6, 0.8))),
             Zone("gate", "line", ((0.5, 0.0), (0.5, 1.0))))
    counter = build("zones")
    res, state = counter(boxes, zones, state)      # boxes: PeopleResult.boxes of the same cells
    res.occupancy[t]    # {"door": most people inside in one frame of cell t, ...}
    res.crossings[t]    # {"gate": (n_in, n_out) crossings in cell t, ...}

Coordinates are relative to the frame, 0..1, x to the right and y down. A person is at the bottom
centre of their box (their feet). A line's ``in`` direction is its direction (first point to second)
turned 90 degrees counter-clockwise on the screen: a line drawn top to bottom counts left-to-right
walkers as ``in`` and right-to-left as ``out``; a line drawn left to right counts upward walkers
as ``in``. A crossing counts once the person is seen on the other side (``min_crossing_frames``
tracker updates).
"""

from __future__ import annotations

import functools
from collections import defaultdict, deque
from dataclasses import dataclass

import numpy as np
from torch import nn

from operators.registry import register

# relative coordinates become integer pixels of a square canvas this wide (PolygonZone rasterises)
CANVAS_PX = 1000


@dataclass(frozen=True)
class Zone:
    """A named ``polygon`` (3+ points) or ``line`` (2 points) in relative coordinates (0..1)."""

    name: str
    kind: str
    points: tuple[tuple[float, float], ...]

    def __post_init__(self):
        if self.kind not in ("polygon", "line"):
            raise ValueError(f"zone {self.name!r}: kind must be polygon or line, got {self.kind!r}")
        need = 3 if self.kind == "polygon" else 2
        if (len(self.points) < need) if self.kind == "polygon" else len(self.points) != 2:
            least = "at least " if need == 3 else ""
            raise ValueError(f"zone {self.name!r}: a {self.kind} needs {least}{need} points, got {len(self.points)}")
        for p in self.points:
            if len(p) != 2 or not all(0.0 <= float(v) <= 1.0 for v in p):
                raise ValueError(f"zone {self.name!r}: point {list(p)} is outside the frame (coordinates are 0..1)")
        if self.kind == "line" and tuple(self.points[0]) == tuple(self.points[1]):
            raise ValueError(f"zone {self.name!r}: the line's two points are the same")


@dataclass(frozen=True)
class ZonesConfig:
    """``min_crossing_frames``: tracker updates a person must be seen on the far side of a line."""

    min_crossing_frames: int = 1
    hop_s: float = 1.0


@dataclass(frozen=True)
class ZonesResult:
    """Per cell: ``occupancy`` {zone: most people inside in one frame}, ``crossings`` {line: (n_in,
    n_out)} (only lines crossed in that cell). ``method`` names what computed it."""

    occupancy: tuple[dict, ...]
    crossings: tuple[dict, ...]
    method: str
    modality: str = "visual"


def _px(points) -> np.ndarray:
    return np.round(np.asarray(points, np.float64) * CANVAS_PX).astype(np.int64)


@functools.lru_cache(maxsize=64)
def _polygon_zone(points: tuple):
    import supervision as sv

    return sv.PolygonZone(_px(points), triggering_anchors=(sv.Position.BOTTOM_CENTER,))


def _line_zone(points, min_frames: int):
    import supervision as sv

    (x0, y0), (x1, y1) = _px(points).tolist()
    return sv.LineZone(sv.Point(x0, y0), sv.Point(x1, y1), triggering_anchors=(sv.Position.BOTTOM_CENTER,),
                       minimum_crossing_threshold=min_frames)


def _save_line(lz) -> dict:
    """sv.LineZone's state as plain data (its history is a defaultdict with a lambda: no pickle)."""
    d = lz.__dict__.copy()
    d["crossing_state_history"] = {k: list(v) for k, v in lz.crossing_state_history.items()}
    return d


def _load_line(d: dict):
    import supervision as sv

    lz = sv.LineZone.__new__(sv.LineZone)
    lz.__dict__.update(d)
    n = lz.crossing_history_length
    lz.crossing_state_history = defaultdict(lambda: deque(maxlen=n),
                                            {k: deque(v, maxlen=n) for k, v in d["crossing_state_history"].items()})
    return lz


class ZoneCounter(nn.Module):
    """Occupancy of polygons and crossings of lines by tracked people; see the module docstring.

    Arguments: ``boxes`` per cell, ``((slot, (K, 5) float32 x0, y0, x1, y1 in 0..1, track id), ...)``
    in slot order (:attr:`PeopleResult.boxes <operators.detectors.people.PeopleResult>`); ``zones``
    a tuple of :class:`Zone`; ``state`` what the previous call returned (None at a stream's start).
    """

    def __init__(self, cfg: ZonesConfig):
        super().__init__()
        self.cfg = cfg
        self.method = "supervision-PolygonZone/LineZone(bottom-centre)"

    def forward(self, boxes, zones, state=None) -> tuple[ZonesResult, dict]:
        import supervision as sv

        state = dict(state or {})
        lines = {}
        for z in zones:
            if z.kind == "line":
                saved = state.get((z.name, z.points))
                lines[z.name] = _load_line(saved) if saved else _line_zone(z.points, self.cfg.min_crossing_frames)
        occupancy, crossings = [], []
        for cell in boxes:
            occ = {z.name: 0 for z in zones if z.kind == "polygon"}
            crossed = {}
            for _, arr in cell:
                arr = np.asarray(arr, np.float32).reshape(-1, 5)
                det = sv.Detections(xyxy=arr[:, :4].astype(np.float64) * CANVAS_PX,
                                    tracker_id=arr[:, 4].astype(int))
                for z in zones:
                    if z.kind == "polygon":
                        inside = _polygon_zone(z.points).trigger(det) if len(det) else np.zeros(0, bool)
                        occ[z.name] = max(occ[z.name], int(np.sum(inside)))
                    else:
                        n_in, n_out = lines[z.name].trigger(det)
                        if n_in.any() or n_out.any():
                            a, b = crossed.get(z.name, (0, 0))
                            crossed[z.name] = (a + int(n_in.sum()), b + int(n_out.sum()))
            occupancy.append(occ)
            crossings.append(crossed)
        state = {(z.name, z.points): _save_line(lines[z.name]) for z in zones if z.kind == "line"}
        return ZonesResult(tuple(occupancy), tuple(crossings), self.method), state


register("zones", family="track_analytics", config_cls=ZonesConfig, builder=ZoneCounter,
         description="zone occupancy and line crossings (with direction) of tracked people")
