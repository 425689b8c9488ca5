"""A fix for kafka-python's idempotent producer, applied once per process by the sink."""

from __future__ import annotations


def fix_idempotent_reset() -> bool:
    """Make kafka-python's idempotent producer recover after it expired a batch it had sent.

    kafka-python 3.0.x resets the producer id then (``TransactionManager.reset_producer_id``) but,
    unlike the Java client (KAFKA-7737: ``transitionTo(UNINITIALIZED)``), leaves the manager READY,
    so no new InitProducerId request is ever made and the producer sends nothing again, even once
    the broker is back (measured: a broker SIGSTOPped past the delivery timeout, then resumed; not
    one record delivered in 210 s). This puts the manager back in UNINITIALIZED, as Java does.
    Applied once per process; returns False where kafka-python has no such method (nothing done).
    """
    try:
        from kafka.producer import transaction_manager as tm
        cls, uninitialized = tm.TransactionManager, tm.TransactionState.UNINITIALIZED
        original = cls.reset_producer_id
    except (ImportError, AttributeError):
        return False
    if getattr(original, "_avgrid_fixed", False):
        return True

    def reset_producer_id(self):
        original(self)
        with self._lock:
            if not self.is_transactional():
                self._current_state = uninitialized

    reset_producer_id._avgrid_fixed = True
    cls.reset_producer_id = reset_producer_id
    return True

