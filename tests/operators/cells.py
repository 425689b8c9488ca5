"""Grid cells with known content for detector tests, as (T, F, H, W, 3) frames and (T, S) 16 kHz audio.

``rendered_cells`` draws them straight from a MediaSpec (no codec); ``decoded_cells`` encodes the spec
with FFmpeg (tests.media.make_media), decodes the file with PyAV and samples it on the grid, so codec
effects (blocking, AAC pre-echo, resampling) are in the arrays.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import av
import numpy as np

from tests.media import MediaSpec, make_media, render_audio, render_frame

SR = 16_000


def grid_times(spec: MediaSpec, fps: int) -> np.ndarray:
    """(T, F) media seconds of the frame slots of each 1 s cell."""
    T = int(spec.duration_s)
    return spec.start_time_s + np.arange(T)[:, None] + np.arange(fps)[None, :] / fps


def rendered_cells(spec: MediaSpec, fps: int = 4):
    """frames (T, F, H, W, 3) uint8, frame_mask (T, F), audio (T, 16000) float32, audio_mask (T, 16000)."""
    times = grid_times(spec, fps)
    frames = np.stack([[render_frame(spec, t) for t in row] for row in times])
    spec16 = dataclasses.replace(spec, sample_rate_hz=SR)
    T = times.shape[0]
    audio = np.zeros(T * SR, np.float32)
    samples = render_audio(spec16)
    audio[:min(len(samples), T * SR)] = samples[:T * SR]
    return frames, np.ones(times.shape, bool), audio.reshape(T, SR), np.ones((T, SR), bool)


def decoded_cells(path: Path, spec: MediaSpec, fmt: str = "mp4", fps: int = 4):
    """Like rendered_cells, but through an FFmpeg encode and a PyAV decode (nearest frame per slot)."""
    make_media(path, spec, fmt)
    times = grid_times(spec, fps)
    T = times.shape[0]
    with av.open(str(path)) as c:
        vs, as_ = c.streams.video[0], c.streams.audio[0]
        pts, imgs, chunks = [], [], []
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SR)
        for frame in c.decode(vs, as_):
            if isinstance(frame, av.VideoFrame):
                pts.append(float(frame.pts * frame.time_base))
                imgs.append(frame.to_ndarray(format="rgb24"))
            else:
                for rf in resampler.resample(frame):
                    chunks.append(rf.to_ndarray().ravel())
        for rf in resampler.resample(None):
            chunks.append(rf.to_ndarray().ravel())
    pts = np.asarray(pts)
    frames = np.stack([[imgs[int(np.abs(pts - t).argmin())] for t in row] for row in times])
    audio = np.zeros(T * SR, np.float32)
    samples = np.concatenate(chunks)[:T * SR]
    audio[:len(samples)] = samples
    return frames, np.ones(times.shape, bool), audio.reshape(T, SR), np.ones((T, SR), bool)


def fired_cells(result, label: str) -> list[int]:
    return [int(t) for t in np.nonzero(result.fired[:, result.labels.index(label)].numpy())[0]]
