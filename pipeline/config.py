"""Run configuration: one table of options drives the CLI flags, the YAML config file and ``--help``.

A YAML config mirrors the flags (``--kafka-prefix`` is ``kafka_prefix:``); flags given on the
command line win over the file, the file wins over the defaults::

    # avgrid.yaml
    out: /data/annotations
    kafka: 127.0.0.1:9092
    profile: offline
    hop_s: 1.0
    max_batch: 16

    cfg = load_config("avgrid.yaml", overrides={"profile": "standard"})
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from pipeline.errors import ConfigError
from pipeline.grid import GridConfig

PROFILES = ("offline", "standard", "bundle")


@dataclass(frozen=True)
class Config:
    """Every option of ``avgrid annotate`` / ``avgrid run``. Units are in the names."""

    out: str = "./avgrid-out"
    kafka: str | None = None
    kafka_prefix: str = "avgrid"
    profile: str = "offline"
    bundle: str | None = None
    action_model: str = "r2plus1d_18"
    action_weights: str | None = None
    ray_address: str | None = None
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    duration: float | None = None
    hop_s: float = 1.0
    fps: float = 4.0
    frame_size: int = 224
    max_segment_s: float = 10.0
    chunk_cells: int = 4
    max_batch: int = 16
    max_wait_ms: float = 50.0
    max_inflight: int = 8
    readahead_cells: int = 48
    operator_actors: int | None = None
    concurrency: int = 2
    num_cpus: int | None = None
    torch_threads: int = 1
    status_interval_s: float = 5.0
    progress: bool | None = None

    @property
    def grid(self) -> GridConfig:
        return GridConfig(hop_s=self.hop_s, fps=self.fps, frame_height=self.frame_size, frame_width=self.frame_size)

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)


# option -> help text; the default is appended from Config. Also the YAML keys.
HELP: dict[str, str] = {
    "out": "Parquet dataset directory (one dataset per record kind under it)",
    "kafka": "Kafka bootstrap HOST:PORT; records also go to topics <prefix>.<kind>",
    "kafka_prefix": "Kafka topic prefix",
    "profile": "operators to run: offline (built-in detectors, no downloads), standard (torchvision pretrained "
               "encoders + Kinetics actions; needs their weights), bundle (a trained bundle, see --bundle)",
    "bundle": "trained fusion bundle directory (implies --profile bundle)",
    "action_model": "standard profile: the Kinetics-400 video classifier (r2plus1d_18, s3d, mvit_v2_s, swin3d_t)",
    "action_weights": "standard profile: weights file of --action-model",
    "ray_address": "join an existing Ray cluster (HOST:PORT) instead of starting a local one on 127.0.0.1",
    "metrics_port": "serve Prometheus metrics on 127.0.0.1:PORT (cells/s, stage latency, queues, drops, sink lag)",
    "metrics_host": "address the metrics endpoint binds to (0.0.0.0 exposes it, e.g. to a Prometheus in Kubernetes)",
    "duration": "avgrid run: stop after this many seconds (default: until SIGINT/SIGTERM)",
    "hop_s": "grid cell length in media seconds",
    "fps": "frames sampled per media second",
    "frame_size": "frames are scaled to SIZE x SIZE pixels",
    "max_segment_s": "longest record: a label lasting longer is cut into records of this length (media s), so "
                     "live streams emit records while a condition lasts",
    "chunk_cells": "consecutive cells of one stream sent to the operators in one call",
    "max_batch": "most cells (across streams) in one operator call",
    "max_wait_ms": "longest a partly filled batch waits for more cells (ms)",
    "max_inflight": "cells per stream buffered between decoding and the operators, once in the source actor "
                    "and once in the driver (live: beyond that the oldest are dropped and reported as gap "
                    "events; archives: decoding waits)",
    "readahead_cells": "avgrid annotate: cells per file decoded ahead of the operators, held in the driver "
                       "(~0.65 MB each at the default grid), so decoding runs on while the operators load",
    "operator_actors": "operator (encoder/detector) actors in the pool",
    "concurrency": "avgrid annotate: input files decoded at the same time",
    "num_cpus": "CPUs for the local Ray instance",
    "torch_threads": "torch threads per operator actor",
    "status_interval_s": "avgrid run: seconds between status lines",
    "progress": "progress bars on/off",
}


def _field_type(name: str) -> type:
    t = {f.name: f.type for f in fields(Config)}[name]
    for base in ("int", "float", "bool", "str"):
        if t.startswith(base):
            return {"int": int, "float": float, "bool": bool, "str": str}[base]
    return str


def _coerce(name: str, value, origin: str):
    if value is None:
        return None
    typ = _field_type(name)
    try:
        if typ is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if typ is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return typ(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{origin}: option {name!r} must be {typ.__name__}, got {value!r}") from None


def validate(cfg: Config, origin: str = "config") -> Config:
    """Check ranges and combinations; raises ConfigError naming the option."""
    if cfg.bundle and cfg.profile == "offline":
        cfg = cfg.replace(profile="bundle")
    if cfg.profile not in PROFILES:
        raise ConfigError(f"{origin}: profile must be one of {', '.join(PROFILES)}, got {cfg.profile!r}")
    if cfg.profile == "bundle" and not cfg.bundle:
        raise ConfigError(f"{origin}: profile 'bundle' needs --bundle PATH")
    positive = ("hop_s", "max_segment_s", "fps", "frame_size", "chunk_cells", "max_batch", "max_inflight",
                "readahead_cells", "concurrency",
                "torch_threads", "status_interval_s")
    for name in positive:
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{origin}: option {name!r} must be > 0, got {getattr(cfg, name)!r}")
    if cfg.max_wait_ms < 0:
        raise ConfigError(f"{origin}: option 'max_wait_ms' must be >= 0")
    if cfg.duration is not None and cfg.duration <= 0:
        raise ConfigError(f"{origin}: option 'duration' must be > 0 seconds")
    if cfg.kafka is not None and ":" not in cfg.kafka:
        raise ConfigError(f"{origin}: option 'kafka' must be HOST:PORT, got {cfg.kafka!r}")
    if cfg.max_inflight < cfg.chunk_cells:
        cfg = cfg.replace(max_inflight=cfg.chunk_cells)
    return cfg


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> Config:
    """Defaults, then the YAML file at ``path`` (if any), then ``overrides`` (None values ignored).

    Raises ConfigError naming the file and the offending key for unknown keys, wrong types,
    unreadable or malformed YAML.
    """
    values: dict = {}
    if path is not None:
        origin = str(path)
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as e:
            raise ConfigError(f"{origin}: cannot read config: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{origin}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{origin}: config must be a mapping of option: value")
        for key, value in data.items():
            name = str(key).replace("-", "_")
            if name not in HELP:
                raise ConfigError(f"{origin}: unknown option {key!r} (known: {', '.join(sorted(HELP))})")
            values[name] = _coerce(name, value, origin)
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _coerce(name, value, "command line")
    return validate(Config(**values), str(path) if path else "command line")
