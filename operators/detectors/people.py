"""People, offline: OpenCV's HOG pedestrian detector where something moves, tracked across cells.

No download: the detector is the linear SVM that ships inside OpenCV
(``cv2.HOGDescriptor_getDefaultPeopleDetector``, Dalal & Triggs' INRIA-person model, 64x128
window). It is slow (~120 ms for a 768x576 frame on one core) and finds nobody much under
~100 px tall, so it runs only where a background model says something moves, on those regions,
each scaled so the region is about ``person_height_px`` tall. Between detections the boxes are
carried by sparse optical flow on the grid's small frames, and supervision's ``ByteTrack`` gives
them stable track ids; from each track's motion relative to its height comes what the person does.

    det = build("people")
    result, state = det(frames, frame_mask, state=state, detect_frames=view, detect_mask=view_mask,
                        detect_slots=(2,), frame_times=times)
    result.count            # (T,) most people in one frame of each cell
    result.tracks[t]        # what each tracked person did in cell t (PersonInCell)
    result.boxes[t]         # ((slot, (K, 5) float32 x0, y0, x1, y1 in 0..1, track id), ...)

Arguments besides the detector convention (:mod:`operators.detectors.base`):
  detect_frames (T, D, h, w, 3) uint8 RGB, the grid's detection view (aspect kept); None: the small
                frames themselves are searched (people must then be ~100 px tall in them)
  detect_mask   (T, D) bool
  detect_slots  D frame slots (0..F-1) the detection view's frames were taken from
  frame_times   (T, F) float64 media seconds of the small frames (NaN where missing); None: times
                counted from the stream start at ``hop_s`` per cell

The background model is a per-pixel running Gaussian (mean and variance, numpy) instead of
OpenCV's MOG2: MOG2's state cannot be pickled, and the state of a stream must travel with its
cells between operator actors so results never depend on which actor ran which cells.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np
from torch import nn

from operators.detectors.base import DetectorResult, as_numpy, check_visual, empty, result
from operators.registry import register

ACTIONS = ("walking", "running", "standing")


@dataclass(frozen=True)
class PeopleConfig:
    """Units are in the names; speeds are in body heights per second (a walk is ~0.5-1.2).

    Foreground: a running Gaussian per pixel of the small frames (scaled to ``foreground_px``
    square, grey) that forgets with a time constant of ``background_s``; a pixel is foreground when
    it is more than ``foreground_sigmas`` standard deviations (at least ``min_std_grey``) from the
    mean and not a shadow (darker by a factor 0.45-0.9 of the background). Regions smaller than
    ``min_region_fraction`` of the frame are ignored.

    Detection: each moving region (at most ``max_regions``, largest first) is cut from the detection
    view with a margin, scaled so it is ``person_height_px`` tall (at most ``max_upscale`` x), and
    searched by HOG (pyramid step ``hog_scale_step``), and so are the boxes the tracks hold (people
    who stopped); the first detection frame of a stream is searched whole at ``first_search_upscale``
    (people standing still from the start never differ from the background); detections with an SVM margin under
    ``min_margin`` are dropped, and where nothing moves (under 5% of the box is foreground) those under
    ``still_min_margin``; overlaps above ``nms_iou`` are merged. A detection's score is
    ``1 - exp(-margin)``.

    Detection runs on one detection-view frame every ``detect_every_s`` (the view holds
    ``GridConfig.detect_fps`` frames a second; more are skipped).

    Tracking: ByteTrack at ``track_fps`` frames a second of the small frames (the detection view's
    slots among them); between detections a box moves with the median
    optical flow of the corners inside it and is carried for at most ``carry_s``; a track unseen for
    ``lost_track_s`` ends. Actions: ``standing`` below ``standing_max_hps``, ``running`` above
    ``running_min_hps``, ``walking`` between, from the speed of the box's bottom centre over the last
    ``speed_window_s``. ``entering`` / ``leaving``: a track that starts / ends within
    ``edge_fraction`` of the frame border.
    """

    foreground_px: int = 160
    background_s: float = 20.0
    foreground_sigmas: float = 3.0
    min_std_grey: float = 8.0
    min_region_fraction: float = 0.0004
    person_height_px: int = 128
    max_upscale: float = 3.0
    first_search_upscale: float = 1.5
    max_regions: int = 24
    hog_scale_step: float = 1.2
    hog_stride_px: int = 8
    min_margin: float = 0.3
    still_min_margin: float = 1.0
    nms_iou: float = 0.4
    track_fps: float = 4.0
    detect_every_s: float = 1.0
    carry_s: float = 2.5
    lost_track_s: float = 2.0
    speed_window_s: float = 2.0
    standing_max_hps: float = 0.15
    running_min_hps: float = 1.4
    edge_fraction: float = 0.06
    hop_s: float = 1.0


@dataclass(frozen=True)
class PersonInCell:
    """One tracked person in one cell: ``action`` one of :data:`ACTIONS` (None before the track has
    ``speed_window_s / 2`` of history), ``action_scores`` ((label, probability), ...) best first,
    ``speed_hps`` body heights per second, ``box`` (x0, y0, x1, y1) in 0..1 at its last frame in the
    cell, ``score`` its latest detection score, ``entering`` True in the cell where it came in
    across the frame border."""

    track_id: int
    action: str | None
    action_scores: tuple[tuple[str, float], ...]
    speed_hps: float
    box: tuple[float, float, float, float]
    score: float
    entering: bool = False


@dataclass(frozen=True)
class Departure:
    """A track that ended within ``edge_fraction`` of the frame border: it left the view at
    media time ``t_s`` (its last sighting)."""

    track_id: int
    t_s: float


@dataclass(frozen=True)
class PeopleResult(DetectorResult):
    """What :class:`PeopleDetector` returns: a detector result (label ``person``; score = mean
    detection score in the cell; extras ``count`` (T,) most people in one frame) plus per-cell tracks.

    tracks      per cell, the :class:`PersonInCell` of every person seen in it (by track id)
    boxes       per cell, ``(slot, (K, 5) float32)`` for each frame slot the tracker ran on: x0, y0,
                x1, y1 (0..1) and track id of every tracked person there
    departures  tracks that left the view, known now (their last sighting may be in earlier calls)
    """

    tracks: tuple = ()
    boxes: tuple = ()
    departures: tuple = ()


def _new_tracker(fps: float, lost_s: float):
    import supervision as sv

    with warnings.catch_warnings():
        # sv.ByteTrack is deprecated in 0.28-0.30 for the `trackers` package, which pulls in a
        # second OpenCV; 0.30 is pinned (pyproject) and still has it
        warnings.simplefilter("ignore", FutureWarning)
        # lost_track_buffer is counted in frames at 30 fps (ByteTrack scales it by frame_rate / 30)
        return sv.ByteTrack(track_activation_threshold=0.25, minimum_matching_threshold=0.8, frame_rate=fps,
                            lost_track_buffer=max(1, int(math.ceil(lost_s * 30))), minimum_consecutive_frames=2)


class _Tracker:
    """ByteTrack whose state pickles (sv.ByteTrack is wrapped by a deprecation proxy that pickle
    cannot name): the state travels as the tracker's attribute dict."""

    def __init__(self, fps: float, lost_s: float):
        self.bt = _new_tracker(fps, lost_s)

    def __getstate__(self):
        return {"state": self.bt.__dict__}

    def __setstate__(self, d):
        self.bt = _bytetrack_class().__new__(_bytetrack_class())
        self.bt.__dict__.update(d["state"])

    # ByteTrack matches by IoU, and a new track has no velocity yet: a walker crossing the view moves
    # more than half a body width between frames 0.25 s apart, and lost their track at once. Boxes
    # are widened (about their centre) for the tracker, and narrowed back on the way out.
    GROW = np.array([2.0, 1.2], np.float32)

    def update(self, boxes_px: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """boxes (N, 4) xyxy pixels, scores (N,) 0..1 -> (tracked boxes (K, 4), ids (K,), scores (K,))."""
        import supervision as sv

        if not len(boxes_px) and not self.bt.tracked_tracks and not self.bt.lost_tracks:
            # nobody in view or remembered: nothing to update (an empty street costs no tracking)
            return np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32)
        det = sv.Detections(xyxy=self._scale(boxes_px.reshape(-1, 4).astype(np.float32), self.GROW),
                            confidence=scores.reshape(-1).astype(np.float32))
        out = self.bt.update_with_detections(det)
        if len(out) == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32)
        return (self._scale(out.xyxy.astype(np.float32), 1 / self.GROW), out.tracker_id.astype(np.int64),
                out.confidence.astype(np.float32))

    @staticmethod
    def _scale(b: np.ndarray, by: np.ndarray) -> np.ndarray:
        c = (b[:, :2] + b[:, 2:]) / 2
        half = (b[:, 2:] - b[:, :2]) / 2 * by
        return np.concatenate([c - half, c + half], 1).astype(np.float32)


