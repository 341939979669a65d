"""BENCHMARK ONLY: the seed's way of publishing, for the write-path baseline of bench/run_all.py.

    uvicorn bench.sync_publish_asgi:application      (never in the Procfile, never deployed)

The seed published each event from inside the request: a blocking produce followed by
flush(), so every create-task request waits for Kafka's acknowledgement, and an event is lost
when the process dies between the commit and the publish (or published for a change that then
rolls back). This module serves the ordinary ASGI application with the task services' outbox
write swapped for exactly that, so the benchmark can put a number on the difference. The
production path (events.outbox.emit_all + relay_outbox) is untouched.
"""

import threading

from confluent_kafka import Producer

from todo_project.asgi import application  # noqa: F401 - sets Django up; served as is

import tasks.services  # noqa: E402
from events.transports.kafka.config import client_config  # noqa: E402
from events.outbox import serialise  # noqa: E402
from events.schemas import topic_of, validate_event  # noqa: E402
from events.topics import topic_name  # noqa: E402

_producer = None
_lock = threading.Lock()


def _publish_synchronously(keyed_events):
    global _producer
    with _lock:
        if _producer is None:
            _producer = Producer(client_config(**{"acks": "all", "enable.idempotence": True}))
    for event, key in keyed_events:
        validate_event(event)
        headers = [("event_type", event["event_type"]), ("event_id", event["event_id"])]
        _producer.produce(topic_name(topic_of(event["event_type"])), serialise(event), key=str(key), headers=headers)
        _producer.flush(30)  # the seed: block the request until Kafka acknowledged the event


tasks.services.emit_all = _publish_synchronously
