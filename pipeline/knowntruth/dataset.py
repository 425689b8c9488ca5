"""A synthetic labelled data set for training and checking the fusion model.

Each clip is a scene on the 1-second grid (cell k = [k, k+1) s) with known labels:

- action (per clip, visual): a pink square moves left / right / up / down (wrapping at the
  edges) or stands still.
- events (per cell): ``beep`` (2 kHz tone) and ``noise_burst`` (white noise) are audio;
  ``flash`` (white frames) and ``scene_cut`` (background colour change) are visual;
  ``impact`` is audio-visual: it holds only when a visual collision (an orange block falls
  and hits the floor at mid-cell) and a bang (a loud 1 kHz burst, ``clicks`` in
  :mod:`pipeline.knowntruth.media`) happen in the same cell. A collision without a bang, or a bang
  without a collision, is a negative (each is more common than an impact, so neither medium
  alone can predict it).
- sentiment (per clip) needs both media: positive = bright background and a high hum,
  negative = dark background and a low hum, neutral = one of each. Valence follows the
  label (+0.8 / 0 / -0.8); arousal per cell rises with the number of things happening.
- caption (per clip): a sentence describing the square, the motion, the scene and the hum.

``make_dataset`` encodes clips with PyAV (the stream set-up of :mod:`pipeline.knowntruth.media`) and
writes ``labels.jsonl``; ``make_cells`` renders the same scenes directly as grid-cell arrays
(no encode / decode) for fast tests. Audio uses :func:`pipeline.knowntruth.media.render_audio`.

labels.jsonl: one clip line ``{"clip", "action", "sentiment", "valence", "caption"}`` plus,
per cell, a span line ``{"clip", "t_start", "t_end", "events": [{"label", "modality"}],
"arousal"}``. Example::

    make_dataset("/tmp/ds", n_clips=40, clip_seconds=8, seed=0)
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.knowntruth.media import FORMATS, MediaSpec, encode, render_audio

ACTIONS = ("move_left", "move_right", "move_up", "move_down", "stand_still")
EVENTS = (("beep", "audio"), ("noise_burst", "audio"), ("flash", "visual"), ("scene_cut", "visual"),
          ("impact", "audiovisual"))
SENTIMENTS = ("negative", "neutral", "positive")
VALENCE = {"negative": -0.8, "neutral": 0.0, "positive": 0.8}
BRIGHT = ((230, 200, 90), (240, 170, 150), (170, 220, 240), (200, 240, 170))
DARK = ((30, 30, 60), (60, 25, 25), (20, 55, 30), (45, 35, 55))
SQUARE, BLOCK, FLOOR = (255, 70, 200), (255, 140, 0), (128, 128, 128)
HUM_HZ = {"high": 660.0, "low": 150.0}
BEEP_HZ = 2000.0
FLOOR_PX = 8
SAMPLE_RATE_HZ = 16_000

# per-cell probabilities: one visual and one audio happening at most per cell
VISUAL_P = {"flash": 0.12, "scene_cut": 0.12, "collision": 0.3}
AUDIO_P = {"beep": 0.12, "noise_burst": 0.12, "bang": 0.3}


@dataclass(frozen=True)
class Scene:
    """One clip's content. Times in media seconds from 0; sizes in px; speed in px/s."""

    name: str
    seconds: int
    width: int
    height: int
    action: str
    bright: bool
    hum: str                               # high or low
    size_px: int
    speed_px_s: float
    x0: float
    y0: float
    palette: tuple
    visual: tuple                          # per cell: None, flash, scene_cut or collision
    audio: tuple                           # per cell: None, beep, noise_burst or bang
    times: tuple                           # per cell: onset time of the cell's happenings (s)
    block_x: tuple                         # per cell: x of the falling block

    @property
    def sentiment(self) -> str:
        if self.bright and self.hum == "high":
            return "positive"
        if not self.bright and self.hum == "low":
            return "negative"
        return "neutral"

    @property
    def caption(self) -> str:
        motion = "stands still" if self.action == "stand_still" else self.action.replace("_", "s ")
        size = "small" if self.size_px < 16 else "large"
        return (f"a {size} pink square {motion} in a {'bright' if self.bright else 'dark'} scene "
                f"over a {self.hum} hum")

    def cell_events(self, k: int) -> list[str]:
        ev = [e for e in (self.visual[k], self.audio[k]) if e in ("flash", "scene_cut", "beep", "noise_burst")]
        if self.visual[k] == "collision" and self.audio[k] == "bang":
            ev.append("impact")
        return ev

    def arousal(self, k: int) -> float:
        return min(1.0, 0.2 + 0.3 * sum(x is not None for x in (self.visual[k], self.audio[k])))

    def label_lines(self, clip: str) -> list[dict]:
        mod = dict(EVENTS)
        lines = [{"clip": clip, "action": self.action, "sentiment": self.sentiment,
                  "valence": VALENCE[self.sentiment], "caption": self.caption}]
        for k in range(self.seconds):
            lines.append({"clip": clip, "t_start": float(k), "t_end": float(k + 1),
                          "events": [{"label": e, "modality": mod[e]} for e in self.cell_events(k)],
                          "arousal": self.arousal(k)})
        return lines


