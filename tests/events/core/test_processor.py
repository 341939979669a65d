"""The processing of a batch on in-memory messages: real handlers and PostgreSQL, no broker.

The same ``EventProcessor.process`` runs under ``run_consumer`` (events.consumer) and for Dapr
deliveries (events.transports.dapr); here its messages are plain ``Message`` values and its dead
letters go to a list, so every rule of processing is checked without Kafka.
"""

import dataclasses
import json
import uuid

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from prometheus_client import REGISTRY

from audit.models import AuditEntry
from events.core import headers
from events.core.breaker import DeadLetterRateExceeded
from events.core.dead_letters import DeadLetterWriteFailed
from events.core.handling import delivery_of
from events.core.message import Message
from events.core.outcomes import DUPLICATE, FAILED, INVALID, PROCESSED_OUTCOME, SKIP
from events.core.processor import EventProcessor
from events.core.retry import RetryPolicy
from events.models import ProcessedEvent
from events.registry import ConsumerSpec, get_consumer
from events.schemas import ForgedEvent
from events.topics import TASK_EVENTS, group_name, topic_name
from testing.factories import task_event

# Plain test transactions: the processor's own transactions nest in them as savepoints, and nothing
# here needs a commit (no NOTIFY, no on_commit hook). A handler failure, though, makes the processor
# drop the connection before the next attempt (close_old_connections), which ends a test transaction:
# those tests run on real transactions (RETRIES_COMMIT).
pytestmark = pytest.mark.django_db
RETRIES_COMMIT = pytest.mark.django_db(transaction=True)


class DeadLetters:
    """Keeps the dead letters it is given; with ``refuse`` set, answers as a broker that did not confirm."""

    def __init__(self, refuse=None):
        self.letters, self.refuse = [], refuse

    def write(self, topic, *, key, value, headers):
        if self.refuse:
            return self.refuse
        self.letters.append({"topic": topic, "key": key, "value": value, "headers": dict(headers)})
        return None


class Handler:
    """Records the events it handled; fails the first ``failures`` runs of each with ``error``."""

    def __init__(self, failures=0, error=RuntimeError("boom")):
        self.failures, self.error = failures, error
        self.runs, self.handled = {}, []

    def __call__(self, event):
        self.runs[event["event_id"]] = self.runs.get(event["event_id"], 0) + 1
        if self.runs[event["event_id"]] <= self.failures:
            raise self.error
        self.handled.append(event["event_id"])


def spec(handler, *, max_attempts=3, **fields):
    return ConsumerSpec(
        name=f"fast-{uuid.uuid4().hex[:6]}", topic=TASK_EVENTS, group=f"fast-{uuid.uuid4().hex[:6]}", handler=handler,
        retry=RetryPolicy(max_attempts=max_attempts, initial_backoff=0.01, multiplier=2.0, max_backoff=0.02), **fields,
    )


offsets = iter(range(10**9))


def message(value, *, key=None, message_headers=()):
    if isinstance(value, dict):
        key = key or value["data"]["task_id"]
        message_headers = [*headers.event_headers(value["event_type"], value["event_id"]).items(), *message_headers]
        value = json.dumps(value).encode()
    return Message(topic=topic_name(TASK_EVENTS), value=value, key=key, headers=list(message_headers), partition=1,
                   offset=next(offsets))


def process(processor, *messages):
    done = []
    processor.process(list(messages), done)
    return [outcome for _, outcome in done]


def test_a_real_handler_runs_once_per_event_and_a_redelivery_changes_nothing():
    event = task_event()
    processor = EventProcessor(get_consumer("audit"), DeadLetters())

    assert process(processor, message(event)) == [PROCESSED_OUTCOME]
    assert process(processor, message(event)) == [DUPLICATE]

    assert AuditEntry.objects.filter(event_id=event["event_id"]).count() == 1
    assert ProcessedEvent.objects.filter(consumer_group=group_name("audit-service"), event_id=event["event_id"]).exists()


def test_the_same_event_twice_in_one_batch_is_handled_once():
    handler = Handler()
    event = task_event()
    assert process(EventProcessor(spec(handler), DeadLetters()), message(event), message(event)) == [
        PROCESSED_OUTCOME, DUPLICATE
    ]
    assert handler.handled == [event["event_id"]]


