"""Understanding quality on real media with written-down ground truth: precision and recall per method.

    python -m benchmarks.quality [--only sound,visual,describe]

Each part lives in its own module (``benchmarks/quality_<part>.py``) with ``measure() -> (figures,
notes)``; the set it measures on is the one the understanding tests build from Debian's real clips
and sounds (``pipeline/knowntruth/debian.py``), with the truths those tests write down. Figures are
fractions (recall, precision, accuracy, F1) or errors in the unit their name says; the JSON goes
to ``benchmarks/results/quality.json``.
"""

from __future__ import annotations

import argparse

from benchmarks._harness import report, run_parts

PARTS = ("sound", "visual", "describe")
# figure -> the least it should be / the most it may be (issues #14, #15, #16)
TARGETS = {"sound_event_recall": 0.8, "sound_event_precision": 0.7, "walking_recall": 0.8, "cut_recall": 0.9,
           "cut_precision": 0.8}
LIMITS = {"person_count_mae": 1.5}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(PARTS), help="comma-separated parts to run")
    args = ap.parse_args(argv)
    figures, notes = run_parts("quality", args.only)
    report("quality", figures, {}, targets={k: v for k, v in TARGETS.items() if k in figures},
           limits={k: v for k, v in LIMITS.items() if k in figures}, notes=notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
