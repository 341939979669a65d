"""Publish one event to a topic by hand (the seed's `dapr publish`), e.g.

    python manage.py publish_event task-events '{"event_id": "...", "event_type": "task.created", ...}'

The event must be valid against the contract unless --no-validate is given (to try a consumer's
dead-letter handling). This bypasses the outbox on purpose: it is a tool for people testing.
"""

import json

from confluent_kafka import Producer
from django.core.management.base import BaseCommand, CommandError

from events.kafka import producer_config
from events.outbox import serialise
from events.schemas import InvalidEvent, topic_of, validate_event
from events.topics import TOPICS, topic_name


class Command(BaseCommand):
    help = "Publish one JSON event to a topic (key = data.task_id), with event_type/event_id headers."

    def add_arguments(self, parser):
        parser.add_argument("topic", choices=[spec.base_name for spec in TOPICS])
        parser.add_argument("event", help="the event as JSON")
        parser.add_argument("--key", help="message key (default: data.task_id, else event_id)")
        parser.add_argument("--no-validate", action="store_true", help="send it even if it breaks the contract")

    def handle(self, *args, topic, event, key, no_validate, **options):
        try:
            parsed = json.loads(event)
        except json.JSONDecodeError as exc:
            raise CommandError(f"not JSON: {exc}") from None
        if not no_validate:
            try:
                validate_event(parsed)
            except InvalidEvent as exc:
                raise CommandError(f"{exc} (use --no-validate to send it anyway)") from None
            if topic_of(parsed["event_type"]) != topic:
                raise CommandError(f"{parsed['event_type']} belongs on {topic_of(parsed['event_type'])}, not {topic}")
        fields = parsed if isinstance(parsed, dict) else {}
        data = fields.get("data") if isinstance(fields.get("data"), dict) else {}
        key = key or data.get("task_id") or fields.get("event_id")
        headers = [(name, str(fields[name]).encode()) for name in ("event_type", "event_id") if name in fields]
        delivered = []
        producer = Producer(producer_config(**{"enable.idempotence": True, "acks": "all", "message.timeout.ms": 30000}))
        producer.produce(
            topic_name(topic),
            key=str(key).encode() if key is not None else None,
            value=serialise(parsed).encode(),
            headers=headers,
            on_delivery=lambda err, msg: delivered.append((err, msg)),
        )
        producer.flush(35)
        if not delivered or delivered[0][0] is not None:
            error = delivered[0][0] if delivered else "no acknowledgement within 35 s"
            raise CommandError(f"not published: {error}. Is Kafka running (make infra)?")
        message = delivered[0][1]
        self.stdout.write(f"published to {message.topic()} partition {message.partition()} offset {message.offset()}")


