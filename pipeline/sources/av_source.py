"""Files and network streams through PyAV (FFmpeg): one demux pass, video + audio onto the grid.

What a user can rely on:

* The first video and first audio stream are read together in one demux pass, video with frame
  threading. Only frames a grid slot picks are scaled and converted (FFmpeg swscale, straight to
  RGB24 at the grid size; the aspect ratio is not kept). A grid with a detection view
  (``GridConfig.detect_px``) also scales its slots' frames once more, aspect kept, never upscaled,
  with a scaler context of its own. Audio goes through FFmpeg's resampler to
  16 kHz mono float32 and is placed by its PTS.
* Files: cell 0 starts at the earliest start time of the two streams (a clip starting at 5.0 s
  has cell 0 = [5.0, 6.0)). A slot takes the frame with the nearest PTS if it is at most one
  nominal frame interval (1 / average frame rate) away, else its mask is False.
* Timestamps that go back by more than 1 s or forward by more than ``jump_s`` in one stream start
  a new segment, announced by a ``Gap`` (``pts_reset`` / ``pts_jump``). Files keep their own times
  (a backwards reset continues after the previous cell instead of repeating times).
* Live: deadlines on open and every read (FFmpeg socket options, PyAV's interrupt callback, the
  watchdog in :mod:`pipeline.sources.base`), reconnects with backoff (``Gap`` reason
  ``reconnect``), and one timeline that keeps pace with the wall clock across outages and resets.
  ``wall_start`` is the estimated capture time: the smallest (arrival - PTS) seen in the
  segment's last ``clock_window_s`` (30 s) of packets, so it errs late by network and sender
  latency, never early for a real camera. Cells follow that clock as it moves (a backlog at
  start-up drained, a camera clock that runs fast or slow) by at most 0.2 hop per cell:
  consecutive cells step by 0.8-1.2 hop, never backwards.
* ``srt://``: PyAV's FFmpeg has no SRT, so the ffmpeg CLI relays it as MPEG-TS on a pipe
  (:mod:`pipeline.sources.relay`); everything above holds for it too.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from collections import deque
from fractions import Fraction
from urllib.parse import urlsplit

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from pipeline.errors import SourceError
from pipeline.grid import Gap, GridAligner, GridConfig
from pipeline.sources.base import Source, SourceOptions, log
from pipeline.sources.damage import DamageLog, media_terms
from pipeline.sources.relay import RELAYED_SCHEMES, FfmpegRelay, can_relay


# decoders whose skip_frame=NONREF drops exactly the frames no other frame references
_SKIPPABLE_CODECS = frozenset({"h264", "hevc"})


def _seconds(pts: int, time_base: Fraction) -> float:
    """``float(pts * time_base)`` without Fraction arithmetic (int / int is correctly rounded too)."""
    return pts * time_base.numerator / time_base.denominator


def _ffmpeg_options(url: str, opts: SourceOptions) -> tuple[str | None, dict[str, str]]:
    """(container format, FFmpeg options) for ``url``; socket timeouts are in microseconds."""
    if url.startswith("/dev/video"):
        return "v4l2", {}
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if not scheme or scheme == "file":
        return None, {}
    us = str(int(opts.read_timeout_s * 1e6))
    o = {"rw_timeout": us}
    if scheme in ("rtsp", "rtsps"):
        o.update(timeout=us, rtsp_transport=opts.rtsp_transport)
    elif scheme in ("udp", "rtp", "srt", "http", "https"):
        o["timeout"] = us
    if scheme == "udp":
        o.update(overrun_nonfatal="1", fifo_size="50000")
    return None, o


def _creation_time(container) -> _dt.datetime | None:
    """The container's ``creation_time`` tag (MP4/MOV, Matroska, ...) as UTC, or None (absent, unparsable,
    or the 1904/1970 epoch that muxers write when they know no time)."""
    tags = [container.metadata] + [s.metadata for s in container.streams]
    for meta in tags:
        value = (meta or {}).get("creation_time")
        if not value:
            continue
        try:
            t = _dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            continue
        t = t if t.utcoffset() is not None else t.replace(tzinfo=_dt.timezone.utc)
        if t.year > 1971:
            return t.astimezone(_dt.timezone.utc)
    return None


def _stream_facts(container) -> dict:
    """Codec names, frame size and rate, audio rate and channels of the first video/audio stream."""
    facts: dict = {}
    if container.streams.video:
        v = container.streams.video[0]
        rate = v.average_rate or v.guessed_rate or v.base_rate
        facts.update(video_codec=v.codec_context.name, width=v.codec_context.width or None,
                     height=v.codec_context.height or None, fps=float(rate) if rate else None)
    if container.streams.audio:
        a = container.streams.audio[0]
        facts.update(audio_codec=a.codec_context.name, sample_rate_hz=a.codec_context.sample_rate or None,
                     channels=a.codec_context.channels or None)
    return facts


def _reason(e: BaseException) -> str:
    # FFmpeg errors repeat the filename; the reason alone reads better and the source is named anyway
    if isinstance(e, av.FFmpegError) and e.strerror:
        return e.strerror
    return f"{type(e).__name__}: {e}"


def _file_open_reason(e: BaseException) -> str:
    """Why a file would not open, in media terms (FFmpeg answers damaged headers with errno texts)."""
    if isinstance(e, av.InvalidDataError):
        return "no media container FFmpeg can read (not a media file, or its header is damaged)"
    if isinstance(e, av.EOFError):
        return "the file ends inside its header (truncated)"
    if isinstance(e, FileNotFoundError) or getattr(e, "errno", None) == 2:
        return "no such file"
    if isinstance(e, PermissionError) and not isinstance(e, av.FFmpegError):
        return "permission denied"
    if isinstance(e, av.FFmpegError):
        log.debug("cannot open: %s", _reason(e))
        return "its header is damaged or of a kind FFmpeg cannot read"
    return _reason(e)


def _login_hint(url: str, e: BaseException) -> str:
    """What to check when opening ``url`` failed with ``e``: the login for a 401/403, the
    percent-encoding when an "@" sits where a raw one in a password would push it. "" otherwise."""
    try:
        parts = urlsplit(url)
        login, rest = parts.username is not None, parts.path + parts.query + parts.fragment
    except ValueError:
        login, rest = False, url
    if isinstance(e, (av.HTTPUnauthorizedError, av.HTTPForbiddenError)):
        if login:
            return "; check the user name and password in the URL (percent-encode @ : / % # ? in them, e.g. @ as %40)"
        return ("; the URL carries no login: put the user name and password before the host, the password as "
                "${NAME} to take it from an environment variable")
    if "://" in url and ("@" in rest or url.count("@") > 1):
        return "; if the user name or password holds @ : / % # ?, percent-encode them (@ as %40)"
    return ""


class _ArrivalClock:
    """The smallest ``arrival - pts`` over the packets of the last ``window_s`` seconds (kept in
    1 s buckets): capture happens no later than arrival, so the least-delayed recent packet maps
    media time to capture time best, and a window lets it follow a camera clock that drifts."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self.value = float("inf")
        self._buckets: deque[list[float]] = deque()     # [first arrival, smallest offset]

    def reset(self) -> None:
        self._buckets.clear()
        self.value = float("inf")

    def observe(self, now: float, offset: float) -> None:
        b = self._buckets
        if b and now - b[-1][0] < 1.0:
            b[-1][1] = min(b[-1][1], offset)
        else:
            b.append([now, offset])
        expired = False
        while len(b) > 1 and b[0][0] < now - self.window_s:
            b.popleft()
            expired = True
        self.value = min(v for _, v in b) if expired else min(self.value, offset)


