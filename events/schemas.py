"""The event schemas of CONTRACT.md section 4, defined once.

Producers build events with ``make_event``; the consumer runtime checks every message with
``validate_event``; tests validate what reaches Kafka against ``json_schema``; and
``python manage.py export_event_schemas`` writes them to ``docs/events/`` for readers.

Every field of the seed spec is present and required; more may be added later without
breaking consumers (``additionalProperties`` is allowed everywhere).
"""

import uuid
from datetime import UTC, datetime

import fastjsonschema

from events.topics import REMINDERS, TASK_EVENTS, TASK_UPDATES

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

_uuid = {"type": "string", "format": "uuid"}
_nullable_uuid = {"type": ["string", "null"], "format": "uuid"}
_timestamp = {"type": "string", "format": "date-time"}
_nullable_timestamp = {"type": ["string", "null"], "format": "date-time"}


def _object(properties, required=None):
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
    }


# The limits of a task's fields (CONTRACT.md section 7), defined once, in the event contract: the
# model, the API serializers, the MCP tool schemas and the chat interpreter all take them from here.
TITLE_MAX_LENGTH = 200
DESCRIPTION_MAX_LENGTH = 10_000
MAX_TAGS = 20
TAG_MAX_LENGTH = 50
RECURRENCE_RULE_MAX_LENGTH = 500
HIGHEST_PRIORITY = 1
LOWEST_PRIORITY = 4
# What the priorities are called, in the web app and by the assistant ("high priority" is P2).
PRIORITY_NAMES = {1: "Urgent", 2: "High", 3: "Medium", 4: "Low"}

TASK_FIELDS = {
    "task_id": _uuid,
    "title": {"type": "string", "minLength": 1, "maxLength": TITLE_MAX_LENGTH},
    "description": {"type": "string", "maxLength": DESCRIPTION_MAX_LENGTH},
    "completed": {"type": "boolean"},
    "due_date": _nullable_timestamp,
    "remind_at": _nullable_timestamp,
    "priority": {"type": "integer", "minimum": HIGHEST_PRIORITY, "maximum": LOWEST_PRIORITY},
    "recurrence_rule": {"type": ["string", "null"], "maxLength": RECURRENCE_RULE_MAX_LENGTH},
    "tags": {
        "type": "array",
        "maxItems": MAX_TAGS,
        "items": {"type": "string", "minLength": 1, "maxLength": TAG_MAX_LENGTH},
    },
    "parent_task_id": _nullable_uuid,
    "version": {"type": "integer", "minimum": 1},
    "user_id": {"type": "string"},
}

# The task object of the REST API (CONTRACT.md section 2), carried whole by sync events.
TASK_OBJECT = _object(
    {
        "id": _uuid,
        **{name: schema for name, schema in TASK_FIELDS.items() if name != "task_id"},
        "completed_at": _nullable_timestamp,
        "created_at": _timestamp,
        "updated_at": _timestamp,
    }
)

TASK_EVENT_DATA = _object(TASK_FIELDS)

REMINDER_DATA = _object(
    {
        "reminder_id": _uuid,
        "task_id": _uuid,
        "title": {"type": "string"},
        "due_at": _nullable_timestamp,
        "remind_at": _timestamp,
        "user_id": {"type": "string"},
    }
)

SYNC_DATA = _object(
    {
        "task_id": _uuid,
        "change_type": {"enum": ["created", "updated", "deleted"]},
        "task": TASK_OBJECT,
        "user_id": {"type": "string"},
    }
)

SOURCES = ("todo-api", "chat-api", "recurring-task-service", "reminder-scheduler")

METADATA = _object(
    {
        "source": {"type": "string", "minLength": 1},
        "correlation_id": {"type": "string", "minLength": 1},
    }
)

# event_type -> (topic base name, schema of its data)
EVENT_TYPES = {
    "task.created": (TASK_EVENTS, TASK_EVENT_DATA),
    "task.updated": (TASK_EVENTS, TASK_EVENT_DATA),
    "task.completed": (TASK_EVENTS, TASK_EVENT_DATA),
    "task.deleted": (TASK_EVENTS, TASK_EVENT_DATA),
    "reminder.scheduled": (REMINDERS, REMINDER_DATA),
    "reminder.due": (REMINDERS, REMINDER_DATA),
    "reminder.cancelled": (REMINDERS, REMINDER_DATA),
    "sync.task_changed": (TASK_UPDATES, SYNC_DATA),
}

# What every message on any topic carries, whatever its type: enough to route and dead-letter it.
ENVELOPE = _object(
    {
        "event_id": _uuid,
        "event_type": {"type": "string", "minLength": 1},
        "timestamp": _timestamp,
        "data": {"type": "object"},
        "metadata": METADATA,
    }
)


