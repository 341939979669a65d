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
  resumes on its own. A delivery error that still comes back is permanent (e.g. a message
  too large, a missing topic, no authorisation): it is logged and retried with backoff, and
  needs an operator.

* With EVENT_TRANSPORT=dapr the same loop publishes through the Dapr sidecar instead
  (DaprPublisher below): same rows, same order, same wire format.

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
from confluent_kafka import Producer
from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection, connections
from django.utils import timezone
from prometheus_client import Counter, Gauge, Histogram

from events.dapr import DaprSidecar
from events.kafka import client_config
from events.models import OutboxEvent
from events.outbox import NOTIFY_CHANNEL
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


def producer_config():
    return client_config(
        **{
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
    )


class OutboxRelay:
    """One relay process (or thread). ``run`` returns once ``stop`` is set."""

    def __init__(self, *, batch_size=500, poll_interval=1.0, shutdown_grace=10.0, stop=None):
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.stop = stop or threading.Event()
        self.publisher = make_publisher(self.stop, shutdown_grace)
        self._failing = False
        self._failure_backoff = Backoff()

    # ---------------------------------------------------------------- life cycle

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
        logger.info("relay: leader; publishing the outbox to Kafka")
        RELAY_IS_LEADER.set(1)
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

    # ---------------------------------------------------------------- one round

    def relay_once(self):
        """Publish up to ``batch_size`` unsent rows in id order; return how many were read."""
        rows = [
            OutboxRow(*values)
            for values in OutboxEvent.objects.filter(sent_at__isnull=True)
            .order_by("id")
            .values_list("id", "topic", "key", "payload", "event_type", "event_id", "created_at")[: self.batch_size]
        ]
        RELAY_LAG.set((timezone.now() - rows[0].created_at).total_seconds() if rows else 0)
        if not rows:
            return 0
        self._record(rows, self.publisher.publish(rows))
        return len(rows)

    def _record(self, rows, outcome):
        acked_at = timezone.now()
        sent = []
        failures = []
        for row in rows:
            error = outcome.get(row.id, "not attempted")
            if error is None:
                sent.append(row.id)
                EVENTS_RELAYED.labels(topic=row.topic).inc()
                RELAY_LATENCY.observe((acked_at - row.created_at).total_seconds())
            else:
                failures.append(error)
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


class OutboxRow(NamedTuple):
    id: int
    topic: str  # base name
    key: str
    payload: str
    event_type: str
    event_id: uuid.UUID
    created_at: datetime

    def headers(self):
        return {"event_type": self.event_type, "event_id": str(self.event_id)}


class KafkaPublisher:
    """Produces a round's rows with one idempotent producer and waits for every acknowledgement."""

    def __init__(self, stop, shutdown_grace):
        self.stop = stop
        self.shutdown_grace = shutdown_grace
        self._producer = None
        self._waiting = False

    def publish(self, rows):
        """{row id: None when Kafka acknowledged it, else the KafkaError}."""
        if self._producer is None:
            self._producer = Producer(producer_config())
        outcome = {}
        for row in rows:
            self._produce(
                topic=topic_name(row.topic),
                key=row.key.encode(),
                value=row.payload.encode(),
                headers=[(name, value.encode()) for name, value in row.headers().items()],
                on_delivery=lambda err, msg, row_id=row.id: outcome.__setitem__(row_id, err),
            )
        self._await_deliveries()
        if any(error is not None and error.fatal() for error in outcome.values()):
            self.close()  # a fatal idempotence error needs a new producer (a new producer id)
        return outcome

    def _produce(self, **message):
        while True:
            try:
                self._producer.produce(**message)
                return
            except BufferError:  # local queue full: let deliveries drain it
                self._producer.poll(0.1)

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
    broker has acknowledged, so rows go one by one, and a round stops at the first failure:
    nothing of a task is published after one of its events that was not.
    """

    def __init__(self, *, port, pubsub, timeout=30.0):
        self.pubsub = pubsub
        self.sidecar = DaprSidecar(port=port, timeout=timeout)

    def publish(self, rows):
        outcome = {}
        for row in rows:
            outcome[row.id] = self.sidecar.publish(
                self.pubsub, topic_name(row.topic), row.payload.encode(), key=row.key, metadata=row.headers()
            )
            if outcome[row.id] is not None:
                break
        return outcome

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
