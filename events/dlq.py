"""Reading and replaying dead letters (``python manage.py replay_dlq``).

A dead letter is the original message plus the runtime's ``dlq.*`` headers (CONTRACT.md section 4).
Replaying sends it back to its original topic with those headers removed and a ``replay.count``
header counting the replays; a letter already replayed ``DLQ_REPLAY_CAP`` times is refused (its
cause is clearly not fixed), and so is one cut to fit the broker (``dlq.truncated``). The replayer
reads as consumer group ``dlq-replay`` and commits after the broker confirmed the re-sent messages,
so running it again sends nothing twice. Letters, and what bounds their size, are defined here
(``bounded_dead_letter``); the consumer runtime writes them.
"""

import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from django.conf import settings

from events.kafka import client_config, producer_config
from events.topics import DLQ_SUFFIX, group_name, topic_name

REPLAY_GROUP = "dlq-replay"
REPLAY_COUNT_HEADER = "replay.count"

DLQ_HEADER_PREFIX = "dlq."
TRUNCATED_HEADER = "dlq.truncated"

# The size budget of a dead letter, for every writer (Kafka and Dapr). librdkafka refuses to produce
# a message whose value, key and headers exceed its message.max.bytes (1,000,000 by default), and
# the broker's max.message.bytes is about 1 MiB; the remainder is room for the record's framing.
# The message being dead-lettered may itself have been that large, so a letter is cut to fit.
DEAD_LETTER_MAX_BYTES = 960_000
# No key or header value needs more (ours are UUIDs and names); dlq.error.message is cut to it too.
# Kept small so that the headers also fit the query string of a Dapr publish (events.dapr).
HEADER_VALUE_MAX_BYTES = 1024
# The original headers kept, in total; a message with more has the rest dropped.
ORIGINAL_HEADERS_MAX_BYTES = 8 * 1024
# What a header costs beyond its name and value (length varints), counted generously.
_HEADER_FRAMING_BYTES = 16


def dlq_headers_stripped(headers):
    """The headers of a message without any dlq.* header: what the runtime adds to a dead letter
    (removed on replay), and what a producer must not be able to forge into one."""
    return [(key, value) for key, value in (headers or []) if not key.startswith(DLQ_HEADER_PREFIX)]


def bounded_dead_letter(key, value, original_headers, dlq_headers):
    """(key, value, headers) of a dead letter cut to DEAD_LETTER_MAX_BYTES.

    The key and every header value are cut to HEADER_VALUE_MAX_BYTES, the original headers to
    ORIGINAL_HEADERS_MAX_BYTES in total (the runtime's ``dlq_headers`` always fit), and the value to
    what remains of the budget. Whatever of the original message was cut is named in a
    ``dlq.truncated`` header with its original size in bytes (for the headers: their names and
    values), e.g. ``value=1048576`` or ``key=4000,headers=250000``, so that a reader knows the
    letter is not the whole message.
    """
    cut = {}
    if _size(key) > HEADER_VALUE_MAX_BYTES:
        cut["key"] = _size(key)
        key = _cut(key, HEADER_VALUE_MAX_BYTES)
    headers, original_size, kept_size, headers_cut = [], 0, 0, False
    for name, header in original_headers:
        original_size += _size(name) + _size(header)
        bounded = _cut(header, HEADER_VALUE_MAX_BYTES)
        bounded_size = _header_size(name, bounded)
        fits = _size(name) <= HEADER_VALUE_MAX_BYTES and kept_size + bounded_size <= ORIGINAL_HEADERS_MAX_BYTES
        if fits:
            headers.append((name, bounded))
            kept_size += bounded_size
        headers_cut = headers_cut or not fits or bounded is not header
    if headers_cut:
        cut["headers"] = original_size
    headers += [(name, _safe_text(header, HEADER_VALUE_MAX_BYTES)) for name, header in dlq_headers]
    room = DEAD_LETTER_MAX_BYTES - _size(key) - sum(_header_size(name, header) for name, header in headers)
    # Leave room for the dlq.truncated header itself, which names at most three sizes.
    room -= _header_size(TRUNCATED_HEADER, "key=0000000000,value=0000000000,headers=0000000000")
    if _size(value) > room:
        cut["value"] = _size(value)
        value = _cut(value, room)
    if cut:
        headers.append((TRUNCATED_HEADER, ",".join(f"{part}={size}" for part, size in cut.items())))
    return key, value, headers


def _size(value):
    """Bytes of a key, value or header (bytes, str or None) on the wire."""
    if value is None:
        return 0
    return len(value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value)


def _header_size(name, value):
    return _size(name) + _size(value) + _HEADER_FRAMING_BYTES


def _safe_text(text, limit):
    """``text`` as valid UTF-8 of at most ``limit`` bytes: an error message may quote a lone
    surrogate of the event, which no producer could encode."""
    return text.encode("utf-8", "replace")[:limit].decode("utf-8", "ignore")


def _cut(value, limit):
    """``value`` (bytes, str or None) itself when within ``limit`` bytes, else its first ``limit`` bytes
    (a str stays a str, cut at a character boundary)."""
    if _size(value) <= limit:
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")[:limit].decode("utf-8", "ignore")
    return bytes(value[:limit])


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
    producer = Producer(producer_config(**{"acks": "all", "enable.idempotence": True}))
    failures = []
    results = []
    for letter in letters:
        if not letter.original_topic:
            results.append((letter, "refused: no dlq.original.topic header"))
            continue
        if truncated := letter.header(TRUNCATED_HEADER):  # the cut bytes would only be dead-lettered again
            results.append((letter, f"refused: not the whole message ({TRUNCATED_HEADER}: {truncated})"))
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
