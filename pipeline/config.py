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

Kafka settings may also be grouped (``kafka.bootstrap`` is ``kafka``, ``kafka.X`` is ``kafka_X``)::

    kafka:
      bootstrap: broker-1:9093,broker-2:9093
      security_protocol: SASL_SSL
      sasl_mechanism: SCRAM-SHA-512
      sasl_username: avgrid
      sasl_password_file: /run/secrets/kafka-password    # or $AVGRID_KAFKA_SASL_PASSWORD
      ssl_cafile: /etc/avgrid/kafka-ca.pem

Passwords never come from flags (``ps`` shows those to every local user) or from the config file;
only from a ``*_password_file`` or the environment (:data:`SECRET_ENV`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from pipeline.errors import ConfigError
from pipeline.grid import GridConfig

PROFILES = ("offline", "standard", "bundle")
EXECUTORS = ("auto", "ray", "local")
DETECT_PROFILES = ("offline", "standard")      # the profiles whose operators use the detection view


@dataclass(frozen=True)
class Config:
    """Every option of ``avgrid annotate`` / ``avgrid run``. Units are in the names."""

    out: str = "./avgrid-out"
    kafka: str | None = None
    kafka_prefix: str = "avgrid"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password_file: str | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    kafka_ssl_password_file: str | None = None
    kafka_ssl_check_hostname: bool = True
    kafka_exactly_once: bool = False
    kafka_compression: str | None = None
    kafka_delivery_timeout_s: float = 120.0
    profile: str = "offline"
    bundle: str | None = None
    action_model: str = "r2plus1d_18"
    action_weights: str | None = None
    ray_address: str | None = None
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    dashboard_port: int | None = None
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
    executor: str = "auto"
    local_max_mb: float = 256.0
    thumbnail_interval_s: float = 5.0
    concurrency: int = 2
    num_cpus: int | None = None
    torch_threads: int = 1
    status_interval_s: float = 5.0
    start_timeout_s: float | None = None
    progress: bool | None = None
    # ((pattern, ISO-8601 time), ...): the capture time of the first cell of the inputs a path or glob
    # matches ("*": every input); wins over the container's creation_time
    media_origin: tuple[tuple[str, str], ...] = ()
    force: bool = False
    full_hash: bool = False
    # detection view (GridConfig.detect_px / detect_fps), built for the profiles that find people
    detect_px: int = 960
    detect_fps: float = 1.0
    # ((stream id or glob, ((zone name, "polygon" | "line", ((x, y), ...)), ...)), ...), relative coordinates
    zones: tuple = ()

    @property
    def grid(self) -> GridConfig:
        detect = self.detect_px if self.profile in DETECT_PROFILES else 0
        return GridConfig(hop_s=self.hop_s, fps=self.fps, frame_height=self.frame_size, frame_width=self.frame_size,
                          detect_px=detect, detect_fps=self.detect_fps)

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)


