"""What every offline detector returns, and the frame-pair walk the visual ones share.

A detector runs on ONE stream's consecutive grid cells and keeps state between calls, so an event
at a cell boundary (a cut between the last frame of cell k and the first of cell k+1) is still seen:

    det = build("scene_cut"); state = None
    for window in cells_of_one_stream:
        result, state = det(frames, frame_mask, audio, audio_mask, state)

Arguments (numpy arrays or tensors):
  frames      (T, F, H, W, 3) uint8 RGB, T cells of F frames
  frame_mask  (T, F) bool, True = a real frame (False slots are ignored)
  audio       (T, S) float32 mono, 16 kHz
  audio_mask  (T, S) bool, True = a real sample
  state       what the previous call returned, or None at the start of a stream or segment

A cell without real media of the detector's modality never fires.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import cv2
import numpy as np
import torch

SAMPLE_RATE_HZ = 16_000


@dataclass(frozen=True)
class DetectorResult:
    """Per-cell detections of one call.

    labels:   L label names
    scores:   (T, L) float32; each detector documents its scale (mostly 0..1)
    fired:    (T, L) bool, the detection decision per cell and label
    method:   how the result was computed (goes into the record's ``model`` field)
    modality: "visual", "audio" or "audiovisual"
    times:    (T, L) float32 seconds from the cell start to the first firing, NaN when unknown or not fired
    extras:   named per-cell measurements, e.g. ``level_dbfs`` (T,)
    """

    labels: tuple[str, ...]
    scores: torch.Tensor
    fired: torch.Tensor
    method: str
    modality: str
    times: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def events(self) -> list[tuple[int, str, float, float]]:
        """``(cell, label, score, time_s)`` for every fired entry, in cell order."""
        out = []
        for t, l in torch.nonzero(self.fired).tolist():
            ts = float(self.times[t, l]) if self.times is not None else float("nan")
            out.append((t, self.labels[l], float(self.scores[t, l]), ts))
        return out


def as_numpy(x: Any, dtype, ndim: int, name: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.dtype != dtype or arr.ndim != ndim:
        raise ValueError(f"{name} must be {np.dtype(dtype).name} with {ndim} dims, got {arr.dtype} {arr.shape}")
    return arr


def check_visual(frames, frame_mask) -> tuple[np.ndarray, np.ndarray]:
    frames = as_numpy(frames, np.uint8, 5, "frames (T, F, H, W, 3)")
    mask = as_numpy(frame_mask, np.bool_, 2, "frame_mask (T, F)")
    if frames.shape[:2] != mask.shape or frames.shape[-1] != 3:
        raise ValueError(f"frames {frames.shape} and frame_mask {mask.shape} do not match (T, F, H, W, 3) / (T, F)")
    return frames, mask


def check_audio(audio, audio_mask) -> tuple[np.ndarray, np.ndarray]:
    audio = as_numpy(audio, np.float32, 2, "audio (T, S)")
    mask = as_numpy(audio_mask, np.bool_, 2, "audio_mask (T, S)")
    if audio.shape != mask.shape:
        raise ValueError(f"audio {audio.shape} and audio_mask {mask.shape} differ")
    return audio, mask


def frame_pairs(frames: np.ndarray, mask: np.ndarray, prev: Any, featurize: Callable[[np.ndarray], Any],
                holder: list) -> Iterator[tuple[int, int, Any, Any]]:
    """Yield ``(cell, slot, previous_feature, feature)`` for consecutive real frames, across calls.

    ``prev`` is the feature of the last real frame of the previous call (or None); when the walk ends,
    ``holder`` holds the last feature seen, which is the next call's state. A frame whose feature is
    None (``featurize`` declined it, e.g. a flash frame for the cut detector) is skipped entirely.
    """
    holder[:] = [prev]
    for t in range(mask.shape[0]):
        for f in range(mask.shape[1]):
            if not mask[t, f]:
                continue
            feat = featurize(frames[t, f])
            if feat is None:
                continue
            if holder[0] is not None:
                yield t, f, holder[0], feat
            holder[0] = feat


def empty(T: int, L: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zero scores, nothing fired, NaN times: the start of every detector's output."""
    return np.zeros((T, L), np.float32), np.zeros((T, L), bool), np.full((T, L), np.nan, np.float32)


def result(labels, scores, fired, times, method, modality, **extras) -> DetectorResult:
    return DetectorResult(tuple(labels), torch.from_numpy(scores), torch.from_numpy(fired), method, modality,
                          torch.from_numpy(times), {k: torch.from_numpy(np.asarray(v)) for k, v in extras.items()})


def luma(frame: np.ndarray) -> float:
    """Mean Rec.601 luma of an RGB uint8 frame, 0..1."""
    m = cv2.mean(frame)          # ~8x faster than numpy's mean over a uint8 frame
    return float(0.299 * m[0] + 0.587 * m[1] + 0.114 * m[2]) / 255.0


STILL_PX = 32
STILL_GREY = 1.0          # mean absolute change (grey levels) under which two thumbnails are the same picture
STILL_PEAK_GREY = 8.0     # ... and no thumbnail pixel changed more (a small face coming in is a local change)


def still_thumbnail(frame: np.ndarray) -> np.ndarray:
    """(32, 32) float32 grey thumbnail of an RGB frame: cheap (~0.05 ms) and averaging out sensor noise."""
    small = cv2.resize(frame, (STILL_PX, STILL_PX), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)


def still(a: np.ndarray | None, b: np.ndarray) -> bool:
    """True when two :func:`still_thumbnail` differ by under ``STILL_GREY`` grey levels on average and
    nowhere by ``STILL_PEAK_GREY``: nothing moved between the frames beyond noise (a locked-off camera
    on an empty scene), so detectors that would find the same again can skip the frame."""
    return (a is not None and a.shape == b.shape and float(cv2.norm(a, b, cv2.NORM_L1)) / a.size < STILL_GREY
            and float(cv2.norm(a, b, cv2.NORM_INF)) < STILL_PEAK_GREY)
