"""publish_event and tail_topic: the by-hand tools for putting events on Kafka and watching them."""

import io
import json
import uuid

import pytest
from django.core.management import CommandError, call_command

from events.schemas import make_event


def reminder_due():
    task_id = str(uuid.uuid4())
    data = {"reminder_id": str(uuid.uuid4()), "task_id": task_id, "title": "Call", "due_at": None,
            "remind_at": "2030-01-01T09:00:00Z", "user_id": "3"}
    return make_event("reminder.due", data, source="reminder-scheduler", correlation_id="by-hand")


def tail(topic, until_key):
    out = io.StringIO()
    call_command("tail_topic", topic, "--from-beginning", "--idle-timeout", "5", stdout=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    return [line for line in lines if line["key"] == until_key]


def test_a_published_event_is_tailed_back_with_its_key_headers_and_value(kafka_namespace):
    event = reminder_due()
    out = io.StringIO()
    call_command("publish_event", "reminders", json.dumps(event), stdout=out)
    assert "published to" in out.getvalue()
    [line] = tail("reminders", event["data"]["task_id"])
    assert line["value"] == event
    assert line["headers"] == {"event_type": "reminder.due", "event_id": event["event_id"]}


def test_publish_refuses_what_is_not_an_event_of_the_contract_unless_told_not_to_validate(kafka_namespace):
    with pytest.raises(CommandError, match="not JSON"):
        call_command("publish_event", "task-events", "{oops")
    with pytest.raises(CommandError, match="must contain"):
        call_command("publish_event", "task-events", '{"event_type": "task.created", "data": {"task_id": "1"}}')
    with pytest.raises(CommandError, match="belongs on reminders"):
        call_command("publish_event", "task-events", json.dumps(reminder_due()))
    key = str(uuid.uuid4())
    call_command("publish_event", "task-events", '{"event_type": "task.created"}', "--key", key, "--no-validate",
                 stdout=io.StringIO())
    [line] = tail("task-events", key)
    assert line["value"] == {"event_type": "task.created"}
