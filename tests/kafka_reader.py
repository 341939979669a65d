"""Reading what reached Kafka, for tests: every partition of some topics, from the beginning."""

import json
import time
import uuid
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from events.transports.kafka.config import client_config
from events.topics import base_topic_name, topic_name


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
