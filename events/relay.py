"""The outbox relay: publishes committed OutboxEvent rows to Kafka, in order, without losing any.

Guarantees, and why they hold:

* Nothing is lost. A row is marked sent only after Kafka acknowledged it (acks=all, delivery
  report without error). A crash anywhere leaves unacknowledged rows unsent, and the next
  relay publishes them again.
* Duplicates are harmless. A re-sent row carries the same ``event_id`` (in the payload and the
  ``event_id`` header); consumers record processed event ids and skip repeats. Within one run,
  the idempotent producer also removes duplicates its own retries would create.
* Order per task. Rows of one task are committed in ``id`` order: every service locks the
  task row (SELECT ... FOR UPDATE) before it writes its outbox rows, so a later change of the
  same task gets larger ids and commits after the earlier one. The relay reads *all* unsent
  rows in ``id`` order (not "ids after the last one seen", which would skip a row whose
  transaction committed late), and produces them in that order with key = task id, so they
  land on one partition; the idempotent producer (max 5 in flight, sequence numbers) keeps
  that order through retries.
* One relay at a time. Two relays producing the same rows concurrently could interleave
  them. A PostgreSQL session advisory lock elects a leader; other relays wait as hot standbys
  and retry the lock every second. The lock belongs to the leader's session, so PostgreSQL
  releases it the moment the leader's process or connection dies and a standby takes over,
  re-sending at most the leader's unacknowledged rows (duplicates, see above).
* Kafka down. ``message.timeout.ms=0`` (infinite) makes librdkafka retry a message until the
  broker comes back instead of failing it after five minutes: a timed-out message would
  otherwise be re-produced in a later round *after* newer messages of the same task that did
  get through. So with the broker down, the relay waits inside ``flush`` (logging once) and
  resumes on its own. Other transient errors (timeouts, leader elections, a missing topic)
  are retried with backoff: the fault is Kafka's, not the message's, and waiting is right.
* One refused message blocks nobody else. An answer that refuses *this* message for good
  (``REFUSALS``: too large, invalid, not authorised, ...) parks its row (``parked_at``,
  ``park_reason``; counted in ``outbox_events_parked_total``): the relay never retries it on
  its own, and only the later rows of the same key wait behind it (``OutboxEvent.objects.
  ready()`` leaves them out), so per-task order holds while every other task flows.
  ``retry_parked`` (or the admin action) un-parks rows once the cause is fixed; a retried row
  gets a fresh producer, which reads the topics' limits again.

  Order within one round: a row refused at ``produce()`` holds its key at once, so no later
  row of that key is produced in the round. A refusal by the broker comes back only with the
  delivery reports, after later rows of the key may already be on their way; it could
  therefore reorder a key, and is prevented rather than repaired: the producer's
  ``message.max.bytes`` and ``batch.size`` are set from the smallest ``max.message.bytes`` of
  the relayed topics (read when the producer is created; never above librdkafka's default
  1,000,000), so whatever the broker would refuse
  by size is refused locally, at ``produce()``, with the exact row named. The broker's other
  refusals (no authorisation, an invalid topic) concern a whole topic, so every row of a key
  there fails alike and none gets ahead. What remains is a topic limit lowered while the relay
  runs: then Kafka refuses a whole batch for one record, so its refusals name suspects. The
  relay re-sends each suspect alone, in id order, with a fresh producer (which reads the new
  limit): the culprit is refused and parked, its batch-mates go through, and a later suspect
  of the culprit's key stays held. Only rows of that key acknowledged in the very round the
  limit changed can have passed it.
* Fatal producer errors (idempotence broken) recreate the producer; the rows are retried.

* With EVENT_TRANSPORT=dapr the same loop publishes through the Dapr sidecar instead
  (DaprPublisher below): same rows, same order, same wire format. A sidecar outage parks
  nothing and waits; an answer refusing the message parks it (events.dapr.PublishFailure).

The relay wakes on PostgreSQL NOTIFY (sent at commit by a trigger on the outbox table) and
polls every ``poll_interval`` seconds as a fallback for lost notifications.
"""

import logging
import threading
import time
import uuid
from datetime import datetime
from typing import NamedTuple

import psycopg
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import ConfigResource, ResourceType
from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection, connections
from django.utils import timezone
from prometheus_client import Counter, Gauge, Histogram

from events import kafka
from events.dapr import DaprSidecar
from events.kafka import admin_client
from events.models import OutboxEvent
from events.outbox import NOTIFY_CHANNEL
from events.schemas import EVENT_TYPES
from events.topics import topic_name

logger = logging.getLogger(__name__)

# Any constant bigint shared by every relay of one database: the leader lock's key.
LEADER_LOCK_KEY = 0x6F7574626F78  # "outbox"

