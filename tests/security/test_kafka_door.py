"""The Kafka door: what someone who can produce to our topics can and cannot do.

Who can produce at all is the chart's business (tests/helm/test_chart.py, KAFKA_RIGHTS: each
process has its own KafkaUser, only the relay may write events, a consumer only its dead letters). This module is about what is left when that
fails: a leaked credential, a broker without authentication (the local one). Such a producer
writes well-formed events, so the schema lets them through; what stops them is that the
consumers never trust an event's ``user_id`` and check it against the database (CONTRACT.md
section 7, "Trust"), dead-lettering what the database contradicts as ForgedEvent.
"""

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator

from audit.models import AuditEntry
from events.consumer import ConsumerRuntime
from events.models import OutboxEvent
from events.registry import get_consumer
from events.schemas import make_event
from events.topics import REMINDERS, TASK_EVENTS, TASK_UPDATES, dead_letter_topic, group_name
from notifications.models import ScheduledReminder
from tasks.accounts.tokens import issue
from tasks.events import EventContext, reminder_id
from tasks.models import Task, User
from tasks.services import task_complete, task_create, task_update
from tasks.accounts.tokens import issue
from testing.kafka import TestProducer, committed_offsets, end_offsets, read_topic, running
from testing.waits import wait_for
from todo_project.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

API = EventContext(source="todo-api", correlation_id="req-1")


@pytest.fixture
def victim():
    return User.objects.create_user("victim", password="pw-123456")


@pytest.fixture
def intruder():
    return User.objects.create_user("intruder", password="pw-123456")


def completion_of(user, title):
    """A real completion of a recurring task of ``user``: the event our relay would publish."""
    task = task_create(user=user, context=API, title=title, recurrence_rule="FREQ=DAILY", due_date=datetime(2026, 12, 7, 9, tzinfo=UTC))
    task_complete(task=task, context=API)
    return json.loads(OutboxEvent.objects.get(event_type="task.completed", key=str(task.id)).payload)


def produce_and_collect_dead_letters(consumer, base_topic, events):
    """Produce ``events`` to ``base_topic`` under the real consumer; return its dead letters' headers."""
    with running(ConsumerRuntime(get_consumer(consumer))) as runtime:
        TestProducer().events(events, base_topic=base_topic)
        letters = read_topic(dead_letter_topic(base_topic), until=lambda messages: len(messages) >= len(events))
    assert runtime.error is None
    return [letter["headers"] for letter in letters]


def forged_completion(real, **changes):
    return make_event("task.completed", {**real["data"], **changes}, source="todo-api", correlation_id="forged")


def test_a_producer_cannot_create_a_task_in_another_account(isolated_kafka, victim, intruder):
    own = completion_of(intruder, "Click this link")
    before = Task.objects.filter(user=victim).count()
    letters = produce_and_collect_dead_letters("recurrence", TASK_EVENTS, [forged_completion(own, user_id=str(victim.id))])
    assert [letter["dlq.error.type"] for letter in letters] == ["ForgedEvent"]
    assert Task.objects.filter(user=victim).count() == before


def test_a_producer_cannot_copy_another_users_task_into_their_own_account(isolated_kafka, victim, intruder):
    theirs = completion_of(victim, "Bank PIN hint")
    letters = produce_and_collect_dead_letters("recurrence", TASK_EVENTS, [forged_completion(theirs, user_id=str(intruder.id))])
    assert [letter["dlq.error.type"] for letter in letters] == ["ForgedEvent"]
    assert not Task.objects.filter(user=intruder).exists()


def test_a_producer_replaying_a_real_completion_creates_no_second_occurrence(isolated_kafka, victim):
    real = completion_of(victim, "Water the plants")
    replay = make_event("task.completed", real["data"], source="todo-api", correlation_id="replayed")  # a new event id
    with running(ConsumerRuntime(get_consumer("recurrence"))) as runtime:
        TestProducer().events([real, replay], base_topic=TASK_EVENTS)
        assert_eventually_one_next_occurrence(real["data"]["task_id"])
    assert runtime.error is None


def assert_eventually_one_next_occurrence(task_id):
    group = group_name("recurring-task-service")
    done = wait_for(
        lambda: all(committed_offsets(group, TASK_EVENTS)[p] == end for p, end in end_offsets(TASK_EVENTS).items() if end > 0),
        timeout=60,
    )
    assert done, "the consumer did not get through both events"
    assert Task.objects.filter(parent_task_id=task_id).count() == 1


