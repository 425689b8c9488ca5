"""Frame encoders: torchvision image backbones that turn frames into one embedding each.

    enc = build("resnet18", weights="DEFAULT")              # torchvision cache (or download)
    enc = build("resnet18", weights="/models/resnet18.pth") # a local state dict
    emb = enc(frames)        # (N, H, W, 3) uint8 RGB -> (N, 512) float32
    enc.model_id             # "torchvision/resnet18:IMAGENET1K_V1"

The preprocessing (resize, centre crop, mean/std) is the one the weights enum prescribes. The
embedding is the input of the ImageNet classifier's last linear layer, so a full torchvision state
dict (classifier included) loads as is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from operators.encoders._torchvision import TorchvisionConfig, load_torchvision, placement, weights_status
from operators.registry import register

# name -> dotted path of the final Linear that maps the embedding to the 1000 ImageNet classes
FRAME_ARCHS: dict[str, str] = {
    "mobilenet_v3_small": "classifier.3",
    "mobilenet_v3_large": "classifier.3",
    "resnet18": "fc",
    "resnet50": "fc",
    "efficientnet_b0": "classifier.1",
    "convnext_tiny": "classifier.2",
    "vit_b_16": "heads.head",
}


@dataclass(frozen=True)
class FrameEncoderConfig(TorchvisionConfig):
    """See :class:`TorchvisionConfig`; no frame-specific options yet."""


class FrameEncoder(nn.Module):
    """A torchvision backbone without its classifier.

    ``forward(frames)``: ``(N, H, W, 3)`` uint8 RGB (any H, W) -> ``(N, embed_dim)`` float32 on the
    encoder's device, computed in inference mode.
    """

    def __init__(self, arch: str, cfg: FrameEncoderConfig):
        super().__init__()
        model, self.model_id, member = load_torchvision(arch, cfg)
        head = model.get_submodule(FRAME_ARCHS[arch])
        self.embed_dim: int = head.in_features
        parent, _, leaf = FRAME_ARCHS[arch].rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, nn.Identity())
        self.arch = arch
        self.preprocess = member.transforms()
        self.device, self.dtype, self.memory_format = placement(cfg)
        self.model = model.to(self.device, self.dtype).eval()
        if self.memory_format is not None:
            self.model = self.model.to(memory_format=self.memory_format)

    @torch.inference_mode()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = _as_nchw_uint8(frames).to(self.device, non_blocking=True)
        x = self.preprocess(x).to(self.dtype)
        if self.memory_format is not None:
            x = x.contiguous(memory_format=self.memory_format)
        return self.model(x).float()


def _as_nchw_uint8(frames) -> torch.Tensor:
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (N, H, W, 3), got {x.dtype} {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2)


def _register(arch: str) -> None:
    register(arch, family="frame_encoder", config_cls=FrameEncoderConfig,
             builder=lambda cfg: FrameEncoder(arch, cfg), weights_status=weights_status(arch),
             description=f"torchvision {arch} ImageNet backbone: (N,H,W,3) uint8 -> (N,D) embedding")


for _arch in FRAME_ARCHS:
    _register(_arch)
