"""The services' events reach Kafka: the wiring of tests/tasks/test_services.py end to end.

These tests change tasks through the service layer, let a real relay publish the outbox to the
real broker, and read the topics back: event types per topic, every field valid against the
published JSON Schema, key = task_id, headers event_type/event_id, order per task; and a change
that rolled back is nowhere on the topics. Which events each operation emits is checked at the
outbox rows, without a broker, by tests/tasks/test_services.py.
"""

from collections import defaultdict
from datetime import timedelta

import jsonschema
import pytest
from django.db import transaction

from events.models import OutboxEvent
from events.schemas import json_schema
from tasks import services
from tasks.events import reminder_id
from testing.kafka import TopicReader, read_events
from tests.tasks.test_services import CONTEXT, SOON, types, user  # noqa: F401 (user is a fixture)

pytestmark = pytest.mark.django_db(transaction=True)

def published(task_id):
    """What Kafka holds for one task: {topic: [event, ...]} in partition order, after checking each message."""
    event_ids = list(OutboxEvent.objects.filter(key=str(task_id)).values_list("event_id", flat=True))
    assert event_ids, "the operation wrote nothing to the outbox"
    by_topic = defaultdict(list)
    for message in read_events(event_ids):
        event = message.event
        jsonschema.Draft202012Validator(json_schema(message.topic), format_checker=jsonschema.FormatChecker()).validate(
            event
        )
        assert message.key == str(task_id)
        assert message.headers == {"event_type": event["event_type"], "event_id": event["event_id"]}
        assert event["metadata"] == {"source": CONTEXT.source, "correlation_id": CONTEXT.correlation_id}
        by_topic[message.topic].append(event)
    return by_topic


def test_create_emits_task_created_reminder_scheduled_and_a_created_sync_event(user, outbox_relay):
    task = services.task_create(
        user=user, context=CONTEXT, title="Buy milk", due_date=SOON, remind_at=SOON - timedelta(hours=1),
        tags=["shopping"], priority=2,
    )
    events = published(task.id)
    assert types(events["task-events"]) == ["task.created"]
    created = events["task-events"][0]["data"]
    assert created["task_id"] == str(task.id) and created["version"] == 1 and created["user_id"] == str(user.id)
    assert created["title"] == "Buy milk" and created["tags"] == ["shopping"] and created["priority"] == 2
    assert created["due_date"] == SOON.isoformat().replace("+00:00", "Z")
    assert types(events["reminders"]) == ["reminder.scheduled"]
    assert events["reminders"][0]["data"]["reminder_id"] == reminder_id(task.id, task.remind_at)
    [sync] = events["task-updates"]
    assert sync["data"]["change_type"] == "created" and sync["data"]["task"]["id"] == str(task.id)


def test_a_transaction_that_rolls_back_emits_nothing(user, outbox_relay):
    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        with transaction.atomic():
            doomed = services.task_create(user=user, context=CONTEXT, title="Never", due_date=SOON, remind_at=SOON)
            raise Abort
    assert not OutboxEvent.objects.filter(key=str(doomed.id)).exists()
    # A later committed change has reached Kafka; the rolled-back one is nowhere on it.
    sentinel = services.task_create(user=user, context=CONTEXT, title="Committed")
    published(sentinel.id)
    reader = TopicReader(["task-events", "reminders", "task-updates"])
    try:
        received = reader.read_until(lambda got: any(m.key == str(sentinel.id) for m in got), timeout=60)
    finally:
        reader.close()
    assert not [m for m in received if m.key == str(doomed.id)]