def test_a_message_that_is_no_event_is_dead_lettered_at_once_with_every_header_and_the_next_is_handled():
    handler, dead_letters = Handler(), DeadLetters()
    processor = EventProcessor(spec(handler), dead_letters)
    forged_dlq_header = (headers.DLQ_ORIGINAL_TOPIC, b"somewhere-else")
    poison = message(b"{not json", key=b"k", message_headers=[("trace", b"abc"), forged_dlq_header])
    valid = task_event()

    assert process(processor, poison, message(valid)) == [INVALID, PROCESSED_OUTCOME]

    [letter] = dead_letters.letters
    assert (letter["topic"], letter["key"], letter["value"]) == (topic_name(TASK_EVENTS + ".dlq"), b"k", b"{not json")
    assert set(headers.DLQ_HEADERS) <= set(letter["headers"])
    assert letter["headers"][headers.DLQ_ORIGINAL_TOPIC] == topic_name(TASK_EVENTS)  # the forged one dropped
    assert letter["headers"][headers.DLQ_ORIGINAL_OFFSET] == str(poison.offset)
    assert letter["headers"][headers.DLQ_ATTEMPTS] == "0"
    assert letter["headers"][headers.DLQ_ERROR_TYPE] == "JSONDecodeError"
    assert letter["headers"]["trace"] == b"abc"
    assert handler.handled == [valid["event_id"]]


@pytest.mark.parametrize(
    "value",
    [None, b"\xff\xfe", json.dumps([1, 2]).encode(), b"[" * 100 + b"]" * 100, b'{"x": NaN}', "\"\\u0000\"".encode()],
    ids=["tombstone", "not-utf8", "not-an-object", "too-deep", "nan", "nul"],
)
def test_whatever_a_message_holds_it_is_dead_lettered_not_raised(value):
    dead_letters = DeadLetters()
    assert process(EventProcessor(spec(Handler()), dead_letters), message(value)) == [INVALID]
    assert len(dead_letters.letters) == 1


def test_an_unknown_type_and_a_type_not_asked_for_are_skipped_without_a_dead_letter():
    handler, dead_letters = Handler(), DeadLetters()
    only_completions = spec(handler, event_types={"task.completed"})
    processor = EventProcessor(only_completions, dead_letters)
    unknown = {**task_event(), "event_type": "task.archived"}

    assert process(processor, message(unknown), message(task_event("task.created"))) == [SKIP, SKIP]

    assert handler.runs == {} and dead_letters.letters == []
    samples = {
        reason: REGISTRY.get_sample_value("todo_consumer_skipped_total", {"consumer": only_completions.name, "reason": reason})
        for reason in ("unknown_type", "not_subscribed")
    }
    assert samples == {"unknown_type": 1, "not_subscribed": 1}


@RETRIES_COMMIT
def test_a_failing_handler_is_retried_and_then_dead_lettered_with_its_attempts_and_later_events_go_on():
    handler, dead_letters = Handler(), DeadLetters()

    def fails_on_bad_titles(event):
        if event["data"]["title"] == "bad":
            raise RuntimeError("boom")
        handler(event)

    runs = []
    processor = EventProcessor(spec(lambda event: (runs.append(event["event_id"]), fails_on_bad_titles(event)),
                                    max_attempts=3), dead_letters)
    failing, later = task_event(title="bad"), task_event()

    assert process(processor, message(failing), message(later)) == [FAILED, PROCESSED_OUTCOME]

    assert runs.count(failing["event_id"]) == 3  # the failed batch run was its first attempt
    [letter] = dead_letters.letters
    assert letter["headers"][headers.DLQ_ATTEMPTS] == "3"
    assert letter["headers"][headers.DLQ_ERROR_MESSAGE] == "boom"
    assert handler.handled == [later["event_id"]]
    assert not ProcessedEvent.objects.filter(event_id=failing["event_id"]).exists()


