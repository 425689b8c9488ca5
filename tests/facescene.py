"""A speaking face with known timing: a real face photo on screen while an espeak-ng sentence plays.

The face is cut from opencv-doc's messi5.jpg (a real photo; fetched from Debian by
pipeline.knowntruth.debian), shown from ``face_s[0]`` to ``face_s[1]`` over a plain background; the sentence
starts at ``speech_at_s``. With ``speech_at_s`` two cells after the face has gone, nobody is on
screen while the voice is heard::

    truth = make_face_clip(tmp_path / "face.mp4", face_s=(1.0, 3.0), speech_at_s=1.0)
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from pipeline.knowntruth.debian import package_file
from pipeline.knowntruth.media import MediaSpec, encode

WIDTH, HEIGHT, FPS, RATE = 320, 240, 10.0, 44_100
FACE_BOX = (214, 36, 369, 176)        # x0, y0, x1, y1 around the frontal face in messi5.jpg (Haar: 244,62 85x85)
SENTENCE = "Hello there, my good friend."


@dataclass(frozen=True)
class FaceClip:
    path: str
    face_s: tuple[float, float]
    speech_s: tuple[float, float]       # where the voice is audible
    duration_s: float


def _face() -> np.ndarray:
    img = cv2.imread(str(package_file("opencv-doc", "usr/share/doc/opencv-doc/examples/data/messi5.jpg")))
    x0, y0, x1, y1 = FACE_BOX
    crop = cv2.cvtColor(img[y0:y1, x0:x1], cv2.COLOR_BGR2RGB)
    return cv2.resize(crop, (int(crop.shape[1] * 1.3), int(crop.shape[0] * 1.3)), interpolation=cv2.INTER_CUBIC)


def make_face_clip(path: str | Path, *, face_s=(1.0, 3.0), speech_at_s: float = 1.0,
                   duration_s: float = 8.0) -> FaceClip:
    face = _face()
    h, w = face.shape[:2]
    bg = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    with_face = bg.copy()
    y, x = (HEIGHT - h) // 2, (WIDTH - w) // 2
    with_face[y:y + h, x:x + w] = face

    def frame(spec, t):
        return with_face if face_s[0] <= t < face_s[1] else bg

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), SENTENCE], check=True, capture_output=True)
        chunks = []
        rs = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        with av.open(str(wav)) as c:
            for f in c.decode(audio=0):
                chunks += [o.to_ndarray().ravel() for o in rs.resample(f)]
        voice = np.concatenate(chunks).astype(np.float32)
    audio = np.random.default_rng(3).normal(0, 0.002, int(duration_s * RATE)).astype(np.float32)
    a = int(speech_at_s * RATE)
    voice = voice[: len(audio) - a]
    audio[a:a + len(voice)] += voice * (0.1 / max(1e-6, float(np.sqrt(np.mean(voice ** 2)))))
    loud = np.flatnonzero(np.abs(voice) > 0.01 * np.abs(voice).max())
    spec = MediaSpec(duration_s=duration_s, width=WIDTH, height=HEIGHT, video_fps=FPS, sample_rate_hz=RATE,
                     flashes=(), clicks=())
    encode(path, spec, "mp4", frame_fn=frame, audio_fn=lambda s: audio)
    return FaceClip(str(path), tuple(face_s), (speech_at_s + loud[0] / RATE, speech_at_s + loud[-1] / RATE),
                    duration_s)
