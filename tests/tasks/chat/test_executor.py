"""The one executor of the task tools: the caller's tasks only, through the service layer, clear errors."""

import json
import uuid

import pytest

from events.models import OutboxEvent
from tasks.accounts.services import user_register
from tasks.chat.executor import SOURCE, execute_tool
from tasks.chat.tools import ToolError
from tasks.events import EventContext
from tasks.models import Task

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice():
    return user_register(username="alice", password="a-long-passphrase", timezone="Europe/Paris")


@pytest.fixture
def bob():
    return user_register(username="bob", password="a-long-passphrase")


def run(user, name, **arguments):
    return execute_tool(user, name, arguments, context=EventContext(SOURCE, "corr-1"))


def outbox_events():
    return [json.loads(row.payload) for row in OutboxEvent.objects.order_by("id")]


def test_add_task_creates_the_task_reading_times_without_offset_in_the_users_zone_and_returns_the_task_object(alice):
    task = run(alice, "add_task", title="buy milk", due_date="2026-12-16T17:00:00", remind_at="2026-12-16T16:00:00+01:00",
               tags=["shopping"], priority=1)

    assert task["due_date"] == "2026-12-16T16:00:00Z" and task["remind_at"] == "2026-12-16T15:00:00Z"
    assert task["user_id"] == str(alice.id) and task["version"] == 1
    stored = Task.objects.get(pk=task["id"])
    assert (stored.title, stored.tags, stored.priority) == ("buy milk", ["shopping"], 1)


def test_every_event_of_a_tool_call_carries_source_chat_api_and_the_calls_correlation_id(alice):
    task = run(alice, "add_task", title="buy milk", due_date="2026-12-16T17:00:00Z", remind_at="2026-12-16T16:00:00Z")
    run(alice, "complete_task", task_id=task["id"])
    run(alice, "delete_task", task_title="buy milk")

    events = outbox_events()
    assert [event["event_type"] for event in events if event["event_type"].startswith("task.")] == [
        "task.created", "task.completed", "task.deleted",
    ]
    assert {(event["metadata"]["source"], event["metadata"]["correlation_id"]) for event in events} == {("chat-api", "corr-1")}


def test_update_task_with_completed_completes_and_reopens_through_the_services(alice):
    task = run(alice, "add_task", title="water plants")

    done = run(alice, "update_task", task_title="water plants", completed=True)
    reopened = run(alice, "update_task", task_id=task["id"], completed=False, priority=2)

    assert done["completed"] is True and done["completed_at"]
    assert reopened["completed"] is False and reopened["completed_at"] is None and reopened["priority"] == 2
    types = [event["event_type"] for event in outbox_events() if event["event_type"].startswith("task.")]
    assert types == ["task.created", "task.completed", "task.updated", "task.updated"]


def test_list_tasks_filters_like_the_rest_api_and_limits_the_results(alice, bob):
    run(alice, "add_task", title="buy milk", tags=["shopping"], priority=1)
    run(alice, "add_task", title="buy bread", tags=["shopping"])
    run(alice, "add_task", title="call mom")
    run(bob, "add_task", title="buy milk for bob", tags=["shopping"])

    shopping = run(alice, "list_tasks", tag=["shopping"], ordering="priority")
    assert shopping["count"] == 2 and [task["title"] for task in shopping["results"]] == ["buy milk", "buy bread"]
    limited = run(alice, "list_tasks", limit=1)
    assert limited["count"] == 3 and [task["title"] for task in limited["results"]] == ["call mom"]
    assert run(alice, "list_tasks", search="MILK")["count"] == 1


def test_another_users_task_is_no_such_task_whether_named_by_id_or_title(alice, bob):
    bobs = run(bob, "add_task", title="bob's plan")
    for name in ("complete_task", "delete_task"):
        with pytest.raises(ToolError, match=f"There is no such task: {bobs['id']}"):
            run(alice, name, task_id=bobs["id"])
    with pytest.raises(ToolError, match="There is no such task"):
        run(alice, "update_task", task_id=str(uuid.uuid4()), title="x")
    with pytest.raises(ToolError, match="No task has a title matching 'plan'"):
        run(alice, "complete_task", task_title="plan")
    assert Task.objects.get(pk=bobs["id"]).completed is False


