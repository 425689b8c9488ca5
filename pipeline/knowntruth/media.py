"""Deterministic media with known events, encoded by FFmpeg through PyAV.

Used by the tests, the demo (``make demo``) and the benchmarks: every generated file
comes with its ground truth, so a user (or a test) can check avgrid's output
against what is really in the file.

Visual content: a colour field (changes at each hard ``cut``), a white square moving
left to right at ``square_speed_px_s``, and full-frame white ``flashes``.
Audio content: silence, short full-scale ``clicks``, sine ``tones`` of known frequency,
and optionally white ``noise`` bursts.

All event times are absolute media seconds (the PTS time a decoder reports), so with
``start_time_s=5`` the first frame is at 5.0 s and events are placed at >= 5.0 s.

Example::

    truth = make_media("/tmp/clip.mp4", MediaSpec(duration_s=6, flashes=(2.0,), clicks=(2.0,)))
    truth.events   # [MediaEvent(kind='flash', t_start=2.0, ...), MediaEvent(kind='click', ...)]
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# name -> (container format, video codec, audio codec, file suffix)
FORMATS: dict[str, tuple[str, str, str, str]] = {
    "mp4": ("mp4", "libx264", "aac", ".mp4"),
    "mkv": ("matroska", "libx265", "libopus", ".mkv"),
    "webm": ("webm", "libvpx-vp9", "libopus", ".webm"),
    "avi": ("avi", "mpeg4", "libmp3lame", ".avi"),
    "mov": ("mov", "mjpeg", "pcm_s16le", ".mov"),
    "ts": ("mpegts", "libx264", "aac", ".ts"),
}

# Known decode offset of audio events in the avi (mpeg4 + mp3) pair; see make_media.
AVI_AUDIO_DELAY_S = 0.026

# Colour fields cycled through at each cut (RGB).
FIELD_COLOURS = [(40, 60, 160), (170, 50, 40), (30, 140, 60), (150, 140, 30), (110, 40, 130)]
BACKGROUND = FIELD_COLOURS[0]


@dataclass(frozen=True)
class MediaEvent:
    """A known event in generated media. Times in media seconds."""

    kind: str                 # flash, cut, click, tone, noise, speech
    t_start: float
    t_end: float
    modality: str             # visual or audio
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MediaSpec:
    """What to generate. Units are in the names; times are media seconds."""

    duration_s: float = 6.0
    width: int = 320
    height: int = 240
    video_fps: float = 25.0
    sample_rate_hz: int = 44_100
    start_time_s: float = 0.0
    video: bool = True
    audio: bool = True
    vfr: bool = False                                   # irregular frame intervals (0.5x..1.5x nominal)
    flashes: tuple[float, ...] = (2.0,)
    flash_duration_s: float = 0.3                       # > 1/4 s so a 4 fps grid samples it
    cuts: tuple[float, ...] = ()
    square_speed_px_s: float = 40.0
    square_size_px: int = 32
    clicks: tuple[float, ...] = (2.0,)
    click_duration_s: float = 0.02
    tones: tuple[tuple[float, float, float], ...] = ()  # (t_start, duration, frequency Hz)
    noise: tuple[tuple[float, float], ...] = ()         # (t_start, duration) white-noise bursts
    audio_start_s: float | None = None                  # audio starts later than video
    audio_end_s: float | None = None                    # audio ends earlier than video
    seed: int = 0

    @property
    def end_s(self) -> float:
        return self.start_time_s + self.duration_s


@dataclass
class GroundTruth:
    path: str
    spec: MediaSpec
    fmt: str
    events: list[MediaEvent]

    def of(self, kind: str) -> list[MediaEvent]:
        return [e for e in self.events if e.kind == kind]

    def to_json(self) -> str:
        return json.dumps({"path": self.path, "fmt": self.fmt, "spec": dataclasses.asdict(self.spec),
                           "events": [dataclasses.asdict(e) for e in self.events]}, indent=1)


def frame_times(spec: MediaSpec) -> np.ndarray:
    """Media times (s) of every video frame: regular, or irregular when ``spec.vfr``."""
    nominal = 1.0 / spec.video_fps
    if not spec.vfr:
        n = int(math.floor(spec.duration_s * spec.video_fps + 1e-9))
        return spec.start_time_s + np.arange(n) * nominal
    rng = np.random.default_rng(spec.seed + 1)
    steps = rng.uniform(0.5, 1.5, size=int(spec.duration_s * spec.video_fps * 2) + 2) * nominal
    times = spec.start_time_s + np.concatenate([[0.0], np.cumsum(steps)])
    return times[times < spec.end_s - 1e-9]


def field_colour_at(spec: MediaSpec, t: float) -> tuple[int, int, int]:
    n_cuts = sum(1 for c in spec.cuts if c <= t)
    return FIELD_COLOURS[n_cuts % len(FIELD_COLOURS)]


def render_frame(spec: MediaSpec, t: float) -> np.ndarray:
    """The RGB frame (H, W, 3) uint8 shown at media time ``t``."""
    if any(f <= t < f + spec.flash_duration_s for f in spec.flashes):
        return np.full((spec.height, spec.width, 3), 255, np.uint8)
    img = np.empty((spec.height, spec.width, 3), np.uint8)
    img[:] = field_colour_at(spec, t)
    s = spec.square_size_px
    x = int(round((t - spec.start_time_s) * spec.square_speed_px_s)) % max(1, spec.width - s)
    y = (spec.height - s) // 2
    img[y:y + s, x:x + s] = 255
    return img


def render_audio(spec: MediaSpec) -> np.ndarray:
    """Mono float32 samples at ``spec.sample_rate_hz`` covering [start_time_s, end_s)."""
    sr = spec.sample_rate_hz
    n = int(round(spec.duration_s * sr))
    t = spec.start_time_s + np.arange(n) / sr
    out = np.zeros(n, np.float32)
    for (ts, dur, freq) in spec.tones:
        m = (t >= ts) & (t < ts + dur)
        out[m] += 0.5 * np.sin(2 * np.pi * freq * (t[m] - ts)).astype(np.float32)
    rng = np.random.default_rng(spec.seed)
    for (ts, dur) in spec.noise:
        m = (t >= ts) & (t < ts + dur)
        out[m] += rng.uniform(-0.5, 0.5, size=int(m.sum())).astype(np.float32)
    for c in spec.clicks:
        m = (t >= c) & (t < c + spec.click_duration_s)
        # a 20 ms burst of 1 kHz at 0.9 full scale: a sharp onset that lossy codecs keep and
        # that survives resampling to 16 kHz (an impulse's energy above 8 kHz would not)
        out[m] = 0.9 * np.sin(2 * np.pi * 1000.0 * (t[m] - c)).astype(np.float32)
    a0 = spec.audio_start_s if spec.audio_start_s is not None else spec.start_time_s
    a1 = spec.audio_end_s if spec.audio_end_s is not None else spec.end_s
    keep = (t >= a0) & (t < a1)
    return np.clip(out[keep], -1, 1).astype(np.float32)


def ground_truth_events(spec: MediaSpec) -> list[MediaEvent]:
    ev: list[MediaEvent] = []
    if spec.video:
        ev += [MediaEvent("flash", f, f + spec.flash_duration_s, "visual") for f in spec.flashes]
        ev += [MediaEvent("cut", c, c, "visual", {"colour": list(field_colour_at(spec, c))}) for c in spec.cuts]
    if spec.audio:
        ev += [MediaEvent("click", c, c + spec.click_duration_s, "audio") for c in spec.clicks]
        ev += [MediaEvent("tone", ts, ts + d, "audio", {"frequency_hz": f}) for ts, d, f in spec.tones]
        ev += [MediaEvent("noise", ts, ts + d, "audio") for ts, d in spec.noise]
    return sorted(ev, key=lambda e: (e.t_start, e.kind))


def _video_stream(container, codec: str, spec: MediaSpec, tb: Fraction):
    stream = container.add_stream(codec, rate=Fraction(spec.video_fps).limit_denominator(1001))
    stream.width, stream.height = spec.width, spec.height
    odd = spec.width % 2 or spec.height % 2
    if codec == "mjpeg":
        stream.pix_fmt = "yuvj444p" if odd else "yuvj420p"
    else:
        stream.pix_fmt = "yuv444p" if odd and codec in ("libx264", "libx265", "libvpx-vp9") else "yuv420p"
    stream.codec_context.time_base = tb
    if container.format.name != "avi":  # avi's muxer picks its own; forcing it shifts frames by one
        stream.time_base = tb
    opts = {"libx264": {"preset": "ultrafast", "crf": "23"}, "libx265": {"preset": "ultrafast", "log-level": "error"},
            "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"}}
    if codec in opts:
        stream.codec_context.options = opts[codec]
    if codec == "libx265":
        stream.codec_context.options = {"preset": "ultrafast", "x265-params": "log-level=error"}
    stream.codec_context.gop_size = max(1, int(spec.video_fps))
    return stream


def _audio_stream(container, codec: str, sample_rate: int):
    stream = container.add_stream(codec, rate=sample_rate)
    stream.layout = "mono"
    if codec == "pcm_s16le":
        stream.format = "s16"
    return stream


def make_media(path: str | Path, spec: MediaSpec = MediaSpec(), fmt: str = "mp4") -> GroundTruth:
    """Encode ``spec`` to ``path`` as container/codec pair ``fmt`` (see FORMATS); write ``<path>.truth.json``.

    Raises ``av.error.*`` / ``ValueError`` when an encoder is missing from this FFmpeg build
    (use :func:`available_formats` to skip those).
    """
    spec = encode(path, spec, fmt, frame_fn=render_frame, audio_fn=render_audio)
    truth = GroundTruth(str(path), spec, fmt, ground_truth_events(spec))
    Path(str(path) + ".truth.json").write_text(truth.to_json())
    return truth


def encode(path: str | Path, spec: MediaSpec, fmt: str, *, frame_fn, audio_fn) -> MediaSpec:
    """Encode any rendered content with FFmpeg through PyAV; returns ``spec`` with the sample rate used.

    ``frame_fn(spec, t)`` gives the RGB frame (H, W, 3) uint8 at each time of :func:`frame_times`;
    ``audio_fn(spec)`` gives mono float32 samples at ``spec.sample_rate_hz`` starting at
    ``spec.audio_start_s`` (or ``start_time_s``). Opus forces 48 kHz, so the returned spec says
    which rate the audio was rendered at.
    """
    cfmt, vcodec, acodec, _ = FORMATS[fmt]
    sr = 48_000 if acodec == "libopus" else spec.sample_rate_hz
    spec = dataclasses.replace(spec, sample_rate_hz=sr)
    tb = Fraction(1, 90_000) if cfmt not in ("avi",) else Fraction(1, int(round(spec.video_fps)))
    if spec.vfr and cfmt == "avi":
        raise ValueError("avi cannot carry variable frame rate")
    # avi: libmp3lame's first packet carries a negative timestamp (encoder delay); the muxer's default
    # avoid_negative_ts shift, rounded to video's 1/fps time base, pushed every video dts after the
    # first one frame late and avi wrote an empty chunk for the hole (decoded pts 0, 2, 3, ...).
    # Disabling the shift keeps video exact. The mp3 encoder delay (~1105 samples, 25 ms at 44.1 kHz)
    # stays in the audio because avi has no edit list: clicks decode ~25 ms late (AVI_AUDIO_DELAY_S).
    copts = {"avoid_negative_ts": "disabled"} if cfmt == "avi" else {}
    with av.open(str(path), "w", format=cfmt, options=copts) as container:
        vs = _video_stream(container, vcodec, spec, tb) if spec.video else None
        as_ = _audio_stream(container, acodec, sr) if spec.audio else None
        # interleave by time: encode audio chunks up to each frame time
        audio = audio_fn(spec) if as_ is not None else np.zeros(0, np.float32)
        a0 = spec.audio_start_s if spec.audio_start_s is not None else spec.start_time_s
        a_pos = 0
        chunk = 1024
        resampler = None
        if as_ is not None:
            fs = as_.codec_context.frame_size or chunk
            resampler = av.AudioResampler(format=as_.codec_context.format or "fltp", layout="mono",
                                          rate=sr, frame_size=fs)

        def push_audio(until_t: float):
            nonlocal a_pos
            while as_ is not None and a_pos < len(audio) and a0 + a_pos / sr <= until_t:
                block = audio[a_pos:a_pos + chunk]
                frame = av.AudioFrame.from_ndarray(block[None, :], format="flt", layout="mono")
                frame.sample_rate = sr
                frame.pts = int(round(a0 * sr)) + a_pos
                frame.time_base = Fraction(1, sr)
                for rf in resampler.resample(frame):
                    container.mux(as_.encode(rf))
                a_pos += len(block)

        if vs is not None:
            for i, t in enumerate(frame_times(spec)):
                if cfmt != "avi":  # avi derives timestamps from packet order: audio first shifts video
                    push_audio(t)
                vf = av.VideoFrame.from_ndarray(frame_fn(spec, t), format="rgb24")
                vf.pts = int(round(t / tb)) if cfmt != "avi" else i + int(round(spec.start_time_s * spec.video_fps))
                vf.time_base = tb
                container.mux(vs.encode(vf))
            container.mux(vs.encode())
        push_audio(float("inf"))
        if as_ is not None:
            for rf in resampler.resample(None):
                container.mux(as_.encode(rf))
            container.mux(as_.encode())
    return spec


def available_formats() -> list[str]:
    """The FORMATS whose encoders exist in this FFmpeg build."""
    out = []
    for name, (_, v, a, _) in FORMATS.items():
        try:
            av.codec.Codec(v, "w")
            av.codec.Codec(a, "w")
            out.append(name)
        except Exception:
            pass
    return out
