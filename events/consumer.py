"""The consumer runtime: the one loop every service runs (``python manage.py run_consumer <name>``).

For each message of its topic, in partition order:

1. Anything that is not an event of the contract is dead-lettered at once with ``dlq.attempts = 0``
   (the handler never ran): no value (a tombstone), not UTF-8, not JSON, JSON of any depth or type
   that is not an event object (``validate_event`` raises InvalidEvent), or an event the handlers
   could not store (nested deeper than MAX_EVENT_DEPTH, NaN or infinite numbers, NUL characters or
   lone surrogates in strings: PostgreSQL refuses them, so they would fail every retry). Whatever a
   message's bytes make the parser raise is the message's fault: the consumer never exits on a
   message's content. An unknown ``event_type``, or a type the consumer did not ask for:
   acknowledged and counted as skipped.
2. Otherwise, in ONE database transaction: record (consumer group, event_id) in
   ``events.ProcessedEvent`` and run the handler. If the row already existed, the event was
   processed before (a redelivery) and the handler is not run: every effect happens once.
   Consecutive valid events already fetched (up to ``CONSUMER_BATCH_SIZE``) share one
   transaction, so that one commit serves many events.
3. A handler error rolls the transaction back; its events are then re-run one transaction each,
   and the failing one is retried with exponential backoff (``RetryPolicy``, the failed batch run
   counting as its first attempt); after the last attempt the message is dead-lettered with
   ``dlq.attempts = max_attempts``. A handler that raises InvalidEvent (or its ForgedEvent) is
   dead-lettered without retries. Database connection errors are not the event's fault: they stop
   the consumer instead (it re-reads the message after a restart) rather than dead-letter every
   event. Every handler call has a time budget (``CONSUMER_HANDLER_TIMEOUT_SECONDS``, see
   HandlerBudget): a call that runs longer fails its event like any error, and every SQL statement
   of the handler's transaction is bounded by the same budget (``statement_timeout``).
4. Only then is the message's offset stored; stored offsets are committed asynchronously every
   ``CONSUMER_COMMIT_INTERVAL_MS`` and synchronously on partition revocation and shutdown. A crash
   between effect and commit redelivers the message, and step 2 makes that harmless
   (at-least-once delivery, effectively-once effects).

A dead-letter write is confirmed by the broker before the offset moves past it; a letter too large
for the broker is cut and says so (events.dlq.bounded_dead_letter). If the handler failed nearly
every recent event (``CONSUMER_DLQ_STOP_RATIO`` of the last ``CONSUMER_DLQ_STOP_WINDOW`` events
it ran on), the consumer stops with DeadLetterRateExceeded: after a bad deploy it is better to stop
than to dead-letter the world. Invalid and forged messages are not counted: they are the sender's
fault, and counting them would let anyone who can write to the topic stop the service.

Handlers take the validated event dict only; one that needs the Kafka coordinates of the message
(the audit trail) reads them with ``delivery_of(event)``. A consumer may also name a batch
handler taking a list of events (same effects as the handler on each, in fewer statements) for
the events fetched together.

Steps 1 to 3 are ``ConsumerRuntime.process``, which needs no Kafka consumer: with
EVENT_TRANSPORT=dapr the web process runs it on each message Dapr delivers over HTTP
(events.dapr), with a dead-letter writer that publishes through the Dapr sidecar, and Dapr
commits the offset when the route answers SUCCESS. There, in a web thread, no signal can cut a
handler: its database statements are bounded by ``statement_timeout`` as everywhere, and the rest
by the sidecar's delivery timeout (Dapr's Resiliency policy), after which Dapr redelivers.
"""

import contextvars
import json
import logging
import math
import signal
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connection, connections, transaction
from prometheus_client import Counter, Gauge, Histogram

from events.dlq import bounded_dead_letter, dlq_headers_stripped
from events.kafka import client_config, producer_config
from events.models import ProcessedEvent
from events.schemas import InvalidEvent, UnknownEventType, event_uuid, utc_timestamp, validate_event
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

