"""The relay's loop (``relay_outbox``): stand by for the leader lock, then rounds of reading the
ready rows, publishing them behind the window and recording Kafka's answers (see events.relay for
why its guarantees hold). The loop knows no client library: a publisher (``make_publisher``, one per
transport) takes rounds of rows and answers per row, at once or later (events.core.publishing)."""

import logging
import threading
import time

import psycopg
from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection, connections, reset_queries

from events.core.retry import Backoff
from events.models import OutboxEvent
from events.outbox import NOTIFY_CHANNEL
from events.relay.leadership import lead, lock_connection, notified
from events.relay.metrics import RELAY_IS_LEADER, ROWS_PARKED
from events.relay.reading import AdaptiveBatch, ReadyRows
from events.relay.window import ANSWER_WAIT_SECONDS, Window
from events.transports.dapr import DaprPublisher
from events.transports.kafka.producer import KafkaPublisher

logger = logging.getLogger("events.relay")

# The relay's waits for the database and the broker (0.5 s doubling up to 30 s).
RELAY_BACKOFF = Backoff(initial=0.5, multiplier=2.0, limit=30.0)
# Caught up with rows in flight, the relay listens for a commit this long between serving Kafka's
# answers (about the producer's linger.ms: an acknowledgement is recorded at most that late).
ANSWER_CHECK_SECONDS = 0.005


class OutboxRelay:
    """One relay process (or thread). ``run`` returns once ``stop`` is set. Rounds are pipelined
    (see "Pipelined rounds" in events.relay): up to ``batch_size`` rows per round, twice that in flight."""

    def __init__(self, *, batch_size=4000, poll_interval=1.0, shutdown_grace=10.0, stop=None):
        self.batch = AdaptiveBatch(batch_size)
        most_in_flight = 2 * batch_size
        # Kafka's answers hand the marker a window at a time; the relay waits for the marker only
        # when it trails by more (waiting at every window was a fifth of the drain, py-spy --idle).
        self.most_waiting_for_marker = 2 * most_in_flight
        self.poll_interval = poll_interval
        self.stop = stop or threading.Event()
        self.publisher = make_publisher(self.stop, shutdown_grace)
        self.window = Window(
            self.publisher, self.stop, most_in_flight=most_in_flight, failure_backoff=RELAY_BACKOFF.counter()
        )
        self.ready_rows = ReadyRows()
        self._parked_counted_at = float("-inf")
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
                    with lock_connection() as lock_conn:
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

    def _serve(self, lock_conn):
        """Stand by until this relay holds the leader lock, then relay until stopped."""
        if not lead(lock_conn, self.stop, self.poll_interval):
            return
        logger.info("relay: leader; publishing the outbox %s", self.publisher.destination)
        RELAY_IS_LEADER.set(1)
        self.leading = True
        self.window.open()
        try:
            lock_conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            read = True  # rows committed before the LISTEN notified nobody
            while not self.stop.is_set():
                if read or self.window.reread:
                    read = self.relay_once()
                elif self.publisher.in_flight:
                    # Caught up, rows in flight: serve Kafka's answers while listening for the next
                    # commit, so that a row committed meanwhile does not wait for them.
                    self.window.record(self.publisher.collect())
                    read = notified(lock_conn, timeout=ANSWER_CHECK_SECONDS)
                else:
                    self._count_parked()
                    # Wait for a commit (NOTIFY) or the polling interval, then read. A dead lock
                    # connection raises here, which ends leadership before the next round.
                    notified(lock_conn, timeout=self.poll_interval)
                    read = True
            self.window.record(self.publisher.collect(everything=True))
        finally:
            RELAY_IS_LEADER.set(0)
            self.leading = False
            # Rows still in flight stay unsent (the next leader re-sends them): a new leadership
            # starts with a new producer and an empty window.
            self.publisher.close()
            self.window.close()

    def _count_parked(self):
        """Refresh the parked-rows gauge, at most once per polling interval (the window counts between)."""
        now = time.monotonic()
        if now - self._parked_counted_at >= self.poll_interval:
            self._parked_counted_at = now
            ROWS_PARKED.set(OutboxEvent.objects.parked().count())

    # ---------------------------------------------------------------- one round

    def relay_once(self):
        """One round: read the next ready rows, publish them behind those in flight (first waiting
        for Kafka's answers when there is no room for them), then record Kafka's answers so far.
        True while behind: the read filled its batch, or its rows wait for a new read; False once it
        caught up (see the last paragraph of events.relay)."""
        reset_queries()  # DEBUG's log of statements, which a request would have ended (see SentMarker)
        marker = self.window.marker
        marker.settle()
        self.window.reread = False
        if len(marker.pending) >= self.most_waiting_for_marker:  # the marker trails: it bounds the window
            marker.settle(ANSWER_WAIT_SECONDS)
            return True
        asked = self.batch.size
        rows = self.ready_rows.read(asked, self.window.ids())
        self.batch.read(len(rows))
        if rows and self.window.closed(len(rows), caught_up=len(rows) < asked) and not self.window.answered():
            return True  # read again: the answers were not all acknowledgements, or the relay stops
        if rows:
            if any(row.park_reason for row in rows):
                self.window.drain()
                self.publisher.renew()  # a retried row: its cause was fixed, maybe a topic's limit
            self.window.publish(rows)
        behind = len(rows) == asked
        if not behind:
            self.window.record(self.publisher.collect())  # caught up: _serve waits
        return behind


def make_publisher(stop, shutdown_grace):
    if settings.EVENT_TRANSPORT == "dapr":
        return DaprPublisher(port=settings.DAPR_HTTP_PORT, pubsub=settings.DAPR_PUBSUB_NAME)
    return KafkaPublisher(stop, shutdown_grace)