EVENTS_RELAYED = Counter("outbox_events_relayed_total", "Outbox events acknowledged by Kafka.", ["topic"])
RELAY_LAG = Gauge("outbox_relay_lag_seconds", "Age of the oldest unsent outbox row at the last relay round.")
RELAY_LATENCY = Histogram(
    "outbox_relay_latency_seconds",
    "Time from writing an outbox row to Kafka acknowledging it.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
# How long Kafka may take to acknowledge a round before the relay says it is waiting for it.
KAFKA_SLOW_SECONDS = 5

RELAY_IS_LEADER = Gauge("outbox_relay_leader", "1 while this process is the active (leader) relay.")
EVENTS_PARKED = Counter("outbox_events_parked_total", "Outbox rows parked because Kafka refused them.", ["topic"])
ROWS_PARKED = Gauge("outbox_rows_parked", "Outbox rows parked at the last relay round (waiting for retry_parked).")

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
TOPIC_LIMITS_TIMEOUT_SECONDS = 10


def producer_config(topic_message_limit=None):
    """The relay's producer; with ``topic_message_limit`` it refuses locally what the topics would."""
    config = {
        "client.id": "todo-outbox-relay",
        "enable.idempotence": True,
        "acks": "all",
        # Small enough not to matter at light load, large enough to batch under load.
        "linger.ms": 5,
        # Infinite: see "Kafka down" in the module docstring.
        "message.timeout.ms": 0,
        # Reconnect quickly once a broker is back.
        "reconnect.backoff.max.ms": 2000,
    }
    # See "Order within one round" in the module docstring.
    local_limit = MAX_PRODUCER_MESSAGE_BYTES
    if topic_message_limit is not None:
        local_limit = max(min(local_limit, topic_message_limit - RECORD_BATCH_HEADER_BYTES), MIN_PRODUCER_MESSAGE_BYTES)
    return kafka.producer_config(**config, **{"message.max.bytes": local_limit, "batch.size": local_limit})


def topic_message_limit():
    """The smallest ``max.message.bytes`` of the relayed topics; None when Kafka does not answer."""
    admin = admin_client()
    resources = [ConfigResource(ResourceType.TOPIC, topic_name(topic)) for topic in RELAYED_TOPICS]
    try:
        futures = admin.describe_configs(resources, request_timeout=TOPIC_LIMITS_TIMEOUT_SECONDS)
        return min(
            int(future.result(timeout=TOPIC_LIMITS_TIMEOUT_SECONDS)["max.message.bytes"].value)
            for future in futures.values()
        )
    except (KafkaException, TimeoutError, KeyError) as exc:
        # The ceiling alone then (below Kafka's default limit); the next producer asks again.
        logger.warning("relay: could not read the topics' message size limit (%s); using the producer's default", exc)
        return None


class Refusal(NamedTuple):
    """A publisher's outcome for a row refused for good: the relay parks it, with this reason."""

    reason: str


def refusal_of(error):
    """``error`` (a KafkaError) as a Refusal when it refuses the message for good, else itself."""
    return Refusal(f"{error.name()}: {error.str()}") if error.code() in REFUSALS else error


def retry_parked(rows):
    """Un-park the parked rows among ``rows`` (a queryset) and wake the relay; return how many.

    The relay then publishes them and the rows held behind them, in per-key order.
    """
    count = rows.parked().update(parked_at=None)
    if count:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [NOTIFY_CHANNEL])
    return count


