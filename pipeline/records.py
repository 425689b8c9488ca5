"""The records avgrid emits: one frozen dataclass per kind, one schema for Kafka and Parquet.

Every record carries the common fields of the schema (README, "The record schema"); times are media
seconds (``t_start``, ``t_end``, float64), ``wall_start`` / ``produced_at`` are UTC datetimes.
The Arrow schema (Parquet) and the JSON object (Kafka) are both derived from the dataclass
fields, so the two sinks cannot drift apart.

    rec = ActionRecord.make(stream_id="cam1", source="rtsp://admin:***@cam1/live", t_start=4.0,
                            t_end=8.0, model="kinetics400/r2plus1d_18@1", run_id="r1",
                            label="juggling", score=0.71, top_k=[("juggling", 0.71), ("dancing", 0.1)])
    to_json(rec)                    # b'{"record_id": "...", "schema_version": 2, "kind": "action", ...}'
    to_arrow([rec]).schema == arrow_schema("action")

Schema version 2 only adds fields (``V2_FIELDS``), placed after every version-1 column, so a reader of
version 1 keeps working and v1 and v2 files read together by name (DuckDB ``union_by_name=true``,
pyarrow with :func:`arrow_schema` as the dataset schema). Besides the four record kinds, ``streams``
holds one :class:`StreamRecord` per input per run (what was read, how it ended).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Optional, Sequence, Union

import pyarrow as pa

from pipeline.redact import redact, strip_credentials

SCHEMA_VERSION = 2
KINDS = ("action", "event", "sentiment", "caption")
STREAMS = "streams"                   # the per-input dataset / topic beside the four kinds
MODALITIES = ("audio", "visual", "audiovisual")
SENTIMENT_MODALITIES = ("speech", "audio", "visual", "audiovisual")
SENTIMENT_LABELS = ("negative", "neutral", "positive")
UTC = _dt.timezone.utc
# fields that schema version 2 added, per kind ("common": every kind); Arrow puts them after v1's
V2_FIELDS = {"common": ("wall_end", "operator", "episode_id"), "action": ("subject", "track_id", "count"),
             "event": ("count", "detail"), "sentiment": ("modality",), "caption": ("score",)}


class LabelScore(NamedTuple):
    """One entry of an action's ``top_k``: a class name and its probability in [0, 1]."""

    label: str
    score: float


