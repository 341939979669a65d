"""Kafka as the tests, benchmarks and drills see it: producing events and raw bytes, reading topics
back (every partition from the beginning, or as a consumer group), offsets, a namespace of topics,
and running a ConsumerRuntime in a thread.

Besides the event transports, only this module touches confluent_kafka directly.
"""

import json
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from events.transports.kafka.admin import admin_client, create_topics, delete_topics
from events.transports.kafka.config import client_config, producer_config
from events.topics import TASK_EVENTS, TOPICS, base_topic_name, topic_name
from testing.waits import wait_for


def create_namespace(timeout=60.0):
    """Create the contract's topics under the current KAFKA_TOPIC_PREFIX and wait until every
    partition has a leader (until then offset queries fail)."""
    create_topics()
    assert wait_for(lambda: all(_answers_offsets(spec.base_name) for spec in TOPICS), timeout=timeout), "topics not ready"


def delete_namespace():
    """Delete the contract's topics under the current KAFKA_TOPIC_PREFIX."""
    delete_topics([topic_name(spec.base_name) for spec in TOPICS])


def _answers_offsets(base_topic):
    try:
        end_offsets(base_topic, timeout=5.0)
        return True
    except KafkaException:
        return False


@dataclass(frozen=True)
class Received:
    topic: str  # base name, without the test prefix
    partition: int
    offset: int
    key: str
    headers: dict
    event: dict


