"""The consumer runtime: the one loop every service runs (``python manage.py run_consumer <name>``).

For each message of its topic, in partition order:

1. Not JSON, or not an event of the contract (``validate_event`` raises InvalidEvent): dead-lettered
   at once with ``dlq.attempts = 0`` (the handler never ran). An unknown ``event_type``, or a type
   the consumer did not ask for: acknowledged and counted as skipped.
2. Otherwise, in ONE database transaction: record (consumer group, event_id) in
   ``events.ProcessedEvent`` and run the handler. If the row already existed, the event was
   processed before (a redelivery) and the handler is not run: every effect happens once.
   Consecutive valid events already fetched (up to ``CONSUMER_BATCH_SIZE``) share one
   transaction, so that one commit serves many events.
3. A handler error rolls the transaction back; its events are then re-run one transaction each,
   and the failing one is retried with exponential backoff (``RetryPolicy``, the failed batch run
   counting as its first attempt); after the last attempt the message is dead-lettered with
   ``dlq.attempts = max_attempts``. A handler that raises InvalidEvent is dead-lettered without
   retries. Database connection errors are not the event's fault: they stop the consumer
   instead (it re-reads the message after a restart) rather than dead-letter every event.
4. Only then is the message's offset stored; stored offsets are committed asynchronously every
   ``CONSUMER_COMMIT_INTERVAL_MS`` and synchronously on partition revocation and shutdown. A crash
   between effect and commit redelivers the message, and step 2 makes that harmless
   (at-least-once delivery, effectively-once effects).

A dead-letter write is confirmed by the broker before the offset moves past it. If nearly every
recent message was dead-lettered (``CONSUMER_DLQ_STOP_RATIO`` of the last
``CONSUMER_DLQ_STOP_WINDOW``), the consumer stops with DeadLetterRateExceeded: after a bad
deploy it is better to stop than to dead-letter the world.

Handlers take the validated event dict only; one that needs the Kafka coordinates of the message
(the audit trail) reads them with ``delivery_of(event)``. A consumer may also name a batch
handler taking a list of events (same effects as the handler on each, in fewer statements) for
the events fetched together.

Steps 1 to 3 are ``ConsumerRuntime.process``, which needs no Kafka consumer: with
EVENT_TRANSPORT=dapr the web process runs it on each message Dapr delivers over HTTP
(events.dapr), with a dead-letter writer that publishes through the Dapr sidecar, and Dapr
commits the offset when the route answers SUCCESS.
"""

import contextvars
import json
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connection, connections, transaction
from prometheus_client import Counter, Gauge, Histogram

from events.kafka import client_config
from events.models import ProcessedEvent
from events.schemas import InvalidEvent, UnknownEventType, utc_timestamp, validate_event
from events.topics import group_name, topic_name

logger = logging.getLogger(__name__)

PROCESSED = Counter("todo_consumer_processed", "Events whose handler ran and committed.", ["consumer"])
SKIPPED = Counter(
    "todo_consumer_skipped",
    "Messages acknowledged without running the handler (duplicate, unknown_type, not_subscribed).",
    ["consumer", "reason"],
)
RETRIED = Counter("todo_consumer_retried", "Handler runs repeated after a failure.", ["consumer"])
DEAD_LETTERED = Counter(
    "todo_consumer_dead_lettered", "Messages written to the dead-letter topic (invalid, failed).", ["consumer", "reason"]
)
PROCESSING_SECONDS = Histogram(
    "todo_consumer_processing_seconds", "Time from receiving a message to acknowledging it.", ["consumer"]
)
LAG = Gauge("todo_consumer_lag", "Messages between the consumer's position and the partition's end.", ["consumer", "partition"])

# Outcomes of one message.
PROCESSED_OUTCOME, DUPLICATE, SKIP, DEAD_LETTER = "processed", "duplicate", "skipped", "dead_lettered"

DLQ_HEADER_PREFIX = "dlq."


class DeadLetterRateExceeded(RuntimeError):
    """Nearly every recent message was dead-lettered: the consumer stops instead of going on."""


class DeadLetterWriteFailed(RuntimeError):
    """The broker did not confirm a dead-letter write, so the offset must not move past the message."""


@dataclass(frozen=True)
class Delivery:
    """Where the event being handled came from."""

    topic: str
    partition: int
    offset: int
    consumer_group: str


_deliveries = contextvars.ContextVar("deliveries")


