"""Kinetics-400 action classifiers from torchvision over a window of frames.

    clf = build("r2plus1d_18")                  # torchvision cache, a local file via weights=...
    probs = clf(clip)       # (B, T, H, W, 3) uint8 RGB -> (B, 400) float32 probabilities
    clf.labels[probs.argmax(1)[0]]               # category names from the weights' meta

A window of W grid cells with F frames each is a clip of T = W*F frames; it is resampled in time
to the ``num_frames`` the model was trained with (nearest frame, evenly spaced), so any T works.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from operators.encoders._torchvision import TorchvisionConfig, load_torchvision, placement, weights_status
from operators.registry import register

# name -> frames per clip in the torchvision training recipe (mvit_v2_s requires exactly 16)
VIDEO_ARCHS: dict[str, int] = {"r2plus1d_18": 16, "s3d": 16, "mvit_v2_s": 16, "swin3d_t": 32}


@dataclass(frozen=True)
class VideoClassifierConfig(TorchvisionConfig):
    """See :class:`TorchvisionConfig`. ``num_frames``: frames fed to the model (None: the recipe's)."""

    num_frames: int | None = None


class VideoClassifier(nn.Module):
    """``forward(clip)``: ``(B, T, H, W, 3)`` uint8 RGB -> ``(B, 400)`` float32 softmax probabilities.

    ``labels``: the 400 Kinetics category names, index-aligned with the output.
    """

    def __init__(self, arch: str, cfg: VideoClassifierConfig):
        super().__init__()
        model, self.model_id, member = load_torchvision(arch, cfg)
        self.arch = arch
        self.labels: list[str] = list(member.meta["categories"])
        self.num_frames = cfg.num_frames or VIDEO_ARCHS[arch]
        min_t = member.meta.get("min_temporal_size") or 1
        if arch == "mvit_v2_s" and self.num_frames != 16:
            raise ValueError(f"mvit_v2_s: num_frames must be 16 (its positional embeddings are fixed), "
                             f"got {self.num_frames}")
        if self.num_frames < min_t:
            raise ValueError(f"{arch}: num_frames must be >= {min_t}, got {self.num_frames}")
        self.preprocess = member.transforms()
        # 3-D convolutions: channels_last_3d is a different format, so the model stays contiguous
        self.device, self.dtype, _ = placement(cfg)
        self.model = model.to(self.device, self.dtype).eval()

    @torch.inference_mode()
    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(clip)
        if x.dtype != torch.uint8 or x.ndim != 5 or x.shape[-1] != 3:
            raise ValueError(f"clip must be uint8 (B, T, H, W, 3), got {x.dtype} {tuple(x.shape)}")
        idx = torch.linspace(0, x.shape[1] - 1, self.num_frames).round().long()
        x = x[:, idx].to(self.device, non_blocking=True).permute(0, 1, 4, 2, 3)   # (B, T, 3, H, W)
        x = self.preprocess(x).to(self.dtype)                                   # (B, 3, T, h, w)
        return self.model(x).float().softmax(dim=-1)


def _register(arch: str) -> None:
    register(arch, family="video_classifier", config_cls=VideoClassifierConfig,
             builder=lambda cfg: VideoClassifier(arch, cfg), weights_status=weights_status(arch),
             description=f"torchvision {arch} Kinetics-400 actions: (B,T,H,W,3) uint8 -> (B,400) probabilities")


for _arch in VIDEO_ARCHS:
    _register(_arch)
