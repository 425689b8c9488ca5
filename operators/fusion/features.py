"""Per-cell feature extractors: what the fusion model reads for each grid cell.

No pretrained weights can be assumed, so the defaults are deterministic and weight-free,
each named and versioned so a bundle can refuse features it was not trained on:

- ``grid-stats-v1`` (video): a downsampled colour grid (mean and spread over the cell's
  frames, last-minus-first change), frame brightness, frame-difference energy, the
  displacement of the salient-pixel centroid (motion direction) and the largest
  frame-to-frame grid change (scene cut).
- ``logmel-stats-v1`` (audio): torchaudio log-mel band energies (mean / max / spread over
  the cell), onset strength (positive spectral flux) and loudness.
- ``encoder:<model_id>`` (video): the mean over the cell's frames of any frame encoder
  with the :mod:`operators.registry` API (``enc(frames uint8 (N, H, W, 3)) -> (N, D)``,
  ``enc.embed_dim``, ``enc.model_id``).

Example::

    fz = CellFeaturizer.from_spec("grid-stats-v1+logmel-stats-v1")
    v, a, vm, am = fz.featurize(frames, frame_mask, audio, audio_mask)   # (T, 153), (T, 124), (T,), (T,)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio

SAMPLE_RATE_HZ = 16_000


def _as_tensor(x, dtype=None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    return t if dtype is None else t.to(dtype)


def _masked_mean(x: torch.Tensor, m: torch.Tensor, dim: int) -> torch.Tensor:
    m = m.to(x.dtype)
    return (x * m).sum(dim) / m.sum(dim).clamp(min=1)


def _masked_max(x: torch.Tensor, m: torch.Tensor, dim: int) -> torch.Tensor:
    out = x.masked_fill(~m, float("-inf")).amax(dim)
    return torch.where(torch.isfinite(out), out, torch.zeros_like(out))


def _masked_median(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Median over dim 1 of the masked entries (lower median; 0 where none). x, m: (T, K)."""
    n = m.sum(1)
    ranked = x.masked_fill(~m, float("inf")).sort(1).values
    med = ranked.gather(1, ((n - 1).clamp(min=0) // 2)[:, None])[:, 0]
    return torch.where(n > 0, med, torch.zeros_like(med))


class GridStats:
    """Video ``grid-stats-v1``: (T, F, H, W, 3) uint8 frames + (T, F) mask -> (T, dim) float32.

    Coordinates are fractions of the frame, colours fractions of 255, so any frame size works.
    """

    name = "grid-stats-v1"
    grid = 4           # colour grid is grid x grid cells
    motion_px = 32     # resolution for differences and centroids

    def __init__(self):
        self.dim = 3 * (3 * self.grid * self.grid) + 3 + 2 + 3 + 1

    def __call__(self, frames, frame_mask) -> torch.Tensor:
        frames = _as_tensor(frames)
        m = _as_tensor(frame_mask, torch.bool)
        T, Fn, H, W, _ = frames.shape
        x = frames.reshape(T * Fn, H, W, 3).permute(0, 3, 1, 2).float() / 255.0
        g = F.adaptive_avg_pool2d(x, self.grid).reshape(T, Fn, -1)                 # (T, F, 3*G*G)
        small = F.adaptive_avg_pool2d(x, self.motion_px).reshape(T, Fn, 3, self.motion_px, self.motion_px)
        mf = m[..., None]
        g_mean = _masked_mean(g, mf, 1)
        g_std = _masked_mean((g - g_mean[:, None]) ** 2, mf, 1).sqrt()
        first = m.float().argmax(1)
        last = Fn - 1 - m.flip(1).float().argmax(1)
        idx = torch.arange(T)
        g_change = (g[idx, last] - g[idx, first]) * m.any(1, keepdim=True)

        bright = small.mean((2, 3, 4))                                                  # (T, F)
        bright_stats = torch.stack([_masked_mean(bright, m, 1), _masked_max(bright, m, 1),
                                    -_masked_max(-bright, m, 1)], 1)

        pair = m[:, 1:] & m[:, :-1]                                                     # (T, F-1)
        diff = (small[:, 1:] - small[:, :-1]).abs().mean((2, 3, 4))
        diff_stats = torch.stack([_masked_mean(diff, pair, 1), _masked_max(diff, pair, 1)], 1)
        cut = _masked_max((g[:, 1:] - g[:, :-1]).abs().mean(2), pair, 1)[:, None]

        # salient pixels = far from their row's median colour (the background, including
        # horizontal bands such as a floor or horizon), so the centroid follows foreground objects
        med = small.median(4, keepdim=True).values
        w = (small - med).abs().sum(2)                                                  # (T, F, P, P)
        coords = (torch.arange(self.motion_px, dtype=torch.float32) + 0.5) / self.motion_px
        mass = w.sum((2, 3)).clamp(min=1e-6)
        cx = (w.sum(2) * coords).sum(2) / mass
        cy = (w.sum(3) * coords).sum(2) / mass
        dx, dy = cx[:, 1:] - cx[:, :-1], cy[:, 1:] - cy[:, :-1]
        # median over frame pairs: a flash or a cut moves the centroid for one pair only
        motion = torch.stack([_masked_median(dx, pair), _masked_median(dy, pair),
                              _masked_median((dx ** 2 + dy ** 2).sqrt(), pair)], 1)
        return torch.cat([g_mean, g_std, g_change, bright_stats, diff_stats, motion, cut], 1).float()


class LogMelStats:
    """Audio ``logmel-stats-v1``: (T, S) float32 16 kHz + (T, S) mask -> (T, dim) float32.

    Log-mel: 25 ms windows, 10 ms hop, 40 bands up to 8 kHz. Only mel frames whose centre
    sample is real audio count.
    """

    name = "logmel-stats-v1"
    n_mels = 40
    hop = 160

    def __init__(self):
        self.mel = torchaudio.transforms.MelSpectrogram(sample_rate=SAMPLE_RATE_HZ, n_fft=512, win_length=400,
                                                        hop_length=self.hop, n_mels=self.n_mels, f_max=8000.0)
        self.dim = 3 * self.n_mels + 2 + 2

    def __call__(self, audio, audio_mask) -> torch.Tensor:
        audio = _as_tensor(audio, torch.float32)
        m = _as_tensor(audio_mask, torch.bool)
        T, S = audio.shape
        logmel = torch.log(self.mel(audio * m) + 1e-6)                                 # (T, M, L)
        L = logmel.shape[-1]
        centres = torch.clamp(torch.arange(L) * self.hop, max=S - 1)
        fm = m[:, centres]                                                             # (T, L)
        mean = _masked_mean(logmel, fm[:, None], 2)
        mx = _masked_max(logmel, fm[:, None].expand_as(logmel), 2)
        std = _masked_mean((logmel - mean[..., None]) ** 2, fm[:, None], 2).sqrt()
        flux = F.relu(logmel[:, :, 1:] - logmel[:, :, :-1]).mean(1)                     # (T, L-1)
        fpair = fm[:, 1:] & fm[:, :-1]
        onset = torch.stack([_masked_mean(flux, fpair, 1), _masked_max(flux, fpair, 1)], 1)
        n = (S // self.hop) * self.hop
        frame_rms = (audio[:, :n] * m[:, :n]).reshape(T, -1, self.hop).pow(2).mean(2).add(1e-8).log10() * 10
        rmask = m[:, :n].reshape(T, -1, self.hop).all(2)
        loud = torch.stack([_masked_mean(frame_rms, rmask, 1), _masked_max(frame_rms, rmask, 1)], 1)
        return torch.cat([mean, mx, std, onset, loud], 1).float()


class EncoderFrameFeatures:
    """Video ``encoder:<registry name>=<model_id>``: the mean over each cell's real frames of a
    frame encoder's embeddings. The model id names the weights, so a bundle refuses the same
    architecture with other weights.

    ``encoder(frames uint8 (N, H, W, 3)) -> (N, D)``; output (T, D) float32, zeros for cells without frames.
    """

    def __init__(self, encoder, registry_name: str):
        self.encoder = encoder
        self.name = f"encoder:{registry_name}={encoder.model_id}"
        self.dim = int(encoder.embed_dim)

    def __call__(self, frames, frame_mask) -> torch.Tensor:
        frames = _as_tensor(frames)
        m = _as_tensor(frame_mask, torch.bool)
        T = frames.shape[0]
        out = torch.zeros(T, self.dim)
        if m.any():
            with torch.no_grad():
                emb = torch.as_tensor(self.encoder(frames[m])).float()                  # (N, D)
            cell = torch.arange(T)[:, None].expand_as(m)[m]
            out.index_add_(0, cell, emb)
            out /= m.sum(1, keepdim=True).clamp(min=1)
        return out


VIDEO_FEATURES = {GridStats.name: GridStats}
AUDIO_FEATURES = {LogMelStats.name: LogMelStats}
DEFAULT_SPEC = "grid-stats-v1+logmel-stats-v1"


class CellFeaturizer:
    """Turns a window of grid cells into per-cell feature vectors and presence masks.

    ``video`` / ``audio`` are extractor names (see module docstring) or extractor objects
    with ``name``, ``dim`` and ``__call__``. ``names`` is what a bundle records.
    """

    def __init__(self, video="grid-stats-v1", audio="logmel-stats-v1"):
        self.video = VIDEO_FEATURES[video]() if isinstance(video, str) else video
        self.audio = AUDIO_FEATURES[audio]() if isinstance(audio, str) else audio

    @classmethod
    def from_spec(cls, spec: str = DEFAULT_SPEC, *, encoder_weights: str | None = None) -> "CellFeaturizer":
        """``"<video>+<audio>"``; a video part ``encoder:<registry name>[=<model_id>]`` builds that
        encoder with ``operators.registry.build(name, weights=encoder_weights)`` (imported only then)."""
        try:
            video, audio = spec.split("+")
        except ValueError:
            raise ValueError(f"feature spec {spec!r}: expected '<video>+<audio>', "
                             f"e.g. {DEFAULT_SPEC!r}") from None
        if video.startswith("encoder:"):
            from operators.registry import build  # optional: only when a learned encoder is asked for

            name = video.split(":", 1)[1].split("=", 1)[0]
            video = EncoderFrameFeatures(build(name, weights=encoder_weights), name)
        elif video not in VIDEO_FEATURES:
            raise ValueError(f"feature spec {spec!r}: unknown video features {video!r} "
                             f"(known: {sorted(VIDEO_FEATURES)} or encoder:<name>)")
        if audio not in AUDIO_FEATURES:
            raise ValueError(f"feature spec {spec!r}: unknown audio features {audio!r} (known: {sorted(AUDIO_FEATURES)})")
        return cls(video, audio)

    @property
    def names(self) -> dict[str, str]:
        return {"video": self.video.name, "audio": self.audio.name}

    @property
    def dims(self) -> dict[str, int]:
        return {"video": self.video.dim, "audio": self.audio.dim}

    def featurize(self, frames, frame_mask, audio, audio_mask):
        """Features of T cells.

        Args: frames (T, F, H, W, 3) uint8 RGB; frame_mask (T, F) bool; audio (T, S) float32
        mono 16 kHz; audio_mask (T, S) bool (numpy arrays or tensors).
        Returns: frame_feats (T, Dv) float32, audio_feats (T, Da) float32, video_mask (T,) bool,
        audio_mask (T,) bool (a cell counts as having a modality when any of its media is real).
        """
        fm = _as_tensor(frame_mask, torch.bool)
        am = _as_tensor(audio_mask, torch.bool)
        if fm.ndim != 2 or am.ndim != 2 or fm.shape[0] != am.shape[0]:
            raise ValueError(f"featurize: frame_mask {tuple(fm.shape)} / audio_mask {tuple(am.shape)} "
                             "must be (T, F) and (T, S) with the same T")
        with torch.no_grad():
            v = self.video(frames, fm)
            a = self.audio(audio, am)
        return v, a, fm.any(1), am.any(1)
