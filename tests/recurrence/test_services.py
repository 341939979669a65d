"""The recurring-task service: one next occurrence per completed one, right in the owner's zone,
and only for a completion the database vouches for."""

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from events.consumer import ConsumerRuntime
from events.models import OutboxEvent
from events.registry import get_consumer
from events.schemas import ForgedEvent, make_event
from events.topics import TASK_EVENTS, dead_letter_topic
from recurrence.handlers import on_task_completed, on_tasks_completed
from recurrence.services import create_next_occurrence
from tasks.events import EventContext, task_event, task_object
from tasks.models import Task, User
from tasks.services import task_complete, task_create, task_delete, task_reopen, task_update
from testing.kafka import TestProducer, read_topic, running

pytestmark = pytest.mark.django_db(transaction=True)

API = EventContext(source="todo-api", correlation_id="req-42")


def utc(*args):
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def owner():
    return User.objects.create_user("rita", password="pw-123456", timezone="America/New_York")


def completed_event(task):
    """Complete ``task`` through the service layer and return its task.completed event."""
    task_complete(task=task, context=API)
    row = OutboxEvent.objects.filter(event_type="task.completed", key=str(task.id)).get()
    return json.loads(row.payload)


def recurring(owner, rule, due, **fields):
    return task_create(user=owner, context=API, title="Team sync", recurrence_rule=rule, due_date=due, **fields)


def test_the_next_occurrence_carries_the_task_over_and_is_linked_to_its_parent(owner):
    # Monday 2026-12-07 09:00 in New York is 14:00 UTC.
    task = recurring(
        owner, "FREQ=WEEKLY;BYDAY=MO", utc(2026, 12, 7, 14), remind_at=utc(2026, 12, 7, 13, 30),
        description="Agenda in the doc", priority=2, tags=["work"],
    )
    event = completed_event(task)
    on_task_completed(event)

    following = Task.objects.get(parent_task_id=task.id)
    assert following.due_date == utc(2026, 12, 14, 14)
    assert following.remind_at == utc(2026, 12, 14, 13, 30)
    assert (following.title, following.description, following.priority, following.tags) == (
        "Team sync", "Agenda in the doc", 2, ["work"],
    )
    assert following.recurrence_rule == "FREQ=WEEKLY;BYDAY=MO" and not following.completed
    created = json.loads(OutboxEvent.objects.get(event_type="task.created", key=str(following.id)).payload)
    assert created["metadata"] == {"source": "recurring-task-service", "correlation_id": event["metadata"]["correlation_id"]}
    assert created["data"]["parent_task_id"] == str(task.id)


@pytest.mark.parametrize(
    "due, following_due",
    [
        # Daylight saving ends on 2027-11-07: 09:00 EDT is 13:00 UTC, 09:00 EST is 14:00 UTC.
        (utc(2027, 11, 1, 13), utc(2027, 11, 8, 14)),
        # It begins on 2027-03-14: 09:00 EST is 14:00 UTC, 09:00 EDT is 13:00 UTC.
        (utc(2027, 3, 8, 14), utc(2027, 3, 15, 13)),
    ],
)
def test_monday_nine_stays_nine_local_across_daylight_saving_changes(owner, due, following_due):
    task = recurring(owner, "FREQ=WEEKLY;BYDAY=MO", due)
    on_task_completed(completed_event(task))
    assert Task.objects.get(parent_task_id=task.id).due_date == following_due


def test_the_same_completion_delivered_twice_creates_one_next_occurrence(owner):
    task = recurring(owner, "FREQ=DAILY", utc(2026, 12, 7, 14))
    event = completed_event(task)
    on_task_completed(event)
    on_task_completed(event)
    assert Task.objects.filter(parent_task_id=task.id).count() == 1


