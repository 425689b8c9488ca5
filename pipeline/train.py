"""``avgrid train`` / ``avgrid eval``: fit the fusion model and heads on labelled clips, and score a bundle.

Data directory: media clips plus ``labels.jsonl``. Each line names a ``clip`` (path relative
to the directory) and labels either the whole clip (no ``t_start``/``t_end``) or a time span
in media seconds; a span labels every grid cell it overlaps. Keys: ``action`` (str),
``events`` (list of str or ``{"label", "modality"}``), ``sentiment`` (negative / neutral /
positive), ``valence`` (-1..1), ``arousal`` (0..1), ``caption`` (str). A clip with any
``events`` key is fully annotated for events: cells no event span covers are negatives.

Encoders stay frozen: each clip is decoded once onto the grid (``pipeline.sources``), turned
into per-cell features (:class:`operators.fusion.CellFeaturizer`) and cached under
``<cache_dir>/<sha256 of the file>-<features and grid>.pt`` (default cache_dir:
``<data_dir>/.avgrid-cache``, or ``~/.cache/avgrid`` when the data directory is read-only). Only the fusion model and its
heads train; the epoch with the best validation score is saved as the bundle.

    report = train("data/", "bundle/", epochs=30, seed=0)
    print(format_metrics(evaluate("bundle/", "data/")))
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from operators.fusion import Bundle, CellFeaturizer, FusionConfig, FusionModel, default_preprocessing
from operators.fusion.bundle import sha256_file
from pipeline.errors import AvgridError, SourceError
from pipeline.grid import Cell, GridConfig

log = logging.getLogger("avgrid.train")
SENTIMENTS = ["negative", "neutral", "positive"]
MAX_CAPTIONS = 512          # more distinct captions than this: no learned caption head (template instead)


class DataError(AvgridError):
    """A data directory or labels file that cannot be used; names the file (and line) and the reason."""


# --------------------------------------------------------------------------- labels

def read_labels(data_dir: str | Path) -> dict[str, list[dict]]:
    """``labels.jsonl`` grouped by clip, in file order."""
    path = Path(data_dir) / "labels.jsonl"
    if not path.is_file():
        raise DataError(f"{path}: missing (a data directory needs clips plus labels.jsonl)")
    out: dict[str, list[dict]] = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
            clip = line["clip"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataError(f"{path}:{n}: not a JSON object with a 'clip' key ({e})") from None
        if line.get("sentiment") is not None and line["sentiment"] not in SENTIMENTS:
            raise DataError(f"{path}:{n}: sentiment {line['sentiment']!r} is not one of {SENTIMENTS}")
        out.setdefault(clip, []).append(line)
    if not out:
        raise DataError(f"{path}: no labels")
    return out


def _event(e) -> tuple[str, str]:
    return (e, "") if isinstance(e, str) else (e["label"], e.get("modality", ""))


@dataclass
class Vocab:
    """Label sets per head, in a fixed (sorted) order."""

    actions: list[str]
    events: list[str]
    event_modalities: list[str]
    captions: list[str]

    @classmethod
    def from_lines(cls, lines: list[dict]) -> "Vocab":
        actions = sorted({ln["action"] for ln in lines if ln.get("action")})
        mods: dict[str, str] = {}
        for ln in lines:
            for e in ln.get("events") or []:
                label, mod = _event(e)
                mods[label] = mod or mods.get(label) or "audiovisual"
        captions = sorted({ln["caption"] for ln in lines if ln.get("caption")})
        events = sorted(mods)
        return cls(actions, events, [mods[e] for e in events], captions if len(captions) <= MAX_CAPTIONS else [])


@dataclass
class Targets:
    """Per-cell training targets of one clip (T cells); -1 / NaN / False = not labelled."""

    action: torch.Tensor       # (T,) long
    events: torch.Tensor       # (T, E) float 0/1
    events_known: torch.Tensor  # (T,) bool
    sentiment: torch.Tensor    # (T,) long
    valence: torch.Tensor      # (T,) float
    arousal: torch.Tensor      # (T,) float
    caption: torch.Tensor      # (T,) long

    def map(self, fn) -> "Targets":
        """Apply ``fn(field name, tensor)`` to every field."""
        return Targets(*(fn(f, getattr(self, f)) for f in Targets.__dataclass_fields__))

    @staticmethod
    def stack(items: list["Targets"]) -> "Targets":
        return items[0].map(lambda f, _: torch.stack([getattr(t, f) for t in items]))


_UNLABELLED = {"action": -1, "events": 0.0, "events_known": False, "sentiment": -1, "valence": float("nan"),
               "arousal": float("nan"), "caption": -1}


def cell_targets(lines: list[dict], n_cells: int, vocab: Vocab, hop_s: float = 1.0, t0: float = 0.0) -> Targets:
    """Spread a clip's label lines onto its ``n_cells`` grid cells (cell k = [t0 + k*hop, t0 + (k+1)*hop))."""
    T, E = n_cells, len(vocab.events)
    tg = Targets(*(torch.full((T, E) if f == "events" else (T,), v) for f, v in _UNLABELLED.items()))
    starts = t0 + torch.arange(T) * hop_s
    for ln in lines:
        if "t_start" in ln:
            cells = (torch.minimum(starts + hop_s, torch.tensor(float(ln["t_end"])))
                     - torch.maximum(starts, torch.tensor(float(ln["t_start"])))) > 1e-6
        else:
            cells = torch.ones(T, dtype=torch.bool)
        if ln.get("action") in vocab.actions:
            tg.action[cells] = vocab.actions.index(ln["action"])
        if ln.get("sentiment"):
            tg.sentiment[cells] = SENTIMENTS.index(ln["sentiment"])
        for key in ("valence", "arousal"):
            if ln.get(key) is not None:
                getattr(tg, key)[cells] = float(ln[key])
        if ln.get("caption") in vocab.captions:
            tg.caption[cells] = vocab.captions.index(ln["caption"])
        if "events" in ln:
            tg.events_known[:] = True
            for e in ln["events"] or []:
                label = _event(e)[0]
                if label in vocab.events:
                    tg.events[cells, vocab.events.index(label)] = 1.0
    return tg