_BT_CLS: list = []


def _bytetrack_class():
    if not _BT_CLS:
        _BT_CLS.append(type(_new_tracker(4.0, 1.0)))
    return _BT_CLS[0]


@dataclass
class _Track:
    """Per track id: recent positions (t, x_bottom_centre_px, y_bottom_px, height_px), first sighting."""

    first_t: float
    entering: bool
    history: deque = field(default_factory=lambda: deque(maxlen=64))
    last_t: float = 0.0
    last_box: tuple = (0.0, 0.0, 0.0, 0.0)
    score: float = 0.0
    reported_entering: bool = False


@dataclass
class PeopleState:
    """What a stream carries from one call to the next (plain numpy and Python: it pickles)."""

    bg_mean: np.ndarray | None = None       # (P, P) float32 running mean, grey levels
    bg_var: np.ndarray | None = None        # (P, P) float32 running variance
    n_bg: int = 0                           # frames the background has seen
    prev_grey: np.ndarray | None = None     # (H, W) uint8 small frame for the optical flow
    carried: list = field(default_factory=list)   # [[x0, y0, x1, y1 (detect px), score, last real detection t]]
    tracker: _Tracker | None = None
    tracks: dict = field(default_factory=dict)    # track id -> _Track
    cells_seen: int = 0
    searched: bool = False                  # the whole first detection frame was searched
    next_detect_t: float = -math.inf        # media s from which the next detection may run
    first_t: float | None = None
    detect_hw: tuple[int, int] | None = None
    # perspective: least-squares sums of person height h (px) against foot row y (px) over confident
    # detections: n, sum y, sum h, sum y^2, sum y*h
    persp: list = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0, 0.0])

    def expected_height(self, y_foot: float) -> float | None:
        """Height (px) a person with feet at row ``y_foot`` has, from what was detected; None before
        enough detections (or when they do not fit a slope)."""
        n, sy, sh, syy, syh = self.persp
        if n < 8:
            return None
        den = n * syy - sy * sy
        if den <= 1e-6 * n * n:
            return sh / n
        a = (n * syh - sy * sh) / den
        b = (sh - a * sy) / n
        return max(0.0, a * y_foot + b) or None

    def learn_height(self, box, margin: float) -> None:
        if margin >= 1.0:
            y, h = float(box[3]), float(box[3] - box[1])
            self.persp = [v + d for v, d in zip(self.persp, (1.0, y, h, y * y, y * h))]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) xyxy -> (N, M) IoU."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-6)


