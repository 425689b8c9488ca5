"""``make demo``: build a sample clip offline, annotate it with the offline profile, show the result.

The clip is real footage with known events put in: 16 s of the street in opencv-doc's vtest.avi
(pedestrians walking; fetched from Debian by :mod:`pipeline.knowntruth.debian`), two full-frame flashes, one
spoken sentence with known text (espeak-ng) and a canary singing (a real recording from Debian's
sound-icons) over a quiet noise bed. What avgrid finds can be checked against the ground truth
printed first; a few records of each kind are printed after the summary.

    python -m pipeline.demo [--out ./avgrid-out] [--duration 16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SENTENCE = "What a wonderful day. I love walking on this street."
FPS = 10.0
SAMPLE_RATE_HZ = 44_100
STREET_FROM_S = 8.0            # where in vtest.avi the clip starts (people in view throughout)


@dataclass(frozen=True)
class DemoEvent:
    kind: str                  # flash, speech, sound, people
    t_start: float
    t_end: float
    what: str = ""


def demo_events(duration_s: float = 16.0) -> list[DemoEvent]:
    """The known events of a clip of ``duration_s`` (at least 12 s)."""
    d = max(12.0, float(duration_s))
    return [DemoEvent("people", 0.0, d, "pedestrians walking on a street (real footage)"),
            DemoEvent("flash", round(0.15 * d, 1), round(0.15 * d, 1) + 0.3, "full-frame flash"),
            DemoEvent("speech", 4.5, 4.5 + 3.6, SENTENCE),
            DemoEvent("flash", round(0.65 * d, 1), round(0.65 * d, 1) + 0.3, "full-frame flash"),
            DemoEvent("sound", round(0.7 * d, 1), round(0.7 * d, 1) + 3.0, "a canary singing (real recording)")]


def make_demo_clip(path: Path, duration_s: float = 16.0) -> list[DemoEvent]:
    """Encode the demo clip (H.264 + AAC MP4, 768x576) to ``path`` and write its truth beside it."""
    import av

    from pipeline.knowntruth.debian import real_file
    from pipeline.knowntruth.media import MediaSpec, encode

    events = demo_events(duration_s)
    d = events[0].t_end
    frames = _street_frames(real_file("vtest"), STREET_FROM_S, d)
    flashes = [(e.t_start, e.t_end) for e in events if e.kind == "flash"]

    def frame_at(spec, t):
        img = frames[min(len(frames) - 1, int(round(t * FPS)))]
        if any(a <= t < b for a, b in flashes):
            return np.full_like(img, 255)
        return img

    audio = _noise_bed(int(d * SAMPLE_RATE_HZ), -50.0)
    speech = next(e for e in events if e.kind == "speech")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), SENTENCE], check=True, capture_output=True)
        _mix(audio, _load_mono(av, wav), speech.t_start, -20.0)
    bird = next(e for e in events if e.kind == "sound")
    _mix(audio, _load_mono(av, real_file("canary"))[: int(3.0 * SAMPLE_RATE_HZ)], bird.t_start, -24.0)
    h, w = frames[0].shape[:2]
    spec = MediaSpec(duration_s=d, width=w, height=h, video_fps=FPS, sample_rate_hz=SAMPLE_RATE_HZ, flashes=(),
                     clicks=())
    encode(path, spec, "mp4", frame_fn=frame_at, audio_fn=lambda s: audio)
    Path(str(path) + ".truth.json").write_text(json.dumps([asdict(e) for e in events], indent=1))
    return events


def _street_frames(path: Path, t0: float, duration_s: float) -> list[np.ndarray]:
    import av

    out = []
    with av.open(str(path)) as c:
        c.streams.video[0].thread_type = "AUTO"
        for f in c.decode(video=0):
            t = float(f.pts * f.time_base)
            if t0 - 1e-6 <= t < t0 + duration_s:
                out.append(f.to_ndarray(format="rgb24"))
            elif t >= t0 + duration_s:
                break
    return out


def _noise_bed(n: int, dbfs: float) -> np.ndarray:
    """Pink-ish noise at ``dbfs`` RMS (a quiet street's hum), deterministic."""
    spec = np.fft.rfft(np.random.default_rng(7).normal(size=n))
    k = np.arange(len(spec), dtype=np.float64)
    k[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(k), n)
    return (x / np.sqrt(np.mean(x ** 2)) * 10 ** (dbfs / 20)).astype(np.float32)


def _load_mono(av, path: Path) -> np.ndarray:
    """Any audio file as mono float32 at SAMPLE_RATE_HZ (FFmpeg's resampler)."""
    chunks = []
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE_HZ)
    with av.open(str(path)) as c:
        for frame in c.decode(audio=0):
            for o in resampler.resample(frame):
                chunks.append(o.to_ndarray().ravel())
        for o in resampler.resample(None):
            chunks.append(o.to_ndarray().ravel())
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def _mix(bed: np.ndarray, sound: np.ndarray, at_s: float, dbfs: float) -> None:
    """Add ``sound`` at ``at_s``, scaled to ``dbfs`` RMS over its loud part."""
    i = int(at_s * SAMPLE_RATE_HZ)
    sound = sound[: max(0, len(bed) - i)]
    loud = sound[np.abs(sound) > 0.1 * (np.abs(sound).max() or 1)]
    rms = float(np.sqrt(np.mean(loud ** 2))) if len(loud) else 1.0
    bed[i:i + len(sound)] += sound * (10 ** (dbfs / 20) / max(rms, 1e-9))