# --------------------------------------------------------------------------- features

@dataclass
class LabelledClip:
    """One clip's per-cell features (T cells) and its label lines."""

    name: str
    frame_feats: torch.Tensor   # (T, Dv)
    audio_feats: torch.Tensor   # (T, Da)
    video_mask: torch.Tensor    # (T,) bool
    audio_mask: torch.Tensor    # (T,) bool
    lines: list[dict]
    t0: float = 0.0

    @property
    def n_cells(self) -> int:
        return self.frame_feats.shape[0]


def decode_clip(path: str | Path, grid: GridConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Decode a file onto the grid: frames (T, F, H, W, 3), frame_mask (T, F), audio (T, S),
    audio_mask (T, S) and the media time t0 (s) of cell 0. Raises SourceError naming the file."""
    from pipeline.sources import open_source

    with open_source(str(path), grid, live=False) as src:
        cells = [c for c in src if isinstance(c, Cell)]
    if not cells:
        raise SourceError(str(path), "no grid cells decoded (no audio or video?)")
    seg = [c for c in cells if c.segment == cells[0].segment]  # a training clip is one continuous segment
    return (np.stack([c.frames for c in seg]), np.stack([c.frame_mask for c in seg]),
            np.stack([c.audio for c in seg]), np.stack([c.audio_mask for c in seg]), seg[0].t_start)


def clip_features(path: str | Path, featurizer: CellFeaturizer, grid: GridConfig,
                  cache_dir: str | Path | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Per-cell features of a file, from the cache when the same file (by sha256) was featurized
    with the same features and grid before. Returns (frame_feats, audio_feats, video_mask, audio_mask, t0)."""
    key = None
    if cache_dir is not None:
        params = json.dumps([featurizer.names, grid.hop_s, grid.fps, grid.frame_height, grid.frame_width])
        key = Path(cache_dir) / f"{sha256_file(path)}-{hashlib.sha256(params.encode()).hexdigest()[:12]}.pt"
        if key.is_file():
            d = torch.load(key, weights_only=True)
            return d["v"], d["a"], d["vm"], d["am"], float(d["t0"])
    frames, fm, audio, am, t0 = decode_clip(path, grid)
    v, a, vm, amask = featurizer.featurize(frames, fm, audio, am)
    if key is not None:
        key.parent.mkdir(parents=True, exist_ok=True)
        tmp = key.with_suffix(".tmp")
        torch.save({"v": v, "a": a, "vm": vm, "am": amask, "t0": torch.tensor(t0)}, tmp)
        tmp.replace(key)
    return v, a, vm, amask, t0


def load_clips(data_dir: str | Path, featurizer: CellFeaturizer, grid: GridConfig, *,
               cache_dir: str | Path | None = None, progress: bool = False) -> tuple[list[LabelledClip], list[str]]:
    """Featurize every clip named in labels.jsonl. A clip that is missing or cannot be decoded is
    skipped with a logged reason and listed in the second return value; the others go on."""
    from tqdm import tqdm

    data_dir = Path(data_dir)
    if cache_dir is None:   # next to the data, or in the user's cache when the data is read-only
        cache_dir = data_dir / ".avgrid-cache" if os.access(data_dir, os.W_OK) else Path.home() / ".cache" / "avgrid"
    clips, failed = [], []
    for name, lines in tqdm(read_labels(data_dir).items(), desc="features", disable=not progress, unit="clip"):
        path = data_dir / name
        try:
            if not path.is_file():
                raise SourceError(str(path), "listed in labels.jsonl but not found")
            v, a, vm, am, t0 = clip_features(path, featurizer, grid, cache_dir)
        except (SourceError, OSError) as e:
            log.warning("skipping clip: %s", e)
            failed.append(str(e))
            continue
        clips.append(LabelledClip(name, v, a, vm, am, lines, t0))
    if not clips:
        raise DataError(f"{data_dir}: none of the clips in labels.jsonl could be read ({'; '.join(failed[:3])})")
    return clips, failed


def clips_from_arrays(items, featurizer: CellFeaturizer) -> list[LabelledClip]:
    """LabelledClips from objects with ``name, frames, frame_mask, audio, audio_mask, lines``
    (e.g. :func:`pipeline.knowntruth.dataset.make_cells`), skipping the encode/decode round trip."""
    return [LabelledClip(it.name, *featurizer.featurize(it.frames, it.frame_mask, it.audio, it.audio_mask), it.lines)
            for it in items]


# --------------------------------------------------------------------------- batching

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
    for ci, c in enumerate(clips):
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
            parts["tg"].append(tg.map(lambda f, x: _pad(x[sl], W, _UNLABELLED[f])))
    return Batch(torch.stack(parts["v"]), torch.stack(parts["a"]), torch.stack(parts["vm"]), torch.stack(parts["am"]),
                 Targets.stack(parts["tg"]), torch.stack(parts["report"]))


# --------------------------------------------------------------------------- training

def _loss(out, tg: Targets, present: torch.Tensor) -> torch.Tensor:
    loss = out.action_logits.sum() * 0.0
    m = (tg.action >= 0) & present
    if m.any():
        loss = loss + F.cross_entropy(out.action_logits[m], tg.action[m])
    m = tg.events_known & present
    if m.any() and tg.events.shape[-1]:
        loss = loss + 2.0 * F.binary_cross_entropy_with_logits(out.event_logits[m], tg.events[m])
    m = (tg.sentiment >= 0) & present
    if m.any():
        loss = loss + F.cross_entropy(out.sentiment_logits[m], tg.sentiment[m])
    for pred, target in ((out.valence, tg.valence), (out.arousal, tg.arousal)):
        m = ~target.isnan() & present
        if m.any():
            loss = loss + F.mse_loss(pred[m], target[m])
    m = (tg.caption >= 0) & present
    if out.caption_logits is not None and m.any():
        loss = loss + F.cross_entropy(out.caption_logits[m], tg.caption[m])
    return loss


@dataclass
class TrainReport:
    """What ``train`` did. ``history``: one dict of validation metrics per epoch."""

    bundle: str
    model_id: str
    epochs: int
    best_epoch: int
    best_score: float
    val_metrics: dict
    history: list[dict]
    n_train_clips: int
    n_val_clips: int
    failed_clips: list[str]
    seconds: float

    def __str__(self) -> str:
        head = (f"saved {self.model_id} to {self.bundle}: {self.n_train_clips} train / {self.n_val_clips} validation "
                f"clips, best epoch {self.best_epoch}/{self.epochs} (score {self.best_score:.3f}), {self.seconds:.0f} s")
        return head + "\nvalidation:\n" + format_metrics({**self.val_metrics, "failed_clips": self.failed_clips})


def _normalisation(clips: list[LabelledClip]):
    def stats(x, m):
        x = x[m] if m.any() else x
        return x.mean(0), x.std(0).clamp(min=1e-3) if len(x) > 1 else torch.ones(x.shape[1])
    v = torch.cat([c.frame_feats for c in clips]); vm = torch.cat([c.video_mask for c in clips])
    a = torch.cat([c.audio_feats for c in clips]); am = torch.cat([c.audio_mask for c in clips])
    return (*stats(v, vm), *stats(a, am))


def _score(metrics: dict) -> float:
    """Model selection: mean macro-F1 over the heads that have labels."""
    f1s = [metrics[h]["macro_f1"] for h in ("action", "event", "sentiment") if h in metrics]
    return float(np.mean(f1s)) if f1s else 0.0


def train_clips(clips: list[LabelledClip], out_bundle: str | Path | None, *, featurizer: CellFeaturizer,
                preprocessing: dict, epochs: int = 30, seed: int = 0, window: int = 8, val_fraction: float = 0.2,
                progress: bool = True, name: str = "avgrid-fusion", modalities=("video", "audio"),
                causal: bool = True, d_model: int = 64, layers: int = 2, heads: int = 4, dropout: float = 0.1,
                lr: float = 2e-3, batch_size: int = 32, modality_dropout: float = 0.05,
                failed_clips: list[str] | None = None) -> tuple[Bundle, TrainReport]:
    """Train on featurized clips; saves the best epoch's bundle to ``out_bundle`` (unless None).

    The split is by clip (``val_fraction`` of them, at least one when there are two or more),
    seeded by ``seed`` like the initialisation and the batch order."""
    t_begin = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(clips))
    n_val = 0 if len(clips) < 2 else max(1, int(round(val_fraction * len(clips))))
    val = [clips[i] for i in order[:n_val]]
    tr = [clips[i] for i in order[n_val:]]
    vocab = Vocab.from_lines([ln for c in clips for ln in c.lines])
    hop_s = float(preprocessing["hop_s"])
    cfg = FusionConfig(video_dim=featurizer.dims["video"], audio_dim=featurizer.dims["audio"],
                       action_labels=vocab.actions, event_labels=vocab.events, event_modalities=vocab.event_modalities,
                       caption_labels=vocab.captions, d_model=d_model, layers=layers, heads=heads,
                       window_cells=window, causal=causal, dropout=dropout, modalities=list(modalities),
                       video_features=featurizer.names["video"], audio_features=featurizer.names["audio"])
    model = FusionModel(cfg)
    model.set_normalisation(*_normalisation(tr))
    data = make_windows(tr, vocab, window, stride=max(1, window // 2), hop_s=hop_s)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, epochs * -(-len(data.v) // batch_size)))
    preprocessing = {**preprocessing, "window_cells": window}
    bundle = Bundle(name, model, preprocessing, featurizer)
    best = (-1.0, 0, None, {})
    history = []
    from tqdm import tqdm

    bar = tqdm(range(1, epochs + 1), desc="train", disable=not progress, unit="epoch")
    for epoch in bar:
        model.train()
        perm = torch.from_numpy(rng.permutation(len(data.v)))
        for i in range(0, len(perm), batch_size):
            b = data.take(perm[i:i + batch_size])
            vm, am = b.vm, b.am
            present = vm | am
            if modality_dropout:   # teaches the model that media can go missing
                vm = vm & (torch.rand(vm.shape) >= modality_dropout)
                am = am & (torch.rand(am.shape) >= modality_dropout)
            loss = _loss(model(b.v, b.a, vm, am), b.tg, present)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
        model.eval()
        metrics = evaluate_clips(bundle, val or tr, vocab=vocab)
        score = _score(metrics)
        history.append({"epoch": epoch, "loss": float(loss.detach()), "score": score, **metrics})
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}", val=f"{score:.3f}")
        log.info("epoch %d/%d: loss %.4f, validation macro-F1 action %s event %s sentiment %s", epoch, epochs,
                 float(loss.detach()), *(f"{metrics[h]['macro_f1']:.3f}" if h in metrics else "-"
                                         for h in ("action", "event", "sentiment")))
        if score > best[0]:
            best = (score, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()}, metrics)
    model.load_state_dict(best[2])
    model.eval()
    bundle.metrics = {"validation": best[3], "best_epoch": best[1]}
    if out_bundle is not None:
        bundle.save(out_bundle)
    report = TrainReport(str(out_bundle), bundle.model_id, epochs, best[1], best[0], best[3], history,
                         len(tr), len(val), failed_clips or [], time.perf_counter() - t_begin)
    return bundle, report


