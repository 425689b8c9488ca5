"""Files and network streams through PyAV (FFmpeg): one demux pass, video + audio onto the grid.

What a user can rely on:

* The first video and first audio stream are read together in one demux pass, video with frame
  threading. Only frames a grid slot picks are scaled and converted (FFmpeg swscale, straight to
  RGB24 at the grid size; the aspect ratio is not kept). A grid with a detection view
  (``GridConfig.detect_px``) also scales its slots' frames once more, aspect kept, never upscaled,
  with a scaler context of its own. Audio goes through FFmpeg's resampler to
  16 kHz mono float32 and is placed by its PTS. Frames no slot can pick are not decoded where the
  codec allows it (:mod:`pipeline.sources.skipdecode`).
* Files: cell 0 starts at the earliest start time of the two streams (a clip starting at 5.0 s
  has cell 0 = [5.0, 6.0)). A slot takes the frame with the nearest PTS if it is at most one
  nominal frame interval (1 / average frame rate) away, else its mask is False.
* Timestamps that go back by more than 1 s or forward by more than ``jump_s`` in one stream start
  a new segment, announced by a ``Gap`` (:mod:`pipeline.sources.timeline`).
* Live: deadlines on open and every read (FFmpeg socket options, PyAV's interrupt callback, the
  watchdog in :mod:`pipeline.sources.base`), reconnects with backoff (``Gap`` reason
  ``reconnect``), and one timeline that keeps pace with the wall clock across outages and resets;
  ``wall_start`` is the estimated capture time (:mod:`pipeline.sources.liveclock`).
* Opening, FFmpeg's options and why an open failed: :mod:`pipeline.sources.opening`. ``srt://``:
  PyAV's FFmpeg has no SRT, so the ffmpeg CLI relays it as MPEG-TS on a pipe
  (:mod:`pipeline.sources.relay`); everything above holds for it too.
* Damaged files are read as far as they go (:mod:`pipeline.sources.damage`).

This module is the reader: it opens, reconnects, demuxes, decodes, converts and resamples, and
hands cells and gaps on in order.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from pipeline.errors import SourceError
from pipeline.grid import Gap, GridAligner, GridConfig
from pipeline.sources.base import Source, SourceOptions, log
from pipeline.sources.damage import DamageLog, media_terms
from pipeline.sources.liveclock import LiveClock, wall
from pipeline.sources.opening import Opener, creation_time, reason, stream_facts
from pipeline.sources.skipdecode import SkipPolicy
from pipeline.sources.timeline import DROP, RESTART, START, Timeline, seconds


WINDOW_LEAD_S = 0.5      # a window's reader starts this much before its first cell (then at a keyframe)


class AVSource(Source):
    """A file, URL or device read with PyAV. See :func:`pipeline.sources.open_source`."""

    def __init__(self, url: str, grid: GridConfig, *, stream_id: str, is_live: bool, options: SourceOptions,
                 auto_live: bool = False):
        super().__init__(url, grid, stream_id=stream_id, is_live=is_live, options=options)
        self._container = None
        self._opener = Opener(url, options)
        self._timeline = Timeline(options.jump_s)
        self._clock = LiveClock(options.clock_window_s, grid.hop_s)   # live: the capture clock
        self._skip = SkipPolicy(options.skip_unsampled, options.jump_s)
        self.bad_packets = 0
        self.damage = DamageLog(grid.hop_s)   # files: what would not decode, a read cut short, a truncated end
        self.frames_decoded = 0
        self.cells_out = 0
        self._tol = grid.hop_s / grid.frames_per_cell   # one nominal frame interval (s)
        self._has = (False, False)       # (video, audio) in the container being read
        self._resampler = None
        self._declared_start: float | None = None   # files: the container's start time (s)
        self._reformatter = VideoReformatter()
        self._detect_reformatter = VideoReformatter()   # the detection view's own scaler context
        self._detect_hw: tuple[int, int] | None = None
        self._live_gap = ""             # live: reason of the gap to emit before the next segment's first cell
        self._gap_extra: dict = {}      # and what caused it (a reconnect's last error, attempts)
        self._pace0: tuple[float, float] | None = None   # realtime files: (monotonic, media s) of the first cell
        self._start_error: SourceError | None = None   # live: why the open at start failed (retried)
        # files: read only cells [first, end) of the first segment (end None: to the file's end);
        # set before the reader starts (pipeline.sources.chunked reads a long file in such windows)
        self.window: tuple[int, int | None] | None = None
        self.window_done = False         # the read stopped at the window's end
        self._audio_grid: float | None = None   # a window's reader: the audio start its samples align to
        self.last_error: str | None = None   # live: why the last open failed (while connecting, reconnecting)
        # fail early: a bad input raises here, in the caller's thread; a live one that cannot be reached
        # yet is retried by the reader thread, as one that dropped would be (self._container is None)
        self._container = self._open_at_start()
        if auto_live and self._container is not None and self._container.format.name == "hls" \
                and self._container.duration:
            self.is_live = False           # a VOD playlist (it has a total duration): read it once, like a file
        if not self.is_live and self._container.duration:
            self.duration_s = self._container.duration / 1e6
        self._origin, origin_from = None, None
        if not self.is_live:
            self._origin, origin_from = options.media_origin, "user" if options.media_origin else None
            if self._origin is None:
                self._origin = creation_time(self._container)
                origin_from = "creation_time" if self._origin is not None else None
        self.facts = stream_facts(self._container) if self._container is not None else {}
        self.facts.update(media_origin=self._origin, media_origin_from=origin_from if not self.is_live else "live")

    @property
    def packets_skippable(self) -> int:
        """Video packets decoded with skip_frame=NONREF (see :mod:`pipeline.sources.skipdecode`)."""
        return self._skip.packets_skippable

    # -- open --------------------------------------------------------------------------------
    def _open(self):
        return self._opener.open(self.is_live, self._blocking)

    def _open_at_start(self):
        """``_open()``; for a live input with reconnects on, a failure that may pass (no answer, refused,
        reset, a server error) returns None instead and :meth:`_produce` retries with the reconnect
        backoff, ``state`` "connecting", until ``options.start_timeout_s``. A failure that will not pass
        by waiting (a login refused, a protocol FFmpeg lacks, nothing to play) still raises."""
        try:
            return self._open()
        except SourceError as e:
            if not (self.is_live and self.options.reconnect) or self.options.start_timeout_s == 0 \
                    or not self._opener.retry_at_start:
                raise
            self.state, self.last_error, self._start_error = "connecting", e.reason, e
            return None

    def _release(self) -> None:
        c, self._container = self._container, None
        if c is not None:
            try:
                c.close()
            except Exception:  # noqa: BLE001  (closing a broken stream must not mask the real error)
                pass
        self._opener.stop()

    def close(self, drain: bool = False) -> None:
        self._opener.close()      # a read blocked on the relay's pipe sees end of file at once
        super().close(drain)

    # -- read --------------------------------------------------------------------------------
    def _produce(self) -> None:
        opts = self.options
        failures, backoff = 0, opts.backoff_initial_s
        if self._container is None:     # live, not reachable at start: the backoff of a dropped source
            retry = self._reopen(self._start_error.reason, failures, backoff)
            if retry is None:
                return
            failures, backoff = retry
            self.facts.update(stream_facts(self._container))
            self._timeline.pending_gap, self._gap_extra = "", {}   # nothing was missed: the stream had not started
        while True:
            err = None
            got_any = False
            try:
                got_any = self._read_container(self._container)
            except SourceError as e:
                err = e
            except av.ExitError:   # PyAV's interrupt callback: the read deadline passed
                err = SourceError(self._url, f"no data for {opts.read_timeout_s:g} s")
                self._clock.read_timed_out(opts.read_timeout_s)
            except (av.FFmpegError, OSError) as e:
                err = SourceError(self._url, reason(e))
                if not self.is_live:     # a file: what went wrong with its data, not FFmpeg's errno text
                    log.debug("%s: read error: %s", self.source, reason(e))
                    err = SourceError(self._url, media_terms("container", e))
            finally:
                self._release()
            if self._stop.is_set():
                return
            self._end_segment()
            if not self.is_live:
                self._end_of_file(err, got_any)
                return
            if not opts.reconnect:
                if err is not None:
                    raise err
                if not got_any or self.cells_out == 0:
                    raise SourceError(self._url, "no decodable audio or video")
                return
            # live: reconnect with exponential backoff; a session that delivered media resets it
            if got_any:
                failures, backoff = 0, opts.backoff_initial_s
            why = err.reason if err is not None else "end of stream"
            self.state = "reconnecting"
            retry = self._reopen(why, failures, backoff)
            if retry is None:
                return
            failures, backoff = retry

    def _reopen(self, why: str, failures: int, backoff: float) -> tuple[int, float] | None:
        """Reopen the input with exponential backoff until it opens; (failures, backoff) then, None when
        closed meanwhile. Raises SourceError past ``max_reconnects`` consecutive failures or, for a
        source that never opened (``state`` "connecting"), past ``start_timeout_s``."""
        opts = self.options
        at_start = self.state == "connecting"
        t0 = time.monotonic()
        while self._container is None:
            failures += 1
            if opts.max_reconnects is not None and failures > opts.max_reconnects:
                raise SourceError(self._url, f"gave up after {failures - 1} reconnect attempts ({why})")
            if at_start and opts.start_timeout_s is not None and time.monotonic() - t0 >= opts.start_timeout_s:
                raise SourceError(self._url, f"not reachable at start: gave up after {failures - 1} attempts in "
                                             f"{time.monotonic() - t0:.0f} s ({why})")
            log.warning("%s: %s; %s in %.1f s (attempt %d)", self.source, why,
                        "trying again" if at_start else "reconnecting", backoff, failures)
            self._blocking("reconnect wait", backoff + 1.0)
            if not self._sleep(backoff):
                return None
            backoff = min(backoff * 2, opts.backoff_max_s)
            try:
                self._container = self._open()
            except SourceError as e:
                why = self.last_error = e.reason
        self.state = "reading"
        self._timeline.pending_gap = "reconnect"
        self._gap_extra = {"cause": why, "attempts": failures}
        return failures, backoff

    def _end_of_file(self, err: SourceError | None, got_any: bool) -> None:
        """A file read as far as it goes, as ffmpeg reads it: it fails only when nothing could be
        decoded; otherwise a read error, undecodable packets or an end short of the declared duration
        are reported as damage (``self.facts["damaged"]``, ``["warning"]``), and the media stays."""
        if not got_any or self.cells_out == 0:
            d = self.damage
            if err is not None:
                raise SourceError(self._url, f"nothing decodable: {err.reason}")
            if d.bad_packets:
                raise SourceError(self._url, f"no decodable audio or video ({d.warning()})")
            raise SourceError(self._url, "no decodable audio or video")
        declared = None
        start = self._declared_start
        if self.window_done:
            # a window of a longer read: it ends where the next one starts
            declared = self.facts["t0_s"] + self.window[1] * self.grid.hop_s
        elif self.duration_s and self._timeline.n_segments == 1:
            # one continuous clock: the media should reach the container's declared end (after a PTS
            # jump or reset, that declaration no longer maps onto the timeline)
            declared = (start if start is not None else (self.facts.get("t0_s") or 0.0)) + self.duration_s
        data_end = self._timeline.prev_data_end
        self.damage.finish(data_end_s=None if data_end is None else data_end + self._tol, declared_end_s=declared,
                           read_error=err.reason if err is not None else None)
        self.facts.update(self.damage.facts())

    def _bad_packet(self, packet, vs, exc: BaseException) -> None:
        """A packet that would not decode: skipped and counted, as ffmpeg does (its frames are missing)."""
        kind = "video" if packet.stream is vs else "audio"
        t = packet.pts if packet.pts is not None else packet.dts
        seg = self._timeline.seg
        offset = seg.aligner.offset if seg is not None else 0.0
        last_t = self._timeline.last_t
        t_s = None
        if t is not None and packet.time_base is not None:
            t_s = seconds(t, packet.time_base) + offset
        elif kind in last_t:       # no timestamp (often a cut-off last packet): after the stream's last frame
            t_s = last_t[kind] + offset
        dur = seconds(packet.duration, packet.time_base) if packet.duration and packet.time_base else 0.0
        if self.window and self.window[0] and (t_s is None or t_s + dur <= self._window_start_s()):
            # a window's lead (a seek can land inside an audio frame): the window before reads that media
            log.debug("%s: %s packet at %s s before the window skipped: %s", self.source, kind, t_s, reason(exc))
            return
        self.bad_packets += 1
        if not self.is_live:
            self.damage.bad_packet(kind, packet.stream.codec_context.name, t_s, dur)
        log.debug("%s: %s packet at %s s skipped: %s", self.source, kind, t_s, reason(exc))

    def _window_start_s(self) -> float:
        return (self._timeline.file_t0 or 0.0) + self.window[0] * self.grid.hop_s

    def _new_resampler(self):
        return av.AudioResampler(format="flt", layout="mono", rate=self.grid.sample_rate_hz)

    def _resample(self, frame) -> list:
        """The frame through the resampler; a frame whose format differs from the one the resampler was
        made for (rate, layout, sample format changed mid-stream) gets a new resampler, after what the
        old one still held has been placed."""
        try:
            return self._resampler.resample(frame)
        except ValueError:        # PyAV: "Frame does not match AudioResampler setup"
            self._feed_audio(self._drain_resampler())
            self._resampler = self._new_resampler()
            return self._resampler.resample(frame)

    def _drain_resampler(self) -> list:
        try:
            return self._resampler.resample(None)
        except (av.FFmpegError, ValueError):
            return []

    def _read_container(self, container) -> bool:
        """Demux and decode until end of stream; True if any frame was delivered."""
        vs = container.streams.video[0] if container.streams.video else None
        as_ = container.streams.audio[0] if container.streams.audio else None
        if vs is not None:
            vs.thread_type = "AUTO"
            if self.options.decoder_threads:
                vs.codec_context.thread_count = self.options.decoder_threads
            rate = vs.average_rate or vs.guessed_rate or vs.base_rate
            # one nominal frame interval; a rate above 120 fps is taken for a time base, not a rate
            self._tol = max(float(1 / rate), 1 / 120) if rate else self.grid.hop_s / self.grid.frames_per_cell
        self._has = (vs is not None, as_ is not None)
        if vs is not None and self.grid.detect_per_cell:
            self._detect_hw = self._detect_size(vs.codec_context.width, vs.codec_context.height)
        self._resampler = self._new_resampler() if as_ is not None else None
        file_t0 = None
        if not self.is_live:
            starts = [s.start_time * s.time_base for s in (vs, as_) if s is not None and s.start_time is not None]
            file_t0 = float(min(starts)) if starts else None
            self._declared_start = container.start_time / 1e6 if container.start_time is not None else file_t0
        timeline, skip, clock = self._timeline, self._skip, self._clock
        timeline.new_container(file_t0)
        skip.new_container(vs)
        read_timeout = self.options.read_timeout_s if self.is_live else None
        got_any = False
        self._audio_grid = None
        if self.window and self.window[0] and file_t0 is not None and vs is not None:
            if as_ is not None and as_.start_time is not None:
                self._audio_grid = float(as_.start_time * as_.time_base)   # where a one-pass read's audio starts
            # to the keyframe before the window, WINDOW_LEAD_S early: the audio decoder and resampler
            # settle on media whose cells are not made (GridAligner first_index)
            t = self._window_start_s() - WINDOW_LEAD_S
            container.seek(max(0, int(t / vs.time_base)), backward=True, stream=vs)
        packets = container.demux(*[s for s in (vs, as_) if s is not None])
        while not self._stop.is_set():
            self._blocking("read", read_timeout)
            try:
                packet = next(packets)
            except StopIteration:
                break
            except IndexError:
                # PyAV's demux fails in its end-of-file flush when the container gained a stream after
                # opening (MPEG-TS can: a damaged PMT announces a new PID). Every packet was read by then,
                # so the decoders are flushed here instead of losing the file.
                got_any |= self._flush_decoders(vs, as_)
                break
            finally:
                self._blocking("", None)
            if packet.size:
                clock.packet()
                if self.is_live and packet.pts is not None:
                    clock.observe(timeline.seg, seconds(packet.pts, packet.time_base))
            skip.packet(packet, timeline.seg, timeline.last_t.get("video"))
            try:
                frames = packet.decode()
            except av.FFmpegError as e:
                # any decoder error (damaged data comes back as EINVAL, EPERM, EIO or codec-private
                # codes) costs that packet's frames, not the stream
                self._bad_packet(packet, vs, e)
                continue
            got_any |= self._deliver(frames, packet.stream is vs)
            if timeline.seg is not None and not self._emit(self._ready(timeline.seg.aligner.pop_ready)):
                break
        if self._resampler is not None and timeline.seg is not None:
            self._feed_audio(self._drain_resampler())
        return got_any

    def _deliver(self, frames, video: bool) -> bool:
        """Hand decoded frames on; True if there was any."""
        got = False
        for frame in frames:
            got = True
            if video:
                self._on_video(frame)
            else:
                self._on_audio(frame)
        return got

    def _flush_decoders(self, vs, as_) -> bool:
        got = False
        for s in (vs, as_):
            if s is None:
                continue
            try:
                got |= self._deliver(s.codec_context.decode(None), s is vs)
            except av.FFmpegError as e:
                log.debug("%s: flushing the %s decoder: %s", self.source, s.type, reason(e))
        return got

    def _frame_time(self, kind: str, frame, duration_s: float) -> float:
        t = seconds(frame.pts, frame.time_base) if frame.pts is not None else None
        return self._timeline.frame_time(kind, t, duration_s)

    def _on_video(self, frame) -> None:
        self.frames_decoded += 1
        t = self._frame_time("video", frame, self._tol)
        if self._route("video", t):
            self._timeline.seg.aligner.push_video(t, frame)

    def _on_audio(self, frame) -> None:
        if self._audio_grid is not None:
            frame = self._on_sample_grid(frame)
            if frame is None:
                return
        t = self._frame_time("audio", frame, frame.samples / (frame.sample_rate or 1))
        if self._route("audio", t):
            if frame.pts is None:       # the resampler places output by input pts
                frame.pts, frame.time_base = round(t * frame.sample_rate), Fraction(1, frame.sample_rate)
            try:
                self._feed_audio(self._resample(frame))
            except av.FFmpegError as e:     # a frame the resampler cannot take: its samples are missing
                self.bad_packets += 1
                if not self.is_live:
                    self.damage.bad_packet("audio", self.facts.get("audio_codec") or "?", t,
                                           frame.samples / (frame.sample_rate or 1))
                log.debug("%s: audio frame at %.2f s not resampled: %s", self.source, t, reason(e))

    def _on_sample_grid(self, frame):
        """A window's first audio frame, less the samples before the first one a read from the file's
        start would resample from (16 kHz from 48 kHz: every third input sample starts an output one).
        Without this the window's audio would sit up to a sample apart from a one-pass read's."""
        rate = frame.sample_rate or 0
        if not rate or frame.pts is None or frame.time_base is None:
            self._audio_grid = None
            return frame
        q = rate // math.gcd(rate, self.grid.sample_rate_hz)
        skip = -round((seconds(frame.pts, frame.time_base) - self._audio_grid) * rate) % q
        if skip >= frame.samples:
            return None                 # the next frame is tried
        self._audio_grid = None
        if skip == 0:
            return frame
        arr = frame.to_ndarray()
        arr = arr[:, skip:] if frame.format.is_planar else arr[:, skip * len(frame.layout.channels):]
        out = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=frame.format.name, layout=frame.layout.name)
        out.sample_rate, out.time_base = rate, frame.time_base
        out.pts = frame.pts + round(skip / rate / frame.time_base)
        return out

    def _feed_audio(self, frames) -> None:
        for o in frames:
            # the plane's float32 samples without to_ndarray's per-frame vstack; push_audio copies them
            samples = np.frombuffer(o.planes[0], np.float32, count=o.samples)
            self._timeline.seg.aligner.push_audio(seconds(o.pts, o.time_base), samples)

    def _convert(self, frame) -> np.ndarray:
        # FFmpeg's swscale scales and converts, only the frames a slot picked. One reformatter for
        # the whole stream keeps its scaler context: frame.to_ndarray(width=...) builds a new one
        # per frame, ~9x slower (5.8 vs 0.6 ms per 720p frame here). AREA: made for downscaling.
        return self._reformatter.reformat(frame, width=self.grid.frame_width, height=self.grid.frame_height,
                                          format="rgb24", interpolation="AREA").to_ndarray()

    def _detect_size(self, width: int | None, height: int | None) -> tuple[int, int]:
        if width and height:
            return self.grid.detect_size(width, height)
        return self.grid.detect_size(16, 9)    # size unknown before the first frame: assume 16:9

    def _convert_detect(self, frame) -> np.ndarray:
        # the detection view: aspect kept, never upscaled (see GridConfig.detect_size); AREA when
        # it shrinks, BILINEAR when only the pixel format changes
        h, w = self._detect_hw
        shrink = w < frame.width or h < frame.height
        return self._detect_reformatter.reformat(frame, width=w, height=h, format="rgb24",
                                                 interpolation="AREA" if shrink else "BILINEAR").to_ndarray()

    # -- segments ----------------------------------------------------------------------------
    def _route(self, kind: str, t: float) -> bool:
        """Place a frame at ``t`` (source clock) in a segment; False drops it (see
        :meth:`pipeline.sources.timeline.Timeline.route`)."""
        timeline = self._timeline
        skipped_before = self._skip.passed(t) if kind == "video" else None
        action = timeline.route(kind, t, skipped_before)
        if action == DROP:
            return False
        if action == START:
            self._start_segment(timeline.first_t0(t))
        elif action == RESTART:
            self._skip.clock_broke()
            self._end_segment()
            self._start_segment(t)
            if self._resampler is not None:   # its buffered samples belong to the old clock
                self._resampler = self._new_resampler()
        timeline.joined(kind, t)
        return True

    def _start_segment(self, t0: float) -> None:
        timeline = self._timeline
        offset = 0.0
        if timeline.end_s is not None and not self.is_live:
            offset = timeline.file_offset(t0)
            self._put_gap(Gap(stream_id=self.stream_id, t_start=timeline.end_s, t_end=t0 + offset,
                              reason=timeline.pending_gap or "pts_jump", segment=timeline.n_segments,
                              source=self.source))
        elif timeline.end_s is not None:
            # live: placed on the timeline (and the gap emitted) once the new clock is measured, in _ready
            self._live_gap = timeline.pending_gap or "pts_jump"
        has_v, has_a = self._has
        if timeline.n_segments == 0:
            self.facts["t0_s"] = t0
        wall_t0 = None
        if self._origin is not None and not self.is_live:
            # archive with a known origin: capture time = origin + (timeline time - time of the first cell)
            wall_t0 = self._origin + _dt.timedelta(seconds=t0 + offset - self.facts["t0_s"])
        first = self.window[0] if self.window and timeline.n_segments == 0 else 0
        aligner = GridAligner(self.grid, stream_id=self.stream_id, t0_s=t0, has_video=has_v, has_audio=has_a,
                              frame_tolerance_s=self._tol if has_v else 1.0, convert=self._convert,
                              segment=timeline.n_segments, time_offset_s=offset, source=self.source,
                              is_live=self.is_live, max_lag_s=self.options.max_lag_s, wall_t0=wall_t0,
                              convert_detect=self._convert_detect if self._detect_hw else None,
                              detect_hw=self._detect_hw, first_index=first)
        timeline.begin(aligner, t0)

    def _end_segment(self) -> None:
        seg = self._timeline.seg
        if seg is None:
            return
        self._emit(self._ready(seg.aligner.flush))
        self._clock.segment_ended(seg, self._timeline.ended())

    def _ready(self, pop) -> list:
        """``pop()``'s cells. Just before a live segment's first cell leaves, its wall clock and
        timeline position are fixed from the arrival clock, and the gap since the previous segment is
        emitted. Later cells step by ``hop``, plus or minus what the arrival clock has moved by since,
        at most ``SLEW`` of a hop per pop, so they stay in order (:mod:`pipeline.sources.liveclock`)."""
        seg = self._timeline.seg
        al = seg.aligner if seg is not None else None
        if al is None or not self.is_live or (pop == al.pop_ready and al.ready_count() == 0):
            return pop()
        if al.emitted_end_s > al.t0 + al.offset:
            self._clock.slew(seg)
            return pop()
        cap0, mono = self._clock.first_cell(seg)
        al.wall_t0, seg.cap0 = wall(cap0, mono), cap0
        if self._live_gap:
            prev_end = self._clock.prev_capture_end
            gap_start = self._timeline.end_s
            self._timeline.place_live(al, max(0.0, cap0 - prev_end))   # wall time nobody delivered media for
            wall_start = wall(prev_end, mono)
            self._put_gap(Gap(stream_id=self.stream_id, t_start=gap_start, t_end=al.t0 + al.offset,
                              reason=self._live_gap, segment=al.segment, source=self.source,
                              wall_start=wall_start, wall_end=max(al.wall_t0, wall_start), extra=self._gap_extra))
            self._live_gap, self._gap_extra = "", {}
        return pop()

    def _pace(self, cell) -> bool:
        """Realtime replay of a file: hold each cell until its end is due on the wall clock."""
        if self._pace0 is None:
            self._pace0 = (time.monotonic(), cell.t_start)
        due = self._pace0[0] + (cell.t_end - self._pace0[1])
        return self._sleep(max(0.0, due - time.monotonic()))

    def _put_gap(self, gap: Gap) -> None:
        log.info("%s: %s, gap of %.2f s", self.source, gap.reason, gap.t_end - gap.t_start)
        self._put(gap)

    def _emit(self, cells) -> bool:
        for c in cells:
            if self.window and self.window[1] is not None and c.segment == 0 and c.index >= self.window[1]:
                self.window_done = True          # the next window's reader makes this cell
                return False
            if self.options.realtime and not self.is_live and not self._pace(c):
                return False
            if not self._put(c):
                return False
            self.cells_out += 1
        return True
