"""CPU cost of each operator per 1 s grid cell, on real footage and sound (no Ray, one process, one thread).

    python -m benchmarks.operators [--only sound,visual]

Each part (``benchmarks/operators_<part>.py``) has ``measure() -> (figures, notes)``: CPU
milliseconds per cell per operator (``process_time``, so a busy neighbour on a shared machine does
not inflate them), plus the totals the issues budget. JSON: ``benchmarks/results/operators.json``.
"""

from __future__ import annotations

import argparse

from benchmarks._harness import report, run_parts

PARTS = ("sound", "visual")
# budgets (<=): issues #14 and #15
BUDGETS = {"audio_ms_per_cell": 8.0, "asr_cpu_s_per_speech_s": 0.4, "visual_ms_per_cell_street": 35.0,
           "visual_ms_per_cell_static": 5.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.operators", description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(PARTS), help="comma-separated parts to run")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    figures, notes = run_parts("operators", args.only)
    report("operators", figures, {}, limits={k: v for k, v in BUDGETS.items() if k in figures}, notes=notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