def train(data_dir: str | Path, out_bundle: str | Path, *, epochs: int = 30, seed: int = 0, window: int = 8,
          hop: float = 1.0, fps: float = 4.0, val_fraction: float = 0.2,
          features: str = "grid-stats-v1+logmel-stats-v1", progress: bool = True,
          cache_dir: str | Path | None = None, frame_size: tuple[int, int] = (112, 112),
          encoder_weights: str | None = None, **model_kw) -> TrainReport:
    """Train a bundle from ``data_dir`` (clips + labels.jsonl) and save it to ``out_bundle``.

    ``hop`` is the cell length in s, ``fps`` frames per cell-second, ``window`` the W cells the
    model sees; ``features`` names the frozen extractors; features are cached in ``cache_dir``
    (default ``<data_dir>/.avgrid-cache``). ``model_kw`` go to :func:`train_clips`."""
    featurizer = CellFeaturizer.from_spec(features, encoder_weights=encoder_weights)
    grid = GridConfig(hop_s=hop, fps=fps, frame_height=frame_size[0], frame_width=frame_size[1])
    clips, failed = load_clips(data_dir, featurizer, grid, cache_dir=cache_dir, progress=progress)
    pre = default_preprocessing(fps=fps, hop_s=hop, frame_size=frame_size, window_cells=window)
    _, report = train_clips(clips, out_bundle, featurizer=featurizer, preprocessing=pre, epochs=epochs, seed=seed,
                            window=window, val_fraction=val_fraction, progress=progress, failed_clips=failed,
                            **model_kw)
    return report