class OutboxRelay:
    """One relay process (or thread). ``run`` returns once ``stop`` is set."""

    def __init__(self, *, batch_size=500, poll_interval=1.0, shutdown_grace=10.0, stop=None):
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.stop = stop or threading.Event()
        self.publisher = make_publisher(self.stop, shutdown_grace)
        self._failing = False
        self._failure_backoff = Backoff()
        self.leading = False

    # ---------------------------------------------------------------- life cycle

    def health(self):
        """(alive, detail) for /healthz. Waiting for Kafka is the relay's job, not a fault (the
        outbox absorbs an outage), so a running relay is alive, leader or standby."""
        return True, "relay: leader" if self.leading else "relay: standby"

    def run(self):
        backoff = Backoff()
        try:
            while not self.stop.is_set():
                try:
                    with self._lock_connection() as lock_conn:
                        backoff.reset()
                        self._serve(lock_conn)
                except (psycopg.Error, DatabaseError, InterfaceError) as exc:
                    logger.warning("relay: database unavailable (%s); retrying in %.0f s", exc, backoff.peek())
                    connection.close()
                    self.stop.wait(backoff.next())
        finally:
            RELAY_IS_LEADER.set(0)
            self.publisher.close()
            connections.close_all()
            logger.info("relay: stopped")

    def _lock_connection(self):
        params = connection.get_connection_params()
        return psycopg.connect(**params, autocommit=True)

    def _serve(self, lock_conn):
        """Stand by until this relay holds the leader lock, then relay until stopped."""
        standby_logged = False
        while not self.stop.is_set():
            if lock_conn.execute("SELECT pg_try_advisory_lock(%s)", [LEADER_LOCK_KEY]).fetchone()[0]:
                break
            if not standby_logged:
                logger.info("relay: standby; another relay holds the leader lock")
                standby_logged = True
            self.stop.wait(self.poll_interval)
        else:
            return
        logger.info("relay: leader; publishing the outbox %s", self.publisher.destination)
        RELAY_IS_LEADER.set(1)
        self.leading = True
        try:
            lock_conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            while not self.stop.is_set():
                if self.relay_once() < self.batch_size:
                    # Wait for a commit (NOTIFY) or the polling interval. A dead lock connection
                    # raises here, which ends leadership before the next round.
                    for _ in lock_conn.notifies(timeout=self.poll_interval, stop_after=1):
                        pass
        finally:
            RELAY_IS_LEADER.set(0)
            self.leading = False

    # ---------------------------------------------------------------- one round

    def relay_once(self):
        """Publish up to ``batch_size`` ready rows in id order; return how many were read."""
        rows = [
            OutboxRow(*values)
            for values in OutboxEvent.objects.ready()
            .order_by("id")
            .values_list(*OutboxRow._fields)[: self.batch_size]
        ]
        RELAY_LAG.set((timezone.now() - rows[0].created_at).total_seconds() if rows else 0)
        ROWS_PARKED.set(OutboxEvent.objects.parked().count())
        if not rows:
            return 0
        if any(row.park_reason for row in rows):
            self.publisher.renew()  # a retried row: its cause was fixed, maybe a topic's limit
        self._record(rows, self.publisher.publish(rows))
        return len(rows)

    def _record(self, rows, outcome):
        acked_at = timezone.now()
        sent = []
        failures = []
        for row in rows:
            if row.id not in outcome:
                continue  # held back behind an earlier row of its key, or not reached: next round
            result = outcome[row.id]
            if result is None:
                sent.append(row.id)
                EVENTS_RELAYED.labels(topic=row.topic).inc()
                RELAY_LATENCY.observe((acked_at - row.created_at).total_seconds())
            elif isinstance(result, Refusal):
                self._park(row, result.reason, acked_at)
            else:
                failures.append(result)
        if sent:
            OutboxEvent.objects.filter(id__in=sent).update(sent_at=acked_at)
        if failures:
            if not self._failing:
                self._failing = True
                logger.error("relay: %d events not delivered (first error: %s); retrying", len(failures), failures[0])
            self.stop.wait(self._failure_backoff.next())
        elif self._failing:
            self._failing = False
            self._failure_backoff.reset()
            logger.info("relay: delivering again")

    def _park(self, row, reason, parked_at):
        OutboxEvent.objects.filter(id=row.id).update(parked_at=parked_at, park_reason=reason)
        EVENTS_PARKED.labels(topic=row.topic).inc()
        ROWS_PARKED.inc()
        logger.error(
            "relay: parked outbox row %d (%s %s, key %s): %s; later rows of key %s wait until "
            "`manage.py retry_parked --id %d` after the cause is fixed",
            row.id, row.event_type, row.event_id, row.key, reason, row.key, row.id,
        )


class OutboxRow(NamedTuple):
    id: int
    topic: str  # base name
    key: str
    payload: str
    event_type: str
    event_id: uuid.UUID
    created_at: datetime
    park_reason: str  # non-empty: parked once, now retried

    def headers(self):
        return {"event_type": self.event_type, "event_id": str(self.event_id)}


class KafkaPublisher:
    """Produces a round's rows with one idempotent producer and waits for every acknowledgement."""

    destination = "to Kafka"

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
            self._producer = Producer(producer_config(topic_message_limit()))
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


class DaprPublisher:
    """Publishes through the Dapr sidecar's pub/sub API (EVENT_TRANSPORT=dapr), one row at a time.

    ``rawPayload`` keeps the wire format identical to the direct transport (no CloudEvent
    envelope), ``partitionKey`` is the Kafka key, and the Kafka component forwards the other
    metadata (``event_type``, ``event_id``) as message headers. Dapr answers 204 once the
    broker has acknowledged, so rows go one by one. A refusal of the message parks its row and
    holds back only its key; an outage (PublishFailure.refused false) ends the round: nothing of
    a task is published after one of its events that was not.
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


def make_publisher(stop, shutdown_grace):
    if settings.EVENT_TRANSPORT == "dapr":
        return DaprPublisher(port=settings.DAPR_HTTP_PORT, pubsub=settings.DAPR_PUBSUB_NAME)
    return KafkaPublisher(stop, shutdown_grace)


class Backoff:
    """Exponential backoff from 0.5 s to 30 s."""

    def __init__(self, first=0.5, limit=30.0):
        self.first, self.limit, self.current = first, limit, first

    def peek(self):
        return self.current

    def next(self):
        delay, self.current = self.current, min(self.current * 2, self.limit)
        return delay

    def reset(self):
        self.current = self.first
