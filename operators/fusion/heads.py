"""The four heads on top of the fusion transformer, and decoding their outputs per cell.

Heads (input (B, W, 2*d_model), one vector per cell):
  action     softmax over ``action_labels``
  event      independent sigmoids over ``event_labels`` (multi-label)
  sentiment  softmax over negative / neutral / positive, plus valence in [-1, 1] and arousal in [0, 1]
  caption    softmax over ``caption_labels`` (caption retrieval learned from the training captions),
             only when the config has captions; otherwise :func:`template_caption` writes one
             from the cell's decoded outputs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

TEMPLATE_METHOD = "template-v1"


class FusionOutput(NamedTuple):
    """Raw head outputs for a batch of windows; shapes (B, W, ...)."""

    action_logits: torch.Tensor          # (B, W, A) softmax logits
    event_logits: torch.Tensor           # (B, W, E) independent sigmoid logits
    sentiment_logits: torch.Tensor       # (B, W, 3) negative / neutral / positive
    valence: torch.Tensor                # (B, W) in [-1, 1]
    arousal: torch.Tensor                # (B, W) in [0, 1]
    caption_logits: torch.Tensor | None  # (B, W, C) over caption_labels, or None


class FusionHeads(nn.Module):
    def __init__(self, dim: int, cfg):
        super().__init__()
        self.action = nn.Linear(dim, len(cfg.action_labels))
        self.event = nn.Linear(dim, len(cfg.event_labels))
        self.sentiment = nn.Linear(dim, len(cfg.sentiment_labels))
        self.affect = nn.Linear(dim, 2)
        self.caption = nn.Linear(dim, len(cfg.caption_labels)) if cfg.caption_labels else None

    def forward(self, h: torch.Tensor):
        affect = self.affect(h)
        return FusionOutput(self.action(h), self.event(h), self.sentiment(h), torch.tanh(affect[..., 0]),
                            torch.sigmoid(affect[..., 1]), self.caption(h) if self.caption is not None else None)


def template_caption(cell: dict) -> str:
    """A sentence from a decoded cell: its action, the events above threshold and the mood."""
    action = cell["action"][0].replace("_", " ")
    events = [e[0].replace("_", " ") for e in cell["events"]]
    text = f"{action}"
    if events:
        text += " with " + (", ".join(events[:-1]) + " and " + events[-1] if len(events) > 1 else events[0])
    return f"{text}; mood {cell['sentiment'][0]}"


def decode_cells(out, cfg, *, model_id: str, present: torch.Tensor, event_threshold: float = 0.5,
                 top_k: int = 3) -> list[dict | None]:
    """Decode one window (batch item 0 of ``out``) into per-cell dicts; ``None`` for cells with no media.

    ``present`` (W,) bool. Each dict: ``action=(label, score, [(label, score), ...top_k])``,
    ``events=[(label, modality, score), ...]`` (score >= event_threshold),
    ``sentiment=(label, negative, neutral, positive, valence, arousal)``, ``caption=(text, method)``.
    """
    act = out.action_logits[0].softmax(-1)
    ev = out.event_logits[0].sigmoid()
    sent = out.sentiment_logits[0].softmax(-1)
    cap = out.caption_logits[0].softmax(-1) if out.caption_logits is not None else None
    cells: list[dict | None] = []
    for k in range(act.shape[0]):
        if not bool(present[k]):
            cells.append(None)
            continue
        scores, idx = act[k].topk(min(top_k, act.shape[1]))
        ranked = [(cfg.action_labels[i], float(s)) for s, i in zip(scores.tolist(), idx.tolist())]
        p = sent[k].tolist()
        cell = {
            "action": (ranked[0][0], ranked[0][1], ranked),
            "events": [(cfg.event_labels[i], cfg.event_modalities[i], float(ev[k, i]))
                       for i in range(ev.shape[1]) if ev[k, i] >= event_threshold],
            "sentiment": (cfg.sentiment_labels[int(sent[k].argmax())], *p,
                          float(out.valence[0, k]), float(out.arousal[0, k])),
        }
        if cap is not None:
            cell["caption"] = (cfg.caption_labels[int(cap[k].argmax())], f"learned-caption-retrieval:{model_id}")
        else:
            cell["caption"] = (template_caption(cell), f"{TEMPLATE_METHOD}:{model_id}")
        cells.append(cell)
    return cells
