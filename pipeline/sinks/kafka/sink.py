"""The Kafka sink (kafka-python 3.x): topic ``<prefix>.<kind>``, key = stream_id, JSON value, ``schema_version`` header.

Delivery: the idempotent producer is on explicitly, ``acks=all``;
every send's future is checked. While the broker is down kafka-python's own retries run until
``delivery_timeout_s``; the sink keeps at most ``buffer_max_records`` unacknowledged records:
archive mode (``live=False``) then waits, live mode drops the newest records and counts them
(and its ``flush`` waits at most ``live_flush_s``, so a live run is never held up by the broker).
A record that still fails (archive mode: after ``resend_attempts`` more sends of retriable
failures) goes to the dead-letter file, never to nowhere. ``exactly_once=True`` uses a
transactional producer: each ``flush``/``commit_input`` commits a transaction (the two delivery
strategies: :mod:`pipeline.sinks.kafka.delivery`; the settings: :mod:`pipeline.sinks.kafka.options`).

Every wait on the broker is bounded, by avgrid and not only by kafka-python (whose producer stops
expiring records once a stalled broker has made it reset its producer id): a record not
acknowledged ``ack_timeout_s`` after its first send (default ``delivery_timeout_s`` + 5 s) is
dead-lettered, and so, at once, is anything that ``close(timeout_s)`` finds still unacknowledged.
Once the broker has acknowledged nothing for ``ack_timeout_s`` it counts as unreachable: until
it acknowledges again, records sent meanwhile get ``unreachable_wait_s`` before they are
dead-lettered, so one broker outage costs an archive run one deadline, not one per input. A
dead-lettered record may still reach Kafka later, with the same ``record_id``. :meth:`health`
(safe from another thread) says whether the broker answers, since when it does not, and how
many records wait.

    sink = KafkaSink.connect(KafkaConfig("127.0.0.1:9092", dead_letter_dir="avgrid-out"))
    sink.write(records); sink.commit_input("cam1"); sink.close()

Secrets (SASL and SSL key passwords) never reach logs: kafka-python logs the admin client's whole
configuration and the SASL PLAIN auth bytes at DEBUG, so a filter masks them on every ``kafka.*`` logger
(:func:`pipeline.redact.guard_loggers`).
"""

from __future__ import annotations

import datetime as _dt
import functools
import logging
import shutil
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Sequence

from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.partitioner.default import murmur2

from pipeline.errors import SinkError
from pipeline.records import KINDS, SCHEMA_VERSION, STREAMS, Record, to_json
from pipeline.redact import guard_loggers, redact
from pipeline.sinks.base import SinkStats
from pipeline.sinks.deadletter import DeadLetter
from pipeline.sinks.kafka.compat import fix_idempotent_reset
from pipeline.sinks.kafka.delivery import AtLeastOnce, Transactional
from pipeline.sinks.kafka.options import KafkaConfig, client_config, local_pem, producer_config

log = logging.getLogger("avgrid.kafka")
MAX_ERRORS_KEPT = 20       # error messages kept in the statistics (the dead-letter file has every record)


@dataclass(frozen=True)
class KafkaHealth:
    """How the broker answers, as the sink sees it (see :meth:`KafkaSink.health`)."""

    where: str                           # "kafka HOST:PORT" (password-free)
    up: bool                             # False: records wait and nothing was acknowledged for down_after_s
    down_since: _dt.datetime | None      # UTC: since when nothing was acknowledged (None while up)
    waiting: int                         # records sent and not yet acknowledged or dead-lettered
    dead_lettered: int                   # so far in this run
    dropped: int                         # live mode: thrown away because the buffer was full
    unreachable: bool = False            # silent for ack_timeout_s: new records wait unreachable_wait_s only
    dead_letter_path: str | None = None