# Outcomes of one message. A dead letter is INVALID (the message's fault: not an event, or one the
# handler found forged) or FAILED (the handler failed every attempt); only FAILED trips the breaker.
PROCESSED_OUTCOME, DUPLICATE, SKIP, INVALID, FAILED = "processed", "duplicate", "skipped", "invalid", "failed"

# Our events are four levels deep (envelope, data, task, tags); anything far deeper is not ours, and
# the handlers' own recursion (json.dumps, the database driver) must never be the first to notice.
MAX_EVENT_DEPTH = 16


class DeadLetterRateExceeded(RuntimeError):
    """Nearly every recent message was dead-lettered: the consumer stops instead of going on."""


class DeadLetterWriteFailed(RuntimeError):
    """The broker did not confirm a dead-letter write, so the offset must not move past the message."""


class HandlerTimedOut(BaseException):
    """A handler call ran past its time budget. A BaseException, like KeyboardInterrupt, so that a
    handler's own ``except Exception`` does not swallow it; the runtime treats it as a failure."""


# What a handler call may raise that fails its event (retried, then dead-lettered).
HANDLER_FAILURES = (Exception, HandlerTimedOut)


class HandlerBudget:
    """Cuts a handler call that runs longer than ``seconds``, by raising HandlerTimedOut in it.

    Only the main thread receives signals, so only there can pure-Python CPU work be interrupted:
    ``run_consumer`` runs its loop in the main thread. A watchdog thread checks the deadline of the
    running call every tick and, once it is past, sends SIGVTALRM to the main thread (a real signal,
    so that a blocking system call such as a socket read returns EINTR and the handler below
    raises). Not SIGALRM and ``setitimer``: those belong to whoever else keeps an alarm (e.g.
    pytest-timeout). The signal is resent every tick until the call ends, so a handler that
    swallows one is cut again. C code that never returns to Python (a librdkafka flush) is bounded
    by its own timeout only.
    """

    SIGNAL = signal.SIGVTALRM

    def __init__(self, seconds):
        self.seconds = seconds
        self._tick = min(max(seconds / 10, 0.01), 0.5)
        self._deadline = None  # of the handler call running now; None between calls
        self._stopped = threading.Event()
        self._watchdog = None
        self._previous_handler = None

    def start(self):
        """Arm the budget for calls in this (the main) thread; False if not in the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return False
        self._stopped.clear()
        self._previous_handler = signal.signal(self.SIGNAL, self._on_signal)
        self._watchdog = threading.Thread(
            target=self._watch, args=(threading.get_ident(),), name="handler-budget", daemon=True
        )
        self._watchdog.start()
        return True

    def stop(self):
        if self._watchdog is None:
            return
        self._stopped.set()
        self._watchdog.join()
        signal.signal(self.SIGNAL, self._previous_handler)
        self._watchdog = None

    def call(self, handler, argument):
        if self._watchdog is None:
            return handler(argument)
        self._deadline = time.monotonic() + self.seconds
        try:
            return handler(argument)
        finally:
            self._deadline = None

    def _on_signal(self, signum, frame):
        # Runs in the main thread between two bytecodes: a call that just ended has cleared its deadline.
        deadline = self._deadline
        if deadline is not None and time.monotonic() >= deadline:
            raise HandlerTimedOut(f"the handler ran longer than its budget of {self.seconds:g}s")

    def _watch(self, main_thread_id):
        while not self._stopped.wait(self._tick):
            deadline = self._deadline
            if deadline is not None and time.monotonic() >= deadline:
                signal.pthread_kill(main_thread_id, self.SIGNAL)


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
    def __init__(
        self, spec, *, dlq_stop_ratio=None, dlq_stop_window=None, batch_size=None, dead_letters=None,
        handler_timeout=None,
    ):
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
        # The handler's verdicts on the latest events it ran on: True for a failure (the breaker).
        self._recent_failures = deque(maxlen=dlq_stop_window or settings.CONSUMER_DLQ_STOP_WINDOW)
        self.handler_timeout = handler_timeout or settings.CONSUMER_HANDLER_TIMEOUT_SECONDS
        self._budget = HandlerBudget(self.handler_timeout)
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
        self._producer = Producer(producer_config(**{"acks": "all", "enable.idempotence": True, "linger.ms": 0}))
        self.dead_letters = KafkaDeadLetters(self._producer)
        self._consumer.subscribe([self.topic], on_revoke=self._on_revoke, on_lost=self._on_lost)
        logger.info("consumer %s: reading %s as group %s", self.name, self.topic, self.group)
        if not self._budget.start():
            logger.info(
                "consumer %s: not in the main thread, so only statement_timeout bounds a handler (budget %gs)",
                self.name, self.handler_timeout,
            )
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
        self._budget.stop()
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
                # A batch is in hand between polls: every event of it may take all its attempts
                # (a hung consumer is caught by the liveness probe, see health(), long before).
                "max.poll.interval.ms": min(max(300_000, int(self.longest_batch_seconds() * 1000)), 86_400_000),
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
            outcome = self._dead_letter(message, invalid, attempts=0, outcome=INVALID)
            done.append((message, outcome))
            self._note(outcome)
        if pending:
            self._handle_events(pending, done)

    def _parse(self, message):
        """(event, None) for a valid event; (None, error) for a dead letter; (None, None) to skip."""
        try:
            event = validate_event(load_event(message.value()))
            event_id = event_uuid(event["event_id"], "event_id")  # the idempotency record needs a real UUID
        except UnknownEventType as exc:
            logger.info("consumer %s: skipping %s at %s", self.name, exc, _coordinates(message))
            return None, None
        except Exception as exc:  # noqa: BLE001 - whatever a message's bytes make us raise is the message's fault
            return None, exc
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
            with self._transaction():
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
        except HANDLER_FAILURES as exc:  # re-run one by one, where failures are retried or dead-lettered
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

    @contextmanager
    def _transaction(self):
        """A transaction whose every statement is cut at the handler's budget: a lock wait or a
        runaway query fails the event (retried, dead-lettered) instead of holding the partition."""
        with transaction.atomic():
            with connection.cursor() as cursor:
                timeout = f"{int(self.handler_timeout * 1000)}ms"
                cursor.execute("SELECT set_config('statement_timeout', %s, true)", [timeout])
            yield

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
        self._last_heartbeat = time.monotonic()
        try:
            self._budget.call(handler, argument)
        finally:
            _deliveries.reset(token)

    def _run_handler(self, message, event, first_failure=None):
        """One event in its own transaction, retried with backoff, dead-lettered after the last attempt."""
        attempts = self.retry.max_attempts
        attempt, failure = (1, first_failure) if first_failure is not None else (0, None)
        while True:
            if failure is not None:
                if isinstance(failure, InvalidEvent):  # the handler says retrying cannot help
                    return self._dead_letter(message, failure, attempts=attempt, outcome=INVALID)
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
                with self._transaction():
                    outcome = self._handle_once(message, event)
            except HANDLER_FAILURES as exc:  # any handler failure is retried, then dead-lettered
                failure = exc
            else:
                self._count(outcome)
                return outcome
        if _database_unreachable(failure):
            raise failure  # stop and re-read later, do not dead-letter
        return self._dead_letter(message, failure, attempts=attempts, outcome=FAILED)

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

    def _dead_letter(self, message, error, *, attempts, outcome):
        """Write the message to the dead-letter topic (INVALID or FAILED ``outcome``); return the outcome."""
        dlq_headers = [
            ("dlq.original.topic", message.topic()),
            ("dlq.original.partition", str(message.partition())),
            ("dlq.original.offset", str(message.offset())),
            ("dlq.consumer.group", self.group),
            ("dlq.error.type", type(error).__name__),
            ("dlq.error.message", str(error)),
            ("dlq.attempts", str(attempts)),
            ("dlq.failed_at", utc_timestamp()),
        ]
        # Forged dlq.* headers are dropped, so that a replay cannot be steered elsewhere.
        key, value, headers = bounded_dead_letter(
            message.key(), message.value(), dlq_headers_stripped(message.headers()), dlq_headers
        )
        error_text = self.dead_letters.write(self.dead_letter_topic, key=key, value=value, headers=headers)
        if error_text is not None:
            raise DeadLetterWriteFailed(
                f"{self.dead_letter_topic} did not confirm the dead letter of {_coordinates(message)}: {error_text}"
            )
        DEAD_LETTERED.labels(self.name, outcome).inc()
        logger.error(
            "consumer %s: dead-lettered %s to %s after %d attempt(s): %s: %s",
            self.name, _coordinates(message), self.dead_letter_topic, attempts, type(error).__name__, error,
        )
        return outcome

    def _note(self, outcome):
        """Mark the loop live; count the handler's verdict in the circuit breaker's window and raise
        when it failed nearly every recent event. Skipped and invalid messages are not its verdicts."""
        self._last_heartbeat = time.monotonic()
        if outcome in (SKIP, INVALID):
            return
        window = self._recent_failures
        window.append(outcome == FAILED)
        if outcome != FAILED:
            return
        failed = sum(window)
        if len(window) == window.maxlen and failed > self.dlq_stop_ratio * window.maxlen:
            raise DeadLetterRateExceeded(
                f"consumer {self.name}: the handler failed {failed} of the last {len(window)} events "
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

    # -- time limits, all derived from the handler's budget and the retry policy ---------------

    def liveness_limit(self):
        """The longest silence of a consumer within its budget, in seconds.

        The loop is live (``_last_heartbeat``) between batches, before every handler call, after
        every event and every second of a backoff. Between two of those lie at most three steps
        each cut at the budget (the idempotency record, a handler call, the commit: statements are
        bounded by statement_timeout, calls by HandlerBudget) and one dead-letter write.
        """
        return 3 * self.handler_timeout + settings.CONSUMER_DLQ_WRITE_TIMEOUT_SECONDS

    def longest_event_seconds(self):
        """The longest one event can take: each attempt as long as the loop may be silent, plus
        every backoff between them."""
        retry = self.retry
        return retry.max_attempts * self.liveness_limit() + retry.total_backoff()

    def longest_batch_seconds(self):
        """The longest a fetched batch can take between two polls (its failed batch run included)."""
        return self.liveness_limit() + self.batch_size * self.longest_event_seconds()

    def health(self):
        """(alive, detail) for the liveness probe: has the loop come round recently?

        A consumer within its budget is never silent for longer than ``liveness_limit()``; one that
        is (a handler stuck where no signal reaches it) is unhealthy and gets restarted.
        """
        age = time.monotonic() - self._last_heartbeat
        limit = self.liveness_limit()
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


def load_event(value):
    """The JSON document of a message's value, or an exception saying why it cannot be an event.

    Only UTF-8 JSON (the contract's wire format; json.loads would also guess UTF-16 and UTF-32)
    whose handling cannot fail for its shape: at most MAX_EVENT_DEPTH levels deep, only finite
    numbers, and strings that PostgreSQL can store (no NUL, no lone surrogate). Deeper input than
    Python's recursion limit raises RecursionError inside json.loads, which the caller treats
    like any other error of the message.
    """
    if value is None:
        raise InvalidEvent("the message has no value (a tombstone), not an event")
    document = json.loads(value.decode("utf-8") if isinstance(value, bytes | bytearray) else value)
    pending = [(document, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > MAX_EVENT_DEPTH:
                raise InvalidEvent(f"nested deeper than {MAX_EVENT_DEPTH} levels")
            if isinstance(item, dict):
                pending.extend((key, depth + 1) for key in item)
                item = item.values()
            pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise InvalidEvent(f"a number out of range ({item})")
        elif isinstance(item, str):
            if "\x00" in item:
                raise InvalidEvent("a string with a NUL character (\\u0000)")
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise InvalidEvent("a string with a lone surrogate (a \\ud800-\\udfff escape)") from None
    return document


def _database_unreachable(error):
    """True for a lost or refused database connection, which is no event's fault.

    An error the server reported about a statement (a SQLSTATE outside class 08 "connection
    exception" and 57P "operator intervention"), such as the statement_timeout of the handler's
    budget (57014) or a deadlock (40P01), is a failure of the event like any other.
    """
    if not isinstance(error, OperationalError | InterfaceError):
        return False
    sqlstate = getattr(error.__cause__, "sqlstate", None) or ""
    return not sqlstate or sqlstate.startswith(("08", "57P"))


def _coordinates(message):
    return f"{message.topic()}[{message.partition()}]@{message.offset()}"