# option -> help text; the default is appended from Config. Also the YAML keys.
HELP: dict[str, str] = {
    "out": "Parquet dataset directory (one dataset per record kind under it)",
    "kafka": "Kafka bootstrap HOST:PORT; records also go to topics <prefix>.<kind>",
    "kafka_prefix": "Kafka topic prefix",
    "kafka_security_protocol": "Kafka: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
    "kafka_sasl_mechanism": "Kafka SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
    "kafka_sasl_username": "Kafka SASL user name",
    "kafka_sasl_password_file": "file holding the Kafka SASL password (else $AVGRID_KAFKA_SASL_PASSWORD; passwords "
                                "are never taken from flags or the config file)",
    "kafka_ssl_cafile": "CA certificates (PEM) that Kafka's TLS certificate must chain to",
    "kafka_ssl_certfile": "client certificate (PEM) for Kafka TLS client authentication",
    "kafka_ssl_keyfile": "private key (PEM) of --kafka-ssl-certfile",
    "kafka_ssl_password_file": "file holding the password of --kafka-ssl-keyfile (else $AVGRID_KAFKA_SSL_PASSWORD)",
    "kafka_ssl_check_hostname": "check that Kafka's TLS certificate names the broker host",
    "kafka_exactly_once": "Kafka: transactional producer; a consumer reading committed sees each record once",
    "kafka_compression": "Kafka compression: gzip, snappy, lz4 or zstd",
    "kafka_delivery_timeout_s": "Kafka: seconds the producer retries a record; one still unacknowledged 5 s later "
                                "goes to <out>/_deadletter/ (avgrid annotate: its input fails, exit status 1, and "
                                "a re-run sends it again; avgrid run goes on and reports the count)",
    "profile": "operators to run: offline (built-in detectors, no downloads), standard (torchvision pretrained "
               "encoders + Kinetics actions; needs their weights), bundle (a trained bundle, see --bundle)",
    "bundle": "trained fusion bundle directory (implies --profile bundle)",
    "action_model": "standard profile: the Kinetics-400 video classifier (r2plus1d_18, s3d, mvit_v2_s, swin3d_t)",
    "action_weights": "standard profile: weights file of --action-model",
    "ray_address": "join an existing Ray cluster (HOST:PORT) instead of starting a local one on 127.0.0.1",
    "metrics_port": "serve Prometheus metrics on 127.0.0.1:PORT (cells/s, stage latency, queues, drops, sink lag)",
    "metrics_host": "address the metrics endpoint binds to (0.0.0.0 exposes it, e.g. to a Prometheus in Kubernetes)",
    "dashboard_port": "avgrid run: serve a live page on http://127.0.0.1:PORT/ (each stream's state, fps, lag, "
                      "drops, reconnects, latest picture and records)",
    "duration": "avgrid run: stop this many seconds after the first media arrives",
    "hop_s": "grid cell length in media seconds",
    "fps": "frames sampled per media second",
    "frame_size": "frames are scaled to SIZE x SIZE pixels",
    "max_segment_s": "longest record: a label lasting longer is cut into records of this length (media s), so "
                     "live streams emit records while a condition lasts",
    "chunk_cells": "consecutive cells of one stream sent to the operators in one call",
    "max_batch": "most cells (across streams) in one operator call",
    "max_wait_ms": "longest a partly filled batch waits for more cells (ms)",
    "max_inflight": "cells per stream buffered between decoding and the operators, once in the source actor "
                    "and once on their way to the operators (live: beyond that the oldest are dropped and "
                    "reported as gap events; archives: decoding waits)",
    "readahead_cells": "avgrid annotate: cells per file decoded ahead of the operators, held in Ray's object "
                       "store (~0.65 MB each at the default grid, ~1.5 MB more with the detection view of a 720p "
                       "source), so decoding runs on while the operators load",
    "operator_actors": "operator (encoder/detector) actors in the pool",
    "executor": "avgrid annotate: where the actors run: ray (a local Ray instance, or --ray-address), local (no "
                "Ray: decoders in child processes, operators and sinks in this one) or auto (local for local files "
                "totalling at most --local-max-mb when no Ray is running in this process, else ray)",
    "local_max_mb": "avgrid annotate --executor auto: the most input megabytes (all files together) run without Ray",
    "thumbnail_interval_s": "seconds between the small JPEG thumbnails (160 px wide) each source sends for a live "
                            "page (0: none)",
    "concurrency": "avgrid annotate: input files decoded at the same time",
    "num_cpus": "CPUs for the local Ray instance",
    "torch_threads": "torch threads per operator actor",
    "status_interval_s": "avgrid run: seconds between status lines",
    "start_timeout_s": "avgrid run: a source that cannot be reached at start is retried with the reconnect backoff "
                       "(status 'connecting') for this many seconds, then fails; 0 fails at once",
    "progress": "progress bars on/off",
    "detect_px": "offline/standard: long side (px) of the larger copy of one frame per cell that people are "
                 "found in (aspect kept, never upscaled); 0 turns people, zones and lines off",
    "detect_fps": "frames per media second in that larger copy (people are detected on one a second at most)",
    "zones": "zones and lines to count people in, per stream id or glob, coordinates 0..1 (see README, "
             "Vision): in YAML a mapping {STREAM_OR_GLOB: [{name: door, polygon: [[x, y], ...]}, {name: gate, "
             "line: [[x, y], [x, y]]}]}; on the command line a YAML file holding that mapping",
    "media_origin": "avgrid annotate: wall-clock time (ISO 8601 with a zone, e.g. 2026-11-30T08:00:00Z) of each "
                    "input's first cell, so archive records get wall_start/wall_end; wins over the file's "
                    "creation_time. In YAML also per input or glob: {PATH_OR_GLOB: TIME}",
    "force": "avgrid annotate: annotate every input again, also those committed with the same content and "
             "settings (their old records are replaced)",
    "full_hash": "avgrid annotate: identify inputs by the sha256 of their whole content instead of size, "
                 "modification time and sampled blocks (reads every file once more; a copied or touched file "
                 "with the same bytes is then still skipped)",
}


