"""emit() writes an event into the outbox inside the change's transaction, and wakes the relay at commit."""

import json
import uuid
from datetime import timedelta

import psycopg
import pytest
from django.db import connection, transaction
from django.forms.models import model_to_dict
from django.utils import timezone

from events.models import OutboxEvent
from events.outbox import (
    MAX_EVENT_BYTES,
    NOTIFY_CHANNEL,
    EventTooLarge,
    NotInTransaction,
    emit,
    emit_all,
    purge_sent,
    serialise,
)
from events.schemas import InvalidEvent, make_event

TASK_ID = str(uuid.uuid4())


def reminder(**data):
    return make_event(
        "reminder.scheduled",
        {"reminder_id": str(uuid.uuid4()), "task_id": TASK_ID, "title": "Tée ☕", "due_at": None,
         "remind_at": "2030-01-01T00:00:00Z", "user_id": "7", **data},
        source="todo-api", correlation_id="c-1",
    )


@pytest.mark.django_db
def test_emit_stores_the_exact_wire_json_with_topic_type_and_key():
    event = reminder()
    with transaction.atomic():
        row = emit(event, key=TASK_ID)
    row.refresh_from_db()
    assert (row.topic, row.event_type, row.key, str(row.event_id)) == (
        "reminders", "reminder.scheduled", TASK_ID, event["event_id"]
    )
    assert row.payload == serialise(event) and json.loads(row.payload) == event
    assert "Tée ☕" in row.payload  # UTF-8 on the wire, not \\u escapes
    assert row.sent_at is None


@pytest.mark.django_db
def test_the_rows_emit_all_returns_are_the_rows_stored_in_the_order_of_their_events():
    events = [reminder(title=f"n\u00b0{n} \"quoted\"") for n in range(3)]
    with transaction.atomic():
        rows = emit_all([(event, TASK_ID) for event in events])
    stored = OutboxEvent.objects.order_by("id")
    assert [model_to_dict(row) for row in rows] == [model_to_dict(row) for row in stored]
    assert [row.created_at for row in rows] == [row.created_at for row in stored]  # not editable: not in the dict
    assert [json.loads(row.payload) for row in stored] == events


@pytest.mark.django_db(transaction=True)
def test_emit_outside_a_transaction_fails_loudly_and_writes_nothing():
    assert not connection.in_atomic_block
    with pytest.raises(NotInTransaction):
        emit(reminder(), key=TASK_ID)
    assert not OutboxEvent.objects.exists()


@pytest.mark.django_db
def test_an_event_that_breaks_its_schema_is_refused():
    with pytest.raises(InvalidEvent, match="remind_at"):
        with transaction.atomic():
            emit(reminder(remind_at=None), key=TASK_ID)
    assert not OutboxEvent.objects.exists()


@pytest.mark.django_db
def test_an_event_over_512_kib_of_wire_json_is_refused_and_nothing_of_its_batch_is_stored():
    # reminder titles have no length limit in the schema: the size limit is the last line of defence
    fitting, too_large = reminder(), reminder(title="€" * (MAX_EVENT_BYTES // 3))  # 3 bytes each in UTF-8
    assert MAX_EVENT_BYTES == 512 * 1024 and len(serialise(too_large)) < MAX_EVENT_BYTES < len(serialise(too_large).encode())
    with pytest.raises(EventTooLarge, match=f"limited to {MAX_EVENT_BYTES} bytes"):
        with transaction.atomic():
            emit_all([(fitting, TASK_ID), (too_large, TASK_ID)])
    assert not OutboxEvent.objects.exists()


def listen():
    params = connection.get_connection_params()
    listener = psycopg.connect(**params, autocommit=True)
    listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
    return listener


def notifications(listener, timeout):
    return list(listener.notifies(timeout=timeout, stop_after=1))


@pytest.mark.django_db(transaction=True)
def test_the_relay_is_notified_at_commit_and_never_for_a_rollback():
    listener = listen()
    try:
        with transaction.atomic():
            emit(reminder(), key=TASK_ID)
            emit(reminder(), key=TASK_ID)
            assert notifications(listener, timeout=0.5) == []  # not before commit
        assert len(notifications(listener, timeout=5)) == 1  # one wake-up per transaction

        with pytest.raises(RuntimeError):
            with transaction.atomic():
                emit(reminder(), key=TASK_ID)
                raise RuntimeError("roll back")
        assert notifications(listener, timeout=1) == []
    finally:
        listener.close()


@pytest.mark.django_db
def test_purge_deletes_only_rows_sent_long_enough_ago():
    with transaction.atomic():
        old, recent, unsent = (emit(reminder(), key=TASK_ID) for _ in range(3))
    now = timezone.now()
    OutboxEvent.objects.filter(pk=old.pk).update(sent_at=now - timedelta(days=2))
    OutboxEvent.objects.filter(pk=recent.pk).update(sent_at=now - timedelta(minutes=5))
    assert purge_sent(older_than=timedelta(days=1)) == 1
    assert set(OutboxEvent.objects.values_list("pk", flat=True)) == {recent.pk, unsent.pk}
