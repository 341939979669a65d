"""The event schemas: one definition, checked by an independent JSON Schema validator."""

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import jsonschema
import pytest

from events.management.commands.export_event_schemas import schema_files
from events.schemas import (
    EVENT_TYPES,
    InvalidEvent,
    UnknownEventType,
    json_schema,
    make_event,
    parse_timestamp,
    utc_timestamp,
    validate_event,
)

TASK_ID = str(uuid.uuid4())
TASK_DATA = {
    "task_id": TASK_ID, "title": "Buy groceries", "description": "", "completed": False,
    "due_date": "2025-12-20T18:00:00Z", "remind_at": None, "priority": 1,
    "recurrence_rule": "FREQ=WEEKLY;BYDAY=MO", "tags": ["shopping"], "parent_task_id": None,
    "version": 1, "user_id": "42",
}


def check_against_json_schema(event, topic):
    validator = jsonschema.Draft202012Validator(json_schema(topic), format_checker=jsonschema.FormatChecker())
    validator.validate(event)


def test_a_made_event_has_the_envelope_of_the_contract_and_validates():
    event = make_event("task.created", TASK_DATA, source="todo-api", correlation_id="req-1")
    assert set(event) == {"event_id", "event_type", "timestamp", "data", "metadata"}
    assert event["timestamp"].endswith("Z")
    assert event["metadata"] == {"source": "todo-api", "correlation_id": "req-1"}
    assert validate_event(event) is event
    check_against_json_schema(event, "task-events")


def test_the_seed_test_message_lacks_required_fields():
    with pytest.raises(InvalidEvent, match="must contain"):
        validate_event({"event_type": "task.created", "data": {"task_id": "123", "title": "Test"}})


def test_a_task_event_missing_a_data_field_is_invalid():
    data = {key: value for key, value in TASK_DATA.items() if key != "version"}
    event = make_event("task.updated", data, source="todo-api", correlation_id="c")
    with pytest.raises(InvalidEvent, match="version"):
        validate_event(event)
    with pytest.raises(jsonschema.ValidationError):
        check_against_json_schema(event, "task-events")


def test_an_invalid_event_is_told_what_is_wrong_the_envelope_first_then_the_data_of_its_type():
    event = make_event("task.created", TASK_DATA | {"title": ""}, source="todo-api", correlation_id="c")
    with pytest.raises(InvalidEvent, match=r"^task\.created: data\.title "):
        validate_event(event)
    with pytest.raises(InvalidEvent, match=r"^not an event: data\.metadata "):
        validate_event(event | {"metadata": {}})


def test_an_unknown_event_type_is_told_apart_from_an_invalid_event():
    event = make_event("task.created", TASK_DATA, source="todo-api", correlation_id="c") | {"event_type": "task.archived"}
    with pytest.raises(UnknownEventType):
        validate_event(event)


@pytest.mark.parametrize("not_an_object", [None, [], "task.created", 42])
def test_a_message_that_is_not_an_object_is_invalid(not_an_object):
    with pytest.raises(InvalidEvent):
        validate_event(not_an_object)


def test_every_event_type_belongs_to_exactly_one_topic_schema():
    for event_type, (topic, _) in EVENT_TYPES.items():
        assert event_type in json_schema(topic)["properties"]["event_type"]["enum"]


def test_the_published_schema_files_are_current():
    for path, text in schema_files().items():
        assert path.read_text() == text, f"{path} is stale: run python manage.py export_event_schemas"
        assert json.loads(text)["$schema"].startswith("https://json-schema.org/")


def test_a_timestamp_is_written_in_utc_with_a_z_whatever_the_zone_of_the_moment():
    moment = datetime(2026, 3, 29, 1, 30, 15, 250000, tzinfo=UTC)
    for same_moment in (moment, moment.astimezone(ZoneInfo("Europe/Paris")), moment.astimezone(timezone(timedelta(hours=-7)))):
        assert utc_timestamp(same_moment) == "2026-03-29T01:30:15.250000Z"
        assert parse_timestamp(utc_timestamp(same_moment)) == moment
    assert utc_timestamp(moment.replace(microsecond=0)) == "2026-03-29T01:30:15Z"
