"""Operators by name: a config dataclass, a builder, a family, and a YAML round-trip.

    from operators.registry import build, describe_all
    enc = build("resnet18", weights="/models/resnet18.pth")     # frame encoder
    det = build("scene_cut", threshold=0.4)                      # detector
    describe_all()   # [{"name", "family", "description", "weights_available", "weights_source"}, ...]

Families: ``frame_encoder``, ``video_classifier``, ``audio_encoder``, ``detector``, ``track_analytics``
(operators on the tracks a detector made, e.g. ``zones``; others may add more).
Builders take the operator's config dataclass; :func:`build` makes that config from keyword
arguments, so an unknown or misspelled option is an error naming the operator and the option.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable

import yaml

FAMILIES = ("frame_encoder", "video_classifier", "audio_encoder", "detector", "track_analytics")

# Modules that register operators when imported; loaded on first lookup so that importing the
# registry stays cheap and the modules themselves can import it without a cycle. A lookup by name
# imports them in this order only until the name is known: the detectors (all the offline profile
# needs) come first and do not pull in torchvision (~2.5 s of imports on a small machine).
_PROVIDERS = ("operators.detectors", "operators.encoders.frame", "operators.encoders.video",
              "operators.encoders.audio")


@dataclass(frozen=True)
class OperatorSpec:
    """What the registry knows about one operator.

    ``weights_status(config) -> (available, source)`` tells whether the operator can run on this
    machine without a download (``source``: the file or package it loads from; None when it needs none).
    """

    name: str
    family: str
    config_cls: type
    description: str
    builder: Callable[[Any], Any] = dataclasses.field(repr=False, compare=False)
    weights_status: Callable[[Any], tuple[bool, str | None]] | None = dataclasses.field(
        default=None, repr=False, compare=False)


_REGISTRY: dict[str, OperatorSpec] = {}
_imported: set[str] = set()


def register(name: str, *, family: str, config_cls: type, builder: Callable | None = None, description: str,
             weights_status: Callable | None = None):
    """Register an operator; usable directly or as a decorator on the builder.

        @register("flash", family="detector", config_cls=FlashConfig, description="...")
        def _build(cfg: FlashConfig) -> FlashDetector: ...
    """
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"{name}: config_cls must be a dataclass, got {config_cls!r}")

    def _add(fn: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name].builder is not fn:
            raise ValueError(f"operator {name!r} is already registered")
        _REGISTRY[name] = OperatorSpec(name, family, config_cls, description, fn, weights_status)
        return fn

    return _add(builder) if builder is not None else _add


def _ensure_loaded(name: str | None = None) -> None:
    """Import the providers (all of them, or only until ``name`` is registered)."""
    for mod in _PROVIDERS:
        if name is not None and name in _REGISTRY:
            return
        if mod not in _imported:
            _imported.add(mod)
            importlib.import_module(mod)


def get_spec(name: str) -> OperatorSpec:
    _ensure_loaded(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        _ensure_loaded()
        raise KeyError(f"unknown operator {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def list_operators(family: str | None = None) -> list[OperatorSpec]:
    _ensure_loaded()
    return sorted((s for s in _REGISTRY.values() if family is None or s.family == family), key=lambda s: s.name)


def make_config(name: str, /, **config) -> Any:
    """The config dataclass of operator ``name`` from keyword arguments (defaults for the rest)."""
    spec = get_spec(name)
    fields = {f.name for f in dataclasses.fields(spec.config_cls)}
    unknown = sorted(set(config) - fields)
    if unknown:
        raise TypeError(f"{name}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(fields))}")
    return spec.config_cls(**config)


def build(name: str, /, **config) -> Any:
    """Build operator ``name`` with keyword options, e.g. ``build("resnet18", weights=None, allow_random=True)``."""
    return build_from_config(name, make_config(name, **config))


def build_from_config(name: str, cfg: Any, /) -> Any:
    spec = get_spec(name)
    if not isinstance(cfg, spec.config_cls):
        raise TypeError(f"{name}: expected {spec.config_cls.__name__}, got {type(cfg).__name__}")
    return spec.builder(cfg)


def describe_all() -> list[dict]:
    """One dict per operator for ``avgrid models``: name, family, description, weights_available, weights_source.

    Checks the default config's weights on this machine (cache or packaged files); never downloads.
    """
    out = []
    for spec in list_operators():
        available, source = True, None
        if spec.weights_status is not None:
            available, source = spec.weights_status(spec.config_cls())
        out.append({"name": spec.name, "family": spec.family, "description": spec.description,
                    "weights_available": bool(available), "weights_source": source})
    return out


def config_to_yaml(cfg: Any) -> str:
    """YAML text of a config dataclass (tuples become lists)."""
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise TypeError(f"expected a config dataclass instance, got {cfg!r}")
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)


def config_from_yaml(name: str, text: str) -> Any:
    """Config of operator ``name`` from YAML text; missing fields take their defaults."""
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{name}: config YAML must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(get_spec(name).config_cls)
    return make_config(name, **{k: _tuples(hints.get(k), v) for k, v in data.items()})


def _tuples(hint: Any, value: Any) -> Any:
    """YAML has no tuples: turn lists back into tuples where the field's type says tuple."""
    if not isinstance(value, list):
        return value
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple:
        inner = args[0] if args else None
        return tuple(_tuples(inner, v) for v in value)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for a in args:
            if typing.get_origin(a) is tuple:
                return _tuples(a, value)
    return value