class PeopleDetector(nn.Module):
    """Label ``person``; see the module docstring for inputs and :class:`PeopleResult` for outputs."""

    labels = ("person",)

    def __init__(self, cfg: PeopleConfig):
        super().__init__()
        self.cfg = cfg
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.method = (f"opencv-hog-people+foreground-gate+bytetrack(supervision)"
                       f"(region {cfg.person_height_px}px,margin>={cfg.min_margin:g})")

    # -- foreground ---------------------------------------------------------------------------
    def _foreground(self, st: PeopleState, grey_small: np.ndarray, dt_s: float) -> np.ndarray:
        """Update the background with one small grey frame; the (P, P) uint8 foreground mask (0/255)."""
        c = self.cfg
        P = c.foreground_px
        x = cv2.resize(grey_small, (P, P), interpolation=cv2.INTER_AREA).astype(np.float32)
        if st.bg_mean is None or st.bg_mean.shape != x.shape:
            st.bg_mean, st.bg_var, st.n_bg = x.copy(), np.full_like(x, c.min_std_grey ** 2), 1
            return np.zeros(x.shape, np.uint8)
        d = x - st.bg_mean
        std = np.sqrt(np.maximum(st.bg_var, c.min_std_grey ** 2))
        fg = np.abs(d) > c.foreground_sigmas * std
        # a shadow darkens the background by a steady factor; it is not a person
        ratio = x / np.maximum(st.bg_mean, 1.0)
        fg &= ~((ratio > 0.45) & (ratio < 0.9) & (np.abs(d) < 6 * std))
        # learn fast at first (1/n), then with the time constant; foreground pixels slower, so a
        # person who stops is absorbed over ~4 time constants, not at once
        alpha = max(1.0 / (st.n_bg + 1), min(1.0, dt_s / max(c.background_s, 1e-3)))
        a = np.where(fg, alpha * 0.25, alpha).astype(np.float32)
        # new arrays, not in place: a state that came back through Ray holds read-only arrays
        st.bg_mean = st.bg_mean + a * d
        st.bg_var = st.bg_var + a * (d * d - st.bg_var)
        st.n_bg += 1
        mask = fg.astype(np.uint8) * 255
        if not fg.any():
            return mask
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
        return cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=2)

    def _regions(self, mask: np.ndarray, hw: tuple[int, int]) -> list[tuple[int, int, int, int]]:
        """Moving regions of ``mask`` as (x, y, w, h) in detection-view pixels, largest first."""
        if not mask.any():
            return []
        P = mask.shape[0]
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        min_area = self.cfg.min_region_fraction * P * P
        sy, sx = hw[0] / mask.shape[0], hw[1] / mask.shape[1]
        boxes = [[int(x), int(y), int(x + w), int(y + h), int(a)] for x, y, w, h, a in stats[1:] if a >= min_area]
        # one person often moves in parts (head and shoulders, legs) with a still stretch between:
        # parts stacked one above the other, close enough, are one region
        merged = True
        while merged:
            merged = False
            for i in range(len(boxes)):
                for j in range(i + 1, len(boxes)):
                    a, b = boxes[i], boxes[j]
                    overlap_x = min(a[2], b[2]) - max(a[0], b[0])
                    gap_y = max(a[1], b[1]) - min(a[3], b[3])
                    narrower, taller = min(a[2] - a[0], b[2] - b[0]), max(a[3] - a[1], b[3] - b[1])
                    if overlap_x >= 0.5 * narrower and gap_y <= 0.5 * taller:
                        boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]), a[4] + b[4]]
                        del boxes[j]
                        merged = True
                        break
                if merged:
                    break
        boxes.sort(key=lambda r: -r[4])
        return [(int(x0 * sx), int(y0 * sy), max(1, math.ceil((x1 - x0) * sx)), max(1, math.ceil((y1 - y0) * sy)))
                for x0, y0, x1, y1, _ in boxes[:self.cfg.max_regions]]

    def crops(self, regions, tracks, st: "PeopleState", hw) -> list[tuple[int, int, int, int, float]]:
        """Where to search: (x0, y0, x1, y1, scale) in detection-view pixels, from moving regions
        (x, y, w, h) and the boxes tracks hold (x0, y0, x1, y1). A region gets the height a person
        standing at its bottom has (the perspective learnt from detections; its own height before
        that): only a walker's legs may move. Overlapping crops of similar scale are merged."""
        c = self.cfg
        H, W = hw
        out = []
        for (x, y, w, h) in regions:
            exp = st.expected_height(y + h)
            hp = max(0.7 * h, exp) if exp else h
            cx = x + w / 2
            half = max(w / 2, 0.25 * hp) + 0.4 * hp
            out.append([cx - half, min(y - 0.25 * hp, y + h - 1.3 * hp), cx + half, y + h + 0.5 * hp, hp])
        for (x0, y0, x1, y1) in tracks:
            hp = max(8.0, y1 - y0)
            out.append([x0 - 0.4 * hp, y0 - 0.3 * hp, x1 + 0.4 * hp, y1 + 0.3 * hp, hp])
        merged: list[list[float]] = []
        for r in sorted(out, key=lambda r: (r[1], r[0])):
            for m in merged:
                if 0.75 < r[4] / m[4] < 1.33 and _iou(np.asarray([r[:4]]), np.asarray([m[:4]]))[0, 0] > 0.2:
                    m[:4] = [min(m[0], r[0]), min(m[1], r[1]), max(m[2], r[2]), max(m[3], r[3])]
                    m[4] = min(m[4], r[4])
                    break
            else:
                merged.append(list(r))
        # not clipped to the frame: detect() pads what lies outside, so a person at the border is found
        return [(int(m[0]), int(m[1]), int(m[2]), int(m[3]), min(c.max_upscale, c.person_height_px / max(m[4], 8.0)))
                for m in merged if m[2] > 0 and m[3] > 0 and m[0] < W and m[1] < H]

    # -- detection ----------------------------------------------------------------------------
    def detect(self, frame: np.ndarray, crops) -> tuple[np.ndarray, np.ndarray]:
        """HOG in ``crops`` (x0, y0, x1, y1, scale) of ``frame`` (H, W, 3), each scaled by its scale
        first -> boxes (N, 4) xyxy in frame pixels, SVM margins (N,), overlaps merged."""
        c = self.cfg
        H, W = frame.shape[:2]
        boxes, margins = [], []
        for (x0, y0, x1, y1, s) in crops:
            crop = frame[max(0, y0):min(H, y1), max(0, x0):min(W, x1)]
            if crop.size == 0:
                continue
            out = (max(0, -y0), max(0, y1 - H), max(0, -x0), max(0, x1 - W))      # top, bottom, left, right
            if any(out):
                # the part of the crop outside the frame: the edge pixels repeated, so HOG's window fits
                crop = cv2.copyMakeBorder(crop, *out, cv2.BORDER_REPLICATE)
            crop = cv2.resize(crop, (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s))),
                              interpolation=cv2.INTER_LINEAR if s > 1 else cv2.INTER_AREA)
            ph, pw = max(0, 136 - crop.shape[0]), max(0, 72 - crop.shape[1])
            if ph or pw:
                crop = cv2.copyMakeBorder(crop, ph // 2, ph - ph // 2, pw // 2, pw - pw // 2, cv2.BORDER_REPLICATE)
            found, weights = self.hog.detectMultiScale(crop, hitThreshold=0.0, winStride=(c.hog_stride_px,) * 2,
                                                       padding=(8, 8), scale=c.hog_scale_step)
            for (bx, by, bw, bh), m in zip(np.reshape(found, (-1, 4)), np.ravel(weights)):
                if m < c.min_margin:
                    continue
                bx, by = bx - pw // 2, by - ph // 2
                # HOG's box has a margin around the person (64x128 window, person ~96 tall): trim it
                tx, ty = 0.15 * bw, 0.1 * bh
                boxes.append([x0 + (bx + tx) / s, y0 + (by + ty) / s, x0 + (bx + bw - tx) / s, y0 + (by + bh - ty) / s])
                margins.append(float(m))
        if not boxes:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        b, m = np.asarray(boxes, np.float32), np.asarray(margins, np.float32)
        b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, W)
        b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, H)
        keep = cv2.dnn.NMSBoxes([[float(v[0]), float(v[1]), float(v[2] - v[0]), float(v[3] - v[1])] for v in b],
                                m.tolist(), c.min_margin, c.nms_iou)
        keep = np.sort(np.asarray(keep, int).reshape(-1))
        return b[keep], m[keep]

    @staticmethod
    def _moving_fraction(mask: np.ndarray, boxes: np.ndarray, hw) -> np.ndarray:
        """(N,) fraction of each box (detection-view px) that the foreground mask marks as moving."""
        P = mask.shape
        sx, sy = P[1] / hw[1], P[0] / hw[0]
        out = np.zeros(len(boxes), np.float32)
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            m = mask[int(y0 * sy):max(int(y0 * sy) + 1, int(np.ceil(y1 * sy))),
                     int(x0 * sx):max(int(x0 * sx) + 1, int(np.ceil(x1 * sx)))]
            out[i] = float((m > 0).mean()) if m.size else 0.0
        return out

    # -- carrying boxes between detections ---------------------------------------------------
    @staticmethod
    def _flow_shift(prev: np.ndarray, cur: np.ndarray, boxes_small: np.ndarray) -> np.ndarray:
        """(N, 2) median displacement (small-frame px) of the corners inside each box; 0 where unknown."""
        shift = np.zeros((len(boxes_small), 2), np.float32)
        if len(boxes_small) == 0:
            return shift
        mask = np.zeros(prev.shape, np.uint8)
        for x0, y0, x1, y1 in boxes_small.astype(int):
            mask[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = 255
        pts = cv2.goodFeaturesToTrack(prev, 400, 0.01, 2, mask=mask, blockSize=3)
        if pts is None:
            return shift
        nxt, status, _ = cv2.calcOpticalFlowPyrLK(prev, cur, pts, None, winSize=(9, 9), maxLevel=2)
        back, status2, _ = cv2.calcOpticalFlowPyrLK(cur, prev, nxt, None, winSize=(9, 9), maxLevel=2)
        p, q = pts.reshape(-1, 2), nxt.reshape(-1, 2)
        ok = (status.ravel() == 1) & (status2.ravel() == 1) & (np.hypot(*(back.reshape(-1, 2) - p).T) < 1.0)
        for i, (x0, y0, x1, y1) in enumerate(boxes_small):
            inside = ok & (p[:, 0] >= x0) & (p[:, 0] < x1) & (p[:, 1] >= y0) & (p[:, 1] < y1)
            if inside.sum() >= 3:
                d = q[inside] - p[inside]
                moving = np.hypot(d[:, 0], d[:, 1]) > 0.3
                # the person's own corners move; the background seen through the box does not
                use = d[moving] if moving.sum() >= 3 else d
                shift[i] = np.median(use, axis=0)
        return shift

    # -- actions --------------------------------------------------------------------------------
    def _action(self, tr: _Track, now: float) -> tuple[str | None, tuple, float]:
        c = self.cfg
        pts = [p for p in tr.history if p[0] >= now - c.speed_window_s]
        if len(pts) < 3 or pts[-1][0] - pts[0][0] < c.speed_window_s / 2:
            return None, (), 0.0
        a = np.asarray(pts, np.float64)
        t = a[:, 0] - a[:, 0].mean()
        den = float((t * t).sum())
        vx, vy = (t * (a[:, 1] - a[:, 1].mean())).sum() / den, (t * (a[:, 2] - a[:, 2].mean())).sum() / den
        h = float(np.median(a[:, 3]))
        v = math.hypot(vx, vy) / max(h, 1.0)
        moving = _sigmoid((v - c.standing_max_hps) / (0.3 * c.standing_max_hps))
        run = _sigmoid((v - c.running_min_hps) / (0.15 * c.running_min_hps))
        probs = {"standing": 1 - moving, "walking": moving * (1 - run), "running": moving * run}
        order = sorted(probs.items(), key=lambda kv: -kv[1])
        return order[0][0], tuple((k, float(p)) for k, p in order), float(v)

    def _near_edge(self, box, hw) -> bool:
        e = self.cfg.edge_fraction
        H, W = hw
        x0, y0, x1, y1 = box
        return x0 <= e * W or y0 <= e * H or x1 >= (1 - e) * W or y1 >= (1 - e) * H

    # -- the call -------------------------------------------------------------------------------
    def forward(self, frames, frame_mask, audio=None, audio_mask=None, state=None, *, detect_frames=None,
                detect_mask=None, detect_slots=None, frame_times=None) -> tuple[PeopleResult, PeopleState]:
        c = self.cfg
        frames, mask = check_visual(frames, frame_mask)
        T, F = mask.shape
        if detect_frames is None:
            dframes, dmask, slots = frames, mask, tuple(range(F))
        else:
            dframes, dmask = check_visual(detect_frames, detect_mask)
            slots = tuple(int(s) for s in (detect_slots if detect_slots is not None else range(dframes.shape[1])))
            if len(slots) != dframes.shape[1]:
                raise ValueError(f"detect_slots {slots} do not match the detection view's {dframes.shape[1]} frames")
        times = None if frame_times is None else as_numpy(frame_times, np.float64, 2, "frame_times (T, F)")
        st = state if isinstance(state, PeopleState) else PeopleState()
        n_track = max(1, min(F, round(c.track_fps * c.hop_s)))
        work = sorted(set(slots) | {(i * F) // n_track for i in range(n_track)})
        if st.tracker is None:
            st.tracker = _Tracker(n_track / c.hop_s, c.lost_track_s)
        scores, fired, firsts = empty(T, 1)
        count = np.zeros(T, np.int32)
        tracks_out: list[tuple] = []
        boxes_out: list[tuple] = []
        departures: list[Departure] = []
        slot_of = {s: i for i, s in enumerate(slots)}
        for t in range(T):
            seen: dict[int, PersonInCell] = {}
            cell_boxes = []
            det_scores = []
            for f in work:
                if not mask[t, f]:
                    continue
                now = (float(times[t, f]) if times is not None and np.isfinite(times[t, f])
                       else (st.cells_seen + t + (f + 0.5) / F) * c.hop_s)
                if st.first_t is None:
                    st.first_t = now
                small = cv2.cvtColor(frames[t, f], cv2.COLOR_RGB2GRAY)
                fg = self._foreground(st, small, c.hop_s / len(work))
                d = slot_of.get(f)
                due = now >= st.next_detect_t - 0.5 * c.hop_s / F      # half a slot: frame times jitter
                view = dframes[t, d] if d is not None and dmask[t, d] and due else None
                if view is not None:
                    st.detect_hw = view.shape[:2]
                    st.next_detect_t = now + c.detect_every_s
                hw = st.detect_hw or small.shape
                sy, sx = small.shape[0] / hw[0], small.shape[1] / hw[1]
                # carry the previous boxes with the optical flow of this frame pair
                carried = [b for b in st.carried if now - b[5] <= c.carry_s]
                if carried and st.prev_grey is not None and st.prev_grey.shape == small.shape:
                    cb = np.asarray([b[:4] for b in carried], np.float32) * [sx, sy, sx, sy]
                    shift = self._flow_shift(st.prev_grey, small, cb)
                    for b, (dx, dy) in zip(carried, shift):
                        b[0] += dx / sx; b[2] += dx / sx
                        b[1] += dy / sy; b[3] += dy / sy
                boxes = np.asarray([b[:4] for b in carried], np.float32).reshape(-1, 4)
                bscores = np.asarray([b[4] * 0.9 for b in carried], np.float32)
                last_real = np.asarray([b[5] for b in carried], np.float64)
                if view is not None:
                    regions = self._regions(fg, view.shape[:2]) if st.n_bg > 2 else []
                    if not st.searched:
                        # the first view of a stream: people who stand still from the start never
                        # move against the background, so the whole frame is searched once
                        crops = [(0, 0, view.shape[1], view.shape[0], float(c.first_search_upscale))]
                        st.searched = True
                    else:
                        crops = self.crops(regions, boxes, st, view.shape[:2])
                    found, margins = (self.detect(view, crops) if crops
                                      else (np.zeros((0, 4), np.float32), np.zeros(0, np.float32)))
                    if len(found):
                        # where nothing moves, only a confident detection counts: a weak one on a post or
                        # a bollard would otherwise keep a departed person's box alive for ever
                        moving = self._moving_fraction(fg, found, view.shape[:2])
                        keep = (moving >= 0.05) | (margins >= c.still_min_margin)
                        found, margins = found[keep], margins[keep]
                    for b, m in zip(found, margins):
                        st.learn_height(b, float(m))
                    fscores = (1 - np.exp(-margins)).astype(np.float32)
                    det_scores += fscores.tolist()
                    # a carried box that a fresh detection covers gives way to it; one the detector
                    # missed goes at once at the frame border (they walked out) and lives another
                    # second at most where nothing moves (HOG finds standing people; it missed a ghost)
                    keep = ~(_iou(boxes, found) > 0.3).any(1) if len(found) else np.ones(len(boxes), bool)
                    if keep.any():
                        edge = np.array([self._near_edge(b, view.shape[:2]) for b in boxes])
                        still = self._moving_fraction(fg, boxes, view.shape[:2]) < 0.05
                        last_real = np.where(keep & still, np.minimum(last_real, now - c.carry_s + c.hop_s), last_real)
                        keep &= ~edge
                    boxes = np.concatenate([found, boxes[keep]])
                    bscores = np.concatenate([fscores, bscores[keep]])
                    last_real = np.concatenate([np.full(len(found), now), last_real[keep]])
                tb, tid, tsc = st.tracker.update(boxes, bscores)
                # the next frame carries what the tracker now holds, each with its last real detection
                ious = _iou(tb, boxes)
                st.carried = []
                for k in range(len(tb)):
                    j = int(np.argmax(ious[k])) if ious.shape[1] else -1
                    real_t = float(last_real[j]) if j >= 0 and ious[k, j] > 0.5 else now - c.carry_s
                    st.carried.append([*map(float, boxes[j] if j >= 0 and ious[k, j] > 0.5 else tb[k]),
                                       float(bscores[j]) if j >= 0 else float(tsc[k]), real_t])
                # unconfirmed detections are carried too, or a new person would need two detections in
                # a row; they count as people now (ByteTrack names them at its next update)
                matched = (ious > 0.5).any(0) if len(tb) else np.zeros(len(boxes), bool)
                fresh = [j for j in np.flatnonzero(~matched) if bscores[j] >= 0.35 and last_real[j] == now]
                for j in fresh:
                    st.carried.append([*map(float, boxes[j]), float(bscores[j]), now])
                st.prev_grey = small
                rel = np.zeros((len(tb), 5), np.float32)
                if len(tb):
                    rel[:, :4] = tb / np.asarray([hw[1], hw[0], hw[1], hw[0]], np.float32)
                    rel[:, :4] = np.clip(rel[:, :4], 0, 1)
                    rel[:, 4] = tid
                cell_boxes.append((f, rel))
                count[t] = max(count[t], len(tb) + len(fresh))
                for k, i in enumerate(tid.tolist()):
                    box = tuple(float(v) for v in tb[k])
                    tr = st.tracks.get(i)
                    if tr is None:
                        entering = now - st.first_t > 1.5 * c.hop_s and self._near_edge(box, hw)
                        tr = st.tracks[i] = _Track(first_t=now, entering=entering)
                    tr.history.append((now, (box[0] + box[2]) / 2, box[3], box[3] - box[1]))
                    tr.last_t, tr.last_box, tr.score = now, box, float(tsc[k])
                    action, ascores, v = self._action(tr, now)
                    entering = tr.entering and not tr.reported_entering
                    tr.reported_entering |= entering
                    prev = seen.get(i)
                    seen[i] = PersonInCell(i, action if action is not None else (prev.action if prev else None),
                                           ascores or (prev.action_scores if prev else ()),
                                           v if action is not None else (prev.speed_hps if prev else 0.0),
                                           tuple(float(x) for x in rel[k, :4]), float(tsc[k]),
                                           entering or (prev.entering if prev else False))
                for i in [i for i, tr in st.tracks.items() if now - tr.last_t > c.lost_track_s]:
                    tr = st.tracks.pop(i)
                    if self._near_edge(tr.last_box, hw) and tr.last_t - tr.first_t >= c.hop_s:
                        departures.append(Departure(i, tr.last_t))
                if count[t] and np.isnan(firsts[t, 0]):
                    firsts[t, 0] = f * c.hop_s / F
            if count[t]:
                fired[t, 0] = True
                scores[t, 0] = float(np.mean(det_scores)) if det_scores else float(
                    np.mean([p.score for p in seen.values()]))
            tracks_out.append(tuple(seen[i] for i in sorted(seen)))
            boxes_out.append(tuple(cell_boxes))
        st.cells_seen += T
        det = result(self.labels, scores, fired, firsts, self.method, "visual", count=count)
        return PeopleResult(**{f.name: getattr(det, f.name) for f in dataclasses.fields(det)},
                            tracks=tuple(tracks_out), boxes=tuple(boxes_out), departures=tuple(departures)), st


register("people", family="detector", config_cls=PeopleConfig, builder=PeopleDetector,
         description="people: OpenCV's built-in HOG pedestrian detector where something moves, tracked "
                     "(ByteTrack), with walking/running/standing/entering/leaving per track")
