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
* Pipelined rounds. A round does not wait for the previous one's acknowledgements: it reads
  the next ready rows in id order *leaving out the window* (rows produced and not yet marked),
  and produces them behind the window on the same producer (when the window has no room for
  them, it waits for Kafka's answers after the read, not before, and reads again unless they
  were all acknowledgements). A row of a task is read only once
  every earlier row of that task is committed (see above), so it is either in the window (then
  produced before it) or read with it, in order; a row whose transaction committed late is in
  no window and is read by the next round. Acknowledged rows go to a ``SentMarker`` thread,
  which marks them sent with one UPDATE for all the acknowledgements handed to it since its
  last, while the next rounds are read and published; they stay in the window until that UPDATE
  committed. Rounds start
  at ``SMALLEST_BATCH`` rows and double while every read fills its batch, up to
  ``batch_size``; at most twice ``batch_size`` rows are in flight, and twice as many wait for the
  marker.
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

  A refusal at ``produce()`` is known at once: the row is parked before the next round is
  read, so ``ready()`` already leaves its key's later rows out of it. How a refusal by the
  broker (rather than at ``produce()``) is kept from reordering a key is the Kafka publisher's
  part: "Order within the window" in events.transports.kafka.producer. Any other failure
  drains the window (every answer in) and pauses before the failed rows are read again, as a
  lockstep round would.
* With EVENT_TRANSPORT=dapr the same loop publishes through the Dapr sidecar instead
  (events.transports.dapr.DaprPublisher): same rows, same order, same wire format. A sidecar
  outage parks nothing and waits; an answer refusing the message parks it (PublishFailure).
  The sidecar answers each row before the next is sent, so nothing is ever in flight and the
  rounds stay in lockstep (only the marking runs beside them).

The loop knows no client library: a publisher (``make_publisher``, one per transport) takes
rounds of rows and answers per row, at once or later (events.core.publishing).

