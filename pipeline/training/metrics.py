"""Scoring a bundle on labelled clips: per-head accuracy, macro-F1, mAP, MAE, and the table ``avgrid eval`` prints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from operators.fusion import Bundle
from pipeline.grid import GridConfig
from pipeline.training.features import LabelledClip, load_clips
from pipeline.training.labels import Vocab
from pipeline.training.windows import make_windows


def _f1s(tp, fp, fn) -> np.ndarray:
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan)


def _single_label(pred: np.ndarray, truth: np.ndarray, labels: list[str]) -> dict:
    """Accuracy and per-class / macro F1 (macro over classes present in truth or predictions)."""
    if len(truth) == 0:
        return {"accuracy": float("nan"), "macro_f1": float("nan"), "f1": {}, "n": 0}
    k = np.arange(len(labels))[:, None]
    tp = ((pred == k) & (truth == k)).sum(1)
    fp = ((pred == k) & (truth != k)).sum(1)
    fn = ((pred != k) & (truth == k)).sum(1)
    f1 = _f1s(tp, fp, fn)
    return {"accuracy": float((pred == truth).mean()), "macro_f1": float(np.nanmean(f1)),
            "f1": {lab: float(x) for lab, x in zip(labels, f1) if not np.isnan(x)}, "n": int(len(truth))}


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """AP of one label: mean precision at the rank of each positive (NaN without positives)."""
    if truth.sum() == 0:
        return float("nan")
    hits = truth[np.argsort(-scores, kind="stable")].astype(bool)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def evaluate_clips(bundle: Bundle, clips: list[LabelledClip], *, vocab: Vocab | None = None,
                   audio_shift_cells: int = 0, event_threshold: float = 0.5) -> dict:
    """Per-head metrics of ``bundle`` on labelled clips (cells with media only). A causal bundle
    scores each cell k from the window of the W cells ending at k (as a live run does); a
    look-ahead bundle from consecutive windows.

    action / sentiment: accuracy, macro_f1, f1 per label; event: macro_f1, mAP, accuracy (mean
    per-label), f1 and ap per label; valence / arousal: mean absolute error; caption: accuracy
    of the learned head (when the bundle has one)."""
    cfg = bundle.config
    vocab = vocab or Vocab(cfg.action_labels, cfg.event_labels, cfg.event_modalities, cfg.caption_labels)
    W = cfg.window_cells
    data = make_windows(clips, vocab, W, stride=W, hop_s=float(bundle.preprocessing["hop_s"]),
                        audio_shift_cells=audio_shift_cells, live=cfg.causal)
    was_training = bundle.model.training
    bundle.model.eval()
    with torch.no_grad():
        out = bundle.model(data.v, data.a, data.vm, data.am)
    bundle.model.train(was_training)
    tg, present = data.tg, (data.vm | data.am) & data.report
    res: dict = {"model": bundle.model_id, "n_clips": len(clips), "n_cells": int(present.sum())}
    m = (tg.action >= 0) & present
    if m.any():
        res["action"] = _single_label(out.action_logits[m].argmax(-1).numpy(), tg.action[m].numpy(), cfg.action_labels)
    m = tg.events_known & present
    if m.any() and cfg.event_labels:
        p, t = out.event_logits[m].sigmoid().numpy(), tg.events[m].numpy().astype(bool)
        hard = p >= event_threshold
        f1 = _f1s((hard & t).sum(0), (hard & ~t).sum(0), (~hard & t).sum(0))
        ap = np.array([average_precision(p[:, i], t[:, i]) for i in range(p.shape[1])])
        res["event"] = {"macro_f1": float(np.nanmean(f1)), "mAP": float(np.nanmean(ap)),
                        "accuracy": float((hard == t).mean()),
                        "f1": {lab: float(x) for lab, x in zip(cfg.event_labels, f1) if not np.isnan(x)},
                        "ap": {lab: float(x) for lab, x in zip(cfg.event_labels, ap) if not np.isnan(x)},
                        "n": int(m.sum())}
    m = (tg.sentiment >= 0) & present
    if m.any():
        res["sentiment"] = _single_label(out.sentiment_logits[m].argmax(-1).numpy(), tg.sentiment[m].numpy(),
                                         cfg.sentiment_labels)
    for key, pred, target in (("valence", out.valence, tg.valence), ("arousal", out.arousal, tg.arousal)):
        m = ~target.isnan() & present
        if m.any():
            res[f"{key}_mae"] = float((pred[m] - target[m]).abs().mean())
    m = (tg.caption >= 0) & present
    if out.caption_logits is not None and m.any():
        res["caption"] = {"accuracy": float((out.caption_logits[m].argmax(-1) == tg.caption[m]).float().mean()),
                          "method": "learned-caption-retrieval"}
    return res


class Metrics(dict):
    """The dict ``evaluate`` returns; ``str()`` gives the table ``avgrid eval`` prints."""

    def __str__(self) -> str:
        return format_metrics(self)


def evaluate(bundle_path: str | Path | Bundle, data_dir: str | Path, *, cache_dir: str | Path | None = None,
             audio_shift_cells: int = 0, progress: bool = False) -> Metrics:
    """Score a bundle (a directory, or a loaded Bundle) on a labelled data directory, decoded with
    the bundle's own grid. ``failed_clips`` lists the inputs that could not be read."""
    bundle = bundle_path if isinstance(bundle_path, Bundle) else Bundle.load(bundle_path)
    pre = bundle.preprocessing
    grid = GridConfig(hop_s=pre["hop_s"], fps=pre["fps"], frame_height=pre["frame_height"],
                      frame_width=pre["frame_width"])
    clips, failed = load_clips(data_dir, bundle.featurizer, grid, cache_dir=cache_dir, progress=progress)
    res = Metrics(evaluate_clips(bundle, clips, audio_shift_cells=audio_shift_cells))
    res["failed_clips"] = failed
    return res


def format_metrics(m: dict) -> str:
    """The per-head table ``avgrid eval`` prints."""
    rows = [f"model {m['model']}: {m['n_clips']} clips, {m['n_cells']} cells", "head       accuracy  macro-F1  mAP"]
    for head in ("action", "event", "sentiment"):
        if head in m:
            h = m[head]
            ap = f"{h['mAP']:.3f}" if "mAP" in h else "-"
            rows.append(f"{head:<10} {h['accuracy']:>8.3f}  {h['macro_f1']:>8.3f}  {ap:>5}")
            rows += [f"  {lab:<22} F1 {f1:.3f}" for lab, f1 in h["f1"].items()]
    if "caption" in m:
        rows.append(f"caption    {m['caption']['accuracy']:>8.3f}  ({m['caption']['method']})")
    for key in ("valence_mae", "arousal_mae"):
        if key in m:
            rows.append(f"{key:<10} {m[key]:.3f}")
    for f in m.get("failed_clips", []):
        rows.append(f"failed: {f}")
    return "\n".join(rows)
