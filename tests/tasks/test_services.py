"""Each task operation emits exactly the events of CONTRACT.md section 4, in per-task order.

The services write their events to the outbox in the transaction of the change; these tests read
the outbox rows back (the relay publishes them in id order, tests/tasks/test_services_on_kafka.py
checks that they reach Kafka so): event types per topic, every event valid against its topic's
published JSON Schema, key = task_id, metadata = the caller's context.
"""

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import jsonschema
import pytest
from django.core.exceptions import ValidationError

from events.models import OutboxEvent
from events.schemas import TITLE_MAX_LENGTH, json_schema
from tasks import services
from tasks.events import EventContext, reminder_id
from tasks.models import Task, User

pytestmark = pytest.mark.django_db

CONTEXT = EventContext(source="todo-api", correlation_id="req-services-1")
SOON = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)


@pytest.fixture
def user():
    return User.objects.create_user("alice", password="x", timezone="Europe/Paris")


def emitted(task_id):
    """What the outbox holds for one task: {topic: [event, ...]} in publishing order, each checked."""
    rows = list(OutboxEvent.objects.filter(key=str(task_id)).order_by("id"))
    assert rows, "the operation wrote nothing to the outbox"
    by_topic = defaultdict(list)
    for row in rows:
        event = json.loads(row.payload)
        jsonschema.Draft202012Validator(json_schema(row.topic), format_checker=jsonschema.FormatChecker()).validate(event)
        assert (row.event_type, str(row.event_id)) == (event["event_type"], event["event_id"])
        assert event["metadata"] == {"source": CONTEXT.source, "correlation_id": CONTEXT.correlation_id}
        by_topic[row.topic].append(event)
    return by_topic


def types(events):
    return [event["event_type"] for event in events]


def test_create_without_remind_at_schedules_no_reminder(user):
    task = services.task_create(user=user, context=CONTEXT, title="No reminder")
    events = emitted(task.id)
    assert types(events["task-events"]) == ["task.created"]
    assert "reminders" not in events
    assert types(events["task-updates"]) == ["sync.task_changed"]


def test_moving_remind_at_cancels_the_old_reminder_and_schedules_the_new_one(user):
    old = SOON - timedelta(hours=1)
    task = services.task_create(user=user, context=CONTEXT, title="Dentist", due_date=SOON, remind_at=old)
    new = SOON - timedelta(hours=2)
    task = services.task_update(task=task, context=CONTEXT, remind_at=new)
    assert task.version == 2
    events = emitted(task.id)
    assert types(events["task-events"]) == ["task.created", "task.updated"]
    assert [e["data"]["version"] for e in events["task-events"]] == [1, 2]
    assert types(events["reminders"]) == ["reminder.scheduled", "reminder.cancelled", "reminder.scheduled"]
    assert [e["data"]["reminder_id"] for e in events["reminders"]] == [
        reminder_id(task.id, old), reminder_id(task.id, old), reminder_id(task.id, new),
    ]
    assert [e["data"]["change_type"] for e in events["task-updates"]] == ["created", "updated"]


def test_clearing_remind_at_only_cancels_and_a_title_change_leaves_reminders_alone(user):
    task = services.task_create(user=user, context=CONTEXT, title="Call", due_date=SOON, remind_at=SOON)
    task = services.task_update(task=task, context=CONTEXT, title="Call mum")
    task = services.task_update(task=task, context=CONTEXT, remind_at=None)
    events = emitted(task.id)
    assert types(events["task-events"]) == ["task.created", "task.updated", "task.updated"]
    assert types(events["reminders"]) == ["reminder.scheduled", "reminder.cancelled"]
    assert task.version == 3


def test_an_update_that_changes_nothing_is_no_new_version_and_no_event(user):
    task = services.task_create(user=user, context=CONTEXT, title="Same", priority=3)
    task = services.task_update(task=task, context=CONTEXT, title="Same", priority=3)
    assert task.version == 1
    assert OutboxEvent.objects.filter(key=str(task.id)).count() == 2  # task.created + sync created