def _field_type(name: str) -> type:
    t = {f.name: f.type for f in fields(Config)}[name]
    for base in ("int", "float", "bool", "str"):
        if t.startswith(base):
            return {"int": int, "float": float, "bool": bool, "str": str}[base]
    return str


def parse_time(value, origin: str) -> _dt.datetime:
    """An ISO-8601 time with a zone (YAML may already have made it a datetime) -> aware UTC datetime."""
    if isinstance(value, _dt.datetime):
        t = value
    else:
        try:
            t = _dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"{origin}: {value!r} is not an ISO-8601 time (e.g. 2026-11-30T08:00:00Z)") from None
    if t.utcoffset() is None:
        raise ConfigError(f"{origin}: {value!r} has no time zone; add one (Z for UTC, or e.g. +01:00)")
    return t.astimezone(_dt.timezone.utc)


def _media_origins(value, origin: str) -> tuple[tuple[str, str], ...]:
    """``TIME`` (every input) or ``{PATH_OR_GLOB: TIME}`` -> ((pattern, ISO UTC), ...), each time checked."""
    items = value.items() if isinstance(value, dict) else [("*", value)]
    return tuple((str(pat), parse_time(t, f"{origin}: media_origin {pat}").isoformat()) for pat, t in items)


def parse_zones(value, origin: str) -> tuple:
    """``{STREAM_OR_GLOB: [{name, polygon: [[x, y], ...]} | {name, line: [[x, y], [x, y]]}, ...]}`` (or a
    YAML file holding it) -> ((pattern, ((name, kind, ((x, y), ...)), ...)), ...). Coordinates are
    fractions of the frame (0..1, x right, y down). Raises ConfigError naming the zone and the reason."""
    if isinstance(value, str):
        try:
            value = yaml.safe_load(Path(value).read_text())
        except OSError as e:
            raise ConfigError(f"{origin}: zones: cannot read {value!r}: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{origin}: zones: {value!r} is not valid YAML: {e}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{origin}: zones must be a mapping of stream id or glob to a list of zones")
    out = []
    for pattern, items in value.items():
        where = f"{origin}: zones of {str(pattern)!r}"
        if not isinstance(items, list) or not items:
            raise ConfigError(f"{where}: expected a list of zones, e.g. [{{name: door, polygon: [[0.1, 0.1], "
                              f"[0.4, 0.1], [0.4, 0.9]]}}]")
        specs, names = [], set()
        for i, z in enumerate(items):
            label = f"zone {z.get('name')!r}" if isinstance(z, dict) and z.get("name") else f"zone #{i + 1}"
            if not isinstance(z, dict) or not z.get("name") or not isinstance(z.get("name"), str):
                raise ConfigError(f"{where}: {label}: every zone needs a name")
            kinds = [k for k in ("polygon", "line") if k in z]
            extra = sorted(set(z) - {"name", "polygon", "line"})
            if len(kinds) != 1 or extra:
                raise ConfigError(f"{where}: {label}: give exactly one of polygon or line"
                                  + (f" (unknown key {extra[0]!r})" if extra else ""))
            kind, pts = kinds[0], z[kinds[0]]
            try:
                points = tuple((float(p[0]), float(p[1])) for p in pts if len(p) == 2)
                if len(points) != len(pts):
                    raise ValueError
            except (TypeError, ValueError, KeyError):
                raise ConfigError(f"{where}: {label}: points must be [x, y] pairs of numbers") from None
            if kind == "polygon" and len(points) < 3:
                raise ConfigError(f"{where}: {label}: a polygon needs at least 3 points, got {len(points)}")
            if kind == "line" and (len(points) != 2 or points[0] == points[1]):
                raise ConfigError(f"{where}: {label}: a line needs 2 different points")
            bad = [p for p in points if not (0.0 <= p[0] <= 1.0 and 0.0 <= p[1] <= 1.0)]
            if bad:
                raise ConfigError(f"{where}: {label}: point {list(bad[0])} is outside the frame (coordinates "
                                  f"are fractions of the frame, 0..1)")
            if z["name"] in names:
                raise ConfigError(f"{where}: {label}: the name is used twice")
            names.add(z["name"])
            specs.append((z["name"], kind, points))
        out.append((str(pattern), tuple(specs)))
    return tuple(out)


