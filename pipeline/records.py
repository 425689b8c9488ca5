"""The records avgrid emits: one frozen dataclass per kind, one schema for Kafka and Parquet.

Every record carries the common fields of DESIGN.md "Records (CONTRACT)"; times are media
seconds (``t_start``, ``t_end``, float64), ``wall_start`` / ``produced_at`` are UTC datetimes.
The Arrow schema (Parquet) and the JSON object (Kafka) are both derived from the dataclass
fields, so the two sinks cannot drift apart.

    rec = ActionRecord.make(stream_id="cam1", source="rtsp://admin:***@cam1/live", t_start=4.0,
                            t_end=8.0, model="kinetics400/r2plus1d_18@1", run_id="r1",
                            label="juggling", score=0.71, top_k=[("juggling", 0.71), ("dancing", 0.1)])
    to_json(rec)                    # b'{"record_id": "...", "schema_version": 1, "kind": "action", ...}'
    to_arrow([rec]).schema == arrow_schema("action")
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Sequence, Union

import pyarrow as pa

from pipeline.redact import redact, strip_credentials

SCHEMA_VERSION = 1
KINDS = ("action", "event", "sentiment", "caption")
MODALITIES = ("audio", "visual", "audiovisual")
SENTIMENT_LABELS = ("negative", "neutral", "positive")
UTC = _dt.timezone.utc


class LabelScore(NamedTuple):
    """One entry of an action's ``top_k``: a class name and its probability in [0, 1]."""

    label: str
    score: float


