"""The audit service (group audit-service on task-events) stores every task event once."""

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest

from audit.models import AuditEntry
from events.consumer import ConsumerRuntime
from events.models import ProcessedEvent
from events.registry import get_consumer
from events.topics import TASK_EVENTS, topic_name
from tests.events.kafka_helpers import (
    TestProducer,
    running,
    task_event,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_every_task_event_is_stored_with_its_type_task_user_timestamps_data_metadata_and_coordinates(isolated_kafka):
    task_id = str(uuid.uuid4())
    events = [
        task_event("task.created", task_id=task_id, user_id="7", title="Water plants"),
        task_event("task.updated", task_id=task_id, user_id="7", title="Water the plants", version=2),
        task_event("task.completed", task_id=task_id, user_id="7", title="Water the plants", version=3),
        task_event("task.deleted", task_id=task_id, user_id="7", title="Water the plants", version=4),
    ]
    coordinates = TestProducer().events(events)

    with running(ConsumerRuntime(get_consumer("audit"))):
        assert wait_for(lambda: AuditEntry.objects.count() == 4)

    for event, (partition, offset) in zip(events, coordinates):
        entry = AuditEntry.objects.get(event_id=event["event_id"])
        assert entry.event_type == event["event_type"]
        assert str(entry.task_id) == task_id and entry.user_id == "7"
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
