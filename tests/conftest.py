import os
import socket

import pytest

# Tests run on 2 cores next to a broker: keep torch from oversubscribing.
os.environ.setdefault("OMP_NUM_THREADS", "2")


def kafka_bootstrap() -> str:
    return os.environ.get("AVGRID_KAFKA_BOOTSTRAP", f"127.0.0.1:{os.environ.get('AVGRID_KAFKA_PORT', '9092')}")


@pytest.fixture(scope="session")
def kafka() -> str:
    """Bootstrap address of the local broker that `make test` starts (deploy/kafka/kafka.sh)."""
    addr = kafka_bootstrap()
    host, port = addr.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        if os.environ.get("CI"):
            pytest.fail(f"Kafka broker not reachable at {addr}; `make test` starts it with deploy/kafka/kafka.sh up")
        pytest.skip(f"Kafka broker not reachable at {addr} (run `make kafka-up`)")
    return addr


@pytest.fixture(scope="session")
def ray_local():
    """One embedded Ray for the whole session (ray.init costs seconds); the engine reuses it.

    Started through the runtime's own bootstrap, so tests run Ray the way users do:
    bound to 127.0.0.1, dashboard off.
    """
    from pipeline.runtime.cluster import ray_session

    with ray_session(num_cpus=2) as ray:
        yield ray


@pytest.fixture(scope="module")
def own_broker():
    """A Kafka broker of the test module's own (:class:`tests.brokers.OwnBroker`, started): for tests
    that kill, freeze or restart it. ``own_broker.bootstrap`` is its address."""
    from tests.brokers import OwnBroker, have_kafka_jars

    if not have_kafka_jars() and not os.environ.get("CI"):
        pytest.skip("Kafka jars not fetched (make kafka-up)")
    broker = OwnBroker()
    broker.up()
    try:
        yield broker
    finally:
        broker.down()
