"""Clips cut into windows of W cells, the temporal model's input: features, masks, targets, scored slots."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipeline.training.features import LabelledClip
from pipeline.training.labels import UNLABELLED, Targets, Vocab, cell_targets


@dataclass
class Batch:
    """Windows of W cells: features, masks, targets; shapes (N, W, ...)."""

    v: torch.Tensor
    a: torch.Tensor
    vm: torch.Tensor
    am: torch.Tensor
    tg: Targets
    report: torch.Tensor        # (N, W) bool: the slots evaluation scores

    def take(self, idx) -> "Batch":
        return Batch(self.v[idx], self.a[idx], self.vm[idx], self.am[idx], self.tg.map(lambda f, x: x[idx]),
                     self.report[idx])


def _pad(x: torch.Tensor, W: int, value) -> torch.Tensor:
    pad = torch.full((W - x.shape[0], *x.shape[1:]), value, dtype=x.dtype)
    return torch.cat([x, pad])


def make_windows(clips: list[LabelledClip], vocab: Vocab, W: int, *, stride: int, hop_s: float,
                 audio_shift_cells: int = 0, live: bool = False) -> Batch:
    """Cut clips into windows of W cells (padding the last one with absent cells).

    ``live``: one window per cell k, the W cells ending at k, scored at k only: what a live
    run (causal, the last W cells) sees. ``audio_shift_cells`` delays each clip's audio by that
    many cells (labels stay put): an alignment check; the first cells then have no audio."""
    parts: dict[str, list] = {k: [] for k in ("v", "a", "vm", "am", "tg", "report")}
    for c in clips:
        tg = cell_targets(c.lines, c.n_cells, vocab, hop_s, c.t0)
        a, am = c.audio_feats, c.audio_mask
        if audio_shift_cells:
            s = audio_shift_cells
            a = torch.cat([torch.zeros_like(a[:s]), a[:-s]])
            am = torch.cat([torch.zeros_like(am[:s]), am[:-s]])
        T = c.n_cells
        if live:
            slices = [slice(max(0, k - W + 1), k + 1) for k in range(T)]
        else:
            slices = [slice(s0, min(T, s0 + W)) for s0 in range(0, max(1, T - W + 1), stride)]
            if slices[-1].stop < T:
                slices.append(slice(T - W, T))
        for sl in slices:
            n = sl.stop - sl.start
            report = torch.zeros(W, dtype=torch.bool)
            report[n - 1 if live else slice(0, n)] = True
            parts["report"].append(report)
            parts["v"].append(_pad(c.frame_feats[sl], W, 0.0))
            parts["a"].append(_pad(a[sl], W, 0.0))
            parts["vm"].append(_pad(c.video_mask[sl], W, False))
            parts["am"].append(_pad(am[sl], W, False))
            parts["tg"].append(tg.map(lambda f, x: _pad(x[sl], W, UNLABELLED[f])))
    return Batch(torch.stack(parts["v"]), torch.stack(parts["a"]), torch.stack(parts["vm"]), torch.stack(parts["am"]),
                 Targets.stack(parts["tg"]), torch.stack(parts["report"]))
