"""The consumer runtime: the one loop every service runs (``python manage.py run_consumer <name>``).

A small loop over the core and the Kafka transport: ``KafkaSource`` (events.transports.kafka)
hands over batches of messages, ``EventProcessor`` (events.core.processor) validates, records,
handles, retries and dead-letters them in order (the ordering and idempotency argument is written
there), and the source stores the offsets of the messages finished and commits them. A dead
letter is confirmed by the broker before the offset moves past it.

With EVENT_TRANSPORT=dapr the web process runs the same ``EventProcessor`` on each message Dapr
delivers over HTTP (events.transports.dapr), and Dapr commits the offset when the route answers
SUCCESS. There, in a web thread, no signal can cut a handler: its database statements are
bounded by ``statement_timeout`` as everywhere, and the rest by the sidecar's delivery timeout
(Dapr's Resiliency policy), after which Dapr redelivers.
"""

import logging
import threading
import time

from django.conf import settings
from django.db import connections
from prometheus_client import Histogram

from events.core.processor import EventProcessor, Heartbeat
from events.topics import group_name, topic_name
from events.transports.kafka.consumer import KafkaSource
from events.transports.kafka.producer import KafkaDeadLetters

logger = logging.getLogger(__name__)

PROCESSING_SECONDS = Histogram(
    "todo_consumer_processing_seconds", "Time from receiving a message to acknowledging it.", ["consumer"]
)


class ConsumerRuntime:
    """One registered consumer (a ConsumerSpec) read from Kafka until ``stop()``."""

    def __init__(self, spec, *, dlq_stop_ratio=None, dlq_stop_window=None, batch_size=None, handler_timeout=None):
        self.spec = spec
        self.name = spec.name
        self.topic = topic_name(spec.topic)
        self.group = group_name(spec.group)
        self.batch_size = batch_size or settings.CONSUMER_BATCH_SIZE
        self.retry = spec.retry_policy()
        self.handler_timeout = handler_timeout or settings.CONSUMER_HANDLER_TIMEOUT_SECONDS
        self._processor_options = {"dlq_stop_ratio": dlq_stop_ratio, "dlq_stop_window": dlq_stop_window}
        self._stop = threading.Event()
        self._heartbeat = Heartbeat()

    def stop(self):
        """Ask the loop to finish the current message, commit and close. Safe from signal handlers."""
        self._stop.set()

    def run(self):
        dead_letters = KafkaDeadLetters()
        processor = EventProcessor(
            self.spec, dead_letters, handler_timeout=self.handler_timeout, stop=self._stop, heartbeat=self._heartbeat,
            **self._processor_options,
        )
        source = KafkaSource(
            name=self.name, topic=self.topic, group=self.group, max_poll_interval_seconds=self.longest_batch_seconds()
        )
        source.subscribe()
        if not processor.budget.start():
            logger.info(
                "consumer %s: not in the main thread, so only statement_timeout bounds a handler (budget %gs)",
                self.name, self.handler_timeout,
            )
        try:
            while not self._stop.is_set():
                self._heartbeat.beat()
                messages = source.poll(self.batch_size)
                if messages:
                    self._handle_batch(processor, source, messages)
                source.tick()
        finally:
            processor.budget.stop()
            try:
                source.close()
            finally:
                dead_letters.close()
                connections.close_all()
        logger.info("consumer %s: stopped cleanly", self.name)

    def _handle_batch(self, processor, source, messages):
        """Process messages in order; store the offsets of those finished (a prefix of them)."""
        started = time.perf_counter()
        done = []  # (message, outcome) in message order
        try:
            processor.process(messages, done)
        finally:
            source.store([message for message, _ in done])
            if done:
                per_message = (time.perf_counter() - started) / len(done)
                histogram = PROCESSING_SECONDS.labels(self.name)
                for _ in done:
                    histogram.observe(per_message)

    # -- time limits, all derived from the handler's budget and the retry policy ---------------

    def liveness_limit(self):
        """The longest silence of a consumer within its budget, in seconds.

        The loop is live (its heartbeat) between batches, before every handler call, after every
        event and every second of a backoff. Between two of those lie at most three steps each cut
        at the budget (the idempotency record, a handler call, the commit: statements are bounded
        by statement_timeout, calls by HandlerBudget) and one dead-letter write.
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
        age = self._heartbeat.age()
        limit = self.liveness_limit()
        if age > limit:
            return False, f"consumer {self.name}: loop last came round {age:.0f}s ago (limit {limit:.0f}s)"
        return True, f"consumer {self.name}: loop came round {age:.1f}s ago"
