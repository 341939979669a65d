"""The relay's Kafka publisher: Kafka reports only failed messages, so a window is acknowledged at once."""

import threading
import time
import uuid

from events.core.publishing import OutboxRow
from events.outbox import serialise
from events.transports.kafka.producer import KafkaPublisher
from testing.factories import sync_task_changed
from testing.kafka import read_events


def outbox_row(row_id, task):
    event = sync_task_changed(task)
    return OutboxRow(row_id, "task-updates", task, serialise(event), event["event_type"], event["event_id"],
                     time.time(), "")


def test_a_window_is_acknowledged_all_at_once_when_kafka_holds_none_of_it_and_its_messages_are_on_the_topic(
    kafka_namespace,
):
    tasks = [str(uuid.uuid4()) for _ in range(3)]
    rows = [outbox_row(row_id, tasks[row_id % 3]) for row_id in range(1, 31)]
    publisher = KafkaPublisher(threading.Event(), shutdown_grace=10)
    try:
        assert publisher.publish(rows[:20]) == {}  # nothing refused at produce()
        assert publisher.publish(rows[20:]) == {}
        assert set(publisher.in_flight) == {row.id for row in rows}
        answers = {}
        deadline = time.monotonic() + 60
        while publisher.in_flight and time.monotonic() < deadline:
            answers |= publisher.collect(0.5)
            # All or nothing: until Kafka holds none of them, no row is answered.
            assert not answers or not publisher.in_flight
        assert answers == {row.id: None for row in rows}
    finally:
        publisher.close()
    messages = read_events([row.event_id for row in rows], topics=["task-updates"])
    for task in tasks:  # each once, in order per task
        assert [m.event["event_id"] for m in messages if m.key == task] == [row.event_id for row in rows if row.key == task]
