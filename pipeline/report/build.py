"""The report's data: per stream its summary, lanes of records, people counts, transcript and media.

Everything the page shows is computed here and embedded as one JSON object; the page's script
only draws it. Dense lanes are aggregated here, so the file stays small for hours of media:

- a lane (one record kind of one stream) with at most :data:`RAW_RECORDS` records keeps every record
  (hovering a bar shows it);
- above that, each of its rows becomes :data:`AGG_BINS` time bins over the stream's extent, each bin
  holding the share of it the row's records cover, how many records touch it and their best score.

Rows: events and actions by label, sentiment by modality (coloured by label), captions by method.
A lane shows its :data:`MAX_ROWS` busiest rows (by time covered); the others share one "other" row.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds

from pipeline.errors import ConfigError
from pipeline.records import KINDS, STREAMS, arrow_schema
from pipeline.report import media as _media

RAW_RECORDS = 2000
AGG_BINS = 1200
MAX_ROWS = 10
MAX_STREAMS = 40
THUMBS_PER_STREAM = 48
THUMBS_IN_ALL = 480
AUDIO_BINS = 1200
AUDIO_BIN_MIN_S = 0.25
THUMB_MIN_SPACING_S = 0.5

_COLUMNS = {
    "action": ["label", "score", "top_k", "subject", "track_id", "count"],
    "event": ["label", "modality", "score", "count", "detail"],
    "sentiment": ["label", "negative", "neutral", "positive", "valence", "arousal", "modality"],
    "caption": ["text", "method", "score"],
}
_COMMON = ["record_id", "schema_version", "stream_id", "source", "t_start", "t_end", "wall_start", "wall_end",
           "model", "operator", "episode_id", "run_id"]


def _read(root: Path, kind: str, stream: str | None) -> list[dict]:
    path = root / kind
    if not path.is_dir():
        return []
    dataset = ds.dataset(str(path), schema=arrow_schema(kind), format="parquet", partitioning="hive")
    columns = _COMMON + _COLUMNS[kind] if kind != STREAMS else None
    flt = (ds.field("stream_id") == stream) if stream is not None else None
    return dataset.to_table(columns=columns, filter=flt).to_pylist()


def _iso(t: _dt.datetime | None) -> str | None:
    return None if t is None else t.astimezone(_dt.timezone.utc).isoformat(timespec="milliseconds")


def collect(out_dir: str | Path, *, stream: str | None = None, media: bool = True) -> dict:
    """The report's JSON object for dataset ``out_dir`` (only ``stream`` when given).

    ``media``: decode thumbnails and audio levels from each stream's source where it is a readable file.
    """
    root = Path(out_dir)
    if not root.is_dir():
        raise ConfigError(f"report: {out_dir}: not a directory")
    if not any((root / k).is_dir() for k in KINDS + (STREAMS,)):
        raise ConfigError(f"report: {out_dir}: no avgrid dataset here (expected {', '.join(KINDS)}/ folders)")
    records = {k: _read(root, k, stream) for k in KINDS}
    rows = _read(root, STREAMS, stream)
    by_stream: dict[str, dict[str, list[dict]]] = defaultdict(lambda: {k: [] for k in KINDS})
    for kind, recs in records.items():
        for r in recs:
            by_stream[r["stream_id"]][kind].append(r)
    summaries: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        summaries[r["stream_id"]].append(r)
    ids = sorted(set(by_stream) | set(summaries))
    if stream is not None and not ids:
        raise ConfigError(f"report: {out_dir}: no records or inputs of stream {stream!r}")
    notes = []
    if len(ids) > MAX_STREAMS:
        busiest = sorted(ids, key=lambda s: -sum(len(v) for v in by_stream[s].values()))[:MAX_STREAMS]
        notes.append(f"{len(ids)} streams: this report shows the {MAX_STREAMS} with the most records; "
                     f"`avgrid report DIR --stream ID` makes one of any other")
        ids = sorted(busiest)
    thumbs_each = max(4, min(THUMBS_PER_STREAM, THUMBS_IN_ALL // max(1, len(ids))))
    models: list[str] = []
    model_ix: dict[str, int] = {}

    def intern(s: str | None) -> int | None:
        if s is None:
            return None
        if s not in model_ix:
            model_ix[s] = len(models)
            models.append(s)
        return model_ix[s]

    streams = [_stream(sid, by_stream[sid], summaries.get(sid, []), intern, media=media, thumbs=thumbs_each)
               for sid in ids]
    return {"dataset": str(root.resolve()), "generated_at": _iso(_dt.datetime.now(_dt.timezone.utc)),
            "kinds": list(KINDS), "strings": models, "streams": streams, "notes": notes}


def _latest(rows: list[dict]) -> dict | None:
    if not rows:
        return None
    return max(rows, key=lambda r: (r["finished_at"] is not None, r["finished_at"] or _dt.datetime.min))


def _summary(rows: list[dict]) -> dict | None:
    row = _latest(rows)
    if row is None:
        return None
    settings = None
    if row.get("settings"):
        try:
            settings = json.loads(row["settings"])
        except ValueError:
            settings = None
    keep = ("status", "error", "run_id", "live", "t0_s", "duration_s", "media_origin_from", "video_codec", "width",
            "height", "fps", "audio_codec", "sample_rate_hz", "channels", "cells", "records", "gaps")
    out = {k: row.get(k) for k in keep}
    out.update(media_origin=_iso(row.get("media_origin")), started_at=_iso(row.get("started_at")),
               finished_at=_iso(row.get("finished_at")), runs=len(rows),
               profile=(settings or {}).get("profile"), models=(settings or {}).get("models"))
    return out


def _extent(recs: dict[str, list[dict]], summary: dict | None) -> tuple[float, float]:
    starts = [r["t_start"] for v in recs.values() for r in v]
    ends = [r["t_end"] for v in recs.values() for r in v]
    t0 = min(starts) if starts else None
    t1 = max(ends) if ends else None
    if summary and summary.get("duration_s"):
        base = summary.get("t0_s") or 0.0
        t0 = base if t0 is None else min(t0, base)
        t1 = max(t1 or 0.0, base + summary["duration_s"])
    if t0 is None:
        return 0.0, 1.0
    return float(t0), float(max(t1, t0 + 1e-3))


def _origin(recs: dict[str, list[dict]], summary: dict | None) -> str | None:
    """Wall-clock time of media second 0, when every record with a wall clock agrees on one (archives)."""
    if summary and summary.get("media_origin") and summary.get("t0_s") is not None and not summary.get("live"):
        t = _dt.datetime.fromisoformat(summary["media_origin"]) - _dt.timedelta(seconds=summary["t0_s"])
        return _iso(t)
    for v in recs.values():
        for r in v:
            if r["wall_start"] is not None:
                return _iso(r["wall_start"] - _dt.timedelta(seconds=r["t_start"]))
    return None


def _stream(sid: str, recs: dict[str, list[dict]], rows: list[dict], intern, *, media: bool, thumbs: int) -> dict:
    summary = _summary(rows)
    t0, t1 = _extent(recs, summary)
    source = (_latest(rows) or {}).get("source") or next((r["source"] for v in recs.values() for r in v), "")
    out = {"id": sid, "source": source, "t0": t0, "t1": t1, "origin": _origin(recs, summary), "summary": summary,
           "counts": {k: len(recs[k]) for k in KINDS}, "lanes": [_lane(k, recs[k], t0, t1, intern) for k in KINDS],
           "people": _people(recs["event"], t0, t1), "transcript": _transcript(recs["caption"]), "thumbs": [],
           "audio": None, "notes": []}
    if media:
        path = _media.readable_file(source)
        if path is None:
            out["notes"].append(f"no thumbnails or audio: the source is not a local file here ({source})")
        else:
            n = max(1, min(thumbs, int((t1 - t0) / THUMB_MIN_SPACING_S)))
            bins = max(1, min(AUDIO_BINS, int(math.ceil((t1 - t0) / AUDIO_BIN_MIN_S))))
            m = _media.summarise(path, t0, t1, thumbs=n, audio_bins=bins)
            out.update(thumbs=[[t, src] for t, src in m.thumbs], audio=m.audio)
            out["notes"] += m.notes
    return out


def _row_key(kind: str, r: dict) -> str:
    if kind == "caption":
        return r["method"] or "caption"
    if kind == "sentiment":
        return r.get("modality") or "audiovisual"
    return r["label"]


def _tip(kind: str, r: dict, intern) -> dict:
    """The fields hovering a bar shows (short keys; None fields left out)."""
    t = {"s": r["t_start"], "e": r["t_end"], "i": r["record_id"], "m": intern(r["model"]),
         "o": intern(r.get("operator")), "ws": _iso(r.get("wall_start"))}
    if r.get("episode_id") and r["episode_id"] != r["record_id"]:
        t["ep"] = r["episode_id"]
    if kind == "caption":
        t.update(l=r["text"], p=r.get("score"))
    elif kind == "sentiment":
        t.update(l=r["label"], v={k: round(r[k], 3) for k in ("negative", "neutral", "positive", "valence",
                                                               "arousal")})
    else:
        t.update(l=r["label"], p=round(r["score"], 3), c=r.get("count"))
        if kind == "event":
            t.update(d=r.get("detail"), mo=r.get("modality"))
        else:
            t.update(su=r.get("subject"), tr=r.get("track_id"),
                     k=[[x["label"], round(x["score"], 3)] for x in (r.get("top_k") or [])[:5]])
    return {k: v for k, v in t.items() if v is not None}


def _lane(kind: str, recs: list[dict], t0: float, t1: float, intern) -> dict:
    covered: Counter = Counter()
    n: Counter = Counter()
    for r in recs:
        key = _row_key(kind, r)
        covered[key] += r["t_end"] - r["t_start"] + 1e-6
        n[key] += 1
    # gaps (missing media) always get their own row, however short they are
    keys = sorted(covered, key=lambda k: (k != "gap" or kind != "event", -covered[k]))
    shown = keys if len(keys) <= MAX_ROWS + 1 else keys[:MAX_ROWS]
    other = keys[len(shown):]
    rows = [{"label": k, "n": n[k]} for k in shown]
    if other:
        rows.append({"label": f"other ({len(other)} labels)", "n": sum(n[k] for k in other), "other": True})
    index = {k: i for i, k in enumerate(shown)}
    row_of = [index.get(_row_key(kind, r), len(shown)) for r in recs]
    lane = {"kind": kind, "rows": rows, "n": len(recs)}
    if len(recs) <= RAW_RECORDS:
        order = sorted(range(len(recs)), key=lambda i: (recs[i]["t_start"], recs[i]["t_end"]))
        lane["records"] = [dict(_tip(kind, recs[i], intern), r=row_of[i]) for i in order]
        return lane
    lane["bins"] = _aggregate(recs, row_of, len(rows), t0, t1, kind)
    return lane


def _aggregate(recs: list[dict], row_of: list[int], n_rows: int, t0: float, t1: float, kind: str) -> dict:
    """Per row: ``cover`` (share of each bin covered, 0..1), ``n`` (records touching it), ``best`` (top score)
    and ``label`` (the most common label or text in it) over :data:`AGG_BINS` bins of ``dt`` seconds."""
    dt = (t1 - t0) / AGG_BINS
    cover = np.zeros((n_rows, AGG_BINS))
    count = np.zeros((n_rows, AGG_BINS), np.int64)
    best = np.full((n_rows, AGG_BINS), -1.0)
    need_labels = kind in ("sentiment", "caption")    # their rows hold several labels / texts
    labels = [[Counter() for _ in range(AGG_BINS)] for _ in range(n_rows)] if need_labels else []
    for r, row in zip(recs, row_of):
        a = (r["t_start"] - t0) / dt
        b = (r["t_end"] - t0) / dt
        b0 = min(AGG_BINS - 1, max(0, int(math.floor(a))))
        b1 = min(AGG_BINS - 1, max(0, int(math.ceil(b)) - 1))
        score = r.get("score")
        for k in range(b0, b1 + 1):
            overlap = min(b, k + 1) - max(a, k)
            cover[row, k] += max(0.0, overlap)
            count[row, k] += 1
            if score is not None and score > best[row, k]:
                best[row, k] = score
            if need_labels:
                labels[row][k][r["label"] if kind == "sentiment" else r["text"]] += 1
    cover = np.minimum(cover, 1.0)
    out = {"t0": t0, "dt": dt, "rows": []}
    for row in range(n_rows):
        nz = np.flatnonzero(count[row])
        entry = {"b": nz.tolist(), "cover": np.round(cover[row, nz], 3).tolist(), "n": count[row, nz].tolist(),
                 "best": [None if x < 0 else round(float(x), 3) for x in best[row, nz]]}
        if need_labels:
            entry["label"] = [labels[row][k].most_common(1)[0][0] for k in nz]
        out["rows"].append(entry)
    return out


def _people(events: list[dict], t0: float, t1: float) -> list[list[float]]:
    """``[[t_start, t_end, count], ...]`` of ``person`` events that carry a count, in time order; more than
    :data:`RAW_RECORDS` of them become :data:`AGG_BINS` steps holding the most counted in each bin."""
    steps = sorted([r["t_start"], r["t_end"], int(r["count"])] for r in events
                   if r["label"] == "person" and r.get("count") is not None)
    if len(steps) <= RAW_RECORDS:
        return steps
    dt = (t1 - t0) / AGG_BINS
    most = np.zeros(AGG_BINS, np.int64)
    for a, b, n in steps:
        k0 = min(AGG_BINS - 1, max(0, int((a - t0) / dt)))
        k1 = min(AGG_BINS - 1, max(k0, int(math.ceil((b - t0) / dt)) - 1))
        most[k0:k1 + 1] = np.maximum(most[k0:k1 + 1], n)
    return [[t0 + k * dt, t0 + (k + 1) * dt, int(most[k])] for k in np.flatnonzero(most)]


def _transcript(captions: list[dict]) -> list[list]:
    """``[[t_start, t_end, text, score], ...]`` of captions made by speech recognition (method ``asr``)."""
    lines = [[r["t_start"], r["t_end"], r["text"], r.get("score")] for r in captions
             if (r["method"] or "").lower().startswith("asr")]
    return sorted(lines, key=lambda x: (x[0], x[1]))
