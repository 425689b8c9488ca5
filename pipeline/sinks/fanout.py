"""Fan-out: the same records to several sinks, each sink's failure isolated and reported.

    sink = FanOut([ParquetSink.open(out, run_id=run), KafkaSink.connect(cfg)])
    sink.write(records)              # a failing Kafka sink does not stop Parquet
    if sink.commit_input("clip1"):   # True only when every sink durably has clip1's records
        ...
    sink.errors                      # {"KafkaSink": ["kafka 127.0.0.1:9092: ..."], ...}
"""

from __future__ import annotations

import inspect
import logging
from collections import defaultdict
from typing import Sequence

from pipeline.errors import SinkError
from pipeline.records import Record
from pipeline.redact import redact
from pipeline.sinks.base import Sink

log = logging.getLogger("avgrid.sinks")

_ALL = "\x00all inputs"   # a failure we cannot pin to inputs (flush, close)
MAX_ERRORS_KEPT = 20      # per sink: the latest error messages (every failure is still logged)


class FanOut:
    """A :class:`Sink` over several sinks. Per-sink errors are kept in ``errors`` (redacted)."""

    def __init__(self, sinks: Sequence[Sink], names: Sequence[str] | None = None):
        if not sinks:
            raise ValueError("FanOut needs at least one sink")
        names = list(names) if names else _default_names(sinks)
        if len(names) != len(sinks) or len(set(names)) != len(names):
            raise ValueError(f"FanOut: need one distinct name per sink, got {names}")
        self.sinks = dict(zip(names, sinks))
        self.errors: dict[str, list[str]] = defaultdict(list)
        self._missed: dict[str, set[str]] = defaultdict(set)   # sink -> inputs it may lack records of

    def write(self, records: Sequence[Record]) -> None:
        """Write to every sink; raises SinkError only when no sink took the records."""
        failed = 0
        for name, sink in self.sinks.items():
            try:
                sink.write(records)
            except Exception as e:  # noqa: BLE001  (isolation is the point)
                failed += 1
                self._fail(name, "write", e, {r.stream_id for r in records})
        if failed == len(self.sinks):
            raise SinkError(f"every sink failed to write {len(records)} records: {self._last_errors()}")

    def flush(self) -> None:
        for name, sink in self.sinks.items():
            try:
                sink.flush()
            except Exception as e:  # noqa: BLE001
                self._fail(name, "flush", e, {_ALL})

    def close(self, timeout_s: float | None = None) -> None:
        """Close every sink; ``timeout_s`` bounds the sinks that wait on a remote service (Kafka)."""
        for name, sink in self.sinks.items():
            try:
                if timeout_s is not None and "timeout_s" in inspect.signature(sink.close).parameters:
                    sink.close(timeout_s=timeout_s)
                else:
                    sink.close()
            except Exception as e:  # noqa: BLE001
                self._fail(name, "close", e, {_ALL})

    def commit_input(self, input_key: str, meta: dict | None = None) -> bool:
        """Commit ``input_key`` in every sink; durable markers (sinks with ``committed_inputs``,
        i.e. Parquet) are written last and only when every other sink has the input's records, and
        hold ``meta`` (the re-run fingerprint). Returns False (and logs why) when the input must be
        redone by a re-run."""
        ordered = sorted(self.sinks.items(), key=lambda kv: hasattr(kv[1], "committed_inputs"))
        for name, sink in ordered:
            missed = self._missed[name]
            if input_key in missed or _ALL in missed:
                log.error("input %s not committed: sink %s failed earlier (%s)", redact(input_key), name,
                          self.errors[name][-1] if self.errors[name] else "?")
                return False
            try:
                commit = getattr(sink, "commit_input", None)
                if commit is None:
                    sink.flush()
                elif meta is not None and hasattr(sink, "committed_inputs"):
                    commit(input_key, meta)
                else:
                    commit(input_key)
            except Exception as e:  # noqa: BLE001
                self._fail(name, "commit", e, {input_key})
                log.error("input %s not committed: sink %s failed", redact(input_key), name)
                return False
        return True

    def committed_inputs(self) -> set[str]:
        """Inputs committed in every sink that keeps durable markers."""
        sets = [s.committed_inputs() for s in self.sinks.values() if hasattr(s, "committed_inputs")]
        return set.intersection(*sets) if sets else set()

    def commit_markers(self) -> dict[str, dict]:
        """Input -> its commit marker, for the inputs :meth:`committed_inputs` lists (the first
        marker-keeping sink's marker; sinks without ``commit_markers`` give ``{}`` per input)."""
        keep = self.committed_inputs()
        for sink in self.sinks.values():
            markers = getattr(sink, "commit_markers", None)
            if markers is not None:
                got = markers()
                return {k: got.get(k, {}) for k in keep}
        return {k: {} for k in keep}

    def discard(self) -> None:
        """Sinks that can forget this run's output (Parquet) do; the others are left as they are."""
        for name, sink in self.sinks.items():
            fn = getattr(sink, "discard", None)
            if fn is not None:
                try:
                    fn()
                except Exception as e:  # noqa: BLE001
                    self._fail(name, "discard", e, {_ALL})

    @property
    def stats(self) -> dict[str, dict]:
        """Per-sink statistics (written per kind, dropped, dead-lettered, errors)."""
        out = {}
        for name, sink in self.sinks.items():
            stats = getattr(sink, "stats", None)
            d = stats.as_dict() if stats is not None else {"written": {}, "dropped": 0, "dead_lettered": 0,
                                                           "errors": []}
            d["errors"] = d["errors"] + [e for e in self.errors.get(name, []) if e not in d["errors"]]
            out[name] = d
        return out

    def _fail(self, name: str, op: str, exc: Exception, inputs: set[str]) -> None:
        msg = redact(f"{name} {op}: {type(exc).__name__}: {exc}")
        errors = self.errors[name]
        if len(errors) >= MAX_ERRORS_KEPT:     # thousands of failed inputs must not grow memory for good
            del errors[: len(errors) - MAX_ERRORS_KEPT + 1]
        errors.append(msg)
        self._missed[name] |= inputs
        log.error("sink failed, other sinks go on: %s", msg)

    def _last_errors(self) -> str:
        return "; ".join(errs[-1] for errs in self.errors.values() if errs)


def _default_names(sinks: Sequence[Sink]) -> list[str]:
    names, seen = [], defaultdict(int)
    for s in sinks:
        base = type(s).__name__
        seen[base] += 1
        names.append(base if seen[base] == 1 else f"{base}{seen[base]}")
    return names
