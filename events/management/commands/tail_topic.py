"""Print a topic's messages as they arrive (the seed's `rpk topic consume`), one JSON line each.

    python manage.py tail_topic task-events --from-beginning

Reads every partition without a consumer group, so it never takes events from a service.
"""

import json
import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from events.core.message import Message
from events.topics import TOPICS, topic_name
from events.transports.kafka.consumer import NoSuchTopic, tail


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
        name = topic_name(topic)
        messages = tail(name, from_beginning=from_beginning, stop=stop)
        try:
            self._print(messages, max_messages, idle_timeout)
        except NoSuchTopic:
            raise CommandError(f"no topic {name} (python manage.py create_topics)") from None
        finally:
            messages.close()

    def _print(self, messages, max_messages, idle_timeout):
        printed = 0
        idle = 0.0
        for message in messages:
            if message is None:
                idle += 0.5
                if idle_timeout and idle >= idle_timeout:
                    return
                continue
            idle = 0.0
            if not isinstance(message, Message):
                self.stderr.write(f"error: {message}")
                continue
            value = _text(message.value)
            try:
                value = json.loads(value) if value is not None else None
            except json.JSONDecodeError:
                pass  # shown as text: a broken message is what one may be looking for
            line = {
                "topic": message.topic,
                "partition": message.partition,
                "offset": message.offset,
                "key": _text(message.key),
                "headers": {name: _text(raw) for name, raw in message.headers},
                "value": value,
            }
            self.stdout.write(json.dumps(line, ensure_ascii=False))
            self.stdout.flush()
            printed += 1
            if max_messages and printed >= max_messages:
                return
