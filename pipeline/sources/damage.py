"""What a damaged file lost: packets that would not decode, a read that stopped early, an end cut off.

A file is read as far as it goes, the way ``ffmpeg`` reads it: a packet that fails to decode is
skipped (its frame is missing from the cell masks), a read error after media has come ends the
file there, and a file whose media ends well before the duration its container declares is
*truncated*. :class:`DamageLog` collects this while a file is read and turns it into

* stretches: ``(t_start_s, t_end_s, detail)`` in timeline seconds, ``detail`` ``decode_errors=N``
  (N packets within the stretch failed) or ``truncated`` (from where the media ends to the declared
  end, or to the end of the last cell when the read stopped); each becomes a ``damaged`` event;
* a warning for the run summary, in media terms (streams, codecs, seconds), never FFmpeg's errno text.

    log = DamageLog(hop_s=1.0)
    log.bad_packet("video", "h264", 3.2)          # a packet at 3.2 s did not decode
    log.finish(data_end_s=6.0, declared_end_s=11.3, read_error=None)
    log.stretches()   # [(3.2, 4.2, "decode_errors=1"), (6.0, 11.3, "truncated")]
    log.warning()     # "truncated: media ends at 6.0 s of the 11.3 s the container declares; ..."
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_STRETCHES = 64          # a file damaged all over is reported as at most this many stretches


@dataclass
class _Stretch:
    t_start: float
    t_end: float
    n: int = 1
    streams: dict = field(default_factory=dict)    # "video h264" -> packets


class DamageLog:
    """Damage seen while reading one file. Times are timeline seconds (what the cells carry)."""

    def __init__(self, hop_s: float, truncation_tolerance_s: float | None = None):
        self.hop_s = hop_s
        # a container's declared duration and the last frame differ by a frame or two even in a
        # healthy file (edit lists, audio priming); less than this short is not called truncated
        self.tolerance_s = truncation_tolerance_s if truncation_tolerance_s is not None else max(1.0, hop_s)
        self.bad_packets = 0
        self._stretches: list[_Stretch] = []
        self.truncated: tuple[float, float] | None = None
        self.read_error: str | None = None
        self.declared_end_s: float | None = None

    def bad_packet(self, kind: str, codec: str, t_s: float | None, duration_s: float = 0.0) -> None:
        """A packet of stream ``kind`` (video, audio) at timeline second ``t_s`` (None: unknown,
        counted in the last stretch) failed to decode."""
        self.bad_packets += 1
        name = f"{kind} {codec}"
        s = self._stretches[-1] if self._stretches else None
        if t_s is None:
            if s is None:
                s = _Stretch(0.0, 0.0, 0)
                self._stretches.append(s)
            s.n += 1
            s.streams[name] = s.streams.get(name, 0) + 1
            return
        end = t_s + max(duration_s, 0.0)
        # packets within a hop of the stretch belong to it (packets of two streams interleave)
        if s is not None and (s.t_start - self.hop_s <= t_s <= s.t_end + self.hop_s or len(self._stretches) >= MAX_STRETCHES):
            s.t_start, s.t_end = min(s.t_start, t_s), max(s.t_end, end)
            s.n += 1
        else:
            s = _Stretch(t_s, end)
            self._stretches.append(s)
        s.streams[name] = s.streams.get(name, 0) + 1

    def finish(self, *, data_end_s: float | None, declared_end_s: float | None, read_error: str | None) -> None:
        """The read is over: media reached ``data_end_s`` (None: nothing decoded); the container
        declares ``declared_end_s`` (None: it does not say); ``read_error``: why reading stopped early."""
        self.read_error = read_error
        self.declared_end_s = declared_end_s
        if data_end_s is None:
            return
        end = declared_end_s
        if read_error is not None and (end is None or end < data_end_s + self.tolerance_s):
            end = None         # stopped early, but where the file would have ended is unknown
        if end is not None and data_end_s < end - self.tolerance_s:
            self.truncated = (data_end_s, end)
        elif read_error is not None:
            self.truncated = (data_end_s, data_end_s)

    @property
    def damaged(self) -> bool:
        return bool(self.bad_packets or self.truncated or self.read_error)

    def stretches(self) -> list[tuple[float, float, str]]:
        """``(t_start_s, t_end_s, detail)`` per damaged stretch, in time order."""
        out = []
        for s in self._stretches:
            t1 = max(s.t_end, s.t_start + min(self.hop_s, 0.05))   # a stretch lasts at least a moment
            out.append((s.t_start, t1, f"decode_errors={s.n}"))
        if self.truncated is not None:
            out.append((self.truncated[0], self.truncated[1], "truncated"))
        return sorted(out)

    def warning(self) -> str:
        """One line for the run summary ("" when nothing was damaged)."""
        parts = []
        if self.truncated is not None:
            t0, t1 = self.truncated
            if self.read_error is not None:
                parts.append(f"unreadable after {t0:.1f} s ({self.read_error}); the rest of the file is missing")
            else:
                parts.append(f"truncated: media ends at {t0:.1f} s of the {t1:.1f} s the container declares")
        if self.bad_packets:
            streams: dict[str, int] = {}
            for s in self._stretches:
                for name, n in s.streams.items():
                    streams[name] = streams.get(name, 0) + n
            where = ", ".join(f"{name}: {n}" for name, n in sorted(streams.items()))
            spans = [f"{s.t_start:.1f}-{max(s.t_end, s.t_start):.1f} s" for s in self._stretches[:3]]
            more = f" and {len(self._stretches) - 3} more stretches" if len(self._stretches) > 3 else ""
            n = self.bad_packets
            parts.append(f"{n} packet{'s' if n != 1 else ''} could not be decoded ({where}) at {', '.join(spans)}{more}; "
                         f"that media is missing")
        return "; ".join(parts)

    def facts(self) -> dict:
        """What the run needs from it: ``damaged`` stretches and the ``warning`` (empty when undamaged)."""
        if not self.damaged:
            return {}
        return {"damaged": self.stretches(), "warning": self.warning(), "decode_errors": self.bad_packets}


def media_terms(kind: str, exc: BaseException) -> str:
    """An FFmpeg failure said in media terms (what is wrong with the data), not as an errno text:
    FFmpeg's decoders and demuxers return EPERM, EINVAL, EIO or private codes for damaged data."""
    import av

    if isinstance(exc, av.EOFError):
        return f"the {kind} data ends unexpectedly"
    if isinstance(exc, av.InvalidDataError):
        return f"corrupt {kind} data"
    return f"undecodable {kind} data"