@dataclass(frozen=True, kw_only=True)
class _Common:
    """Fields every record has (see DESIGN.md)."""

    record_id: str
    schema_version: int = SCHEMA_VERSION
    kind: str = ""
    stream_id: str
    source: str
    t_start: float                       # media seconds
    t_end: float                         # media seconds, >= t_start
    wall_start: _dt.datetime | None = None   # UTC capture time (live sources only)
    model: str
    run_id: str
    produced_at: _dt.datetime            # UTC

    KIND: ClassVar[str] = ""
    _SCORES: ClassVar[tuple[str, ...]] = ()       # float fields that must be finite (JSON has no NaN)

    def __post_init__(self):
        if self.kind != self.KIND:
            raise ValueError(f"{type(self).__name__}: kind must be {self.KIND!r}, got {self.kind!r}")
        if not (math.isfinite(self.t_start) and math.isfinite(self.t_end)) or self.t_end < self.t_start:
            raise ValueError(f"{type(self).__name__} {self.stream_id}: bad times t_start={self.t_start} "
                             f"t_end={self.t_end} (need finite, t_end >= t_start)")
        if not self.model:
            raise ValueError(f"{type(self).__name__} {self.stream_id}: every record must name its model/method")
        bad = [name for name in self._SCORES if not math.isfinite(getattr(self, name))]
        if bad:
            raise ValueError(f"{type(self).__name__} {self.stream_id} [{self.t_start}, {self.t_end}): "
                             f"{', '.join(bad)} must be finite numbers")
        for name in ("wall_start", "produced_at"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise ValueError(f"{type(self).__name__} {self.stream_id}: {name} must be timezone-aware (UTC)")

    @classmethod
    def make(cls, *, stream_id: str, source: str, t_start: float, t_end: float, model: str, run_id: str,
             wall_start: _dt.datetime | None = None, produced_at: _dt.datetime | None = None, **fields):
        """Build a record, computing ``record_id`` and ``produced_at`` (now, UTC) and masking credentials.

        ``fields`` are the kind-specific fields (see each class).
        """
        stream_id = strip_credentials(stream_id)
        t_start, t_end = float(t_start), float(t_end)
        rid = make_record_id(stream_id, cls.KIND, t_start, t_end, fields[cls._ID_FIELD])
        return cls(record_id=rid, kind=cls.KIND, stream_id=stream_id, source=redact(source),
                   t_start=t_start, t_end=t_end, wall_start=wall_start, model=model, run_id=run_id,
                   produced_at=produced_at or _dt.datetime.now(UTC), **cls._coerce(fields))

    @classmethod
    def _coerce(cls, fields: dict) -> dict:
        return fields


@dataclass(frozen=True, kw_only=True)
class ActionRecord(_Common):
    """What is happening in ``[t_start, t_end)``: the top class, its probability and the top-k list."""

    kind: str = "action"
    label: str
    score: float
    top_k: tuple[LabelScore, ...] = ()

    KIND: ClassVar[str] = "action"
    _ID_FIELD: ClassVar[str] = "label"
    _SCORES: ClassVar[tuple[str, ...]] = ("score",)

    def __post_init__(self):
        super().__post_init__()
        if not all(math.isfinite(t.score) for t in self.top_k):
            raise ValueError(f"ActionRecord {self.stream_id} [{self.t_start}, {self.t_end}): top_k scores must be "
                             "finite numbers")

    @classmethod
    def _coerce(cls, fields):
        top_k = tuple(LabelScore(str(t["label"]), float(t["score"])) if isinstance(t, dict)
                      else LabelScore(str(t[0]), float(t[1])) for t in fields.get("top_k", ()))
        return {**fields, "score": float(fields["score"]), "top_k": top_k}


@dataclass(frozen=True, kw_only=True)
class EventRecord(_Common):
    """A detected event (speech, flash, scene cut, gap, ...), its ``modality`` and score in [0, 1]."""

    kind: str = "event"
    label: str
    modality: str
    score: float

    KIND: ClassVar[str] = "event"
    _ID_FIELD: ClassVar[str] = "label"
    _SCORES: ClassVar[tuple[str, ...]] = ("score",)

    def __post_init__(self):
        super().__post_init__()
        if self.modality not in MODALITIES:
            raise ValueError(f"EventRecord {self.stream_id}: modality must be one of {MODALITIES}, "
                             f"got {self.modality!r}")

    @classmethod
    def _coerce(cls, fields):
        return {**fields, "score": float(fields["score"])}


@dataclass(frozen=True, kw_only=True)
class SentimentRecord(_Common):
    """Sentiment over the segment: class probabilities, and valence / arousal in [-1, 1]."""

    kind: str = "sentiment"
    label: str
    negative: float
    neutral: float
    positive: float
    valence: float
    arousal: float

    KIND: ClassVar[str] = "sentiment"
    _ID_FIELD: ClassVar[str] = "label"
    _SCORES: ClassVar[tuple[str, ...]] = ("negative", "neutral", "positive", "valence", "arousal")

    def __post_init__(self):
        super().__post_init__()
        if self.label not in SENTIMENT_LABELS:
            raise ValueError(f"SentimentRecord {self.stream_id}: label must be one of {SENTIMENT_LABELS}, "
                             f"got {self.label!r}")

    @classmethod
    def _coerce(cls, fields):
        return {k: (v if k == "label" else float(v)) for k, v in fields.items()}


@dataclass(frozen=True, kw_only=True)
class CaptionRecord(_Common):
    """A text description of the segment and the ``method`` that produced it."""

    kind: str = "caption"
    text: str
    method: str

    KIND: ClassVar[str] = "caption"
    _ID_FIELD: ClassVar[str] = "text"


Record = Union[ActionRecord, EventRecord, SentimentRecord, CaptionRecord]
RECORD_TYPES: dict[str, type] = {c.KIND: c for c in (ActionRecord, EventRecord, SentimentRecord, CaptionRecord)}


def make_record_id(stream_id: str, kind: str, t_start: float, t_end: float, label_or_text: str) -> str:
    """Deterministic id: sha256 of (stream_id, kind, t_start, t_end, label/text), times rounded to 1 us.

    The same input gives the same id in every run, so duplicates (at-least-once delivery, re-runs)
    can be dropped by id. Returns 32 hex characters.
    """
    # + 0.0 folds -0.0 into 0.0 so both print the same
    key = "\x1f".join((stream_id, kind, f"{round(t_start, 6) + 0.0:.6f}", f"{round(t_end, 6) + 0.0:.6f}",
                       label_or_text))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


# ---- Arrow ----------------------------------------------------------------------------------

_TIMESTAMP = pa.timestamp("us", tz="UTC")
_TOP_K = pa.list_(pa.struct([pa.field("label", pa.string(), nullable=False),
                             pa.field("score", pa.float64(), nullable=False)]))
_ARROW_TYPES = {"str": pa.string(), "int": pa.int32(), "float": pa.float64(),
                "_dt.datetime": _TIMESTAMP, "_dt.datetime | None": _TIMESTAMP,
                "tuple[LabelScore, ...]": _TOP_K}


def _fields(kind: str) -> tuple[dataclasses.Field, ...]:
    try:
        return dataclasses.fields(RECORD_TYPES[kind])
    except KeyError:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {KINDS}") from None


_SCHEMAS = {k: pa.schema([pa.field(f.name, _ARROW_TYPES[f.type], nullable=f.name == "wall_start")
                          for f in _fields(k)], metadata={"avgrid.schema_version": str(SCHEMA_VERSION)})
            for k in KINDS}
_NAMES = {k: tuple(f.name for f in _fields(k)) for k in KINDS}


def arrow_schema(kind: str) -> pa.Schema:
    """The Parquet/Arrow schema of one record kind (column order = dataclass field order)."""
    _fields(kind)
    return _SCHEMAS[kind]


def to_arrow(records: Sequence[Record]) -> pa.Table:
    """Records of ONE kind -> a table with :func:`arrow_schema` (one column per field)."""
    if not records:
        raise ValueError("to_arrow needs at least one record (the kind decides the schema)")
    kind = records[0].kind
    if any(r.kind != kind for r in records):
        raise ValueError(f"to_arrow: records of several kinds {sorted({r.kind for r in records})}; "
                         "group them by kind first")
    schema = _SCHEMAS[kind]
    columns = []
    for name in _NAMES[kind]:
        values = [getattr(r, name) for r in records]
        columns.append(pa.array(values, type=schema.field(name).type))
    return pa.Table.from_arrays(columns, schema=schema)


def from_arrow(table: pa.Table) -> list[Record]:
    """Rows of a table with the record columns (extra columns, e.g. hive partitions, are ignored)."""
    return [_from_mapping(row) for row in table.to_pylist()]


# ---- JSON -------------------------------------------------------------------------------------

def _iso(t: _dt.datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat(timespec="microseconds")


def to_dict(record: Record) -> dict[str, Any]:
    """The JSON object of a record: field -> value, timestamps as ISO-8601 UTC strings."""
    d = dict(record.__dict__)     # field order; a plain copy is several times cheaper than getattr per field
    d["wall_start"] = _iso(record.wall_start)
    d["produced_at"] = _iso(record.produced_at)
    if record.kind == "action":
        d["top_k"] = [{"label": t.label, "score": t.score} for t in record.top_k]
    return d


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def to_json(record: Record) -> bytes:
    """UTF-8 JSON object with the record's fields (the Kafka value)."""
    return _ENCODER.encode(to_dict(record)).encode("utf-8")


def from_json(kind: str, data: bytes | str) -> Record:
    """Parse a Kafka value written by :func:`to_json`; ``kind`` must match the object's kind."""
    obj = json.loads(data)
    if obj.get("kind") != kind:
        raise ValueError(f"from_json: expected a {kind!r} record, got kind={obj.get('kind')!r}")
    return _from_mapping(obj)


def _from_mapping(obj: dict) -> Record:
    cls = RECORD_TYPES.get(obj.get("kind"))
    if cls is None:
        raise ValueError(f"unknown record kind {obj.get('kind')!r}; expected one of {KINDS}")
    values = {name: obj[name] for name in _NAMES[cls.KIND]}
    for name in ("wall_start", "produced_at"):
        t = values[name]
        if isinstance(t, str):
            t = _dt.datetime.fromisoformat(t)
        values[name] = None if t is None else t.astimezone(UTC)
    if cls is ActionRecord:
        values["top_k"] = tuple(LabelScore(t["label"], t["score"]) for t in values["top_k"])
    return cls(**values)