def delivery_of(event):
    """Where ``event``, being handled right now, was read (LookupError outside a handler)."""
    return _deliveries.get()[event["event_id"]]


class ConsumerRuntime:
    def __init__(self, spec, *, dlq_stop_ratio=None, dlq_stop_window=None, batch_size=None, dead_letters=None):
        self.spec = spec
        self.name = spec.name
        self.topic = topic_name(spec.topic)
        self.group = group_name(spec.group)
        self.dead_letter_topic = topic_name(spec.dead_letter_topic)
        self.handler = spec.resolve_handler()
        self.batch_handler = spec.resolve_batch_handler()
        self.retry = spec.retry_policy()
        self.batch_size = batch_size or settings.CONSUMER_BATCH_SIZE
        self.dlq_stop_ratio = settings.CONSUMER_DLQ_STOP_RATIO if dlq_stop_ratio is None else dlq_stop_ratio
        self._recent_dead_letters = deque(maxlen=dlq_stop_window or settings.CONSUMER_DLQ_STOP_WINDOW)
        self._stop = threading.Event()
        self._stored_since_commit = False
        self._last_commit = self._last_lag = 0.0
        self._last_heartbeat = time.monotonic()
        self._consumer = None
        self._producer = None
        # Where dead letters are written: Kafka (the loop's own producer, made in run()) or,
        # for events Dapr delivers over HTTP, the sidecar's publish API (events.dapr).
        self.dead_letters = dead_letters

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self):
        """Ask the loop to finish the current message, commit and close. Safe from signal handlers."""
        self._stop.set()

    def run(self):
        self._consumer = Consumer(self._consumer_config())
        self._producer = Producer(client_config(**{"acks": "all", "enable.idempotence": True, "linger.ms": 0}))
        self.dead_letters = KafkaDeadLetters(self._producer)
        self._consumer.subscribe([self.topic], on_revoke=self._on_revoke, on_lost=self._on_lost)
        logger.info("consumer %s: reading %s as group %s", self.name, self.topic, self.group)
        commit_interval = settings.CONSUMER_COMMIT_INTERVAL_MS / 1000
        lag_interval = settings.CONSUMER_LAG_INTERVAL_SECONDS
        try:
            while not self._stop.is_set():
                self._last_heartbeat = time.monotonic()
                # Wait for one message, then take what else is already fetched, up to a batch.
                message = self._consumer.poll(0.1)
                if message is not None:
                    more = self._consumer.consume(self.batch_size - 1, timeout=0) if self.batch_size > 1 else []
                    self._handle_batch([message, *more])
                now = time.monotonic()
                if self._stored_since_commit and now - self._last_commit >= commit_interval:
                    self._commit(asynchronous=True)
                if now - self._last_lag >= lag_interval:
                    self._update_lag()
        finally:
            self._shut_down()
        logger.info("consumer %s: stopped cleanly", self.name)

    def _shut_down(self):
        try:
            self._commit(asynchronous=False, force=True)
        except KafkaException as exc:
            logger.error("consumer %s: final commit failed (the uncommitted events will be redelivered): %s", self.name, exc)
        finally:
            self._consumer.close()
            self._producer.flush(10)
            connections.close_all()

    def _consumer_config(self):
        return client_config(
            **{
                "group.id": self.group,
                "client.id": f"todo-platform-{self.name}",
                "auto.offset.reset": "earliest",
                # Offsets are stored by hand after a message's effects are durable, and committed by us.
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                # A batch is in hand between polls, retries included: give each message its backoff
                # (a hung consumer is caught by the liveness probe, see health(), not by this).
                "max.poll.interval.ms": min(
                    max(300_000, int(self.batch_size * (self.retry.total_backoff() + 10) * 1000)), 86_400_000
                ),
                "on_commit": self._on_commit,
            }
        )

    # -- messages ----------------------------------------------------------------------------

    def _handle_batch(self, messages):
        """Process messages in order; store the offsets of those finished (a prefix of them)."""
        started = time.perf_counter()
        done = []  # (message, outcome) in message order
        try:
            self.process(messages, done)
        finally:
            self._acknowledge(done, started)

    def process(self, messages, done):
        """Validate, record and handle (or dead-letter) the messages in order, appending
        (message, outcome) to ``done`` for each one finished: a prefix of them if this raises or
        is asked to stop. Needs no Kafka consumer: events.dapr hands Dapr deliveries to it too.
        A message is anything with confluent_kafka.Message's accessors (topic(), value(), ...)."""
        pending = []  # consecutive valid events waiting for one handler transaction
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaException(error)
                logger.warning("consumer %s: %s", self.name, error)
                continue
            event, invalid = self._parse(message)
            if invalid is None:
                if event is None or not self.spec.wants(event["event_type"]):
                    SKIPPED.labels(self.name, "unknown_type" if event is None else "not_subscribed").inc()
                    event = None  # acknowledged in its turn, without the handler
                pending.append((message, event))
                continue
            # Finish the events ahead of this message first: offsets only ever move past done work.
            if pending and not self._handle_events(pending, done):
                return
            pending = []
            outcome = self._dead_letter(message, invalid, attempts=0, reason="invalid")
            done.append((message, outcome))
            self._note(outcome)
        if pending:
            self._handle_events(pending, done)

    def _parse(self, message):
        """(event, None) for a valid event; (None, error) for a dead letter; (None, None) to skip."""
        try:
            event = json.loads(message.value())
        except (TypeError, ValueError) as exc:  # no value, bad UTF-8, not JSON
            return None, exc
        try:
            validate_event(event)
        except UnknownEventType as exc:
            logger.info("consumer %s: skipping %s at %s", self.name, exc, _coordinates(message))
            return None, None
        except InvalidEvent as exc:
            return None, exc
        try:
            # The idempotency record needs a real UUID (the schema leaves formats unchecked).
            event_id = uuid.UUID(event["event_id"])
        except ValueError:
            return None, InvalidEvent(f"event_id {event['event_id']!r} is not a UUID")
        return {**event, "event_id": str(event_id)}, None

    def _handle_events(self, pending, done):
        """Run the handler on each pending event (None: a skipped message); False if asked to stop
        before all were done.

        The fast path handles them all in ONE transaction (one commit for many events), through
        the consumer's batch handler when it has one. If anything fails, that transaction is
        rolled back and the events are re-run one transaction each, with retries. With a
        per-event handler the event that failed continues at its second attempt; a failed batch
        run blames no event in particular and counts as nobody's attempt.
        """
        failed_at = None
        try:
            with transaction.atomic():
                first_time = self._mark_processed([event["event_id"] for _, event in pending if event is not None])
                outcomes, fresh = [], []
                for position, (message, event) in enumerate(pending):
                    if event is None:
                        outcomes.append(SKIP)
                    elif event["event_id"] in first_time:
                        first_time.discard(event["event_id"])  # the same event twice in one batch
                        fresh.append((position, message, event))
                        outcomes.append(PROCESSED_OUTCOME)
                    else:
                        outcomes.append(DUPLICATE)
                if self.batch_handler is None:
                    for failed_at, message, event in fresh:
                        self._run([(message, event)], self.handler, event)
                    failed_at = None
                elif fresh:
                    self._run([(m, e) for _, m, e in fresh], self.batch_handler, [e for _, _, e in fresh])
        except Exception as exc:  # noqa: BLE001 - re-run one by one, where failures are retried or dead-lettered
            first_failure = exc
        else:
            for (message, _), outcome in zip(pending, outcomes):
                if outcome != SKIP:
                    self._count(outcome)
                done.append((message, outcome))
                self._note(outcome)
            return True
        for position, (message, event) in enumerate(pending):
            if event is None:
                outcome = SKIP
            else:
                outcome = self._run_handler(message, event, first_failure if position == failed_at else None)
            if outcome is None:  # stopping during a backoff: it and what follows are redelivered
                return False
            done.append((message, outcome))
            self._note(outcome)
            if self._stop.is_set():
                return False
        return True

    def _handle_once(self, message, event):
        """Inside the caller's transaction: record the event, run the handler unless it was seen before."""
        if not self._mark_processed([event["event_id"]]):
            return DUPLICATE
        self._run([(message, event)], self.handler, event)
        return PROCESSED_OUTCOME

    def _run(self, deliveries, handler, argument):
        """Call the handler with the Kafka coordinates of its events available to ``delivery_of``."""
        token = _deliveries.set(
            {
                event["event_id"]: Delivery(message.topic(), message.partition(), message.offset(), self.group)
                for message, event in deliveries
            }
        )
        try:
            handler(argument)
        finally:
            _deliveries.reset(token)

    def _run_handler(self, message, event, first_failure=None):
        """One event in its own transaction, retried with backoff, dead-lettered after the last attempt."""
        attempts = self.retry.max_attempts
        attempt, failure = (1, first_failure) if first_failure is not None else (0, None)
        while True:
            if failure is not None:
                if isinstance(failure, InvalidEvent):  # the handler says retrying cannot help
                    return self._dead_letter(message, failure, attempts=attempt, reason="invalid")
                logger.warning(
                    "consumer %s: handler failed on event %s (attempt %d of %d): %r",
                    self.name, event["event_id"], attempt, attempts, failure,
                )
                close_old_connections()  # drop a broken connection before the next attempt
                if attempt >= attempts:
                    break
                RETRIED.labels(self.name).inc()
                if self._wait(self.retry.backoff(attempt)):
                    return None
            attempt += 1
            try:
                with transaction.atomic():
                    outcome = self._handle_once(message, event)
            except Exception as exc:  # noqa: BLE001 - any handler failure is retried, then dead-lettered
                failure = exc
            else:
                self._count(outcome)
                return outcome
        if isinstance(failure, (OperationalError, InterfaceError)):
            raise failure  # the database is unreachable: stop and re-read later, do not dead-letter
        return self._dead_letter(message, failure, attempts=attempts, reason="failed")

    def _count(self, outcome):
        if outcome == DUPLICATE:
            SKIPPED.labels(self.name, "duplicate").inc()
        else:
            PROCESSED.labels(self.name).inc()

    def _acknowledge(self, done, started):
        """Store the offsets past the finished messages (committed later by ``_commit``)."""
        if not done:
            return
        next_offsets = {(message.topic(), message.partition()): message.offset() + 1 for message, _ in done}
        try:
            self._consumer.store_offsets(offsets=[TopicPartition(t, p, o) for (t, p), o in next_offsets.items()])
            self._stored_since_commit = True
        except KafkaException as exc:  # the partition was revoked meanwhile: its new owner re-reads
            logger.warning("consumer %s: offsets not stored: %s", self.name, exc)
        per_message = (time.perf_counter() - started) / len(done)
        histogram = PROCESSING_SECONDS.labels(self.name)
        for _ in done:
            histogram.observe(per_message)

    def _mark_processed(self, event_ids):
        """Record the events as processed by this group; return the ids not recorded before."""
        if not event_ids:
            return set()
        table = connection.ops.quote_name(ProcessedEvent._meta.db_table)
        now = datetime.now(UTC)
        rows = ", ".join(["(%s, %s, %s)"] * len(event_ids))
        params = [value for event_id in event_ids for value in (self.group, event_id, now)]
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (consumer_group, event_id, processed_at) VALUES {rows} "
                "ON CONFLICT DO NOTHING RETURNING event_id",
                params,
            )
            return {str(row[0]) for row in cursor.fetchall()}

    def _wait(self, seconds):
        """Sleep for a backoff while staying live; True if asked to stop meanwhile."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(remaining, 1.0)):
                return True
            self._last_heartbeat = time.monotonic()
        return self._stop.is_set()

    # -- dead letters ------------------------------------------------------------------------

    def _dead_letter(self, message, error, *, attempts, reason):
        headers = list(message.headers() or []) + [
            ("dlq.original.topic", message.topic()),
            ("dlq.original.partition", str(message.partition())),
            ("dlq.original.offset", str(message.offset())),
            ("dlq.consumer.group", self.group),
            ("dlq.error.type", type(error).__name__),
            ("dlq.error.message", str(error)[:2000]),
            ("dlq.attempts", str(attempts)),
            ("dlq.failed_at", utc_timestamp()),
        ]
        error_text = self.dead_letters.write(
            self.dead_letter_topic, key=message.key(), value=message.value(), headers=headers
        )
        if error_text is not None:
            raise DeadLetterWriteFailed(
                f"{self.dead_letter_topic} did not confirm the dead letter of {_coordinates(message)}: {error_text}"
            )
        DEAD_LETTERED.labels(self.name, reason).inc()
        logger.error(
            "consumer %s: dead-lettered %s to %s after %d attempt(s): %s: %s",
            self.name, _coordinates(message), self.dead_letter_topic, attempts, type(error).__name__, error,
        )
        return DEAD_LETTER

    def _note(self, outcome):
        """Count the outcome in the circuit breaker's window; raise when nearly all are dead letters."""
        window = self._recent_dead_letters
        window.append(outcome == DEAD_LETTER)
        if outcome != DEAD_LETTER:
            return
        dead = sum(window)
        if len(window) == window.maxlen and dead > self.dlq_stop_ratio * window.maxlen:
            raise DeadLetterRateExceeded(
                f"consumer {self.name}: {dead} of the last {len(window)} messages were dead-lettered "
                f"(limit {self.dlq_stop_ratio:.0%}); stopping rather than dead-lettering everything. "
                f"Look at {self.dead_letter_topic} for the cause (a bad deploy? a missing dependency?), "
                "fix it, restart, and replay the letters with replay_dlq."
            )

    # -- offsets, rebalances, metrics, health ------------------------------------------------

    def _commit(self, *, asynchronous, force=False):
        """Commit the stored offsets. ``force``: even if an asynchronous commit already sent them,
        so that they are surely on the broker before the partitions are handed over or closed."""
        if not (self._stored_since_commit or force):
            return
        try:
            self._consumer.commit(asynchronous=asynchronous)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                raise
        self._stored_since_commit = False
        self._last_commit = time.monotonic()

    def _on_commit(self, error, partitions):
        if error is not None and error.code() != KafkaError._NO_OFFSET:
            logger.warning("consumer %s: commit failed (retried with the next one): %s", self.name, error)

    def _on_revoke(self, consumer, partitions):
        # Hand the partitions over with everything processed so far committed.
        try:
            self._commit(asynchronous=False, force=True)
        except KafkaException as exc:
            logger.warning("consumer %s: commit on revocation failed: %s", self.name, exc)
        for partition in partitions:
            try:
                LAG.remove(self.name, str(partition.partition))
            except KeyError:
                pass

    def _on_lost(self, consumer, partitions):
        logger.warning("consumer %s: lost %d partition(s); their uncommitted events will be redelivered", self.name, len(partitions))
        self._stored_since_commit = False

    def _update_lag(self):
        assignment = self._consumer.assignment()
        if not assignment:
            return  # measured as soon as partitions are assigned
        self._last_lag = time.monotonic()
        try:
            positions = self._consumer.position(assignment)
            # A partition with nothing read since the assignment has no position yet: use its commit.
            unknown = [tp for tp in positions if tp.offset < 0]
            committed = {tp.partition: tp.offset for tp in self._consumer.committed(unknown, timeout=1.0)} if unknown else {}
            for tp in positions:
                low, high = self._consumer.get_watermark_offsets(tp, timeout=1.0, cached=False)
                next_offset = tp.offset if tp.offset >= 0 else committed.get(tp.partition, -1)
                LAG.labels(self.name, str(tp.partition)).set(max(high - (next_offset if next_offset >= 0 else low), 0))
        except KafkaException as exc:
            logger.debug("consumer %s: lag not measured: %s", self.name, exc)

    def health(self):
        """(alive, detail) for the liveness probe: has the loop come round recently?

        The loop comes round between batches and every second of a retry's backoff; a handler
        stuck for longer than CONSUMER_LIVENESS_MAX_AGE_SECONDS makes the consumer unhealthy.
        """
        age = time.monotonic() - self._last_heartbeat
        limit = settings.CONSUMER_LIVENESS_MAX_AGE_SECONDS
        if age > limit:
            return False, f"consumer {self.name}: loop last came round {age:.0f}s ago (limit {limit:.0f}s)"
        return True, f"consumer {self.name}: loop came round {age:.1f}s ago"


class KafkaDeadLetters:
    """Writes dead letters with the consumer's producer and waits for the broker's confirmation."""

    def __init__(self, producer):
        self._producer = producer

    def write(self, topic, *, key, value, headers):
        """None once the broker confirmed the write, else what went wrong."""
        report = {}
        self._producer.produce(
            topic, key=key, value=value, headers=headers, on_delivery=lambda err, msg: report.update(error=err)
        )
        self._producer.flush(settings.CONSUMER_DLQ_WRITE_TIMEOUT_SECONDS)
        if "error" not in report:
            return "timed out"
        return None if report["error"] is None else str(report["error"])


def _coordinates(message):
    return f"{message.topic()}[{message.partition()}]@{message.offset()}"


def dlq_headers_stripped(headers):
    """The headers of a dead letter without the runtime's dlq.* additions."""
    return [(key, value) for key, value in (headers or []) if not key.startswith(DLQ_HEADER_PREFIX)]
