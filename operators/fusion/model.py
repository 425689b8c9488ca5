"""Temporal fusion transformer: per-cell video and audio tokens -> the four heads.

Each cell of a window of W cells gives two tokens: its frame features and its audio
features, each projected to ``d_model`` and tagged with a modality embedding and the
cell's position in the window. All 2W tokens go through one transformer, so every token
attends across time and across modalities (cross-modal attention in merged form). A token
whose media is missing is replaced by a learned "missing" token and is never a key for
other tokens, so garbage in masked positions cannot reach the output. In causal mode a
token of cell k attends only to tokens of cells <= k, so the output for cell k does not
depend on later cells (live streams). The cell's two output tokens are concatenated and
read by the heads (see :mod:`operators.fusion.heads`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
import torch
from torch import nn

from operators.fusion.heads import FusionHeads, FusionOutput  # noqa: F401  (FusionOutput re-exported)

SENTIMENT_LABELS = ("negative", "neutral", "positive")


@dataclass
class FusionConfig:
    """Architecture, label sets and the features the model reads. JSON round-trips via to_dict/from_dict."""

    video_dim: int
    audio_dim: int
    action_labels: list[str]
    event_labels: list[str]
    event_modalities: list[str]          # per event label: audio, visual or audiovisual
    sentiment_labels: list[str] = field(default_factory=lambda: list(SENTIMENT_LABELS))
    caption_labels: list[str] = field(default_factory=list)   # empty: no learned caption head
    d_model: int = 64
    layers: int = 2
    heads: int = 4
    window_cells: int = 8                # W
    causal: bool = True
    dropout: float = 0.1
    modalities: list[str] = field(default_factory=lambda: ["video", "audio"])  # ablations drop one
    video_features: str = "grid-stats-v1"
    audio_features: str = "logmel-stats-v1"

    def __post_init__(self):
        if len(self.event_modalities) != len(self.event_labels):
            raise ValueError("FusionConfig: event_modalities needs one entry per event label")
        if not set(self.modalities) <= {"video", "audio"} or not self.modalities:
            raise ValueError(f"FusionConfig: modalities {self.modalities!r} must be a non-empty subset of video, audio")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FusionConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class FusionModel(nn.Module):
    """See the module docstring. Feature normalisation (training-set mean/std) lives in buffers."""

    def __init__(self, cfg: FusionConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        for mod, dim in (("video", cfg.video_dim), ("audio", cfg.audio_dim)):
            self.register_buffer(f"{mod}_mean", torch.zeros(dim))
            self.register_buffer(f"{mod}_std", torch.ones(dim))
        self.video_in = nn.Sequential(nn.Linear(cfg.video_dim, d), nn.LayerNorm(d))
        self.audio_in = nn.Sequential(nn.Linear(cfg.audio_dim, d), nn.LayerNorm(d))
        self.modality = nn.Parameter(torch.randn(2, d) * 0.02)
        self.missing = nn.Parameter(torch.randn(2, d) * 0.02)
        self.position = nn.Parameter(torch.randn(cfg.window_cells, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, cfg.heads, 4 * d, cfg.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.heads = FusionHeads(2 * d, cfg)

    def set_normalisation(self, video_mean, video_std, audio_mean, audio_std) -> None:
        """Feature mean/std (each (Dv,) or (Da,)) measured on the training cells."""
        for name, value in (("video_mean", video_mean), ("video_std", video_std),
                            ("audio_mean", audio_mean), ("audio_std", audio_std)):
            getattr(self, name).copy_(torch.as_tensor(value, dtype=torch.float32))

    def _tokens(self, x, mask, which: int, proj: nn.Module, mean, std):
        x = torch.where(mask[..., None], x, torch.zeros_like(x))     # masked garbage (even NaN) never enters
        tok = proj((x - mean) / std.clamp(min=1e-6))
        tok = torch.where(mask[..., None], tok, self.missing[which].expand_as(tok))
        return tok + self.modality[which] + self.position[: x.shape[1]]

    def forward(self, frame_feats: torch.Tensor, audio_feats: torch.Tensor,
                video_mask: torch.Tensor, audio_mask: torch.Tensor) -> FusionOutput:
        """frame_feats (B, W, Dv) float32, audio_feats (B, W, Da) float32, video_mask / audio_mask
        (B, W) bool (True = the cell has that medium). W may be shorter than ``window_cells``."""
        B, W, _ = frame_feats.shape
        if W > self.cfg.window_cells:
            raise ValueError(f"FusionModel: window of {W} cells > window_cells={self.cfg.window_cells}")
        video_mask = video_mask.bool() & ("video" in self.cfg.modalities)
        audio_mask = audio_mask.bool() & ("audio" in self.cfg.modalities)
        x = torch.cat([self._tokens(frame_feats, video_mask, 0, self.video_in, self.video_mean, self.video_std),
                       self._tokens(audio_feats, audio_mask, 1, self.audio_in, self.audio_mean, self.audio_std)], 1)
        h = self.norm(self.encoder(x, mask=self._attention_mask(video_mask, audio_mask)))
        return self.heads(torch.cat([h[:, :W], h[:, W:]], -1))

    def _attention_mask(self, video_mask, audio_mask) -> torch.Tensor:
        """(B * heads, 2W, 2W) bool, True = may NOT attend. Every token may attend to itself,
        so a window with nothing present still gives finite outputs."""
        B, W = video_mask.shape
        cell = torch.arange(W, device=video_mask.device).repeat(2)                     # token -> cell
        present = torch.cat([video_mask, audio_mask], 1)                              # (B, 2W)
        blocked = ~present[:, None, :].expand(B, 2 * W, 2 * W)
        if self.cfg.causal:
            blocked = blocked | (cell[None, None, :] > cell[None, :, None])
        blocked = blocked & ~torch.eye(2 * W, dtype=torch.bool, device=video_mask.device)
        return blocked.repeat_interleave(self.cfg.heads, 0)
