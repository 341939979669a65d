"""Producing to Kafka: dead letters, confirmed sends, and the outbox relay's publisher.

Every producer here is built from ``config.producer_config`` (FNV-1a keys, acks=all, idempotent).

The relay's publisher keeps the relay's guarantees (events/relay.py tells why they hold):

* Kafka down. ``message.timeout.ms=0`` (infinite) makes librdkafka retry a message until the
  broker comes back instead of failing it after five minutes: a timed-out message would
  otherwise be re-produced in a later round *after* newer messages of the same task that did
  get through. So with the broker down, the publisher waits inside ``flush`` (logging once) and
  resumes on its own.
* Order within one round: a row refused at ``produce()`` holds its key at once, so no later
  row of that key is produced in the round. A refusal by the broker comes back only with the
  delivery reports, after later rows of the key may already be on their way; it could
  therefore reorder a key, and is prevented rather than repaired: the producer's
  ``message.max.bytes`` and ``batch.size`` are set from the smallest ``max.message.bytes`` of
  the relayed topics (read when the producer is created; never above librdkafka's default
  1,000,000), so whatever the broker would refuse by size is refused locally, at ``produce()``,
  with the exact row named. The broker's other refusals (no authorisation, an invalid topic)
  concern a whole topic, so every row of a key there fails alike and none gets ahead. What
  remains is a topic limit lowered while the relay runs: then Kafka refuses a whole batch for
  one record, so its refusals name suspects. The publisher re-sends each suspect alone, in id
  order, with a fresh producer (which reads the new limit): the culprit is refused and parked,
  its batch-mates go through, and a later suspect of the culprit's key stays held. Only rows of
  that key acknowledged in the very round the limit changed can have passed it.
* Fatal producer errors (idempotence broken) recreate the producer; the rows are retried.
"""

import logging
import time

from confluent_kafka import KafkaError, KafkaException, Producer
from django.conf import settings

from events.core.publishing import Refusal
from events.schemas import EVENT_TYPES
from events.topics import topic_name
from events.transports.kafka.admin import topic_message_limit
from events.transports.kafka.config import producer_config

# The relay's log, whichever transport publishes for it.
logger = logging.getLogger("events.relay")

# How long Kafka may take to acknowledge a round before the relay says it is waiting for it.
KAFKA_SLOW_SECONDS = 5
# Kafka's answers that refuse one message for good: retrying it unchanged cannot succeed, so its
# row is parked. Every other error (broker down, timeouts, leader elections, a missing topic) is
# transient and retried.
REFUSALS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,  # over the producer's limit (at produce) or the topic's (broker)
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_TIMESTAMP,
        KafkaError.POLICY_VIOLATION,
        KafkaError.TOPIC_EXCEPTION,  # an invalid topic name
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError._INVALID_ARG,
        KafkaError._BAD_MSG,
    }
)
# The topics outbox rows go to.
RELAYED_TOPICS = sorted({topic for topic, *_ in EVENT_TYPES.values()})
# A topic's max.message.bytes bounds a whole record batch; librdkafka's per-message check counts
# the record's own framing but not the batch header (61 bytes in format v2).
RECORD_BATCH_HEADER_BYTES = 61
# librdkafka's bounds of message.max.bytes: its default (1,000,000, below Kafka's default topic
# limit of 1,048,588) stays the ceiling; 1000 is the smallest value it accepts.
MAX_PRODUCER_MESSAGE_BYTES = 1_000_000
MIN_PRODUCER_MESSAGE_BYTES = 1000


class KafkaDeadLetters:
    """Writes dead letters with a producer of its own and waits for the broker's confirmation."""

    def __init__(self):
        self._producer = Producer(producer_config(**{"linger.ms": 0}))

    def write(self, topic, *, key, value, headers):
        """None once the broker confirmed the write, else what went wrong."""
        report = {}
        try:
            self._producer.produce(
                topic, key=key, value=value, headers=headers, on_delivery=lambda err, msg: report.update(error=err)
            )
        except (KafkaException, BufferError) as exc:  # refused before it left: not confirmed either
            return str(exc)
        self._producer.flush(settings.CONSUMER_DLQ_WRITE_TIMEOUT_SECONDS)
        if "error" not in report:
            return "timed out"
        return None if report["error"] is None else str(report["error"])

    def close(self):
        self._producer.flush(10)


def send_confirmed(messages, *, timeout=30.0, **overrides):
    """Produce ``messages`` (core Messages; topic = the full name) and wait for the broker to confirm
    them all; return their (partition, offset) in order. Raises KafkaException for the first one
    refused, or when some are not confirmed within ``timeout`` seconds."""
    if not messages:
        return []
    producer = Producer(producer_config(**overrides))
    reports = [None] * len(messages)
    for index, message in enumerate(messages):

        def report(err, msg, index=index):
            reports[index] = err if err is not None else (msg.partition(), msg.offset())

        producer.produce(message.topic, key=message.key, value=message.value, headers=message.headers, on_delivery=report)
    unconfirmed = producer.flush(timeout)
    failures = [report for report in reports if isinstance(report, KafkaError)]
    if failures:
        raise KafkaException(failures[0])
    if unconfirmed or None in reports:
        raise KafkaException(f"{len(messages)} message(s) sent, not all confirmed within {timeout:g}s")
    return reports


