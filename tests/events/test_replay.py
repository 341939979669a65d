"""replay_dlq sends dead letters back to their topic, remembers its position and caps replays."""

import json
import uuid
from io import StringIO

import pytest
from django.core.management import call_command

from events.consumer import ConsumerRuntime
from events.core.headers import DLQ_TRUNCATED
from events.core.retry import RetryPolicy
from events.registry import ConsumerSpec
from events.topics import TASK_EVENTS
from testing.factories import task_event
from testing.kafka import TestProducer, message_count, read_topic, running
from testing.waits import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

DLQ = TASK_EVENTS + ".dlq"


class HandlerWithABug:
    def __init__(self):
        self.fixed = False
        self.handled = []

    def __call__(self, event):
        if not self.fixed:
            raise KeyError("due_date")
        self.handled.append(event["event_id"])


def replay(*args):
    out = StringIO()
    call_command("replay_dlq", DLQ, *args, stdout=out)
    return out.getvalue()


def test_a_dead_letter_replayed_after_its_cause_is_fixed_is_processed_once(isolated_kafka):
    handler = HandlerWithABug()
    spec = ConsumerSpec(
        name="buggy", topic=TASK_EVENTS, group="buggy-service", handler=handler,
        retry=RetryPolicy(max_attempts=2, initial_backoff=0.01),
    )
    event = task_event()
    TestProducer().event(event)

    with running(ConsumerRuntime(spec)):
        assert wait_for(lambda: message_count(DLQ) == 1)
        listing = replay("--dry-run")
        assert "1 dead letter(s) waiting" in listing and "KeyError" in listing and event["event_id"] in listing

        handler.fixed = True  # the fix is deployed
        assert "1 replayed, 0 refused" in replay()
        assert wait_for(lambda: handler.handled == [event["event_id"]])

        # The replay group remembers its position: nothing is sent twice.
        assert "0 replayed, 0 refused" in replay()
        assert "0 dead letter(s) waiting" in replay("--dry-run")

    replayed = read_topic(TASK_EVENTS, until=lambda messages: len(messages) >= 2)[1]
    assert json.loads(replayed["value"]) == event
    assert replayed["key"] == event["data"]["task_id"].encode()
    assert replayed["headers"] == {"event_type": "task.created", "event_id": event["event_id"], "replay.count": "1"}


def test_a_letter_replayed_as_often_as_the_cap_allows_is_refused(isolated_kafka, settings):
    settings.DLQ_REPLAY_CAP = 3
    producer = TestProducer()
    dlq_headers = [("dlq.original.topic", f"{isolated_kafka}{TASK_EVENTS}"), ("dlq.error.type", "KeyError")]
    producer.raw(DLQ, json.dumps(task_event()), key="k", headers=[("replay.count", "3"), *dlq_headers])
    producer.raw(DLQ, json.dumps(task_event()), key="k", headers=[("replay.count", "2"), *dlq_headers])

    output = replay()

    assert "1 replayed, 1 refused" in output
    assert "refused: already replayed 3 times (cap 3)" in output
    replayed = read_topic(TASK_EVENTS, until=lambda messages: len(messages) >= 1)
    assert [message["headers"]["replay.count"] for message in replayed] == ["3"]
    assert message_count(TASK_EVENTS) == 1


def test_a_letter_cut_to_fit_the_broker_is_refused_because_it_is_not_the_whole_message(isolated_kafka):
    headers = [("dlq.original.topic", f"{isolated_kafka}{TASK_EVENTS}"), (DLQ_TRUNCATED, "value=1000000")]
    TestProducer().raw(DLQ, b"x" * 1000, key="k", headers=headers)

    output = replay()

    assert "0 replayed, 1 refused" in output
    assert "refused: not the whole message (dlq.truncated: value=1000000)" in output
    assert message_count(TASK_EVENTS) == 0


def test_limit_replays_only_that_many_letters_and_the_rest_later(isolated_kafka):
    producer = TestProducer()
    headers = [("dlq.original.topic", f"{isolated_kafka}{TASK_EVENTS}")]
    producer.raw_many(DLQ, [(json.dumps(task_event()), "same-key", headers) for _ in range(3)])

    assert "2 replayed" in replay("--limit", "2")
    assert "1 replayed" in replay()
    assert message_count(TASK_EVENTS) == 3


def test_the_dead_letter_topic_may_be_named_by_its_main_topic(isolated_kafka):
    TestProducer().raw(DLQ, b"{}", key=str(uuid.uuid4()), headers=[("dlq.original.topic", f"{isolated_kafka}{TASK_EVENTS}")])
    out = StringIO()
    call_command("replay_dlq", TASK_EVENTS, "--dry-run", stdout=out)
    assert "1 dead letter(s) waiting" in out.getvalue()
