import os
import socket
from typing import NamedTuple

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


class TrainedBundle(NamedTuple):
    bundle: object        # operators.fusion.Bundle
    report: object        # pipeline.training.TrainReport
    featurizer: object    # the operators.fusion.CellFeaturizer it was trained with
    path: str             # the bundle saved there (for --bundle)


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory) -> TrainedBundle:
    """A fusion bundle trained (real training, not random weights) for 40 epochs on 80 generated
    scenes (pipeline.knowntruth), saved once for the session. About 17 s on a busy 2-core machine."""
    import torch

    from operators.fusion import CellFeaturizer, default_preprocessing
    from pipeline.knowntruth.dataset import make_cells
    from pipeline.training import clips_from_arrays, train_clips

    # tiny matrices: one thread is several times faster than two on a busy 2-core machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fz = CellFeaturizer()
        clips = clips_from_arrays(make_cells(80, seed=0), fz)
        bundle, report = train_clips(clips, None, featurizer=fz, preprocessing=default_preprocessing(), epochs=40,
                                     batch_size=8, seed=0, progress=False)
    finally:
        torch.set_num_threads(threads)
    path = tmp_path_factory.mktemp("bundle") / "b"
    bundle.save(path)
    return TrainedBundle(bundle, report, fz, str(path))


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
