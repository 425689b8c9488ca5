"""How the sound operators' results become observations (records).

- ``sound_events`` / ``sound_events_panns``: every class on in a cell is an ``event`` with the AudioSet
  display name as label, ``modality="audio"``, the class score, and the top-level AudioSet category in
  ``detail``. Consecutive cells merge into one record (the operator's hysteresis keeps a sound on).
  Affective classes (laughter, crying, screaming, cheering, applause) also give an ``audio`` sentiment.
- ``transcripts`` / ``transcripts_wav2vec2``: each closed speech span is one ``caption`` record
  (``method="asr"``, the text, the recogniser's confidence in ``score``) with exactly the span's times,
  and one ``speech`` sentiment record over the same times (its ``model`` names the sentiment method).
"""

from __future__ import annotations

import numpy as np

from pipeline.runtime.analyzers import adapter
from pipeline.runtime.builder import Observation

# affective AudioSet classes -> (sentiment label, valence at score 1, arousal)
AFFECT = {
    "Laughter": ("positive", 0.7, 0.65), "Baby laughter": ("positive", 0.7, 0.65), "Giggle": ("positive", 0.6, 0.55),
    "Snicker": ("positive", 0.4, 0.45), "Belly laugh": ("positive", 0.8, 0.75),
    "Chuckle, chortle": ("positive", 0.5, 0.45),
    "Cheering": ("positive", 0.7, 0.85), "Applause": ("positive", 0.5, 0.6), "Clapping": ("positive", 0.3, 0.5),
    "Crying, sobbing": ("negative", -0.7, 0.6), "Baby cry, infant cry": ("negative", -0.6, 0.7),
    "Whimper": ("negative", -0.5, 0.4), "Wail, moan": ("negative", -0.6, 0.6), "Screaming": ("negative", -0.6, 0.95),
    "Groan": ("negative", -0.4, 0.4),
}
AFFECT_METHOD = "affect-map(laughter,cheering,applause:+;crying,screaming:-)"


def _category_names(det, res) -> list[str | None]:
    from operators.detectors.sound_events import CATEGORIES

    cat = getattr(det, "category", None)
    if cat is None or len(cat) != len(res.labels):
        return [None] * len(res.labels)
    return [CATEGORIES[int(i)] for i in np.asarray(cat)]


def sound_event_observations(name: str, det, res, cells) -> list[list[Observation]]:
    T = len(cells)
    obs: list[list[Observation]] = [[] for _ in range(T)]
    scores, hits = np.asarray(res.scores, np.float64), np.asarray(res.fired, bool)
    details = _category_names(det, res)
    model = f"{name}:{res.method}"
    for t in range(T):
        best = None
        for li in np.flatnonzero(hits[t]):
            label, score = res.labels[li], float(scores[t, li])
            obs[t].append(Observation("event", label, score, model, modality="audio", operator=name,
                                      detail=details[li]))
            if label in AFFECT and (best is None or score > best[1]):
                best = (label, score)
        if best is not None:
            obs[t].append(affect_observation(name, det, *best))
    return obs


def affect_observation(name: str, det, label: str, score: float) -> Observation:
    """An ``audio`` sentiment from an affective sound class with its score (0..1)."""
    senti, valence, arousal = AFFECT[label]
    s = float(np.clip(score, 0.0, 1.0))
    pos = s if senti == "positive" else 0.0
    neg = s if senti == "negative" else 0.0
    values = (("negative", neg), ("neutral", 1.0 - s), ("positive", pos), ("valence", valence * s),
              ("arousal", arousal))
    model_id = getattr(det, "model_id", name)
    return Observation("sentiment", senti, s, f"{name}:{AFFECT_METHOD} from {label!r} ({model_id})",
                       modality="audio", values=values, operator=name)


def transcript_observations(name: str, det, res, cells) -> list[list[Observation]]:
    obs: list[list[Observation]] = [[] for _ in range(len(cells))]
    if not cells:
        return obs
    t_call = cells[0].t_start
    for sp in res.spans:
        if not sp.text:
            continue
        span = (t_call + sp.t0_s, t_call + sp.t1_s)
        obs[sp.cell].append(Observation("caption", sp.text, sp.confidence, f"{name}:{res.method}", method="asr",
                                        operator=name, span=span))
        if sp.sentiment is not None:
            obs[sp.cell].append(Observation("sentiment", sp.sentiment.label, None,
                                            f"{name}:{res.sentiment_method}", modality="speech",
                                            values=sp.sentiment.values(), operator=name, span=span))
    return obs


for _name in ("sound_events", "sound_events_panns"):
    adapter(_name)(sound_event_observations)
for _name in ("transcripts", "transcripts_wav2vec2"):
    adapter(_name)(transcript_observations)
