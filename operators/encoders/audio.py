"""Audio encoders: log-mel (torchaudio) + the PANNs CNN14 / CNN10 / CNN6 audio-tagging networks.

    aenc = build("panns_cnn14", weights="/models/Cnn14_mAP=0.431.pth")   # or weights="DEFAULT": torch cache
    out = aenc(audio)        # (N, S) float32 mono at input_sample_rate_hz (16 kHz, the grid's rate)
    out["embedding"]         # (N, 2048) float32
    out["clipwise"]          # (N, 527) float32 AudioSet probabilities (sigmoid), names in aenc.labels

State-dict keys match the public PANNs checkpoints (Kong et al. 2020, zenodo.org/record/3987831;
the ``model`` entry of the ``.pth``), so a checkpoint a user has loads strictly. The checkpoint's
STFT and mel-filterbank buffers are not used: torchaudio computes the same log-mel front end
(periodic Hann window, reflect padding, Slaney mel scale and norm, 10*log10 power). Their shapes
are still checked, so a 16 kHz checkpoint in a 32 kHz config is refused rather than silently wrong.

``panns_cnn6`` (4.8 M parameters, one 5x5 conv per block) is the small variant for CPUs.

AudioSet class names ship as ``audioset_labels.csv`` (index, mid, display_name), from the AudioSet
ontology by Google, licensed CC BY 4.0 (research.google.com/audioset); ``labels_file`` overrides it.
"""

from __future__ import annotations

import csv
import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from operators.registry import register
from operators.weights import WeightsError, cached_file, file_tag, load_into, load_state_dict

ZENODO = "https://zenodo.org/record/3987831"
# (architecture, model sample rate) -> public checkpoint file name
CHECKPOINTS = {("cnn14", 32000): "Cnn14_mAP=0.431.pth", ("cnn14", 16000): "Cnn14_16k_mAP=0.438.pth",
               ("cnn10", 32000): "Cnn10_mAP=0.380.pth", ("cnn6", 32000): "Cnn6_mAP=0.343.pth"}
# architecture -> (channels per conv block, convs per block, last block pools time/frequency)
ARCHS = {"cnn14": ((64, 128, 256, 512, 1024, 2048), 2, False),
         "cnn10": ((64, 128, 256, 512), 2, True),
         "cnn6": ((64, 128, 256, 512), 1, True)}
FRONT_END_KEYS = ("spectrogram_extractor.", "logmel_extractor.")


@dataclass(frozen=True)
class PannsConfig:
    """Options for the PANNs encoders. Units in the names.

    weights: ``"DEFAULT"`` (the public checkpoint file in ``$TORCH_HOME/hub/checkpoints``, fetched
      from Zenodo into it when missing and ``download``), a local checkpoint file, or None for
      untrained weights (needs ``allow_random=True``).
    sample_rate_hz: the rate the network works at: 32000 (all public checkpoints) or 16000 (CNN14_16k).
    input_sample_rate_hz: the rate of the audio passed in; resampled when it differs.
    fmax_hz: None means PANNs' choice, 14000 at 32 kHz and 8000 at 16 kHz.
    labels_file: CSV with ``index,mid,display_name`` rows; None: the packaged AudioSet list.
    """

    weights: str | None = "DEFAULT"
    allow_random: bool = False
    download: bool = True
    device: str = "cpu"
    sample_rate_hz: int = 32000
    input_sample_rate_hz: int = 16000
    mel_bins: int = 64
    fmin_hz: float = 50.0
    fmax_hz: float | None = None
    num_classes: int = 527
    labels_file: str | None = None


class ConvBlock(nn.Module):
    """PANNs conv block: one 5x5 or two 3x3 (conv, batch norm, ReLU), then 2-D average pooling."""

    def __init__(self, cin: int, cout: int, n_convs: int):
        super().__init__()
        k = 3 if n_convs == 2 else 5
        self.conv1 = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        if n_convs == 2:
            self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor, pool: tuple[int, int]) -> torch.Tensor:
        x = F.relu_(self.bn1(self.conv1(x)))
        if hasattr(self, "conv2"):
            x = F.relu_(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, pool)