def media_origin_for(cfg: "Config", path: str) -> _dt.datetime | None:
    """The origin ``cfg.media_origin`` gives ``path`` (the first pattern that matches it), or None."""
    import fnmatch

    absolute = os.path.abspath(path)
    for pattern, iso in cfg.media_origin:
        if pattern == "*" or path == pattern or absolute == os.path.abspath(pattern) \
                or fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(absolute, os.path.abspath(pattern)):
            return _dt.datetime.fromisoformat(iso)
    return None


def _coerce(name: str, value, origin: str):
    if value is None:
        return None
    if name == "media_origin":
        return _media_origins(value, origin)
    if name == "zones":
        return parse_zones(value, origin)
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
    if cfg.executor not in EXECUTORS:
        raise ConfigError(f"{origin}: option 'executor' must be one of {', '.join(EXECUTORS)}, got {cfg.executor!r}")
    if cfg.executor == "local" and cfg.ray_address:
        raise ConfigError(f"{origin}: --executor local runs without Ray; it cannot join --ray-address")
    for name in ("local_max_mb", "thumbnail_interval_s"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{origin}: option {name!r} must be >= 0")
    if cfg.start_timeout_s is not None and cfg.start_timeout_s < 0:
        raise ConfigError(f"{origin}: option 'start_timeout_s' must be >= 0 seconds")
    if cfg.max_wait_ms < 0:
        raise ConfigError(f"{origin}: option 'max_wait_ms' must be >= 0")
    if cfg.detect_px < 0 or cfg.detect_fps <= 0:
        raise ConfigError(f"{origin}: option 'detect_px' must be >= 0 and 'detect_fps' > 0")
    if cfg.zones and (cfg.detect_px == 0 or cfg.profile not in DETECT_PROFILES):
        raise ConfigError(f"{origin}: zones count people, which the {cfg.profile} profile"
                          f"{' with detect_px 0' if cfg.detect_px == 0 else ''} does not find")
    if cfg.duration is not None and cfg.duration <= 0:
        raise ConfigError(f"{origin}: option 'duration' must be > 0 seconds")
    if cfg.kafka_delivery_timeout_s <= 0:
        raise ConfigError(f"{origin}: option 'kafka_delivery_timeout_s' must be > 0 seconds")
    if cfg.kafka is not None and ":" not in cfg.kafka:
        raise ConfigError(f"{origin}: option 'kafka' must be HOST:PORT, got {cfg.kafka!r}")
    if cfg.max_inflight < cfg.chunk_cells:
        cfg = cfg.replace(max_inflight=cfg.chunk_cells)
    return _validate_kafka(cfg, origin)


KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
COMPRESSIONS = ("gzip", "snappy", "lz4", "zstd")
# where a password comes from when its *_password_file option is not set
SECRET_ENV = {"kafka_sasl_password": "AVGRID_KAFKA_SASL_PASSWORD", "kafka_ssl_password": "AVGRID_KAFKA_SSL_PASSWORD"}
_KAFKA_DEFAULTS = {f.name: f.default for f in fields(Config) if f.name.startswith("kafka_") and f.name != "kafka_prefix"}
_SSL_OPTIONS = [n for n in _KAFKA_DEFAULTS if n.startswith("kafka_ssl_")]


def _validate_kafka(cfg: Config, origin: str) -> Config:
    cfg = cfg.replace(kafka_security_protocol=cfg.kafka_security_protocol.upper(),
                      kafka_sasl_mechanism=cfg.kafka_sasl_mechanism and cfg.kafka_sasl_mechanism.upper(),
                      kafka_compression=cfg.kafka_compression and cfg.kafka_compression.lower())
    if cfg.kafka is None:
        changed = [n for n, d in _KAFKA_DEFAULTS.items() if getattr(cfg, n) != d]
        if changed:
            raise ConfigError(f"{origin}: option {changed[0]!r} is set but no Kafka is (--kafka HOST:PORT)")
        return cfg
    proto = cfg.kafka_security_protocol
    if proto not in KAFKA_PROTOCOLS:
        raise ConfigError(f"{origin}: option 'kafka_security_protocol' must be one of {', '.join(KAFKA_PROTOCOLS)}, "
                          f"got {proto!r}")
    if proto.startswith("SASL_"):
        if cfg.kafka_sasl_mechanism not in SASL_MECHANISMS:
            raise ConfigError(f"{origin}: {proto} needs kafka_sasl_mechanism, one of {', '.join(SASL_MECHANISMS)} "
                              f"(got {cfg.kafka_sasl_mechanism!r})")
        if not cfg.kafka_sasl_username:
            raise ConfigError(f"{origin}: {proto} needs kafka_sasl_username")
        if not cfg.kafka_sasl_password_file and not os.environ.get(SECRET_ENV["kafka_sasl_password"]):
            raise ConfigError(f"{origin}: {proto} needs a password: kafka_sasl_password_file: PATH, or "
                              f"${SECRET_ENV['kafka_sasl_password']} in the environment")
    elif cfg.kafka_sasl_mechanism or cfg.kafka_sasl_username or cfg.kafka_sasl_password_file:
        raise ConfigError(f"{origin}: SASL options are set but kafka_security_protocol is {proto} "
                          f"(SASL_PLAINTEXT or SASL_SSL uses them)")
    ssl_set = [n for n in _SSL_OPTIONS if getattr(cfg, n) != _KAFKA_DEFAULTS[n]]
    if ssl_set and not proto.endswith("SSL"):
        raise ConfigError(f"{origin}: option {ssl_set[0]!r} is set but kafka_security_protocol is {proto} "
                          f"(SSL or SASL_SSL uses it)")
    if cfg.kafka_ssl_keyfile and not cfg.kafka_ssl_certfile:
        raise ConfigError(f"{origin}: option 'kafka_ssl_keyfile' needs kafka_ssl_certfile (the certificate of that key)")
    for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile", "kafka_ssl_password_file",
                 "kafka_sasl_password_file"):
        path = getattr(cfg, name)
        if path and not os.path.isfile(path):
            raise ConfigError(f"{origin}: option {name!r}: no such file {path!r}")
    if cfg.kafka_compression is not None and cfg.kafka_compression not in COMPRESSIONS:
        raise ConfigError(f"{origin}: option 'kafka_compression' must be one of {', '.join(COMPRESSIONS)}, "
                          f"got {cfg.kafka_compression!r}")
    return cfg


