"""What every sink shares: the :class:`Sink` protocol and the statistics of the end-of-run summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

from pipeline.records import Record


@runtime_checkable
class Sink(Protocol):
    """Where records go. ``write`` may buffer; ``flush`` makes everything written so far durable
    (or dead-lettered, counted); ``close`` flushes and releases the client/files.

    Sinks that know about inputs (archives) also have ``commit_input(input_key)``: every record of
    that input (its ``stream_id``) is durable; a re-run may skip it.
    """

    def write(self, records: Sequence[Record]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class SinkStats:
    """Counts for the end-of-run summary. ``written`` is per record kind; errors are already redacted."""

    written: Counter = field(default_factory=Counter)
    dropped: int = 0            # live mode: thrown away because the buffer bound was reached
    dead_lettered: int = 0      # permanently failed, kept in the dead-letter file
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"written": dict(self.written), "dropped": self.dropped,
                "dead_lettered": self.dead_lettered, "errors": list(self.errors)}
