"""The skip-decode policy: H.264/HEVC frames that no grid slot can pick and no other frame references
are not decoded (FFmpeg's ``skip_frame``, set per packet from its timestamp; frame threads take it
with the packet).

A slot takes the nearest frame within one frame interval (``tol``), so a frame farther than that
from every slot time is never picked; if nothing references it either (``skip_frame=NONREF`` drops
exactly those), decoding it is wasted. The cells are identical to a full decode
(``SourceOptions.skip_unsampled=False``). On the default grid (4 frames a second) that is about a
third of a 30 fps x264 stream's frames (measured on 10 s encodes: 33-34% with x264's default
B-pyramid, 54% without B-pyramid, 38% for x265).
"""

from __future__ import annotations

from pipeline.sources.timeline import Segment, seconds

# decoders whose skip_frame=NONREF drops exactly the frames no other frame references
SKIPPABLE_CODECS = frozenset({"h264", "hevc"})


class SkipPolicy:
    """Decides per video packet whether its decoder skips non-reference frames (one per source)."""

    def __init__(self, enabled: bool, jump_s: float):
        self.enabled = enabled
        self.jump_s = jump_s
        self.packets_skippable = 0        # video packets decoded with skip_frame=NONREF
        self._vs = None
        self._active = False
        self._now = False
        self._skipped: list[float] = []   # times of video packets sent with NONREF, not yet passed

    def new_container(self, vs) -> None:
        """A (re)opened input; ``vs`` its video stream (None: none)."""
        self._vs = vs
        self._active = vs is not None and self.enabled and vs.codec_context.name in SKIPPABLE_CODECS
        self._now = False
        self._skipped = []

    def packet(self, packet, seg: Segment | None, last_video_t: float | None) -> None:
        """Before ``packet`` is decoded: set the decoder's ``skip_frame`` for it."""
        vs = self._vs
        if not self._active or packet.stream is not vs:
            return
        if packet.pts is None:
            if packet.size:
                # a frame without a timestamp (MPEG-TS may leave some out, field pictures): its time is
                # interpolated from the frames before it, so from here on every frame is decoded
                self._active, self._now = False, False
                vs.codec_context.skip_frame = "DEFAULT"
            return
        t_skip = self.unsampled(packet, seg, last_video_t)
        if (t_skip is not None) != self._now:
            self._now = t_skip is not None
            vs.codec_context.skip_frame = "NONREF" if self._now else "DEFAULT"
        if self._now:
            self.packets_skippable += 1
            seg.aligner.note_video(t_skip)
            self._skipped.append(t_skip)

    def unsampled(self, packet, seg: Segment | None, last: float | None) -> float | None:
        """The time of a video packet no grid slot can pick, or None when its frame may be needed.

        Only packets continuing the current segment's clock (``last``: the video stream's previous
        frame) qualify: a jump or reset is left to the decoded frames to detect."""
        if seg is None or last is None or "video" not in seg.joined:
            return None
        t = seconds(packet.pts, packet.time_base)
        if not last - 1.0 <= t <= last + self.jump_s:
            return None
        al = seg.aligner
        return t if al.slot_distance(t) > al.tol + 1e-3 else None

    def passed(self, t: float) -> float | None:
        """A decoded video frame at ``t``: the latest skipped frame before it (a full decode would have
        shown it first), or None; skipped frames up to ``t`` are forgotten."""
        if not self._skipped:
            return None
        before = [x for x in self._skipped if x < t]
        self._skipped = [x for x in self._skipped if x > t]
        return max(before) if before else None

    def clock_broke(self) -> None:
        """A new segment: the skipped frames belong to the old clock."""
        self._skipped = []
