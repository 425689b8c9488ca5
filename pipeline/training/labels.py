"""Label files onto the grid: ``labels.jsonl`` read and checked, label sets per head, per-cell targets.

``labels.jsonl`` (in a data directory, next to the clips): each line names a ``clip`` (path
relative to the directory) and labels either the whole clip (no ``t_start``/``t_end``) or a time
span in media seconds; a span labels every grid cell it overlaps. Keys: ``action`` (str),
``events`` (list of str or ``{"label", "modality"}``), ``sentiment`` (negative / neutral /
positive), ``valence`` (-1..1), ``arousal`` (0..1), ``caption`` (str). A clip with any ``events``
key is fully annotated for events: cells no event span covers are negatives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.errors import AvgridError

SENTIMENTS = ["negative", "neutral", "positive"]
MAX_CAPTIONS = 512          # more distinct captions than this: no learned caption head (template instead)


class DataError(AvgridError):
    """A data directory or labels file that cannot be used; names the file (and line) and the reason."""


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


UNLABELLED = {"action": -1, "events": 0.0, "events_known": False, "sentiment": -1, "valence": float("nan"),
              "arousal": float("nan"), "caption": -1}


def cell_targets(lines: list[dict], n_cells: int, vocab: Vocab, hop_s: float = 1.0, t0: float = 0.0) -> Targets:
    """Spread a clip's label lines onto its ``n_cells`` grid cells (cell k = [t0 + k*hop, t0 + (k+1)*hop))."""
    T, E = n_cells, len(vocab.events)
    tg = Targets(*(torch.full((T, E) if f == "events" else (T,), v) for f, v in UNLABELLED.items()))
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
