"""Events as the Dapr sidecar delivers them: the subscription document and /dapr/events/<consumer>.

The fast level, without the sidecar: deliveries are HTTP requests as the sidecar sends them (raw
payload, or a CloudEvent, with its dapr-api-token and Kafka's coordinates) to the delivery
application of the delivery pods; the sidecar's publish API, which takes the dead letters, is a real
local HTTP server (tests.events.dapr_helpers) that records each request exactly and can refuse one
on cue. Through a real daprd (built by `make daprd`): tests/deploy/test_daprd.py. Handlers, database and runtime are real. Who may call these
routes at all: tests/security/test_dapr_door.py.
"""

import base64
import json
import uuid

import pytest

from audit.models import AuditEntry
from events.core.dead_letters import DEAD_LETTER_MAX_BYTES
from events.core.retry import RetryPolicy
from events.models import ProcessedEvent
from events.registry import CONSUMERS, ConsumerSpec
from events.topics import REMINDERS, TASK_EVENTS, TASK_UPDATES, group_name, topic_name
from events.transports import dapr
from testing.factories import task_event

pytestmark = pytest.mark.django_db(transaction=True)

SUCCESS = {"status": "SUCCESS"}


def deliver(client, consumer, body, content_type="application/json", headers=None):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return client.post(f"/dapr/events/{consumer}", body, content_type=content_type, headers=headers)


def kafka_delivery_headers(event, *, partition, offset):
    """The HTTP headers with which Dapr's Kafka component delivers ``event`` read at those coordinates
    (as tests/deploy/test_daprd.py sees the real sidecar send them)."""
    return {
        "__key": event["data"]["task_id"], "__partition": str(partition), "__offset": str(offset),
        "__topic": topic_name(TASK_EVENTS), "__timestamp": "1796083200000",
        "event_type": event["event_type"], "event_id": event["event_id"],
    }


def cloud_event(event, **fields):
    """The envelope Dapr delivers when rawPayload is off."""
    return {
        "specversion": "1.0", "id": str(uuid.uuid4()), "source": "todo-platform-relay", "type": "com.dapr.event.sent",
        "datacontenttype": "application/json", "pubsubname": "todo-pubsub", "topic": topic_name(TASK_EVENTS),
        **fields,
    }


def register(monkeypatch, handler, *, max_attempts=3):
    spec = ConsumerSpec(
        name=f"test-{uuid.uuid4().hex[:6]}",
        topic=TASK_EVENTS,
        group=f"test-group-{uuid.uuid4().hex[:6]}",
        handler=handler,
        retry=RetryPolicy(max_attempts=max_attempts, initial_backoff=0.01, multiplier=2.0, max_backoff=0.05),
    )
    monkeypatch.setitem(CONSUMERS, spec.name, spec)
    return spec


class FailingHandler:
    """Fails its first ``failures`` runs, then succeeds; counts runs."""

    def __init__(self, failures):
        self.failures, self.runs = failures, 0

    def __call__(self, event):
        self.runs += 1
        if self.runs <= self.failures:
            raise RuntimeError(f"handler broke on run {self.runs}")


def dead_letters(sidecar, base_topic=TASK_EVENTS):
    path = f"/v1.0/publish/todo-pubsub/{topic_name(base_topic + '.dlq')}"
    return [request for request in sidecar.requests if request["path"] == path]


# --- the subscription document ------------------------------------------------------------------

def test_the_subscription_document_is_empty_while_the_chart_subscribes_declaratively(dapr_delivery, settings):
    settings.DAPR_PROGRAMMATIC_SUBSCRIPTIONS = False
    response = dapr_delivery.get("/dapr/subscribe")
    assert response.status_code == 200
    assert response.json() == []


def test_the_programmatic_subscription_document_lists_every_consumer_topic_with_route_and_dead_letter_topic(
    dapr_delivery, settings
):
    settings.DAPR_PROGRAMMATIC_SUBSCRIPTIONS = True
    settings.DAPR_PUBSUB_NAME = "todo-pubsub"
    document = dapr_delivery.get("/dapr/subscribe").json()
    expected = {
        "audit": TASK_EVENTS, "recurrence": TASK_EVENTS, "notifications": REMINDERS, "realtime": TASK_UPDATES,
    }
    assert sorted(entry["routes"]["default"] for entry in document) == sorted(f"/dapr/events/{n}" for n in expected)
    for entry in document:
        base = expected[entry["routes"]["default"].rsplit("/", 1)[1]]
        assert entry == {
            "pubsubname": "todo-pubsub",
            "topic": topic_name(base),
            "routes": {"default": entry["routes"]["default"]},
            "deadLetterTopic": topic_name(base + ".dlq"),
            "metadata": {"rawPayload": "true"},
        }
    # The scheduler keeps its own Kafka consumer: Dapr must not take its events away from it.
    assert "/dapr/events/scheduler" not in {entry["routes"]["default"] for entry in document}