def _pick(rng, probs: dict) -> str | None:
    r, acc = rng.random(), 0.0
    for name, p in probs.items():
        acc += p
        if r < acc:
            return name
    return None


def make_scene(name: str, rng: np.random.Generator, seconds: int, width: int = 128, height: int = 128) -> Scene:
    """A random scene; every random choice comes from ``rng`` (same seed, same scene)."""
    bright = bool(rng.random() < 0.5)
    pal = BRIGHT if bright else DARK
    order = rng.permutation(len(pal))
    size = int(rng.integers(12, 21))
    return Scene(name=name, seconds=seconds, width=width, height=height,
                 action=ACTIONS[int(rng.integers(len(ACTIONS)))], bright=bright,
                 hum="high" if rng.random() < 0.5 else "low", size_px=size,
                 speed_px_s=float(rng.uniform(20, 30)),
                 x0=float(rng.uniform(0, width - size)), y0=float(rng.uniform(0, height - FLOOR_PX - size)),
                 palette=tuple(pal[i] for i in order),
                 visual=tuple(_pick(rng, VISUAL_P) for _ in range(seconds)),
                 audio=tuple(_pick(rng, AUDIO_P) for _ in range(seconds)),
                 times=tuple(float(k + rng.uniform(0.3, 0.55)) for k in range(seconds)),
                 block_x=tuple(float(rng.uniform(0, width - 16)) for _ in range(seconds)))


def render_scene_frame(s: Scene, t: float) -> np.ndarray:
    """RGB frame (H, W, 3) uint8 at media time ``t``."""
    k = min(int(np.floor(t)), s.seconds - 1)
    if s.visual[k] == "flash" and s.times[k] - 0.1 <= t < s.times[k] + 0.3:
        return np.full((s.height, s.width, 3), 255, np.uint8)
    n_cuts = sum(1 for j in range(s.seconds) if s.visual[j] == "scene_cut" and s.times[j] <= t)
    img = np.empty((s.height, s.width, 3), np.uint8)
    img[:] = s.palette[n_cuts % len(s.palette)]
    img[-FLOOR_PX:] = FLOOR
    room_x, room_y = s.width - s.size_px, s.height - FLOOR_PX - s.size_px
    dx, dy = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}.get(s.action, (0, 0))
    x = int(round(s.x0 + dx * s.speed_px_s * t)) % room_x
    y = int(round(s.y0 + dy * s.speed_px_s * t)) % room_y
    img[y:y + s.size_px, x:x + s.size_px] = SQUARE
    if s.visual[k] == "collision":
        # the block falls from the top and lands on the floor at the cell's onset time, then rests there
        floor_y = s.height - FLOOR_PX - 16
        frac = min(1.0, (t - k) / max(1e-6, s.times[k] - k))
        by, bx = int(round(frac * floor_y)), int(s.block_x[k])
        img[by:by + 16, bx:bx + 16] = BLOCK
    return img


