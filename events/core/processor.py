"""The processing of one batch of messages: the one interface both transports call.

For each message, in partition order:

1. ``parsing``: anything that is not an event of the contract is dead-lettered at once with
   ``dlq.attempts = 0`` (the handler never ran). An unknown ``event_type``, or a type the
   consumer did not ask for: acknowledged and counted as skipped.
2. Otherwise, in ONE database transaction (``handling.budgeted_transaction``): record (consumer
   group, event_id) (``idempotency``) and run the handler. If the row already existed, the event
   was processed before (a redelivery) and the handler is not run: every effect happens once.
   Consecutive valid events of a batch share one transaction, so that one commit serves many.
3. A handler error rolls the transaction back; its events are then re-run one transaction each,
   and the failing one is retried with exponential backoff (``retry.RetryPolicy``, the failed
   batch run counting as its first attempt); after the last attempt the message is dead-lettered
   with ``dlq.attempts = max_attempts`` (``dead_letters``). A handler that raises InvalidEvent
   (or its ForgedEvent) is dead-lettered without retries. Database connection errors are not the
   event's fault: they stop the consumer instead (it re-reads the message after a restart)
   rather than dead-letter every event. The handler's failures feed the stop ratio (``breaker``).

``process`` reports each message it finished, in order, so that the transport moves its offset
(Kafka stores it; Dapr is answered SUCCESS) only past work that is done: at-least-once delivery,
effectively-once effects. It needs no broker: messages are plain ``Message`` values.
"""

import logging
import threading
import time
from collections import Counter

from django.conf import settings
from django.db import close_old_connections

from events.core.breaker import StopRatio
from events.core.dead_letters import DeadLetterer
from events.core.handling import HANDLER_FAILURES, HandlerBudget, budgeted_transaction, call_handler, database_unreachable
from events.core.idempotency import record_processed
from events.core.metrics import RETRIED, SKIPPED, count_handled
from events.core.outcomes import DUPLICATE, FAILED, INVALID, PROCESSED_OUTCOME, SKIP
from events.core.parsing import parse
from events.schemas import InvalidEvent
from events.topics import group_name, topic_name

# One log for everything a consumer does, whichever step says it.
logger = logging.getLogger("events.consumer")



