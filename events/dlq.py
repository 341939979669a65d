"""Reading and replaying dead letters (``python manage.py replay_dlq``).

A dead letter is the original message plus the runtime's ``dlq.*`` headers (CONTRACT.md section 4).
Replaying sends it back to its original topic with those headers removed and a ``replay.count``
header counting the replays; a letter already replayed ``DLQ_REPLAY_CAP`` times is refused (its
cause is clearly not fixed). The replayer reads as consumer group ``dlq-replay`` and commits after
the broker confirmed the re-sent messages, so running it again sends nothing twice.
"""

import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from django.conf import settings

from events.consumer import dlq_headers_stripped
from events.kafka import client_config
from events.topics import DLQ_SUFFIX, group_name, topic_name

REPLAY_GROUP = "dlq-replay"
REPLAY_COUNT_HEADER = "replay.count"


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list

    def header(self, name, default=""):
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")
        return default

    @property
    def original_topic(self):
        return self.header("dlq.original.topic")

    @property
    def replay_count(self):
        try:
            return int(self.header(REPLAY_COUNT_HEADER, "0"))
        except ValueError:
            return 0

    def describe(self):
        return (
            f"[{self.partition}]@{self.offset} from {self.original_topic or '?'}"
            f"[{self.header('dlq.original.partition', '?')}]@{self.header('dlq.original.offset', '?')} "
            f"event_id={self.header('event_id', '?')} {self.header('dlq.error.type')}: {self.header('dlq.error.message')} "
            f"(group {self.header('dlq.consumer.group', '?')}, {self.header('dlq.attempts', '?')} attempt(s), "
            f"failed at {self.header('dlq.failed_at', '?')}, replayed {self.replay_count} time(s))"
        )


def dead_letter_topic_name(name):
    """The full name of a dead-letter topic given its base name or its main topic's base name."""
    return topic_name(name if name.endswith(DLQ_SUFFIX) else name + DLQ_SUFFIX)


def replay_dead_letters(name, *, limit=None, dry_run=False, timeout=30.0):
    """Replay (or in a dry run, only list) the dead letters the replay group has not seen yet.

    Returns ``[(DeadLetter, outcome)]`` with outcome ``"listed"``, ``"replayed"`` or
    ``"refused: <why>"``.
    """
    topic = dead_letter_topic_name(name)
    consumer = Consumer(
        client_config(**{"group.id": group_name(REPLAY_GROUP), "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    )
    try:
        letters, next_offsets = _read_unseen(consumer, topic, limit, timeout)
        if dry_run:
            return [(letter, "listed") for letter in letters]
        results = _send_back(letters)
        if next_offsets:
            consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in next_offsets.items()], asynchronous=False)
        return results
    finally:
        consumer.close()


def _read_unseen(consumer, topic, limit, timeout):
    metadata = consumer.list_topics(topic, timeout=timeout).topics[topic]
    if metadata.error is not None:
        raise KafkaException(metadata.error)
    partitions = [TopicPartition(topic, p) for p in sorted(metadata.partitions)]
    starts = {}
    ends = {}
    for committed in consumer.committed(partitions, timeout=timeout):
        low, high = consumer.get_watermark_offsets(committed, timeout=timeout)
        start = committed.offset if committed.offset >= 0 else low
        if start < high:
            starts[committed.partition], ends[committed.partition] = start, high
    letters, next_offsets = [], {}
    if not starts:
        return letters, next_offsets
    consumer.assign([TopicPartition(topic, p, o) for p, o in starts.items()])
    deadline = time.monotonic() + timeout
    pending = set(starts)
    while pending and (limit is None or len(letters) < limit):
        if time.monotonic() > deadline:
            raise TimeoutError(f"could not read {topic} to its end within {timeout}s")
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error() is not None:
            raise KafkaException(message.error())
        partition = message.partition()
        letters.append(DeadLetter(partition, message.offset(), message.key(), message.value(), message.headers() or []))
        next_offsets[partition] = message.offset() + 1
        if next_offsets[partition] >= ends[partition]:
            pending.discard(partition)
    return letters, next_offsets


def _send_back(letters):
    producer = Producer(client_config(**{"acks": "all", "enable.idempotence": True}))
    failures = []
    results = []
    for letter in letters:
        if not letter.original_topic:
            results.append((letter, "refused: no dlq.original.topic header"))
            continue
        if letter.replay_count >= settings.DLQ_REPLAY_CAP:
            results.append((letter, f"refused: already replayed {letter.replay_count} times (cap {settings.DLQ_REPLAY_CAP})"))
            continue
        headers = [(k, v) for k, v in dlq_headers_stripped(letter.headers) if k != REPLAY_COUNT_HEADER]
        headers.append((REPLAY_COUNT_HEADER, str(letter.replay_count + 1)))
        producer.produce(
            letter.original_topic,
            key=letter.key,
            value=letter.value,
            headers=headers,
            on_delivery=lambda err, msg: failures.append(err) if err is not None else None,
        )
        results.append((letter, "replayed"))
    if producer.flush(30) or failures:
        # Nothing is committed: running replay_dlq again re-sends them (consumers are idempotent).
        raise KafkaException(failures[0] if failures else "replayed messages not confirmed within 30s")
    return results
