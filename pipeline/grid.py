"""The temporal grid: the one time axis that frames, audio and every record share.

Cell ``k`` of a segment covers media time ``[t0 + k*hop, t0 + (k+1)*hop)`` seconds.
Media time always comes from ``pts * time_base`` (never from counting frames).
A cell holds ``round(hop * fps)`` frames (the decoded frame nearest each sample time)
and exactly ``hop * 16000`` mono float32 audio samples. Missing media is zero-filled
and flagged in the masks, never invented.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

import numpy as np

SAMPLE_RATE_HZ = 16_000


@dataclass(frozen=True)
class GridConfig:
    """Grid geometry. Units are in the names."""

    hop_s: float = 1.0
    fps: float = 4.0                      # frames sampled per second of media
    frame_height: int = 224
    frame_width: int = 224
    sample_rate_hz: int = SAMPLE_RATE_HZ

    @property
    def frames_per_cell(self) -> int:
        return max(1, round(self.hop_s * self.fps))

    @property
    def samples_per_cell(self) -> int:
        return round(self.hop_s * self.sample_rate_hz)

    def cell_index(self, t_s: float, t0_s: float = 0.0) -> int:
        """Index of the cell holding media time ``t_s`` in a grid starting at ``t0_s``."""
        return int(np.floor((t_s - t0_s) / self.hop_s + 1e-9))


@dataclass(frozen=True, eq=False)
class Cell:
    """One grid cell of one stream.

    Arrays:
      frames      (F, H, W, 3) uint8 RGB; zeros where ``frame_mask`` is False
      frame_times (F,) float64 media seconds of the frame used for each slot; NaN where missing
      frame_mask  (F,) bool, True = a real decoded frame
      audio       (S,) float32 mono at ``sample_rate_hz``, S = hop * rate; zeros where missing
      audio_mask  (S,) bool, True = a real decoded sample
    """

    stream_id: str
    index: int
    t_start: float
    t_end: float
    frames: np.ndarray
    frame_times: np.ndarray
    frame_mask: np.ndarray
    audio: np.ndarray
    audio_mask: np.ndarray
    segment: int = 0
    wall_start: _dt.datetime | None = None
    source: str = ""
    is_live: bool = False

    @property
    def has_video(self) -> bool:
        return bool(self.frame_mask.any())

    @property
    def has_audio(self) -> bool:
        return bool(self.audio_mask.any())


@dataclass(frozen=True)
class Gap:
    """Media that a stream did not deliver: a reconnect, a PTS jump, or cells dropped under load.

    Becomes an ``event`` record with label ``gap``. Times are media seconds of the
    segment before the gap where known; ``wall_*`` are UTC capture times (live only).
    """

    stream_id: str
    t_start: float
    t_end: float
    reason: str
    segment: int = 0
    wall_start: _dt.datetime | None = None
    wall_end: _dt.datetime | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)
