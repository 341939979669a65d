"""The transactional outbox: the one way anything in the system publishes an event.

``emit`` writes the event into ``OutboxEvent`` inside the caller's transaction, so the event
exists if and only if the change it describes committed. The writer is the OUTBOX_WRITER
setting (``write_rows``); only the benchmarks select another, for their baselines
(bench/outbox_writers.py), so the write path itself knows nothing of them. ``relay_outbox`` (events/relay/)
then publishes committed rows to Kafka in ``id`` order; a trigger (migration 0002) NOTIFYs it
at commit. ``retry_parked`` un-parks rows the relay parked (the command and the admin action).
"""

import json
import uuid
from datetime import timedelta
from functools import lru_cache

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django.utils.module_loading import import_string

from events.debezium import replication_slot
from events.models import OutboxEvent
from events.retention import purge_in_batches
from events.schemas import topic_of, validate_event

NOTIFY_CHANNEL = "outbox"
# The largest event the outbox takes (CONTRACT.md section 7), as UTF-8 wire JSON: far above any
# task within its field limits, and well below what the brokers accept (message.max.bytes, 1 MB).
MAX_EVENT_BYTES = 512 * 1024


class NotInTransaction(RuntimeError):
    """emit() outside transaction.atomic(): the event could outlive a change that rolls back."""


class EventTooLarge(ValueError):
    """An event whose wire JSON exceeds MAX_EVENT_BYTES: the change it describes must fail, since
    nothing that large may reach the outbox (Kafka would refuse it for good)."""


# One encoder for every event: json.dumps with options builds a new one per call (a sixth of the cost).
_WIRE_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def serialise(event):
    """The exact bytes that go on the wire (compact UTF-8 JSON)."""
    return _WIRE_ENCODER.encode(event)


def emit(event, *, key):
    """Store ``event`` for publication with Kafka key ``key`` (the task id), in the current transaction.

    Raises InvalidEvent when the event breaks its schema (a bug in the producer: it must fail
    the change, not put a bad message on Kafka), EventTooLarge when its wire JSON exceeds
    MAX_EVENT_BYTES, and NotInTransaction outside ``atomic()``.

    Per-key order on Kafka is the order of outbox ids, so two transactions emitting for the
    same key must not overlap: lock the aggregate's row first (the task services do), and the
    later transaction's rows get larger ids and commit after the earlier ones.
    """
    return emit_all([(event, key)])[0]


def emit_all(keyed_events):
    """``emit`` for a sequence of ``(event, key)`` pairs; returns one item per event (its row)."""
    return outbox_writer(settings.OUTBOX_WRITER)(keyed_events)


@lru_cache
def outbox_writer(dotted_path):
    """The function that OUTBOX_WRITER names: ``writer([(event, key), ...]) -> [row, ...]``."""
    return import_string(dotted_path)


def write_rows(keyed_events):
    """The outbox writer: the events' rows in one INSERT, ids in their order (see ``emit``).

    Each event is encoded once: its wire JSON (``serialise``) goes into the statement's one JSON
    parameter as it is, and PostgreSQL stores that text verbatim (a ``json`` value keeps its text;
    ``jsonb`` would not). Wrapping it as a string of a JSON document instead, as
    ``events.bulk.bulk_insert`` does with a text column, encodes it a second time, escaping each
    of its quotes; with the model instances built for that insert it cost as much as the
    serialising itself (the profile of tasks.services.task_create_many in the report of issue #14)."""
    if not connection.in_atomic_block:
        raise NotInTransaction("emit() must run inside transaction.atomic() with the change it describes")
    entries, rows = [], []
    for event, key in keyed_events:
        validate_event(event)
        payload = serialise(event)
        size = len(payload.encode())
        if size > MAX_EVENT_BYTES:
            raise EventTooLarge(
                f"The {event['event_type']} event would be {size} bytes; events are limited to {MAX_EVENT_BYTES} bytes."
            )
        row = (uuid.UUID(event["event_id"]), event["event_type"], topic_of(event["event_type"]), str(key), payload)
        columns = json.dumps(dict(zip(_ENTRY_COLUMNS, (str(row[0]), *row[1:4]))))
        entries.append(f'{columns[:-1]},"payload":{payload}}}')  # the payload spliced in as JSON, not as a string
        rows.append(row)
    if not rows:
        return []
    created_at = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(), [created_at, f"[{','.join(entries)}]"])
        ids = [key for (key,) in cursor.fetchall()]
    return [
        OutboxEvent.from_db(connection.alias, _ROW_FIELDS, (row_id, *row, created_at, None, None, ""))
        for row_id, row in zip(ids, rows)
    ]


# The columns of an outbox row as write_rows fills them: the entry's, then the payload, the
# creation time and the relay's columns, empty (the order of ``_ROW_FIELDS``).
_ENTRY_COLUMNS = ("event_id", "event_type", "topic", "key")
_ROW_FIELDS = ("id", *_ENTRY_COLUMNS, "payload", "created_at", "sent_at", "parked_at", "park_reason")


@lru_cache
def _insert_sql():
    return (
        f"INSERT INTO {connection.ops.quote_name(OutboxEvent._meta.db_table)} "
        f"({', '.join(_ENTRY_COLUMNS)}, payload, created_at, park_reason) "
        f"SELECT {', '.join(_ENTRY_COLUMNS)}, payload::text, %s, '' "
        "FROM json_to_recordset(%s::json) AS entry(event_id uuid, event_type text, topic text, key text, payload json) "
        "RETURNING id"
    )


def purge_sent(older_than=timedelta(days=1)):
    """Delete rows Kafka confirmed more than ``older_than`` ago, in bounded batches; return how many.

    With OUTBOX_PUBLISHER=debezium nobody sets ``sent_at``: the published position is Connect's
    (the replication slot's), and once the slot exists it holds every later insert in its WAL, so
    the connector needs no row of the table any more. Rows are then purged by age. Without the slot
    (the connector never started) only the rows a relay sent go: the connector's first snapshot
    still has the others to publish.
    """
    cutoff = timezone.now() - older_than
    if settings.OUTBOX_PUBLISHER == "debezium" and replication_slot() is not None:
        return purge_in_batches(OutboxEvent.objects.filter(created_at__lt=cutoff))
    return purge_in_batches(OutboxEvent.objects.filter(sent_at__lt=cutoff))


def retry_parked(rows):
    """Un-park the parked rows among ``rows`` (a queryset) and wake the relay; return how many.

    The relay then publishes them and the rows held behind them, in per-key order.
    """
    count = rows.parked().update(parked_at=None)
    if count:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [NOTIFY_CHANNEL])
    return count
