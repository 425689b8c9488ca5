"""``avgrid inspect DIR``: what an output dataset holds, read back with pyarrow.dataset.

Counts per kind and stream, time coverage, top labels, files and schema versions, plus
duplicate record ids (at-least-once delivery may write a record twice; readers drop by id).
Version-1 and version-2 files are read together (the v2 schema is the dataset schema, so the
columns v1 lacks read as nulls); the ``streams`` dataset says how each input of each run ended.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.dataset as ds

from pipeline.errors import ConfigError
from pipeline.records import KINDS, STREAMS, arrow_schema


def _dataset(path: Path, kind: str) -> ds.Dataset:
    return ds.dataset(str(path), schema=arrow_schema(kind), format="parquet", partitioning="hive")


def inspect_dir(out_dir: str | Path) -> dict:
    """``{kind: {"records", "files", "schema_versions", "duplicates", "streams": {id: {...}}, "top": [...]}}``.

    Per stream: ``records``, ``t_start`` (earliest media second), ``t_end`` (latest), ``covered_s``
    (union of record spans). ``top``: the 5 most frequent labels (captions: texts) with counts.
    A ``streams`` entry (when the dataset has one) maps each input to its latest run:
    ``{"status", "error", "run_id", "runs", "settings"}``.
    """
    root = Path(out_dir)
    if not root.is_dir():
        raise ConfigError(f"{out_dir}: not a directory (avgrid inspect DIR reads the --out directory of a run; "
                          f"without DIR, ./avgrid-out)")
    report: dict = {}
    for kind in KINDS:
        path = root / kind
        if not path.is_dir():
            continue
        dataset = _dataset(path, kind)
        label = "text" if kind == "caption" else "label"
        table = dataset.to_table(columns=["record_id", "schema_version", "stream_id", "t_start", "t_end", label])
        rows = table.to_pydict()
        streams: dict[str, dict] = {}
        spans: dict[str, list[tuple[float, float]]] = {}
        for sid, t0, t1 in zip(rows["stream_id"], rows["t_start"], rows["t_end"]):
            s = streams.setdefault(sid, {"records": 0, "t_start": t0, "t_end": t1})
            s["records"] += 1
            s["t_start"], s["t_end"] = min(s["t_start"], t0), max(s["t_end"], t1)
            spans.setdefault(sid, []).append((t0, t1))
        for sid, s in streams.items():
            s["covered_s"] = _union_length(spans[sid])
        ids = Counter(rows["record_id"])
        report[kind] = {"records": table.num_rows, "files": len(dataset.files),
                        "schema_versions": sorted(set(rows["schema_version"])),
                        "duplicates": sum(n - 1 for n in ids.values() if n > 1),
                        "streams": streams, "top": Counter(rows[label]).most_common(5)}
    if (root / STREAMS).is_dir():
        report[STREAMS] = _streams(root / STREAMS)
    return report


def _streams(path: Path) -> dict:
    """Input -> its latest run's row (status, error, settings), with the number of runs that named it."""
    rows = _dataset(path, STREAMS).to_table(
        columns=["stream_id", "run_id", "status", "error", "finished_at", "settings"]).to_pylist()
    latest: dict[str, dict] = {}
    runs: Counter = Counter()
    for row in sorted(rows, key=lambda r: (r["finished_at"] is not None, r["finished_at"])):
        runs[row["stream_id"]] += 1
        latest[row["stream_id"]] = row
    return {sid: {"status": r["status"], "error": r["error"], "run_id": r["run_id"], "runs": runs[sid],
                  "settings": json.loads(r["settings"]) if r["settings"] else None}
            for sid, r in latest.items()}


def _union_length(spans: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for t0, t1 in sorted(spans):
        if t1 <= end:
            continue
        total += t1 - max(t0, end)
        end = t1
    return total


def format_report(report: dict, out_dir: str | Path = "") -> str:
    if not report:
        return f"{out_dir}: no avgrid records (expected {', '.join(f'{k}/' for k in KINDS)} datasets)"
    lines = [f"dataset {out_dir}"]
    for kind, r in report.items():
        if kind == STREAMS:
            continue
        versions = ", ".join(map(str, r["schema_versions"])) or "-"
        lines.append(f"\n{kind}: {r['records']} records in {r['files']} files, schema version {versions}"
                     + (f", {r['duplicates']} duplicate ids" if r["duplicates"] else ""))
        for sid, s in sorted(r["streams"].items()):
            lines.append(f"  {sid}: {s['records']} records, media {s['t_start']:.1f}-{s['t_end']:.1f} s "
                         f"({s['covered_s']:.1f} s covered)")
        if r["top"]:
            lines.append("  top: " + ", ".join(f"{_clip(lab)} ({n})" for lab, n in r["top"]))
    inputs = report.get(STREAMS) or {}
    if inputs:
        lines.append(f"\ninputs: {len(inputs)} (latest run of each, and the settings that made its records)")
        for sid, s in sorted(inputs.items()):
            lines.append(f"  {sid}: {s['status']} in run {s['run_id']}"
                         + (f": {_clip(s['error'], 100)}" if s["error"] else ""))
            made = settings_text(s["settings"])
            if made:
                lines.append(f"    settings: {made}")
    return "\n".join(lines)


def settings_text(settings: dict | None) -> str:
    """``profile offline, grid 1.0 s x 4.0 fps x 224x224 px, segments <= 10.0 s; models: ...`` ('' if unknown)."""
    if not settings:
        return ""
    parts = []
    if settings.get("profile"):
        parts.append(f"profile {settings['profile']}" + (f" ({settings['bundle']})" if settings.get("bundle") else ""))
    grid = settings.get("grid") or {}
    if grid:
        size = grid.get("frame_size") or []
        parts.append(f"grid {grid.get('hop_s')} s x {grid.get('fps')} fps" + (f" x {size[1]}x{size[0]} px" if len(size) == 2
                                                                          else ""))
    if settings.get("max_segment_s") is not None:
        parts.append(f"segments <= {settings['max_segment_s']} s")
    if settings.get("media_origin"):
        parts.append(f"media origin {settings['media_origin']}")
    known = {"profile", "bundle", "grid", "max_segment_s", "media_origin", "models", "records_schema", "action_model",
             "action_weights"}
    parts += [f"{k} {v}" for k, v in sorted(settings.items()) if k not in known and v not in (None, [], {}, "")]
    if settings.get("profile") == "standard":
        parts.append(f"actions {settings.get('action_model')}"
                     + (f" ({settings['action_weights']})" if settings.get("action_weights") else ""))
    text = ", ".join(parts)
    if settings.get("models"):
        text += "; models: " + ", ".join(settings["models"])
    return text


def _clip(s: str, n: int = 60) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."
