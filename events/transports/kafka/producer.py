"""Producing to Kafka: dead letters, confirmed sends, and the outbox relay's publisher.

Every producer here is built from ``config.producer_config`` (FNV-1a keys, acks=all, idempotent).

The relay's publisher keeps the relay's guarantees (events/relay/__init__.py tells why they hold):

* Kafka down. ``message.timeout.ms=0`` (infinite) makes librdkafka retry a message until the
  broker comes back instead of failing it after five minutes: a timed-out message would
  otherwise be re-produced in a later round *after* newer messages of the same task that did
  get through. So with the broker down, the publisher waits inside ``flush`` (logging once) and
  resumes on its own.
* Order within the window (the rows produced and not yet answered, over pipelined rounds):
  a row refused at ``produce()`` holds its key at once, so no later row of that key is
  produced in the round, and the relay parks it before it reads the next. A refusal by the
  broker comes back only with the delivery reports, after later rows of the key may already be
  on their way; it could therefore reorder a key, and is prevented rather than repaired: the
  producer's ``message.max.bytes`` and ``batch.size`` are set from the smallest
  ``max.message.bytes`` of the relayed topics (read when the producer is created; never above
  librdkafka's default 1,000,000), so whatever the broker would refuse by size is refused
  locally, at ``produce()``, with the exact row named. The broker's other refusals (no
  authorisation, an invalid topic) concern a whole topic, so every row of a key there fails
  alike and none gets ahead. What remains is a topic limit lowered while the relay runs: then
  Kafka refuses a whole batch for one record, so its refusals name suspects. The publisher
  then waits for every answer of the window, and re-sends each suspect alone, in id order,
  with a fresh producer (which reads the new limit): the culprit is refused and parked, its
  batch-mates go through, and a later suspect of the culprit's key stays held. Only rows of
  that key acknowledged from the window in which the limit changed can have passed it.
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
# What a message purged from the producer is answered (close(), or librdkafka at a fatal error).
PURGED = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})
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


def relay_producer_config(topic_message_limit=None, on_failure=None):
    """The relay's producer; with ``topic_message_limit`` it refuses locally what the topics would.
    Kafka reports only the messages it failed, to ``on_failure(error, message)``."""
    # See "Order within the window" in the module docstring.
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
            # Kafka reports the failed messages only: see "Answers" in KafkaPublisher.
            "delivery.report.only.error": True,
            **({"on_delivery": on_failure} if on_failure else {}),
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
    """Produces the relay's rows with one idempotent producer, without waiting: ``publish`` queues a
    round and returns, ``collect`` hands back Kafka's answers as they come (events.core.publishing).

    Answers. Kafka reports the failed messages only (``delivery.report.only.error``), to a callback
    of the producer's: a report per message (a Python message object and a call for each) cost the
    relay's thread 2.5 µs per event, more than producing it (micro-benchmark: 4.0-4.8 µs vs 1.6-1.9
    µs per message of this thread's CPU). What is not reported failed is acknowledged once the
    producer holds nothing any more (``len(producer)`` counts every message until its delivery
    report, a failure's until it was served), so the window's acknowledgements come all at once,
    when it is empty. A failure names its row by its payload (unique: it holds the event id; the
    report carries no headers).

    The failure reports run in the thread that calls ``collect`` (librdkafka serves them from
    ``poll`` and ``flush``), so the publisher's state needs no lock.
    """

    destination = "to Kafka"  # for the relay's log line

    def __init__(self, stop, shutdown_grace):
        self.stop = stop
        self.shutdown_grace = shutdown_grace
        self._producer = None
        self.in_flight = {}  # row id -> row: produced, not answered yet
        self._answers = {}  # row id -> None (acknowledged) or KafkaError: answered, not collected yet
        self._failures = []  # (payload, KafkaError) that Kafka reported, not matched to their rows yet
        self._suspects = []  # rows the broker refused, maybe for a batch-mate: see _isolate
        self._topics = {}  # base name -> full name
        self._silent_since = None  # since when rows are in flight and Kafka answered none
        self._outstanding = 0  # the producer's count of unanswered messages at the last look
        self._heard = False  # an answer came since the last look
        self._waiting = False

    def publish(self, rows):
        """Produce ``rows`` (in id order) behind what is in flight; return the outcomes known at once,
        {row id: a Refusal to park it, or the KafkaError}, for rows ``produce()`` did not take. The
        later rows of such a row's key are held back: neither in the outcome nor in flight."""
        if self._producer is None:
            self._producer = Producer(relay_producer_config(relayed_topics_limit(), on_failure=self._failed))
        if not self.in_flight:
            self._silent_since = time.monotonic()
        outcome = {}
        held_keys = set()  # keys with a row that produce() did not take this round
        for row in rows:
            if row.key in held_keys:
                continue
            error = self._produce(row)
            if error is None:
                self.in_flight[row.id] = row
            else:
                outcome[row.id] = refusal_of(error)
                held_keys.add(row.key)
        return outcome

    def collect(self, timeout=0.0, *, everything=False):
        """Kafka's answers since the last call, {row id: None when acknowledged, a Refusal to park it,
        else the KafkaError}: waits up to ``timeout`` seconds for a first one while rows are in
        flight, or, with ``everything``, until none is (giving up only ``shutdown_grace`` seconds
        after ``stop`` is set: the rows left stay unsent, the next relay re-sends them)."""
        if everything or self._suspects:
            self._await_in_flight()
        elif self.in_flight:
            self._serve_reports(timeout)
            self._note_silence()
        answers, self._answers = self._answers, {}
        if self._suspects:  # the broker refused a batch: every answer of the window is in (above)
            suspects, self._suspects = self._suspects, []
            for row in suspects:
                del answers[row.id]  # a suspect held behind its key's culprit stays out, like any held row
            return answers | self._isolate(suspects)
        if any(isinstance(result, KafkaError) and (result.fatal() or result.code() in PURGED) for result in answers.values()):
            # A fatal idempotence error needs a new producer (a new producer id). librdkafka may
            # purge what the producer held then; close() forgets its own purge's reports.
            self.close()
        return answers

    def _produce(self, row):
        """None once the producer queued the row, else the KafkaError that refused it."""
        topic = self._topics.get(row.topic) or self._topics.setdefault(row.topic, topic_name(row.topic))
        # Text as it is: the client encodes key, value and header values as UTF-8 itself, in C.
        headers = list(row.headers().items())
        while True:
            try:
                self._producer.produce(topic, key=row.key, value=row.payload, headers=headers)
                return None
            except BufferError:  # local queue full: let deliveries drain it
                self._producer.poll(0.1)
            except KafkaException as exc:
                return exc.args[0]

    def _failed(self, error, message):
        self._failures.append((message.value(), error))

    def _serve_reports(self, timeout):
        """Serve Kafka's failure reports, waiting up to ``timeout`` seconds for the producer to hold
        nothing (``flush`` returns as soon as it does); then every row still in flight was
        acknowledged (see "Answers" above)."""
        if timeout:
            outstanding = self._producer.flush(timeout)
        else:
            self._producer.poll(0)
            outstanding = len(self._producer)
        if self._failures:
            rows = {row.payload.encode(): row for row in self.in_flight.values()}
            for payload, error in self._failures:
                row = rows[payload]
                del self.in_flight[row.id]
                self._answers[row.id] = error
                if error.code() in REFUSALS:
                    self._suspects.append(row)  # a refusal by the broker names a suspect, not a culprit
            self._failures = []
            self._heard = True
        if not outstanding:
            self._answers.update(dict.fromkeys(self.in_flight))
            self.in_flight.clear()
        # Fewer messages held than at the last look: Kafka answers, if not the whole window yet.
        self._heard = self._heard or outstanding < self._outstanding or not self.in_flight
        self._outstanding = outstanding

    def _note_silence(self):
        """Say once when Kafka stops answering, and when it answers again."""
        now = time.monotonic()
        if self._heard or not self.in_flight:
            self._heard = False
            self._silent_since = now
            if self._waiting:
                self._waiting = False
                logger.info("relay: Kafka acknowledges again")
        # A first connection or a busy broker can take a few seconds: not worth a warning.
        elif not self._waiting and now - self._silent_since > KAFKA_SLOW_SECONDS:
            self._waiting = True
            logger.warning("relay: Kafka does not acknowledge; waiting and retrying (nothing is lost)")

    def _await_in_flight(self):
        """Wait until Kafka answered everything produced; give up only when stopping."""
        stopping_since = None
        while self.in_flight:
            self._serve_reports(0.5)
            self._note_silence()
            if self.stop.is_set():
                stopping_since = stopping_since or time.monotonic()
                if time.monotonic() - stopping_since > self.shutdown_grace:
                    logger.warning("relay: stopping with unacknowledged events; the next relay re-sends them")
                    self.close()
                    return
        self._note_silence()

    def _isolate(self, suspects):
        """Re-send rows the broker refused, each alone: see "Order within the window" above."""
        self.close()
        outcome = {}
        culprit_keys = set()
        for row in sorted(suspects):  # in id order (their reports come in order per partition only)
            if row.key in culprit_keys:
                continue  # held behind its key's culprit
            alone = self.publish([row])
            self._await_in_flight()
            alone |= self._answers
            self._answers, self._suspects = {}, []
            if row.id not in alone:
                continue  # stopping before Kafka answered: the row stays unsent
            result = alone[row.id]
            outcome[row.id] = refusal_of(result) if isinstance(result, KafkaError) else result
            if result is not None:
                culprit_keys.add(row.key)
        return outcome

    def renew(self):
        """The next round starts with a new producer (which reads the topics' limits again)."""
        self.close()

    def close(self):
        # What Kafka acknowledged was collected before (the relay drains the window before it
        # renews the producer or leaves); what is still in flight here (Kafka down at shutdown, or a
        # fatal producer error) stays unsent in the outbox and is dropped from the producer, so
        # that closing it does not wait for an absent broker.
        if self._producer is not None:
            self._producer.purge()
            self._producer.flush(0)
            self._producer = None
        self.in_flight.clear()
        self._failures = []  # the purge's own reports among them
        self._outstanding = 0
