"""The Dapr transport (EVENT_TRANSPORT=dapr): the sidecar's publish API, and events Dapr delivers.

Publishing: ``DaprSidecar.publish`` posts to ``/v1.0/publish/<pubsub>/<topic>`` with
``metadata.rawPayload=true`` (the bytes on Kafka are the event JSON, as with the direct
transport), ``metadata.partitionKey`` (the Kafka key) and any further metadata, which Dapr's Kafka
component writes as message headers. The outbox relay publishes through it (``DaprPublisher``),
and so do dead letters of Dapr deliveries (``DaprDeadLetters``).

Delivery: Dapr POSTs each message of a consumer's topic to ``/dapr/events/<consumer>`` (see
events.views; served by the delivery pods' own application, todo_project/delivery.py, which checks the
sidecar's token). Of the Dapr-delivered consumers, a process accepts those of DAPR_CONSUMERS (empty:
all). ``deliver`` hands it to the core's ``EventProcessor.process``, the very code path of
``run_consumer``: validation, the idempotency record and the handler in one transaction, retries
with backoff, dead letters with the contract's ``dlq.*`` headers. Only the dead-letter writer
differs: it publishes to the ``.dlq`` topic through the sidecar (this process has no Kafka
producer of its own in Dapr mode). The outcome decides the answer to Dapr:

* processed, duplicate, skipped (unknown or unwanted type), dead-lettered: SUCCESS (Dapr commits);
* the dead letter could not be written, or the database is unreachable: RETRY, so that Dapr
  redelivers (its Resiliency policy), and after its last retry writes the message to the
  Subscription's ``deadLetterTopic`` (the same ``.dlq`` topic, without our ``dlq.*`` headers).

Kafka coordinates and headers: Dapr's Kafka component passes them with each delivery as HTTP
headers: ``__topic``, ``__partition``, ``__offset``, ``__key`` and ``__timestamp``, and every Kafka
header of the message under its own name (``event_type``, ``event_id``, ...). ``delivered_message`` reads
them back, so handlers see the true coordinates (``delivery_of``; the audit trail stores them) and
a dead letter keeps the message's key and headers, as with the Kafka transport. They are read from
the raw ASGI headers: Django drops every header whose name has an underscore (a guard against
``X_Forwarded_For`` passing for ``X-Forwarded-For``). HTTP header names are case-insensitive
(uvicorn lowers them), so a Kafka header arrives with its name in lower case, as the contract's are.

May import: ``events.core``, ``events.registry``, the contract modules, Django settings. Not the
consumer runtime (``events.consumer``) nor the relay, which import this.
"""


import base64
import binascii
import json
import logging
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPException
from urllib.parse import quote, urlencode

from django.conf import settings

from events.core.headers import EVENT_HEADERS
from events.core.message import Message
from events.core.processor import EventProcessor
from events.core.publishing import LockstepPublisher, Refusal
from events.registry import CONSUMERS
from events.topics import topic_name

logger = logging.getLogger(__name__)

# What Dapr reads in a delivery's response body (its pub/sub "subscribe" contract).
SUCCESS, RETRY = "SUCCESS", "RETRY"


# Answers of the publish API that refuse the message itself (retrying it unchanged cannot help):
# 400 malformed, 403 topic not allowed (scopes), 413 over the sidecar's body limit.
REFUSING_STATUSES = frozenset({400, 403, 413})
# A 500 ERR_PUBSUB_PUBLISH_MESSAGE carries the broker's own words; these say it refused the
# message rather than that it is unavailable (timeouts, no brokers, leader elections).
REFUSING_BROKER_WORDS = ("too large", "invalid record", "not authorized", "policy violation")


@dataclass(frozen=True)
class PublishFailure:
    """Why the sidecar did not publish. ``refused``: this message is refused for good (the relay
    parks it); otherwise the sidecar or its broker is unavailable and a retry may succeed."""

    reason: str
    refused: bool = False

    def __str__(self):
        return self.reason


def publish_failure(status, answer):
    """Classify a non-2xx answer of the publish API."""
    reason = f"Dapr publish answered {status}: {answer[:300]!r}"
    text = answer.decode(errors="replace").lower()
    refused = status in REFUSING_STATUSES or (
        status == 500 and "err_pubsub_publish_message" in text and any(word in text for word in REFUSING_BROKER_WORDS)
    )
    return PublishFailure(reason, refused=refused)


