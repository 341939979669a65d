"""What the outbox relay hands a transport's publisher, and what a publisher answers.

A publisher (events.transports.kafka.producer.KafkaPublisher, events.transports.dapr.DaprPublisher)
takes rounds of ``OutboxRow`` in id order and answers per row: None when the broker acknowledged
the row, a ``Refusal`` when it refused the row for good (the relay parks it), or any other value
for a transient failure (the relay retries the row). Rows held back behind an earlier row of
their key that did not go through get no answer, so per-key order holds.

* ``publish(rows)`` starts publishing a round behind the rows still in flight and returns the
  answers known at once, ``{row id: outcome}``;
* ``in_flight`` maps the ids of the rows published and not answered yet to the rows (the relay
  reads around them), and ``collect(timeout, everything=False)`` returns the answers that came since, waiting
  up to ``timeout`` seconds for them (or, with ``everything``, until nothing is in flight). A publisher
  may answer a window all at once (the Kafka one does).

A publisher that answers every row within ``publish`` (``LockstepPublisher``) keeps the relay in
lockstep: nothing is ever in flight.
"""

from types import MappingProxyType
from typing import NamedTuple

from events.core.headers import event_headers


class OutboxRow(NamedTuple):
    id: int
    topic: str  # base name
    key: str
    payload: str
    event_type: str
    event_id: str
    created_at: float  # seconds since the epoch
    park_reason: str  # non-empty: parked once, now retried

    def headers(self):
        return event_headers(self.event_type, self.event_id)


class Refusal(NamedTuple):
    """A publisher's outcome for a row refused for good: the relay parks it, with this reason."""

    reason: str


class LockstepPublisher:
    """The part of the protocol a publisher that answers every row within ``publish`` shares."""

    in_flight = MappingProxyType({})

    def collect(self, timeout=0.0, *, everything=False):
        return {}