def render_scene_audio(s: Scene, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Mono float32 samples for the whole clip: a quiet hum plus the cells' sounds."""
    hum = render_audio(MediaSpec(duration_s=s.seconds, sample_rate_hz=sample_rate_hz, clicks=(),
                                 tones=((0.0, float(s.seconds), HUM_HZ[s.hum]),)))
    sounds = render_audio(MediaSpec(
        duration_s=s.seconds, sample_rate_hz=sample_rate_hz, seed=zlib.crc32(s.name.encode()),
        clicks=tuple(s.times[k] for k in range(s.seconds) if s.audio[k] == "bang"), click_duration_s=0.06,
        tones=tuple((s.times[k], 0.3, BEEP_HZ) for k in range(s.seconds) if s.audio[k] == "beep"),
        noise=tuple((s.times[k], 0.3) for k in range(s.seconds) if s.audio[k] == "noise_burst")))
    return np.clip(0.2 * hum + sounds, -1, 1).astype(np.float32)


@dataclass
class ClipArrays:
    """A scene rendered straight onto the grid (hop 1 s): arrays as pipeline.grid.Cell holds them, stacked.

    frames (T, F, H, W, 3) uint8, frame_mask (T, F) bool, audio (T, S) float32 16 kHz,
    audio_mask (T, S) bool, lines = the clip's labels.jsonl lines.
    """

    name: str
    frames: np.ndarray
    frame_mask: np.ndarray
    audio: np.ndarray
    audio_mask: np.ndarray
    lines: list[dict]


def scenes(n_clips: int, clip_seconds: int, seed: int, width: int = 128, height: int = 128) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [make_scene(f"clip_{i:04d}", rng, clip_seconds, width, height) for i in range(n_clips)]


def make_cells(n_clips: int, *, clip_seconds: int = 8, seed: int = 0, fps: float = 4.0,
               width: int = 128, height: int = 128) -> list[ClipArrays]:
    """The data set of :func:`make_dataset` (same seed, same scenes) as grid arrays, without encoding.

    Frame slot j of cell k shows media time k + (j + 0.5) / fps, as pipeline.grid samples it."""
    out = []
    f = max(1, round(fps))
    for s in scenes(n_clips, clip_seconds, seed, width, height):
        frames = np.stack([np.stack([render_scene_frame(s, k + (j + 0.5) / f) for j in range(f)])
                           for k in range(s.seconds)])
        audio = render_scene_audio(s).reshape(s.seconds, SAMPLE_RATE_HZ)
        out.append(ClipArrays(s.name, frames, np.ones(frames.shape[:2], bool), audio, np.ones(audio.shape, bool),
                              s.label_lines(s.name)))
    return out


def encode_scene(path: str | Path, s: Scene, *, fmt: str = "mp4", video_fps: float = 8.0) -> Path:
    """Encode a scene with FFmpeg through PyAV (video at ``video_fps``, audio at 16 kHz, 48 kHz for opus)."""
    spec = MediaSpec(duration_s=s.seconds, width=s.width, height=s.height, video_fps=video_fps,
                     sample_rate_hz=SAMPLE_RATE_HZ)
    encode(path, spec, fmt, frame_fn=lambda _spec, t: render_scene_frame(s, t),
           audio_fn=lambda sp: render_scene_audio(s, sp.sample_rate_hz))
    return Path(path)


def make_dataset(out_dir: str | Path, *, n_clips: int, clip_seconds: int = 8, seed: int = 0, fmt: str = "mp4",
                 video_fps: float = 8.0, width: int = 128, height: int = 128) -> list[Scene]:
    """Write ``n_clips`` encoded clips and ``labels.jsonl`` to ``out_dir``; returns the scenes."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    made = scenes(n_clips, clip_seconds, seed, width, height)
    suffix = FORMATS[fmt][3]
    with open(out / "labels.jsonl", "w") as f:
        for s in made:
            clip = s.name + suffix
            encode_scene(out / clip, s, fmt=fmt, video_fps=video_fps)
            for line in s.label_lines(clip):
                f.write(json.dumps(line) + "\n")
    (out / "_dataset.json").write_text(json.dumps(
        {"generator": "avgrid.knowntruth.dataset", "seed": seed, "n_clips": n_clips, "clip_seconds": clip_seconds,
         "scenes": [dataclasses.asdict(s) for s in made]}, indent=1))
    return made
