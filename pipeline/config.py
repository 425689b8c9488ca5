"""Run configuration: option groups whose fields drive the CLI flags, the YAML config file and ``--help``.

Every option of ``avgrid annotate`` / ``avgrid run`` is a field of one group dataclass (:class:`KafkaOptions`,
:class:`GridOptions`, ...), its help text and unit in the field's metadata and the unit also in its name.
The option's *name* -- the flag without ``--`` and with ``_`` for ``-``, and the flat YAML key -- is the
field name, with ``kafka_`` in front for the Kafka group (``kafka.prefix`` is ``--kafka-prefix`` and
``kafka_prefix:``; ``kafka.bootstrap`` is ``--kafka``). Code reads options by group::

    cfg = load_config("avgrid.yaml", overrides={"profile": "standard"})   # overrides by option name
    cfg.kafka.bootstrap, cfg.grid.hop_s, cfg.runtime.max_batch, cfg.outputs.out
    cfg.grid_config                     # the pipeline.grid.GridConfig the sources cut cells on
    cfg.with_options(max_batch=4)       # a copy with options changed, by option name
    cfg.options()                       # {option name: value} for every option

A YAML config may use the flat option names (as the flags are spelt) or the groups, or both; flags
given on the command line win over the file, the file wins over the defaults::

    # avgrid.yaml
    out: /data/annotations
    profile: offline
    grid:
      hop_s: 1.0
    runtime:
      max_batch: 16
    kafka:
      bootstrap: broker-1:9093,broker-2:9093       # or, flat, kafka: broker-1:9093,...
      prefix: cams
      security_protocol: SASL_SSL
      sasl_mechanism: SCRAM-SHA-512
      sasl_username: avgrid
      sasl_password_file: /run/secrets/kafka-password    # or $AVGRID_KAFKA_SASL_PASSWORD
      ssl_cafile: /etc/avgrid/kafka-ca.pem

:func:`config_to_yaml` writes a config in that grouped form; :func:`load_config` reads it back equal.
Passwords never come from flags (``ps`` shows those to every local user) or from the config file;
only from a ``*_password_file`` or the environment (:data:`SECRET_ENV`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from pipeline.errors import ConfigError
from pipeline.grid import GridConfig

PROFILES = ("offline", "standard", "bundle")
EXECUTORS = ("auto", "ray", "local")
DETECT_PROFILES = ("offline", "standard")      # the profiles whose operators use the detection view


def option(default: Any, help: str, *, metavar: str | None = None, shown: str | None = None,
           only: str | None = None, name: str | None = None, short: str | None = None,
           parse: Callable | None = None, dump: Callable | None = None):
    """A config field: ``help`` for ``--help``; ``metavar`` for the flag (else FILE / SECONDS / MS / N from
    the name and type); ``shown``: the default as ``--help`` words it; ``only``: the one command it
    belongs to (``annotate`` or ``run``); ``name``: the option name when it is not group prefix + field
    name; ``short``: a short flag; ``parse(value, origin)`` / ``dump(value)``: how a structured value is
    read from YAML or a flag (raising ConfigError) and written back as YAML."""
    meta = dict(help=help, metavar=metavar, shown=shown, only=only, name=name, short=short, parse=parse, dump=dump)
    if isinstance(default, (list, dict, set)):
        raise TypeError("option defaults are immutable values (use a tuple)")
    return field(default=default, metadata=meta)


def _group(cls: type, title: str, *, prefix: str = "", only: str | None = None):
    return field(default_factory=cls, metadata=dict(title=title, prefix=prefix, only=only))


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


def _read_yaml(path, unreadable: str, invalid: str):
    """The YAML document in file ``path``; ConfigError ``"<unreadable>: <reason>"`` when the file cannot be
    read, ``"<invalid>: <parser's message>"`` when it is not YAML."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"{unreadable}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{invalid}: {e}") from None


