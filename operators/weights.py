"""Loading pretrained weights without surprises.

Three sources, tried in this order by :func:`resolve_torchvision`:

1. a local file the caller names (``.pth``/``.pt`` state dict, loaded with ``weights_only=True``,
   or ``.safetensors``);
2. torchvision's cache, ``$TORCH_HOME/hub/checkpoints/<file>``, where the file name is the last
   part of the weights enum's URL (``torch.hub.get_dir()`` honours ``TORCH_HOME``);
3. a download through torchvision, only when the caller allows it and the machine has a network.

Every failure is a :class:`WeightsError` naming the file and how to get it. Random weights are
never a fallback: a caller asks for them with ``allow_random=True`` and the model id then ends in
``@random``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn


class WeightsError(RuntimeError):
    """Weights missing, unreadable or not matching the model. The message names the file."""


def cache_dir() -> Path:
    """Where torchvision keeps downloaded checkpoints: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_file(url_or_name: str) -> Path:
    """The cache path torchvision uses for a weights URL (or a bare file name)."""
    return cache_dir() / os.path.basename(url_or_name.split("?", 1)[0])


def file_tag(path: str | Path) -> str:
    """``<file name>@sha256:<first 12 hex>``: names a local weights file in a model id."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"{Path(path).name}@sha256:{h.hexdigest()[:12]}"


def load_state_dict(path: str | Path, *,
                    nested_keys: tuple[str, ...] = ("state_dict", "model")) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` on CPU.

    ``.safetensors`` files are read with safetensors; anything else with ``torch.load(weights_only=True)``,
    so a pickled model object (which could run code) is refused. A checkpoint that wraps the state dict
    under one of ``nested_keys`` (PANNs use ``{"model": ...}``, Lightning ``{"state_dict": ...}``) is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, pickled objects refused by weights_only
        raise WeightsError(f"{path}: not a readable state dict ({type(exc).__name__}: {_first_line(exc)})") from None
    for key in nested_keys:
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: expected a state dict (name -> tensor), found {type(obj).__name__}")
    return dict(obj)


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], source: str, *,
              ignore: tuple[str, ...] = ()) -> None:
    """Strictly load ``state`` into ``model``; on any mismatch raise a WeightsError naming ``source``.

    Keys starting with a prefix in ``ignore`` are dropped first (buffers the model recomputes).
    """
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith(ignore)}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in own
              if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {'; '.join(shapes[:2])})")
        raise WeightsError(f"{source}: does not match {type(model).__name__}: " + ", ".join(parts))
    model.load_state_dict(state, strict=True)


def resolve_torchvision(weights_enum: Any, weights: str | None, *, download: bool) -> tuple[dict | None, str, Any]:
    """Find the state dict for a torchvision model.

    Args:
      weights_enum: the model's ``WeightsEnum`` class (e.g. ``ResNet18_Weights``).
      weights: ``"DEFAULT"``, an enum member name (``"IMAGENET1K_V1"``), a local file path, or None.
      download: allow torchvision to fetch a file missing from the cache.

    Returns ``(state_dict or None, tag, enum_member)``: ``tag`` names the source for the model id
    (the enum member name, or ``file:<name>@sha256:..``); ``enum_member`` supplies preprocessing and
    category names (the DEFAULT member when the weights come from a file or are absent).
    """
    default = weights_enum.DEFAULT
    if weights is None:
        return None, "random", default
    if weights == "DEFAULT" or weights in weights_enum.__members__:
        member = weights_enum[weights] if weights != "DEFAULT" else default
        path = cached_file(member.url)
        if path.is_file():
            return load_state_dict(path), member.name, member
        if not download:
            raise WeightsError(_missing_message(path, member.url))
        try:
            return member.get_state_dict(progress=False, check_hash=True), member.name, member
        except Exception as exc:
            raise WeightsError(_missing_message(path, member.url) + f" (download failed: {_first_line(exc)})") from None
    path = Path(weights).expanduser()
    if path.suffix in (".pth", ".pt", ".bin", ".safetensors", ".ckpt") or os.sep in weights or path.exists():
        return load_state_dict(path), f"file:{file_tag(path)}", default
    names = ", ".join(["DEFAULT", *weights_enum.__members__])
    raise WeightsError(f"{weights}: neither a weights file nor one of {weights_enum.__name__} ({names})")


def _missing_message(path: Path, url: str) -> str:
    return (f"{path}: pretrained weights not found. Download {url} into {path.parent} "
            f"(TORCH_HOME={os.environ.get('TORCH_HOME', '~/.cache/torch')}), or pass weights=<local file> "
            f"(weights=None with allow_random=True gives untrained weights)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