def _secret(cfg: Config, name: str) -> str | None:
    """The password ``name`` from its ``<name>_file`` option, else from its environment variable."""
    path = getattr(cfg, f"{name}_file")
    if path:
        try:
            value = Path(path).read_text().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"option '{name}_file': cannot read {path!r}: "
                              f"{getattr(e, 'strerror', None) or type(e).__name__}") from None
        if not value:
            raise ConfigError(f"option '{name}_file': {path!r} is empty")
        return value
    return os.environ.get(SECRET_ENV[name]) or None


def _read_pem(cfg: Config, option: str) -> bytes:
    """A TLS file's bytes, read on the driver: the sink actor may run on a node that lacks the file."""
    path = getattr(cfg, option)
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"option {option!r}: cannot read {path!r}: {e.strerror or e}") from None


def kafka_sink_config(cfg: Config, *, run_id: str, live: bool):
    """The :class:`~pipeline.sinks.KafkaConfig` of ``cfg`` (None without ``--kafka``), passwords read
    from their files or the environment here, on the driver. Raises ConfigError naming the option."""
    if cfg.kafka is None:
        return None
    from kafka import codec

    from pipeline.sinks import KafkaConfig

    if cfg.kafka_compression:
        has = {"gzip": codec.has_gzip, "snappy": codec.has_snappy, "lz4": codec.has_lz4, "zstd": codec.has_zstd}
        if not has[cfg.kafka_compression]():
            raise ConfigError(f"option 'kafka_compression': {cfg.kafka_compression} needs its Python library "
                              f"(pip install {dict(snappy='python-snappy', zstd='zstandard').get(cfg.kafka_compression, cfg.kafka_compression)})")
    return KafkaConfig(
        bootstrap=cfg.kafka, prefix=cfg.kafka_prefix, live=live, dead_letter_dir=cfg.out, run_id=run_id,
        security_protocol=cfg.kafka_security_protocol, sasl_mechanism=cfg.kafka_sasl_mechanism,
        sasl_username=cfg.kafka_sasl_username,
        sasl_password=_secret(cfg, "kafka_sasl_password") if cfg.kafka_sasl_mechanism else None,
        ssl_cafile=cfg.kafka_ssl_cafile, ssl_certfile=cfg.kafka_ssl_certfile, ssl_keyfile=cfg.kafka_ssl_keyfile,
        ssl_password=_secret(cfg, "kafka_ssl_password") if cfg.kafka_ssl_certfile else None,
        ssl_pem=tuple((name, _read_pem(cfg, f"kafka_{name}")) for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
                      if getattr(cfg, f"kafka_{name}")),
        ssl_check_hostname=cfg.kafka_ssl_check_hostname, exactly_once=cfg.kafka_exactly_once,
        compression=cfg.kafka_compression, delivery_timeout_s=cfg.kafka_delivery_timeout_s,
        # a request that outlives the delivery timeout would only be cut short by it
        request_timeout_s=min(30.0, max(1.0, cfg.kafka_delivery_timeout_s / 2)))


