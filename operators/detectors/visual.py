"""Visual detectors on consecutive real frames: flash, scene cut, motion, camera motion.

Each compares every real frame with the previous real frame (from this call or the state the
previous call returned) and attributes the change to the cell of the later frame. ``times`` is the
later frame's offset in the cell, ``slot * hop_s / F`` (the grid samples frames evenly).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
from torch import nn

from operators.detectors.base import check_visual, empty, frame_pairs, luma, result
from operators.registry import register


@dataclass(frozen=True)
class FlashConfig:
    """A flash: mean luma (0..1) jumps by >= ``min_rise`` to at least ``min_luma`` between two real frames."""

    min_rise: float = 0.3
    min_luma: float = 0.7
    hop_s: float = 1.0


@dataclass(frozen=True)
class SceneCutConfig:
    """A cut: the colour histograms (``bins`` per RGB channel) of two consecutive frames differ by
    >= ``threshold`` in total-variation distance (0 = same colours, 1 = disjoint). Frames with mean
    luma >= ``flash_luma`` (full-frame flashes) are skipped, so a flash is not two cuts; None keeps them."""

    threshold: float = 0.5
    bins: int = 8
    flash_luma: float | None = 0.9
    thumbnail_px: int = 160
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
    """Farneback optical flow on a grey thumbnail, fitted with a global affine motion where at least
    ``min_texture_fraction`` of the thumbnail has texture (elsewhere the camera is taken as static).

    Per frame pair: ``zoom`` when the affine divergence moves the frame edge by >= ``min_camera_px``,
    else ``pan`` / ``tilt`` when the global translation is >= ``min_camera_px`` (horizontal / vertical
    dominant), else ``object_motion`` when >= ``min_object_fraction`` of the pixels move by
    >= ``min_object_px`` beyond the global motion, else ``static``. Pixels are thumbnail pixels:
    0.6 px of the 96 px thumbnail is 1/160 of the frame width. Flow at 96 px costs ~2 ms a pair
    (160 px: ~6 ms) and labelled the pan/tilt/zoom/object test shots the same.
    """

    min_camera_px: float = 0.6
    min_object_px: float = 0.6
    min_object_fraction: float = 0.005
    min_texture_fraction: float = 0.2
    thumbnail_px: int = 96
    flow_window_px: int = 9


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


class SceneCutDetector(_PairDetector):
    """Label ``cut``; score = histogram distance (0..1) of the biggest change in the cell."""

    labels = ("cut",)

    def __init__(self, cfg: SceneCutConfig):
        super().__init__(cfg)
        self.method = f"rgb-histogram-tv(bins={cfg.bins},threshold={cfg.threshold:g})"

    def featurize(self, frame):
        if self.cfg.flash_luma is not None and luma(frame) >= self.cfg.flash_luma:
            return None
        b = self.cfg.bins
        hist = cv2.calcHist([_thumbnail(frame, self.cfg.thumbnail_px)], [0, 1, 2], None, [b, b, b], [0, 256] * 3)
        return hist.ravel() / max(1.0, float(hist.sum()))

    def pair(self, prev, feat):
        d = 0.5 * float(np.abs(prev - feat).sum())
        return d, d >= self.cfg.threshold


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


CAMERA_LABELS = ("static", "pan", "tilt", "zoom", "object_motion")


@functools.lru_cache(maxsize=8)
def _affine_design(h: int, w: int) -> np.ndarray:
    """(h*w, 3) float32 rows ``[1, x - w/2, y - h/2]``: flow = A @ (t, a, b) per axis."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    a = np.stack([np.ones(h * w, np.float32), (xs - w / 2).ravel(), (ys - h / 2).ravel()], -1)
    a.flags.writeable = False       # shared between calls
    return a