@dataclass(frozen=True, kw_only=True)
class _Common:
    """Fields every record has (README: "The record schema (version 2)")."""

    record_id: str
    schema_version: int = SCHEMA_VERSION
    kind: str = ""
    stream_id: str
    source: str
    t_start: float                       # media seconds
    t_end: float                         # media seconds, >= t_start
    wall_start: Optional[_dt.datetime] = None   # UTC capture time of t_start (live; archives with a known origin)
    model: str
    run_id: str
    produced_at: _dt.datetime            # UTC
    wall_end: Optional[_dt.datetime] = None     # (v2) UTC capture time of t_end
    operator: str = ""                   # (v2) registry name of the operator ("runtime" for gaps)
    episode_id: str = ""                 # (v2) record_id of the first piece of a label run cut at max length

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
        for name in ("wall_start", "wall_end", "produced_at"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise ValueError(f"{type(self).__name__} {self.stream_id}: {name} must be timezone-aware (UTC)")
        if self.wall_start is not None and self.wall_end is not None and self.wall_end < self.wall_start:
            raise ValueError(f"{type(self).__name__} {self.stream_id}: wall_end {self.wall_end} is before "
                             f"wall_start {self.wall_start}")

    @classmethod
    def make(cls, *, stream_id: str, source: str, t_start: float, t_end: float, model: str, run_id: str,
             wall_start: _dt.datetime | None = None, produced_at: _dt.datetime | None = None,
             wall_end: _dt.datetime | None = None, operator: str = "", episode_id: str = "", **fields):
        """Build a record, computing ``record_id`` and ``produced_at`` (now, UTC) and masking credentials.

        ``fields`` are the kind-specific fields (see each class). ``episode_id`` defaults to the
        record's own id (a record that was not cut from a longer run is its own episode); ``operator``
        defaults to the part of ``model`` before the first ``:`` or ``/``.
        """
        stream_id = strip_credentials(stream_id)
        t_start, t_end = float(t_start), float(t_end)
        rid = make_record_id(stream_id, cls.KIND, t_start, t_end, id_text(cls.KIND, fields))
        return cls(record_id=rid, kind=cls.KIND, stream_id=stream_id, source=redact(source),
                   t_start=t_start, t_end=t_end, wall_start=wall_start, model=model, run_id=run_id,
                   produced_at=produced_at or _dt.datetime.now(UTC), wall_end=wall_end,
                   operator=operator or default_operator(model), episode_id=episode_id or rid,
                   **cls._coerce(fields))

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
    subject: Optional[str] = None        # (v2) what acts: person, camera, ...; None if unknown
    track_id: Optional[int] = None       # (v2) the tracked instance within the stream
    count: Optional[int] = None          # (v2) how many subjects do it

    KIND: ClassVar[str] = "action"
    _ID_FIELD: ClassVar[str] = "label"
    _SCORES: ClassVar[tuple[str, ...]] = ("score",)

    def __post_init__(self):
        super().__post_init__()
        if not all(math.isfinite(t.score) for t in self.top_k):
            raise ValueError(f"ActionRecord {self.stream_id} [{self.t_start}, {self.t_end}): top_k scores must be "
                             "finite numbers")
        if self.top_k and self.top_k[0].label != self.label:
            raise ValueError(f"ActionRecord {self.stream_id} [{self.t_start}, {self.t_end}): top_k[0] is "
                             f"{self.top_k[0].label!r}, label is {self.label!r}; they must agree")

    @classmethod
    def _coerce(cls, fields):
        top_k = tuple(LabelScore(str(t["label"]), float(t["score"])) if isinstance(t, dict)
                      else LabelScore(str(t[0]), float(t[1])) for t in fields.get("top_k", ()))
        return {**fields, "score": float(fields["score"]), "top_k": top_k,
                **_ints(fields, "track_id", "count")}


@dataclass(frozen=True, kw_only=True)
class EventRecord(_Common):
    """A detected event (speech, flash, scene cut, gap, ...), its ``modality`` and score in [0, 1]."""

    kind: str = "event"
    label: str
    modality: str
    score: float
    count: Optional[int] = None          # (v2) most instances (people, faces, ...) in one cell of the record
    detail: Optional[str] = None         # (v2) e.g. a gap's cause, a sound's parent class

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
        return {**fields, "score": float(fields["score"]), **_ints(fields, "count")}


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
    modality: str = "audiovisual"        # (v2) speech, audio (non-speech sound), visual (faces), audiovisual

    KIND: ClassVar[str] = "sentiment"
    _ID_FIELD: ClassVar[str] = "label"
    _SCORES: ClassVar[tuple[str, ...]] = ("negative", "neutral", "positive", "valence", "arousal")

    def __post_init__(self):
        super().__post_init__()
        if self.label not in SENTIMENT_LABELS:
            raise ValueError(f"SentimentRecord {self.stream_id}: label must be one of {SENTIMENT_LABELS}, "
                             f"got {self.label!r}")
        if self.modality not in SENTIMENT_MODALITIES:
            raise ValueError(f"SentimentRecord {self.stream_id}: modality must be one of {SENTIMENT_MODALITIES}, "
                             f"got {self.modality!r}")

    @classmethod
    def _coerce(cls, fields):
        return {k: (v if k in ("label", "modality") else float(v)) for k, v in fields.items()}


@dataclass(frozen=True, kw_only=True)
class CaptionRecord(_Common):
    """A text description of the segment and the ``method`` that produced it."""

    kind: str = "caption"
    text: str
    method: str
    score: Optional[float] = None        # (v2) the method's confidence in [0, 1], None where it has none

    KIND: ClassVar[str] = "caption"
    _ID_FIELD: ClassVar[str] = "text"

    def __post_init__(self):
        super().__post_init__()
        if self.score is not None and not math.isfinite(self.score):
            raise ValueError(f"CaptionRecord {self.stream_id} [{self.t_start}, {self.t_end}): score must be a "
                             "finite number or None")

    @classmethod
    def _coerce(cls, fields):
        score = fields.get("score")
        return {**fields, "score": None if score is None else float(score)}


Record = Union[ActionRecord, EventRecord, SentimentRecord, CaptionRecord]
RECORD_TYPES: dict[str, type] = {c.KIND: c for c in (ActionRecord, EventRecord, SentimentRecord, CaptionRecord)}


def default_operator(model: str) -> str:
    """The operator name a ``model`` string starts with (``"faces:opencv-haar(...)"`` -> ``"faces"``)."""
    return re.split(r"[:/ @(]", model, maxsplit=1)[0] or model


def _ints(fields: dict, *names: str) -> dict:
    return {n: int(fields[n]) for n in names if fields.get(n) is not None}


@dataclass(frozen=True, kw_only=True)
class StreamRecord:
    """(v2) One input of one run, as the ``streams`` dataset and topic hold it: what was read and how it ended.

    ``status``: ok, failed or skipped; ``error``: the reason (failed) or why it was skipped; media facts
    (codecs, size, rates) are None where the input has no such stream or was never opened.
    """

    stream_id: str
    source: str
    run_id: str
    status: str
    error: Optional[str] = None
    live: bool = False
    t0_s: Optional[float] = None          # media time of cell 0
    duration_s: Optional[float] = None    # media seconds (container duration, else what was read)
    media_origin: Optional[_dt.datetime] = None   # UTC capture time of t0_s, when known
    media_origin_from: Optional[str] = None       # where it came from: creation_time, user, live
    video_codec: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    fps: Optional[float] = None
    audio_codec: Optional[str] = None
    sample_rate_hz: Optional[int] = None
    channels: Optional[int] = None
    cells: int = 0
    records: int = 0
    gaps: int = 0
    settings: Optional[str] = None        # what shaped the records (profile, operators, grid), as JSON
    started_at: Optional[_dt.datetime] = None
    finished_at: Optional[_dt.datetime] = None
    schema_version: int = SCHEMA_VERSION
    kind: str = STREAMS

    KIND: ClassVar[str] = STREAMS

    def __post_init__(self):
        if self.status not in ("ok", "failed", "skipped"):
            raise ValueError(f"StreamRecord {self.stream_id}: status must be ok, failed or skipped, got {self.status!r}")
        for name in ("media_origin", "started_at", "finished_at"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise ValueError(f"StreamRecord {self.stream_id}: {name} must be timezone-aware (UTC)")

    @classmethod
    def make(cls, *, stream_id: str, source: str, **fields) -> "StreamRecord":
        """Credentials removed from ``stream_id``, the password in ``source`` and ``error`` masked."""
        if fields.get("error"):
            fields["error"] = redact(fields["error"])
        return cls(stream_id=strip_credentials(stream_id), source=redact(source), **fields)

    @property
    def record_id(self) -> str:
        """Deterministic per (stream, run): a re-delivered row carries the same id."""
        return make_record_id(self.stream_id, STREAMS, 0.0, 0.0, self.run_id)


def id_text(kind: str, fields: dict) -> str:
    """What a record's id hashes besides stream, kind and times: the label (captions: the text),
    plus (v2) the ``track_id`` of an action and the ``detail`` of an event where they are set, so
    two tracked people walking over the same seconds, or two zones occupied at once, keep apart."""
    text = str(fields["text" if kind == "caption" else "label"])
    if kind == "action" and fields.get("track_id") is not None:
        text += f"\x1ftrack={int(fields['track_id'])}"
    if kind == "event" and fields.get("detail") is not None:
        text += f"\x1fdetail={fields['detail']}"
    return text


def make_record_id(stream_id: str, kind: str, t_start: float, t_end: float, label_or_text: str) -> str:
    """Deterministic id: sha256 of (stream_id, kind, t_start, t_end, label/text), times rounded to 1 us.
    ``label_or_text`` is :func:`id_text` for records (the label, with a track id or detail where set).

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
_ARROW_TYPES = {str: pa.string(), int: pa.int32(), float: pa.float64(), bool: pa.bool_(),
                _dt.datetime: _TIMESTAMP, tuple[LabelScore, ...]: _TOP_K}
_INT64 = {"track_id"}                     # ids may outgrow int32
RECORD_CLASSES: dict[str, type] = {**RECORD_TYPES, STREAMS: StreamRecord}


def _fields(kind: str) -> tuple[dataclasses.Field, ...]:
    try:
        cls = RECORD_CLASSES[kind]
    except KeyError:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {KINDS + (STREAMS,)}") from None
    fs = dataclasses.fields(cls)
    if kind == STREAMS:
        return fs
    v2 = set(V2_FIELDS["common"]) | set(V2_FIELDS[kind])
    return tuple(f for f in fs if f.name not in v2) + tuple(f for f in fs if f.name in v2)   # v1 columns first


def _arrow_field(name: str, hint) -> pa.Field:
    nullable = typing.get_origin(hint) in (Union, types.UnionType)
    if nullable:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    typ = pa.int64() if name in _INT64 else _ARROW_TYPES[hint]
    return pa.field(name, typ, nullable=nullable)


def _schema(kind: str) -> pa.Schema:
    hints = typing.get_type_hints(RECORD_CLASSES[kind], globalns={**globals(), "_dt": _dt})
    # the columns v2 added are nullable in Arrow: a v1 file read with this schema has nulls there
    v2 = () if kind == STREAMS else V2_FIELDS["common"] + V2_FIELDS[kind]
    return pa.schema([_arrow_field(f.name, hints[f.name]).with_nullable(True) if f.name in v2
                      else _arrow_field(f.name, hints[f.name]) for f in _fields(kind)],
                     metadata={"avgrid.schema_version": str(SCHEMA_VERSION)})


_SCHEMAS = {k: _schema(k) for k in RECORD_CLASSES}
_NAMES = {k: tuple(s.names) for k, s in _SCHEMAS.items()}


def arrow_schema(kind: str) -> pa.Schema:
    """The Parquet/Arrow schema of one record kind or ``streams``: version-1 columns in their v1
    order, then the columns version 2 added. Pass it as the dataset schema to read v1 and v2 files
    together (missing columns read as nulls)."""
    _fields(kind)
    return _SCHEMAS[kind]


def empty_table(kind: str) -> pa.Table:
    """Zero rows with the schema of ``kind`` (every kind's dataset holds at least one readable file)."""
    return arrow_schema(kind).empty_table()


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


_TIME_FIELDS = {k: tuple(f.name for f in dataclasses.fields(c)
                         if "datetime" in str(f.type)) for k, c in RECORD_CLASSES.items()}


def to_dict(record: Record | StreamRecord) -> dict[str, Any]:
    """The JSON object of a record: field -> value, timestamps as ISO-8601 UTC strings."""
    values = record.__dict__      # reading the instance dict is several times cheaper than getattr per field
    d = {name: values[name] for name in _NAMES[record.kind]}     # the Arrow column order: v1's, then v2's
    for name in _TIME_FIELDS[record.kind]:
        d[name] = _iso(d[name])
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


def _from_mapping(obj: dict) -> Record | StreamRecord:
    """A record from its fields; a version-1 row (no v2 fields) gets the v2 defaults."""
    cls = RECORD_CLASSES.get(obj.get("kind"))
    if cls is None:
        raise ValueError(f"unknown record kind {obj.get('kind')!r}; expected one of {KINDS + (STREAMS,)}")
    values = {name: obj[name] for name in _NAMES[cls.KIND] if name in obj}
    for name in _TIME_FIELDS[cls.KIND]:
        t = values.get(name)
        if isinstance(t, str):
            t = _dt.datetime.fromisoformat(t)
        if name in values:
            values[name] = None if t is None else t.astimezone(UTC)
    if cls is ActionRecord:
        values["top_k"] = tuple(LabelScore(t["label"], t["score"]) for t in values["top_k"])
    if cls is not StreamRecord:
        for name in ("operator", "episode_id"):
            if not values.get(name):
                values.pop(name, None)
        values.setdefault("operator", default_operator(values["model"]))
        values.setdefault("episode_id", values["record_id"])
    if cls is SentimentRecord and values.get("modality") is None:
        values.pop("modality", None)
    return cls(**values)