@RETRIES_COMMIT
def test_a_handler_that_recovers_within_its_retries_takes_effect_once():
    handler = Handler(failures=2)
    event = task_event()
    assert process(EventProcessor(spec(handler, max_attempts=3), DeadLetters()), message(event)) == [PROCESSED_OUTCOME]
    assert handler.runs[event["event_id"]] == 3 and handler.handled == [event["event_id"]]
    assert ProcessedEvent.objects.filter(event_id=event["event_id"]).count() == 1


def test_a_forgery_the_handler_finds_is_dead_lettered_without_retries():
    handler, dead_letters = Handler(failures=99, error=ForgedEvent("not the owner's task")), DeadLetters()
    event = task_event()
    assert process(EventProcessor(spec(handler, max_attempts=5), dead_letters), message(event)) == [INVALID]
    assert handler.runs[event["event_id"]] == 1
    assert dead_letters.letters[0]["headers"][headers.DLQ_ERROR_TYPE] == "ForgedEvent"
    assert not ProcessedEvent.objects.filter(event_id=event["event_id"]).exists()  # rolled back with the effects


@RETRIES_COMMIT
def test_a_statement_past_the_budget_fails_the_event_like_any_error():
    def slow(event):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(5)")

    dead_letters = DeadLetters()
    processor = EventProcessor(spec(slow, max_attempts=1), dead_letters, handler_timeout=0.2)
    assert process(processor, message(task_event())) == [FAILED]
    assert "statement timeout" in dead_letters.letters[0]["headers"][headers.DLQ_ERROR_MESSAGE]


@RETRIES_COMMIT
def test_a_lost_database_connection_stops_processing_instead_of_dead_lettering():
    dead_letters = DeadLetters()
    handler = Handler(failures=99, error=OperationalError("server closed the connection unexpectedly"))
    processor = EventProcessor(spec(handler, max_attempts=2), dead_letters)
    with pytest.raises(OperationalError):
        process(processor, message(task_event()))
    assert dead_letters.letters == []


def test_a_dead_letter_the_broker_does_not_confirm_raises_and_the_message_is_not_done():
    processor = EventProcessor(spec(Handler()), DeadLetters(refuse="timed out"))
    done = []
    with pytest.raises(DeadLetterWriteFailed, match="timed out"):
        processor.process([message(b"junk")], done)
    assert done == []


@RETRIES_COMMIT
def test_the_consumer_stops_when_its_handler_fails_nearly_every_event_but_not_for_invalid_messages():
    def fails_on_bad_titles(event):
        if event["data"]["title"] == "bad":
            raise RuntimeError("boom")

    processor = EventProcessor(spec(fails_on_bad_titles, max_attempts=1), DeadLetters(), dlq_stop_ratio=0.5,
                               dlq_stop_window=4)
    process(processor, *[message(b"junk") for _ in range(10)])  # the sender's fault: never trips
    process(processor, message(task_event(title="bad")), message(task_event(title="bad")), message(task_event()))
    with pytest.raises(DeadLetterRateExceeded, match="failed 3 of the last 4 events"):
        process(processor, message(task_event(title="bad")))


def test_a_batch_handler_takes_the_fresh_events_together_and_a_failure_falls_back_to_one_by_one():
    batches = []

    def batch_handler(events):
        batches.append([event["event_id"] for event in events])
        if len(events) > 1 and any(event["data"]["title"] == "bad" for event in events):
            raise RuntimeError("one bad event in the batch")

    handler = Handler()
    processor = EventProcessor(spec(handler, batch_handler=batch_handler), DeadLetters())
    first, second, seen = task_event(), task_event(), task_event()
    process(processor, message(seen))
    batches.clear()

    assert process(processor, message(first), message(seen), message(second)) == [
        PROCESSED_OUTCOME, DUPLICATE, PROCESSED_OUTCOME
    ]
    assert batches == [[first["event_id"], second["event_id"]]]

    bad, good = task_event(title="bad"), task_event()
    assert process(processor, message(bad), message(good)) == [PROCESSED_OUTCOME, PROCESSED_OUTCOME]
    assert handler.handled[-2:] == [bad["event_id"], good["event_id"]]  # re-run one by one with the handler


