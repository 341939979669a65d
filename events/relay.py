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
* Kafka down. The publisher waits for the broker instead of failing messages (infinite
  ``message.timeout.ms``, see events.transports.kafka.producer), logging once, and resumes on its
  own. Other transient errors (timeouts, leader elections, a missing topic) are retried with
  backoff: the fault is Kafka's, not the message's, and waiting is right.
* One refused message blocks nobody else. An answer that refuses *this* message for good
  (too large, invalid, not authorised, ...: the transport says which) parks its row (``parked_at``,
  ``park_reason``; counted in ``outbox_events_parked_total``): the relay never retries it on
  its own, and only the later rows of the same key wait behind it (``OutboxEvent.objects.
  ready()`` leaves them out), so per-task order holds while every other task flows.
  ``retry_parked`` (events.outbox, or the admin action) un-parks rows once the cause is
  fixed; a retried row gets a fresh producer, which reads the topics' limits again.

  How a refusal by the broker (rather than at ``produce()``) is kept from reordering a key is
  the Kafka publisher's part: "Order within one round" in events.transports.kafka.producer.
* With EVENT_TRANSPORT=dapr the same loop publishes through the Dapr sidecar instead
  (events.transports.dapr.DaprPublisher): same rows, same order, same wire format. A sidecar
  outage parks nothing and waits; an answer refusing the message parks it (PublishFailure).

The loop knows no client library: a publisher (``make_publisher``, one per transport) takes a
round of rows and answers per row (events.core.publishing).

The relay wakes on PostgreSQL NOTIFY (sent at commit by a trigger on the outbox table) and
polls every ``poll_interval`` seconds as a fallback for lost notifications.
"""

import logging
import threading

import psycopg
from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection, connections
from django.utils import timezone
from prometheus_client import Counter, Gauge, Histogram

from events.core.publishing import OutboxRow, Refusal
from events.core.retry import Backoff
from events.models import OutboxEvent
from events.outbox import NOTIFY_CHANNEL
from events.transports.dapr import DaprPublisher
from events.transports.kafka.producer import KafkaPublisher

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
# The relay's waits for the database and the broker (0.5 s doubling up to 30 s).
RELAY_BACKOFF = Backoff(initial=0.5, multiplier=2.0, limit=30.0)

RELAY_IS_LEADER = Gauge("outbox_relay_leader", "1 while this process is the active (leader) relay.")
EVENTS_PARKED = Counter("outbox_events_parked_total", "Outbox rows parked because Kafka refused them.", ["topic"])
ROWS_PARKED = Gauge("outbox_rows_parked", "Outbox rows parked at the last relay round (waiting for retry_parked).")

class OutboxRelay:
    """One relay process (or thread). ``run`` returns once ``stop`` is set."""

    def __init__(self, *, batch_size=500, poll_interval=1.0, shutdown_grace=10.0, stop=None):
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.stop = stop or threading.Event()
        self.publisher = make_publisher(self.stop, shutdown_grace)
        self._failing = False
        self._failure_backoff = RELAY_BACKOFF.counter()
        self.leading = False

    # ---------------------------------------------------------------- life cycle

    def health(self):
        """(alive, detail) for /healthz. Waiting for Kafka is the relay's job, not a fault (the
        outbox absorbs an outage), so a running relay is alive, leader or standby."""
        return True, "relay: leader" if self.leading else "relay: standby"

    def run(self):
        backoff = RELAY_BACKOFF.counter()
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


def make_publisher(stop, shutdown_grace):
    if settings.EVENT_TRANSPORT == "dapr":
        return DaprPublisher(port=settings.DAPR_HTTP_PORT, pubsub=settings.DAPR_PUBSUB_NAME)
    return KafkaPublisher(stop, shutdown_grace)
