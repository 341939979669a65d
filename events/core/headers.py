"""The names of the message headers of the contract (CONTRACT.md section 4), defined once.

Every message carries ``event_type`` and ``event_id``; a dead letter adds the ``dlq.*`` headers; a
replayed letter counts its replays in ``replay.count``.
"""

EVENT_TYPE = "event_type"
EVENT_ID = "event_id"
EVENT_HEADERS = (EVENT_TYPE, EVENT_ID)

DLQ_PREFIX = "dlq."
DLQ_ORIGINAL_TOPIC = "dlq.original.topic"
DLQ_ORIGINAL_PARTITION = "dlq.original.partition"
DLQ_ORIGINAL_OFFSET = "dlq.original.offset"
DLQ_CONSUMER_GROUP = "dlq.consumer.group"
DLQ_ERROR_TYPE = "dlq.error.type"
DLQ_ERROR_MESSAGE = "dlq.error.message"
DLQ_ATTEMPTS = "dlq.attempts"
DLQ_FAILED_AT = "dlq.failed_at"
# Added only to a letter cut to fit the broker (events.core.dead_letters.bounded_dead_letter).
DLQ_TRUNCATED = "dlq.truncated"
# What every dead letter carries, in the order the consumer writes them.
DLQ_HEADERS = (
    DLQ_ORIGINAL_TOPIC, DLQ_ORIGINAL_PARTITION, DLQ_ORIGINAL_OFFSET, DLQ_CONSUMER_GROUP,
    DLQ_ERROR_TYPE, DLQ_ERROR_MESSAGE, DLQ_ATTEMPTS, DLQ_FAILED_AT,
)

REPLAY_COUNT = "replay.count"


def event_headers(event_type, event_id):
    """{name: text} of the headers that every message of an event carries."""
    return {EVENT_TYPE: event_type, EVENT_ID: str(event_id)}
