"""Step 4 of processing: dead letters, what they carry and what bounds their size.

A dead letter is the original message (key, value, headers without any forged ``dlq.*``) plus the
``dlq.*`` headers of CONTRACT.md section 4, written to the consumer's dead-letter topic by a
transport's writer (``write(topic, key=, value=, headers=)``: None once the broker confirmed it,
else what went wrong). A write the broker did not confirm raises DeadLetterWriteFailed, so that
the offset never moves past a message that is neither handled nor dead-lettered. A letter too
large for the broker is cut and says so in ``dlq.truncated`` (``bounded_dead_letter``).
"""

import logging

from events.core import headers as names
from events.core.metrics import DEAD_LETTERED
from events.schemas import utc_timestamp

logger = logging.getLogger("events.consumer")

# The size budget of a dead letter, for every writer (Kafka and Dapr). librdkafka refuses to produce
# a message whose value, key and headers exceed its message.max.bytes (1,000,000 by default), and
# the broker's max.message.bytes is about 1 MiB; the remainder is room for the record's framing.
# The message being dead-lettered may itself have been that large, so a letter is cut to fit.
DEAD_LETTER_MAX_BYTES = 960_000
# No key or header value needs more (ours are UUIDs and names); dlq.error.message is cut to it too.
# Kept small so that the headers also fit the query string of a Dapr publish (events.transports.dapr).
HEADER_VALUE_MAX_BYTES = 1024
# The original headers kept, in total; a message with more has the rest dropped.
ORIGINAL_HEADERS_MAX_BYTES = 8 * 1024
# What a header costs beyond its name and value (length varints), counted generously.
_HEADER_FRAMING_BYTES = 16


class DeadLetterWriteFailed(RuntimeError):
    """The broker did not confirm a dead-letter write, so the offset must not move past the message."""


class DeadLetterer:
    """Writes the dead letters of one consumer (``name``, ``group``) to ``topic`` through ``writer``."""

    def __init__(self, writer, *, name, group, topic):
        self.writer, self.name, self.group, self.topic = writer, name, group, topic

    def write(self, message, error, *, attempts, outcome):
        """Dead-letter ``message`` (a Message) for ``error``; ``outcome`` (invalid or failed) labels the count."""
        dlq_headers = [
            (names.DLQ_ORIGINAL_TOPIC, message.topic),
            (names.DLQ_ORIGINAL_PARTITION, str(message.partition)),
            (names.DLQ_ORIGINAL_OFFSET, str(message.offset)),
            (names.DLQ_CONSUMER_GROUP, self.group),
            (names.DLQ_ERROR_TYPE, type(error).__name__),
            (names.DLQ_ERROR_MESSAGE, str(error)),
            (names.DLQ_ATTEMPTS, str(attempts)),
            (names.DLQ_FAILED_AT, utc_timestamp()),
        ]
        # Forged dlq.* headers are dropped, so that a replay cannot be steered elsewhere.
        key, value, headers = bounded_dead_letter(
            message.key, message.value, dlq_headers_stripped(message.headers), dlq_headers
        )
        error_text = self.writer.write(self.topic, key=key, value=value, headers=headers)
        if error_text is not None:
            raise DeadLetterWriteFailed(
                f"{self.topic} did not confirm the dead letter of {message.coordinates()}: {error_text}"
            )
        DEAD_LETTERED.labels(self.name, outcome).inc()
        logger.error(
            "consumer %s: dead-lettered %s to %s after %d attempt(s): %s: %s",
            self.name, message.coordinates(), self.topic, attempts, type(error).__name__, error,
        )


def dlq_headers_stripped(headers):
    """The headers of a message without any dlq.* header: what the runtime adds to a dead letter
    (removed on replay), and what a producer must not be able to forge into one."""
    return [(key, value) for key, value in (headers or []) if not key.startswith(names.DLQ_PREFIX)]


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
    room -= _header_size(names.DLQ_TRUNCATED, "key=0000000000,value=0000000000,headers=0000000000")
    if _size(value) > room:
        cut["value"] = _size(value)
        value = _cut(value, room)
    if cut:
        headers.append((names.DLQ_TRUNCATED, ",".join(f"{part}={size}" for part, size in cut.items())))
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
