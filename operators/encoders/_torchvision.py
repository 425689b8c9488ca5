"""What the torchvision-backed encoders share: weights resolution, model ids, device and precision."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models import get_model, get_model_weights

from operators.weights import WeightsError, cached_file, load_into, resolve_torchvision


CUDA_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass(frozen=True)
class TorchvisionConfig:
    """Options every torchvision-backed operator takes.

    weights: ``"DEFAULT"`` or a weights enum member name (torchvision cache, else a download when
      ``download``), a local state-dict file (``.pth``/``.pt``/``.safetensors``), or None for untrained
      weights, which needs ``allow_random=True``.
    device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...
    cuda_dtype: compute dtype on CUDA (``"bfloat16"``, ``"float16"`` or ``"float32"``); CPU runs float32.
    channels_last: convert the model and its input to NHWC memory format; None = on CUDA only
      (tensor cores gain from it). On CPU the input keeps the layout preprocessing gives it, which
      for (N, H, W, 3) frames is already NHWC-strided; forcing either format there cost up to 20%.
    """

    weights: str | None = "DEFAULT"
    allow_random: bool = False
    download: bool = True
    device: str = "cpu"
    cuda_dtype: str = "bfloat16"
    channels_last: bool | None = None

    def __post_init__(self):
        if self.cuda_dtype not in CUDA_DTYPES:
            raise ValueError(f"cuda_dtype must be one of {', '.join(CUDA_DTYPES)}, got {self.cuda_dtype!r}")


def load_torchvision(arch: str, cfg: TorchvisionConfig) -> tuple[nn.Module, str, object]:
    """Build torchvision model ``arch`` with the weights ``cfg`` asks for, in eval mode on CPU.

    Returns ``(model, model_id, weights_member)``; ``weights_member`` carries preprocessing and
    category names (the DEFAULT member when the weights came from a file or are random).
    """
    enum = get_model_weights(arch)
    if cfg.weights is None and not cfg.allow_random:
        raise WeightsError(f"{arch}: weights=None gives an untrained model; pass allow_random=True to ask for it, "
                           f"or weights='DEFAULT' / a local file ({cached_file(enum.DEFAULT.url)})")
    state, tag, member = resolve_torchvision(enum, cfg.weights, download=cfg.download)
    model = get_model(arch, weights=None)
    if state is not None:
        load_into(model, state, source=cfg.weights if tag.startswith("file:") else str(cached_file(member.url)))
        model_id = f"torchvision/{arch}:{tag}"
    else:
        model_id = f"torchvision/{arch}@random"
    return model.eval(), model_id, member


def weights_status(arch: str):
    """``weights_status`` callback for the registry: is the DEFAULT checkpoint in torchvision's cache?"""
    def status(cfg: TorchvisionConfig) -> tuple[bool, str | None]:
        if cfg.weights is None:
            return cfg.allow_random, None
        enum = get_model_weights(arch)
        if cfg.weights == "DEFAULT" or cfg.weights in enum.__members__:
            member = enum.DEFAULT if cfg.weights == "DEFAULT" else enum[cfg.weights]
            path = cached_file(member.url)
            return path.is_file(), str(path)
        return Path(cfg.weights).expanduser().is_file(), cfg.weights
    return status


def placement(cfg: TorchvisionConfig) -> tuple[torch.device, torch.dtype, torch.memory_format | None]:
    """Device, compute dtype and memory format (None: leave layouts alone); reduced precision on CUDA only."""
    device = torch.device(cfg.device)
    cuda = device.type == "cuda"
    channels_last = cfg.channels_last if cfg.channels_last is not None else cuda
    fmt = torch.channels_last if channels_last else (None if cfg.channels_last is None else torch.contiguous_format)
    if not cuda:
        return device, torch.float32, fmt
    dtype = CUDA_DTYPES[cfg.cuda_dtype]
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        dtype = torch.float16
    return device, dtype, fmt
