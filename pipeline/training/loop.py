"""The training loop: only the fusion model and its heads train (encoders stay frozen); the epoch
with the best validation score is kept and saved as the bundle."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from operators.fusion import Bundle, CellFeaturizer, FusionConfig, FusionModel, default_preprocessing
from pipeline.grid import GridConfig
from pipeline.training.features import LabelledClip, load_clips
from pipeline.training.labels import Targets, Vocab
from pipeline.training.metrics import evaluate_clips, format_metrics
from pipeline.training.windows import make_windows

log = logging.getLogger("avgrid.train")


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