class CameraMotionDetector(nn.Module):
    """Labels ``static, pan, tilt, zoom, object_motion``: offline "actions" of the camera and scene.

    Each frame pair gets one label; a cell's score per label is the fraction of its pairs with that
    label, and the label with the highest score fires (one per cell; none without a frame pair).
    extras: ``translation_px`` (T, 2) mean global (dx, dy) per pair in thumbnail pixels.
    """

    labels = CAMERA_LABELS

    def __init__(self, cfg: CameraMotionConfig):
        super().__init__()
        self.cfg = cfg
        self.method = f"farneback-flow+affine-fit({cfg.thumbnail_px}px)"

    def classify(self, prev: np.ndarray, cur: np.ndarray) -> tuple[int, tuple[float, float]]:
        """One label index for a frame pair, and the global translation (dx, dy) in thumbnail pixels."""
        c = self.cfg
        flow = cv2.calcOpticalFlowFarneback(prev, cur, None, 0.5, 3, c.flow_window_px, 3, 5, 1.2, 0)
        u, v = flow[..., 0].ravel(), flow[..., 1].ravel()
        h, w = prev.shape
        gy, gx = np.gradient(prev.astype(np.float32))
        textured = np.hypot(gx, gy).ravel() > 2.0
        moved = np.hypot(u, v)
        tx = ty = 0.0
        # flow is only measurable where there is texture; with too little of it a moving object and a
        # moving camera look the same, and the static-camera reading is the likelier one
        if textured.mean() >= c.min_texture_fraction:
            A, uv = _affine_design(h, w), flow.reshape(-1, 2)
            coef = np.linalg.lstsq(A[textured], uv[textured], rcond=None)[0]     # (3, 2): u and v at once
            cu, cv_ = coef[:, 0], coef[:, 1]
            tx, ty, div = float(cu[0]), float(cv_[0]), float(cu[1] + cv_[2]) / 2
            if abs(div) * max(w, h) / 2 >= c.min_camera_px:
                return CAMERA_LABELS.index("zoom"), (tx, ty)
            if max(abs(tx), abs(ty)) >= c.min_camera_px:
                return CAMERA_LABELS.index("pan" if abs(tx) >= abs(ty) else "tilt"), (tx, ty)
            res = uv - A @ coef
            moved = np.hypot(res[:, 0], res[:, 1])
        if (moved[textured] >= c.min_object_px).sum() >= c.min_object_fraction * moved.size:
            return CAMERA_LABELS.index("object_motion"), (tx, ty)
        return CAMERA_LABELS.index("static"), (tx, ty)

    def forward(self, frames, frame_mask, audio=None, audio_mask=None, state=None):
        frames, mask = check_visual(frames, frame_mask)
        T = mask.shape[0]
        L = len(CAMERA_LABELS)
        counts = np.zeros((T, L), np.float32)
        shift = np.zeros((T, 2), np.float32)
        holder: list = []
        for t, _, prev, cur in frame_pairs(frames, mask, state, lambda f: _grey(f, self.cfg.thumbnail_px), holder):
            if prev.shape != cur.shape:
                continue
            label, txy = self.classify(prev, cur)
            counts[t, label] += 1
            shift[t] += txy
        n = counts.sum(1, keepdims=True)
        scores, fired, times = empty(T, L)
        scores[:] = np.divide(counts, n, out=np.zeros_like(counts), where=n > 0)
        has = n[:, 0] > 0
        fired[np.nonzero(has)[0], scores[has].argmax(1)] = True
        shift = np.divide(shift, n, out=np.zeros_like(shift), where=n > 0)
        return result(CAMERA_LABELS, scores, fired, times, self.method, "visual", translation_px=shift), holder[0]


register("flash", family="detector", config_cls=FlashConfig, builder=FlashDetector,
         description="full-frame flash: a large jump of mean brightness between consecutive frames")
register("scene_cut", family="detector", config_cls=SceneCutConfig, builder=SceneCutDetector,
         description="hard cut: colour-histogram change between consecutive frames")
register("motion", family="detector", config_cls=MotionConfig, builder=MotionDetector,
         description="motion: fraction of pixels changed between consecutive frames")
register("camera_motion", family="detector", config_cls=CameraMotionConfig, builder=CameraMotionDetector,
         description="camera/scene motion from optical flow: static, pan, tilt, zoom, object_motion")