class DaprSidecar:
    """The Dapr sidecar's publish API, over one keep-alive HTTP connection (not thread-safe)."""

    def __init__(self, *, host="127.0.0.1", port=None, timeout=30.0):
        self.host, self.port, self.timeout = host, port or settings.DAPR_HTTP_PORT, timeout
        self._connection = None

    @staticmethod
    def publish_path(pubsub, topic, *, key=None, metadata=None):
        query = {"metadata.rawPayload": "true"}
        if key is not None:
            query["metadata.partitionKey"] = key
        query |= {f"metadata.{name}": value for name, value in (metadata or {}).items()}
        return f"/v1.0/publish/{quote(pubsub, safe='')}/{quote(topic, safe='')}?{urlencode(query)}"

    def publish(self, pubsub, topic, body, *, key=None, metadata=None, content_type="application/json"):
        """None once Dapr answered that the broker has the message (204), else a PublishFailure."""
        if self._connection is None:
            self._connection = HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self._connection.request(
                "POST", self.publish_path(pubsub, topic, key=key, metadata=metadata), body=body,
                headers={"Content-Type": content_type},
            )
            response = self._connection.getresponse()
            answer = response.read()
        except (OSError, HTTPException) as exc:
            self.close()
            return PublishFailure(f"Dapr sidecar at {self.host}:{self.port} unreachable: {exc}")
        if response.status in (200, 204):
            return None
        return publish_failure(response.status, answer)

    def close(self):
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class DaprPublisher(LockstepPublisher):
    """Publishes through the Dapr sidecar's pub/sub API (EVENT_TRANSPORT=dapr), one row at a time.

    ``rawPayload`` keeps the wire format identical to the direct transport (no CloudEvent
    envelope), ``partitionKey`` is the Kafka key, and the Kafka component forwards the other
    metadata (``event_type``, ``event_id``) as message headers. Dapr answers 204 once the
    broker has acknowledged, so rows go one by one and the relay stays in lockstep (a pipeline
    would need concurrent requests, which could reorder a key). A refusal of the message parks
    its row and holds back only its key; an outage (PublishFailure.refused false) ends the round:
    nothing of a task is published after one of its events that was not.
    """

    def __init__(self, *, port, pubsub, timeout=30.0):
        self.pubsub = pubsub
        self.sidecar = DaprSidecar(port=port, timeout=timeout)
        self.destination = f"through the Dapr sidecar on port {port} (pub/sub component {pubsub})"

    def publish(self, rows):
        outcome = {}
        held_keys = set()
        for row in rows:
            if row.key in held_keys:
                continue
            failure = self.sidecar.publish(
                self.pubsub, topic_name(row.topic), row.payload.encode(), key=row.key, metadata=row.headers()
            )
            if failure is None:
                outcome[row.id] = None
            elif failure.refused:
                outcome[row.id] = Refusal(str(failure))
                held_keys.add(row.key)
            else:
                outcome[row.id] = failure
                break
        return outcome

    def renew(self):
        self.sidecar.close()  # the next publish reconnects

    def close(self):
        self.sidecar.close()


class DaprDeadLetters:
    """The consumer runtime's dead-letter writer for Dapr deliveries: publishes through the sidecar.

    The ``dlq.*`` headers travel as publish metadata, which the Kafka component writes as headers.
    """

    def __init__(self, sidecar, pubsub):
        self.sidecar, self.pubsub = sidecar, pubsub

    def write(self, topic, *, key, value, headers):
        value = value or b""
        # An invalid message is dead-lettered as the bytes it was.
        content_type = "application/octet-stream" if _json(value) is _NOT_JSON else "application/json"
        return self.sidecar.publish(
            self.pubsub, topic, value,
            key=key.decode() if isinstance(key, bytes) else key,
            metadata={name: _text(header) for name, header in headers},
            content_type=content_type,
        )


# The delivery headers with which Dapr's Kafka component passes a message's coordinates.
TOPIC_HEADER, PARTITION_HEADER, OFFSET_HEADER, KEY_HEADER, TIMESTAMP_HEADER = (
    "__topic", "__partition", "__offset", "__key", "__timestamp"
)
COORDINATE_HEADERS = frozenset({TOPIC_HEADER, PARTITION_HEADER, OFFSET_HEADER, KEY_HEADER, TIMESTAMP_HEADER})
# The delivery headers that HTTP and the sidecar add themselves (daprd 1.18 sends these, the
# tracing ones with tracing on): every other header of a delivery is one of the message's Kafka headers.
TRANSPORT_HEADERS = frozenset({
    "host", "user-agent", "accept-encoding", "content-type", "content-length",
    "dapr-api-token", "dapr-app-id", "pubsubname", "traceparent", "tracestate",
})



def delivered_message(topic, value, headers=()):
    """The core Message of a delivery, from the HTTP ``headers`` Dapr sent with it (the raw ASGI
    ``[(lower-case name, value), ...]`` in bytes): its topic, partition, offset, key and timestamp,
    and every other header that HTTP and the sidecar did not add, which are the message's Kafka
    headers. A delivery without Dapr's coordinates (a caller that is not a Kafka component) reads
    as partition and offset -1, its key and headers recovered from the event: what the relay put
    there, so that a dead letter keeps the task's partition and the usual headers."""
    coordinates, kafka_headers = {}, []
    for name, header in headers:
        name = name.decode("latin-1")
        if name in COORDINATE_HEADERS:
            coordinates[name] = header.decode(errors="replace")
        elif name not in TRANSPORT_HEADERS:
            kafka_headers.append((name, header))
    if KEY_HEADER not in coordinates:
        return _recovered_message(topic, value)
    return Message(
        topic=coordinates.get(TOPIC_HEADER) or topic,
        value=value,
        key=coordinates[KEY_HEADER],
        headers=kafka_headers,
        partition=_integer(coordinates.get(PARTITION_HEADER)),
        offset=_integer(coordinates.get(OFFSET_HEADER)),
        timestamp=_integer(coordinates.get(TIMESTAMP_HEADER), None),
    )