class TopicReader:
    """Assigns every partition of ``topics`` (base names) from offset 0: no group, no rebalance wait."""

    def __init__(self, topics, **config):
        self.consumer = Consumer(
            client_config(
                **{"group.id": f"test-reader-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False, **config}
            )
        )
        metadata = self.consumer.list_topics(timeout=30)
        partitions = []
        for base in topics:
            name = topic_name(base)
            partitions += [TopicPartition(name, p, OFFSET_BEGINNING) for p in metadata.topics[name].partitions]
        self.consumer.assign(partitions)
        self.received = []

    def read_until(self, done, timeout=60):
        """Read until ``done(received)`` holds; return the received messages (AssertionError on timeout)."""
        deadline = time.monotonic() + timeout
        while not done(self.received):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s with {len(self.received)} messages")
            message = self.consumer.poll(0.2)
            if message is None or message.error():
                continue
            self.received.append(
                Received(
                    topic=base_topic_name(message.topic()),
                    partition=message.partition(),
                    offset=message.offset(),
                    key=message.key().decode(),
                    headers={name: value.decode() for name, value in message.headers() or []},
                    event=json.loads(message.value()),
                )
            )
        return self.received

    def read_to_end(self, timeout=60):
        """Read on until every assigned partition is consumed up to its current end."""
        ends = {}
        for partition in self.consumer.assignment():
            _, high = self.consumer.get_watermark_offsets(partition, timeout=10)
            ends[(base_topic_name(partition.topic), partition.partition)] = high

        def at_end(received):
            last = {}
            for message in received:
                last[(message.topic, message.partition)] = message.offset
            return all(high == 0 or last.get(key, -1) >= high - 1 for key, high in ends.items())

        return self.read_until(at_end, timeout)

    def close(self):
        self.consumer.close()


def read_events(event_ids, topics=("task-events", "reminders", "task-updates"), timeout=60, **config):
    """Every message carrying one of ``event_ids`` (all must arrive; duplicates included), in partition order."""
    wanted = {str(event_id) for event_id in event_ids}
    reader = TopicReader(topics, **config)
    try:
        reader.read_until(lambda got: wanted <= {m.event["event_id"] for m in got}, timeout)
        received = reader.read_to_end(timeout)
    finally:
        reader.close()
    return [message for message in received if message.event["event_id"] in wanted]


class TestProducer:
    """Produces to a topic (base name) and reports where each message landed."""

    __test__ = False

    def __init__(self, **config):
        """``config``: librdkafka settings of the producer, e.g. a larger ``message.max.bytes``. Built
        like every producer of the project (producer_config), so that a key lands on the partition
        the relay and the replayer would choose."""
        self._producer = Producer(producer_config(**{"linger.ms": 5, **config}))

    def raw(self, base_topic, value, *, key=None, headers=None):
        """Produce bytes/str as is; return (partition, offset) once the broker confirmed it."""
        return self.raw_many(base_topic, [(value, key, headers)])[0]

    def event(self, event, *, base_topic=TASK_EVENTS, key=None):
        return self.events([event], base_topic=base_topic, key=key)[0]

    def events(self, events, *, base_topic=TASK_EVENTS, key=None):
        """Produce events as the outbox relay does: JSON value, key = task_id, event headers."""
        return self.raw_many(
            base_topic,
            [
                (
                    json.dumps(event),
                    key or event["data"].get("task_id"),
                    [("event_type", event["event_type"]), ("event_id", event["event_id"])],
                )
                for event in events
            ],
        )

    def raw_many(self, base_topic, messages):
        reports = [None] * len(messages)
        for index, (value, key, headers) in enumerate(messages):

            def report(err, msg, index=index):
                reports[index] = err or (msg.partition(), msg.offset())

            self._producer.produce(topic_name(base_topic), value=value, key=key, headers=headers or [], on_delivery=report)
            self._producer.poll(0)
        assert self._producer.flush(30) == 0, "the broker did not confirm every message"
        failures = [report for report in reports if not isinstance(report, tuple)]
        assert not failures, failures
        return reports


def read_topic(base_topic, *, until, timeout=60.0):
    """Read a topic from the beginning (a new group each call) until ``until(messages)`` is true.

    Messages are dicts ``{partition, offset, key, value, headers}`` with str headers.
    """
    consumer = Consumer(
        client_config(**{"group.id": f"test-reader-{uuid.uuid4().hex}", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    )
    consumer.subscribe([topic_name(base_topic)])
    messages = []
    deadline = time.monotonic() + timeout
    try:
        while not until(messages) and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            messages.append(
                {
                    "partition": message.partition(),
                    "offset": message.offset(),
                    "key": message.key(),
                    "value": message.value(),
                    "headers": {key: value.decode() for key, value in (message.headers() or [])},
                }
            )
    finally:
        consumer.close()
    return messages


def message_count(base_topic, timeout=10.0):
    """Messages ever written to a topic: the sum of its partitions' high watermarks (nothing expires in tests)."""
    name = topic_name(base_topic)
    consumer = Consumer(client_config(**{"group.id": f"test-counter-{uuid.uuid4().hex}"}))
    try:
        partitions = admin_client().list_topics(name, timeout=timeout).topics[name].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(name, p), timeout=timeout)[1] for p in partitions)
    finally:
        consumer.close()


def committed_offsets(group, base_topic, timeout=10.0):
    """{partition: committed offset} of a consumer group (full group name) on a topic."""
    name = topic_name(base_topic)
    consumer = Consumer(client_config(**{"group.id": group}))
    try:
        partitions = admin_client().list_topics(name, timeout=timeout).topics[name].partitions
        committed = consumer.committed([TopicPartition(name, p) for p in partitions], timeout=timeout)
        return {tp.partition: tp.offset for tp in committed}
    finally:
        consumer.close()


def end_offsets(base_topic, timeout=10.0):
    name = topic_name(base_topic)
    consumer = Consumer(client_config(**{"group.id": f"test-counter-{uuid.uuid4().hex}"}))
    try:
        partitions = admin_client().list_topics(name, timeout=timeout).topics[name].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(name, p), timeout=timeout)[1] for p in partitions}
    finally:
        consumer.close()


class RunningConsumer:
    def __init__(self, runtime):
        self.runtime = runtime
        self.error = None
        self.thread = threading.Thread(target=self._run, name=f"consumer-{runtime.name}", daemon=True)

    def _run(self):
        try:
            self.runtime.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc


def run_in_main_thread(runtime, *, until, timeout=60.0):
    """Run a ConsumerRuntime in this (the main) thread, as ``run_consumer`` does, until ``until()``
    is true or ``timeout`` passes; then stop it. Only there does the handler time budget signal."""
    def stop_when_done():
        wait_for(until, timeout=timeout)
        runtime.stop()

    stopper = threading.Thread(target=stop_when_done, name=f"stop-{runtime.name}", daemon=True)
    stopper.start()
    try:
        runtime.run()
    finally:
        runtime.stop()
        stopper.join(timeout)


@contextmanager
def running(runtime, *, join_timeout=60.0):
    """Run a ConsumerRuntime in a thread for the block; stop it and fail if it does not stop."""
    handle = RunningConsumer(runtime)
    handle.thread.start()
    try:
        yield handle
    finally:
        runtime.stop()
        handle.thread.join(join_timeout)
        assert not handle.thread.is_alive(), "the consumer did not stop"
