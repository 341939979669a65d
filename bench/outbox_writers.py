"""BENCHMARK ONLY: the outbox writers of bench/run_all.py's write-path baselines (never deployed).

    OUTBOX_WRITER=bench.outbox_writers.discard             uvicorn todo_project.asgi:application
    OUTBOX_WRITER=bench.outbox_writers.produce_and_flush   uvicorn todo_project.asgi:application

The OUTBOX_WRITER setting names the function that stores the events a change emits
(events/outbox.py; production: ``events.outbox.write_rows``, the outbox rows that relay_outbox
publishes). These two replace it, from outside the write path, for the comparison:

- ``discard``: no events at all (the cost of a change without any), the "events off" baseline;
- ``produce_and_flush``: the seed's way, a blocking produce followed by flush() inside the
  request, so every create-task request waits for Kafka's acknowledgement, and an event is lost
  when the process dies between the commit and the publish (or published for a change that then
  rolls back).
"""

import threading

from confluent_kafka import Producer

from events.transports.kafka.config import producer_config
from events.outbox import serialise
from events.schemas import topic_of, validate_event
from events.topics import topic_name

_producer = None
_lock = threading.Lock()


def discard(keyed_events):
    return [None for _ in keyed_events]


def produce_and_flush(keyed_events):
    global _producer
    with _lock:
        if _producer is None:
            _producer = Producer(producer_config())
    published = []
    for event, key in keyed_events:
        validate_event(event)
        headers = [("event_type", event["event_type"]), ("event_id", event["event_id"])]
        _producer.produce(topic_name(topic_of(event["event_type"])), serialise(event), key=str(key), headers=headers)
        _producer.flush(30)  # the seed: block the request until Kafka acknowledged the event
        published.append(None)
    return published