def parse_zones(value, origin: str) -> tuple:
    """``{STREAM_OR_GLOB: [{name, polygon: [[x, y], ...]} | {name, line: [[x, y], [x, y]]}, ...]}`` (or a
    YAML file holding it) -> ((pattern, ((name, kind, ((x, y), ...)), ...)), ...). Coordinates are
    fractions of the frame (0..1, x right, y down). Raises ConfigError naming the zone and the reason."""
    if isinstance(value, str):
        value = _read_yaml(value, f"{origin}: zones: cannot read {value!r}",
                           f"{origin}: zones: {value!r} is not valid YAML")
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




def _dump_media_origins(value: tuple) -> dict:
    return {pattern: iso for pattern, iso in value}


def _dump_zones(value: tuple) -> dict:
    return {pattern: [{"name": name, kind: [list(p) for p in points]} for name, kind, points in specs]
            for pattern, specs in value}


@dataclass(frozen=True)
class OutputOptions:
    """Where records go and how they are cut."""

    out: str = option("./avgrid-out", "Parquet dataset directory (one dataset per record kind under it)",
                      metavar="DIR", short="-o")
    max_segment_s: float = option(10.0, "longest record: a label lasting longer is cut into records of this "
                                  "length (media s), so live streams emit records while a condition lasts")
    thumbnail_interval_s: float = option(5.0, "seconds between the small JPEG thumbnails (160 px wide) each source "
                                         "sends for a live page (0: none)", metavar="SECONDS")


