"""The consumer runtime: the one loop every service runs (``python manage.py run_consumer <name>``).

For each message of its topic, in partition order:

1. Not JSON, or not an event of the contract (``validate_event`` raises InvalidEvent): dead-lettered
   at once with ``dlq.attempts = 0`` (the handler never ran). An unknown ``event_type``, or a type
   the consumer did not ask for: acknowledged and counted as skipped.
2. Otherwise, in ONE database transaction: record (consumer group, event_id) in
   ``events.ProcessedEvent`` and run the handler. If the row already existed, the event was
   processed before (a redelivery) and the handler is not run: every effect happens once.
3. A handler error rolls the transaction back and the whole step is re-run with exponential
   backoff (``RetryPolicy``); after the last attempt the message is dead-lettered with
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

Batch consumers (``ConsumerSpec(batch=True)``, e.g. the realtime bridge) differ in step 2 only:
the handler is ``async def handler(events)``, called with the valid, wanted events of one poll
(up to ``batch_size``) and awaited on the runtime's one asyncio loop; no ProcessedEvent is
recorded and no database transaction is opened (their effects must be harmless to repeat).
A failing batch is retried whole, then each of its events is dead-lettered. Step 1 (invalid
messages to the DLQ, unknown types skipped) and step 4 (offsets stored only after the batch
was handled) are the same.

Handlers take the validated event dict only; one that needs the Kafka coordinates of the message
(the audit trail) reads them from ``current_delivery()``.
"""

import asyncio
import contextvars
import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
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


_current_delivery = contextvars.ContextVar("current_delivery")


def current_delivery():
    """The Delivery of the message whose handler is running (LookupError outside a handler)."""
    return _current_delivery.get()


def liveness_file(name):
    """The file a running consumer touches about once a second; see ``consumer_alive``."""
    return Path(settings.CONSUMER_LIVENESS_DIR) / f"todo-consumer-{name}.alive"


