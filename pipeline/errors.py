"""Errors that name the input and the reason, with credentials already masked."""

from __future__ import annotations

from pipeline.redact import redact


class AvgridError(Exception):
    """Base class for errors avgrid reports to the user."""


class ConfigError(AvgridError):
    """Bad flags or config file: exit status 2."""


class SourceError(AvgridError):
    """An input could not be opened or read.

    ``str(err)`` is ``"<input, password masked>: <reason>"``, e.g.
    ``SourceError: rtsp://admin:***@cam1/stream: no packets for 10 s``.
    """

    def __init__(self, source: str, reason: str):
        self.source = redact(str(source))
        self.reason = redact(str(reason))
        super().__init__(f"{self.source}: {self.reason}")


class SinkError(AvgridError):
    """A sink could not deliver records (after its own retries)."""
