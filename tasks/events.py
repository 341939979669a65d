"""What a task change says on Kafka: the data of its events, built from the task in one place.

The services decide *which* events a change emits (CONTRACT.md section 4's emission table);
this module decides what they contain.
"""

import uuid
from dataclasses import dataclass

from events.schemas import TASK_FIELDS, make_event, utc_timestamp

# Namespace of reminder ids: one reminder per (task, remind_at), the same id whoever computes it,
# so that a reminder.cancelled names exactly the reminder.scheduled it cancels.
REMINDER_NAMESPACE = uuid.UUID("0b6f3c1e-7d55-4c1e-9a55-6c1f1d3a9e42")


@dataclass(frozen=True)
class EventContext:
    """Who caused a change: ``metadata.source`` and the request's ``correlation_id``."""

    source: str
    correlation_id: str

    @classmethod
    def new(cls, source):
        return cls(source=source, correlation_id=str(uuid.uuid4()))


def _timestamp(value):
    return utc_timestamp(value) if value is not None else None


def task_object(task):
    """The task object of the REST API (CONTRACT.md section 2); sync events carry it whole."""
    return {
        "id": str(task.id),
        "title": task.title,
        "description": task.description,
        "completed": task.completed,
        "completed_at": _timestamp(task.completed_at),
        "due_date": _timestamp(task.due_date),
        "remind_at": _timestamp(task.remind_at),
        "priority": task.priority,
        "recurrence_rule": task.recurrence_rule,
        "tags": list(task.tags),
        "parent_task_id": str(task.parent_task_id) if task.parent_task_id else None,
        "user_id": str(task.user_id),
        "version": task.version,
        "created_at": _timestamp(task.created_at),
        "updated_at": _timestamp(task.updated_at),
    }


# The change_type of the sync event that each task event is emitted with (tasks/services.py):
# the consumers that check a task event against the sync log look for that change.
SYNC_CHANGE_OF = {"task.created": "created", "task.updated": "updated", "task.completed": "updated", "task.deleted": "deleted"}


def contradicted_fields(data, obj):
    """The fields, sorted, in which ``data`` (a task event's) differs from the task object ``obj`` it
    should have been made of (``task_event``); empty when the event says what the object does."""
    return sorted(name for name in TASK_FIELDS if data[name] != obj["id" if name == "task_id" else name])


def reminder_id(task_id, remind_at):
    return str(uuid.uuid5(REMINDER_NAMESPACE, f"{task_id}/{utc_timestamp(remind_at)}"))


def task_event(event_type, obj, context):
    data = {"task_id": obj["id"], **{name: obj[name] for name in TASK_FIELDS if name != "task_id"}}
    return make_event(event_type, data, source=context.source, correlation_id=context.correlation_id)


def reminder_data(*, reminder_id, task_id, title, due_at, remind_at, user_id):
    """The data of every reminder event (scheduled, cancelled, due): one reminder of one task."""
    return {
        "reminder_id": str(reminder_id),
        "task_id": str(task_id),
        "title": title,
        "due_at": _timestamp(due_at),
        "remind_at": utc_timestamp(remind_at),
        "user_id": str(user_id),
    }


def reminder_event(event_type, *, task_id, title, due_date, remind_at, user_id, context):
    data = reminder_data(
        reminder_id=reminder_id(task_id, remind_at), task_id=task_id, title=title, due_at=due_date, remind_at=remind_at,
        user_id=user_id,
    )
    return make_event(event_type, data, source=context.source, correlation_id=context.correlation_id)


def sync_event(change_type, obj, context):
    data = {"task_id": obj["id"], "change_type": change_type, "task": obj, "user_id": obj["user_id"]}
    return make_event("sync.task_changed", data, source=context.source, correlation_id=context.correlation_id)