def json_schema(topic_base_name):
    """The JSON Schema of every event on one topic: the envelope plus a data schema per event type."""
    types = {name: data for name, (topic, data) in EVENT_TYPES.items() if topic == topic_base_name}
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"https://todo-platform.dev/schemas/{topic_base_name}.json",
        "title": f"Events on the {topic_base_name} topic",
        **ENVELOPE,
        "properties": {**ENVELOPE["properties"], "event_type": {"enum": sorted(types)}},
        "allOf": [
            {
                "if": {"properties": {"event_type": {"const": name}}},
                "then": {"properties": {"data": data}},
            }
            for name, data in sorted(types.items())
        ],
    }


class InvalidEvent(ValueError):
    """A message that is not an event of the contract: it belongs in the dead-letter topic."""


class ForgedEvent(InvalidEvent):
    """A well-formed event that the database contradicts (a task of another owner, a reminder the
    scheduler never fired...): not written by our own producers, so it is dead-lettered at once
    and has no effect."""


def event_uuid(value, name):
    """``value`` (the ``name`` field of an event) as a UUID, else InvalidEvent: the schemas leave
    formats unchecked, and a database lookup by a malformed UUID would fail every retry."""
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise InvalidEvent(f"{name} {value!r} is not a UUID") from None


class UnknownEventType(InvalidEvent):
    """A well-formed event of a type this system does not know: skipped, not dead-lettered."""


def _without_formats(schema):
    if isinstance(schema, dict):
        return {name: _without_formats(value) for name, value in schema.items() if name != "format"}
    if isinstance(schema, list):
        return [_without_formats(value) for value in schema]
    return schema


def _compile(schema):
    # Format checks (uuid, date-time) are left to the JSON Schema tests: at runtime they would
    # cost more than the rest of the validation together. The compiled schema has none at all:
    # a format that accepts anything still cost a regular-expression match per field.
    return fastjsonschema.compile(_without_formats(schema))


_validate_envelope = _compile(ENVELOPE)
_validate_data = {name: _compile(data) for name, (_, data) in EVENT_TYPES.items()}
# The envelope and the data of each type in one schema: one call for a valid event, half the cost
# of the two above (every event written to the outbox and read by a consumer is validated; the
# profiles of the recurrence consumer and the reminder scheduler in the report of issue #14).
_validate_whole = {
    name: _compile({**ENVELOPE, "properties": {**ENVELOPE["properties"], "data": data}})
    for name, (_, data) in EVENT_TYPES.items()
}


def validate_event(event):
    """Return ``event`` when it is a valid event of a known type, else raise InvalidEvent.

    Raises UnknownEventType for a valid envelope whose ``event_type`` is not one of ours.
    """
    event_type = event.get("event_type") if isinstance(event, dict) else None
    validate_whole = _validate_whole.get(event_type) if isinstance(event_type, str) else None
    if validate_whole is not None:
        try:
            validate_whole(event)
            return event
        except fastjsonschema.JsonSchemaValueException:
            pass  # the two steps below say what is wrong, the envelope first
    try:
        _validate_envelope(event)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise InvalidEvent(f"not an event: {exc.message}") from None
    validate_data = _validate_data.get(event["event_type"])
    if validate_data is None:
        raise UnknownEventType(f"unknown event_type {event['event_type']!r}")
    try:
        validate_data(event["data"])
    except fastjsonschema.JsonSchemaValueException as exc:
        raise InvalidEvent(f"{event['event_type']}: {exc.message}") from None
    return event


def utc_timestamp(moment=None):
    """ISO 8601 UTC with a ``Z``, as every timestamp in the contract."""
    moment = moment or datetime.now(UTC)
    if moment.tzinfo is not UTC:  # Django's times are in UTC already: a third of the cost saved
        moment = moment.astimezone(UTC)
    return moment.isoformat().replace("+00:00", "Z")


def parse_timestamp(value):
    """A timestamp of the contract (ISO 8601, ``Z`` or any offset) as a datetime; None for none.

    The one reader of the timestamps ``utc_timestamp`` writes, wherever an event's, a task
    object's or a reminder's time is read back. Raises ValueError for text that is not one.
    """
    return datetime.fromisoformat(value) if value else None


def make_event(event_type, data, *, source, correlation_id):
    """A new event of the contract: fresh event_id, the current time, data and metadata."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event_type {event_type!r}")
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "timestamp": utc_timestamp(),
        "data": data,
        "metadata": {"source": source, "correlation_id": correlation_id},
    }


def topic_of(event_type):
    return EVENT_TYPES[event_type][0]