@dataclass(frozen=True)
class KafkaOptions:
    """The Kafka sink and its connection (option names ``kafka_<field>``; ``bootstrap`` is ``kafka``)."""

    bootstrap: str | None = option(None, "Kafka bootstrap HOST:PORT; records also go to topics <prefix>.<kind>",
                                   name="kafka", metavar="HOST:PORT")
    prefix: str = option("avgrid", "Kafka topic prefix", metavar="P")
    security_protocol: str = option("PLAINTEXT", "Kafka: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
                                    metavar="PROTOCOL")
    sasl_mechanism: str | None = option(None, "Kafka SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                                        metavar="MECHANISM")
    sasl_username: str | None = option(None, "Kafka SASL user name", metavar="USER")
    sasl_password_file: str | None = option(None, "file holding the Kafka SASL password (else "
                                            "$AVGRID_KAFKA_SASL_PASSWORD; passwords are never taken from flags "
                                            "or the config file)")
    ssl_cafile: str | None = option(None, "CA certificates (PEM) that Kafka's TLS certificate must chain to")
    ssl_certfile: str | None = option(None, "client certificate (PEM) for Kafka TLS client authentication")
    ssl_keyfile: str | None = option(None, "private key (PEM) of --kafka-ssl-certfile")
    ssl_password_file: str | None = option(None, "file holding the password of --kafka-ssl-keyfile (else "
                                           "$AVGRID_KAFKA_SSL_PASSWORD)")
    ssl_check_hostname: bool = option(True, "check that Kafka's TLS certificate names the broker host")
    exactly_once: bool = option(False, "Kafka: transactional producer; a consumer reading committed sees each "
                                "record once")
    compression: str | None = option(None, "Kafka compression: gzip, snappy, lz4 or zstd", metavar="CODEC")
    delivery_timeout_s: float = option(120.0, "Kafka: seconds the producer retries a record; one still "
                                       "unacknowledged 5 s later goes to <out>/_deadletter/ (avgrid annotate: its "
                                       "input fails, exit status 1, and a re-run sends it again; avgrid run goes "
                                       "on and reports the count)")


@dataclass(frozen=True)
class GridOptions:
    """The temporal grid: cell length and the frames sampled per cell (see :attr:`Config.grid_config`)."""

    hop_s: float = option(1.0, "grid cell length in media seconds")
    fps: float = option(4.0, "frames sampled per media second")
    frame_size: int = option(224, "frames are scaled to SIZE x SIZE pixels", metavar="PIXELS")
    # detection view (GridConfig.detect_px / detect_fps), built for the profiles that find people
    detect_px: int = option(960, "offline/standard: long side (px) of the larger copy of one frame per cell that "
                            "people are found in (aspect kept, never upscaled); 0 turns people, zones and lines off")
    detect_fps: float = option(1.0, "frames per media second in that larger copy (people are detected on one a "
                               "second at most)")


@dataclass(frozen=True)
class OperatorOptions:
    """Which operators run, and what they are told."""

    profile: str = option("offline", "operators to run: offline (built-in detectors, no downloads), standard "
                          "(torchvision pretrained encoders + Kinetics actions; needs their weights), bundle (a "
                          "trained bundle, see --bundle)", metavar="NAME")
    bundle: str | None = option(None, "trained fusion bundle directory (implies --profile bundle)", metavar="PATH")
    action_model: str = option("r2plus1d_18", "standard profile: the Kinetics-400 video classifier (r2plus1d_18, "
                               "s3d, mvit_v2_s, swin3d_t)", metavar="MODEL")
    action_weights: str | None = option(None, "standard profile: weights file of --action-model", metavar="FILE",
                                        shown="torchvision's cache")
    # ((stream id or glob, ((zone name, "polygon" | "line", ((x, y), ...)), ...)), ...), relative coordinates
    zones: tuple = option((), "zones and lines to count people in, per stream id or glob, coordinates 0..1 (see "
                          "README, Vision): in YAML a mapping {STREAM_OR_GLOB: [{name: door, polygon: [[x, y], "
                          "...]}, {name: gate, line: [[x, y], [x, y]]}]}; on the command line a YAML file holding "
                          "that mapping", parse=parse_zones, dump=_dump_zones)


@dataclass(frozen=True)
class RuntimeOptions:
    """Where the actors run and how cells are batched between them."""

    executor: str = option("auto", "avgrid annotate: where the actors run: ray (a local Ray instance, or "
                           "--ray-address), local (no Ray: decoders in child processes, operators and sinks in "
                           "this one) or auto (local for local files totalling at most --local-max-mb when no Ray "
                           "is running in this process, else ray)", metavar="NAME", only="annotate")
    local_max_mb: float = option(256.0, "avgrid annotate --executor auto: the most input megabytes (all files "
                                 "together) run without Ray", metavar="MB", only="annotate")
    ray_address: str | None = option(None, "join an existing Ray cluster (HOST:PORT) instead of starting a local "
                                     "one on 127.0.0.1", metavar="HOST:PORT")
    num_cpus: int | None = option(None, "CPUs for the local Ray instance", shown="all")
    operator_actors: int | None = option(None, "operator (encoder/detector) actors in the pool",
                                         shown="one per 2 Ray CPUs, at least 1")
    torch_threads: int = option(1, "torch threads per operator actor")
    chunk_cells: int = option(4, "consecutive cells of one stream sent to the operators in one call")
    max_batch: int = option(16, "most cells (across streams) in one operator call")
    max_wait_ms: float = option(50.0, "longest a partly filled batch waits for more cells (ms)")
    max_inflight: int = option(8, "cells per stream buffered between decoding and the operators, once in the "
                               "source actor and once on their way to the operators (live: beyond that the oldest "
                               "are dropped and reported as gap events; archives: decoding waits)")


@dataclass(frozen=True)
class ArchiveOptions:
    """``avgrid annotate``: how archived inputs are read, and which are annotated again."""

    concurrency: int = option(2, "avgrid annotate: input files decoded at the same time")
    readahead_cells: int = option(48, "avgrid annotate: cells per file decoded ahead of the operators, held in "
                                  "Ray's object store (~0.65 MB each at the default grid, ~1.5 MB more with the "
                                  "detection view of a 720p source), so decoding runs on while the operators load")
    # ((pattern, ISO-8601 time), ...): the capture time of the first cell of the inputs a path or glob
    # matches ("*": every input); wins over the container's creation_time
    media_origin: tuple[tuple[str, str], ...] = option(
        (), "avgrid annotate: wall-clock time (ISO 8601 with a zone, e.g. 2026-11-30T08:00:00Z) of each input's "
        "first cell, so archive records get wall_start/wall_end; wins over the file's creation_time. In YAML also "
        "per input or glob: {PATH_OR_GLOB: TIME}", metavar="ISO8601", shown="the file's creation_time, if any",
        parse=_media_origins, dump=_dump_media_origins)
    force: bool = option(False, "avgrid annotate: annotate every input again, also those committed with the same "
                         "content and settings (their old records are replaced)")
    full_hash: bool = option(False, "avgrid annotate: identify inputs by the sha256 of their whole content "
                             "instead of size, modification time and sampled blocks (reads every file once more; "
                             "a copied or touched file with the same bytes is then still skipped)")
    decoders: int = option(0, "avgrid annotate: readers decoding one long file (90 s or more, in a seekable "
                           "container: MP4, MOV, MKV, WebM, AVI) at once, in windows of 30 s handed on in order; "
                           "the cells are those of one pass. 0: one per core, at most 4; 1: one pass",
                           shown="one per core, at most 4")


@dataclass(frozen=True)
class LiveOptions:
    """``avgrid run``: how long live sources run, and how they are watched."""

    duration: float | None = option(None, "avgrid run: stop this many seconds after the first media arrives",
                                    metavar="SECONDS", shown="until SIGINT/SIGTERM")
    start_timeout_s: float | None = option(None, "avgrid run: a source that cannot be reached at start is retried "
                                           "with the reconnect backoff (status 'connecting') for this many "
                                           "seconds, then fails; 0 fails at once", shown="keeps trying")
    status_interval_s: float = option(5.0, "avgrid run: seconds between status lines")
    dashboard_port: int | None = option(None, "avgrid run: serve a live page on http://127.0.0.1:PORT/ (each "
                                        "stream's state, fps, lag, drops, reconnects, latest picture and records)",
                                        metavar="PORT", shown="off")


@dataclass(frozen=True)
class MonitoringOptions:
    """Prometheus metrics and progress bars."""

    metrics_port: int | None = option(None, "serve Prometheus metrics on 127.0.0.1:PORT (cells/s, stage latency, "
                                      "queues, drops, sink lag)", metavar="PORT")
    metrics_host: str = option("127.0.0.1", "address the metrics endpoint binds to (0.0.0.0 exposes it, e.g. to a "
                               "Prometheus in Kubernetes)", metavar="HOST")
    progress: bool | None = option(None, "progress bars on/off", shown="on when stderr is a terminal")


@dataclass(frozen=True)
class Config:
    """Every option of ``avgrid annotate`` / ``avgrid run``, by group. Units are in the names."""

    outputs: OutputOptions = _group(OutputOptions, "Outputs")
    kafka: KafkaOptions = _group(KafkaOptions, "Kafka (passwords only from a file or the environment)",
                                 prefix="kafka_")
    grid: GridOptions = _group(GridOptions, "Grid")
    operators: OperatorOptions = _group(OperatorOptions, "Operators")
    runtime: RuntimeOptions = _group(RuntimeOptions, "Runtime")
    archive: ArchiveOptions = _group(ArchiveOptions, "Archives", only="annotate")
    live: LiveOptions = _group(LiveOptions, "Live sources", only="run")
    monitoring: MonitoringOptions = _group(MonitoringOptions, "Monitoring")

    @property
    def grid_config(self) -> GridConfig:
        """The grid cells are cut on (the detection view only for the profiles that find people)."""
        g = self.grid
        detect = g.detect_px if self.operators.profile in DETECT_PROFILES else 0
        return GridConfig(hop_s=g.hop_s, fps=g.fps, frame_height=g.frame_size, frame_width=g.frame_size,
                          detect_px=detect, detect_fps=g.detect_fps)

    @classmethod
    def from_options(cls, values: dict[str, Any] | None = None) -> "Config":
        """A Config from ``{option name: value}`` (values already of the option's type); others default."""
        return cls().with_options(**(values or {}))

    def options(self) -> dict[str, Any]:
        """``{option name: value}`` for every option, in definition order."""
        return {o.name: getattr(getattr(self, o.group), o.field) for o in OPTIONS.values()}

    def with_options(self, **changes) -> "Config":
        """A copy with the options named by their option names (``max_batch=4``) changed."""
        by_group: dict[str, dict] = {}
        for name, value in changes.items():
            if name not in OPTIONS:
                raise TypeError(f"unknown option {name!r}")
            o = OPTIONS[name]
            by_group.setdefault(o.group, {})[o.field] = value
        return dataclasses.replace(self, **{g: dataclasses.replace(getattr(self, g), **kw)
                                            for g, kw in by_group.items()})


@dataclass(frozen=True)
class Option:
    """One option, as :data:`OPTIONS` lists it: its name, where it lives, its type and its help."""

    name: str                       # flag without "--" (with "_"), flat YAML key
    group: str                      # Config field holding its group
    field: str                      # field in that group
    type: type                      # int, float, bool or str (None-able options take None too)
    default: Any
    help: str
    metavar: str | None
    shown: str                      # the default as --help words it
    only: str | None                # "annotate" / "run": the one command that has it
    short: str | None
    parse: Callable | None
    dump: Callable | None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _scalar(hint) -> type:
    """``int | None`` -> int; a tuple (a structured value, parsed by its option) -> str."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint if hint in (int, float, bool, str) else str


def _options() -> dict[str, Option]:
    table: dict[str, Option] = {}
    for g in dataclasses.fields(Config):
        hints = typing.get_type_hints(g.default_factory)
        for f in dataclasses.fields(g.default_factory):
            m = f.metadata
            name = m["name"] or g.metadata["prefix"] + f.name
            typ = _scalar(hints[f.name])
            metavar = m["metavar"] or ("FILE" if f.name.endswith("file") else "SECONDS" if f.name.endswith("_s")
                                       else "MS" if f.name.endswith("_ms") else "N" if typ is int else None)
            shown = m["shown"] or ("none" if f.default is None else str(f.default))
            if name in table:
                raise TypeError(f"option {name!r} is defined twice")
            table[name] = Option(name, g.name, f.name, typ, f.default, m["help"], metavar, shown,
                                 m["only"] or g.metadata["only"], m["short"], m["parse"], m["dump"])
    return table


# option name -> Option, in the order --help lists them. Also the flat YAML keys.
OPTIONS: dict[str, Option] = _options()
GROUPS: dict[str, str] = {g.name: g.metadata["title"] for g in dataclasses.fields(Config)}   # group -> title


def media_origin_for(cfg: Config, path: str) -> _dt.datetime | None:
    """The origin ``cfg.archive.media_origin`` gives ``path`` (the first pattern that matches it), or None."""
    import fnmatch

    absolute = os.path.abspath(path)
    for pattern, iso in cfg.archive.media_origin:
        if pattern == "*" or path == pattern or absolute == os.path.abspath(pattern) \
                or fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(absolute, os.path.abspath(pattern)):
            return _dt.datetime.fromisoformat(iso)
    return None


def _coerce(name: str, value, origin: str):
    if value is None:
        return None
    o = OPTIONS[name]
    if o.parse is not None:
        return o.parse(value, origin)
    typ = o.type
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
    ops = cfg.operators
    if ops.bundle and ops.profile == "offline":
        cfg = cfg.with_options(profile="bundle")
        ops = cfg.operators
    if ops.profile not in PROFILES:
        raise ConfigError(f"{origin}: profile must be one of {', '.join(PROFILES)}, got {ops.profile!r}")
    if ops.profile == "bundle" and not ops.bundle:
        raise ConfigError(f"{origin}: profile 'bundle' needs --bundle PATH")
    values = cfg.options()
    positive = ("hop_s", "max_segment_s", "fps", "frame_size", "chunk_cells", "max_batch", "max_inflight",
                "readahead_cells", "concurrency",
                "torch_threads", "status_interval_s")
    for name in positive:
        if values[name] <= 0:
            raise ConfigError(f"{origin}: option {name!r} must be > 0, got {values[name]!r}")
    rt = cfg.runtime
    if rt.executor not in EXECUTORS:
        raise ConfigError(f"{origin}: option 'executor' must be one of {', '.join(EXECUTORS)}, got {rt.executor!r}")
    if rt.executor == "local" and rt.ray_address:
        raise ConfigError(f"{origin}: --executor local runs without Ray; it cannot join --ray-address")
    for name in ("local_max_mb", "thumbnail_interval_s"):
        if values[name] < 0:
            raise ConfigError(f"{origin}: option {name!r} must be >= 0")
    if cfg.live.start_timeout_s is not None and cfg.live.start_timeout_s < 0:
        raise ConfigError(f"{origin}: option 'start_timeout_s' must be >= 0 seconds")
    if rt.max_wait_ms < 0:
        raise ConfigError(f"{origin}: option 'max_wait_ms' must be >= 0")
    g = cfg.grid
    if g.detect_px < 0 or g.detect_fps <= 0:
        raise ConfigError(f"{origin}: option 'detect_px' must be >= 0 and 'detect_fps' > 0")
    if ops.zones and (g.detect_px == 0 or ops.profile not in DETECT_PROFILES):
        raise ConfigError(f"{origin}: zones count people, which the {ops.profile} profile"
                          f"{' with detect_px 0' if g.detect_px == 0 else ''} does not find")
    if cfg.live.duration is not None and cfg.live.duration <= 0:
        raise ConfigError(f"{origin}: option 'duration' must be > 0 seconds")
    if cfg.kafka.delivery_timeout_s <= 0:
        raise ConfigError(f"{origin}: option 'kafka_delivery_timeout_s' must be > 0 seconds")
    if cfg.kafka.bootstrap is not None and ":" not in cfg.kafka.bootstrap:
        raise ConfigError(f"{origin}: option 'kafka' must be HOST:PORT, got {cfg.kafka.bootstrap!r}")
    if rt.max_inflight < rt.chunk_cells:
        cfg = cfg.with_options(max_inflight=rt.chunk_cells)
    return _validate_kafka(cfg, origin)


KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
COMPRESSIONS = ("gzip", "snappy", "lz4", "zstd")
# where a password comes from when its *_password_file option is not set (keys: option names)
SECRET_ENV = {"kafka_sasl_password": "AVGRID_KAFKA_SASL_PASSWORD", "kafka_ssl_password": "AVGRID_KAFKA_SSL_PASSWORD"}
# the Kafka options that need --kafka, by option name: every one but the bootstrap itself and the prefix
_KAFKA_DEPENDENT = [o for o in OPTIONS.values() if o.group == "kafka" and o.field not in ("bootstrap", "prefix")]


def _validate_kafka(cfg: Config, origin: str) -> Config:
    k = cfg.kafka
    k = dataclasses.replace(k, security_protocol=k.security_protocol.upper(),
                            sasl_mechanism=k.sasl_mechanism and k.sasl_mechanism.upper(),
                            compression=k.compression and k.compression.lower())
    cfg = dataclasses.replace(cfg, kafka=k)
    changed = [o for o in _KAFKA_DEPENDENT if getattr(k, o.field) != o.default]
    if k.bootstrap is None:
        if changed:
            raise ConfigError(f"{origin}: option {changed[0].name!r} is set but no Kafka is (--kafka HOST:PORT)")
        return cfg
    proto = k.security_protocol
    if proto not in KAFKA_PROTOCOLS:
        raise ConfigError(f"{origin}: option 'kafka_security_protocol' must be one of {', '.join(KAFKA_PROTOCOLS)}, "
                          f"got {proto!r}")
    if proto.startswith("SASL_"):
        if k.sasl_mechanism not in SASL_MECHANISMS:
            raise ConfigError(f"{origin}: {proto} needs kafka_sasl_mechanism, one of {', '.join(SASL_MECHANISMS)} "
                              f"(got {k.sasl_mechanism!r})")
        if not k.sasl_username:
            raise ConfigError(f"{origin}: {proto} needs kafka_sasl_username")
        if not k.sasl_password_file and not os.environ.get(SECRET_ENV["kafka_sasl_password"]):
            raise ConfigError(f"{origin}: {proto} needs a password: kafka_sasl_password_file: PATH, or "
                              f"${SECRET_ENV['kafka_sasl_password']} in the environment")
    elif k.sasl_mechanism or k.sasl_username or k.sasl_password_file:
        raise ConfigError(f"{origin}: SASL options are set but kafka_security_protocol is {proto} "
                          f"(SASL_PLAINTEXT or SASL_SSL uses them)")
    ssl_set = [o.name for o in changed if o.field.startswith("ssl_")]
    if ssl_set and not proto.endswith("SSL"):
        raise ConfigError(f"{origin}: option {ssl_set[0]!r} is set but kafka_security_protocol is {proto} "
                          f"(SSL or SASL_SSL uses it)")
    if k.ssl_keyfile and not k.ssl_certfile:
        raise ConfigError(f"{origin}: option 'kafka_ssl_keyfile' needs kafka_ssl_certfile "
                          f"(the certificate of that key)")
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password_file", "sasl_password_file"):
        path = getattr(k, name)
        if path and not os.path.isfile(path):
            raise ConfigError(f"{origin}: option 'kafka_{name}': no such file {path!r}")
    if k.compression is not None and k.compression not in COMPRESSIONS:
        raise ConfigError(f"{origin}: option 'kafka_compression' must be one of {', '.join(COMPRESSIONS)}, "
                          f"got {k.compression!r}")
    return cfg


def _secret(k: KafkaOptions, name: str) -> str | None:
    """The password ``kafka_<name>`` from its ``kafka_<name>_file`` option, else from its environment variable."""
    path = getattr(k, f"{name}_file")
    if path:
        try:
            value = Path(path).read_text().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"option 'kafka_{name}_file': cannot read {path!r}: "
                              f"{getattr(e, 'strerror', None) or type(e).__name__}") from None
        if not value:
            raise ConfigError(f"option 'kafka_{name}_file': {path!r} is empty")
        return value
    return os.environ.get(SECRET_ENV[f"kafka_{name}"]) or None


def _read_pem(k: KafkaOptions, name: str) -> bytes:
    """A TLS file's bytes, read on the driver: the sink actor may run on a node that lacks the file."""
    path = getattr(k, name)
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"option 'kafka_{name}': cannot read {path!r}: {e.strerror or e}") from None


