"""The audit service (group audit-service on task-events) stores every task event once."""

import dataclasses
import json
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.handlers import check_against_sync_log
from audit.models import AuditEntry
from events.consumer import ConsumerRuntime
from events.models import OutboxEvent, ProcessedEvent
from events.registry import get_consumer
from events.schemas import ForgedEvent, InvalidEvent, make_event
from events.topics import TASK_EVENTS, topic_name
from tasks.events import EventContext
from tasks.models import User
from tasks.services import task_complete, task_create, task_delete, task_update
from testing.factories import UserFactory, task_event
from testing.kafka import TestProducer, running
from testing.waits import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

API = EventContext(source="todo-api", correlation_id="req-1")


@pytest.fixture
def owner():
    return UserFactory(username="owner")


def real_task_events(user):
    """Create, edit, complete and delete a task through the services; return its task events as the relay publishes them."""
    task = task_create(user=user, context=API, title="Water plants")
    task = task_update(task=task, context=API, title="Water the plants")
    task = task_complete(task=task, context=API)
    task_delete(task=task, context=API)
    rows = OutboxEvent.objects.filter(key=str(task.id), event_type__startswith="task.").order_by("id")
    return [json.loads(row.payload) for row in rows]


def test_every_task_event_is_stored_with_its_type_task_user_timestamps_data_metadata_and_coordinates(isolated_kafka, owner):
    events = real_task_events(owner)
    assert [event["event_type"] for event in events] == ["task.created", "task.updated", "task.completed", "task.deleted"]
    coordinates = TestProducer().events(events)

    with running(ConsumerRuntime(get_consumer("audit"))):
        assert wait_for(lambda: AuditEntry.objects.count() == 4)

    for event, (partition, offset) in zip(events, coordinates):
        entry = AuditEntry.objects.get(event_id=event["event_id"])
        assert entry.event_type == event["event_type"]
        assert str(entry.task_id) == event["data"]["task_id"] and entry.user_id == str(owner.id)
        assert entry.title == event["data"]["title"]
        assert entry.occurred_at == datetime.fromisoformat(event["timestamp"]).astimezone(UTC)
        assert entry.data == event["data"] and entry.metadata == event["metadata"]
        assert (entry.topic, entry.partition, entry.offset) == (topic_name(TASK_EVENTS), partition, offset)


def test_the_same_event_delivered_twice_yields_one_audit_row(isolated_kafka):
    event, later = task_event(), task_event()
    TestProducer().events([event, event, later], key=event["data"]["task_id"])

    with running(ConsumerRuntime(get_consumer("audit"))):
        assert wait_for(lambda: AuditEntry.objects.filter(event_id=later["event_id"]).exists())
    assert AuditEntry.objects.filter(event_id=event["event_id"]).count() == 1
    assert AuditEntry.objects.count() == 2


def test_an_event_handled_by_a_second_consumer_group_is_still_stored_once(isolated_kafka):
    # The runtime's processed-event record is per group; the unique event_id guards the table itself.
    event = task_event()
    TestProducer().event(event)
    audit = get_consumer("audit")
    other_group = dataclasses.replace(audit, name="audit-rebuild", group="audit-rebuild")
    for spec in (audit, other_group):
        runtime = ConsumerRuntime(spec)
        with running(runtime):
            assert wait_for(lambda: ProcessedEvent.objects.filter(consumer_group=runtime.group).exists())
    assert AuditEntry.objects.filter(event_id=event["event_id"]).count() == 1


# -- only what our services wrote: every event checked against the sync log, one query a batch --


def forged(real, event_type=None, **changes):
    return make_event(event_type or real["event_type"], {**real["data"], **changes}, source="todo-api", correlation_id="forged")


def test_a_whole_batch_is_checked_against_the_sync_log_in_one_query(owner):
    events = real_task_events(owner) + [task_event(version=n) for n in range(1, 41)]
    with CaptureQueriesContext(connection) as queries:
        check_against_sync_log(events)  # raises on any event the log does not vouch for
    assert len(queries.captured_queries) == 1


FORGERIES = {
    "a task the log never had": lambda real: task_event(logged=False),
    "a version the task never had": lambda real: forged(real, version=99),
    "another owner": lambda real: forged(real, user_id=str(User.objects.create_user("intruder").id)),
    "another title": lambda real: forged(real, title="Your account is locked: call +1 555 0100"),
    "another type of change": lambda real: forged(real, "task.deleted"),
}


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
def test_a_task_event_the_sync_log_contradicts_is_forged_and_fails_its_whole_batch(owner, forge):
    created, updated, *_ = real_task_events(owner)
    check_against_sync_log([created, updated])
    with pytest.raises(ForgedEvent):
        check_against_sync_log([created, forge(updated)])


def test_a_task_id_that_is_no_uuid_is_invalid_not_a_database_error(owner):
    with pytest.raises(InvalidEvent, match="task_id"):
        check_against_sync_log([task_event(logged=False, task_id="not-a-uuid")])
