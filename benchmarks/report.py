"""`avgrid report` on hours of media: file size, build time and render time in headless Chromium.

    python -m benchmarks.report [--hours 2]

Input: a synthetic dataset as a long run of the offline and perception operators would leave it
(:func:`make_long_dataset`: motion in bursts cut at 10 s, people counted every few seconds, sound
events, speech transcripts with sentiment, template captions, camera motion, a few gaps) over a
real H.264 + AAC file of the same length (a 60 s ffmpeg test pattern, stream-copied end to end).

- ``report_mb``: size of the HTML file (limit 5 MB: it has to open in a browser and go by e-mail);
- ``build_s``: reading the dataset, sampling thumbnails and audio, writing the file;
- ``render_s``: Chromium, from navigation until the page says it has drawn every stream;
- ``*_short``: the same for a 1-minute dataset made the same way, measured in the same run;
  ``render_long_vs_short`` is the long render time over the short one (how drawing scales).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._harness import report
from pipeline.records import ActionRecord, CaptionRecord, EventRecord, SentimentRecord, StreamRecord

SEGMENT_S = 60
ORIGIN = _dt.datetime(2026, 11, 30, 6, 0, tzinfo=_dt.timezone.utc)
SOUNDS = ("Speech", "Vehicle", "Dog", "Bird", "Music", "Siren", "Telephone bell ringing", "Footsteps", "Door",
          "Wind", "Applause", "Rain", "Engine", "Horn")
WORDS = ("the bus is late again", "look at that", "where are we going now", "it is very cold this morning",
         "thank you so much", "that was great", "watch out", "see you tomorrow", "I do not like this at all")


def make_long_media(path: Path, duration_s: float) -> Path:
    """An H.264 (96x72, 1 fps) + AAC (8 kHz) file of ``duration_s``: one 60 s segment, stream-copied over."""
    seg = path.with_suffix(".seg.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=96x72:rate=1", "-f", "lavfi",
                    "-i", "sine=frequency=440:sample_rate=8000:beep_factor=4", "-t", str(SEGMENT_S), "-c:v",
                    "libx264", "-preset", "ultrafast", "-g", "5", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "12k",
                    "-ac", "1", str(seg)], check=True)
    listing = path.with_suffix(".txt")
    listing.write_text("".join(f"file '{seg}'\n" for _ in range(int(-(-duration_s // SEGMENT_S)))))
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing), "-t",
                    str(duration_s), "-c", "copy", str(path)], check=True)
    seg.unlink()
    listing.unlink()
    return path


def make_long_dataset(out: Path, media: Path, duration_s: float, *, seed: int = 0,
                      stream_id: str | None = None) -> dict:
    """Write a dataset of ``duration_s`` seconds of one stream to ``out``; returns counts per kind."""
    from pipeline.sinks import ParquetSink

    rnd = random.Random(seed)
    sid = stream_id or str(media)
    run_id = "bench-long"
    wall = lambda t: ORIGIN + _dt.timedelta(seconds=t)        # noqa: E731
    common = lambda t0, t1, model, op: dict(stream_id=sid, source=str(media), t_start=t0, t_end=t1,  # noqa: E731
                                            model=model, run_id=run_id, wall_start=wall(t0), wall_end=wall(t1),
                                            operator=op)
    recs: list = []

    def cut(t0: float, t1: float, make) -> None:         # one label run, cut at 10 s like the record builder
        first = None
        a = t0
        while a < t1:
            b = min(t1, a + 10.0)
            r = make(a, b, first or "")
            first = first or r.record_id
            recs.append(r)
            a = b

    t = 0.0
    while t < duration_s:                                # motion in bursts
        t += rnd.uniform(2, 40)
        length = rnd.uniform(1, 90)
        cut(t, min(duration_s, t + length), lambda a, b, ep: EventRecord.make(
            **common(a, b, "motion:frame-difference(delta>25)", "motion"), episode_id=ep, label="motion",
            modality="visual", score=0.6))
        t += length
    t = 0.0
    while t < duration_s:                                # people, counted per cell, a record per steady count
        length = float(rnd.randint(2, 20))
        n = rnd.choice((0, 0, 1, 1, 2, 3, 4, 6))
        if n:
            cut(t, min(duration_s, t + length), lambda a, b, ep, n=n: EventRecord.make(
                **common(a, b, "people:hog+bytetrack", "people"), episode_id=ep, label="person", modality="visual",
                score=0.8, count=n))
        t += length
    for _ in range(int(duration_s / 8)):                 # named sound events
        a = float(rnd.randint(0, int(duration_s) - 3))
        recs.append(EventRecord.make(**common(a, a + rnd.randint(1, 3), "sound_events:yamnet", "sound_events"),
                                     label=rnd.choice(SOUNDS), modality="audio", score=rnd.uniform(0.3, 1.0)))
    for k in range(3):                                   # a few reconnect gaps
        a = duration_s * (k + 1) / 4
        recs.append(EventRecord.make(**common(a, a + 4.0, "avgrid-runtime/1 gap: reconnect", "runtime"), label="gap",
                                     modality="audiovisual", score=1.0, detail="reconnect"))
    t = 0.0
    while True:                                          # speech: a transcript line and its sentiment
        t += rnd.uniform(5, 60)
        if t > duration_s - 6:
            break
        a, b = round(t, 2), round(min(duration_s, t + rnd.uniform(1.0, 5.0)), 2)
        text = rnd.choice(WORDS)
        recs.append(CaptionRecord.make(**common(a, b, "asr:pocketsphinx-en-us", "asr"), text=text, method="asr",
                                       score=rnd.uniform(0.4, 0.95)))
        p = rnd.uniform(0, 1)
        label = "positive" if p > 0.66 else "negative" if p < 0.33 else "neutral"
        recs.append(SentimentRecord.make(**common(a, b, "text_sentiment:vader", "text_sentiment"), label=label,
                                         negative=1 - p, neutral=0.5, positive=p, valence=2 * p - 1, arousal=0.3,
                                         modality="speech"))
    for k in range(int(duration_s // 10)):               # template captions and camera motion per 10 s
        a, b = 10.0 * k, min(duration_s, 10.0 * (k + 1))
        recs.append(CaptionRecord.make(**common(a, b, "template-caption/1", "caption"),
                                       text=f"Seen: motion. Heard: {rnd.choice(SOUNDS).lower()}.", method="template"))
    cut(0.0, duration_s, lambda a, b, ep: ActionRecord.make(
        **common(a, b, "camera_motion:farneback-flow+affine-fit(96px)", "camera_motion"), episode_id=ep,
        label="static", score=0.9, top_k=[("static", 0.9), ("pan", 0.05)], subject="camera"))
    sink = ParquetSink.open(out, run_id=run_id)
    sink.write(recs)
    sink.write([StreamRecord.make(stream_id=sid, source=str(media), run_id=run_id, status="ok", t0_s=0.0,
                                  duration_s=duration_s, media_origin=ORIGIN, media_origin_from="user",
                                  video_codec="h264", width=96, height=72, fps=1.0, audio_codec="aac",
                                  sample_rate_hz=8000, channels=1, cells=int(duration_s), records=len(recs),
                                  gaps=3, started_at=ORIGIN, finished_at=ORIGIN)])
    sink.commit_input(sid)
    sink.close()
    counts: dict[str, int] = {}
    for r in recs:
        counts[r.kind] = counts.get(r.kind, 0) + 1
    return counts


def render_s(html: Path) -> float:
    """Seconds from navigation until the report has drawn (fresh headless Chromium, 1400x1000)."""
    from tests.browser import Browser

    with Browser(width=1400, height=1000) as b:
        t0 = time.perf_counter()
        b.call("Page.navigate", url=html.resolve().as_uri())
        b.wait_for("window.__avgrid && window.__avgrid.ready", timeout_s=120, every_s=0.02)
        took = time.perf_counter() - t0
        if b.errors:
            raise RuntimeError(f"{html}: the page reported errors: {b.errors[:3]}")
    return took


def measure(tmp: Path, duration_s: float, name: str) -> dict:
    from pipeline.report import write_report

    media = make_long_media(tmp / f"{name}.mp4", duration_s)
    counts = make_long_dataset(tmp / name, media, duration_s)
    t0 = time.perf_counter()
    path, size = write_report(tmp / name, tmp / f"{name}.html")
    build = time.perf_counter() - t0
    renders = sorted(render_s(path) for _ in range(3))
    return {"size": size, "build_s": build, "render_s": renders[1], "records": sum(counts.values())}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=2.0)
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="avgrid-bench-report-") as d:
        tmp = Path(d)
        short = measure(tmp, 60.0, "short")
        long = measure(tmp, args.hours * 3600.0, "long")
    return report(
        "report",
        figures={"report_mb": long["size"] / 1e6, "build_s": long["build_s"], "render_s": long["render_s"],
                 "records": long["records"], "report_mb_short": short["size"] / 1e6,
                 "build_s_short": short["build_s"], "render_s_short": short["render_s"]},
        ratios={"render_long_vs_short": long["render_s"] / short["render_s"],
                "size_long_vs_short": long["size"] / short["size"]},
        limits={"report_mb": 5.0},
        notes={"hours": args.hours, "render": "median of 3 fresh Chromium loads, navigation -> drawn",
               "dataset": "benchmarks.report.make_long_dataset over an H.264+AAC test pattern"})


if __name__ == "__main__":
    main()