def kafka_sink_config(cfg: Config, *, run_id: str, live: bool):
    """The :class:`~pipeline.sinks.KafkaConfig` of ``cfg`` (None without ``--kafka``), passwords read
    from their files or the environment here, on the driver. Raises ConfigError naming the option."""
    k = cfg.kafka
    if k.bootstrap is None:
        return None
    from kafka import codec

    from pipeline.sinks import KafkaConfig

    if k.compression:
        has = {"gzip": codec.has_gzip, "snappy": codec.has_snappy, "lz4": codec.has_lz4, "zstd": codec.has_zstd}
        if not has[k.compression]():
            package = {"snappy": "python-snappy", "zstd": "zstandard"}.get(k.compression, k.compression)
            raise ConfigError(f"option 'kafka_compression': {k.compression} needs its Python library "
                              f"(pip install {package})")
    return KafkaConfig(
        bootstrap=k.bootstrap, prefix=k.prefix, live=live, dead_letter_dir=cfg.outputs.out, run_id=run_id,
        security_protocol=k.security_protocol, sasl_mechanism=k.sasl_mechanism,
        sasl_username=k.sasl_username,
        sasl_password=_secret(k, "sasl_password") if k.sasl_mechanism else None,
        ssl_cafile=k.ssl_cafile, ssl_certfile=k.ssl_certfile, ssl_keyfile=k.ssl_keyfile,
        ssl_password=_secret(k, "ssl_password") if k.ssl_certfile else None,
        ssl_pem=tuple((name, _read_pem(k, name)) for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
                      if getattr(k, name)),
        ssl_check_hostname=k.ssl_check_hostname, exactly_once=k.exactly_once,
        compression=k.compression, delivery_timeout_s=k.delivery_timeout_s,
        # a request that outlives the delivery timeout would only be cut short by it
        request_timeout_s=min(30.0, max(1.0, k.delivery_timeout_s / 2)))