def relay_producer_config(topic_message_limit=None):
    """The relay's producer; with ``topic_message_limit`` it refuses locally what the topics would."""
    # See "Order within one round" in the module docstring.
    local_limit = MAX_PRODUCER_MESSAGE_BYTES
    if topic_message_limit is not None:
        local_limit = max(min(local_limit, topic_message_limit - RECORD_BATCH_HEADER_BYTES), MIN_PRODUCER_MESSAGE_BYTES)
    return producer_config(
        **{
            "client.id": "todo-outbox-relay",
            # Small enough not to matter at light load, large enough to batch under load.
            "linger.ms": 5,
            # Infinite: see "Kafka down" in the module docstring.
            "message.timeout.ms": 0,
            # Reconnect quickly once a broker is back.
            "reconnect.backoff.max.ms": 2000,
            "message.max.bytes": local_limit,
            "batch.size": local_limit,
        }
    )


def relayed_topics_limit():
    """The smallest ``max.message.bytes`` of the relayed topics; None when Kafka does not answer."""
    try:
        return topic_message_limit(RELAYED_TOPICS)
    except (KafkaException, TimeoutError, KeyError) as exc:
        # The ceiling alone then (below Kafka's default limit); the next producer asks again.
        logger.warning("relay: could not read the topics' message size limit (%s); using the producer's default", exc)
        return None


def refusal_of(error):
    """``error`` (a KafkaError) as a Refusal when it refuses the message for good, else itself."""
    return Refusal(f"{error.name()}: {error.str()}") if error.code() in REFUSALS else error


class KafkaPublisher:
    """Produces a round's rows with one idempotent producer and waits for every acknowledgement."""

    destination = "to Kafka"  # for the relay's log line

    def __init__(self, stop, shutdown_grace):
        self.stop = stop
        self.shutdown_grace = shutdown_grace
        self._producer = None
        self._waiting = False

    def publish(self, rows):
        """{row id: None when Kafka acknowledged it, a Refusal to park it, else the KafkaError}.

        Rows held back behind an earlier row of their key that did not go through are left out.
        """
        outcome = self._publish_in_order(rows)
        # A refusal at produce() is a Refusal already; one among the delivery reports names a suspect.
        suspects = [
            row for row in rows if isinstance(outcome.get(row.id), KafkaError) and outcome[row.id].code() in REFUSALS
        ]
        if suspects:
            for row in suspects:
                del outcome[row.id]  # a suspect held behind its key's culprit stays out, like any held row
            outcome |= self._isolate(suspects)
        if any(isinstance(result, KafkaError) and result.fatal() for result in outcome.values()):
            self.close()  # a fatal idempotence error needs a new producer (a new producer id)
        return outcome

    def _publish_in_order(self, rows):
        if self._producer is None:
            self._producer = Producer(relay_producer_config(relayed_topics_limit()))
        outcome = {}
        held_keys = set()  # keys with a row that produce() did not take this round
        for row in rows:
            if row.key in held_keys:
                continue
            error = self._produce(
                topic=topic_name(row.topic),
                key=row.key.encode(),
                value=row.payload.encode(),
                headers=[(name, value.encode()) for name, value in row.headers().items()],
                on_delivery=lambda err, msg, row_id=row.id: outcome.__setitem__(row_id, err),
            )
            if error is not None:
                outcome[row.id] = refusal_of(error)
                held_keys.add(row.key)
        self._await_deliveries()
        return outcome

    def _isolate(self, suspects):
        """Re-send rows the broker refused, each alone: see "Order within one round" above."""
        self.close()
        outcome = {}
        culprit_keys = set()
        for row in suspects:
            if row.key in culprit_keys:
                continue  # held behind its key's culprit
            alone = self._publish_in_order([row])
            if row.id not in alone:
                continue  # stopping before Kafka answered: the row stays unsent
            result = alone[row.id]
            outcome[row.id] = refusal_of(result) if isinstance(result, KafkaError) else result
            if result is not None:
                culprit_keys.add(row.key)
        return outcome

    def _produce(self, **message):
        """None once the producer queued the message, else the KafkaError that refused it."""
        while True:
            try:
                self._producer.produce(**message)
                return None
            except BufferError:  # local queue full: let deliveries drain it
                self._producer.poll(0.1)
            except KafkaException as exc:
                return exc.args[0]

    def _await_deliveries(self):
        """Wait until Kafka acknowledged everything produced; give up only when stopping."""
        stopping_since = None
        waiting_since = time.monotonic()
        while self._producer.flush(1.0) > 0:
            # A first connection or a busy broker can take a few seconds: not worth a warning.
            if not self._waiting and time.monotonic() - waiting_since > KAFKA_SLOW_SECONDS:
                self._waiting = True
                logger.warning("relay: Kafka does not acknowledge; waiting and retrying (nothing is lost)")
            if self.stop.is_set():
                stopping_since = stopping_since or time.monotonic()
                if time.monotonic() - stopping_since > self.shutdown_grace:
                    logger.warning("relay: stopping with unacknowledged events; the next relay re-sends them")
                    return
        if self._waiting:
            self._waiting = False
            logger.info("relay: Kafka acknowledges again")

    def renew(self):
        """The next round starts with a new producer (which reads the topics' limits again)."""
        self.close()

    def close(self):
        # Everything acknowledged was flushed by _await_deliveries; what is still queued here
        # (Kafka down at shutdown, or a fatal producer error) stays unsent in the outbox and is
        # dropped from the producer, so that closing it does not wait for an absent broker.
        if self._producer is not None:
            self._producer.purge()
            self._producer.flush(0)
            self._producer = None
