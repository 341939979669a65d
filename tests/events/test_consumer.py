"""The consumer runtime against the real broker and database: dead letters, retries, idempotency."""

import dataclasses
import json
import threading
import uuid
from collections import Counter
from datetime import datetime

import pytest
from prometheus_client import REGISTRY

from audit.handlers import record_task_event, record_task_events
from audit.models import AuditEntry
from events.consumer import ConsumerRuntime, DeadLetterRateExceeded
from events.models import ProcessedEvent
from events.registry import ConsumerSpec, RetryPolicy, get_consumer
from events.topics import TASK_EVENTS, group_name, topic_name
from tests.events.kafka_helpers import (
    TestProducer,
    message_count,
    read_topic,
    running,
    task_event,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)

DLQ = TASK_EVENTS + ".dlq"
DLQ_HEADERS = {
    "dlq.original.topic", "dlq.original.partition", "dlq.original.offset", "dlq.consumer.group",
    "dlq.error.type", "dlq.error.message", "dlq.attempts", "dlq.failed_at",
}


class FlakyHandler:
    """A handler that fails the first ``failures`` runs per event, then succeeds, counting every run."""

    def __init__(self, failures=0):
        self.failures = failures
        self.runs = Counter()
        self.succeeded = set()
        self._lock = threading.Lock()

    def __call__(self, event):
        with self._lock:
            self.runs[event["event_id"]] += 1
            run = self.runs[event["event_id"]]
        if run <= self.failures:
            raise RuntimeError(f"handler broke on run {run}")
        self.succeeded.add(event["event_id"])


def test_spec(handler, *, max_attempts=3):
    return ConsumerSpec(
        name=f"test-{uuid.uuid4().hex[:6]}",
        topic=TASK_EVENTS,
        group=f"test-group-{uuid.uuid4().hex[:6]}",
        handler=handler,
        retry=RetryPolicy(max_attempts=max_attempts, initial_backoff=0.01, multiplier=2.0, max_backoff=0.05),
    )


test_spec.__test__ = False


def test_poison_messages_land_in_the_dead_letter_topic_with_every_header_and_a_later_event_is_processed(isolated_kafka):
    producer = TestProducer()
    key = str(uuid.uuid4())  # one key: one partition, so the valid event comes after the poison
    not_json = producer.raw(TASK_EVENTS, b"{this is not json", key=key, headers=[("trace", "abc")])
    seed_test_message = b'{"event_type": "task.created", "data": {"task_id": "123", "title": "Test"}}'
    incomplete = producer.raw(TASK_EVENTS, seed_test_message, key=key)
    valid = task_event(task_id=key)
    producer.event(valid)

    with running(ConsumerRuntime(get_consumer("audit"))) as consumer:
        assert wait_for(lambda: AuditEntry.objects.filter(event_id=valid["event_id"]).exists(), timeout=60)
    assert consumer.error is None

    letters = read_topic(DLQ, until=lambda messages: len(messages) >= 2)
    assert [letter["value"] for letter in letters] == [b"{this is not json", seed_test_message]
    for letter, (partition, offset) in zip(letters, [not_json, incomplete]):
        headers = letter["headers"]
        assert DLQ_HEADERS <= set(headers)
        assert letter["key"] == key.encode()
        assert headers["dlq.original.topic"] == topic_name(TASK_EVENTS)
        assert (int(headers["dlq.original.partition"]), int(headers["dlq.original.offset"])) == (partition, offset)
        assert headers["dlq.consumer.group"] == group_name("audit-service")
        assert headers["dlq.attempts"] == "0"  # dead-lettered before any handler ran
        assert headers["dlq.failed_at"].endswith("Z") and datetime.fromisoformat(headers["dlq.failed_at"])
    assert letters[0]["headers"]["trace"] == "abc"  # original headers kept
    assert letters[0]["headers"]["dlq.error.type"] == "JSONDecodeError"
    assert letters[1]["headers"]["dlq.error.type"] == "InvalidEvent"
    assert "event_id" in letters[1]["headers"]["dlq.error.message"]


