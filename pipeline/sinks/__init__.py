"""Sinks: where records go (Parquet datasets, Kafka topics, several at once, dead-letter files).

    from pipeline.sinks import ParquetSink, KafkaSink, KafkaConfig, FanOut
"""

from pipeline.sinks.base import Sink, SinkStats
from pipeline.sinks.deadletter import DeadLetter
from pipeline.sinks.fanout import FanOut
from pipeline.sinks.kafka import KafkaConfig, KafkaSink
from pipeline.sinks.parquet import ParquetSink

__all__ = ["Sink", "SinkStats", "DeadLetter", "FanOut", "KafkaConfig", "KafkaSink", "ParquetSink"]