# --------------------------------------------------------------------------- evaluation

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


def main(argv: list[str] | None = None) -> int:
    """``avgrid train --data DIR --out BUNDLE`` / ``avgrid eval --bundle B --data DIR`` (the options are
    defined in :mod:`pipeline.cli`, which builds ``avgrid --help`` without importing torch)."""
    from pipeline.cli import EVAL_DESCRIPTION, TRAIN_DESCRIPTION, add_eval_arguments, add_train_arguments

    p = argparse.ArgumentParser(prog="avgrid")
    sub = p.add_subparsers(dest="cmd", required=True)
    add_train_arguments(sub.add_parser("train", help="train a fusion bundle from labelled clips",
                                       description=TRAIN_DESCRIPTION))
    add_eval_arguments(sub.add_parser("eval", help="per-head accuracy / macro-F1 / mAP of a bundle on labelled "
                                      "clips", description=EVAL_DESCRIPTION))
    args = p.parse_args(argv)
    return run_command(args.cmd, args)


def run_command(cmd: str, args: argparse.Namespace) -> int:
    """Run ``train`` or ``eval`` with parsed options (see :func:`add_train_arguments`)."""
    try:
        if cmd == "train":
            r = train(args.data, args.out, epochs=args.epochs, seed=args.seed, window=args.window,
                      features=args.features)
            print(r)
            return 1 if r.failed_clips else 0
        m = evaluate(args.bundle, args.data)
        print(m)
        return 1 if m["failed_clips"] else 0
    except (AvgridError, ValueError) as err:
        print(f"avgrid {cmd}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
