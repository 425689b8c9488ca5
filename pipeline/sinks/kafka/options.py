"""Kafka settings: :class:`KafkaConfig` and the kafka-python keyword arguments it becomes.

``client_config`` is what the producer and the admin client share (brokers, timeouts, SASL, SSL);
``producer_config`` adds delivery (``acks``, idempotence, batching, a ``transactional_id`` for
exactly-once). TLS files given where a run starts travel inside the config as PEM bytes
(``ssl_pem``); :func:`local_pem` writes them to a private directory on the node the sink runs on.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass, field


@dataclass(frozen=True)
class KafkaConfig:
    """Kafka sink settings. Times in seconds; ``repr`` never shows the passwords."""

    bootstrap: str                          # "host:port[,host:port]"
    prefix: str = "avgrid"                  # topics are <prefix>.<kind>
    acks: str = "all"
    exactly_once: bool = False
    transactional_id: str | None = None     # default with exactly_once: "<prefix>-<host>-<pid>"
    security_protocol: str = "PLAINTEXT"    # PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
    sasl_mechanism: str | None = None       # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = field(default=None, repr=False)
    ssl_check_hostname: bool = True
    # ((option, PEM bytes), ...): the ssl_* files as read where the run started; the sink writes them
    # to a private directory on whichever node it runs, so they need not exist there
    ssl_pem: tuple = field(default=(), repr=False)
    partitions: int = 1                     # for topics the sink creates
    replication: int = 1
    buffer_max_records: int = 100_000       # unacknowledged records held in memory at most
    live: bool = False                      # True: drop (and count) instead of waiting when full
    live_flush_s: float = 1.0               # live mode: the longest a flush() waits for acknowledgements
    dead_letter_dir: str | None = None      # usually the Parquet --out directory
    run_id: str = field(default_factory=lambda: f"pid{os.getpid()}")   # names the dead-letter file
    delivery_timeout_s: float = 120.0       # kafka-python's retries for one send
    request_timeout_s: float = 30.0
    max_block_s: float = 60.0               # send() waiting for topic metadata
    connect_timeout_s: float = 30.0
    resend_attempts: int = 2                # archive mode: extra sends after a retriable failure
    ack_timeout_s: float | None = None      # a record unacknowledged this long is dead-lettered
                                            # (None: delivery_timeout_s + 5)
    down_after_s: float = 5.0               # no acknowledgement this long while records wait: "down"
    unreachable_wait_s: float = 2.0         # broker silent for ack_timeout_s: how long a new record waits
    close_timeout_s: float = 10.0           # close(): the longest it waits for what is still unacknowledged
    linger_ms: int = 5
    batch_size: int = 256 * 1024
    compression: str | None = None          # gzip, snappy, lz4, zstd (if installed)
    api_version: tuple[int, ...] | None = None   # None: ask the broker at connect time

    def topic(self, kind: str) -> str:
        return f"{self.prefix}.{kind}"

    @property
    def ack_deadline_s(self) -> float:
        """Seconds after its first send by which a record is acknowledged or dead-lettered."""
        return self.ack_timeout_s if self.ack_timeout_s is not None else self.delivery_timeout_s + 5.0

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.sasl_password, self.ssl_password) if s)


def client_config(cfg: KafkaConfig) -> dict:
    """Connection and security settings shared by the producer and the admin client."""
    kw = {"bootstrap_servers": cfg.bootstrap.split(","), "security_protocol": cfg.security_protocol,
          "request_timeout_ms": int(cfg.request_timeout_s * 1000),
          "bootstrap_timeout_ms": int(cfg.connect_timeout_s * 1000)}
    if cfg.api_version:
        kw["api_version"] = tuple(cfg.api_version)
    if cfg.sasl_mechanism:
        kw.update(sasl_mechanism=cfg.sasl_mechanism, sasl_plain_username=cfg.sasl_username,
                  sasl_plain_password=cfg.sasl_password)
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password"):
        if getattr(cfg, name):
            kw[name] = getattr(cfg, name)
    if cfg.security_protocol in ("SSL", "SASL_SSL"):
        kw["ssl_check_hostname"] = cfg.ssl_check_hostname
    return kw


def producer_config(cfg: KafkaConfig) -> dict:
    """KafkaProducer keyword arguments (also what the benchmark's raw producer uses)."""
    kw = client_config(cfg)
    kw.update(acks=cfg.acks, enable_idempotence=True, linger_ms=cfg.linger_ms, batch_size=cfg.batch_size,
              delivery_timeout_ms=int(cfg.delivery_timeout_s * 1000), max_block_ms=int(cfg.max_block_s * 1000),
              compression_type=cfg.compression, client_id=f"avgrid-{cfg.run_id}")
    if cfg.exactly_once:
        kw["transactional_id"] = cfg.transactional_id or f"{cfg.prefix}-{os.uname().nodename}-{os.getpid()}"
    return kw


def local_pem(cfg: KafkaConfig) -> tuple[KafkaConfig, str | None]:
    """``cfg`` with its shipped PEM files written to a new private directory (returned too)."""
    if not cfg.ssl_pem:
        return cfg, None
    d = tempfile.mkdtemp(prefix="avgrid-kafka-tls-")       # mode 0700
    paths = {}
    for name, data in cfg.ssl_pem:
        path = os.path.join(d, f"{name}.pem")
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(data)
        paths[name] = path
    return dataclasses.replace(cfg, ssl_pem=(), **paths), d