def show_records(out: str, per_kind: int = 3) -> None:
    """A few records of each kind, as a user would look at them first."""
    import pyarrow.dataset as ds

    from pipeline.records import KINDS, arrow_schema

    for kind in KINDS:
        path = Path(out) / kind
        rows = ds.dataset(str(path), schema=arrow_schema(kind), format="parquet", partitioning="hive") \
            .to_table().to_pylist() if path.is_dir() else []
        rows.sort(key=lambda r: (r["t_start"], r["t_end"]))
        print(f"\n{kind}: {len(rows)} records" + (", e.g." if rows else ""))
        for r in _sample(rows, kind, per_kind):
            print("  " + _line(kind, r))


def _sample(rows: list[dict], kind: str, n: int) -> list[dict]:
    """Up to ``n`` records, showing different labels/methods first."""
    key = (lambda r: r["method"]) if kind == "caption" else (lambda r: (r["label"], r.get("modality")))
    seen, first, rest = set(), [], []
    for r in rows:
        (first if key(r) not in seen else rest).append(r)
        seen.add(key(r))
    return (first + rest)[:n]


def _line(kind: str, r: dict) -> str:
    span = f"{r['t_start']:5.1f}-{r['t_end']:5.1f} s"
    if kind == "caption":
        return f"{span}  [{r['method']}] {r['text']}"
    if kind == "sentiment":
        return f"{span}  {r['label']} ({r['modality']}, valence {r['valence']:+.2f})  by {r['operator']}"
    extra = []
    if r.get("count") is not None:
        extra.append(f"count {r['count']}")
    if r.get("detail"):
        extra.append(str(r["detail"]))
    if kind == "action" and r.get("subject"):
        extra.append(f"subject {r['subject']}" + (f" #{r['track_id']}" if r.get("track_id") is not None else ""))
    more = f" ({', '.join(extra)})" if extra else ""
    return f"{span}  {r['label']}{more}  by {r['operator']}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="./avgrid-out", help="output dataset directory (default: ./avgrid-out)")
    p.add_argument("--duration", type=float, default=16.0, help="clip length in seconds, at least 12 (default: 16)")
    args = p.parse_args(argv)

    from pipeline.cli import main as avgrid

    # the clip lives in the dataset's bookkeeping area (readers skip "_" folders) under a fixed
    # name, so its stream id is stable and a second `make demo` shows re-runs skipping it
    clip = Path(args.out) / "_demo" / "avgrid-demo.mp4"
    clip.parent.mkdir(parents=True, exist_ok=True)
    truth = Path(str(clip) + ".truth.json")
    if clip.exists() and truth.exists():
        events = [DemoEvent(**e) for e in json.loads(truth.read_text())]
    else:
        events = make_demo_clip(clip, args.duration)
    print(f"sample clip {clip} ({events[0].t_end:g} s, 768x576 H.264 + AAC) with known events:")
    for e in events:
        print(f"  {e.t_start:6.2f}-{e.t_end:6.2f} s  {e.kind:7s} {e.what}")
    print(f"\n$ avgrid annotate --profile offline --out {args.out} {clip}", flush=True)
    rc = avgrid(["annotate", "--profile", "offline", "--out", args.out, str(clip)])
    if rc != 0:
        return rc
    print(f"\n$ avgrid inspect {args.out}", flush=True)
    rc = avgrid(["inspect", args.out])
    show_records(args.out)
    return rc


if __name__ == "__main__":
    sys.exit(main())
