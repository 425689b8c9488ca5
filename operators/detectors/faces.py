"""Faces by OpenCV's Haar cascades (shipped inside opencv-python-headless < 5; no download)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from torch import nn

from operators.detectors.base import check_visual, empty, result, still, still_thumbnail
from operators.registry import register


@dataclass(frozen=True)
class FacesConfig:
    """``cascade``: a file in ``cv2.data.haarcascades`` or a path. Frames wider than ``max_width_px``
    are scaled down first; faces smaller than ``min_face_px`` (after scaling) are ignored.

    ``max_fps``: at most this many evenly spaced frames per second of a cell are searched (faces stay
    in view for seconds; the cascade costs ~25 ms per 224x224 frame on one core); None searches every
    real frame.
    When frames are skipped the method says so: ``opencv-haar(<cascade>,<n>/<F> frames)``."""

    cascade: str = "haarcascade_frontalface_default.xml"
    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_face_px: int = 24
    max_width_px: int = 640
    max_fps: float | None = 1.0
    hop_s: float = 1.0


def cascade_path(name: str) -> Path:
    p = Path(name)
    return p if p.is_file() else Path(getattr(getattr(cv2, "data", None), "haarcascades", "")) / name


class FacesDetector(nn.Module):
    """Label ``face``; score = fraction of the cell's searched real frames with a face; times = offset
    of the first such frame. extras: ``count`` (T,) the most faces in one searched frame of the cell.
    A frame that looks like the last one searched (a still scene, see
    :func:`~operators.detectors.base.still`) is not searched again: its faces are the same."""

    labels = ("face",)

    def __init__(self, cfg: FacesConfig):
        super().__init__()
        path = cascade_path(cfg.cascade)
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise FileNotFoundError(f"{path}: Haar cascade not found or unreadable "
                                    f"(opencv-python-headless < 5 ships them in cv2.data.haarcascades)")
        self.cfg = cfg
        self.method = f"opencv-haar({path.stem})"

    def detect(self, frame: np.ndarray) -> np.ndarray:
        """Face boxes ``(K, 4)`` as x, y, w, h in the frame's own pixels."""
        h, w = frame.shape[:2]
        scale = min(1.0, self.cfg.max_width_px / w)
        if scale < 1.0:
            frame = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        grey = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
        boxes = self.cascade.detectMultiScale(grey, scaleFactor=self.cfg.scale_factor,
                                              minNeighbors=self.cfg.min_neighbors,
                                              minSize=(self.cfg.min_face_px, self.cfg.min_face_px))
        return np.asarray(boxes, np.float32).reshape(-1, 4) / scale

    def stride(self, F: int) -> int:
        """Search every ``stride``-th real frame of a cell of ``F`` slots (at most ``max_fps``)."""
        fps = self.cfg.max_fps
        return 1 if fps is None else max(1, int(np.ceil(F / (fps * self.cfg.hop_s) - 1e-9)))

    def forward(self, frames, frame_mask, audio=None, audio_mask=None, state=None):
        frames, mask = check_visual(frames, frame_mask)
        T, F = mask.shape
        scores, fired, times = empty(T, 1)
        count = np.zeros(T, np.int32)
        stride = self.stride(F)
        method = self.method if stride == 1 else f"{self.method[:-1]},{-(-F // stride)}/{F} frames)"
        last = state if isinstance(state, tuple) else None      # (thumbnail, faces) of the last search
        for t in range(T):
            real = np.nonzero(mask[t])[0][::stride]
            for f in real:
                thumb = still_thumbnail(frames[t, f])
                if last is not None and still(last[0], thumb):
                    k = last[1]          # the picture has not changed since the last search: nor have its faces
                else:
                    k = len(self.detect(frames[t, f]))
                    last = (thumb, k)
                count[t] = max(count[t], k)
                if k and not fired[t, 0]:
                    fired[t, 0] = True
                    times[t, 0] = f * self.cfg.hop_s / F
                scores[t, 0] += (k > 0) / len(real)
        return result(self.labels, scores, fired, times, method, "visual", count=count), last


def _status(cfg: FacesConfig) -> tuple[bool, str | None]:
    path = cascade_path(cfg.cascade)
    return path.is_file(), str(path)


register("faces", family="detector", config_cls=FacesConfig, builder=FacesDetector, weights_status=_status,
         description="frontal faces by OpenCV Haar cascade")
