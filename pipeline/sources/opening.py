"""Opening an input with PyAV: FFmpeg's options per scheme, the ``srt://`` relay, and why an open failed.

* :func:`ffmpeg_options`: the container format and FFmpeg options for a URL (socket deadlines in
  microseconds, RTSP transport, UDP buffering; ``/dev/videoN`` is v4l2).
* :class:`Opener`: ``av.open`` with those options and deadlines; where PyAV's FFmpeg lacks the
  protocol (``srt://``) the ffmpeg CLI relays it (:mod:`pipeline.sources.relay`). A failure raises
  :class:`SourceError` with the reason in words (a file's damaged header in media terms, a login
  hint for a 401/403, a deadline that passed) and says whether waiting could mend it.
* What the opened container says: :func:`stream_facts` (codecs, size, rates) and
  :func:`creation_time` (the capture time muxers write).
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from typing import Callable
from urllib.parse import urlsplit

import av

from pipeline.errors import SourceError
from pipeline.sources.base import SourceOptions, log
from pipeline.sources.relay import RELAYED_SCHEMES, FfmpegRelay, can_relay


def ffmpeg_options(url: str, opts: SourceOptions) -> tuple[str | None, dict[str, str]]:
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


def creation_time(container) -> _dt.datetime | None:
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


def stream_facts(container) -> dict:
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


def reason(e: BaseException) -> str:
    """An exception in a few words. FFmpeg errors repeat the filename; the reason alone reads better
    and the source is named anyway."""
    if isinstance(e, av.FFmpegError) and e.strerror:
        return e.strerror
    return f"{type(e).__name__}: {e}"


def file_open_reason(e: BaseException) -> str:
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
        log.debug("cannot open: %s", reason(e))
        return "its header is damaged or of a kind FFmpeg cannot read"
    return reason(e)


def login_hint(url: str, e: BaseException) -> str:
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


class Opener:
    """Opens one input, again on every reconnect; keeps the ffmpeg CLI relay once one was needed.

    ``retry_at_start`` is False after a failure that waiting does not mend (a refused login, a
    protocol FFmpeg lacks, a 404)."""

    def __init__(self, url: str, options: SourceOptions):
        self.url = url
        self.options = options
        self.relay: FfmpegRelay | None = None   # set when PyAV's FFmpeg lacks the protocol (srt://)
        self.retry_at_start = True

    def open(self, is_live: bool, blocking: Callable[[str, float | None], None]):
        """The opened ``av`` container. ``blocking(what, timeout_s)`` announces the open and its
        deadline to the source's watchdog (``("", None)`` when done). Raises :class:`SourceError`."""
        url, options = self.url, self.options
        fmt, opts = ffmpeg_options(url, options)
        timeout = (options.open_timeout_s, options.read_timeout_s) if is_live else None
        if not is_live and os.path.isfile(url) and os.path.getsize(url) == 0:
            raise SourceError(url, "empty file (0 bytes)")
        blocking("open", options.open_timeout_s if is_live else None)
        started = time.monotonic()
        try:
            if self.relay is None:
                try:
                    # a damaged tag must not cost the media: undecodable bytes in metadata read as U+FFFD
                    c = av.open(url, format=fmt, options=opts, timeout=timeout, metadata_errors="replace")
                except av.ProtocolNotFoundError:
                    if not can_relay(url):
                        raise
                    self.relay = FfmpegRelay(url)
            if self.relay is not None:
                # probed, not format="mpegts": a forced demuxer shrugs off the deadline while reading its
                # header and then waits a second deadline in find_stream_info
                c = av.open(self.relay.start(), timeout=timeout, metadata_errors="replace")
        except (av.FFmpegError, OSError, ValueError) as e:
            why = reason(e) if is_live or "://" in url else file_open_reason(e)
            scheme = urlsplit(url).scheme
            if isinstance(e, av.ProtocolNotFoundError):
                why = f"the FFmpeg inside PyAV {av.__version__} has no '{scheme}' protocol"
                if scheme.lower() in RELAYED_SCHEMES:
                    why += ", and no ffmpeg CLI on PATH has it to relay it (Debian: apt-get install ffmpeg)"
            why += login_hint(url, e)
            if is_live and time.monotonic() - started >= 0.9 * options.open_timeout_s:
                why = f"no answer within {options.open_timeout_s:g} s ({why})"
            if self.relay is not None:
                why = (f"via the ffmpeg CLI relay (the FFmpeg inside PyAV has no '{scheme}' protocol): "
                       f"{self.relay.explain(why)}")
                self.relay.stop()
            # waiting does not mend a refused login or a protocol FFmpeg lacks
            self.retry_at_start = not isinstance(e, (av.ProtocolNotFoundError, av.HTTPUnauthorizedError,
                                                     av.HTTPForbiddenError, av.HTTPNotFoundError))
            raise SourceError(url, f"cannot open: {why}") from None
        finally:
            blocking("", None)
        if not c.streams.video and not c.streams.audio:
            c.close()
            if self.relay is not None:
                self.relay.stop()
            raise SourceError(url, "no audio or video stream")
        return c

    def stop(self) -> None:
        """Stop the relay, if any (the container was released)."""
        if self.relay is not None:
            self.relay.stop()

    def close(self) -> None:
        """From any thread: a read blocked on the relay's pipe sees end of file at once."""
        if self.relay is not None:
            self.relay.close()
