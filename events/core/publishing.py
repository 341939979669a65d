"""What the outbox relay hands a transport's publisher, and what a publisher answers.

A publisher (events.transports.kafka.producer.KafkaPublisher, events.transports.dapr.DaprPublisher)
takes a round of ``OutboxRow`` in id order and returns ``{row id: outcome}``: None when the broker
acknowledged the row, a ``Refusal`` when it refused the row for good (the relay parks it), or
any other value for a transient failure (the relay retries the row). Rows held back behind an
earlier row of their key that did not go through are left out, so per-key order holds.
"""

import uuid
from datetime import datetime
from typing import NamedTuple

from events.core.headers import event_headers


class OutboxRow(NamedTuple):
    id: int
    topic: str  # base name
    key: str
    payload: str
    event_type: str
    event_id: uuid.UUID
    created_at: datetime
    park_reason: str  # non-empty: parked once, now retried

    def headers(self):
        return event_headers(self.event_type, self.event_id)


class Refusal(NamedTuple):
    """A publisher's outcome for a row refused for good: the relay parks it, with this reason."""

    reason: str
