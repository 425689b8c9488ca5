"""Exit 0 when the broker at argv[1] accepts a produce and a consume request, else 1.

Used by kafka.sh: an open port is not enough, the broker must have elected itself
controller and created the internal topics before clients can work.
"""

import sys
import uuid


def main(bootstrap: str) -> int:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    topic = "_avgrid_ready"
    payload = uuid.uuid4().bytes
    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=5000,
                                 max_block_ms=5000)
        meta = producer.send(topic, payload).get(timeout=10)
        producer.close(timeout=5)
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=5000, enable_auto_commit=False)
        tp = TopicPartition(topic, meta.partition)
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)
        for record in consumer:
            if record.value == payload:
                consumer.close()
                return 0
        consumer.close()
    except Exception as exc:  # any failure means "not ready yet"; kafka.sh retries
        print(f"not ready: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