class KafkaSink:
    """Sends records to ``<prefix>.<kind>`` topics; see the module docstring for the delivery rules."""

    def __init__(self, producer: KafkaProducer, cfg: KafkaConfig, *, dead_letter: DeadLetter | None = None):
        fix_idempotent_reset()
        self.log = log
        self._producer = producer
        self.cfg = cfg
        self.stats = SinkStats()
        self._dead_letter = dead_letter
        self._headers = [("schema_version", str(SCHEMA_VERSION).encode())]
        self._topics: set[str] = set()
        self._topic_of = {kind: cfg.topic(kind) for kind in KINDS + (STREAMS,)}
        self._partitioning: dict[str, tuple[list[int], dict[bytes, int]]] = {}
        # (future, record, topic, sends so far, monotonic time of the first send), oldest first
        self._pending: deque = deque()
        self._failed_inputs: Counter = Counter()   # stream_id -> records of it dead-lettered
        # how acknowledgements, failures and flushes settle records: at least once, or transactions
        self._delivery = Transactional(self) if cfg.exactly_once else AtLeastOnce(self)
        self._where = f"kafka {redact(cfg.bootstrap)}"
        self._closed = False
        self._pem_dir: str | None = None      # set by connect() when it wrote shipped PEM files
        # the broker's silence (see _silence_start): when it last acknowledged anything (set by a callback
        # on kafka-python's I/O thread), and the first send since then that was never acknowledged
        self._last_ack = time.monotonic()
        self._acked_sent_at = self._last_ack   # when the newest acknowledged record was sent
        self._lost_at: float | None = None
        self._delivery.begin()

    @classmethod
    def connect(cls, cfg: KafkaConfig) -> "KafkaSink":
        """Build the producer (asks the broker for its version unless ``api_version`` is set).

        Raises SinkError naming the bootstrap address when no broker answers in ``connect_timeout_s``.
        """
        guard_loggers("kafka", cfg.secrets())
        cfg, pem_dir = local_pem(cfg)
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
        guard_loggers("kafka", cfg.secrets())     # loggers created while connecting
        dead_letter = DeadLetter.beside(cfg.dead_letter_dir, "kafka", cfg.run_id) if cfg.dead_letter_dir else None
        sink = cls(producer, cfg, dead_letter=dead_letter)
        sink._pem_dir = pem_dir
        # every topic exists once a run has started, also those of kinds nothing is found of
        sink._ensure_topics(list(sink._topic_of.values()))
        # and the producer knows their partitions now, while the broker answers: a send to a topic it
        # has no metadata for would wait max_block_s for it, per topic, once the broker stops answering
        for topic in sink._topic_of.values():
            sink._refresh_partitions(topic)
        return sink

    @property
    def pending(self) -> int:
        """Records sent but not yet acknowledged (at most ``buffer_max_records``)."""
        return len(self._pending)

    def health(self) -> KafkaHealth:
        """The broker's state as this sink sees it. Reads counters only: safe to call from another
        thread while a ``flush`` waits (the sink actor answers it between deliveries' waits)."""
        now = time.monotonic()
        silent = self._silence_start()
        waiting = len(self._pending)
        down = silent is not None and now - silent >= self.cfg.down_after_s
        since = None
        if down:
            since = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(seconds=now - silent)
        return KafkaHealth(where=self._where, up=not down, down_since=since, waiting=waiting,
                           dead_lettered=self.stats.dead_lettered, dropped=self.stats.dropped,
                           unreachable=self._unreachable(now),
                           dead_letter_path=str(self._dead_letter.path) if self._dead_letter else None)

    # -- Sink -----------------------------------------------------------------------------------

    def write(self, records: Sequence[Record]) -> None:
        """Queue records for sending; blocks (archive, at most until the oldest waiting record's
        deadline) or drops (live) when the buffer is full."""
        if self._closed:
            raise SinkError(f"{self._where}: write after close")
        stuck = self._delivery.stuck
        if stuck:
            self._dead([(rec, self._topic_of[rec.kind], stuck) for rec in records])
            return
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
                    if "Timeout" in reason:
                        # the broker did not answer within max_block_s: the other topics would wait as
                        # long each, so this write gives up on all of them
                        unavailable.update({t: reason for t in self._topic_of.values()})
                    continue
            reason = self._send(rec, topic, 0, time.monotonic())
            if reason:
                failed.append((rec, topic, reason))
                unavailable[topic] = reason
        if failed:
            self._dead(failed)
        self._reap(block=False)

    def flush(self) -> None:
        """Wait until every queued record is acknowledged or dead-lettered (counted); never longer
        than the oldest record's deadline (``ack_timeout_s`` after its first send).

        Live mode waits at most ``live_flush_s``: a live run keeps going while the broker is away
        (what stays unacknowledged is bounded by ``buffer_max_records``; ``close`` settles it).
        Exactly-once mode: commits the open transaction (or aborts it and dead-letters its records
        when any of them failed). Raises SinkError when failed records have no dead-letter file.
        """
        self._flush(wait=not self.cfg.live)

    def _flush(self, wait: bool, stop_at: float | None = None) -> None:
        """``stop_at`` (monotonic): whatever is still unacknowledged then is dead-lettered.

        Waits on each record's future with its own deadline; not ``KafkaProducer.flush(timeout)``,
        which waits up to ``timeout`` per batch (so some multiple of it) and, without a timeout, for
        ever once the producer stopped expiring batches."""
        if wait:
            self._reap(block=True, stop_at=stop_at)
        else:
            # live: wait a moment for acknowledgements, dead-letter only what is past its deadline
            self._reap(block=True, stop_at=time.monotonic() + self.cfg.live_flush_s, give_up_at_stop=False)
        self._delivery.end(stop_at)

    def commit_input(self, input_key: str) -> None:
        """Flush; raise SinkError if any record of input ``input_key`` (stream_id) was dead-lettered,
        so that the input is not marked done anywhere and a re-run sends it again. Always waits for
        every acknowledgement (also in live mode), within the records' deadlines."""
        self._flush(wait=True)
        lost = self._failed_inputs.get(input_key)
        if lost:
            silent = self._silence_start()
            down = f"; nothing acknowledged for {time.monotonic() - silent:.0f} s" if silent is not None else ""
            raise SinkError(f"{self._where}: records of input {redact(input_key)} could not be delivered: {lost} "
                            f"dead-lettered{down} (in {self._dead_letter.path if self._dead_letter else 'nowhere'})")

    def abort(self) -> None:
        """Exactly-once mode: drop the open transaction; consumers reading committed data never see it."""
        self._delivery.abort()

    def close(self, timeout_s: float | None = None) -> None:
        """Flush and release the producer, within ``timeout_s`` (default ``close_timeout_s``):
        records still unacknowledged then are dead-lettered, never left nowhere."""
        if self._closed:
            return
        timeout_s = self.cfg.close_timeout_s if timeout_s is None else max(0.0, timeout_s)
        stop_at = time.monotonic() + timeout_s
        try:
            self._flush(wait=True, stop_at=stop_at)
        finally:
            self._closed = True
            self._close_producer(max(0.0, stop_at - time.monotonic()))
            if self._pem_dir:
                shutil.rmtree(self._pem_dir, ignore_errors=True)

    def _close_producer(self, timeout_s: float) -> None:
        try:
            self._producer.close(timeout=timeout_s)
        except KafkaError:
            # batches still queued (their records are dead-lettered already): kafka-python's close
            # gives up at its flush and leaves its I/O thread retrying; stop that thread
            sender = getattr(self._producer, "_sender", None)
            if sender is not None and hasattr(sender, "force_close"):
                try:
                    sender.force_close()
                except Exception:  # noqa: BLE001  (best effort: the thread is a daemon anyway)
                    pass

    # -- internals ------------------------------------------------------------------------------

    def _acked(self, sent_at: float, _metadata) -> None:
        """Callback of every successful send, on kafka-python's I/O thread. It may run a moment after
        the waiting thread saw the future done and sent more, so whether a lost record came after the
        broker's last answer is decided by send times (``_acked_sent_at``), not by when this ran."""
        self._last_ack = time.monotonic()
        self._acked_sent_at = max(self._acked_sent_at, sent_at)

    def _silence_start(self) -> float | None:
        """Monotonic time since which records have waited and nothing was acknowledged, or None when
        nothing waits unanswered. A record dead-lettered unanswered keeps the silence going until
        the broker acknowledges something again."""
        start = None
        try:
            start = self._pending[0][4]
        except IndexError:
            pass
        lost = self._lost_at
        if lost is not None and lost >= self._acked_sent_at:
            start = lost if start is None else min(start, lost)
        return None if start is None else max(start, self._last_ack)

    def _unreachable(self, now: float) -> bool:
        silent = self._silence_start()
        return silent is not None and now - silent >= self.cfg.ack_deadline_s

    def _due(self, sent_at: float) -> float:
        """Monotonic time by which a record first sent at ``sent_at`` is acknowledged or dead-lettered:
        ``ack_deadline_s`` after that, and at most ``unreachable_wait_s`` after the broker has been
        silent for ``ack_deadline_s``."""
        due = sent_at + self.cfg.ack_deadline_s
        silent = self._silence_start()
        if silent is not None:
            due = min(due, max(sent_at, silent + self.cfg.ack_deadline_s) + self.cfg.unreachable_wait_s)
        return due

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

    def _send(self, rec: Record, topic: str, sends: int, sent_at: float) -> str | None:
        """Queue one record; returns why it could not even be queued (None: queued)."""
        try:
            key = rec.stream_id.encode("utf-8")
            future = self._producer.send(topic, value=to_json(rec), key=key, headers=self._headers,
                                         partition=self._partition(topic, key))
        except KafkaError as e:
            return f"send failed: {type(e).__name__}: {e}"
        future.add_callback(functools.partial(self._acked, sent_at))
        self._pending.append((future, rec, topic, sends + 1, sent_at))
        self._delivery.queued(rec, topic)
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

    def _reap(self, block: bool, until: int = 0, stop_at: float | None = None, give_up_at_stop: bool = True) -> None:
        """Settle finished sends, oldest first, and dead-letter those past their deadline (:meth:`_due`).

        ``block``: wait until at most ``until`` records are pending, each at most until its deadline
        and all of them at most until ``stop_at`` (monotonic); at ``stop_at`` what is still
        unacknowledged is dead-lettered too, unless ``give_up_at_stop`` is False (then it stays queued).
        """
        failed: list = []
        pending = self._pending
        delivery = self._delivery
        while len(pending) > (until if block else 0):
            future, rec, topic, sends, sent_at = pending[0]
            while not future.is_done:
                now = time.monotonic()
                limit = self._due(sent_at) if stop_at is None else min(self._due(sent_at), stop_at)
                if not block or now >= limit:
                    break
                try:
                    # at most a second at a time: an acknowledgement of another record moves the deadline
                    future.get(timeout=min(limit - now, 1.0))
                except Exception:   # noqa: BLE001  (the failure is read from the future below)
                    pass
            if not future.is_done:
                now = time.monotonic()
                if now < self._due(sent_at) and not (give_up_at_stop and stop_at is not None and now >= stop_at):
                    break           # it still has time
                pending.popleft()
                self._lost(sent_at)
                why = f"not acknowledged within {now - sent_at:.0f} s (broker down or too slow)"
                delivery.unacknowledged(rec, topic, why, failed)
                continue
            pending.popleft()
            delivery.settled(future, rec, topic, sends, sent_at, failed)
        if failed:
            self._dead(failed)

    def _lost(self, sent_at: float) -> None:
        """A record sent at ``sent_at`` was never acknowledged: the silence goes on until an acknowledgement."""
        if self._lost_at is None or self._lost_at < self._acked_sent_at:
            self._lost_at = sent_at
        else:
            self._lost_at = min(self._lost_at, sent_at)

    def _drop(self, rec: Record) -> None:
        self.stats.dropped += 1
        if self.stats.dropped == 1 or self.stats.dropped % 1000 == 0:
            log.warning("%s: buffer full (%d unacknowledged records, broker slow or down): %d live "
                        "records dropped so far", self._where, len(self._pending), self.stats.dropped)

    def _dead(self, failures: list[tuple[Record, str, str]]) -> None:
        for rec, _topic, _reason in failures:
            self._failed_inputs[rec.stream_id] += 1
        reason = redact(failures[0][2])
        msg = f"{self._where}: {len(failures)} records failed permanently (first: {reason})"
        if len(self.stats.errors) < MAX_ERRORS_KEPT:    # a long outage must not grow memory without bound
            self.stats.errors.append(msg)
        if self._dead_letter is None:
            log.error("%s; no dead_letter_dir configured", msg)
            raise SinkError(f"{msg}; no dead_letter_dir configured, records lost")
        self._dead_letter.add(failures, sink="kafka")
        self.stats.dead_lettered += len(failures)
        log.error("%s; written to %s", msg, self._dead_letter.path)
