"""Re-run identity: what an archive input's commit records, so a re-run knows whether its records still hold.

An input is committed (``<out>/_avgrid/commits/<input hash>.json``) together with a fingerprint of

- its **content**: size, modification time and the sha256 of sampled blocks (the first, the last and
  six between, 64 KiB each: about 0.5 MB read per file, whatever its size); with ``--full-hash`` also
  the sha256 of the whole file. URLs (an ``http://`` file, ``synthetic:``) are known by their URL only.
- the **settings** that shape its records: the profile, every operator's model id (which names its
  method, parameters and weights, e.g. ``torchvision/r2plus1d_18:KINETICS400_V1`` or a local file's
  ``name@sha256:...``), the grid the records were cut on, the input's media origin, the record
  schema version, and every other option that is not about speed or delivery (a new option is
  assumed to shape records until it is listed in :data:`NOT_SHAPING`).

A re-run compares both with what the marker holds (:func:`decide`):

    >>> marker = {"run_id": "r1", "committed_at": "2026-12-01T10:00:00+00:00",
    ...           "fingerprint": fingerprint({"kind": "url", "url": "synthetic:?duration=2"}, {"fps": 4.0})}
    >>> decide(marker, {"kind": "url", "url": "synthetic:?duration=2"}, lambda: {"fps": 4.0}).skip
    True
    >>> decide(marker, {"kind": "url", "url": "synthetic:?duration=2"}, lambda: {"fps": 8.0}).reason
    'annotated again: settings changed since run r1 (fps 4.0 -> 8.0)'

The same content and settings: skipped, naming the run that committed it. Anything different, a
destination the committed records never reached (``--kafka`` added since), or a marker an earlier
avgrid wrote without a fingerprint: annotated again, and the commit of the new records replaces the
old ones. ``--force`` annotates again regardless.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Callable

FORMAT = 1                       # of the fingerprint stored in commit markers
BLOCK_BYTES = 64 * 1024          # one sampled block
SAMPLED_BLOCKS = 8               # first, last and evenly spaced between them

# Options (by the names of Config.options()) that change how fast, where or how observably records are made,
# never what they say.
# (media_origin is per input: the input's own origin goes into its settings instead.)
NOT_SHAPING = frozenset({
    "out", "kafka", "kafka_prefix", "kafka_security_protocol", "kafka_sasl_mechanism", "kafka_sasl_username",
    "kafka_sasl_password_file", "kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile",
    "kafka_ssl_password_file", "kafka_ssl_check_hostname", "kafka_exactly_once", "kafka_compression",
    "ray_address", "metrics_port", "metrics_host", "dashboard_port", "dashboard_host", "duration", "chunk_cells",
    "max_batch", "max_wait_ms", "max_inflight", "readahead_cells", "operator_actors", "concurrency", "num_cpus",
    "torch_threads", "status_interval_s", "progress", "media_origin", "force", "full_hash",
    "executor", "local_max_mb", "thumbnail_interval_s", "decoders",   # where and how fast, not what
    # the grid options: the grid the records were actually cut on is recorded instead (a bundle dictates it)
    "hop_s", "fps", "frame_size",
})


# -- content -------------------------------------------------------------------------------------

def content_fingerprint(path_or_url: str, *, full_hash: bool = False) -> dict:
    """``{"kind": "file", "size", "mtime_ns", "sampled", ["full"]}`` for a file; ``{"kind": "url", "url"}``
    otherwise (``url`` without credentials). ``sampled``/``full`` are ``"sha256:<hex>"``.

    Raises OSError when the file cannot be read (the caller reports it as that input's failure)."""
    if not os.path.isfile(path_or_url):
        from pipeline.sources import stream_id_for

        return {"kind": "url", "url": stream_id_for(path_or_url)}
    st = os.stat(path_or_url)
    fp = {"kind": "file", "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sampled": _sampled(path_or_url, st.st_size)}
    if full_hash:
        h = hashlib.sha256()
        with open(path_or_url, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        fp["full"] = "sha256:" + h.hexdigest()
    return fp


def content_of(path_or_url: str, *, full_hash: bool = False) -> dict:
    """:func:`content_fingerprint`, or ``{"kind": "unreadable", "error": ...}`` (never equal to a
    committed one: the input is opened again, and fails there with its reason)."""
    try:
        return content_fingerprint(path_or_url, full_hash=full_hash)
    except OSError as e:
        return {"kind": "unreadable", "error": e.strerror or type(e).__name__}


def _sampled(path: str, size: int) -> str:
    """sha256 over the sampled blocks and where they are (a file of up to 8 blocks: all of it)."""
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        if size <= BLOCK_BYTES * SAMPLED_BLOCKS:
            h.update(f.read())
        else:
            last = size - BLOCK_BYTES
            for i in range(SAMPLED_BLOCKS):
                off = last * i // (SAMPLED_BLOCKS - 1)
                f.seek(off)
                h.update(off.to_bytes(8, "little"))
                h.update(f.read(BLOCK_BYTES))
    return "sha256:" + h.hexdigest()


def content_change(old: dict, new: dict) -> str | None:
    """Why ``new`` is not the content ``old`` describes, or None when it is the same."""
    if old.get("kind") != new.get("kind"):
        return f"was a {old.get('kind')}, now a {new.get('kind')}"
    if new.get("kind") != "file":
        return None if old.get("url") == new.get("url") else "another URL"
    if old.get("size") != new.get("size"):
        return f"the file changed (size {old.get('size')} -> {new.get('size')} bytes)"
    if old.get("full") and new.get("full"):
        # the whole content settles it: a copy or a touch with the same bytes is the same input
        return None if old["full"] == new["full"] else "the file changed (its sha256 differs)"
    if old.get("sampled") != new.get("sampled"):
        return "the file changed (same size, different content)"
    if old.get("mtime_ns") != new.get("mtime_ns"):
        return (f"the file was modified ({_iso_ns(old.get('mtime_ns'))} -> {_iso_ns(new.get('mtime_ns'))}; "
                "--full-hash compares whole contents instead of times)")
    return None


def _iso_ns(ns) -> str:
    if not isinstance(ns, int):
        return "unknown"
    return _dt.datetime.fromtimestamp(ns / 1e9, _dt.timezone.utc).isoformat(timespec="seconds")


# -- settings ------------------------------------------------------------------------------------

def settings_fingerprint(cfg, *, grid, models: list[str], media_origin=None) -> dict:
    """The settings that shape one input's records, as plain JSON values (sorted keys when dumped).

    ``grid``: the :class:`~pipeline.grid.GridConfig` the records were cut on; ``models``: the
    operators' model ids (``Engine.models``); ``media_origin``: the input's origin (datetime or None)."""
    from pipeline.records import SCHEMA_VERSION

    s = {name: _plain(value) for name, value in cfg.options().items() if name not in NOT_SHAPING}
    s["grid"] = {"hop_s": float(grid.hop_s), "fps": float(grid.fps),
                 "frame_size": [int(grid.frame_height), int(grid.frame_width)]}
    s["models"] = list(models)
    s["media_origin"] = media_origin.isoformat() if isinstance(media_origin, _dt.datetime) else media_origin
    s["records_schema"] = SCHEMA_VERSION
    return s


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def settings_change(old: dict, new: dict) -> str | None:
    """The settings that differ (``fps 4.0 -> 8.0, models ...``), or None when they are the same."""
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "unset"), new.get(key, "unset")
        if a == b:
            continue
        if key == "grid" and isinstance(a, dict) and isinstance(b, dict):
            diffs += [f"{k} {a.get(k)} -> {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif key == "models" and isinstance(a, list) and isinstance(b, list):
            gone, added = [m for m in a if m not in b], [m for m in b if m not in a]
            diffs.append("models " + "; ".join([f"-{m}" for m in gone] + [f"+{m}" for m in added]))
        else:
            diffs.append(f"{key} {_short(a)} -> {_short(b)}")
    return ", ".join(diffs) or None


def _short(v, n: int = 40) -> str:
    s = json.dumps(v) if not isinstance(v, (int, float, str)) else str(v)
    return s if len(s) <= n else s[: n - 3] + "..."


def digest(obj) -> str:
    """``sha256:<hex>`` of the canonical JSON of ``obj``."""
    return "sha256:" + hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def destinations(cfg) -> list[str]:
    """Where a run delivers records: ``parquet``, plus ``kafka <bootstrap> <prefix>`` with ``--kafka``."""
    return ["parquet"] + ([f"kafka {cfg.kafka.bootstrap} {cfg.kafka.prefix}"] if cfg.kafka.bootstrap else [])


def fingerprint(content: dict, settings: dict, delivered_to: list[str] = ("parquet",)) -> dict:
    """What a commit marker stores under ``"fingerprint"``."""
    return {"format": FORMAT, "content": content, "settings": settings, "settings_sha256": digest(settings),
            "delivered_to": list(delivered_to)}


# -- the decision --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    """``skip``: the committed records still hold; ``reason``: what the summary and ``streams`` row say."""

    skip: bool
    reason: str = ""


def decide(marker: dict | None, content: dict, settings: Callable[[], dict], *, force: bool = False,
           delivered_to: list[str] = ("parquet",)) -> Decision:
    """Skip or annotate an input again, given its commit marker (None: never committed).

    ``settings`` is called only when the content is unchanged (the caller may have to wait for the
    operators to know their model ids). ``delivered_to``: this run's destinations (:func:`destinations`);
    one the committed records never reached (a Kafka added since) means annotating again."""
    if not marker:
        return Decision(False)
    run = marker.get("run_id", "?")
    if force:
        return Decision(False, f"annotated again: --force (run {run} had committed it)")
    fp = marker.get("fingerprint")
    if not isinstance(fp, dict) or fp.get("format") != FORMAT:
        return Decision(False, f"annotated again: run {run} committed it without a fingerprint (an earlier avgrid), "
                               "so whether the file or the settings changed is unknown")
    why = content_change(fp.get("content") or {}, content)
    if why:
        return Decision(False, f"annotated again: {why} since run {run}")
    why = settings_change(fp.get("settings") or {}, settings())
    if why:
        return Decision(False, f"annotated again: settings changed since run {run} ({why})")
    missing = [d for d in delivered_to if d not in fp.get("delivered_to", ["parquet"])]
    if missing:
        return Decision(False, f"annotated again: run {run} did not deliver its records to {', '.join(missing)}")
    when = str(marker.get("committed_at", ""))[:19].replace("T", " ")
    return Decision(True, f"unchanged since run {run}" + (f" (committed {when} UTC)" if when else "")
                    + ": same content and settings; --force annotates it again")