def test_an_unknown_event_type_is_skipped_and_counted_not_dead_lettered(isolated_kafka):
    handler = FlakyHandler()
    spec = test_spec(handler)
    producer = TestProducer()
    key = str(uuid.uuid4())
    unknown = {**task_event(task_id=key), "event_type": "task.archived"}
    producer.raw(TASK_EVENTS, json.dumps(unknown), key=key)
    valid = task_event(task_id=key)
    producer.event(valid)

    with running(ConsumerRuntime(spec)):
        assert wait_for(lambda: valid["event_id"] in handler.succeeded)
    assert unknown["event_id"] not in handler.runs
    assert message_count(DLQ) == 0
    assert REGISTRY.get_sample_value("todo_consumer_skipped_total", {"consumer": spec.name, "reason": "unknown_type"}) == 1


def test_a_handler_that_always_fails_is_dead_lettered_after_exactly_the_configured_attempts(isolated_kafka):
    handler = FlakyHandler(failures=1000)
    spec = test_spec(handler, max_attempts=4)
    event = task_event()
    partition, offset = TestProducer().event(event)

    with running(ConsumerRuntime(spec)):
        letters = read_topic(DLQ, until=lambda messages: len(messages) >= 1)
    assert handler.runs[event["event_id"]] == 4
    assert len(letters) == 1
    headers = letters[0]["headers"]
    assert json.loads(letters[0]["value"]) == event
    assert headers["event_id"] == event["event_id"] and headers["event_type"] == "task.created"
    assert headers["dlq.attempts"] == "4"
    assert headers["dlq.error.type"] == "RuntimeError"
    assert headers["dlq.error.message"] == "handler broke on run 4"
    assert (int(headers["dlq.original.partition"]), int(headers["dlq.original.offset"])) == (partition, offset)
    assert headers["dlq.consumer.group"] == group_name(spec.group)
    assert REGISTRY.get_sample_value("todo_consumer_retried_total", {"consumer": spec.name}) == 3
    # The failed runs were rolled back: the event is not recorded as processed.
    assert not ProcessedEvent.objects.filter(event_id=event["event_id"]).exists()


def test_a_handler_that_fails_twice_then_succeeds_is_not_dead_lettered(isolated_kafka):
    handler = FlakyHandler(failures=2)
    spec = test_spec(handler, max_attempts=3)
    event = task_event()
    TestProducer().event(event)

    with running(ConsumerRuntime(spec)):
        assert wait_for(lambda: event["event_id"] in handler.succeeded)
    assert handler.runs[event["event_id"]] == 3
    assert message_count(DLQ) == 0
    assert ProcessedEvent.objects.filter(consumer_group=group_name(spec.group), event_id=event["event_id"]).count() == 1


def test_the_same_event_delivered_twice_runs_the_handler_once(isolated_kafka):
    handler = FlakyHandler()
    spec = test_spec(handler)
    event, later = task_event(), task_event()
    producer = TestProducer()
    key = event["data"]["task_id"]
    producer.events([event, event, later], key=key)

    with running(ConsumerRuntime(spec)):
        assert wait_for(lambda: later["event_id"] in handler.succeeded)
    assert handler.runs == {event["event_id"]: 1, later["event_id"]: 1}
    assert REGISTRY.get_sample_value("todo_consumer_skipped_total", {"consumer": spec.name, "reason": "duplicate"}) == 1


def test_a_redelivery_to_a_restarted_consumer_changes_nothing(isolated_kafka):
    handler = FlakyHandler()
    spec = test_spec(handler)
    event = task_event()
    producer = TestProducer()
    producer.event(event)
    with running(ConsumerRuntime(spec)):
        assert wait_for(lambda: event["event_id"] in handler.succeeded)
    # The same event again (as after a crash before the commit), read by the restarted group.
    marker = task_event(task_id=event["data"]["task_id"])
    producer.events([event, marker])
    with running(ConsumerRuntime(spec)):
        assert wait_for(lambda: marker["event_id"] in handler.succeeded)
    assert handler.runs[event["event_id"]] == 1