class ConsumerRuntime:
    def __init__(self, spec, *, liveness_path=None, dlq_stop_ratio=None, dlq_stop_window=None):
        self.spec = spec
        self.name = spec.name
        self.topic = topic_name(spec.topic)
        self.group = group_name(spec.group)
        self.dead_letter_topic = topic_name(spec.dead_letter_topic)
        self.handler = spec.resolve_handler()
        self.retry = spec.retry_policy()
        self.liveness_path = Path(liveness_path) if liveness_path else None
        self.dlq_stop_ratio = settings.CONSUMER_DLQ_STOP_RATIO if dlq_stop_ratio is None else dlq_stop_ratio
        self._recent_dead_letters = deque(maxlen=dlq_stop_window or settings.CONSUMER_DLQ_STOP_WINDOW)
        self._stop = threading.Event()
        self._stored_since_commit = False
        self._last_commit = self._last_lag = self._last_alive = 0.0
        self._consumer = None
        self._producer = None
        self._loop = None

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self):
        """Ask the loop to finish the current message, commit and close. Safe from signal handlers."""
        self._stop.set()

    def run(self):
        # Batch handlers are coroutines, awaited on this one loop for the consumer's lifetime (the
        # channel layer keeps its Redis connections per loop).
        self._loop = asyncio.new_event_loop() if self.spec.batch else None
        self._consumer = Consumer(self._consumer_config())
        self._producer = Producer(client_config(**{"acks": "all", "enable.idempotence": True, "linger.ms": 0}))
        self._consumer.subscribe([self.topic], on_revoke=self._on_revoke, on_lost=self._on_lost)
        logger.info("consumer %s: reading %s as group %s", self.name, self.topic, self.group)
        commit_interval = settings.CONSUMER_COMMIT_INTERVAL_MS / 1000
        lag_interval = settings.CONSUMER_LAG_INTERVAL_SECONDS
        try:
            while not self._stop.is_set():
                self._touch_liveness()
                self._poll_once()
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
            self._commit(asynchronous=False)
        except KafkaException as exc:
            logger.error("consumer %s: final commit failed (the uncommitted events will be redelivered): %s", self.name, exc)
        finally:
            self._consumer.close()
            self._producer.flush(10)
            connections.close_all()
            if self._loop is not None:
                self._loop.close()
            if self.liveness_path:
                self.liveness_path.unlink(missing_ok=True)

    def _consumer_config(self):
        return client_config(
            **{
                "group.id": self.group,
                "client.id": f"todo-platform-{self.name}",
                "auto.offset.reset": "earliest",
                # Offsets are stored by hand after a message's effects are durable, and committed by us.
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                # One message is in hand between polls, retries included: give it all its backoff.
                "max.poll.interval.ms": max(300_000, int((self.retry.total_backoff() + 120) * 1000)),
                "on_commit": self._on_commit,
            }
        )

    # -- one message -------------------------------------------------------------------------

    def _handle(self, message):
        error = message.error()
        if error is not None:
            if error.fatal():
                raise KafkaException(error)
            logger.warning("consumer %s: %s", self.name, error)
            return
        started = time.perf_counter()
        token = _current_delivery.set(Delivery(message.topic(), message.partition(), message.offset(), self.group))
        try:
            outcome = self._process(message)
        finally:
            _current_delivery.reset(token)
        if outcome is None:  # stopping during a backoff: leave it unacknowledged, it is redelivered
            return
        self._consumer.store_offsets(message=message)
        self._stored_since_commit = True
        PROCESSING_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        self._recent_dead_letters.append(outcome == DEAD_LETTER)
        self._check_dead_letter_rate()

    def _poll_once(self):
        if self.spec.batch:
            # Wait for one message, then take whatever else is already fetched: a lone message
            # goes out at once, and a burst goes out as one batch (consume() with a timeout would
            # hold a lone message back for the whole timeout).
            first = self._consumer.poll(0.1)
            if first is not None:
                self._handle_batch([first, *self._consumer.consume(self.spec.batch_size - 1, 0)])
        else:
            message = self._consumer.poll(0.1)
            if message is not None:
                self._handle(message)

    def _process(self, message):
        event, outcome = self._decode(message)
        return outcome if event is None else self._run_handler(message, event)

    def _decode(self, message):
        """``(event, None)`` for an event to handle, else ``(None, outcome)`` once dealt with."""
        try:
            event = json.loads(message.value())
        except (TypeError, ValueError) as exc:  # no value, bad UTF-8, not JSON
            return None, self._dead_letter(message, exc, attempts=0, reason="invalid")
        try:
            validate_event(event)
        except UnknownEventType as exc:
            logger.info("consumer %s: skipping %s at %s", self.name, exc, _coordinates(message))
            SKIPPED.labels(self.name, "unknown_type").inc()
            return None, SKIP
        except InvalidEvent as exc:
            return None, self._dead_letter(message, exc, attempts=0, reason="invalid")
        if not self.spec.wants(event["event_type"]):
            SKIPPED.labels(self.name, "not_subscribed").inc()
            return None, SKIP
        return event, None

    # -- one batch (ConsumerSpec.batch) ----------------------------------------------------------

    def _handle_batch(self, messages):
        started = time.perf_counter()
        received, outcomes, pending = [], {}, []  # pending: (message, event) for the handler
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaException(error)
                logger.warning("consumer %s: %s", self.name, error)
                continue
            received.append(message)
            event, outcome = self._decode(message)
            if event is None:
                outcomes[id(message)] = outcome
            else:
                pending.append((message, event))
        if pending:
            handled = self._run_batch_handler(pending)
            if handled is None:  # stopping during a backoff: nothing of this poll is acknowledged
                return
            outcomes.update((id(message), outcome) for message, outcome in handled)
        elapsed = time.perf_counter() - started
        for message in received:  # in the order received, so each partition's offset only grows
            self._consumer.store_offsets(message=message)
            self._stored_since_commit = True
            PROCESSING_SECONDS.labels(self.name).observe(elapsed)
            self._recent_dead_letters.append(outcomes[id(message)] == DEAD_LETTER)
        self._check_dead_letter_rate()

    def _run_batch_handler(self, pending):
        events = [event for _, event in pending]
        attempts = self.retry.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                self._loop.run_until_complete(self.handler(events))
                PROCESSED.labels(self.name).inc(len(events))
                return [(message, PROCESSED_OUTCOME) for message, _ in pending]
            except Exception as exc:  # noqa: BLE001 - retried whole, then each event dead-lettered
                failure = exc
                logger.warning(
                    "consumer %s: batch handler failed on %d event(s) (attempt %d of %d): %r",
                    self.name, len(events), attempt, attempts, exc,
                )
                if attempt < attempts:
                    RETRIED.labels(self.name).inc()
                    if self._wait(self.retry.backoff(attempt)):
                        return None
        reason = "invalid" if isinstance(failure, InvalidEvent) else "failed"
        return [(message, self._dead_letter(message, failure, attempts=attempts, reason=reason)) for message, _ in pending]

    def _run_handler(self, message, event):
        attempts = self.retry.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                with transaction.atomic():
                    if not self._mark_processed(event["event_id"]):
                        SKIPPED.labels(self.name, "duplicate").inc()
                        return DUPLICATE
                    self.handler(event)
                PROCESSED.labels(self.name).inc()
                return PROCESSED_OUTCOME
            except InvalidEvent as exc:  # the handler says retrying cannot help
                return self._dead_letter(message, exc, attempts=attempt, reason="invalid")
            except Exception as exc:  # noqa: BLE001 - any handler failure is retried, then dead-lettered
                failure = exc
                logger.warning(
                    "consumer %s: handler failed on event %s (attempt %d of %d): %r",
                    self.name, event["event_id"], attempt, attempts, exc,
                )
                close_old_connections()  # drop a broken connection before the next attempt
                if attempt < attempts:
                    RETRIED.labels(self.name).inc()
                    if self._wait(self.retry.backoff(attempt)):
                        return None
        if isinstance(failure, (OperationalError, InterfaceError)):
            raise failure  # the database is unreachable: stop and re-read later, do not dead-letter
        return self._dead_letter(message, failure, attempts=attempts, reason="failed")

    def _mark_processed(self, event_id):
        """Insert (group, event_id) unless present; True when this is the first time."""
        table = connection.ops.quote_name(ProcessedEvent._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (consumer_group, event_id, processed_at) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                [self.group, event_id, datetime.now(UTC)],
            )
            return cursor.rowcount == 1

    def _wait(self, seconds):
        """Sleep for a backoff while staying live; True if asked to stop meanwhile."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(remaining, 1.0)):
                return True
            self._touch_liveness()
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
        report = {}
        self._producer.produce(
            self.dead_letter_topic,
            key=message.key(),
            value=message.value(),
            headers=headers,
            on_delivery=lambda err, msg: report.update(error=err),
        )
        self._producer.flush(settings.CONSUMER_DLQ_WRITE_TIMEOUT_SECONDS)
        if "error" not in report or report["error"] is not None:
            raise DeadLetterWriteFailed(
                f"{self.dead_letter_topic} did not confirm the dead letter of {_coordinates(message)}: "
                f"{report.get('error', 'timed out')}"
            )
        DEAD_LETTERED.labels(self.name, reason).inc()
        logger.error(
            "consumer %s: dead-lettered %s to %s after %d attempt(s): %s: %s",
            self.name, _coordinates(message), self.dead_letter_topic, attempts, type(error).__name__, error,
        )
        return DEAD_LETTER

    def _check_dead_letter_rate(self):
        window = self._recent_dead_letters
        dead = sum(window)
        if len(window) == window.maxlen and dead > self.dlq_stop_ratio * window.maxlen:
            raise DeadLetterRateExceeded(
                f"consumer {self.name}: {dead} of the last {len(window)} messages were dead-lettered "
                f"(limit {self.dlq_stop_ratio:.0%}); stopping rather than dead-lettering everything. "
                f"Look at {self.dead_letter_topic} for the cause (a bad deploy? a missing dependency?), "
                "fix it, restart, and replay the letters with replay_dlq."
            )

    # -- offsets, rebalances, metrics, liveness ------------------------------------------------

    def _commit(self, *, asynchronous):
        if not self._stored_since_commit:
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
            self._commit(asynchronous=False)
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

    def _touch_liveness(self):
        now = time.monotonic()
        if self.liveness_path and now - self._last_alive >= 1.0:
            self.liveness_path.touch()
            self._last_alive = now


def _coordinates(message):
    return f"{message.topic()}[{message.partition()}]@{message.offset()}"


def dlq_headers_stripped(headers):
    """The headers of a dead letter without the runtime's dlq.* additions."""
    return [(key, value) for key, value in (headers or []) if not key.startswith(DLQ_HEADER_PREFIX)]