def test_the_programmatic_document_can_be_limited_to_this_apps_consumers(dapr_delivery, settings):
    settings.DAPR_PROGRAMMATIC_SUBSCRIPTIONS = True
    settings.DAPR_CONSUMERS = ["audit"]
    document = dapr_delivery.get("/dapr/subscribe").json()
    assert [(entry["topic"], entry["routes"]["default"]) for entry in document] == [
        (topic_name(TASK_EVENTS), "/dapr/events/audit")
    ]


# --- deliveries -------------------------------------------------------------------------------

def test_a_raw_event_delivered_twice_is_recorded_once(dapr_delivery, dapr_sidecar):
    event = task_event()
    for _ in range(2):
        response = deliver(dapr_delivery, "audit", event)
        assert response.status_code == 200
        assert response.json() == SUCCESS
    entry = AuditEntry.objects.get(event_id=event["event_id"])
    assert (entry.topic, entry.partition, entry.offset) == (topic_name(TASK_EVENTS), -1, -1)
    records = ProcessedEvent.objects.filter(consumer_group=group_name("audit-service"), event_id=event["event_id"])
    assert records.count() == 1
    assert dapr_sidecar.requests == []  # nothing dead-lettered


def test_a_cloud_event_envelope_is_unwrapped_and_its_event_processed_once(dapr_delivery, dapr_sidecar):
    event = task_event()
    wrapped = cloud_event(event, data=event)
    assert deliver(dapr_delivery, "audit", wrapped, content_type="application/cloudevents+json").json() == SUCCESS
    # The same event again, base64-encoded, then raw: a redelivery each time.
    encoded = cloud_event(event, data_base64=base64.b64encode(json.dumps(event).encode()).decode())
    assert deliver(dapr_delivery, "audit", encoded, content_type="application/cloudevents+json").json() == SUCCESS
    assert deliver(dapr_delivery, "audit", event).json() == SUCCESS
    assert AuditEntry.objects.filter(event_id=event["event_id"]).count() == 1
    assert AuditEntry.objects.count() == 1


def test_a_cloud_event_carrying_base64_data_is_processed(dapr_delivery, dapr_sidecar):
    event = task_event()
    encoded = cloud_event(event, data_base64=base64.b64encode(json.dumps(event).encode()).decode())
    assert deliver(dapr_delivery, "audit", encoded).json() == SUCCESS
    assert AuditEntry.objects.filter(event_id=event["event_id"]).exists()


def test_an_unknown_event_type_is_acknowledged_without_a_handler_or_dead_letter(dapr_delivery, dapr_sidecar):
    event = {**task_event(), "event_type": "task.archived"}
    response = deliver(dapr_delivery, "audit", event)
    assert (response.status_code, response.json()) == (200, SUCCESS)
    assert not AuditEntry.objects.exists()
    assert not ProcessedEvent.objects.exists()
    assert dapr_sidecar.requests == []


@pytest.mark.parametrize(
    "body",
    [b"{this is not json", b'{"event_type": "task.created", "data": {"task_id": "123", "title": "Test"}}'],
    ids=["not-json", "missing-fields"],
)
def test_an_invalid_message_is_dead_lettered_through_the_sidecar_with_the_dlq_headers_and_acknowledged(
    dapr_delivery, dapr_sidecar, body
):
    response = deliver(dapr_delivery, "audit", body)
    assert (response.status_code, response.json()) == (200, SUCCESS)
    [letter] = dead_letters(dapr_sidecar)
    assert letter["body"] == body  # the message as it came
    query = letter["query"]
    assert query["metadata.rawPayload"] == "true"
    assert query["metadata.dlq.original.topic"] == topic_name(TASK_EVENTS)
    assert query["metadata.dlq.consumer.group"] == group_name("audit-service")
    assert query["metadata.dlq.attempts"] == "0"
    assert query["metadata.dlq.error.type"] in {"JSONDecodeError", "InvalidEvent"}
    assert query["metadata.dlq.failed_at"].endswith("Z")
    assert not AuditEntry.objects.exists()


