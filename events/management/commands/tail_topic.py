"""Print a topic's messages as they arrive (the seed's `rpk topic consume`), one JSON line each.

    python manage.py tail_topic task-events --from-beginning

Reads every partition without a consumer group, so it never takes events from a service.
"""

import json
import signal
import threading

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition
from django.core.management.base import BaseCommand, CommandError

from events.kafka import client_config
from events.topics import TOPICS, topic_name


def _text(raw):
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.hex()


class Command(BaseCommand):
    help = "Print the messages of a topic as JSON lines: topic, partition, offset, key, headers, value."

    def add_arguments(self, parser):
        parser.add_argument("topic", choices=[spec.base_name for spec in TOPICS])
        parser.add_argument("--from-beginning", action="store_true", help="start at the oldest message")
        parser.add_argument("--max-messages", type=int, default=0, help="stop after this many (default: never)")
        parser.add_argument("--idle-timeout", type=float, default=0, help="stop after this many idle seconds")

    def handle(self, *args, topic, from_beginning, max_messages, idle_timeout, **options):
        stop = threading.Event()
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
        consumer = Consumer(client_config(**{"group.id": "tail-topic", "enable.auto.commit": False}))
        try:
            name = topic_name(topic)
            metadata = consumer.list_topics(name, timeout=10)
            if name not in metadata.topics or metadata.topics[name].error is not None:
                raise CommandError(f"no topic {name} (python manage.py create_topics)")
            start = OFFSET_BEGINNING if from_beginning else OFFSET_END
            consumer.assign([TopicPartition(name, p, start) for p in metadata.topics[name].partitions])
            self._print(consumer, stop, max_messages, idle_timeout)
        finally:
            consumer.close()

    def _print(self, consumer, stop, max_messages, idle_timeout):
        printed = 0
        idle = 0.0
        while not stop.is_set() and (not max_messages or printed < max_messages):
            message = consumer.poll(0.5)
            if message is None:
                idle += 0.5
                if idle_timeout and idle >= idle_timeout:
                    return
                continue
            idle = 0.0
            if message.error():
                self.stderr.write(f"error: {message.error()}")
                continue
            value = _text(message.value())
            try:
                value = json.loads(value) if value is not None else None
            except json.JSONDecodeError:
                pass  # shown as text: a broken message is what one may be looking for
            line = {
                "topic": message.topic(),
                "partition": message.partition(),
                "offset": message.offset(),
                "key": _text(message.key()),
                "headers": {name: _text(raw) for name, raw in message.headers() or []},
                "value": value,
            }
            self.stdout.write(json.dumps(line, ensure_ascii=False))
            self.stdout.flush()
            printed += 1