def test_a_producer_cannot_reach_another_users_websocket(isolated_kafka, victim, intruder):
    now = "2026-12-07T09:00:00Z"
    task_id = str(uuid.uuid4())
    task = {
        "id": task_id, "title": "Your session expired: sign in at evil.example", "description": "", "completed": False,
        "completed_at": None, "due_date": None, "remind_at": None, "priority": 1, "recurrence_rule": None, "tags": [],
        "parent_task_id": None, "user_id": str(victim.id), "version": 1, "created_at": now, "updated_at": now,
    }
    forged = make_event(
        "sync.task_changed", {"task_id": task_id, "change_type": "created", "task": task, "user_id": str(victim.id)},
        source="todo-api", correlation_id="forged",
    )
    key = issue(victim)

    async def victims_socket_while(action):
        socket = WebsocketCommunicator(application, "/ws/sync/", headers=[(b"authorization", f"Token {key}".encode())])
        assert (await socket.connect(timeout=10))[0]
        await action()
        silent = await socket.receive_nothing(timeout=1)
        await socket.disconnect()
        return silent

    async def forge():
        letters = await sync_to_async(produce_and_collect_dead_letters)("realtime", TASK_UPDATES, [forged])
        assert [letter["dlq.error.type"] for letter in letters] == ["ForgedEvent"]

    assert async_to_sync(victims_socket_while)(forge), "the forged event reached the victim's socket"


# -- the reminder scheduler: only reminders a task of that user had pending ----------------------


def scheduled_reminder_of(user, title):
    """A real reminder of ``user``'s task in an hour: its reminder.scheduled as our relay would publish it."""
    due = datetime.now(UTC) + timedelta(days=1)
    task = task_create(user=user, context=API, title=title, due_date=due, remind_at=due - timedelta(hours=23))
    return json.loads(OutboxEvent.objects.get(event_type="reminder.scheduled", key=str(task.id)).payload)


def forged_reminder(real, **changes):
    return make_event("reminder.scheduled", {**real["data"], **changes}, source="todo-api", correlation_id="forged")


def test_a_producer_cannot_schedule_a_reminder_with_its_own_text_for_another_user(isolated_kafka, victim, intruder):
    own = scheduled_reminder_of(intruder, "Your parcel is held: pay at evil.example")
    theirs = scheduled_reminder_of(victim, "Dentist")
    task_id = str(uuid.uuid4())
    forgeries = [
        forged_reminder(own, user_id=str(victim.id)),  # the intruder's own task, in the victim's name
        forged_reminder(theirs, title="Your parcel is held: pay at evil.example"),  # the victim's task, a fake title
        forged_reminder(theirs, task_id=task_id, reminder_id=reminder_id(task_id, datetime.fromisoformat(theirs["data"]["remind_at"]))),
    ]
    letters = produce_and_collect_dead_letters("scheduler", REMINDERS, forgeries)
    assert [letter["dlq.error.type"] for letter in letters] == ["ForgedEvent"] * 3
    assert not ScheduledReminder.objects.exists()


def test_a_producer_cannot_cancel_a_reminder_that_its_task_still_has_pending(isolated_kafka, victim):
    real = scheduled_reminder_of(victim, "Dentist")
    cancellation = make_event("reminder.cancelled", real["data"], source="todo-api", correlation_id="forged")
    with running(ConsumerRuntime(get_consumer("scheduler"))) as runtime:
        TestProducer().events([real, cancellation], base_topic=REMINDERS)
        letters = read_topic(dead_letter_topic(REMINDERS), until=lambda messages: len(messages) >= 1)
    assert runtime.error is None
    assert [letter["headers"]["dlq.error.type"] for letter in letters] == ["ForgedEvent"]
    assert ScheduledReminder.objects.get(pk=real["data"]["reminder_id"]).status == "pending"


# -- the audit trail: only task events our services wrote ----------------------------------------


def task_events_of(user, title):
    """A real task of ``user`` created and renamed: its task events as our relay would publish them."""
    task = task_create(user=user, context=API, title=title)
    task_update(task=task, context=API, title=f"{title}, renamed")
    rows = OutboxEvent.objects.filter(key=str(task.id), event_type__startswith="task.").order_by("id")
    return [json.loads(row.payload) for row in rows]


def test_a_producer_cannot_write_audit_entries_and_the_real_ones_are_recorded_once(isolated_kafka, victim, intruder):
    created, updated = task_events_of(victim, "Pay rent")
    forgeries = [
        make_event("task.deleted", updated["data"], source="todo-api", correlation_id="forged"),  # a deletion that never was
        make_event("task.updated", {**updated["data"], "title": "Transfer to IBAN XX00"}, source="todo-api", correlation_id="forged"),
        make_event("task.updated", {**updated["data"], "user_id": str(intruder.id)}, source="todo-api", correlation_id="forged"),
        make_event("task.created", {**created["data"], "task_id": str(uuid.uuid4())}, source="todo-api", correlation_id="forged"),
    ]
    # One partition, real and forged interleaved: batches fail and are re-run one event at a time.
    events = [created, *forgeries[:2], updated, *forgeries[2:]]
    with running(ConsumerRuntime(get_consumer("audit"))) as runtime:
        TestProducer().events(events, key=created["data"]["task_id"])
        letters = read_topic(dead_letter_topic(TASK_EVENTS), until=lambda messages: len(messages) >= len(forgeries))
        assert wait_for(lambda: AuditEntry.objects.count() == 2, timeout=60)
    assert runtime.error is None
    assert [letter["headers"]["dlq.error.type"] for letter in letters] == ["ForgedEvent"] * len(forgeries)
    assert sorted(str(e) for e in AuditEntry.objects.values_list("event_id", flat=True)) == sorted(
        [created["event_id"], updated["event_id"]]
    )