def _recovered_message(topic, value):
    key, headers = None, []
    try:
        event = _json(value)
        key = event["data"]["task_id"]
        headers = [(name, str(event[name]).encode()) for name in EVENT_HEADERS]
    except (TypeError, KeyError):  # not an event: the processor dead-letters it
        pass
    return Message(topic=topic, value=value, key=key if isinstance(key, str) else None, headers=headers)


class NotDeliverable(LookupError):
    """No Dapr-delivered consumer of that name: a routing mistake, not the message's fault."""


def dapr_consumers():
    """The consumers Dapr may deliver to (the scheduler keeps its own Kafka consumer)."""
    return {name: spec for name, spec in CONSUMERS.items() if spec.via_dapr}


def accepted_consumers():
    """The Dapr-delivered consumers this process serves: those of DAPR_CONSUMERS (empty: all)."""
    wanted = set(settings.DAPR_CONSUMERS)
    return {name: spec for name, spec in dapr_consumers().items() if not wanted or name in wanted}


def subscriptions():
    """The programmatic subscription document (GET /dapr/subscribe); [] unless enabled, because
    the Helm chart subscribes declaratively and both would subscribe twice."""
    if not settings.DAPR_PROGRAMMATIC_SUBSCRIPTIONS:
        return []
    return [
        {
            "pubsubname": settings.DAPR_PUBSUB_NAME,
            "topic": topic_name(spec.topic),
            "routes": {"default": f"/dapr/events/{name}"},
            "deadLetterTopic": topic_name(spec.dead_letter_topic),
            "metadata": {"rawPayload": "true"},
        }
        for name, spec in sorted(accepted_consumers().items())
    ]


def unwrap(body):
    """(topic or None, event bytes) of a delivery. Dapr delivers a CloudEvent
    (``application/cloudevents+json``) even with ``rawPayload``: then the message's bytes are in its
    ``data_base64`` (daprd 1.18); without ``rawPayload`` the event is its ``data``. A body that is no
    envelope is taken as the raw event. Anything else (not JSON, nested too deep, a broken envelope)
    comes back whole, for the runtime to dead-letter."""
    envelope = _json(body)
    wrapped = isinstance(envelope, dict) and "specversion" in envelope
    if not (wrapped and ("data" in envelope or "data_base64" in envelope)):
        return None, body
    topic = envelope.get("topic")
    if not isinstance(topic, str):
        topic = None
    if "data_base64" in envelope:
        try:
            return topic, base64.b64decode(envelope["data_base64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            return topic, body  # a broken envelope: dead-lettered whole
    data = envelope["data"]
    try:
        # A JSON event published as text arrives as a string holding the JSON.
        return topic, data.encode() if isinstance(data, str) else json.dumps(data).encode()
    except (ValueError, RecursionError):  # a lone surrogate, or too deep to write again
        return topic, body


def deliver(name, body, headers=()):
    """Process one message Dapr delivered to consumer ``name`` with the HTTP ``headers`` of its
    delivery (see DaprMessage); return SUCCESS or RETRY."""
    spec = accepted_consumers().get(name)
    if spec is None:
        accepted = ", ".join(sorted(accepted_consumers()))
        raise NotDeliverable(f"no Dapr-delivered consumer named {name!r} here; accepted: {accepted}")
    topic, value = unwrap(body)
    sidecar = DaprSidecar()
    # No circuit breaker here (ratio 1.0 never trips): a delivery process cannot stop consuming;
    # Dapr's Resiliency policy is the place for one.
    processor = EventProcessor(spec, DaprDeadLetters(sidecar, settings.DAPR_PUBSUB_NAME), dlq_stop_ratio=1.0)
    done = []
    try:
        processor.process([delivered_message(topic or topic_name(spec.topic), value, headers)], done)
    except Exception:  # noqa: BLE001 - dead letter not written, database down: Dapr redelivers
        logger.exception("dapr delivery to %s not processed; asking Dapr to retry", name)
        return RETRY
    finally:
        sidecar.close()
    return SUCCESS if done else RETRY


_NOT_JSON = object()


def _json(value):
    """``value`` parsed as JSON, or _NOT_JSON: not JSON, bad UTF-8, or nested deeper than the parser goes."""
    try:
        return json.loads(value)
    except (TypeError, ValueError, RecursionError):
        return _NOT_JSON


def _integer(text, default=-1):
    try:
        return int(text)
    except (TypeError, ValueError):
        return default


def _text(value):
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