class Heartbeat:
    """When the processing last came round; the liveness probe compares its age with a limit."""

    def __init__(self):
        self.last = time.monotonic()

    def beat(self):
        self.last = time.monotonic()

    def age(self):
        return time.monotonic() - self.last

    def sleep(self, seconds, stop):
        """Sleep (a backoff) while staying live; True if ``stop`` was set meanwhile."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if stop.wait(min(remaining, 1.0)):
                return True
            self.beat()
        return stop.is_set()


class EventProcessor:
    """The steps of processing for one consumer (a ConsumerSpec), writing dead letters with ``dead_letters``."""

    def __init__(self, spec, dead_letters, *, dlq_stop_ratio=None, dlq_stop_window=None, handler_timeout=None,
                 stop=None, heartbeat=None):
        self.spec = spec
        self.name = spec.name
        self.group = group_name(spec.group)
        self.dead_letter_topic = topic_name(spec.dead_letter_topic)
        self.handler = spec.resolve_handler()
        self.batch_handler = spec.resolve_batch_handler()
        self.retry = spec.retry_policy()
        self.handler_timeout = handler_timeout or settings.CONSUMER_HANDLER_TIMEOUT_SECONDS
        self.budget = HandlerBudget(self.handler_timeout)
        self.stop = stop or threading.Event()
        self.heartbeat = heartbeat or Heartbeat()
        self.dead_letters = DeadLetterer(dead_letters, name=self.name, group=self.group, topic=self.dead_letter_topic)
        self.breaker = StopRatio(
            ratio=settings.CONSUMER_DLQ_STOP_RATIO if dlq_stop_ratio is None else dlq_stop_ratio,
            window=dlq_stop_window or settings.CONSUMER_DLQ_STOP_WINDOW,
            name=self.name, dead_letter_topic=self.dead_letter_topic,
        )

    def process(self, messages, done):
        """Validate, record and handle (or dead-letter) the messages in order, appending
        (message, outcome) to ``done`` for each one finished: a prefix of them if this raises or
        is asked to stop."""
        pending = []  # consecutive valid events waiting for one handler transaction
        for message in messages:
            parsed = parse(message.value)
            if parsed.invalid is None:
                event = parsed.event
                if event is None:
                    logger.info("consumer %s: skipping %s at %s", self.name, parsed.unknown, message.coordinates())
                if event is None or not self.spec.wants(event["event_type"]):
                    SKIPPED.labels(self.name, "unknown_type" if event is None else "not_subscribed").inc()
                    event = None  # acknowledged in its turn, without the handler
                pending.append((message, event))
                continue
            # Finish the events ahead of this message first: offsets only ever move past done work.
            if pending and not self._handle_events(pending, done):
                return
            pending = []
            self.dead_letters.write(message, parsed.invalid, attempts=0, outcome=INVALID)
            self._finish(message, INVALID, done)
        if pending:
            self._handle_events(pending, done)

    def _finish(self, message, outcome, done):
        """Report the message done; count the handler's verdict in the stop ratio (skipped and
        invalid messages are not its verdicts)."""
        done.append((message, outcome))
        self.heartbeat.beat()
        if outcome not in (SKIP, INVALID):
            self.breaker.note(outcome == FAILED)

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
            with budgeted_transaction(self.handler_timeout):
                first_time = record_processed(self.group, [event["event_id"] for _, event in pending if event is not None])
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
                        self._call(self.handler, event, [(message, event)])
                    failed_at = None
                elif fresh:
                    self._call(self.batch_handler, [e for _, _, e in fresh], [(m, e) for _, m, e in fresh])
        except HANDLER_FAILURES as exc:  # re-run one by one, where failures are retried or dead-lettered
            first_failure = exc
        else:
            for (message, _), outcome in zip(pending, outcomes):
                self._finish(message, outcome, done)
            # Counted once per outcome, not per event: a labelled counter's lookup and lock per event
            # showed in the profile.
            for outcome, events in Counter(outcomes).items():
                if outcome != SKIP:
                    count_handled(self.name, outcome, events)
            return True
        for position, (message, event) in enumerate(pending):
            if event is None:
                outcome = SKIP
            else:
                outcome = self._run_with_retries(message, event, first_failure if position == failed_at else None)
            if outcome is None:  # stopping during a backoff: it and what follows are redelivered
                return False
            self._finish(message, outcome, done)
            if self.stop.is_set():
                return False
        return True

    def _run_with_retries(self, message, event, first_failure=None):
        """One event in its own transaction, retried with backoff, dead-lettered after the last
        attempt; None if asked to stop during a backoff."""
        attempts = self.retry.max_attempts
        attempt, failure = (1, first_failure) if first_failure is not None else (0, None)
        while True:
            if failure is not None:
                if isinstance(failure, InvalidEvent):  # the handler says retrying cannot help
                    self.dead_letters.write(message, failure, attempts=attempt, outcome=INVALID)
                    return INVALID
                logger.warning(
                    "consumer %s: handler failed on event %s (attempt %d of %d): %r",
                    self.name, event["event_id"], attempt, attempts, failure,
                )
                close_old_connections()  # drop a broken connection before the next attempt
                if attempt >= attempts:
                    break
                RETRIED.labels(self.name).inc()
                if self.heartbeat.sleep(self.retry.backoff(attempt), self.stop):
                    return None
            attempt += 1
            try:
                with budgeted_transaction(self.handler_timeout):
                    outcome = self._handle_once(message, event)
            except HANDLER_FAILURES as exc:  # any handler failure is retried, then dead-lettered
                failure = exc
            else:
                count_handled(self.name, outcome)
                return outcome
        if database_unreachable(failure):
            raise failure  # stop and re-read later, do not dead-letter
        self.dead_letters.write(message, failure, attempts=attempts, outcome=FAILED)
        return FAILED

    def _handle_once(self, message, event):
        """Inside the caller's transaction: record the event, run the handler unless it was seen before."""
        if not record_processed(self.group, [event["event_id"]]):
            return DUPLICATE
        self._call(self.handler, event, [(message, event)])
        return PROCESSED_OUTCOME

    def _call(self, handler, argument, messages_and_events):
        self.heartbeat.beat()
        call_handler(handler, argument, messages_and_events, group=self.group, budget=self.budget)
