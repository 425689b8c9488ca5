"""``make demo``: generate a sample clip offline, annotate it with the offline profile, show the result.

The clip (pipeline/synth.py) has known events -- flashes, hard cuts, clicks, tones and a moving
square -- so what avgrid finds can be checked by eye against the ground truth printed first.

    python -m pipeline.demo [--out ./avgrid-out] [--duration 20]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.synth import GroundTruth, MediaEvent, MediaSpec, make_media


def demo_spec(duration_s: float = 20.0) -> MediaSpec:
    """Events spread over ``duration_s``: a flash, a cut and a click every few seconds, two tones."""
    d = duration_s
    at = lambda *fr: tuple(round(f * d, 1) for f in fr)
    return MediaSpec(duration_s=d, width=320, height=240, video_fps=25.0, flashes=at(0.15, 0.65), cuts=at(0.35, 0.8),
                     clicks=at(0.25, 0.55, 0.9), tones=((round(0.4 * d, 1), 1.5, 440.0), (round(0.7 * d, 1), 1.0, 880.0)),
                     square_speed_px_s=60.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="./avgrid-out", help="output dataset directory (default: ./avgrid-out)")
    p.add_argument("--duration", type=float, default=20.0, help="clip length in seconds (default: 20)")
    args = p.parse_args(argv)

    from pipeline.cli import main as avgrid

    # the clip lives in the dataset's bookkeeping area (readers skip "_" folders) under a fixed
    # name, so its stream id is stable and a second `make demo` shows re-runs skipping it
    clip = Path(args.out) / "_demo" / "avgrid-demo.mp4"
    clip.parent.mkdir(parents=True, exist_ok=True)
    if not clip.exists():
        truth = make_media(clip, demo_spec(args.duration), "mp4")
    else:
        truth = GroundTruth(**_load_truth(clip))
    print(f"sample clip {clip} ({truth.spec.duration_s:g} s, H.264 + AAC) with known events:")
    for e in truth.events:
        print(f"  {e.t_start:6.2f}-{e.t_end:6.2f} s  {e.kind:6s} ({e.modality})")
    print(f"\n$ avgrid annotate --profile offline --out {args.out} {clip}", flush=True)
    rc = avgrid(["annotate", "--profile", "offline", "--out", args.out, str(clip)])
    if rc != 0:
        return rc
    print(f"\n$ avgrid inspect {args.out}", flush=True)
    return avgrid(["inspect", args.out])


def _load_truth(clip: Path) -> dict:
    import json

    d = json.loads(Path(str(clip) + ".truth.json").read_text())
    spec = MediaSpec(**{k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
                        for k, v in d["spec"].items()})
    return {"path": d["path"], "spec": spec, "fmt": d["fmt"], "events": [MediaEvent(**e) for e in d["events"]]}


if __name__ == "__main__":
    sys.exit(main())
