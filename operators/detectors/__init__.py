"""Offline detectors (no download): each runs on one stream's consecutive cells, keeps state across
calls and names its method. See :mod:`operators.detectors.base` for the calling convention."""

from operators.detectors import audio, faces, people, sound_events, speech_content, visual, zones  # noqa: F401  (registers the detectors)
from operators.detectors.base import DetectorResult  # noqa: F401
