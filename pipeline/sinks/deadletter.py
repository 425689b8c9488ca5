"""Dead-letter file: records a sink could not deliver after its retries, one JSON object per line.

Line format: ``{"sink": "kafka", "topic": ..., "reason": <redacted>, "failed_at": <ISO UTC>,
"record": <the record's JSON object>}``. Written next to the Parquet output
(``<out>/_deadletter/<sink>-<run_id>.jsonl``), appended and fsynced per batch, so a record is
never sent to nowhere; replay it with any JSON-lines reader.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Iterable

from pipeline.records import Record, to_dict
from pipeline.redact import redact


class DeadLetter:
    """Appends failed records to one JSONL file (created on the first failure)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.count = 0

    @classmethod
    def beside(cls, out_dir: str | os.PathLike, sink: str, run_id: str) -> "DeadLetter":
        return cls(Path(out_dir) / "_deadletter" / f"{sink}-{run_id}.jsonl")

    def add(self, failures: Iterable[tuple[Record, str, str]], sink: str) -> int:
        """Append ``(record, topic_or_target, reason)`` items durably; returns how many were written."""
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")
        lines = [json.dumps({"sink": sink, "topic": target, "reason": redact(reason), "failed_at": now,
                             "record": to_dict(rec)}, ensure_ascii=False) + "\n"
                 for rec, target, reason in failures]
        if not lines:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.writelines(lines)
            f.flush()
            os.fsync(f.fileno())
        self.count += len(lines)
        return len(lines)

    def read(self) -> list[dict]:
        """The dead-lettered lines (for replay and tests)."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line]
