"""Clips to per-cell features: decode onto the grid once, featurize with the frozen extractors, cache.

Encoders stay frozen: each clip is decoded once onto the grid (:mod:`pipeline.sources`), turned
into per-cell features (:class:`operators.fusion.CellFeaturizer`) and cached under
``<cache_dir>/<sha256 of the file>-<features and grid>.pt`` (default cache_dir:
``<data_dir>/.avgrid-cache``, or ``~/.cache/avgrid`` when the data directory is read-only).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from operators.fusion import CellFeaturizer
from operators.fusion.bundle import sha256_file
from pipeline.errors import SourceError
from pipeline.grid import Cell, GridConfig
from pipeline.training.labels import DataError, read_labels

log = logging.getLogger("avgrid.train")


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