def test_complete_emits_task_completed_and_cancels_the_pending_reminder_once(user):
    task = services.task_create(user=user, context=CONTEXT, title="Pay rent", due_date=SOON, remind_at=SOON)
    task = services.task_complete(task=task, context=CONTEXT)
    again = services.task_complete(task=task, context=CONTEXT)
    assert again.version == task.version == 2 and again.completed_at == task.completed_at
    events = emitted(task.id)
    assert types(events["task-events"]) == ["task.created", "task.completed"]
    assert events["task-events"][1]["data"]["completed"] is True
    assert types(events["reminders"]) == ["reminder.scheduled", "reminder.cancelled"]
    assert [e["data"]["change_type"] for e in events["task-updates"]] == ["created", "updated"]
    assert events["task-updates"][1]["data"]["task"]["completed_at"] is not None


def test_reopen_emits_task_updated_and_reschedules_a_reminder_still_ahead(user):
    task = services.task_create(user=user, context=CONTEXT, title="Water plants", due_date=SOON, remind_at=SOON)
    task = services.task_complete(task=task, context=CONTEXT)
    task = services.task_reopen(task=task, context=CONTEXT)
    events = emitted(task.id)
    assert types(events["task-events"]) == ["task.created", "task.completed", "task.updated"]
    assert events["task-events"][2]["data"]["completed"] is False
    assert types(events["reminders"]) == ["reminder.scheduled", "reminder.cancelled", "reminder.scheduled"]
    assert task.version == 3 and task.completed_at is None


def test_reopen_does_not_reschedule_a_reminder_already_past(user):
    past = datetime.now(UTC) - timedelta(days=1)
    task = services.task_create(user=user, context=CONTEXT, title="Old", due_date=past, remind_at=past)
    task = services.task_complete(task=task, context=CONTEXT)
    task = services.task_reopen(task=task, context=CONTEXT)
    events = emitted(task.id)
    assert types(events["reminders"]) == ["reminder.scheduled", "reminder.cancelled"]


def test_delete_emits_task_deleted_with_the_last_state_and_cancels_the_reminder(user):
    task = services.task_create(user=user, context=CONTEXT, title="Bin day", due_date=SOON, remind_at=SOON)
    services.task_delete(task=task, context=CONTEXT)
    assert not Task.objects.filter(pk=task.pk).exists()
    events = emitted(task.id)
    assert types(events["task-events"]) == ["task.created", "task.deleted"]
    assert events["task-events"][1]["data"]["version"] == 2
    assert types(events["reminders"]) == ["reminder.scheduled", "reminder.cancelled"]
    deleted = events["task-updates"][1]["data"]
    assert deleted["change_type"] == "deleted" and deleted["task"]["title"] == "Bin day"


def test_invalid_changes_raise_field_errors_and_emit_nothing(user):
    with pytest.raises(ValidationError) as error:
        services.task_create(user=user, context=CONTEXT, title="x", remind_at=SOON)
    assert "remind_at" in error.value.message_dict
    with pytest.raises(ValidationError) as error:
        services.task_create(user=user, context=CONTEXT, title="x", due_date=SOON, recurrence_rule="FREQ=SOMETIMES")
    assert "recurrence_rule" in error.value.message_dict
    assert not OutboxEvent.objects.exists()


@pytest.mark.parametrize("field, fields", [
    ("title", {"title": "a\x00b"}), ("description", {"title": "x", "description": "a\x00b"}), ("tags", {"title": "x", "tags": ["a\x00b"]}),
])
def test_a_nul_character_from_any_caller_is_the_fields_error_not_a_database_error(user, field, fields):
    """PostgreSQL text cannot hold NUL: a chat tool or MCP caller sending one gets the field's
    error (a 400 through tasks.errors), and nothing is written."""
    with pytest.raises(ValidationError) as error:
        services.task_create(user=user, context=CONTEXT, **fields)
    assert set(error.value.message_dict) == {field}
    task = services.task_create(user=user, context=CONTEXT, title="fine")
    with pytest.raises(ValidationError):
        services.task_update(task=task, context=CONTEXT, **fields)
    assert Task.objects.get().title == "fine" and Task.objects.count() == 1


def test_create_many_checks_the_fields_of_every_creation_and_creates_nothing_when_one_is_invalid(user):
    with pytest.raises(ValidationError) as error:
        services.task_create_many([
            (user, CONTEXT, {"title": "fine", "due_date": SOON}),
            (user, CONTEXT, {"title": "x" * (TITLE_MAX_LENGTH + 1), "due_date": SOON, "remind_at": SOON + timedelta(hours=1)}),
        ])
    assert set(error.value.message_dict) == {"title", "remind_at"}  # the field's limit, and Task.clean() across fields
    assert not Task.objects.exists() and not OutboxEvent.objects.exists()