def test_a_handler_reads_where_its_event_came_from():
    seen = []
    processor = EventProcessor(spec(lambda event: seen.append(delivery_of(event))), DeadLetters())
    delivered = message(task_event())
    process(processor, delivered)
    [delivery] = seen
    assert (delivery.topic, delivery.partition, delivery.offset) == (delivered.topic, 1, delivered.offset)
    assert delivery.consumer_group == processor.group


@RETRIES_COMMIT
def test_asked_to_stop_during_a_backoff_it_reports_only_what_was_finished_and_writes_no_dead_letter():
    dead_letters = DeadLetters()

    def fails_and_asks_to_stop(event):
        if event["data"]["title"] == "bad":
            processor.stop.set()  # as SIGTERM does
            raise RuntimeError("boom")

    processor = EventProcessor(spec(fails_and_asks_to_stop, max_attempts=5), dead_letters)
    processor.retry = RetryPolicy(max_attempts=5, initial_backoff=30.0)
    ok, failing = task_event(), task_event(title="bad")

    assert process(processor, message(ok), message(failing)) == [PROCESSED_OUTCOME]

    assert dead_letters.letters == []
    assert not ProcessedEvent.objects.filter(event_id=failing["event_id"]).exists()  # redelivered after a restart


def test_a_real_batch_handler_keeps_order_skips_a_duplicate_and_dead_letters_a_forgery_in_the_middle_once():
    dead_letters = DeadLetters()
    processor = EventProcessor(get_consumer("audit"), dead_letters)
    seen, first, forged, last = task_event(), task_event(), task_event(logged=False), task_event()
    process(processor, message(seen))

    batch = [message(first), message(seen), message(forged), message(last), message(first)]
    assert process(processor, *batch) == [PROCESSED_OUTCOME, DUPLICATE, INVALID, PROCESSED_OUTCOME, DUPLICATE]

    stored = AuditEntry.objects.filter(event_id__in=[first["event_id"], last["event_id"], forged["event_id"]])
    assert sorted(str(entry.event_id) for entry in stored) == sorted([first["event_id"], last["event_id"]])
    assert [(entry.partition, entry.offset) for entry in AuditEntry.objects.filter(event_id=last["event_id"])] == [
        (1, batch[3].offset)
    ]
    [letter] = dead_letters.letters
    assert letter["headers"][headers.DLQ_ERROR_TYPE] == "ForgedEvent"
    assert letter["headers"][headers.DLQ_ORIGINAL_OFFSET] == str(batch[2].offset)
    assert letter["headers"][headers.DLQ_ATTEMPTS] == "1"  # the failed batch run was nobody's attempt; its own run was
    assert not ProcessedEvent.objects.filter(event_id=forged["event_id"]).exists()


def statements_for(processor, events):
    with CaptureQueriesContext(connection) as queries:
        assert set(process(processor, *[message(event) for event in events])) == {PROCESSED_OUTCOME}
    return len(queries)


def test_a_batch_costs_the_same_few_statements_whatever_its_size():
    processor = EventProcessor(get_consumer("audit"), DeadLetters())
    small, large = [task_event() for _ in range(2)], [task_event() for _ in range(40)]
    statements = statements_for(processor, small)
    assert statements_for(processor, large) == statements <= 8
    assert AuditEntry.objects.filter(event_id__in=[event["event_id"] for event in small + large]).count() == 42


@RETRIES_COMMIT
def test_an_event_that_fails_a_real_batch_handler_is_retried_alone_and_the_others_of_its_batch_take_effect_once():
    dead_letters = DeadLetters()
    processor = EventProcessor(dataclasses.replace(get_consumer("audit"), retry=RetryPolicy(
        max_attempts=2, initial_backoff=0.01, max_backoff=0.01)), dead_letters)
    before, failing, after = task_event(), task_event(), task_event()
    failing = {**failing, "timestamp": "not a time"}  # the schema leaves formats to the handler, which fails on it

    assert process(processor, message(before), message(failing), message(after)) == [
        PROCESSED_OUTCOME, FAILED, PROCESSED_OUTCOME
    ]
    assert AuditEntry.objects.filter(event_id__in=[before["event_id"], after["event_id"]]).count() == 2
    assert dead_letters.letters[0]["headers"][headers.DLQ_ATTEMPTS] == "2"
    assert not AuditEntry.objects.filter(event_id=failing["event_id"]).exists()