def test_a_title_matching_several_tasks_is_an_error_listing_them_not_a_guess(alice):
    first = run(alice, "add_task", title="call mom")
    second = run(alice, "add_task", title="call mom about the trip")
    run(alice, "add_task", title="call dad")

    assert run(alice, "complete_task", task_title="Call  Mom")["id"] == first["id"]  # the exact title wins
    with pytest.raises(ToolError, match="Several tasks match 'call'") as error:
        run(alice, "delete_task", task_title="call")
    assert second["id"] in str(error.value)
    assert Task.objects.count() == 3


@pytest.mark.parametrize(
    ("name", "arguments", "message"),
    [
        ("add_task", {"title": "x", "remind_at": "2026-12-16T17:00:00Z"}, "remind_at: A reminder needs a due_date."),
        ("add_task", {"title": "x", "recurrence_rule": "FREQ=DAILY"}, "recurrence_rule: A recurring task needs a due_date."),
        ("add_task", {"title": "x", "due_date": "soon"}, "due_date: "),
        ("add_task", {"title": "x", "priority": 5}, "priority"),
        ("list_tasks", {"due_before": "yesterday"}, "due_before: "),
        ("frobnicate", {}, "There is no tool 'frobnicate'"),
    ],
)
def test_bad_arguments_and_domain_rules_are_tool_errors_that_name_the_field(alice, name, arguments, message):
    with pytest.raises(ToolError) as error:
        execute_tool(alice, name, arguments, context=EventContext.new(SOURCE))
    assert message in str(error.value)
    assert not Task.objects.exists() and not OutboxEvent.objects.exists()


def test_a_failed_update_of_a_completion_changes_nothing(alice):
    task = run(alice, "add_task", title="plan trip")
    with pytest.raises(ToolError, match="remind_at"):
        run(alice, "update_task", task_id=task["id"], completed=True, remind_at="2026-12-16T17:00:00Z")
    stored = Task.objects.get(pk=task["id"])
    assert (stored.completed, stored.remind_at, stored.version) == (False, None, 1)


def test_moving_the_due_date_takes_the_reminder_along_at_the_same_distance(alice):
    added = run(alice, "add_task", title="dentist appointment", due_date="2030-01-07T10:00:00Z", remind_at="2030-01-07T09:00:00Z")

    moved = run(alice, "update_task", task_title="dentist", due_date="2030-01-11T13:00:00Z")

    assert (moved["due_date"], moved["remind_at"]) == ("2030-01-11T13:00:00Z", "2030-01-11T12:00:00Z")
    # The scheduler hears of it: the old reminder is cancelled and the moved one scheduled.
    reminders = [event for event in outbox_events() if event["event_type"].startswith("reminder.")][1:]
    assert [(e["event_type"], e["data"].get("remind_at")) for e in reminders][-1] == ("reminder.scheduled", "2030-01-11T12:00:00Z")
    assert added["id"] == moved["id"]


def test_a_reminder_given_with_the_new_due_date_is_taken_as_given(alice):
    run(alice, "add_task", title="dentist", due_date="2030-01-07T10:00:00Z", remind_at="2030-01-07T09:00:00Z")
    moved = run(alice, "update_task", task_title="dentist", due_date="2030-01-11T13:00:00Z", remind_at="2030-01-11T08:00:00Z")
    assert moved["remind_at"] == "2030-01-11T08:00:00Z"


def test_moving_a_task_without_a_reminder_adds_none(alice):
    run(alice, "add_task", title="dentist", due_date="2030-01-07T10:00:00Z")
    assert run(alice, "update_task", task_title="dentist", due_date="2030-01-11T13:00:00Z")["remind_at"] is None
