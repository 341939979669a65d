"""Step 2 of processing: the idempotency record, written in the transaction of the effects.

A consumer group records each event id it handles in ``events.ProcessedEvent`` in the same
transaction as the handler's effects; an event whose row already exists was processed before (a
redelivery) and its handler is not run again: every effect happens once.
"""

from datetime import UTC, datetime

from django.db import connection

from events.models import ProcessedEvent


def record_processed(group, event_ids):
    """Record the events as processed by ``group``; return the ids not recorded before."""
    if not event_ids:
        return set()
    table = connection.ops.quote_name(ProcessedEvent._meta.db_table)
    now = datetime.now(UTC)
    rows = ", ".join(["(%s, %s, %s)"] * len(event_ids))
    params = [value for event_id in event_ids for value in (group, event_id, now)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (consumer_group, event_id, processed_at) VALUES {rows} "
            "ON CONFLICT DO NOTHING RETURNING event_id",
            params,
        )
        return {str(row[0]) for row in cursor.fetchall()}
