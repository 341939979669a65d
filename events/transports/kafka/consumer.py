"""Consuming from Kafka: the consumer runtime's poll loop adapter, and the readers of a topic.

``KafkaSource`` is what ``events.consumer.ConsumerRuntime`` reads through: it subscribes as the
consumer's group, hands over batches of core ``Message`` values, stores the offsets past the
messages the core finished and commits them (asynchronously every ``CONSUMER_COMMIT_INTERVAL_MS``,
synchronously on partition revocation and shutdown), and measures the lag. A crash between effect
and commit redelivers the message; the idempotency record makes that harmless.
"""

import logging
import time

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition
from django.conf import settings
from prometheus_client import Gauge

from events.core.message import Message
from events.transports.kafka.config import client_config

logger = logging.getLogger("events.consumer")

LAG = Gauge("todo_consumer_lag", "Messages between the consumer's position and the partition's end.", ["consumer", "partition"])


def as_message(message):
    """The core Message of a confluent_kafka.Message."""
    _, timestamp = message.timestamp()
    return Message(
        topic=message.topic(), partition=message.partition(), offset=message.offset(), key=message.key(),
        value=message.value(), headers=message.headers() or [], timestamp=timestamp,
    )


class KafkaSource:
    """One consumer's Kafka consumer: batches in, offsets out (see the module docstring)."""

    def __init__(self, *, name, topic, group, max_poll_interval_seconds):
        self.name, self.topic, self.group = name, topic, group
        self._consumer = Consumer(
            client_config(
                **{
                    "group.id": group,
                    "client.id": f"todo-platform-{name}",
                    "auto.offset.reset": "earliest",
                    # Offsets are stored by hand after a message's effects are durable, and committed by us.
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    # A batch is in hand between polls: every event of it may take all its attempts
                    # (a hung consumer is caught by the liveness probe long before).
                    "max.poll.interval.ms": min(max(300_000, int(max_poll_interval_seconds * 1000)), 86_400_000),
                    "on_commit": self._on_commit,
                }
            )
        )
        self._stored_since_commit = False
        self._last_commit = self._last_lag = 0.0

    def subscribe(self):
        self._consumer.subscribe([self.topic], on_revoke=self._on_revoke, on_lost=self._on_lost)
        logger.info("consumer %s: reading %s as group %s", self.name, self.topic, self.group)

    def poll(self, batch_size):
        """Wait (briefly) for one message, then take what else is already fetched, up to a batch;
        return them as Messages. A fatal error raises; another one is logged and its message left out."""
        message = self._consumer.poll(0.1)
        if message is None:
            return []
        more = self._consumer.consume(batch_size - 1, timeout=0) if batch_size > 1 else []
        messages = []
        for fetched in [message, *more]:
            error = fetched.error()
            if error is None:
                messages.append(as_message(fetched))
            elif error.fatal():
                raise KafkaException(error)
            else:
                logger.warning("consumer %s: %s", self.name, error)
        return messages

    def store(self, messages):
        """Store the offsets past ``messages`` (finished, in order); ``tick`` commits them."""
        if not messages:
            return
        next_offsets = {(message.topic, message.partition): message.offset + 1 for message in messages}
        try:
            self._consumer.store_offsets(offsets=[TopicPartition(t, p, o) for (t, p), o in next_offsets.items()])
            self._stored_since_commit = True
        except KafkaException as exc:  # the partition was revoked meanwhile: its new owner re-reads
            logger.warning("consumer %s: offsets not stored: %s", self.name, exc)

    def tick(self):
        """Between batches: commit what was stored when the interval is up, measure the lag when due."""
        now = time.monotonic()
        if self._stored_since_commit and now - self._last_commit >= settings.CONSUMER_COMMIT_INTERVAL_MS / 1000:
            self._commit(asynchronous=True)
        if now - self._last_lag >= settings.CONSUMER_LAG_INTERVAL_SECONDS:
            self._update_lag()

    def close(self):
        """Commit everything stored (synchronously), then leave the group."""
        try:
            self._commit(asynchronous=False, force=True)
        except KafkaException as exc:
            logger.error("consumer %s: final commit failed (the uncommitted events will be redelivered): %s", self.name, exc)
        finally:
            self._consumer.close()

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


class GroupReader:
    """Reads a topic from where ``group`` left it to the end, and commits how far it got
    (the dead-letter replayer, consumer group ``dlq-replay``)."""

    def __init__(self, topic, group):
        self.topic = topic
        self._consumer = Consumer(client_config(**{"group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"}))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._consumer.close()

    def read_unseen(self, limit, timeout):
        """(Messages after the group's position, up to ``limit``; {partition: next offset} past them)."""
        consumer, topic = self._consumer, self.topic
        metadata = consumer.list_topics(topic, timeout=timeout).topics[topic]
        if metadata.error is not None:
            raise KafkaException(metadata.error)
        partitions = [TopicPartition(topic, p) for p in sorted(metadata.partitions)]
        starts, ends = {}, {}
        for committed in consumer.committed(partitions, timeout=timeout):
            low, high = consumer.get_watermark_offsets(committed, timeout=timeout)
            start = committed.offset if committed.offset >= 0 else low
            if start < high:
                starts[committed.partition], ends[committed.partition] = start, high
        messages, next_offsets = [], {}
        if not starts:
            return messages, next_offsets
        consumer.assign([TopicPartition(topic, p, o) for p, o in starts.items()])
        deadline = time.monotonic() + timeout
        pending = set(starts)
        while pending and (limit is None or len(messages) < limit):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {timeout}s")
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                raise KafkaException(message.error())
            messages.append(as_message(message))
            partition = message.partition()
            next_offsets[partition] = message.offset() + 1
            if next_offsets[partition] >= ends[partition]:
                pending.discard(partition)
        return messages, next_offsets

    def commit(self, next_offsets):
        if next_offsets:
            offsets = [TopicPartition(self.topic, p, o) for p, o in next_offsets.items()]
            self._consumer.commit(offsets=offsets, asynchronous=False)


class NoSuchTopic(LookupError):
    """The topic to tail does not exist."""


def tail(topic, *, from_beginning, stop, poll_seconds=0.5):
    """Yield every message of ``topic`` (full name) as it arrives, all partitions, no group commits:
    a Message, a KafkaError text (str) for an error, or None after ``poll_seconds`` with nothing.
    Ends when ``stop`` (a threading.Event) is set or the caller stops iterating."""
    consumer = Consumer(client_config(**{"group.id": "tail-topic", "enable.auto.commit": False}))
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        if topic not in metadata.topics or metadata.topics[topic].error is not None:
            raise NoSuchTopic(topic)
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign([TopicPartition(topic, p, start) for p in metadata.topics[topic].partitions])
        while not stop.is_set():
            message = consumer.poll(poll_seconds)
            if message is None:
                yield None
            elif message.error():
                yield str(message.error())
            else:
                yield as_message(message)
    finally:
        consumer.close()

