"""Footage with known geometry for the people, zone and line tests, made from real footage.

A real pedestrian (cut out of opencv-doc's vtest.avi street clip by differencing against the
street's empty background, itself the per-pixel median of frames spread over the clip) is pasted
onto that empty street and moved along a path we choose, with sensor-like noise, and encoded with
FFmpeg. The truth (where the person's feet are at every instant) is the path itself::

    walk = Walk(xs=(0.25, 0.8, 0.25, 0.8), leg_s=3.5)        # three crossings of x = 0.5
    truth = make_walker_clip(tmp_path / "walk.mp4", walk)
    truth.feet_at(2.0)          # (x, y) in 0..1 of the frame
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from pipeline.knowntruth.media import MediaSpec, encode
from tests.realmedia import real_file

WIDTH, HEIGHT = 768, 576            # vtest's frame size
SPRITE_AT_S = 20.6                  # the frame of vtest the person is cut from
SPRITE_BOX = (640, 280, 700, 400)   # x0, y0, x1, y1 around him in that frame (a man walking, ~110 px tall)


@functools.lru_cache(maxsize=1)
def street_and_person() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(empty street (H, W, 3) RGB, person (h, w, 3) RGB, person mask (h, w) bool)."""
    want = {round(t, 1) for t in np.arange(0.5, 79.0, 4.0)} | {SPRITE_AT_S}
    frames, at = [], None
    with av.open(str(real_file("vtest"))) as c:
        c.streams.video[0].thread_type = "AUTO"
        for f in c.decode(video=0):
            t = round(float(f.pts * f.time_base), 1)
            if t in want:
                img = f.to_ndarray(format="rgb24")
                frames.append(img)
                if t == SPRITE_AT_S:
                    at = img
    plate = np.median(np.stack(frames), 0).astype(np.uint8)
    x0, y0, x1, y1 = SPRITE_BOX
    crop = at[y0:y1, x0:x1]
    mask = (np.abs(crop.astype(np.int16) - plate[y0:y1, x0:x1].astype(np.int16)).max(-1) > 30).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    mask = labels == biggest
    ys, xs = np.nonzero(mask)
    sl = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    return plate, crop[sl].copy(), mask[sl].copy()


@dataclass(frozen=True)
class Walk:
    """A person walking between x positions ``xs`` (fractions of the width, feet at ``feet_y``),
    ``leg_s`` seconds per leg, pausing ``pause_s`` at each turn (also before the first leg and after
    the last), with ``start_s`` of empty street first. ``gone_s`` > 0: he leaves at the end (is no
    longer there) and the street stays empty that long."""

    xs: tuple[float, ...] = (0.25, 0.8, 0.25, 0.8)
    leg_s: float = 3.5
    pause_s: float = 0.5
    start_s: float = 2.0
    feet_y: float = 0.6
    gone_s: float = 0.0

    @property
    def end_s(self) -> float:
        """When the walk ends (and he leaves, if ``gone_s``)."""
        return self.start_s + (len(self.xs) - 1) * self.leg_s + len(self.xs) * self.pause_s

    @property
    def duration_s(self) -> float:
        return self.end_s + self.gone_s

    def feet_at(self, t: float) -> tuple[float, float] | None:
        """Where the feet are at ``t`` (fractions of the frame), None before the person appears."""
        if t < self.start_s or (self.gone_s and t >= self.end_s):
            return None
        u = t - self.start_s
        for i in range(len(self.xs)):
            if u < self.pause_s:
                return self.xs[i], self.feet_y
            u -= self.pause_s
            if i + 1 < len(self.xs):
                if u < self.leg_s:
                    return self.xs[i] + (self.xs[i + 1] - self.xs[i]) * u / self.leg_s, self.feet_y
                u -= self.leg_s
        return self.xs[-1], self.feet_y

    def heading_at(self, t: float) -> int:
        """+1 walking right, -1 left, 0 standing."""
        a, b = self.feet_at(t), self.feet_at(t + 0.01)
        if a is None or b is None or abs(b[0] - a[0]) < 1e-9:
            return 0
        return 1 if b[0] > a[0] else -1


@functools.lru_cache(maxsize=1)
def _noise_bank(n: int = 5) -> np.ndarray:
    """(n, H, W, 3) int16 sensor-like noise (sigma 2 grey levels), cycled over frames."""
    return np.random.default_rng(0).normal(0, 2.0, (n, HEIGHT, WIDTH, 3)).round().astype(np.int16)


def render(walk: Walk, t: float) -> np.ndarray:
    """The frame (H, W, 3) RGB at media time ``t``."""
    plate, person, mask = street_and_person()
    img = plate.copy()
    at = walk.feet_at(t)
    if at is not None:
        if walk.heading_at(t) < 0:                      # facing the way he walks
            person, mask = person[:, ::-1], mask[:, ::-1]
        h, w = mask.shape
        x0 = int(round(at[0] * WIDTH - w / 2))
        y0 = int(round(at[1] * HEIGHT - h))
        # the part inside the frame (he may stand half out of it at a border)
        a, b = max(0, -x0), min(w, WIDTH - x0)
        region = img[y0:y0 + h, x0 + a:x0 + b]
        region[mask[:, a:b]] = person[:, a:b][mask[:, a:b]]
    noise = _noise_bank()
    return np.clip(img.astype(np.int16) + noise[int(round(t * 1000)) % len(noise)], 0, 255).astype(np.uint8)


def make_walker_clip(path: str | Path, walk: Walk = Walk(), fps: float = 10.0) -> Walk:
    """Encode ``walk`` to ``path`` (H.264 MP4, 768x576, no audio); returns the walk (the truth)."""
    spec = MediaSpec(duration_s=walk.duration_s, width=WIDTH, height=HEIGHT, video_fps=fps, audio=False,
                     flashes=(), clicks=())
    encode(path, spec, "mp4", frame_fn=lambda s, t: render(walk, t), audio_fn=lambda s: np.zeros(0, np.float32))
    return walk
