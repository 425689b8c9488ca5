"""``synthetic:`` test patterns: pipeline/knowntruth/media.py's moving square, flashes, clicks and tones, no encoding.

URL query (all optional): ``duration`` s (absent = endless), ``fps`` (video frame rate, 25),
``flashes`` / ``clicks`` (comma-separated media seconds), ``tone`` (Hz, a continuous sine at 0.1 of
full scale), ``audio`` / ``video`` (``0`` drops one), ``realtime`` (pace at wall-clock speed; makes
the source live, with ``wall_start`` on its cells). A grid with a detection view gets it rendered at
:data:`DETECT_SOURCE_SIZE` (a 640x360 "camera", scaled down to fit ``detect_px``). ``open_source(..., live=True)`` without
``realtime`` gives a live source that runs as fast as it can (tests of drop-oldest). Example: ``synthetic:?duration=10&flashes=2&clicks=2``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import time
from urllib.parse import parse_qs

import numpy as np

from pipeline.errors import SourceError
from pipeline.grid import GridAligner, GridConfig
from pipeline.sources.base import Source, SourceOptions
from pipeline.knowntruth.media import MediaSpec, frame_times, render_audio, render_frame


DETECT_SOURCE_SIZE = (640, 360)       # (width, height) the detection view pretends the camera has


def _floats(q: dict, key: str) -> tuple[float, ...]:
    vals = q.get(key, [""])[-1]
    return tuple(float(v) for v in vals.split(",") if v.strip())


class SyntheticSource(Source):
    def __init__(self, url: str, grid: GridConfig, *, stream_id: str, is_live: bool, options: SourceOptions):
        super().__init__(url, grid, stream_id=stream_id, is_live=is_live, options=options)
        q = parse_qs(url.partition("?")[2])
        try:
            dur = q.get("duration", [None])[-1]
            self.duration_s = float(dur) if dur else None
            fps = float(q.get("fps", ["25"])[-1])
            tone = float(q.get("tone", ["0"])[-1])
            self._spec = MediaSpec(
                duration_s=grid.hop_s, width=grid.frame_width, height=grid.frame_height, video_fps=fps,
                sample_rate_hz=grid.sample_rate_hz, flashes=_floats(q, "flashes"), clicks=_floats(q, "clicks"),
                video=q.get("video", ["1"])[-1] != "0", audio=q.get("audio", ["1"])[-1] != "0")
        except ValueError as e:
            raise SourceError(url, f"bad synthetic parameter: {e}") from None
        if fps <= 0 or (self.duration_s is not None and self.duration_s <= 0):
            raise SourceError(url, "duration and fps must be positive")
        self._tone_hz = tone
        # live without realtime is a fire hose: wall clocks and drop-oldest, at decode speed
        self._realtime = options.realtime or q.get("realtime", ["false"])[-1].lower() in ("1", "true", "yes")

    def _produce(self) -> None:
        spec, hop = self._spec, self.grid.hop_s
        wall0 = _dt.datetime.now(_dt.timezone.utc) if self.is_live else None
        mono0 = time.monotonic()
        detect_hw = self.grid.detect_size(*DETECT_SOURCE_SIZE) if self.grid.detect_per_cell else None

        def detect_view(frame):           # rendered only for the slots the detection view takes
            t, chunk, _ = frame
            return render_frame(dataclasses.replace(chunk, height=detect_hw[0], width=detect_hw[1]), t)

        al = GridAligner(self.grid, stream_id=self.stream_id, t0_s=0.0, has_video=spec.video, has_audio=spec.audio,
                         frame_tolerance_s=1.0 / spec.video_fps, wall_t0=wall0, source=self.source,
                         is_live=self.is_live, convert=lambda frame: frame[2],
                         convert_detect=detect_view if detect_hw else None, detect_hw=detect_hw)
        k = 0
        while self.duration_s is None or k * hop < self.duration_s - 1e-9:
            # render one hop of media, the last one cut at the duration
            dur = hop if self.duration_s is None else min(hop, self.duration_s - k * hop)
            chunk = MediaSpec(**{**spec.__dict__, "start_time_s": k * hop, "duration_s": dur})
            if spec.video:
                for t in frame_times(chunk):
                    al.push_video(float(t), (float(t), chunk, render_frame(chunk, float(t))))
            if spec.audio:
                audio = render_audio(chunk)
                if self._tone_hz:
                    n = np.arange(len(audio)) / self.grid.sample_rate_hz + k * hop
                    audio = audio + 0.1 * np.sin(2 * np.pi * self._tone_hz * n).astype(np.float32)
                al.push_audio(k * hop, audio)
            k += 1
            if self._realtime and not self._sleep(max(0.0, mono0 + k * hop - time.monotonic())):
                return
            for cell in al.pop_ready():
                if not self._put(cell):
                    return
        for cell in al.flush():
            if not self._put(cell):
                return
