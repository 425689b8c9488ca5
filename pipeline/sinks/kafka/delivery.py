"""How the Kafka sink settles records: at least once, or in transactions (exactly once).

The sink sends every record and waits on its future (:meth:`KafkaSink._reap`); what an
acknowledgement, a failure or a missed deadline then means is the strategy's:

* :class:`AtLeastOnce` (the default): each record on its own. Acknowledged: counted. A retriable
  failure in archive mode is sent again (at most ``resend_attempts`` times, within the record's
  deadline); anything else is dead-lettered. A dead-lettered record may still reach Kafka later,
  with the same ``record_id``.
* :class:`Transactional` (``exactly_once=True``): the records between two flushes form one
  transaction. Each ``flush`` commits it and counts its records; when any of them failed or missed
  its deadline, it is aborted and all its records are dead-lettered, so a consumer reading committed
  data sees each record once. Transaction calls (kafka-python waits on them without a timeout) run
  with a deadline; one that overruns it leaves the producer *stuck*, and every later record is
  dead-lettered.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from kafka.errors import KafkaError, KafkaTimeoutError

from pipeline.errors import SinkError
from pipeline.records import Record

if TYPE_CHECKING:
    from pipeline.sinks.kafka.sink import KafkaSink

Failure = tuple[Record, str, str]        # (record, topic, why): what goes to the dead-letter file


class AtLeastOnce:
    """Each record settles on its own (see the module docstring)."""

    stuck: str | None = None        # never: nothing here can hang

    def __init__(self, sink: "KafkaSink"):
        self.sink = sink

    def begin(self) -> None:
        """The producer is connected."""

    def queued(self, rec: Record, topic: str) -> None:
        """A record was handed to the producer."""

    def unacknowledged(self, rec: Record, topic: str, why: str, failed: list[Failure]) -> None:
        """A record passed its deadline unacknowledged: dead-lettered."""
        failed.append((rec, topic, why))

    def settled(self, future, rec: Record, topic: str, sends: int, sent_at: float, failed: list[Failure]) -> None:
        """A record's future is done: count it, send it again or add it to ``failed``."""
        sink = self.sink
        if future.succeeded():
            sink.stats.written[rec.kind] += 1
            return
        exc = future.exception
        if isinstance(exc, KafkaTimeoutError):
            sink._lost(sent_at)
        # a resend keeps the record's deadline: kafka-python expiring it means the time is up
        cfg = sink.cfg
        if (not cfg.live and sends <= cfg.resend_attempts and getattr(exc, "retriable", False)
                and not isinstance(exc, KafkaTimeoutError)
                and time.monotonic() < sink._due(sent_at)):
            sink.log.warning("%s: %s record %s failed (%s); sending again", sink._where, topic, rec.record_id, exc)
            reason = sink._send(rec, topic, sends, sent_at)
            if reason:
                failed.append((rec, topic, reason))
        else:
            failed.append((rec, topic, f"{type(exc).__name__}: {exc}"))

    def end(self, stop_at: float | None = None) -> None:
        """A flush settled what it waits for."""

    def abort(self) -> None:
        raise SinkError(f"{self.sink._where}: abort needs exactly_once=True")


class Transactional:
    """Records between two flushes form one transaction (see the module docstring)."""

    def __init__(self, sink: "KafkaSink"):
        self.sink = sink
        self.txn: list[tuple[Record, str]] = []     # records of the open transaction
        self.error: Exception | None = None          # why the open transaction must be aborted
        self.stuck: str | None = None                # a transaction call overran its deadline

    def begin(self) -> None:
        producer = self.sink._producer
        producer.init_transactions()
        producer.begin_transaction()

    def queued(self, rec: Record, topic: str) -> None:
        self.txn.append((rec, topic))

    def unacknowledged(self, rec: Record, topic: str, why: str, failed: list[Failure]) -> None:
        """The whole transaction is aborted and dead-lettered."""
        self.error = KafkaTimeoutError(why)

    def settled(self, future, rec: Record, topic: str, sends: int, sent_at: float, failed: list[Failure]) -> None:
        """Counted (or dead-lettered) when the transaction ends."""
        if future.failed():
            self.error = future.exception

    def abort(self) -> None:
        """Drop the open transaction; consumers reading committed data never see it."""
        sink = self.sink
        sink._reap(block=True)
        self.txn, self.error = [], None
        if not self._within(sink._producer.abort_transaction, sink.cfg.ack_deadline_s, "abort_transaction"):
            return
        sink._producer.begin_transaction()

    def end(self, stop_at: float | None = None) -> None:
        """Commit the open transaction and count its records, or abort it and dead-letter them."""
        sink = self.sink
        txn, self.txn = self.txn, []
        error, self.error = self.error, None
        if not txn:
            return
        timeout = sink.cfg.ack_deadline_s if stop_at is None else max(0.0, stop_at - time.monotonic())
        producer = sink._producer
        try:
            if error is not None:
                raise error
            if self.stuck or not self._within(producer.commit_transaction, timeout, "commit_transaction"):
                sink._dead([(r, t, self.stuck) for r, t in txn])
                return
        except KafkaError as e:
            try:
                if self._within(producer.abort_transaction, timeout, "abort_transaction"):
                    producer.begin_transaction()
            except KafkaError as abort_error:
                self.stuck = f"transaction could not be aborted: {type(abort_error).__name__}: {abort_error}"
            sink._dead([(r, t, f"transaction aborted: {type(e).__name__}: {e}") for r, t in txn])
            return
        producer.begin_transaction()
        for rec, _topic in txn:
            sink.stats.written[rec.kind] += 1

    def _within(self, call, timeout_s: float, what: str) -> bool:
        """Run a transaction call (kafka-python waits on those without a timeout) for at most
        ``timeout_s``. Past it the producer counts as stuck: every later record is dead-lettered."""
        box: list = []

        def run():
            try:
                call()
                box.append(None)
            except BaseException as e:  # noqa: BLE001  (re-raised in the caller's thread)
                box.append(e)

        t = threading.Thread(target=run, name=f"avgrid-kafka-{what}", daemon=True)
        t.start()
        t.join(max(0.0, timeout_s))
        if not box:
            self.stuck = f"transactional producer stuck: {what} not answered within {timeout_s:.0f} s"
            self.sink.log.error("%s: %s", self.sink._where, self.stuck)
            return False
        if box[0] is not None:
            raise box[0]
        return True
