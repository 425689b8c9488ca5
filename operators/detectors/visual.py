"""Visual detectors on consecutive real frames: flash, scene cut, motion, camera motion.

Each compares every real frame with the previous real frame (from this call or the state the
previous call returned) and attributes the change to the cell of the later frame. ``times`` is the
later frame's offset in the cell, ``slot * hop_s / F`` (the grid samples frames evenly).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from torch import nn

from operators.detectors.base import check_visual, empty, frame_pairs, luma, result, still, still_thumbnail
from operators.registry import register


@dataclass(frozen=True)
class FlashConfig:
    """A flash: mean luma (0..1) jumps by >= ``min_rise`` to at least ``min_luma`` between two real frames."""

    min_rise: float = 0.3
    min_luma: float = 0.7
    hop_s: float = 1.0


@dataclass(frozen=True)
class SceneCutConfig:
    """Shot changes between consecutive real frames, the way ffmpeg's ``scdet`` finds them but on the
    grid's sampled frames, plus fades through black.

    A frame pair's difference ``d``: the mean absolute difference of the two grey thumbnails
    (``thumbnail_px`` square), each normalised to zero mean and unit contrast first, so two shots of
    the same dim room differ (0 = the same picture, ~0.8 for unrelated ones), or, where larger, the
    total-variation distance of their colour histograms (``bins`` per channel; 1 = disjoint colours),
    so a change of colour alone counts too. A cut at pair ``i``: ``d >= threshold``, ``d >= ratio`` x the median ``d``
    of the ``window`` pairs before it (a local adaptive threshold: a busy scene needs more), and the
    new picture persists: the next ``persist_frames`` frames differ from the last frame before it by
    at least ``persist`` x ``d`` (a flash, or a lamp coming into view for a frame, goes back). Frames
    with mean luma >= ``flash_luma`` (full-frame flashes) are skipped; None keeps them.

    A fade: mean luma (0..1) moving steadily (>= ``fade_step_luma`` per pair, for at least
    ``fade_min_pairs`` pairs) down to below ``black_luma`` (fade out), or up from it (fade in),
    without a cut on the way; it is reported as a ``cut`` with ``detail="fade"`` spanning it.
    """

    threshold: float = 0.35
    ratio: float = 3.0
    window: int = 8
    persist: float = 0.6
    persist_frames: int = 2
    flash_luma: float | None = 0.9
    black_luma: float = 0.06
    fade_step_luma: float = 0.008
    fade_min_pairs: int = 2
    thumbnail_px: int = 64
    bins: int = 8
    hop_s: float = 1.0


@dataclass(frozen=True)
class MotionConfig:
    """Motion by frame differencing on a grey thumbnail (``thumbnail_px`` wide, blurred): a pixel moved
    when its grey level changed by > ``pixel_delta`` (0..255); a pair has motion when >= ``min_fraction``
    of the pixels moved. A global lighting change (a flash) also counts as motion."""

    pixel_delta: int = 25
    min_fraction: float = 0.002
    thumbnail_px: int = 160
    hop_s: float = 1.0


@dataclass(frozen=True)
class CameraMotionConfig:
    """What the camera does, from the global motion of consecutive frames.

    Per frame pair: corners of a grey thumbnail (``thumbnail_px`` square) tracked by pyramidal
    Lucas-Kanade flow, and a similarity transform (shift, scale, rotation) fitted to them by RANSAC.
    A pair counts only when at least ``min_inlier_fraction`` of the tracked corners (and 12 or more)
    follow that one transform: where people or objects fill the view and move on their own, no
    single motion explains the frame and the camera is taken as still.

    Per cell: the shift and the log-scale of its pairs summed, per second, as fractions of the frame
    (width for x, height for y). ``pan`` / ``tilt`` when the horizontal / vertical shift reaches
    ``min_pan_fraction_s``, ``zoom`` when the scale changes by ``min_zoom_fraction_s``; else
    ``static``. Hysteresis across cells: each label's evidence is smoothed over cells (weight
    ``smoothing`` on the past), the label of the previous cell gets ``hold`` x its evidence, and
    ``static`` wins ties, so a locked-off shot stays static and a real pan is not flipped by one
    shaky cell.
    """

    min_pan_fraction_s: float = 0.04
    min_zoom_fraction_s: float = 0.04
    min_inlier_fraction: float = 0.5
    smoothing: float = 0.5
    hold: float = 1.25
    thumbnail_px: int = 160
    max_corners: int = 200
    hop_s: float = 1.0


def _thumbnail(frame: np.ndarray, width: int) -> np.ndarray:
    h, w = frame.shape[:2]
    if w > width:
        frame = cv2.resize(frame, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    return frame


def _grey(frame: np.ndarray, width: int) -> np.ndarray:
    return cv2.GaussianBlur(cv2.cvtColor(_thumbnail(frame, width), cv2.COLOR_RGB2GRAY), (5, 5), 0)


class _PairDetector(nn.Module):
    """Shared walk: ``pair(prev, feat) -> (score, fired)``; max score per cell, first firing time."""

    labels: tuple[str, ...]
    method: str

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg

    def featurize(self, frame: np.ndarray):
        raise NotImplementedError

    def pair(self, prev, feat) -> tuple[float, bool]:
        raise NotImplementedError

    def forward(self, frames, frame_mask, audio=None, audio_mask=None, state=None):
        frames, mask = check_visual(frames, frame_mask)
        T, F = mask.shape
        scores, fired, times = empty(T, 1)
        holder: list = []
        for t, f, prev, feat in frame_pairs(frames, mask, state, self.featurize, holder):
            score, hit = self.pair(prev, feat)
            scores[t, 0] = max(scores[t, 0], score)
            if hit and not fired[t, 0]:
                fired[t, 0] = True
                times[t, 0] = f * self.cfg.hop_s / F
        return result(self.labels, scores, fired, times, self.method, "visual"), holder[0]


class FlashDetector(_PairDetector):
    """Label ``flash``; score = luma rise (0..1) of the strongest jump in the cell."""

    labels = ("flash",)

    def __init__(self, cfg: FlashConfig):
        super().__init__(cfg)
        self.method = f"luma-jump(rise>={cfg.min_rise:g},luma>={cfg.min_luma:g})"

    def featurize(self, frame):
        return luma(frame)

    def pair(self, prev, feat):
        rise = feat - prev
        return max(0.0, rise), rise >= self.cfg.min_rise and feat >= self.cfg.min_luma


@dataclass
class _Frame:
    z: np.ndarray          # (P, P) float32 normalised grey thumbnail
    hist: np.ndarray       # (bins^3,) float32 colour histogram, sums to 1
    luma: float            # mean luma 0..1
    t_s: float             # stream-relative seconds (cells seen * hop + slot offset)


@dataclass
class SceneCutState:
    """Recent frames of the stream (the pending decisions need the frames after them), recent pair
    differences, and where a fade in progress started."""

    frames: list = field(default_factory=list)       # last persist_frames + 1 real frames (_Frame)
    diffs: list = field(default_factory=list)        # last `window` pair differences
    cells_seen: int = 0
    # a run of steady luma change: [t_s first, luma first, direction +-1, t_s last, luma last, pairs]
    fade: list | None = None


class SceneCutDetector(nn.Module):
    """Label ``cut``; score = the pair difference ``d`` (0..1) of the cut. See :class:`SceneCutConfig`.

    ``times`` (T, 1): offset (s) of the first frame after the cut from its cell's start. A cut whose
    confirmation needs frames of the next call is reported in that call's first cell, with a negative
    time (seconds before that cell's start). extras: ``before_s`` (T,) offset of the last frame
    before the cut (or of the fade's first frame) from the same cell start, ``fade`` (T,) 1 where
    the reported change is a fade, 0 for a hard cut. One change per cell (the strongest).
    """

    labels = ("cut",)

    def __init__(self, cfg: SceneCutConfig):
        super().__init__()
        self.cfg = cfg
        self.method = (f"normalised-luma-difference(scdet-like,threshold={cfg.threshold:g},ratio={cfg.ratio:g},"
                       f"persist={cfg.persist_frames})+fades")

    def featurize(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
        c = self.cfg
        lum = luma(frame)
        if c.flash_luma is not None and lum >= c.flash_luma:
            return None
        small = cv2.resize(frame, (c.thumbnail_px, c.thumbnail_px), interpolation=cv2.INTER_AREA)
        g = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
        b = c.bins
        hist = cv2.calcHist([small], [0, 1, 2], None, [b, b, b], [0, 256] * 3).ravel()
        # the contrast floor (5 grey levels) keeps near-black frames from amplifying noise
        return (g - g.mean()) / (g.std() + 5.0), hist / max(1.0, float(hist.sum())), lum

    @staticmethod
    def diff(a: "_Frame", b: "_Frame") -> float:
        return max(float(cv2.norm(a.z, b.z, cv2.NORM_L1)) / a.z.size, 0.5 * float(np.abs(a.hist - b.hist).sum()))

    def forward(self, frames, frame_mask, audio=None, audio_mask=None, state=None):
        c = self.cfg
        frames, mask = check_visual(frames, frame_mask)
        T, F = mask.shape
        st = state if isinstance(state, SceneCutState) else SceneCutState()
        scores, fired, times = empty(T, 1)
        before = np.full(T, np.nan, np.float32)
        fade = np.zeros(T, np.int32)
        t_call = st.cells_seen * c.hop_s

        def report(t_before: float, t_after: float, score: float, is_fade: bool) -> None:
            cell = min(T - 1, max(0, int(np.floor((t_after - t_call) / c.hop_s + 1e-9))))
            if score < scores[cell, 0] and fired[cell, 0]:
                return
            start = t_call + cell * c.hop_s
            scores[cell, 0], fired[cell, 0] = score, True
            times[cell, 0], before[cell] = t_after - start, t_before - start
            fade[cell] = int(is_fade)

        for t in range(T):
            for f in range(F):
                if not mask[t, f]:
                    continue
                feat = self.featurize(frames[t, f])
                if feat is None:
                    continue
                cur = _Frame(feat[0], feat[1], feat[2], t_call + t * c.hop_s + f * c.hop_s / F)
                if st.frames and st.frames[-1].z.shape != cur.z.shape:
                    st.frames = []
                st.frames.append(cur)
                self._fade(st, report)
                self._decide(st, report)
                if len(st.frames) >= 2:
                    st.diffs = (st.diffs + [self.diff(st.frames[-2], st.frames[-1])])[-c.window:]
                st.frames = st.frames[-(c.persist_frames + 2):]
        st.cells_seen += T
        return result(self.labels, scores, fired, times, self.method, "visual", before_s=before, fade=fade), st

    def _decide(self, st: SceneCutState, report) -> None:
        """Decide the pair whose later frame is ``persist_frames`` back: now its successors are known."""
        c = self.cfg
        k = len(st.frames) - 1 - c.persist_frames          # index of the frame after the candidate cut
        if k < 1:
            return
        prev, new = st.frames[k - 1], st.frames[k]
        d = self.diff(prev, new)
        # the differences before this pair (st.diffs ends with the pairs after it: drop those)
        history = st.diffs[:len(st.diffs) - (len(st.frames) - 1 - k)] if len(st.frames) - 1 - k else st.diffs
        local = float(np.median(history)) if history else 0.0
        if d < c.threshold or d < c.ratio * local:
            return
        if any(self.diff(prev, later) < c.persist * d for later in st.frames[k + 1:]):
            return              # the picture went back: a flash or a glitch, not a new shot
        report(prev.t_s, new.t_s, min(1.0, d), False)
        st.fade = None

    def _fade(self, st: SceneCutState, report) -> None:
        """Follow runs of steady luma change; a run that ends having gone down into black (fade out)
        or up out of it (fade in) is a fade from its first frame to its last."""
        c = self.cfg
        if len(st.frames) < 2:
            return
        a, b = st.frames[-2], st.frames[-1]
        step = b.luma - a.luma
        direction = 1 if step >= c.fade_step_luma else -1 if step <= -c.fade_step_luma else 0
        run = st.fade
        if run is not None and direction == run[2]:
            run[3], run[4], run[5] = b.t_s, b.luma, run[5] + 1
            if not (direction < 0 and b.luma < c.black_luma):
                return          # still going (a fade out ends the moment it reaches black)
        if run is not None:
            t0, l0, d, t1, l1, pairs = run
            faded = (d < 0 and l0 >= 2 * c.black_luma and l1 < c.black_luma) or \
                    (d > 0 and l0 < c.black_luma and l1 >= 2 * c.black_luma)
            if faded and pairs >= c.fade_min_pairs:
                report(t0, t1, float(min(1.0, 4 * abs(l1 - l0))), True)
                direction = 0 if d < 0 else direction
        st.fade = [a.t_s, a.luma, direction, b.t_s, b.luma, 1] if direction else None


class MotionDetector(_PairDetector):
    """Label ``motion``; score = the largest fraction of changed pixels in the cell."""

    labels = ("motion",)

    def __init__(self, cfg: MotionConfig):
        super().__init__(cfg)
        self.method = f"frame-difference(delta>{cfg.pixel_delta},fraction>={cfg.min_fraction:g})"

    def featurize(self, frame):
        return _grey(frame, self.cfg.thumbnail_px)

    def pair(self, prev, feat):
        if prev.shape != feat.shape:
            return 0.0, False
        frac = float((cv2.absdiff(prev, feat) > self.cfg.pixel_delta).mean())
        return frac, frac >= self.cfg.min_fraction


CAMERA_LABELS = ("static", "pan", "tilt", "zoom")


@dataclass
class CameraMotionState:
    prev: np.ndarray | None = None          # (P, P) uint8 grey thumbnail of the last real frame with motion
    prev_thumb: np.ndarray | None = None    # its 32x32 still_thumbnail (operators.detectors.base)
    evidence: np.ndarray | None = None      # (4,) smoothed evidence per label (static is 1)
    label: int = 0                          # the previous cell's label


class CameraMotionDetector(nn.Module):
    """Labels ``static, pan, tilt, zoom``: an offline "action" of the camera (see
    :class:`CameraMotionConfig`). One label fires per cell with a frame pair; its score is the
    largest, so the label is always ``top_k[0]``. extras: ``translation`` (T, 2) the cell's global
    shift per second as fractions of the frame (x, y), ``zoom`` (T,) its log-scale change per second.
    """

    labels = CAMERA_LABELS

    def __init__(self, cfg: CameraMotionConfig):
        super().__init__()
        self.cfg = cfg
        self.method = f"lk-flow+ransac-similarity({cfg.thumbnail_px}px)+hysteresis"

    def transform(self, prev: np.ndarray, cur: np.ndarray) -> tuple[float, float, float] | None:
        """Global (dx, dy, log scale) of a frame pair, shifts as fractions of the frame; None when
        no single motion explains enough of it."""
        c = self.cfg
        p = cv2.goodFeaturesToTrack(prev, c.max_corners, 0.01, 5, blockSize=5)
        if p is None or len(p) < 12:
            return None
        q, status, _ = cv2.calcOpticalFlowPyrLK(prev, cur, p, None, winSize=(15, 15), maxLevel=3)
        ok = status.ravel() == 1
        if ok.sum() < 12:
            return None
        p, q = p[ok].reshape(-1, 2), q[ok].reshape(-1, 2)
        M, inliers = cv2.estimateAffinePartial2D(p, q, method=cv2.RANSAC, ransacReprojThreshold=1.0,
                                                 maxIters=200, confidence=0.99, refineIters=10)
        if M is None or inliers is None or inliers.sum() < max(12, c.min_inlier_fraction * len(p)):
            return None
        h, w = prev.shape
        centre = np.array([w / 2, h / 2])
        shift = M[:, :2] @ centre + M[:, 2] - centre
        return float(shift[0] / w), float(shift[1] / h), float(np.log(max(1e-6, np.hypot(M[0, 0], M[1, 0]))))

    def forward(self, frames, frame_mask, audio=None, audio_mask=None, state=None):
        c = self.cfg
        frames, mask = check_visual(frames, frame_mask)
        T, F = mask.shape
        st = state if isinstance(state, CameraMotionState) else CameraMotionState()
        L = len(CAMERA_LABELS)
        scores, fired, times = empty(T, L)
        shift = np.zeros((T, 2), np.float32)
        zoom = np.zeros(T, np.float32)
        pair_s = c.hop_s / F
        for t in range(T):
            pairs, total = 0, np.zeros(3)
            for f in range(F):
                if not mask[t, f]:
                    continue
                thumb = still_thumbnail(frames[t, f])
                if still(st.prev_thumb, thumb):
                    pairs += 1          # nothing moved: no need to track corners to know the camera did not
                    st.prev_thumb = thumb
                    continue
                cur = _grey(cv2.resize(frames[t, f], (c.thumbnail_px, c.thumbnail_px),
                                       interpolation=cv2.INTER_AREA), c.thumbnail_px)
                if st.prev_thumb is not None and st.prev is not None and st.prev.shape == cur.shape:
                    pairs += 1
                    m = self.transform(st.prev, cur)
                    if m is not None:
                        total += m
                st.prev, st.prev_thumb = cur, thumb
            if not pairs:
                continue
            per_s = total / (pairs * pair_s)
            shift[t], zoom[t] = per_s[:2], per_s[2]
            e = np.array([1.0, abs(per_s[0]) / c.min_pan_fraction_s, abs(per_s[1]) / c.min_pan_fraction_s,
                          abs(per_s[2]) / c.min_zoom_fraction_s])
            st.evidence = e if st.evidence is None else c.smoothing * st.evidence + (1 - c.smoothing) * e
            ev = st.evidence.copy()
            ev[0] = 1.0
            ev[st.label] *= c.hold
            best = int(np.argmax(ev))              # argmax takes the first of equals: static on ties
            st.label = best
            scores[t] = (ev / ev.sum()).astype(np.float32)
            fired[t, best] = True
        return result(CAMERA_LABELS, scores, fired, times, self.method, "visual", translation=shift,
                      zoom=zoom), st


register("flash", family="detector", config_cls=FlashConfig, builder=FlashDetector,
         description="full-frame flash: a large jump of mean brightness between consecutive frames")
register("scene_cut", family="detector", config_cls=SceneCutConfig, builder=SceneCutDetector,
         description="shot change: normalised luma difference against a local adaptive threshold (like "
                     "ffmpeg's scdet), flashes rejected, fades through black as detail 'fade'")
register("motion", family="detector", config_cls=MotionConfig, builder=MotionDetector,
         description="motion: fraction of pixels changed between consecutive frames")
register("camera_motion", family="detector", config_cls=CameraMotionConfig, builder=CameraMotionDetector,
         description="camera motion from the global motion of tracked corners: static, pan, tilt, zoom")
