"""Kafka sink (kafka-python 3.x): topic ``<prefix>.<kind>``, key = stream_id, JSON value, ``schema_version`` header.

Delivery (DESIGN.md "Records (CONTRACT)"): the idempotent producer is on explicitly, ``acks=all``;
every send's future is checked. While the broker is down kafka-python's own retries run until
``delivery_timeout_s``; the sink keeps at most ``buffer_max_records`` unacknowledged records:
archive mode (``live=False``) then waits, live mode drops the newest records and counts them
(and its ``flush`` waits at most ``live_flush_s``, so a live run is never held up by the broker).
A record that still fails (archive mode: after ``resend_attempts`` more sends of retriable
failures) goes to the dead-letter file, never to nowhere. ``exactly_once=True`` uses a
transactional producer: each ``flush``/``commit_input`` commits a transaction.

    sink = KafkaSink.connect(KafkaConfig("127.0.0.1:9092", dead_letter_dir="avgrid-out"))
    sink.write(records); sink.commit_input("cam1"); sink.close()

Secrets (SASL and SSL key passwords) never reach logs: kafka-python logs the admin client's whole
configuration and the SASL PLAIN auth bytes at DEBUG, so a filter masks them on every ``kafka.*`` logger.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError
from kafka.partitioner.default import murmur2

from pipeline.errors import SinkError
from pipeline.records import KINDS, SCHEMA_VERSION, STREAMS, Record, to_json
from pipeline.redact import MASK, redact
from pipeline.sinks.base import SinkStats
from pipeline.sinks.deadletter import DeadLetter

log = logging.getLogger(__name__)


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
    linger_ms: int = 5
    batch_size: int = 256 * 1024
    compression: str | None = None          # gzip, snappy, lz4, zstd (if installed)
    api_version: tuple[int, ...] | None = None   # None: ask the broker at connect time

    def topic(self, kind: str) -> str:
        return f"{self.prefix}.{kind}"

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


def _local_pem(cfg: KafkaConfig) -> tuple[KafkaConfig, str | None]:
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


class _MaskSecrets(logging.Filter):
    """Replaces known secrets in log records (kafka-python logs configs and payloads at DEBUG)."""

    def __init__(self):
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            msg = record.getMessage()
            if any(s in msg for s in self.secrets):
                for s in self.secrets:
                    msg = msg.replace(s, MASK)
                record.msg, record.args = msg, None
        return True


_MASK_FILTER = _MaskSecrets()


def guard_kafka_logs(secrets: Sequence[str]) -> None:
    """Mask ``secrets`` in every record of every ``kafka.*`` logger (filters do not inherit)."""
    _MASK_FILTER.secrets.update(s for s in secrets if s)
    for name in list(logging.root.manager.loggerDict):
        if name == "kafka" or name.startswith("kafka."):
            logger = logging.getLogger(name)
            if _MASK_FILTER not in logger.filters:
                logger.addFilter(_MASK_FILTER)


class KafkaSink:
    """Sends records to ``<prefix>.<kind>`` topics; see the module docstring for the delivery rules."""

    def __init__(self, producer: KafkaProducer, cfg: KafkaConfig, *, dead_letter: DeadLetter | None = None):
        self._producer = producer
        self.cfg = cfg
        self.stats = SinkStats()
        self._dead_letter = dead_letter
        self._headers = [("schema_version", str(SCHEMA_VERSION).encode())]
        self._topics: set[str] = set()
        self._topic_of = {kind: cfg.topic(kind) for kind in KINDS + (STREAMS,)}
        self._partitioning: dict[str, tuple[list[int], dict[bytes, int]]] = {}
        self._pending: deque = deque()       # (future, record, topic, sends so far), oldest first
        self._failed_inputs: set[str] = set()
        self._txn: list[tuple[Record, str]] = []   # exactly-once: records of the open transaction
        self._txn_error: Exception | None = None
        self._where = f"kafka {redact(cfg.bootstrap)}"
        self._closed = False
        self._pem_dir: str | None = None      # set by connect() when it wrote shipped PEM files
        if cfg.exactly_once:
            producer.init_transactions()
            producer.begin_transaction()

    @classmethod
    def connect(cls, cfg: KafkaConfig) -> "KafkaSink":
        """Build the producer (asks the broker for its version unless ``api_version`` is set).

        Raises SinkError naming the bootstrap address when no broker answers in ``connect_timeout_s``.
        """
        guard_kafka_logs(cfg.secrets())
        cfg, pem_dir = _local_pem(cfg)
        try:
            return cls._connect(cfg, pem_dir)
        except BaseException:
            if pem_dir:
                shutil.rmtree(pem_dir, ignore_errors=True)
            raise

    @classmethod
    def _connect(cls, cfg: KafkaConfig, pem_dir: str | None) -> "KafkaSink":
        try:
            producer = KafkaProducer(**producer_config(cfg))
        except KafkaError as e:
            hint = ""
            if cfg.security_protocol != "PLAINTEXT":
                # brokers close the connection on bad credentials or certificates: kafka-python then
                # only reports a timeout
                parts = [f"security_protocol={cfg.security_protocol}"]
                if cfg.sasl_mechanism:
                    parts += [f"sasl_mechanism={cfg.sasl_mechanism}", f"user={cfg.sasl_username}"]
                hint = (f" ({', '.join(parts)}: check the credentials / CA file and that the listener speaks "
                        "this protocol)")
            raise SinkError(f"kafka {redact(cfg.bootstrap)}: cannot connect: {redact(str(e))}{hint}") from None
        guard_kafka_logs(cfg.secrets())     # loggers created while connecting
        dead_letter = DeadLetter.beside(cfg.dead_letter_dir, "kafka", cfg.run_id) if cfg.dead_letter_dir else None
        sink = cls(producer, cfg, dead_letter=dead_letter)
        sink._pem_dir = pem_dir
        # every topic exists once a run has started, also those of kinds nothing is found of
        sink._ensure_topics(list(sink._topic_of.values()))
        return sink

    @property
    def pending(self) -> int:
        """Records sent but not yet acknowledged (at most ``buffer_max_records``)."""
        return len(self._pending)

    # -- Sink -----------------------------------------------------------------------------------

    def write(self, records: Sequence[Record]) -> None:
        """Queue records for sending; blocks (archive) or drops (live) when the buffer is full."""
        if self._closed:
            raise SinkError(f"{self._where}: write after close")
        limit = self.cfg.buffer_max_records
        failed, unavailable = [], {}      # topic -> why its last send failed in this call
        checked = set()                   # topics whose metadata was looked at in this call
        for rec in records:
            if len(self._pending) >= limit:
                self._reap(block=False)
                if len(self._pending) >= limit:
                    if self.cfg.live:
                        self._drop(rec)
                        continue
                    self._reap(block=True, until=limit - 1)
            topic = self._topic_of[rec.kind]
            if topic in unavailable:
                # the producer already waited max_block_s for this topic's metadata: not again per record
                failed.append((rec, topic, unavailable[topic]))
                continue
            if topic not in checked:
                checked.add(topic)
                if topic not in self._topics:
                    self._ensure_topic(topic)
                reason = self._refresh_partitions(topic)
                if reason:
                    failed.append((rec, topic, reason))
                    unavailable[topic] = reason
                    continue
            reason = self._send(rec, topic, 0)
            if reason:
                failed.append((rec, topic, reason))
                unavailable[topic] = reason
        if failed:
            self._dead(failed)
        self._reap(block=False)

    def flush(self) -> None:
        """Wait until every queued record is acknowledged or dead-lettered (counted).

        Live mode waits at most ``live_flush_s``: a live run keeps going while the broker is away
        (what stays unacknowledged is bounded by ``buffer_max_records``; ``close`` waits for it).
        Exactly-once mode: commits the open transaction (or aborts it and dead-letters its records
        when any of them failed). Raises SinkError when failed records have no dead-letter file.
        """
        self._flush(wait=not self.cfg.live)

    def _flush(self, wait: bool) -> None:
        if wait:
            self._producer.flush()
        else:
            try:
                self._producer.flush(timeout=self.cfg.live_flush_s)
            except KafkaTimeoutError:
                pass    # still queued; settled by a later flush or by close
        self._reap(block=wait)
        if self.cfg.exactly_once:
            self._end_transaction()

    def commit_input(self, input_key: str) -> None:
        """Flush; raise SinkError if any record of input ``input_key`` (stream_id) was dead-lettered,
        so that the input is not marked done anywhere and a re-run sends it again. Always waits for
        every acknowledgement (also in live mode)."""
        self._flush(wait=True)
        if input_key in self._failed_inputs:
            raise SinkError(f"{self._where}: records of input {redact(input_key)} could not be delivered "
                            f"(dead-lettered in {self._dead_letter.path if self._dead_letter else 'nowhere'})")

    def abort(self) -> None:
        """Exactly-once mode: drop the open transaction; consumers reading committed data never see it."""
        if not self.cfg.exactly_once:
            raise SinkError(f"{self._where}: abort needs exactly_once=True")
        self._producer.flush()
        self._reap(block=True)
        self._txn, self._txn_error = [], None
        self._producer.abort_transaction()
        self._producer.begin_transaction()

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._flush(wait=True)
        finally:
            self._closed = True
            self._producer.close(timeout=self.cfg.request_timeout_s)
            if self._pem_dir:
                shutil.rmtree(self._pem_dir, ignore_errors=True)

    # -- internals ------------------------------------------------------------------------------

    def _ensure_topic(self, topic: str) -> None:
        self._ensure_topics([topic])

    def _ensure_topics(self, topics: list[str]) -> None:
        """Create the topics that do not exist yet with the configured partitions/replication.

        Failure is logged, not raised: the broker may auto-create them, and sends that cannot find
        one fail into the dead-letter file.
        """
        todo = [t for t in topics if t not in self._topics]
        if not todo:
            return
        self._topics.update(todo)
        try:
            admin = KafkaAdminClient(**client_config(self.cfg), client_id=f"avgrid-admin-{self.cfg.run_id}")
        except KafkaError as e:
            log.warning("%s: cannot create topics %s: %s", self._where, ", ".join(todo), redact(str(e)))
            return
        try:
            existing = set(admin.list_topics())
            missing = [t for t in todo if t not in existing]
            if missing:
                admin.create_topics({t: {"num_partitions": self.cfg.partitions,
                                         "replication_factor": self.cfg.replication} for t in missing},
                                    wait_for_metadata=True)
        except TopicAlreadyExistsError:
            pass
        except KafkaError as e:
            log.warning("%s: cannot create topics %s: %s", self._where, ", ".join(todo), redact(str(e)))
        finally:
            admin.close()

    def _send(self, rec: Record, topic: str, sends: int) -> str | None:
        """Queue one record; returns why it could not even be queued (None: queued)."""
        try:
            key = rec.stream_id.encode("utf-8")
            future = self._producer.send(topic, value=to_json(rec), key=key, headers=self._headers,
                                         partition=self._partition(topic, key))
        except KafkaError as e:
            return f"send failed: {type(e).__name__}: {e}"
        self._pending.append((future, rec, topic, sends + 1))
        if self.cfg.exactly_once:
            self._txn.append((rec, topic))
        return None

    def _refresh_partitions(self, topic: str) -> str | None:
        """Look up the topic's partitions once per write (returns why that failed, None if fine)."""
        try:
            parts = sorted(self._producer.partitions_for(topic))
        except KafkaError as e:
            self._partitioning.pop(topic, None)
            return f"no metadata for the topic: {type(e).__name__}: {e}"
        if topic not in self._partitioning or self._partitioning[topic][0] != parts:
            self._partitioning[topic] = (parts, {})
        return None

    def _partition(self, topic: str, key: bytes) -> int | None:
        """The partition kafka-python's DefaultPartitioner picks for ``key`` (murmur2), cached per key:
        hashing in pure Python and sorting the partitions cost more per record than the rest of the sink."""
        parts, by_key = self._partitioning.get(topic, (None, None))
        if not parts:
            return None
        p = by_key.get(key)
        if p is None:
            p = by_key[key] = parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)]
        return p

    def _reap(self, block: bool, until: int = 0) -> None:
        """Settle finished sends, oldest first; with ``block`` wait until at most ``until`` are pending."""
        failed = []
        pending = self._pending
        while len(pending) > (until if block else 0):
            future, rec, topic, sends = pending[0]
            if not future.is_done:
                if not block:
                    break
                try:
                    future.get()
                except Exception:   # noqa: BLE001  (the failure is read from the future below)
                    pass
            pending.popleft()
            if self.cfg.exactly_once:
                # counted (or dead-lettered) when the transaction ends
                if future.failed():
                    self._txn_error = future.exception
                continue
            if future.succeeded():
                self.stats.written[rec.kind] += 1
                continue
            exc = future.exception
            if (not self.cfg.live and sends <= self.cfg.resend_attempts
                    and getattr(exc, "retriable", False)):
                log.warning("%s: %s record %s failed (%s); sending again", self._where, topic, rec.record_id, exc)
                reason = self._send(rec, topic, sends)
                if reason:
                    failed.append((rec, topic, reason))
            else:
                failed.append((rec, topic, f"{type(exc).__name__}: {exc}"))
        if failed:
            self._dead(failed)

    def _end_transaction(self) -> None:
        txn, self._txn = self._txn, []
        error, self._txn_error = self._txn_error, None
        if not txn:
            return
        try:
            if error is not None:
                raise error
            self._producer.commit_transaction()
        except KafkaError as e:
            self._producer.abort_transaction()
            self._producer.begin_transaction()
            self._dead([(r, t, f"transaction aborted: {type(e).__name__}: {e}") for r, t in txn])
            return
        self._producer.begin_transaction()
        for rec, _topic in txn:
            self.stats.written[rec.kind] += 1

    def _drop(self, rec: Record) -> None:
        self.stats.dropped += 1
        if self.stats.dropped == 1 or self.stats.dropped % 1000 == 0:
            log.warning("%s: buffer full (%d unacknowledged records, broker slow or down): %d live "
                        "records dropped so far", self._where, len(self._pending), self.stats.dropped)

    def _dead(self, failures: list[tuple[Record, str, str]]) -> None:
        for rec, _topic, _reason in failures:
            self._failed_inputs.add(rec.stream_id)
        reason = redact(failures[0][2])
        msg = f"{self._where}: {len(failures)} records failed permanently (first: {reason})"
        self.stats.errors.append(msg)
        if self._dead_letter is None:
            log.error("%s; no dead_letter_dir configured", msg)
            raise SinkError(f"{msg}; no dead_letter_dir configured, records lost")
        self._dead_letter.add(failures, sink="kafka")
        self.stats.dead_lettered += len(failures)
        log.error("%s; written to %s", msg, self._dead_letter.path)
