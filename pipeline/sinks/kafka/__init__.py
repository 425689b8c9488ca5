"""Records to Kafka: one topic per kind, every record delivered or dead-lettered.

* :mod:`pipeline.sinks.kafka.options`: :class:`KafkaConfig` and the kafka-python settings it becomes;
* :mod:`pipeline.sinks.kafka.sink`: :class:`KafkaSink` (topics, sending, deadlines, health, close);
* :mod:`pipeline.sinks.kafka.delivery`: at-least-once and transactional (exactly-once) delivery;
* :mod:`pipeline.sinks.kafka.compat`: a fix for kafka-python's idempotent producer.
"""

from pipeline.sinks.kafka.options import KafkaConfig
from pipeline.sinks.kafka.sink import KafkaHealth, KafkaSink

__all__ = ["KafkaConfig", "KafkaHealth", "KafkaSink"]
