"""The consumer runtime against the real broker and database: dead letters, retries, idempotency."""

import dataclasses
import json
import threading
import time
import uuid
from collections import Counter
from datetime import datetime

import pytest
from django.db import connection
from prometheus_client import REGISTRY

from audit.handlers import record_task_event, record_task_events
from audit.models import AuditEntry
from events.consumer import ConsumerRuntime
from events.core.breaker import DeadLetterRateExceeded
from events.core.dead_letters import DEAD_LETTER_MAX_BYTES, HEADER_VALUE_MAX_BYTES
from events.core.retry import RetryPolicy
from events.models import ProcessedEvent
from events.registry import ConsumerSpec, get_consumer
from events.schemas import ForgedEvent
from events.topics import TASK_EVENTS, group_name, topic_name
from testing.factories import task_event
from testing.kafka import TestProducer, message_count, read_topic, run_in_main_thread, running
from testing.waits import wait_for

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


def test_the_consumer_stops_when_the_handler_fails_nearly_every_event(isolated_kafka):
    handler = FlakyHandler(failures=1000)
    runtime = ConsumerRuntime(test_spec(handler, max_attempts=1), dlq_stop_window=10, dlq_stop_ratio=0.9)
    TestProducer().events([task_event() for _ in range(12)], key="same-key")

    with running(runtime) as consumer:
        assert wait_for(lambda: not consumer.thread.is_alive(), timeout=60)
    assert isinstance(consumer.error, DeadLetterRateExceeded)
    assert "the handler failed 10 of the last 10 events" in str(consumer.error)
    # It stopped at the limit instead of dead-lettering the remaining two.
    assert message_count(DLQ) == 10


def test_junk_and_forged_messages_never_trip_the_breaker_however_many_in_a_row(isolated_kafka):
    # The breaker is for a bad deploy: anyone who can write to the topic must not be able to stop a service.
    forged = [task_event() for _ in range(20)]
    forged_ids = {event["event_id"] for event in forged}
    handler = FlakyHandler()

    def refuse_forgeries(event):
        if event["event_id"] in forged_ids:
            raise ForgedEvent("the task belongs to someone else")
        handler(event)

    runtime = ConsumerRuntime(test_spec(refuse_forgeries), dlq_stop_window=10, dlq_stop_ratio=0.9)
    producer = TestProducer()
    producer.raw_many(TASK_EVENTS, [(b"junk %d" % n, "same-key", None) for n in range(200)])
    producer.events(forged, key="same-key")
    valid = task_event()
    producer.event(valid, key="same-key")

    with running(runtime) as consumer:
        assert wait_for(lambda: valid["event_id"] in handler.succeeded, timeout=90)
        assert consumer.error is None and consumer.thread.is_alive()
    letters = read_topic(DLQ, until=lambda messages: len(messages) >= 220)
    assert len(letters) == 220 == message_count(DLQ)
    error_types = Counter(letter["headers"]["dlq.error.type"] for letter in letters)
    assert error_types == {"JSONDecodeError": 200, "ForgedEvent": 20}
    assert {letter["headers"]["dlq.attempts"] for letter in letters[200:]} == {"1"}  # no retries for a forgery


def nested(depth):
    value = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def hostile_messages():
    """(name, value) of messages that are not events, each as bytes on the wire (None: a tombstone)."""
    valid = task_event()
    event_json = json.dumps(valid)
    deep = {**valid, "data": {**valid["data"], "extra": nested(500)}}  # within json's limit, far past ours
    return [
        ("nested past the recursion limit", b"[" * 5000),
        ("objects nested past the recursion limit", b'{"a":' * 5000),
        ("not UTF-8", b'{"title": "\xff\xfe"}'),
        ("UTF-16", event_json.encode("utf-16")),
        ("a tombstone", None),
        ("empty", b""),
        ("a JSON list", b"[1, 2, 3]"),
        ("a JSON number", b"42"),
        ("a JSON string", b'"task.created"'),
        ("JSON null", b"null"),
        ("deep nesting inside a valid event", json.dumps(deep).encode()),
        ("NaN inside a valid event", event_json.replace('"priority": 4', '"priority": 4, "score": NaN').encode()),
        ("an infinite number", event_json.replace('"priority": 4', '"priority": 4, "score": 1e999').encode()),
        ("a NUL in the title", json.dumps({**valid, "data": {**valid["data"], "title": "a\u0000b"}}).encode()),
        ("a lone surrogate", event_json.replace('"Buy milk"', '"\\ud800"').encode()),
        ("a 5000-digit number", event_json.replace('"priority": 4', '"priority": ' + "9" * 5000).encode()),
        ("an event_id that is no UUID", json.dumps({**valid, "event_id": "not-a-uuid"}).encode()),
    ]


def test_every_kind_of_unparsable_message_is_dead_lettered_unhandled_and_the_events_after_it_are_processed(
    isolated_kafka,
):
    spec = test_spec(record_task_event)  # stores the events in PostgreSQL
    key = str(uuid.uuid4())
    hostile = hostile_messages()
    after = task_event(task_id=key)
    producer = TestProducer()
    producer.raw_many(TASK_EVENTS, [(value, key, None) for _, value in hostile])
    producer.event(after)

    with running(ConsumerRuntime(spec)) as consumer:
        assert wait_for(lambda: AuditEntry.objects.filter(event_id=after["event_id"]).exists(), timeout=90)
    assert consumer.error is None
    letters = read_topic(DLQ, until=lambda messages: len(messages) >= len(hostile))
    assert [letter["value"] for letter in letters] == [value for _, value in hostile]
    assert [letter["headers"]["dlq.attempts"] for letter in letters] == ["0"] * len(hostile)
    assert AuditEntry.objects.count() == 1  # none of them reached the handler