class PannsCNN(nn.Module):
    """The PANNs network on a log-mel spectrogram ``(N, 1, frames, mel_bins)``.

    Returns ``(embedding (N, D), clipwise (N, num_classes))``; D is the last block's channel count.
    """

    def __init__(self, arch: str, mel_bins: int = 64, num_classes: int = 527):
        super().__init__()
        channels, n_convs, self._pool_last = ARCHS[arch]
        self.bn0 = nn.BatchNorm2d(mel_bins)
        cins = (1, *channels[:-1])
        for i, (cin, cout) in enumerate(zip(cins, channels), start=1):
            setattr(self, f"conv_block{i}", ConvBlock(cin, cout, n_convs))
        self.n_blocks = len(channels)
        self.fc1 = nn.Linear(channels[-1], channels[-1])
        self.fc_audioset = nn.Linear(channels[-1], num_classes)

    def forward(self, logmel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.bn0(logmel.transpose(1, 3)).transpose(1, 3)      # batch norm per mel bin
        for i in range(1, self.n_blocks + 1):
            last = i == self.n_blocks
            x = getattr(self, f"conv_block{i}")(x, (2, 2) if not last or self._pool_last else (1, 1))
            x = F.dropout(x, 0.2, self.training)
        x = x.mean(dim=3)                                          # over frequency
        x = x.max(dim=2).values + x.mean(dim=2)                    # over time
        x = F.dropout(x, 0.5, self.training)
        embedding = F.relu_(self.fc1(x))
        return embedding, torch.sigmoid(self.fc_audioset(F.dropout(embedding, 0.5, self.training)))


class AudioEncoder(nn.Module):
    """``forward(audio)``: ``(N, S)`` float32 at ``input_sample_rate_hz`` -> dict with ``embedding (N, D)`` and
    ``clipwise (N, num_classes)`` float32. Attributes: ``labels``, ``embed_dim``, ``model_id``."""

    def __init__(self, arch: str, cfg: PannsConfig):
        super().__init__()
        sr = cfg.sample_rate_hz
        n_fft = 1024 * sr // 32000
        fmax = cfg.fmax_hz if cfg.fmax_hz is not None else (14000.0 if sr == 32000 else sr / 2)
        self.cfg = cfg
        self.melspec = torchaudio.transforms.MelSpectrogram(
            sample_rate=sr, n_fft=n_fft, win_length=n_fft, hop_length=sr // 100, f_min=cfg.fmin_hz, f_max=fmax,
            n_mels=cfg.mel_bins, power=2.0, center=True, pad_mode="reflect", norm="slaney", mel_scale="slaney")
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=None)
        # a module, so the resampling kernel is computed once and moves with the encoder's device
        self.resample = (torchaudio.transforms.Resample(cfg.input_sample_rate_hz, sr)
                         if cfg.input_sample_rate_hz != sr else nn.Identity())
        self.net = PannsCNN(arch, cfg.mel_bins, cfg.num_classes)
        self.embed_dim: int = self.net.fc1.out_features
        self.model_id = _load_weights(self.net, arch, cfg, n_fft)
        self.labels = load_labels(cfg.labels_file) if cfg.labels_file or cfg.num_classes == 527 else []
        if len(self.labels) not in (0, cfg.num_classes):
            raise ValueError(f"{cfg.labels_file}: {len(self.labels)} labels for {cfg.num_classes} classes")
        self.device = torch.device(cfg.device)
        self.to(self.device).eval()

    def logmel(self, audio: torch.Tensor) -> torch.Tensor:
        """``(N, S)`` float32 at the input rate -> ``(N, 1, frames, mel_bins)`` log-mel in dB (10 ms frames)."""
        return self.to_db(self.melspec(self.resample(audio))).transpose(1, 2).unsqueeze(1)

    @torch.inference_mode()
    def forward(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        x = torch.as_tensor(audio)
        if x.dtype != torch.float32 or x.ndim != 2:
            raise ValueError(f"audio must be float32 (N, samples), got {x.dtype} {tuple(x.shape)}")
        embedding, clipwise = self.net(self.logmel(x.to(self.device)))
        return {"embedding": embedding, "clipwise": clipwise}


def default_checkpoint(arch: str, sample_rate_hz: int) -> Path | None:
    """Where ``weights="DEFAULT"`` looks: the public file name under ``$TORCH_HOME/hub/checkpoints``."""
    name = CHECKPOINTS.get((arch, sample_rate_hz))
    return cached_file(name) if name else None


def _load_weights(net: PannsCNN, arch: str, cfg: PannsConfig, n_fft: int) -> str:
    tag = f"panns/{arch}@{cfg.sample_rate_hz // 1000}kHz"
    if cfg.weights is None:
        if not cfg.allow_random:
            raise WeightsError(f"panns_{arch}: weights=None gives an untrained model; pass allow_random=True "
                               f"to ask for it, or weights='DEFAULT' / a local checkpoint file")
        return f"panns/{arch}@random"
    if cfg.weights == "DEFAULT":
        path = default_checkpoint(arch, cfg.sample_rate_hz)
        if path is None:
            raise WeightsError(f"panns_{arch}: no public checkpoint at {cfg.sample_rate_hz} Hz; "
                               f"known: {sorted(CHECKPOINTS)}")
        if not path.is_file():
            _download(path, cfg.download)
    else:
        path = Path(cfg.weights).expanduser()
    state = load_state_dict(path)
    mel_w = state.get("logmel_extractor.melW")
    if mel_w is not None and tuple(mel_w.shape) != (n_fft // 2 + 1, cfg.mel_bins):
        raise WeightsError(f"{path}: mel filterbank {tuple(mel_w.shape)} is for another front end than "
                           f"sample_rate_hz={cfg.sample_rate_hz}, mel_bins={cfg.mel_bins} "
                           f"(expects {(n_fft // 2 + 1, cfg.mel_bins)})")
    load_into(net, state, source=str(path), ignore=FRONT_END_KEYS)
    return f"{tag}:{file_tag(path)}" if cfg.weights == "DEFAULT" else f"{tag}:file:{file_tag(path)}"


def _download(path: Path, allowed: bool) -> None:
    url = f"{ZENODO}/files/{quote(path.name)}?download=1"
    missing = (f"{path}: PANNs checkpoint not found. Download {url} into {path.parent}, "
               f"or pass weights=<local file>")
    if not allowed:
        raise WeightsError(missing)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(path), progress=False)   # writes a temp file, then renames
    except Exception as exc:
        raise WeightsError(f"{missing} (download failed: {type(exc).__name__}: {exc})") from None


def load_labels(path: str | None = None) -> list[str]:
    """Class display names in index order from a CSV with ``index,mid,display_name`` columns."""
    if path is None:
        text = importlib.resources.files("operators.encoders").joinpath("audioset_labels.csv").read_text("utf-8")
    else:
        text = Path(path).read_text("utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    if not rows or "display_name" not in rows[0]:
        raise ValueError(f"{path or 'audioset_labels.csv'}: expected columns index,mid,display_name")
    return [r["display_name"] for r in sorted(rows, key=lambda r: int(r["index"]))]


def _weights_status(arch: str):
    def status(cfg: PannsConfig) -> tuple[bool, str | None]:
        if cfg.weights is None:
            return cfg.allow_random, None
        path = default_checkpoint(arch, cfg.sample_rate_hz) if cfg.weights == "DEFAULT" else Path(cfg.weights)
        return (path is not None and path.is_file()), (str(path) if path else None)
    return status


def _register(arch: str, description: str) -> None:
    register(f"panns_{arch}", family="audio_encoder", config_cls=PannsConfig,
             builder=lambda cfg: AudioEncoder(arch, cfg), weights_status=_weights_status(arch),
             description=description)


_register("cnn14", "PANNs CNN14 AudioSet tagger (80 M params): (N,S) audio -> 2048-d embedding + 527 AudioSet probs")
_register("cnn10", "PANNs CNN10 AudioSet tagger (5 M params): (N,S) audio -> 512-d embedding + 527 AudioSet probs")
_register("cnn6", "PANNs CNN6, small CPU variant (4.8 M params): (N,S) audio -> 512-d embedding + 527 AudioSet probs")