def test_events_of_types_the_consumer_did_not_ask_for_are_acknowledged_without_running_the_handler(isolated_kafka):
    handler = FlakyHandler()
    spec = dataclasses.replace(test_spec(handler), event_types={"task.completed"})
    created, completed = task_event("task.created"), task_event("task.completed")
    TestProducer().events([created, completed], key=str(uuid.uuid4()))

    with running(ConsumerRuntime(spec)):
        assert wait_for(lambda: completed["event_id"] in handler.succeeded)
    assert created["event_id"] not in handler.runs
    assert message_count(DLQ) == 0


def test_the_consumer_stops_when_nearly_everything_is_dead_lettered(isolated_kafka):
    handler = FlakyHandler()
    runtime = ConsumerRuntime(test_spec(handler), dlq_stop_window=10, dlq_stop_ratio=0.9)
    TestProducer().raw_many(TASK_EVENTS, [(b"garbage", "same-key", None)] * 12)

    with running(runtime) as consumer:
        assert wait_for(lambda: not consumer.thread.is_alive(), timeout=60)
    assert isinstance(consumer.error, DeadLetterRateExceeded)
    assert "10 of the last 10 messages were dead-lettered" in str(consumer.error)
    # It stopped at the limit instead of dead-lettering the remaining two.
    assert message_count(DLQ) == 10


def test_a_failing_event_among_others_rolls_back_only_itself_and_is_dead_lettered_after_the_configured_attempts(
    isolated_kafka,
):
    # Events fetched together share one transaction; a failure must not lose or double its neighbours.
    events = [task_event() for _ in range(5)]
    broken = events[2]["event_id"]
    runs = Counter()

    def handler(event):
        runs[event["event_id"]] += 1
        if event["event_id"] == broken:
            raise ValueError("cannot audit this one")
        record_task_event(event)

    TestProducer().events(events, key=str(uuid.uuid4()))
    with running(ConsumerRuntime(test_spec(handler, max_attempts=3))):
        letters = read_topic(DLQ, until=lambda messages: len(messages) >= 1)
        assert wait_for(lambda: AuditEntry.objects.count() == 4)
    assert runs[broken] == 3
    assert letters[0]["headers"]["dlq.attempts"] == "3" and letters[0]["headers"]["event_id"] == broken
    stored = sorted(str(event_id) for event_id in AuditEntry.objects.values_list("event_id", flat=True))
    assert stored == sorted(event["event_id"] for event in events if event["event_id"] != broken)


def test_when_a_batch_handler_fails_each_event_is_retried_alone_and_only_the_faulty_one_is_dead_lettered(isolated_kafka):
    events = [task_event() for _ in range(5)]
    broken = events[3]["event_id"]
    runs = Counter()

    def handle_one(event):
        runs[event["event_id"]] += 1
        if event["event_id"] == broken:
            raise ValueError("cannot audit this one")
        record_task_events([event])

    def handle_many(batch):
        for event in batch:
            handle_one(event)

    spec = dataclasses.replace(test_spec(handle_one, max_attempts=3), batch_handler=handle_many)
    TestProducer().events(events, key=str(uuid.uuid4()))
    with running(ConsumerRuntime(spec)):
        letters = read_topic(DLQ, until=lambda messages: len(messages) >= 1)
        assert wait_for(lambda: AuditEntry.objects.count() == 4)
    # Its own three attempts, plus the batch run when the events arrived together.
    assert runs[broken] in (3, 4)
    assert letters[0]["headers"]["dlq.attempts"] == "3" and letters[0]["headers"]["event_id"] == broken
    assert message_count(DLQ) == 1
    stored = sorted(str(event_id) for event_id in AuditEntry.objects.values_list("event_id", flat=True))
    assert stored == sorted(event["event_id"] for event in events if event["event_id"] != broken)