def test_a_message_too_large_for_a_dead_letter_is_cut_and_says_so(isolated_kafka):
    producer = TestProducer(**{"message.max.bytes": 1_048_576})
    key = str(uuid.uuid4())
    huge = b"x" * 1_000_000  # as large as the broker takes: with the dlq.* headers it no longer fits
    forged_origin = ("dlq.original.topic", b"somebody-elses-topic")
    producer.raw(TASK_EVENTS, huge, key=key, headers=[("trace", b"t" * 5000), forged_origin])
    after = task_event(task_id=key)
    producer.event(after)
    handler = FlakyHandler()

    with running(ConsumerRuntime(test_spec(handler))) as consumer:
        assert wait_for(lambda: after["event_id"] in handler.succeeded, timeout=90)
    assert consumer.error is None
    [letter] = read_topic(DLQ, until=lambda messages: len(messages) >= 1)
    headers = letter["headers"]
    assert headers["dlq.truncated"] == "headers=5005,value=1000000"  # the original sizes: "trace" and its value
    assert huge.startswith(letter["value"]) and 900_000 < len(letter["value"]) <= DEAD_LETTER_MAX_BYTES
    assert headers["trace"] == "t" * HEADER_VALUE_MAX_BYTES
    assert headers["dlq.original.topic"] == topic_name(TASK_EVENTS)  # the forged one is gone
    assert headers["dlq.error.type"] == "JSONDecodeError"


def test_a_handler_that_never_returns_is_cut_at_its_budget_retried_dead_lettered_and_the_next_event_is_processed(
    isolated_kafka,
):
    spinning, sleeping, after = task_event(), task_event(), task_event()
    handler = FlakyHandler()
    started = Counter()

    def handler_with_a_bug(event):
        started[event["event_id"]] += 1
        if event["event_id"] == spinning["event_id"]:
            while True:  # pure-Python CPU work that never ends
                pass
        if event["event_id"] == sleeping["event_id"]:
            time.sleep(3600)  # a wait that never ends
        handler(event)

    runtime = ConsumerRuntime(test_spec(handler_with_a_bug, max_attempts=2), handler_timeout=0.5)
    TestProducer().events([spinning, sleeping, after], key=str(uuid.uuid4()))

    began = time.monotonic()
    run_in_main_thread(runtime, until=lambda: after["event_id"] in handler.succeeded, timeout=60)
    assert after["event_id"] in handler.succeeded
    assert time.monotonic() - began < 30  # 2 x 2 runs of 0.5 s, plus the batch run, plus start-up
    # A failed batch run counts as the first attempt of the event that failed in it.
    assert started[spinning["event_id"]] == 2 and started[sleeping["event_id"]] == 2
    letters = read_topic(DLQ, until=lambda messages: len(messages) >= 2)
    assert [letter["headers"]["event_id"] for letter in letters] == [spinning["event_id"], sleeping["event_id"]]
    for letter in letters:
        assert letter["headers"]["dlq.error.type"] == "HandlerTimedOut"
        assert letter["headers"]["dlq.attempts"] == "2"


def test_a_handler_stuck_in_the_database_is_cut_by_the_statement_timeout_even_outside_the_main_thread(isolated_kafka):
    stuck, after = task_event(), task_event()
    handler = FlakyHandler()

    def handler_waiting_for_the_database(event):
        if event["event_id"] == stuck["event_id"]:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_sleep(3600)")
        handler(event)

    runtime = ConsumerRuntime(test_spec(handler_waiting_for_the_database, max_attempts=2), handler_timeout=0.5)
    TestProducer().events([stuck, after], key=str(uuid.uuid4()))

    with running(runtime) as consumer:
        assert wait_for(lambda: after["event_id"] in handler.succeeded, timeout=60)
    assert consumer.error is None  # a cancelled statement is the event's failure, not a database outage
    [letter] = read_topic(DLQ, until=lambda messages: len(messages) >= 1)
    assert letter["headers"]["event_id"] == stuck["event_id"]
    assert letter["headers"]["dlq.error.type"] == "OperationalError"
    assert "statement timeout" in letter["headers"]["dlq.error.message"]


def test_the_loop_stays_live_through_a_long_batch_of_quick_events(isolated_kafka, settings):
    settings.CONSUMER_DLQ_WRITE_TIMEOUT_SECONDS = 0.1
    events = [task_event() for _ in range(20)]
    handler = FlakyHandler()

    def quick_handler(event):
        time.sleep(0.25)  # well within the budget; all of them take longer than the liveness limit
        handler(event)

    runtime = ConsumerRuntime(test_spec(quick_handler), handler_timeout=0.5)
    assert runtime.liveness_limit() < 0.25 * len(events) / 2
    TestProducer().events(events, key=str(uuid.uuid4()))
    verdicts = []
    with running(runtime):
        while not wait_for(lambda: len(handler.succeeded) == len(events), timeout=0.05):
            verdicts.append(runtime.health()[0])
            assert len(verdicts) < 2000, "the events were not processed"
    assert verdicts and all(verdicts)


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