class _Segment:
    """A stretch of media with continuous timestamps: one aligner plus each stream's last time."""

    def __init__(self, aligner: GridAligner, t0: float):
        self.aligner, self.lo, self.hi = aligner, t0, t0
        self.joined: set[str] = set()       # streams whose clock this segment follows
        self.cap0: float | None = None      # live: monotonic capture time of t0 behind aligner.wall_t0


class AVSource(Source):
    """A file, URL or device read with PyAV. See :func:`pipeline.sources.open_source`."""

    def __init__(self, url: str, grid: GridConfig, *, stream_id: str, is_live: bool, options: SourceOptions,
                 auto_live: bool = False):
        super().__init__(url, grid, stream_id=stream_id, is_live=is_live, options=options)
        self._container = None
        self._seg: _Segment | None = None
        self._n_segments = 0
        self._timeline_end = None          # end (timeline s) of the last cell of the previous segment
        self._pending_gap = ""             # reason for the gap the next segment starts with
        self.bad_packets = 0
        self.damage = DamageLog(grid.hop_s)   # files: what would not decode, a read cut short, a truncated end
        self.frames_decoded = 0
        self.packets_skippable = 0         # video packets decoded with skip_frame=NONREF (see _unsampled)
        self.cells_out = 0
        self._tol = grid.hop_s / grid.frames_per_cell
        self._has = (False, False)
        self._reformatter = VideoReformatter()
        self._detect_reformatter = VideoReformatter()   # the detection view's own scaler context
        self._detect_hw: tuple[int, int] | None = None
        self._last_packet_mono = time.monotonic()
        self._arrivals = _ArrivalClock(options.clock_window_s)   # live: this segment's capture clock
        self._live_gap = ""             # live: reason of the gap to emit before the next segment's first cell
        self._gap_extra: dict = {}      # and what caused it (a reconnect's last error, attempts)
        self._pace0: tuple[float, float] | None = None   # realtime files: (monotonic, media s) of the first cell
        self._relay: FfmpegRelay | None = None   # set when PyAV's FFmpeg lacks the protocol (srt://)
        self._retry_at_start = True     # False once an open failed in a way waiting does not mend
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
                self._origin = _creation_time(self._container)
                origin_from = "creation_time" if self._origin is not None else None
        self.facts = _stream_facts(self._container) if self._container is not None else {}
        self.facts.update(media_origin=self._origin, media_origin_from=origin_from if not self.is_live else "live")

    # -- open --------------------------------------------------------------------------------
    def _open(self):
        fmt, opts = _ffmpeg_options(self._url, self.options)
        timeout = (self.options.open_timeout_s, self.options.read_timeout_s) if self.is_live else None
        if not self.is_live and os.path.isfile(self._url) and os.path.getsize(self._url) == 0:
            raise SourceError(self._url, "empty file (0 bytes)")
        self._blocking("open", self.options.open_timeout_s if self.is_live else None)
        started = time.monotonic()
        try:
            if self._relay is None:
                try:
                    c = av.open(self._url, format=fmt, options=opts, timeout=timeout)
                except av.ProtocolNotFoundError:
                    if not can_relay(self._url):
                        raise
                    self._relay = FfmpegRelay(self._url)
            if self._relay is not None:
                # probed, not format="mpegts": a forced demuxer shrugs off the deadline while reading its
                # header and then waits a second deadline in find_stream_info
                c = av.open(self._relay.start(), timeout=timeout)
        except (av.FFmpegError, OSError, ValueError) as e:
            reason = _reason(e) if self.is_live or "://" in self._url else _file_open_reason(e)
            scheme = urlsplit(self._url).scheme
            if isinstance(e, av.ProtocolNotFoundError):
                reason = f"the FFmpeg inside PyAV {av.__version__} has no '{scheme}' protocol"
                if scheme.lower() in RELAYED_SCHEMES:
                    reason += ", and no ffmpeg CLI on PATH has it to relay it (Debian: apt-get install ffmpeg)"
            reason += _login_hint(self._url, e)
            if self.is_live and time.monotonic() - started >= 0.9 * self.options.open_timeout_s:
                reason = f"no answer within {self.options.open_timeout_s:g} s ({reason})"
            if self._relay is not None:
                reason = (f"via the ffmpeg CLI relay (the FFmpeg inside PyAV has no '{scheme}' protocol): "
                          f"{self._relay.explain(reason)}")
                self._relay.stop()
            # waiting does not mend a refused login or a protocol FFmpeg lacks
            self._retry_at_start = not isinstance(e, (av.ProtocolNotFoundError, av.HTTPUnauthorizedError,
                                                      av.HTTPForbiddenError, av.HTTPNotFoundError))
            raise SourceError(self._url, f"cannot open: {reason}") from None
        finally:
            self._blocking("", None)
        if not c.streams.video and not c.streams.audio:
            c.close()
            if self._relay is not None:
                self._relay.stop()
            raise SourceError(self._url, "no audio or video stream")
        return c

    def _open_at_start(self):
        """``_open()``; for a live input with reconnects on, a failure that may pass (no answer, refused,
        reset, a server error) returns None instead and :meth:`_produce` retries with the reconnect
        backoff, ``state`` "connecting", until ``options.start_timeout_s``. A failure that will not pass
        by waiting (a login refused, a protocol FFmpeg lacks, nothing to play) still raises."""
        try:
            return self._open()
        except SourceError as e:
            if not (self.is_live and self.options.reconnect) or self.options.start_timeout_s == 0 \
                    or not self._retry_at_start:
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
        if self._relay is not None:
            self._relay.stop()

    def close(self, drain: bool = False) -> None:
        if self._relay is not None:
            self._relay.close()      # a read blocked on the relay's pipe sees end of file at once
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
            self.facts.update(_stream_facts(self._container))
            self._pending_gap, self._gap_extra = "", {}   # nothing was missed: the stream had not started
        while True:
            err = None
            got_any = False
            try:
                got_any = self._read_container(self._container)
            except SourceError as e:
                err = e
            except av.ExitError:   # PyAV's interrupt callback: the read deadline passed
                err = SourceError(self._url, f"no data for {opts.read_timeout_s:g} s")
                # demuxers flush partial packets when a read fails, so packet arrival times overstate
                # how long data kept coming: nothing came during the deadline
                self._last_packet_mono = min(self._last_packet_mono, time.monotonic() - opts.read_timeout_s)
            except (av.FFmpegError, OSError) as e:
                err = SourceError(self._url, _reason(e))
                if not self.is_live:     # a file: what went wrong with its data, not FFmpeg's errno text
                    log.debug("%s: read error: %s", self.source, _reason(e))
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
        self._pending_gap = "reconnect"
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
        start = getattr(self, "_declared_start", None)
        if self.duration_s and self._n_segments == 1:
            # one continuous clock: the media should reach the container's declared end (after a PTS
            # jump or reset, that declaration no longer maps onto the timeline)
            declared = (start if start is not None else (self.facts.get("t0_s") or 0.0)) + self.duration_s
        data_end = getattr(self, "_prev_data_end", None)
        self.damage.finish(data_end_s=None if data_end is None else data_end + self._tol, declared_end_s=declared,
                           read_error=err.reason if err is not None else None)
        self.facts.update(self.damage.facts())

    def _bad_packet(self, packet, vs, exc: BaseException) -> None:
        """A packet that would not decode: skipped and counted, as ffmpeg does (its frames are missing)."""
        self.bad_packets += 1
        kind = "video" if packet.stream is vs else "audio"
        t = packet.pts if packet.pts is not None else packet.dts
        offset = self._seg.aligner.offset if self._seg is not None else 0.0
        t_s = None
        if t is not None and packet.time_base is not None:
            t_s = _seconds(t, packet.time_base) + offset
        elif kind in self._last_t:       # no timestamp (often a cut-off last packet): after the stream's last frame
            t_s = self._last_t[kind] + offset
        dur = _seconds(packet.duration, packet.time_base) if packet.duration and packet.time_base else 0.0
        if not self.is_live:
            self.damage.bad_packet(kind, packet.stream.codec_context.name, t_s, dur)
        log.debug("%s: %s packet at %s s skipped: %s", self.source, kind, t_s, _reason(exc))

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
            rate = vs.average_rate or vs.guessed_rate or vs.base_rate
            # one nominal frame interval; a rate above 120 fps is taken for a time base, not a rate
            self._tol = max(float(1 / rate), 1 / 120) if rate else self.grid.hop_s / self.grid.frames_per_cell
        self._has = (vs is not None, as_ is not None)
        if vs is not None and self.grid.detect_per_cell:
            self._detect_hw = self._detect_size(vs.codec_context.width, vs.codec_context.height)
        self._resampler = None
        if as_ is not None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.grid.sample_rate_hz)
        self._file_t0 = None
        self._last_t: dict[str, float] = {}   # each stream's previous frame time, source clock
        self._skipped: list[float] = []       # times of video packets sent with NONREF, not yet passed
        if not self.is_live:
            starts = [s.start_time * s.time_base for s in (vs, as_) if s is not None and s.start_time is not None]
            self._file_t0 = float(min(starts)) if starts else None
            self._declared_start = container.start_time / 1e6 if container.start_time is not None else self._file_t0
        read_timeout = self.options.read_timeout_s if self.is_live else None
        got_any = False
        # frames nothing references and no slot can pick are not decoded (FFmpeg's skip_frame, set
        # per packet; frame threads take it with the packet): about 40% of an x264 stream's frames
        skipping = (vs is not None and self.options.skip_unsampled and vs.codec_context.name in _SKIPPABLE_CODECS)
        skip_now = False
        packets = container.demux(*[s for s in (vs, as_) if s is not None])
        while not self._stop.is_set():
            self._blocking("read", read_timeout)
            try:
                packet = next(packets)
            except StopIteration:
                break
            finally:
                self._blocking("", None)
            if packet.size:
                self._last_packet_mono = time.monotonic()   # arrival, not decode: decoders hold frames back
                if self.is_live and packet.pts is not None:
                    self._observe_arrival(_seconds(packet.pts, packet.time_base))
            if skipping and packet.stream is vs and packet.pts is None and packet.size:
                # a frame without a timestamp (MPEG-TS may leave some out, field pictures): its time is
                # interpolated from the frames before it, so from here on every frame is decoded
                skipping, skip_now = False, False
                vs.codec_context.skip_frame = "DEFAULT"
            if skipping and packet.stream is vs and packet.pts is not None:
                t_skip = self._unsampled(packet)
                if (t_skip is not None) != skip_now:
                    skip_now = t_skip is not None
                    vs.codec_context.skip_frame = "NONREF" if skip_now else "DEFAULT"
                if skip_now:
                    self.packets_skippable += 1
                    self._seg.aligner.note_video(t_skip)
                    self._skipped.append(t_skip)
            try:
                frames = packet.decode()
            except av.FFmpegError as e:
                # any decoder error (damaged data comes back as EINVAL, EPERM, EIO or codec-private
                # codes) costs that packet's frames, not the stream
                self._bad_packet(packet, vs, e)
                continue
            for frame in frames:
                got_any = True
                if packet.stream is vs:
                    self._on_video(frame)
                else:
                    self._on_audio(frame)
            if self._seg is not None and not self._emit(self._ready(self._seg.aligner.pop_ready)):
                break
        if self._resampler is not None and self._seg is not None:
            self._feed_audio(self._drain_resampler())
        return got_any

    def _unsampled(self, packet) -> float | None:
        """The time of a video packet no grid slot can pick, or None when its frame may be needed.

        Slots take the nearest frame within one frame interval (``tol``), so a frame farther than
        that from every slot time is never picked; if nothing references it either, decoding it
        is wasted. Only packets continuing the current segment's clock qualify (a jump or reset is
        left to the decoded frames to detect)."""
        seg = self._seg
        last = self._last_t.get("video")
        if seg is None or last is None or "video" not in seg.joined:
            return None
        t = _seconds(packet.pts, packet.time_base)
        if not last - 1.0 <= t <= last + self.options.jump_s:
            return None
        al = seg.aligner
        return t if al.slot_distance(t) > al.tol + 1e-3 else None

    def _frame_time(self, kind: str, frame, duration_s: float) -> float:
        if frame.pts is not None:
            return _seconds(frame.pts, frame.time_base)
        # raw elementary streams (.h264, some ADTS) carry no timestamps: continue from the last frame
        last = self._last_t.get(kind)
        return (self._file_t0 or 0.0) if last is None else last + duration_s

    def _on_video(self, frame) -> None:
        self.frames_decoded += 1
        t = self._frame_time("video", frame, self._tol)
        if self._route("video", t):
            self._seg.aligner.push_video(t, frame)

    def _on_audio(self, frame) -> None:
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
                log.debug("%s: audio frame at %.2f s not resampled: %s", self.source, t, _reason(e))

    def _feed_audio(self, frames) -> None:
        for o in frames:
            # the plane's float32 samples without to_ndarray's per-frame vstack; push_audio copies them
            samples = np.frombuffer(o.planes[0], np.float32, count=o.samples)
            self._seg.aligner.push_audio(_seconds(o.pts, o.time_base), samples)

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
        """Place a frame at ``t`` (source clock) in a segment; False drops it.

        Each stream's clock is checked against its own previous frame: moving back by more than
        1 s or ahead by more than ``jump_s`` starts a new segment. After one stream jumped, the
        other's frames that still follow the old clock (muxers interleave loosely) are dropped
        until it jumps too.
        """
        last = self._last_t.get(kind)
        if kind == "video" and self._skipped:
            # a full decode would have shown the skipped frames (see _unsampled) before this one:
            # the step to check is from the latest of them, or sparse frames would look like a jump
            before = [x for x in self._skipped if x < t]
            if before and last is not None:
                last = max(last, max(before))
            self._skipped = [x for x in self._skipped if x > t]
        self._last_t[kind] = t
        continuous = last is not None and last - 1.0 <= t <= last + self.options.jump_s
        seg = self._seg
        if seg is None:
            t0 = self._file_t0 if self._file_t0 is not None and self._n_segments == 0 else t
            self._start_segment(min(t0, t))
        elif kind in seg.joined:
            if not continuous:
                self._skipped = []
                self._pending_gap = "pts_reset" if t < last else "pts_jump"
                self._end_segment()
                self._start_segment(t)
                if self._resampler is not None:   # its buffered samples belong to the old clock
                    self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.grid.sample_rate_hz)
        elif continuous or not (seg.lo - 1.0 <= t <= seg.hi + self.options.jump_s):
            return False
        seg = self._seg
        seg.joined.add(kind)
        seg.hi = max(seg.hi, t)
        return True

    def _start_segment(self, t0: float) -> None:
        offset = 0.0
        if self._timeline_end is not None and not self.is_live:
            # files keep their own times unless they go backwards; the gap covers any jump
            offset = max(self._prev_offset, self._timeline_end - t0)
            self._put_gap(Gap(stream_id=self.stream_id, t_start=self._timeline_end, t_end=t0 + offset,
                              reason=self._pending_gap or "pts_jump", segment=self._n_segments, source=self.source))
        elif self._timeline_end is not None:
            # live: placed on the timeline (and the gap emitted) once the new clock is measured, in _ready
            self._live_gap = self._pending_gap or "pts_jump"
        has_v, has_a = self._has
        if self._n_segments == 0:
            self.facts["t0_s"] = t0
        wall_t0 = None
        if self._origin is not None and not self.is_live:
            # archive with a known origin: capture time = origin + (timeline time - time of the first cell)
            wall_t0 = self._origin + _dt.timedelta(seconds=t0 + offset - self.facts["t0_s"])
        aligner = GridAligner(self.grid, stream_id=self.stream_id, t0_s=t0, has_video=has_v, has_audio=has_a,
                              frame_tolerance_s=self._tol if has_v else 1.0, convert=self._convert,
                              segment=self._n_segments, time_offset_s=offset, source=self.source,
                              is_live=self.is_live, max_lag_s=self.options.max_lag_s, wall_t0=wall_t0,
                              convert_detect=self._convert_detect if self._detect_hw else None,
                              detect_hw=self._detect_hw)
        self._seg = _Segment(aligner, t0)
        self._n_segments += 1
        self._pending_gap = ""

    def _end_segment(self) -> None:
        seg = self._seg
        if seg is None:
            return
        al = seg.aligner
        self._emit(self._ready(al.flush))
        self._seg = None
        if al.emitted_end_s > al.t0 + al.offset:     # a segment that produced nothing changes nothing
            self._timeline_end, self._prev_offset = al.emitted_end_s, al.offset
            self._prev_data_end = seg.hi + al.offset
            # capture time of the segment's last media: its arrival clock, or at worst its arrival
            self._prev_capture_end = min(self._last_packet_mono, self._arrivals.value + seg.hi)
        self._arrivals.reset()

    def _observe_arrival(self, t: float) -> None:
        """Track the live clock (:class:`_ArrivalClock`); packets that the open() probe buffered
        arrive "late" and lose to fresh ones."""
        seg = self._seg
        if seg is None or seg.lo - 1.0 <= t <= seg.hi + 1.0:   # packets of an old clock say nothing
            now = time.monotonic()
            self._arrivals.observe(now, now - t)

    def _ready(self, pop) -> list:
        """``pop()``'s cells. Just before a live segment's first cell leaves, its wall clock and
        timeline position are fixed from the arrival clock, and the gap since the previous segment is
        emitted. Later cells step by ``hop``, plus or minus what the arrival clock has moved by since,
        at most ``SLEW`` of a hop per pop, so they stay in order."""
        seg = self._seg
        al = seg.aligner if seg is not None else None
        if al is None or not self.is_live or (pop == al.pop_ready and al.ready_count() == 0):
            return pop()
        if al.emitted_end_s > al.t0 + al.offset:
            self._slew(seg)
            return pop()
        mono = time.monotonic()
        clock = self._arrivals.value
        cap0 = clock + al.t0 if np.isfinite(clock) else mono - max(0.0, seg.hi - al.t0)
        al.wall_t0, seg.cap0 = self._wall(cap0, mono), cap0
        if self._live_gap:
            missed = max(0.0, cap0 - self._prev_capture_end)     # wall time nobody delivered media for
            al.offset = max(self._timeline_end, self._prev_data_end + missed) - al.t0
            wall_start = self._wall(self._prev_capture_end, mono)
            self._put_gap(Gap(stream_id=self.stream_id, t_start=self._timeline_end, t_end=al.t0 + al.offset,
                              reason=self._live_gap, segment=al.segment, source=self.source,
                              wall_start=wall_start, wall_end=max(al.wall_t0, wall_start), extra=self._gap_extra))
            self._live_gap, self._gap_extra = "", {}
        return pop()

    SLEW = 0.2

    def _slew(self, seg: _Segment) -> None:
        """Move the segment's capture times toward the arrival clock: earlier when packets now
        arrive sooner after their timestamps than the ones its first cell was timed from (a backlog
        at start-up has drained, a camera clock runs fast), later when the window no longer holds
        any that came that soon (a camera clock runs slow). Corrections under 10 ms are left alone."""
        clock = self._arrivals.value
        if seg.cap0 is None or not np.isfinite(clock):
            return
        al = seg.aligner
        late = seg.cap0 - (clock + al.t0)
        if abs(late) >= 0.01:
            step = float(np.clip(late, -self.SLEW * self.grid.hop_s, self.SLEW * self.grid.hop_s))
            seg.cap0 -= step
            al.wall_t0 -= _dt.timedelta(seconds=step)

    def _pace(self, cell) -> bool:
        """Realtime replay of a file: hold each cell until its end is due on the wall clock."""
        if self._pace0 is None:
            self._pace0 = (time.monotonic(), cell.t_start)
        due = self._pace0[0] + (cell.t_end - self._pace0[1])
        return self._sleep(max(0.0, due - time.monotonic()))

    @staticmethod
    def _wall(mono_t: float, mono_now: float) -> _dt.datetime:
        return _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(seconds=mono_now - mono_t)

    def _put_gap(self, gap: Gap) -> None:
        log.info("%s: %s, gap of %.2f s", self.source, gap.reason, gap.t_end - gap.t_start)
        self._put(gap)

    def _emit(self, cells) -> bool:
        for c in cells:
            if self.options.realtime and not self.is_live and not self._pace(c):
                return False
            if not self._put(c):
                return False
            self.cells_out += 1
        return True
