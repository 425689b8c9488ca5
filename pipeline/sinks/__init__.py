"""Sinks: where records go (Parquet datasets, Kafka topics, several at once, dead-letter files).

    from pipeline.sinks import ParquetSink, KafkaSink, KafkaConfig, FanOut
"""

from pipeline.sinks.base import Sink, SinkStats
from pipeline.sinks.deadletter import DeadLetter
from pipeline.sinks.fanout import FanOut
from pipeline.sinks.parquet import ParquetSink

__all__ = ["Sink", "SinkStats", "DeadLetter", "FanOut", "KafkaConfig", "KafkaSink", "ParquetSink"]


def __getattr__(name: str):
    # kafka-python takes ~0.5 s to import: only runs with --kafka pay for it
    if name in ("KafkaConfig", "KafkaSink"):
        from pipeline.sinks import kafka

        return getattr(kafka, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
