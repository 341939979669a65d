"""replay_dlq sends dead letters back to their topic, remembers its position and caps replays."""

import json
import uuid
from io import StringIO

import pytest
from django.core.management import call_command

from events.consumer import ConsumerRuntime
from events.dapr import SUCCESS, deliver
from events.dlq import (
    DEAD_LETTER_MAX_BYTES,
    HEADER_VALUE_MAX_BYTES,
    ORIGINAL_HEADERS_MAX_BYTES,
    TRUNCATED_HEADER,
    bounded_dead_letter,
)
from events.registry import ConsumerSpec, RetryPolicy
from events.topics import TASK_EVENTS, topic_name
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
    headers = [("dlq.original.topic", f"{isolated_kafka}{TASK_EVENTS}"), (TRUNCATED_HEADER, "value=1000000")]
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


# --- the size budget of a dead letter (events.dlq.bounded_dead_letter) -------------------------

DLQ_HEADERS = [("dlq.original.topic", "task-events"), ("dlq.error.message", "boom")]


def wire_size(key, value, headers):
    return sum(len(part.encode() if isinstance(part, str) else part or b"") for part in (key, value)) + sum(
        len(name) + len(header.encode() if isinstance(header, str) else header) for name, header in headers
    )


def test_a_dead_letter_within_the_budget_is_the_message_as_it_came():
    headers = [("event_id", b"e1"), ("trace", b"abc")]
    bounded = bounded_dead_letter(b"key", b'{"a": 1}', headers, DLQ_HEADERS)
    assert bounded == (b"key", b'{"a": 1}', headers + DLQ_HEADERS)


def test_oversized_original_headers_and_key_are_cut_and_named_in_dlq_truncated():
    headers = [(f"h{n}", b"v" * 100) for n in range(500)] + [("huge", b"x" * 100_000)]
    key = b"k" * 5000
    cut_key, value, bounded = bounded_dead_letter(key, b"{}", headers, DLQ_HEADERS)

    originals = [(name, header) for name, header in bounded if not name.startswith("dlq.")]
    assert sum(len(name) + len(header) for name, header in originals) <= ORIGINAL_HEADERS_MAX_BYTES
    assert originals == headers[: len(originals)] and len(originals) > 10  # the first ones, whole
    assert cut_key == key[:HEADER_VALUE_MAX_BYTES] and value == b"{}"
    original_header_bytes = sum(len(name) + len(header) for name, header in headers)
    assert dict(bounded)[TRUNCATED_HEADER] == f"key=5000,headers={original_header_bytes}"
    assert [(name, header) for name, header in bounded if name in dict(DLQ_HEADERS)] == DLQ_HEADERS


def test_an_oversized_value_is_cut_to_what_the_budget_leaves_and_our_own_headers_are_valid_utf8():
    error = "\ud800 " + "é" * 5000  # an error quoting a lone surrogate of the event, and long
    key, value, headers = bounded_dead_letter(b"k", b"v" * 2_000_000, [("trace", b"t")], [("dlq.error.message", error)])

    assert dict(headers)[TRUNCATED_HEADER] == "value=2000000"
    assert value == b"v" * len(value)
    assert DEAD_LETTER_MAX_BYTES - 200 < wire_size(key, value, headers) <= DEAD_LETTER_MAX_BYTES
    message = dict(headers)["dlq.error.message"]
    assert message.encode("utf-8") and len(message.encode()) <= HEADER_VALUE_MAX_BYTES
    assert message.startswith("? é")


def test_a_dapr_delivery_too_large_for_a_dead_letter_is_cut_by_the_same_budget(dapr_sidecar):
    body = b"x" * 1_000_000
    assert deliver("audit", body) == SUCCESS
    [letter] = [r for r in dapr_sidecar.requests if r["path"].endswith("/" + topic_name(DLQ))]
    assert letter["query"]["metadata.dlq.truncated"] == "value=1000000"
    assert body.startswith(letter["body"]) and 900_000 < len(letter["body"]) <= DEAD_LETTER_MAX_BYTES
    assert letter["content_type"] == "application/octet-stream"
