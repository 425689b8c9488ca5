"""Bundles: a trained fusion model as a directory that a pipeline run can load and check.

Layout::

    <bundle>/bundle.json        format, name, FusionConfig (label lists per head, feature names and
                                dims), preprocessing, weights file name and its sha256
    <bundle>/model.safetensors  weights (or model.pt: a state dict, loaded with weights_only=True)

``Bundle.load`` refuses a bundle whose weights do not hash to the recorded sha256, and a
featurizer other than the one the bundle was trained on.

Example::

    b = Bundle.load("avgrid-bundle")
    b.model_id                          # 'bundle:avgrid-fusion@3f2a9c01d4e5'
    cells = b.predict(frames, frame_mask, audio, audio_mask)   # one dict (or None) per cell
    cells[0]["action"]                  # ('move_left', 0.97, [('move_left', 0.97), ...])
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from operators.fusion.features import CellFeaturizer
from operators.fusion.heads import decode_cells
from operators.fusion.model import FusionConfig, FusionModel

FORMAT = "avgrid-bundle"
FORMAT_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_preprocessing(*, fps: float = 4.0, hop_s: float = 1.0, frame_size: tuple[int, int] = (112, 112),
                          window_cells: int = 8) -> dict:
    """Grid geometry the bundle expects: frames per second, (height, width) in px, hop in s, 16 kHz audio."""
    return {"fps": fps, "frame_height": frame_size[0], "frame_width": frame_size[1],
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "sample_rate_hz": 16_000,
            "hop_s": hop_s, "window_cells": window_cells}


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the bundle path and the reason."""

    def __init__(self, path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Bundle:
    """A fusion model with everything needed to run it: config, preprocessing, featurizer, identity."""

    def __init__(self, name: str, model: FusionModel, preprocessing: dict, featurizer: CellFeaturizer | None = None,
                 *, sha256: str | None = None, path: str | Path | None = None, metrics: dict | None = None):
        self.name = name
        self.model = model.eval()
        self.config: FusionConfig = model.cfg
        self.preprocessing = dict(preprocessing)
        self.featurizer = featurizer or CellFeaturizer(self.config.video_features, self.config.audio_features)
        self.sha256 = sha256
        self.path = Path(path) if path else None
        self.metrics = metrics or {}

    @property
    def model_id(self) -> str:
        return f"bundle:{self.name}@{self.sha256[:12] if self.sha256 else 'unsaved'}"

    @property
    def labels(self) -> dict[str, list[str]]:
        c = self.config
        return {"action": list(c.action_labels), "event": list(c.event_labels),
                "sentiment": list(c.sentiment_labels), "caption": list(c.caption_labels)}

    def save(self, path: str | Path, *, weights_format: str = "safetensors") -> Path:
        """Write the bundle directory (weights first, then bundle.json naming their sha256)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        if weights_format == "safetensors":
            from safetensors.torch import save_file

            weights = "model.safetensors"
            save_file(state, str(path / weights))
        elif weights_format == "pt":
            weights = "model.pt"
            torch.save(state, path / weights)
        else:
            raise ValueError(f"weights_format {weights_format!r}: use 'safetensors' or 'pt'")
        self.sha256, self.path = sha256_file(path / weights), path
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "name": self.name,
                "config": self.config.to_dict(), "preprocessing": self.preprocessing,
                "features": self.featurizer.names, "weights": weights, "sha256": self.sha256,
                "metrics": self.metrics}
        tmp = path / "bundle.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, path / "bundle.json")
        return path

    @classmethod
    def load(cls, path: str | Path, *, featurizer: CellFeaturizer | None = None,
             encoder_weights: str | None = None) -> "Bundle":
        """Load and verify a bundle directory.

        Raises BundleError when bundle.json is missing or malformed, the weights' sha256
        differs from the recorded one, or ``featurizer`` (or the one built from the recorded
        names) is not the one the bundle was trained on.
        """
        path = Path(path)
        try:
            meta = json.loads((path / "bundle.json").read_text())
        except FileNotFoundError:
            raise BundleError(path, "no bundle.json (not a bundle directory)") from None
        except json.JSONDecodeError as e:
            raise BundleError(path, f"bundle.json is not valid JSON: {e}") from None
        if meta.get("format") != FORMAT or meta.get("format_version", 0) > FORMAT_VERSION:
            raise BundleError(path, f"unsupported bundle format {meta.get('format')!r} v{meta.get('format_version')}")
        weights = path / meta["weights"]
        if not weights.is_file():
            raise BundleError(path, f"weights file {meta['weights']} is missing")
        digest = sha256_file(weights)
        if digest != meta["sha256"]:
            raise BundleError(path, f"sha256 mismatch for {meta['weights']}: recorded {meta['sha256'][:12]}..., "
                                    f"file has {digest[:12]}... (corrupted or altered weights)")
        if weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(weights))
        else:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        cfg = FusionConfig.from_dict(meta["config"])
        if featurizer is None:
            try:
                featurizer = CellFeaturizer.from_spec(f"{cfg.video_features}+{cfg.audio_features}",
                                                      encoder_weights=encoder_weights)
            except Exception as e:   # unknown names, missing encoder weights: say which and why
                raise BundleError(path, f"cannot build its features ({type(e).__name__}: {e}); "
                                        "pass the featurizer (or encoder_weights) it was trained with") from e
        want = {"video": cfg.video_features, "audio": cfg.audio_features}
        if featurizer.names != want or featurizer.dims != {"video": cfg.video_dim, "audio": cfg.audio_dim}:
            raise BundleError(path, f"trained on features {want} (dims {cfg.video_dim}/{cfg.audio_dim}), "
                                    f"refusing {featurizer.names} (dims {featurizer.dims['video']}/{featurizer.dims['audio']})")
        model = FusionModel(cfg)
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise BundleError(path, f"weights do not fit the config: {e}") from None
        return cls(meta["name"], model, meta["preprocessing"], featurizer, sha256=digest, path=path,
                   metrics=meta.get("metrics"))

    @torch.no_grad()
    def forward_features(self, frame_feats, audio_feats, video_mask, audio_mask):
        """Run the model over T cells of features ((T, Dv), (T, Da), (T,), (T,)) in windows of W cells.

        Returns a list of per-window FusionOutput (batch 1) and the window slices."""
        T, W = frame_feats.shape[0], self.config.window_cells
        outs = []
        for s in range(0, T, W):
            sl = slice(s, min(T, s + W))
            outs.append((sl, self.model(frame_feats[None, sl], audio_feats[None, sl],
                                        video_mask[None, sl], audio_mask[None, sl])))
        return outs

    def predict_features(self, frame_feats, audio_feats, video_mask, audio_mask, *, event_threshold: float = 0.5,
                         top_k: int = 3) -> list[dict | None]:
        """Decoded outputs for T cells of features; see :func:`operators.fusion.heads.decode_cells`."""
        cells: list[dict | None] = []
        present = video_mask | audio_mask
        for sl, out in self.forward_features(frame_feats, audio_feats, video_mask, audio_mask):
            cells += decode_cells(out, self.config, model_id=self.model_id, present=present[sl],
                                  event_threshold=event_threshold, top_k=top_k)
        return cells

    def predict(self, frames, frame_mask, audio, audio_mask, *, event_threshold: float = 0.5,
                top_k: int = 3) -> list[dict | None]:
        """Per-cell outputs for T consecutive cells (a window; longer inputs run as consecutive windows).

        frames (T, F, H, W, 3) uint8, frame_mask (T, F) bool, audio (T, S) float32 16 kHz,
        audio_mask (T, S) bool. Returns T entries: None for a cell with no media, else a dict
        with action, events, sentiment and caption (see :func:`operators.fusion.heads.decode_cells`).
        """
        feats = self.featurizer.featurize(frames, frame_mask, audio, audio_mask)
        return self.predict_features(*feats, event_threshold=event_threshold, top_k=top_k)
