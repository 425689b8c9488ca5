"""The ``bundle`` profile: a trained fusion bundle's heads (action, event, sentiment, caption) per cell.

The bundle's temporal model sees a window of ``window_cells``; the state carries the last
``window_cells - 1`` cells so each call's cells are predicted with their past as context
(causal, the same for live and archives, independent of how cells were batched).
"""

from __future__ import annotations

import numpy as np

from pipeline.grid import GridConfig
from pipeline.runtime.analyzers import stack
from pipeline.runtime.builder import Observation


def bundle_grid(preprocessing: dict) -> dict:
    """The grid geometry a bundle was trained with (GridConfig keyword arguments)."""
    return {"hop_s": float(preprocessing["hop_s"]), "fps": float(preprocessing["fps"]),
            "frame_height": int(preprocessing["frame_height"]), "frame_width": int(preprocessing["frame_width"])}


class BundleAnalyzer:
    def __init__(self, path: str, grid: GridConfig, device: str = "cpu"):
        from operators.fusion import Bundle

        self.bundle = Bundle.load(path)
        self.window = int(self.bundle.config.window_cells)
        self.required_grid = GridConfig(**bundle_grid(self.bundle.preprocessing))   # sources must use it
        self.models = [self.bundle.model_id]

    def __call__(self, cells, state):
        import torch

        # features once per cell (the frozen encoders are the expensive part), kept as context
        feats = [torch.as_tensor(np.asarray(f)) for f in self.bundle.featurizer.featurize(*stack(cells))]
        ctx = 0
        if state is not None:
            ctx = len(state[0])
            feats = [torch.cat([h, f]) for h, f in zip(state, feats)]
        keep = max(0, self.window - 1)
        state = [f[len(f) - keep:] for f in feats] if keep else None
        # one window ending at each cell: its prediction sees up to window-1 cells of past
        outputs = []
        for t in range(ctx, len(feats[0])):
            s = max(0, t - self.window + 1)
            outputs.append(self.bundle.predict_features(*(f[s:t + 1] for f in feats))[-1])
        model = self.bundle.model_id
        obs: list[list[Observation]] = []
        for out in outputs:
            cell: list[Observation] = []
            if out is not None:
                label, score, ranked = out["action"]
                cell.append(Observation("action", label, score, model, top_k=tuple(ranked), operator="bundle"))
                for lab, modality, sc in out["events"]:
                    cell.append(Observation("event", lab, sc, model, modality=modality, operator="bundle"))
                lab, neg, neu, pos, val, aro = out["sentiment"]
                cell.append(Observation("sentiment", lab, max(neg, neu, pos), model,
                                        values=(("negative", neg), ("neutral", neu), ("positive", pos),
                                                ("valence", val), ("arousal", aro)), modality="audiovisual",
                                        operator="bundle"))
                text, method = out["caption"]
                cell.append(Observation("caption", text, None, model, method=method, operator="bundle"))
            obs.append(cell)
        return obs, state