def test_two_consumers_racing_on_one_completion_create_one_next_occurrence(owner):
    task = recurring(owner, "FREQ=DAILY", utc(2026, 12, 7, 14))
    data = completed_event(task)["data"]
    start = threading.Barrier(4)
    results = []

    def consume():
        start.wait()
        try:
            results.append(create_next_occurrence(data, correlation_id="c"))
        finally:
            connection.close()

    threads = [threading.Thread(target=consume) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert Task.objects.filter(parent_task_id=task.id).count() == 1
    assert sum(result is not None for result in results) == 1


def test_count_ends_the_series_counted_across_all_its_tasks(owner):
    task = recurring(owner, "FREQ=DAILY;COUNT=3", utc(2026, 12, 7, 14))
    for _ in range(2):
        on_task_completed(completed_event(task))
        task = Task.objects.get(parent_task_id=task.id)
    on_task_completed(completed_event(task))  # the third and last occurrence
    assert Task.objects.filter(title="Team sync").count() == 3
    assert not Task.objects.filter(parent_task_id=task.id).exists()


def test_a_late_completion_skips_to_the_first_occurrence_after_now(owner):
    long_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(days=10)
    task = recurring(owner, "FREQ=DAILY", long_ago)
    on_task_completed(completed_event(task))
    following = Task.objects.get(parent_task_id=task.id)
    assert datetime.now(UTC) < following.due_date <= datetime.now(UTC) + timedelta(days=1)
    zone = ZoneInfo(owner.timezone)
    assert following.due_date.astimezone(zone).time() == long_ago.astimezone(zone).time()


def test_a_task_without_a_rule_has_no_next_occurrence(owner):
    task = task_create(user=owner, context=API, title="Once", due_date=utc(2026, 12, 7, 14))
    on_task_completed(completed_event(task))
    assert not Task.objects.filter(parent_task_id=task.id).exists()


# -- races of a legitimate completion with later changes: the outcome does not depend on the lag --


def test_a_completion_edited_before_the_consumer_ran_continues_the_series_from_the_completed_version(owner):
    task = recurring(owner, "FREQ=DAILY", utc(2026, 12, 7, 14), description="as completed")
    event = completed_event(task)
    task_update(task=task, context=API, description="edited afterwards")  # the row is now one version newer
    on_task_completed(event)
    following = Task.objects.get(parent_task_id=task.id)
    assert (following.user, following.description, following.due_date) == (owner, "as completed", utc(2026, 12, 8, 14))


def test_a_completion_reopened_and_completed_again_before_the_consumer_ran_has_one_next_occurrence(owner):
    task = recurring(owner, "FREQ=DAILY", utc(2026, 12, 7, 14))
    first = completed_event(task)
    task_reopen(task=task, context=API)
    task_complete(task=task, context=API)
    second = json.loads(OutboxEvent.objects.filter(event_type="task.completed", key=str(task.id)).order_by("-id")[0].payload)
    on_task_completed(first)
    on_task_completed(second)
    assert Task.objects.filter(parent_task_id=task.id).count() == 1


def test_a_completion_deleted_before_the_consumer_ran_still_continues_the_series(owner):
    task = recurring(owner, "FREQ=DAILY", utc(2026, 12, 7, 14))
    event = completed_event(task)
    task_delete(task=task, context=API)
    on_task_completed(event)
    following = Task.objects.get(parent_task_id=task.id)
    assert (following.user, following.due_date) == (owner, utc(2026, 12, 8, 14))


def test_an_occurrence_the_service_created_continues_the_series_when_it_is_completed(owner):
    task = recurring(owner, "FREQ=DAILY", utc(2026, 12, 7, 14))
    on_task_completed(completed_event(task))
    created_by_the_service = Task.objects.get(parent_task_id=task.id)
    on_task_completed(completed_event(created_by_the_service))
    third = Task.objects.get(parent_task_id=created_by_the_service.id)
    assert (third.user, third.due_date) == (owner, utc(2026, 12, 9, 14))


# -- forged completions: dead-lettered as ForgedEvent by the real consumer, nothing created -------


def forged(data, **changes):
    return make_event("task.completed", {**data, **changes}, source="todo-api", correlation_id="forged")


def test_completions_the_database_contradicts_are_dead_lettered_as_forged_and_create_nothing(isolated_kafka, owner):
    mallory = User.objects.create_user("mallory", password="pw-123456")
    ritas = completed_event(recurring(owner, "FREQ=DAILY", utc(2026, 12, 7, 14)))["data"]
    malloryss = completed_event(recurring(mallory, "FREQ=DAILY", utc(2026, 12, 7, 14)))["data"]
    open_task = recurring(owner, "FREQ=DAILY", utc(2026, 12, 7, 14))
    attempts = {
        "rita's task, claimed by mallory": forged(ritas, user_id=str(mallory.id)),
        "mallory's task, landing in rita's account": forged(malloryss, user_id=str(owner.id)),
        "a task that never existed, in rita's account": forged(ritas, task_id=str(uuid.uuid4())),
        "rita's task with a rule she never set": forged(ritas, recurrence_rule="FREQ=MINUTELY"),
        "rita's task at a version it never had": forged(ritas, version=ritas["version"] + 1),
        "rita's open task": task_event("task.completed", {**task_object(open_task), "completed": True}, API),
    }
    tasks_before = set(Task.objects.values_list("id", flat=True))

    with running(ConsumerRuntime(get_consumer("recurrence"))) as consumer:
        TestProducer().events(list(attempts.values()), base_topic=TASK_EVENTS)
        letters = read_topic(dead_letter_topic(TASK_EVENTS), until=lambda messages: len(messages) >= len(attempts))
    assert consumer.error is None

    by_event = {letter["headers"]["event_id"]: letter["headers"] for letter in letters}
    assert {name: by_event.get(event["event_id"], {}).get("dlq.error.type") for name, event in attempts.items()} == {
        name: "ForgedEvent" for name in attempts
    }
    assert set(Task.objects.values_list("id", flat=True)) == tasks_before


def batch(*events):
    on_tasks_completed(events)


def test_a_batch_of_completions_creates_each_next_occurrence_once_in_the_same_few_statements_whatever_its_size(owner):
    def completions(count):
        return [completed_event(recurring(owner, "FREQ=DAILY", utc(2026, 12, 7, 14), remind_at=utc(2026, 12, 7, 13)))
                for _ in range(count)]

    small, large = completions(2), completions(12)
    with CaptureQueriesContext(connection) as few:
        batch(*small)
    with CaptureQueriesContext(connection) as many:
        batch(*large)
    assert len(many) == len(few) <= 12
    for event in small + large:
        [following] = Task.objects.filter(parent_task_id=event["data"]["task_id"])
        assert following.due_date == utc(2026, 12, 8, 14) and following.remind_at == utc(2026, 12, 8, 13)
        created = OutboxEvent.objects.filter(key=str(following.id)).order_by("id").values_list("event_type", flat=True)
        assert list(created) == ["task.created", "reminder.scheduled", "sync.task_changed"]


def test_a_batch_with_a_completion_followed_already_or_twice_creates_one_next_occurrence_each(owner):
    followed, fresh = (completed_event(recurring(owner, "FREQ=DAILY", utc(2026, 12, 7, 14))) for _ in range(2))
    on_task_completed(followed)
    batch(followed, fresh, {**fresh, "event_id": str(uuid.uuid4())})
    assert Task.objects.filter(parent_task_id=followed["data"]["task_id"]).count() == 1
    assert Task.objects.filter(parent_task_id=fresh["data"]["task_id"]).count() == 1


def test_a_forged_completion_fails_its_whole_batch_before_anything_is_created(owner):
    genuine = completed_event(recurring(owner, "FREQ=DAILY", utc(2026, 12, 7, 14)))
    forgery = forged(genuine["data"], task_id=str(uuid.uuid4()))
    with pytest.raises(ForgedEvent):
        batch(genuine, forgery)
    assert not Task.objects.filter(parent_task_id=genuine["data"]["task_id"]).exists()
