"""Throughput of the audit, recurrence and realtime consumers next to a bare consume-and-parse loop.

    DATABASE_URL=... python bench/bench_consumers.py [--events 20000] [--consumers audit recurrence realtime]

For each consumer, in a throw-away topic namespace of its own on the configured broker, it
produces N events of the kind that consumer handles (audit: task.updated; recurrence:
task.completed of a daily recurring task, so each creates the next occurrence; realtime:
sync.task_changed, pushed to the owner's channel-layer group), with the sync-log rows the
services would have written beside them (in bulk, before anything is measured: each consumer
checks its events against the log), then reads them twice: once with a bare loop (consume +
json.loads, nothing else) and once with the real consumer
(validation, the processed-event records and the handler's effects in one transaction, offset
storing and commits). Both rates are measured from the first message to the last, so group
joins do not count. Prints one line per consumer and, last, a JSON line. Everything it made
(bench user and its tasks and sync log, audit rows, processed-event records, topics) is removed
afterwards.
"""

import argparse
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "todo_project.settings")
PREFIX = f"bench-{uuid.uuid4().hex[:8]}-"
os.environ["KAFKA_TOPIC_PREFIX"] = os.environ["KAFKA_GROUP_PREFIX"] = PREFIX

import django  # noqa: E402

django.setup()

from confluent_kafka import Consumer, Producer  # noqa: E402
from django.conf import settings  # noqa: E402
from prometheus_client import REGISTRY  # noqa: E402

from audit.models import AuditEntry  # noqa: E402
from events.consumer import ConsumerRuntime  # noqa: E402
from events.transports.kafka.admin import create_topics, delete_topics  # noqa: E402
from events.transports.kafka.config import client_config  # noqa: E402
from events.models import ProcessedEvent  # noqa: E402
from events.registry import get_consumer  # noqa: E402
from events.topics import TOPICS, group_name, topic_name  # noqa: E402
from tasks.events import EventContext, sync_event, task_event  # noqa: E402
from tasks.models import TaskChange, User  # noqa: E402
from testing.factories import TaskObjectFactory  # noqa: E402


def task_object(index, user_id, **fields):
    """A task object (CONTRACT.md section 2) at version 2, as the services would have left it."""
    return TaskObjectFactory(
        title=f"Task number {index}", description="Benchmark task", due_date="2026-12-20T18:00:00Z", priority=2,
        tags=["bench", "work"], user_id=str(user_id), version=2, created_at="2026-12-01T08:00:00Z", **fields,
    )


# Each builder returns (the event to consume, the sync event the services logged with it): the
# consumers check what they consume against the sync log, so the benchmark writes the log first.
def audit_event(index, user_id):
    obj, context = task_object(index, user_id), EventContext.new("todo-api")
    return task_event("task.updated", obj, context), sync_event("updated", obj, context)


def recurrence_event(index, user_id):
    obj = task_object(index, user_id, completed=True, completed_at="2026-12-20T17:00:00Z", recurrence_rule="FREQ=DAILY")
    context = EventContext.new("todo-api")
    return task_event("task.completed", obj, context), sync_event("updated", obj, context)


def realtime_event(index, user_id):
    sync = sync_event("updated", task_object(index, user_id), EventContext.new("todo-api"))
    return sync, sync


EVENTS = {"audit": audit_event, "recurrence": recurrence_event, "realtime": realtime_event}


def produce(name, count, user_id):
    """Write the sync log of ``count`` events in bulk (setup, not measured), then produce the events."""
    built = [EVENTS[name](index, user_id) for index in range(count)]
    TaskChange.objects.bulk_create(
        (TaskChange(user_id=user_id, task_id=sync["data"]["task_id"], event=sync) for _, sync in built), batch_size=5000
    )
    producer = Producer(client_config(**{"linger.ms": 20, "batch.num.messages": 10000}))
    topic = topic_name(get_consumer(name).topic)
    for event, _ in built:
        headers = [("event_type", event["event_type"]), ("event_id", event["event_id"])]
        while True:
            try:
                producer.produce(topic, json.dumps(event), key=event["data"]["task_id"], headers=headers)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0


def bare_loop(name, count):
    consumer = Consumer(client_config(**{"group.id": group_name("bench-bare"), "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic_name(get_consumer(name).topic)])
    seen, first = 0, None
    try:
        while seen < count:
            for message in consumer.consume(num_messages=1000, timeout=1.0):
                if message.error():
                    continue
                json.loads(message.value())
                if first is None:
                    first = time.perf_counter()
                seen += 1
        return (seen - 1) / (time.perf_counter() - first)
    finally:
        consumer.close()


def real_consumer(name, count):
    runtime = ConsumerRuntime(get_consumer(name))

    def processed():
        return REGISTRY.get_sample_value("todo_consumer_processed_total", {"consumer": name}) or 0
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    try:
        while processed() < 1:
            time.sleep(0.001)
        first, at_first = time.perf_counter(), processed()
        while processed() < count:
            if not thread.is_alive():
                raise RuntimeError(f"the {name} consumer stopped early")
            time.sleep(0.01)
        return (count - at_first) / (time.perf_counter() - first)
    finally:
        runtime.stop()
        thread.join(60)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--consumers", nargs="+", default=list(EVENTS), choices=list(EVENTS))
    args = parser.parse_args()
    user = User.objects.create_user(f"{PREFIX}user", password=uuid.uuid4().hex)
    results = {}
    try:
        for name in args.consumers:
            # A namespace per consumer: each bare loop and consumer reads only its own events.
            settings.KAFKA_TOPIC_PREFIX = settings.KAFKA_GROUP_PREFIX = f"{PREFIX}{name}-"
            create_topics()
            try:
                produce(name, args.events, user.id)
                bare = bare_loop(name, args.events)
                real = real_consumer(name, args.events)
                results[name] = {"events": args.events, "bare_per_s": round(bare), "consumer_per_s": round(real),
                                 "ratio": round(real / bare, 4)}
                print(f"{name:<11} {args.events} events on {topic_name(get_consumer(name).topic)}: bare consume + "
                      f"json.loads {bare:10,.0f}/s, run_consumer {name} {real:8,.0f}/s, ratio {real / bare:.3f} "
                      f"({bare / real:.0f}x slower)", flush=True)
            finally:
                ProcessedEvent.objects.filter(consumer_group=group_name(get_consumer(name).group)).delete()
                AuditEntry.objects.filter(topic=topic_name(get_consumer(name).topic)).delete()
                delete_topics([topic_name(spec.base_name) for spec in TOPICS])
    finally:
        user.delete()
    print(json.dumps({"consumers": results}))


if __name__ == "__main__":
    main()
