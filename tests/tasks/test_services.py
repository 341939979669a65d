"""Each task operation emits exactly the events of CONTRACT.md section 4, and they reach Kafka.

These tests change tasks through the service layer, let a real relay publish the outbox to the
real broker, and read the topics back: event types per topic, every field valid against the
published JSON Schema, key = task_id, headers event_type/event_id, order per task.
"""

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import jsonschema
import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from events.models import OutboxEvent
from events.schemas import json_schema
from tasks import services
from tasks.events import EventContext, reminder_id
from tasks.models import Task, User
from testing.kafka import TopicReader, read_events

pytestmark = pytest.mark.django_db(transaction=True)

CONTEXT = EventContext(source="todo-api", correlation_id="req-services-1")
SOON = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)


@pytest.fixture
def user(transactional_db):
    return User.objects.create_user("alice", password="x", timezone="Europe/Paris")


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


def types(events):
    return [event["event_type"] for event in events]


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


def test_create_without_remind_at_schedules_no_reminder(user, outbox_relay):
    task = services.task_create(user=user, context=CONTEXT, title="No reminder")
    events = published(task.id)
    assert types(events["task-events"]) == ["task.created"]
    assert "reminders" not in events
    assert types(events["task-updates"]) == ["sync.task_changed"]


def test_moving_remind_at_cancels_the_old_reminder_and_schedules_the_new_one(user, outbox_relay):
    old = SOON - timedelta(hours=1)
    task = services.task_create(user=user, context=CONTEXT, title="Dentist", due_date=SOON, remind_at=old)
    new = SOON - timedelta(hours=2)
    task = services.task_update(task=task, context=CONTEXT, remind_at=new)
    assert task.version == 2
    events = published(task.id)
    assert types(events["task-events"]) == ["task.created", "task.updated"]
    assert [e["data"]["version"] for e in events["task-events"]] == [1, 2]
    assert types(events["reminders"]) == ["reminder.scheduled", "reminder.cancelled", "reminder.scheduled"]
    assert [e["data"]["reminder_id"] for e in events["reminders"]] == [
        reminder_id(task.id, old), reminder_id(task.id, old), reminder_id(task.id, new),
    ]
    assert [e["data"]["change_type"] for e in events["task-updates"]] == ["created", "updated"]


def test_clearing_remind_at_only_cancels_and_a_title_change_leaves_reminders_alone(user, outbox_relay):
    task = services.task_create(user=user, context=CONTEXT, title="Call", due_date=SOON, remind_at=SOON)
    task = services.task_update(task=task, context=CONTEXT, title="Call mum")
    task = services.task_update(task=task, context=CONTEXT, remind_at=None)
    events = published(task.id)
    assert types(events["task-events"]) == ["task.created", "task.updated", "task.updated"]
    assert types(events["reminders"]) == ["reminder.scheduled", "reminder.cancelled"]
    assert task.version == 3


def test_an_update_that_changes_nothing_is_no_new_version_and_no_event(user, outbox_relay):
    task = services.task_create(user=user, context=CONTEXT, title="Same", priority=3)
    task = services.task_update(task=task, context=CONTEXT, title="Same", priority=3)
    assert task.version == 1
    assert OutboxEvent.objects.filter(key=str(task.id)).count() == 2  # task.created + sync created


def test_complete_emits_task_completed_and_cancels_the_pending_reminder_once(user, outbox_relay):
    task = services.task_create(user=user, context=CONTEXT, title="Pay rent", due_date=SOON, remind_at=SOON)
    task = services.task_complete(task=task, context=CONTEXT)
    again = services.task_complete(task=task, context=CONTEXT)
    assert again.version == task.version == 2 and again.completed_at == task.completed_at
    events = published(task.id)
    assert types(events["task-events"]) == ["task.created", "task.completed"]
    assert events["task-events"][1]["data"]["completed"] is True
    assert types(events["reminders"]) == ["reminder.scheduled", "reminder.cancelled"]
    assert [e["data"]["change_type"] for e in events["task-updates"]] == ["created", "updated"]
    assert events["task-updates"][1]["data"]["task"]["completed_at"] is not None


def test_reopen_emits_task_updated_and_reschedules_a_reminder_still_ahead(user, outbox_relay):
    task = services.task_create(user=user, context=CONTEXT, title="Water plants", due_date=SOON, remind_at=SOON)
    task = services.task_complete(task=task, context=CONTEXT)
    task = services.task_reopen(task=task, context=CONTEXT)
    events = published(task.id)
    assert types(events["task-events"]) == ["task.created", "task.completed", "task.updated"]
    assert events["task-events"][2]["data"]["completed"] is False
    assert types(events["reminders"]) == ["reminder.scheduled", "reminder.cancelled", "reminder.scheduled"]
    assert task.version == 3 and task.completed_at is None


def test_reopen_does_not_reschedule_a_reminder_already_past(user, outbox_relay):
    past = datetime.now(UTC) - timedelta(days=1)
    task = services.task_create(user=user, context=CONTEXT, title="Old", due_date=past, remind_at=past)
    task = services.task_complete(task=task, context=CONTEXT)
    task = services.task_reopen(task=task, context=CONTEXT)
    events = published(task.id)
    assert types(events["reminders"]) == ["reminder.scheduled", "reminder.cancelled"]


def test_delete_emits_task_deleted_with_the_last_state_and_cancels_the_reminder(user, outbox_relay):
    task = services.task_create(user=user, context=CONTEXT, title="Bin day", due_date=SOON, remind_at=SOON)
    services.task_delete(task=task, context=CONTEXT)
    assert not Task.objects.filter(pk=task.pk).exists()
    events = published(task.id)
    assert types(events["task-events"]) == ["task.created", "task.deleted"]
    assert events["task-events"][1]["data"]["version"] == 2
    assert types(events["reminders"]) == ["reminder.scheduled", "reminder.cancelled"]
    deleted = events["task-updates"][1]["data"]
    assert deleted["change_type"] == "deleted" and deleted["task"]["title"] == "Bin day"


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


def test_invalid_changes_raise_field_errors_and_emit_nothing(user):
    with pytest.raises(ValidationError) as error:
        services.task_create(user=user, context=CONTEXT, title="x", remind_at=SOON)
    assert "remind_at" in error.value.message_dict
    with pytest.raises(ValidationError) as error:
        services.task_create(user=user, context=CONTEXT, title="x", due_date=SOON, recurrence_rule="FREQ=SOMETIMES")
    assert "recurrence_rule" in error.value.message_dict
    assert not OutboxEvent.objects.exists()
