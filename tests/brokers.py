"""A Kafka broker of a test's own (never the shared one at 9092): ``deploy/kafka/kafka.sh`` with its own
ports and state directory, for tests that SIGKILL, SIGSTOP or restart it.

    broker = OwnBroker()           # ports from the kernel (tests.servers.free_port_block), nothing runs yet
    broker.up(); broker.bootstrap  # "127.0.0.1:PORT"
    broker.kill(); broker.up()     # SIGKILL (data kept), start again on the same ports and data
    with broker.frozen(): ...      # SIGSTOPped: sockets open, nothing answered
    broker.down()

The ``own_broker`` fixture (tests/conftest.py) gives each test module one, started and stopped around it.

Reading what reached a broker (this one or the shared one):

    prefix = unique_prefix()                       # topics of this test alone: "t" + 10 hex digits
    msgs = consume(bootstrap, [f"{prefix}.event"], n=12)   # kafka-python ConsumerRecords, from the start
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from kafka import KafkaConsumer

from tests.servers import free_port_block, release_port

REPO = Path(__file__).resolve().parents[1]
KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"
KAFKA_LIB = REPO / "deploy" / "kafka" / "lib"


def have_kafka_jars() -> bool:
    return (KAFKA_LIB / ".complete").exists()


class OwnBroker:
    def __init__(self):
        self.port = free_port_block(2)                 # the client port and the KRaft controller's
        self.state = Path(f"/tmp/avgrid-kafka-test-{self.port}")
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "AVGRID_KAFKA_PORT": str(self.port), "AVGRID_KAFKA_STATE": str(self.state),
                    "AVGRID_PYTHON": str(REPO / ".venv" / "bin" / "python")}

    def sh(self, cmd: str) -> str:
        out = subprocess.run([str(KAFKA_SH), cmd], env=self.env, capture_output=True, text=True, timeout=180)
        if out.returncode != 0:
            raise RuntimeError(f"kafka.sh {cmd} failed: {out.stderr[-2000:]}")
        return out.stdout.strip()

    def up(self) -> str:
        return self.sh("up")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, the data directory stays for the next :meth:`up`."""
        self.sh("kill")

    def down(self) -> None:
        try:
            self.sh("down")
        finally:
            release_port(self.port)
            release_port(self.port + 1)

    @property
    def pid(self) -> int:
        return int((self.state / "broker.pid").read_text())

    @contextmanager
    def frozen(self):
        """The broker SIGSTOPped: its sockets stay open and accept connections, nothing is answered."""
        pid = self.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def consume(bootstrap: str, topics: list[str], n: int, *, timeout_s: float = 60.0,
            isolation: str = "read_uncommitted", settle_s: float = 0.0, **consumer_kw) -> list:
    """Read ``topics`` from the beginning until ``n`` messages arrived (then ``settle_s`` more)."""
    consumer = KafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, isolation_level=isolation, consumer_timeout_ms=500,
                             **consumer_kw)
    out, deadline, settle_until = [], time.monotonic() + timeout_s, None
    try:
        while time.monotonic() < deadline:
            out.extend(consumer)
            if len(out) >= n:
                settle_until = settle_until or time.monotonic() + settle_s
                if time.monotonic() >= settle_until:
                    break
    finally:
        consumer.close()
    return out