The relay wakes on PostgreSQL NOTIFY (sent at commit by a trigger on the outbox table) and
polls every ``poll_interval`` seconds as a fallback for lost notifications. A read that finds
fewer rows than it asked for has caught up with every row committed before it, and every later
commit NOTIFYs: so once caught up the relay reads again only after a NOTIFY (or the polling
interval), never just to find nothing, and a change costs it one read, not three (at 50 changes/s
the empty reads and the parked-rows count were most of its CPU).
"""

import logging
import queue
import select
import threading
import time
from bisect import bisect_left
from collections import Counter as Tally
from datetime import datetime
from datetime import timezone as dt_timezone
from operator import attrgetter

import psycopg
from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection, connections, reset_queries
from django.db.models import FloatField, TextField
from django.db.models.functions import Cast, Extract
from django.db.models.sql import UpdateQuery
from django.utils import timezone
from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import HistogramMetricFamily

from events.core.publishing import OutboxRow, Refusal
from events.core.retry import Backoff
from events.models import OutboxEvent, id_array
from events.outbox import NOTIFY_CHANNEL
from events.transports.dapr import DaprPublisher
from events.transports.kafka.producer import KafkaPublisher

logger = logging.getLogger(__name__)

# Any constant bigint shared by every relay of one database: the leader lock's key.
LEADER_LOCK_KEY = 0x6F7574626F78  # "outbox"

EVENTS_RELAYED = Counter("outbox_events_relayed_total", "Outbox events acknowledged by Kafka.", ["topic"])
RELAY_LAG = Gauge("outbox_relay_lag_seconds", "Age of the oldest unsent outbox row at the last relay round.")
# The relay's waits for the database and the broker (0.5 s doubling up to 30 s).
RELAY_BACKOFF = Backoff(initial=0.5, multiplier=2.0, limit=30.0)

RELAY_IS_LEADER = Gauge("outbox_relay_leader", "1 while this process is the active (leader) relay.")
EVENTS_PARKED = Counter("outbox_events_parked_total", "Outbox rows parked because Kafka refused them.", ["topic"])
ROWS_PARKED = Gauge(
    "outbox_rows_parked", "Outbox rows parked (waiting for retry_parked), counted when the relay last caught up."
)

# The smallest round: what the relay reads while it keeps up (a burst's first events go out at once).
SMALLEST_BATCH = 250
# OutboxRow's columns, as the database sends them cheapest (the event id as text, the time as a float).
READ_COLUMNS = (
    "id", "topic", "key", "payload", "event_type", Cast("event_id", TextField()),
    Cast(Extract("created_at", "epoch"), FloatField()), "park_reason",
)
TOPIC = attrgetter("topic")  # of an OutboxRow
# How long a round waits at a time for Kafka's answers when the window has no room for the rows it read.
ANSWER_WAIT_SECONDS = 0.5
# Rows published this long after the first row in flight wait for Kafka's answers to the window:
# a bound on how late a row is marked sent (see OutboxRelay._window_closed).
MARK_WITHIN_SECONDS = 0.05
# Caught up with rows in flight, the relay listens for a commit this long between serving Kafka's
# answers (about the producer's linger.ms: an acknowledgement is recorded at most that late).
ANSWER_CHECK_SECONDS = 0.005
# The ids the relay's statements are compiled with; their array parameter is then replaced by the
# real ids' (no outbox row has a negative id).
PLACEHOLDER_IDS = (-1,)
# The time the sent-marker's UPDATE is compiled with (then replaced by each batch's).
PLACEHOLDER_TIME = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)


class RoundLatency:
    """A Prometheus histogram of the time from writing an outbox row to Kafka acknowledging it, fed
    the rows acknowledged together at once: their bucket counts come from one sort and a bisection
    per bucket. ``Histogram.observe`` per row (a lock and a bucket search each) was 8% of the relay's
    thread under a backlog (py-spy)."""

    def __init__(self, name, documentation, bounds, registry=REGISTRY):
        self.name, self.documentation = name, documentation
        self.bounds = tuple(bounds)
        self._counts = [0] * len(self.bounds)  # per bound: latencies at most that long (cumulative)
        self._count = 0
        self._sum = 0.0
        self._lock = threading.Lock()  # observe_round (the relay) against collect (a scrape)
        registry.register(self)

    def observe_round(self, answered_at, created_ats):
        """Count the latencies of rows written at ``created_ats`` (seconds since the epoch) and
        acknowledged at ``answered_at``."""
        created = sorted(created_ats)
        # A latency of at most ``bound`` is a row written at or after answered_at - bound.
        within = [len(created) - bisect_left(created, answered_at - bound) for bound in self.bounds]
        total = len(created) * answered_at - sum(created)
        with self._lock:
            self._counts = [count + more for count, more in zip(self._counts, within)]
            self._count += len(created)
            self._sum += total

    def collect(self):
        with self._lock:
            buckets = [(repr(float(bound)), count) for bound, count in zip(self.bounds, self._counts)]
            buckets.append(("+Inf", self._count))
            total = self._sum
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)


RELAY_LATENCY = RoundLatency(
    "outbox_relay_latency_seconds",
    "Time from writing an outbox row to Kafka acknowledging it.",
    (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def with_ids(params, ids, replacements=None):
    """Compiled ``params`` with the PLACEHOLDER_IDS array replaced by that of ``ids``, and any other
    placeholder value (a key of ``replacements``) by its replacement."""
    replacements = {id_array(PLACEHOLDER_IDS): id_array(ids), **(replacements or {})}
    return [replacements.get(param, param) for param in params]


class AdaptiveBatch:
    """How many rows the next round reads: the smallest batch while the relay keeps up, doubling
    (up to ``largest``) while every read fills its batch (a backlog), back to the smallest at the
    first read that does not."""

    def __init__(self, largest, smallest=SMALLEST_BATCH):
        self.smallest = min(smallest, largest)
        self.largest = largest
        self.size = self.smallest

    def read(self, count):
        """Adjust to a read that returned ``count`` rows (of ``size`` asked for)."""
        self.size = min(2 * self.size, self.largest) if count >= self.size else self.smallest


class SentMarker:
    """Marks acknowledged rows sent from a thread of its own (with its own database connection),
    one UPDATE for what was handed over since the last, while the relay reads and publishes the
    next rounds.
    ``pending`` holds the ids handed over and not marked yet: the relay does not read them again."""

    def __init__(self):
        self.pending = set()
        # Compiled once: building and compiling the queryset cost the marker more than the UPDATE
        # of one row (at 50 changes/s, a third of the relay's CPU).
        query = OutboxEvent.objects.listed(PLACEHOLDER_IDS).query.chain(UpdateQuery)
        query.add_update_values({"sent_at": PLACEHOLDER_TIME})
        self._update_sql, self._update_params = query.get_compiler(connection.alias).as_sql()
        self._todo = queue.SimpleQueue()
        self._marked = queue.SimpleQueue()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="outbox-relay-marker", daemon=True)
        self._thread.start()

    def mark(self, ids, sent_at):
        self.pending.update(ids)
        self._todo.put((ids, sent_at))

    def settle(self, timeout=0.0):
        """Forget the rows marked since the last call (waiting up to ``timeout`` seconds for some);
        raise the error that stopped the thread, if one did."""
        try:
            self.pending.difference_update(self._marked.get(timeout=timeout) if timeout else self._marked.get_nowait())
            while True:
                self.pending.difference_update(self._marked.get_nowait())
        except queue.Empty:
            pass
        if self._error is not None:
            raise self._error

    def close(self):
        """Mark what was handed over (unless the database failed), then stop the thread."""
        self._todo.put(None)
        self._thread.join()
        self.settle()

    def _run(self):
        try:
            with connection.cursor() as cursor:
                # The marks are committed without waiting for their WAL to reach the disk (this
                # session only): at a low rate each change cost the marker a WAL flush, at a high one
                # its wait held rows in the window. A PostgreSQL crash can then forget the last
                # fraction of a second of marks (never a change: the writers' commits wait as
                # always, and the WAL keeps its order, so what is lost is a tail of marks), and their
                # rows are sent again: duplicates, which the consumers skip by event id, re-sent in id
                # order after the copies that went before (see "Duplicates are harmless" above).
                cursor.execute("SET synchronous_commit = off")
            stopping = False
            while not stopping and (work := self._todo.get()) is not None:
                ids, sent_at = list(work[0]), work[1]
                # What was handed over meanwhile joins the same UPDATE: under a backlog the marker
                # trails the acknowledgements, and a statement per batch of them costs it more. The
                # latest acknowledgement's time is after each of them.
                while not stopping:
                    try:
                        work = self._todo.get_nowait()
                    except queue.Empty:
                        break
                    if work is None:
                        stopping = True
                    else:
                        ids.extend(work[0])
                        sent_at = work[1]
                # With DEBUG, Django keeps the last 9000 statements of a connection until a request
                # ends; a window's ids make a statement tens of kilobytes long.
                reset_queries()
                with connection.cursor() as cursor:
                    cursor.execute(self._update_sql, with_ids(self._update_params, ids, {PLACEHOLDER_TIME: sent_at}))
                self._marked.put(ids)
        except Exception as exc:  # handed to the relay's thread, which decides (settle raises it)
            self._error = exc
            self._marked.put(())
        finally:
            connection.close()


class OutboxRelay:
    """One relay process (or thread). ``run`` returns once ``stop`` is set. Rounds are pipelined
    (see "Pipelined rounds" above): up to ``batch_size`` rows per round, twice that in flight."""

    def __init__(self, *, batch_size=4000, poll_interval=1.0, shutdown_grace=10.0, stop=None):
        self.batch = AdaptiveBatch(batch_size)
        self.most_in_flight = 2 * batch_size
        # Kafka's answers hand the marker a window at a time; the relay waits for the marker only
        # when it trails by more (waiting at every window was a fifth of the drain, py-spy --idle).
        self.most_waiting_for_marker = 2 * self.most_in_flight
        self.poll_interval = poll_interval
        self.stop = stop or threading.Event()
        self.publisher = make_publisher(self.stop, shutdown_grace)
        self._marker = None  # while leading
        self._rows = {}  # row id -> row, published and not answered yet
        self._window_opened_at = 0.0  # when the rows in flight began to be published (monotonic)
        self._statements = {}  # (rows asked, a window to leave out?) -> the read's (sql, params)
        self._parked_counted_at = float("-inf")
        self._failing = False
        self._reread = False  # rows failed: read them again without waiting for a NOTIFY
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
        self._marker = SentMarker()
        try:
            lock_conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            read = True  # rows committed before the LISTEN notified nobody
            while not self.stop.is_set():
                if read or self._reread:
                    read = self.relay_once()
                elif self.publisher.in_flight:
                    # Caught up, rows in flight: serve Kafka's answers while listening for the next
                    # commit, so that a row committed meanwhile does not wait for them.
                    self._record(self.publisher.collect())
                    read = self._notified(lock_conn, timeout=ANSWER_CHECK_SECONDS)
                else:
                    self._count_parked()
                    # Wait for a commit (NOTIFY) or the polling interval, then read. A dead lock
                    # connection raises here, which ends leadership before the next round.
                    self._notified(lock_conn, timeout=self.poll_interval)
                    read = True
            self._record(self.publisher.collect(everything=True))
        finally:
            RELAY_IS_LEADER.set(0)
            self.leading = False
            # Rows still in flight stay unsent (the next leader re-sends them): a new leadership
            # starts with a new producer and an empty window.
            self.publisher.close()
            self._rows.clear()
            marker, self._marker = self._marker, None
            marker.close()

    @staticmethod
    def _notified(lock_conn, timeout):
        """Whether a NOTIFY arrived (waiting up to ``timeout`` seconds for one); consumes those in.

        The wait is a select() on the connection's socket: psycopg's ``notifies(timeout=...)``
        costs ~0.8 ms of CPU whenever its timeout expires (it raises and catches an error), which
        was most of an idle relay's CPU and, at 50 changes/s, a quarter of a busy one's."""
        if sum(1 for _ in lock_conn.notifies(timeout=0)):  # every one in (they all mean "read")
            return True
        if timeout and select.select([lock_conn.fileno()], [], [], timeout)[0]:
            # Readable: a notification, or the connection's end (which raises here).
            return bool(sum(1 for _ in lock_conn.notifies(timeout=0)))
        return False

    def _count_parked(self):
        """Refresh the parked-rows gauge, at most once per polling interval (_park counts between)."""
        now = time.monotonic()
        if now - self._parked_counted_at >= self.poll_interval:
            self._parked_counted_at = now
            ROWS_PARKED.set(OutboxEvent.objects.parked().count())

    # ---------------------------------------------------------------- one round

    def relay_once(self):
        """One round: read the next ready rows, publish them behind those in flight (first waiting
        for Kafka's answers when there is no room for them), then record Kafka's answers so far.
        True while behind: the read filled its batch, or its rows wait for a new read; False once it
        caught up (see the module's last paragraph)."""
        reset_queries()  # DEBUG's log of statements, which a request would have ended (see SentMarker)
        self._marker.settle()
        self._reread = False
        if len(self._marker.pending) >= self.most_waiting_for_marker:  # the marker trails: it bounds the window
            self._marker.settle(ANSWER_WAIT_SECONDS)
            return True
        asked = self.batch.size
        rows = self._read(asked)
        if rows and self._window_closed(len(rows), caught_up=len(rows) < asked) and not self._answered():
            return True  # read again: the answers were not all acknowledgements, or the relay stops
        if rows:
            if any(row.park_reason for row in rows):
                self._drain()
                self.publisher.renew()  # a retried row: its cause was fixed, maybe a topic's limit
            if not self.publisher.in_flight:
                self._window_opened_at = time.monotonic()
            outcome = self.publisher.publish(rows)
            if outcome:  # rows produce() did not take (and their keys' later rows, held back)
                self._rows.update((row.id, row) for row in rows if row.id in self.publisher.in_flight)
                self._record(outcome, rows={row.id: row for row in rows})
            else:  # every row in flight
                self._rows.update({row.id: row for row in rows})
        behind = len(rows) == asked
        if not behind:
            self._record(self.publisher.collect())  # caught up: _serve waits
        return behind

    def _window_closed(self, count, caught_up):
        """Whether ``count`` more rows must wait for Kafka's answers to the rows in flight: the
        window has no room for them, or (read by a ``caught_up`` relay) has been open for
        MARK_WITHIN_SECONDS. The Kafka publisher answers its window once it holds none of it;
        under a steady trickle of commits, new rows joining it would put that (and the marks) off
        until it is full. Under a backlog only room counts: a window cut short by a slow read
        halved what was in flight."""
        if not self.publisher.in_flight:
            return False
        return len(self.publisher.in_flight) + count > self.most_in_flight or (
            caught_up and time.monotonic() - self._window_opened_at > MARK_WITHIN_SECONDS
        )

    def _answered(self):
        """Wait until Kafka answered every row in flight, recording its answers; whether they were
        all acknowledgements (then rows read meanwhile may follow: no row of theirs failed or
        was parked, so every earlier row of their keys is out or in them).

        The Kafka publisher answers the window all at once (events.transports.kafka.producer): the
        next round is read while Kafka acknowledges, not after."""
        while self.publisher.in_flight and not self.stop.is_set():
            outcome = self.publisher.collect(ANSWER_WAIT_SECONDS)
            self._record(outcome)
            if any(result is not None for result in outcome.values()):
                return False
        return not self.stop.is_set()

    def _statement(self, count, windowed):
        """The read's SQL and parameters, compiled from ``ready()`` once per batch size and kind:
        building and compiling the queryset cost more than running it at light load (py-spy)."""
        key = (count, windowed)
        if key not in self._statements:
            query = OutboxEvent.objects.ready()
            if windowed:
                query = query.unlisted(PLACEHOLDER_IDS)
            query = query.order_by("id").values_list(*READ_COLUMNS)[:count]
            self._statements[key] = query.query.sql_with_params()
        return self._statements[key]

    def _window(self):
        """The ids of the rows published and not yet marked (in flight, or acknowledged)."""
        return self.publisher.in_flight.keys() | self._marker.pending

    def _read(self, count):
        """The next ``count`` ready rows in id order, leaving out the window."""
        window = self._window()
        sql, params = self._statement(count, bool(window))
        if window:
            params = with_ids(params, window)
        # A plain cursor and a tuple per row: the ORM's row iterator and Django's Python loader of
        # timestamps with time zone cost more than the rest of the round (py-spy).
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = list(map(OutboxRow._make, cursor.fetchall()))
        self.batch.read(len(rows))
        RELAY_LAG.set(time.time() - rows[0].created_at if rows else 0)
        return rows

    def _drain(self):
        """Wait until Kafka answered every row in flight, and record the answers."""
        self._record(self.publisher.collect(everything=True))

    def _record(self, outcome, rows=None):
        """Record Kafka's answers: hand the acknowledged rows to the marker, park the refused ones."""
        if not outcome:
            return
        rows = rows or self._rows
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
            self._rows.pop(row_id, None)
        if sent:
            self._marker.mark(sent, answered_at)
            for topic, count in Tally(map(TOPIC, acknowledged)).items():
                EVENTS_RELAYED.labels(topic=topic).inc(count)
            RELAY_LATENCY.observe_round(answered_at.timestamp(), [row.created_at for row in acknowledged])
        if failures:
            if not self._failing:
                self._failing = True
                logger.error("relay: %d events not delivered (first error: %s); retrying", len(failures), failures[0])
            # As a lockstep round would: nothing more of the failed rows' keys goes out before
            # they are read again, in order, after the pause.
            self._drain()
            self.stop.wait(self._failure_backoff.next())
            self._reread = True
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
