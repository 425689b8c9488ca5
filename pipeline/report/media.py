"""What the report shows of the media itself: a thumbnail strip and an audio level curve, decoded with PyAV.

Both are sampled, so an input of hours costs about as much as one of minutes:

- thumbnails: at most ``n`` frames at evenly spaced media times. Spaced 10 s or more apart, only key
  frames are decoded (the key frame at or before each time; archives put one every few seconds);
  closer together, decoding runs on from the key frame to the frame at that time.
- audio level: RMS in dBFS per bin. Up to :data:`FULL_AUDIO_S` of audio is decoded whole; beyond
  that, :data:`AUDIO_PROBE_S` seconds at the start of each bin.

Times are media seconds, as in the records (``pts * time_base``).
"""

from __future__ import annotations

import base64
import logging
import math
import os
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("avgrid.report")

THUMB_HEIGHT_PX = 72
KEYFRAMES_ONLY_SPACING_S = 10.0
FULL_AUDIO_S = 20 * 60.0
AUDIO_PROBE_S = 0.5
FLOOR_DB = -90.0


@dataclass
class MediaSummary:
    """``thumbs``: ``[(media s, "data:image/jpeg;base64,...")]``; ``audio``: ``{"t0", "dt", "db"}`` (dBFS per
    bin of ``dt`` seconds from ``t0``, None where nothing was decoded) or None; ``notes``: why something
    is missing."""

    thumbs: list[tuple[float, str]] = field(default_factory=list)
    audio: dict | None = None
    notes: list[str] = field(default_factory=list)


def readable_file(source: str) -> str | None:
    """``source`` as a local file the report may open, or None (URLs, live streams, files gone since)."""
    if not source or "://" in source and not source.startswith("file://"):
        return None
    path = source[len("file://"):] if source.startswith("file://") else source
    return path if os.path.isfile(path) else None


def summarise(path: str, t0: float, t1: float, *, thumbs: int, audio_bins: int) -> MediaSummary:
    """Thumbnails and audio levels of ``path`` over media time ``[t0, t1)``; failures become notes."""
    import av

    out = MediaSummary()
    # (what a failure note names, stream type, how many, reader, MediaSummary field); each opens the
    # file on its own, so a damaged video stream still leaves the audio levels (and the other way round)
    for what, kind, n, read, into in (("thumbnails", "video", thumbs, _thumbnails, "thumbs"),
                                      ("audio", "audio", audio_bins, _levels, "audio")):
        try:
            with av.open(path, metadata_errors="replace") as container:
                if not getattr(container.streams, kind):
                    out.notes.append(f"no {kind} stream")
                elif n > 0:
                    setattr(out, into, read(container, t0, t1, n))
        except (av.FFmpegError, OSError, ValueError) as e:
            out.notes.append(f"{what}: {path}: {e}")
    return out


def _jpeg(rgb: np.ndarray) -> str:
    import cv2

    h, w = rgb.shape[:2]
    width = max(1, int(round(w * THUMB_HEIGHT_PX / h)))
    small = cv2.resize(rgb, (width, THUMB_HEIGHT_PX), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 72])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _thumbnails(container, t0: float, t1: float, n: int) -> list[tuple[float, str]]:
    import av

    vs = container.streams.video[0]
    vs.thread_type = "AUTO"
    span = max(t1 - t0, 1e-3)
    step = span / n
    keyframes_only = step >= KEYFRAMES_ONLY_SPACING_S
    # key frames alone when they are far apart; else reference frames only (a thumbnail may come from
    # the next one): a fraction of the decoding, and what is shown is still a real frame
    vs.codec_context.skip_frame = "NONKEY" if keyframes_only else "NONREF"
    out: list[tuple[float, str]] = []
    frames = None                          # the decoder's position: reused while the next time is close
    last: float | None = None
    for i in range(n):
        want = t0 + (i + 0.5) * step
        if keyframes_only or frames is None or last is None or not last <= want < last + KEYFRAMES_ONLY_SPACING_S:
            try:
                container.seek(int(max(want, 0.0) / vs.time_base), stream=vs, backward=True, any_frame=False)
            except av.FFmpegError:
                continue
            frames = _decoded(container, vs)
        frame = None
        for f in frames:
            if f.time is None:
                continue
            frame, last = f, float(f.time)
            if keyframes_only or f.time >= want - 1e-3:
                break
        if frame is None:
            frames = None
            continue
        t = round(float(frame.time), 3)
        if out and t <= out[-1][0]:        # a long GOP: the same key frame answers several times
            continue
        out.append((t, _jpeg(frame.to_ndarray(format="rgb24"))))
    return out


def _decoded(container, stream):
    """Frames of ``stream`` from here on; a packet the decoder refuses is skipped, as ffmpeg does."""
    import av

    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.FFmpegError:
            continue
        yield from frames


def _mean_square(frame) -> np.ndarray:
    """Per sample, the mean over channels of the squared amplitude (full scale = 1)."""
    x = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:                  # packed: (1, samples * channels)
        x = x.reshape(-1, channels).T
    if x.dtype == np.uint8:
        x = (x.astype(np.float64) - 128.0) / 128.0
    elif np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float64) / float(np.iinfo(x.dtype).max + 1)
    else:
        x = x.astype(np.float64)
    return (x ** 2).mean(axis=0)


def _levels(container, t0: float, t1: float, bins: int) -> dict:
    """RMS level per bin in dBFS (all channels), decoded whole or probed at each bin's start."""
    import av

    a = container.streams.audio[0]
    a.thread_type = "AUTO"
    span = max(t1 - t0, 1e-3)
    dt = span / bins
    energy = np.zeros(bins)
    count = np.zeros(bins)

    def add(frame) -> None:
        if frame.time is None:
            return
        sq = _mean_square(frame)                                            # (samples,)
        times = frame.time + np.arange(sq.size) / frame.sample_rate
        idx = np.floor((times - t0) / dt).astype(np.int64)
        ok = (idx >= 0) & (idx < bins)
        np.add.at(energy, idx[ok], sq[ok])
        np.add.at(count, idx[ok], 1)

    try:
        if span <= FULL_AUDIO_S:
            if t0 > 0:
                container.seek(int(t0 / a.time_base), stream=a, backward=True, any_frame=False)
            for frame in _decoded(container, a):
                if frame.time is not None and frame.time >= t1:
                    break
                add(frame)
        else:
            for b in range(bins):
                start = t0 + b * dt
                container.seek(int(max(start, 0.0) / a.time_base), stream=a, backward=True, any_frame=False)
                got = 0.0
                for frame in _decoded(container, a):
                    if frame.time is None:
                        continue
                    if frame.time + frame.samples / frame.sample_rate < start:
                        continue
                    add(frame)
                    got += frame.samples / frame.sample_rate
                    if got >= AUDIO_PROBE_S or frame.time >= start + dt:
                        break
    except av.FFmpegError as e:
        log.warning("audio levels: %s", e)
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10 * np.log10(energy / count)
    # digital silence is -inf dB: shown at the floor; a bin nothing was decoded for stays None
    levels = [None if c == 0 or math.isnan(v) else round(max(float(v), FLOOR_DB), 1) for v, c in zip(db, count)]
    return {"t0": t0, "dt": dt, "db": levels}
