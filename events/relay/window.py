"""The publish window: the rows published and not answered yet, and Kafka's answers recorded as they
come (acknowledged rows handed to the sent-marker, refused rows parked, failures paused for)."""

import logging
import time
from collections import Counter as Tally
from operator import attrgetter

from django.utils import timezone

from events.core.publishing import Refusal
from events.models import OutboxEvent
from events.relay.marking import SentMarker
from events.relay.metrics import EVENTS_PARKED, EVENTS_RELAYED, RELAY_LATENCY, ROWS_PARKED

logger = logging.getLogger("events.relay")

TOPIC = attrgetter("topic")  # of an OutboxRow
# How long a round waits at a time for Kafka's answers when the window has no room for the rows it read.
ANSWER_WAIT_SECONDS = 0.5
# Rows published this long after the first row in flight wait for Kafka's answers to the window:
# a bound on how late a row is marked sent (see Window.closed).
MARK_WITHIN_SECONDS = 0.05


class Window:
    """The rows a leader published on ``publisher`` and has not seen marked sent: in flight (``rows``)
    or acknowledged and waiting for the ``marker`` (one per leadership, see ``open``)."""

    def __init__(self, publisher, stop, *, most_in_flight, failure_backoff):
        self.publisher = publisher
        self.stop = stop
        self.most_in_flight = most_in_flight
        self.marker = None  # while leading
        self.rows = {}  # row id -> row, published and not answered yet
        self._opened_at = 0.0  # when the rows in flight began to be published (monotonic)
        self._failing = False
        self.reread = False  # rows failed: read them again without waiting for a NOTIFY
        self._failure_backoff = failure_backoff

    def open(self):
        """A leadership begins: a new sent-marker."""
        self.marker = SentMarker()

    def close(self):
        """A leadership ends: rows still in flight stay unsent (the next leader re-sends them), the
        marker marks what was handed to it."""
        self.rows.clear()
        marker, self.marker = self.marker, None
        marker.close()

    def ids(self):
        """The ids of the rows published and not yet marked (in flight, or acknowledged)."""
        return self.publisher.in_flight.keys() | self.marker.pending

    def closed(self, count, caught_up):
        """Whether ``count`` more rows must wait for Kafka's answers to the rows in flight: the
        window has no room for them, or (read by a ``caught_up`` relay) has been open for
        MARK_WITHIN_SECONDS. The Kafka publisher answers its window once it holds none of it;
        under a steady trickle of commits, new rows joining it would put that (and the marks) off
        until it is full. Under a backlog only room counts: a window cut short by a slow read
        halved what was in flight."""
        if not self.publisher.in_flight:
            return False
        return len(self.publisher.in_flight) + count > self.most_in_flight or (
            caught_up and time.monotonic() - self._opened_at > MARK_WITHIN_SECONDS
        )

    def answered(self):
        """Wait until Kafka answered every row in flight, recording its answers; whether they were
        all acknowledgements (then rows read meanwhile may follow: no row of theirs failed or
        was parked, so every earlier row of their keys is out or in them).

        The Kafka publisher answers the window all at once (events.transports.kafka.producer): the
        next round is read while Kafka acknowledges, not after."""
        while self.publisher.in_flight and not self.stop.is_set():
            outcome = self.publisher.collect(ANSWER_WAIT_SECONDS)
            self.record(outcome)
            if any(result is not None for result in outcome.values()):
                return False
        return not self.stop.is_set()

    def publish(self, rows):
        """Publish ``rows`` behind those in flight."""
        if not self.publisher.in_flight:
            self._opened_at = time.monotonic()
        outcome = self.publisher.publish(rows)
        if outcome:  # rows produce() did not take (and their keys' later rows, held back)
            self.rows.update((row.id, row) for row in rows if row.id in self.publisher.in_flight)
            self.record(outcome, rows={row.id: row for row in rows})
        else:  # every row in flight
            self.rows.update({row.id: row for row in rows})

    def drain(self):
        """Wait until Kafka answered every row in flight, and record the answers."""
        self.record(self.publisher.collect(everything=True))

    def record(self, outcome, rows=None):
        """Record Kafka's answers: hand the acknowledged rows to the marker, park the refused ones."""
        if not outcome:
            return
        rows = rows or self.rows
        answered_at = timezone.now()
        # The usual answer acknowledges every row: list comprehensions over it, not a loop of
        # statements per row (the relay's thread is the drain's bottleneck).
        sent = [row_id for row_id, result in outcome.items() if result is None]
        acknowledged = [rows[row_id] for row_id in sent]
        failures = []
        if len(sent) < len(outcome):
            for row_id, result in outcome.items():
                if isinstance(result, Refusal):
                    self._park(rows[row_id], result.reason, answered_at)
                elif result is not None:
                    failures.append(result)
        for row_id in outcome:
            self.rows.pop(row_id, None)
        if sent:
            self.marker.mark(sent, answered_at)
            for topic, count in Tally(map(TOPIC, acknowledged)).items():
                EVENTS_RELAYED.labels(topic=topic).inc(count)
            RELAY_LATENCY.observe_round(answered_at.timestamp(), [row.created_at for row in acknowledged])
        if failures:
            if not self._failing:
                self._failing = True
                logger.error("relay: %d events not delivered (first error: %s); retrying", len(failures), failures[0])
            # As a lockstep round would: nothing more of the failed rows' keys goes out before
            # they are read again, in order, after the pause.
            self.drain()
            self.stop.wait(self._failure_backoff.next())
            self.reread = True
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