def test_a_failing_handler_is_retried_then_dead_lettered_through_the_sidecar(
    dapr_delivery, dapr_sidecar, monkeypatch
):
    handler = FailingHandler(failures=99)
    spec = register(monkeypatch, handler, max_attempts=3)
    event = task_event()
    response = deliver(dapr_delivery, spec.name, event, headers=kafka_delivery_headers(event, partition=2, offset=41))
    assert (response.status_code, response.json()) == (200, SUCCESS)
    assert handler.runs == 3
    [letter] = dead_letters(dapr_sidecar)
    assert json.loads(letter["body"]) == event
    # The message's key and Kafka headers, and where it was read, all from the delivery's headers.
    assert letter["query"]["metadata.partitionKey"] == event["data"]["task_id"]
    assert letter["query"]["metadata.event_id"] == event["event_id"]
    assert letter["query"]["metadata.event_type"] == event["event_type"]
    assert (letter["query"]["metadata.dlq.original.partition"], letter["query"]["metadata.dlq.original.offset"]) == (
        "2", "41"
    )
    assert not any(name.startswith("metadata.__") for name in letter["query"])
    assert letter["query"]["metadata.dlq.attempts"] == "3"
    assert letter["query"]["metadata.dlq.error.type"] == "RuntimeError"
    # Its idempotency record was rolled back with the failed handler: a replay runs it again.
    assert not ProcessedEvent.objects.filter(event_id=event["event_id"]).exists()


def test_a_handler_that_recovers_within_its_retries_takes_effect_once(dapr_delivery, dapr_sidecar, monkeypatch):
    handler = FailingHandler(failures=1)
    spec = register(monkeypatch, handler, max_attempts=3)
    event = task_event()
    assert deliver(dapr_delivery, spec.name, event).json() == SUCCESS
    assert deliver(dapr_delivery, spec.name, event).json() == SUCCESS  # a redelivery
    assert handler.runs == 2
    assert dead_letters(dapr_sidecar) == []
    assert ProcessedEvent.objects.filter(consumer_group=group_name(spec.group), event_id=event["event_id"]).count() == 1


def test_when_the_dead_letter_cannot_be_written_dapr_is_told_to_retry(dapr_delivery, dapr_sidecar, monkeypatch):
    handler = FailingHandler(failures=99)
    spec = register(monkeypatch, handler, max_attempts=2)
    dapr_sidecar.failures = [500]  # the sidecar refuses the dead letter once
    event = task_event()
    response = deliver(dapr_delivery, spec.name, event)
    # Dapr retries on RETRY in the body, and on any status but 2xx and 404.
    assert response.status_code == 503
    assert response.json() == {"status": "RETRY"}
    # Dapr redelivers; now the dead letter goes through and the message is acknowledged.
    response = deliver(dapr_delivery, spec.name, event)
    assert (response.status_code, response.json()) == (200, SUCCESS)
    assert len(dead_letters(dapr_sidecar)) == 2  # the refused attempt and the accepted one
    assert handler.runs == 4


def test_a_delivery_to_an_unknown_consumer_is_retried_not_dropped(dapr_delivery, dapr_sidecar):
    response = deliver(dapr_delivery, "no-such-consumer", task_event())
    # Not 404, which Dapr treats as "drop": retried, then Dapr's deadLetterTopic keeps it.
    assert response.status_code == 503
    assert response.json()["status"] == "RETRY"


def test_the_scheduler_is_not_a_dapr_route(dapr_delivery, dapr_sidecar):
    assert deliver(dapr_delivery, "scheduler", task_event()).status_code == 503


def test_a_delivery_pod_accepts_only_the_consumers_of_dapr_consumers(dapr_delivery, dapr_sidecar, settings):
    settings.DAPR_CONSUMERS = ["recurrence"]
    event = task_event()
    response = deliver(dapr_delivery, "audit", event)
    # Misrouted: retried, then kept by Dapr's deadLetterTopic; the audit handler did not run here.
    assert (response.status_code, response.json()["status"]) == (503, "RETRY")
    assert not AuditEntry.objects.exists()
    settings.DAPR_CONSUMERS = ["audit"]
    assert deliver(dapr_delivery, "audit", event).json() == SUCCESS
    assert AuditEntry.objects.filter(event_id=event["event_id"]).exists()


def test_the_sidecar_is_told_at_start_that_this_app_hosts_no_actors(dapr_delivery):
    response = dapr_delivery.get("/dapr/config")
    assert (response.status_code, response.json()) == (200, {"entities": []})


def test_a_dapr_delivery_too_large_for_a_dead_letter_is_cut_by_the_same_budget(dapr_sidecar):
    body = b"x" * 1_000_000
    assert dapr.deliver("audit", body) == dapr.SUCCESS
    [letter] = [r for r in dapr_sidecar.requests if r["path"].endswith("/" + topic_name(TASK_EVENTS + ".dlq"))]
    assert letter["query"]["metadata.dlq.truncated"] == "value=1000000"
    assert body.startswith(letter["body"]) and 900_000 < len(letter["body"]) <= DEAD_LETTER_MAX_BYTES
    assert letter["content_type"] == "application/octet-stream"