def _flatten(data: dict) -> dict:
    """Grouped YAML -> option names: ``kafka: {bootstrap: H:P, sasl_mechanism: ...}`` is ``kafka: H:P,
    kafka_sasl_mechanism: ...``, ``grid: {hop_s: 0.5}`` is ``hop_s: 0.5``; flat keys as they are.
    Raises ConfigError for a key given twice or unknown in its group."""
    flat: dict = {}

    def put(key: str, value) -> None:
        if key.replace("-", "_") in {k.replace("-", "_") for k in flat}:
            raise ConfigError(f"option {key!r} is given twice")
        flat[key] = value

    for key, value in data.items():
        key = str(key)
        group = key.replace("-", "_")
        if group in GROUPS and isinstance(value, dict):
            fields_ = {o.field: o.name for o in OPTIONS.values() if o.group == group}
            prefix = Config.__dataclass_fields__[group].metadata["prefix"]
            for sub, v in value.items():
                sub = str(sub).replace("-", "_")
                if sub not in fields_:
                    if prefix + sub in SECRET_ENV:
                        put(prefix + sub, v)         # refused with its reason by load_config
                        continue
                    raise ConfigError(f"unknown option {prefix + sub if prefix else f'{group}.{sub}'!r} "
                                      f"(known in {group}: {', '.join(sorted(fields_))})")
                put(fields_[sub], v)
        elif group in GROUPS and group not in OPTIONS:
            raise ConfigError(f"option group {key!r} must be a mapping of option: value "
                              f"(e.g. {key}: {{{next(o.field for o in OPTIONS.values() if o.group == group)}: ...}})")
        else:
            put(key, value)
    return flat


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> Config:
    """Defaults, then the YAML file at ``path`` (if any), then ``overrides`` (``{option name: value}``,
    None values ignored).

    Raises ConfigError naming the file and the offending key for unknown keys, wrong types,
    unreadable or malformed YAML.
    """
    values: dict = {}
    if path is not None:
        origin = str(path)
        data = _read_yaml(path, f"{origin}: cannot read config", f"{origin}: not valid YAML") or {}
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
            if name not in OPTIONS:
                raise ConfigError(f"{origin}: unknown option {key!r} (known: {', '.join(sorted(OPTIONS))}; "
                                  f"or grouped: {', '.join(GROUPS)})")
            if value is not None:       # an empty key (`x:` or `x: ~`) leaves the default
                values[name] = _coerce(name, value, origin)
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _coerce(name, value, "command line")
    return validate(Config.from_options(values), str(path) if path else "command line")


def config_to_yaml(cfg: Config, *, defaults: bool = False) -> str:
    """``cfg`` as a grouped YAML config (the options that differ from the defaults, or all of them with
    ``defaults=True``); :func:`load_config` reads it back equal."""
    base = Config()
    out: dict = {}
    for group in GROUPS:
        mine, theirs = getattr(cfg, group), getattr(base, group)
        items = {}
        for o in (o for o in OPTIONS.values() if o.group == group):
            value = getattr(mine, o.field)
            if defaults or value != getattr(theirs, o.field):
                items[o.field] = o.dump(value) if o.dump is not None else value
        if items:
            out[group] = items
    return yaml.safe_dump(out, sort_keys=False)
