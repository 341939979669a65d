"""Bounded purges: old rows are deleted a batch at a time, never by one unbounded DELETE.

One ``DELETE`` of a whole backlog (an outbox after a week without housekeeping, a sync log of
millions of rows) holds its locks and its WAL until the end and can stall the writers it shares
the table with; a batch of ``PURGE_BATCH_SIZE`` rows per statement and transaction keeps each step
short, and a purge interrupted half-way has still done its part.
"""

from django.db import transaction

PURGE_BATCH_SIZE = 1000


def purge_in_batches(queryset, *, batch_size=None, before_delete=None):
    """Delete the rows of ``queryset`` in primary-key order, ``batch_size`` (PURGE_BATCH_SIZE) per transaction.

    ``before_delete(pks)``, when given, runs in each batch's transaction before its delete (e.g.
    to record how far the purge got, atomically with it). Returns how many rows were deleted.
    """
    batch_size = batch_size or PURGE_BATCH_SIZE
    deleted = 0
    while True:
        with transaction.atomic():
            pks = list(queryset.order_by("pk").values_list("pk", flat=True)[:batch_size])
            if not pks:
                return deleted
            if before_delete is not None:
                before_delete(pks)
            count, _ = queryset.model._base_manager.filter(pk__in=pks).delete()
        deleted += count
        if len(pks) < batch_size:
            return deleted