def _flatten(data: dict) -> dict:
    """``kafka: {bootstrap: H:P, sasl_mechanism: ...}`` -> ``kafka: H:P, kafka_sasl_mechanism: ...``;
    other keys as they are."""
    flat: dict = {}

    def put(key: str, value) -> None:
        if key.replace("-", "_") in {k.replace("-", "_") for k in flat}:
            raise ConfigError(f"option {key!r} is given twice")
        flat[key] = value

    for key, value in data.items():
        key = str(key)
        if key == "kafka" and isinstance(value, dict):
            for sub, v in value.items():
                sub = str(sub).replace("-", "_")
                put("kafka" if sub == "bootstrap" else f"kafka_{sub}", v)
        else:
            put(key, value)
    return flat


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
        try:
            flat = _flatten(data)
        except ConfigError as e:
            raise ConfigError(f"{origin}: {e}") from None
        for key, value in flat.items():
            name = key.replace("-", "_")
            if name in SECRET_ENV:
                raise ConfigError(f"{origin}: option {key!r}: passwords are not read from the config file (it is "
                                  f"often shared, e.g. as a Kubernetes ConfigMap); set {name}_file: PATH or "
                                  f"${SECRET_ENV[name]} instead")
            if name not in HELP:
                raise ConfigError(f"{origin}: unknown option {key!r} (known: {', '.join(sorted(HELP))})")
            if value is not None:       # an empty key (`x:` or `x: ~`) leaves the default
                values[name] = _coerce(name, value, origin)
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _coerce(name, value, "command line")
    return validate(Config(**values), str(path) if path else "command line")
