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
joins do not count, and so is the CPU time each spends per event: the bench process's (the
consumer thread and librdkafka's threads; the main thread only polls a counter) and, for the real
consumer, that of its PostgreSQL backend (read from /proc, so PostgreSQL must run on this host;
else that figure is left out). The main thread's CPU is left out while the consumer runs: it
only waits for the consumer's counter. CPU figures are what to compare on a loaded machine; rates are
wall-clock. The events belong to ``--users`` users in turn, so that a batch spans many owners as
in production (the realtime bridge sends once per owner and batch), and the realtime bench keeps a
channel in every owner's group, so that each send is stored for a socket as in production.
Prints one line per consumer and, last, a JSON line. Everything it made (bench users and their
tasks and sync log, audit rows, processed-event records, topics, channel-layer groups) is removed
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
os.environ["CHANNEL_LAYER_PREFIX"] = f"{PREFIX}asgi"  # its own groups and channels

import django  # noqa: E402

django.setup()

import psutil  # noqa: E402
from asgiref.sync import async_to_sync  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from confluent_kafka import Consumer, Producer  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.backends.signals import connection_created  # noqa: E402
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
from tasks.realtime.groups import user_group_name  # noqa: E402
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


def produce(name, count, user_ids):
    """Write the sync log of ``count`` events of the users in turn in bulk (setup, not measured),
    then produce the events."""
    built = [EVENTS[name](index, user_ids[index % len(user_ids)]) for index in range(count)]
    TaskChange.objects.bulk_create(
        (TaskChange(user_id=int(sync["data"]["user_id"]), task_id=sync["data"]["task_id"], event=sync) for _, sync in built),
        batch_size=5000,
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


def cpu_seconds(process):
    times = process.cpu_times()
    return times.user + times.system


def cpu_seconds_but_main_thread(process):
    """The process's CPU time except the main thread's, which only waits for and polls the others."""
    main = threading.main_thread().native_id
    return sum(thread.user_time + thread.system_time for thread in process.threads() if thread.id != main)


class Interval:
    """Wall-clock and CPU time (this process's, and a PostgreSQL backend's when given) from ``start``
    to ``stop``, for ``events`` events in between."""

    def __init__(self):
        self.me, self.backend = psutil.Process(), None

    def start(self, backend_pid=None):
        try:
            self.backend = psutil.Process(backend_pid) if backend_pid else None
            self.backend_cpu = cpu_seconds(self.backend) if self.backend else None
        except psutil.Error:  # PostgreSQL elsewhere, or not ours to read
            self.backend = None
        self.cpu, self.wall = self.own_cpu(), time.perf_counter()

    def own_cpu(self):
        # The bare loop runs in the main thread; the real consumer in its own, watched by the main one.
        return cpu_seconds(self.me) if threading.active_count() == 1 else cpu_seconds_but_main_thread(self.me)

    def stop(self, events):
        wall, cpu = time.perf_counter() - self.wall, self.own_cpu() - self.cpu
        figures = {"per_s": events / wall, "cpu_us_per_event": cpu / events * 1e6}
        if self.backend is not None:
            figures["postgres_cpu_us_per_event"] = (cpu_seconds(self.backend) - self.backend_cpu) / events * 1e6
        return figures


def bare_loop(name, count):
    consumer = Consumer(client_config(**{"group.id": group_name("bench-bare"), "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic_name(get_consumer(name).topic)])
    seen, interval = 0, Interval()
    try:
        while seen < count:
            for message in consumer.consume(num_messages=1000, timeout=1.0):
                if message.error():
                    continue
                json.loads(message.value())
                if seen == 0:
                    interval.start()
                seen += 1
        return interval.stop(seen - 1)
    finally:
        consumer.close()


def real_consumer(name, count):
    runtime = ConsumerRuntime(get_consumer(name))
    backends = []

    def note_backend(sender, connection, **kwargs):  # the consumer thread's PostgreSQL backend
        if threading.current_thread() is thread:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                backends.append(cursor.fetchone()[0])

    def processed():
        return REGISTRY.get_sample_value("todo_consumer_processed_total", {"consumer": name}) or 0
    thread = threading.Thread(target=runtime.run, daemon=True)
    connection_created.connect(note_backend)
    thread.start()
    interval = Interval()
    try:
        while processed() < 1:
            time.sleep(0.001)
        interval.start(backends[-1] if len(backends) == 1 else None)  # one connection throughout, or no figure
        at_first = processed()
        while processed() < count:
            if not thread.is_alive():
                raise RuntimeError(f"the {name} consumer stopped early")
            time.sleep(0.01)
        figures = interval.stop(count - at_first)
        if len(backends) != 1:
            figures.pop("postgres_cpu_us_per_event", None)
        return figures
    finally:
        runtime.stop()
        thread.join(60)
        connection_created.disconnect(note_backend)


def listen_to(user_ids):
    """Keep a channel in each user's group, as an open socket does; return a function that removes them."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()

    async def add(join):
        for user_id in user_ids:
            await (layer.group_add if join else layer.group_discard)(user_group_name(user_id), channel)
    async_to_sync(add)(True)
    return lambda: async_to_sync(add)(False)  # what the channel holds expires with the layer's expiry


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--users", type=int, default=50, help="owners of the events, in turn")
    parser.add_argument("--consumers", nargs="+", default=list(EVENTS), choices=list(EVENTS))
    args = parser.parse_args()
    users = User.objects.bulk_create(User(username=f"{PREFIX}user-{index}") for index in range(args.users))
    user_ids = [user.id for user in users]
    results = {}
    try:
        for name in args.consumers:
            # A namespace per consumer: each bare loop and consumer reads only its own events.
            settings.KAFKA_TOPIC_PREFIX = settings.KAFKA_GROUP_PREFIX = f"{PREFIX}{name}-"
            create_topics()
            stop_listening = listen_to(user_ids) if name == "realtime" else None
            try:
                produce(name, args.events, user_ids)
                bare = bare_loop(name, args.events)
                real = real_consumer(name, args.events)
                results[name] = {
                    "events": args.events, "users": args.users, "bare_per_s": round(bare["per_s"]),
                    "consumer_per_s": round(real["per_s"]), "ratio": round(real["per_s"] / bare["per_s"], 4),
                    "bare_cpu_us_per_event": round(bare["cpu_us_per_event"], 1),
                    "consumer_cpu_us_per_event": round(real["cpu_us_per_event"], 1),
                    "cpu_ratio": round(bare["cpu_us_per_event"] / real["cpu_us_per_event"], 4),
                }
                postgres = real.get("postgres_cpu_us_per_event")
                if postgres is not None:
                    results[name]["postgres_cpu_us_per_event"] = round(postgres, 1)
                print(f"{name:<11} {args.events} events of {args.users} users on {topic_name(get_consumer(name).topic)}: "
                      f"bare consume + json.loads {bare['per_s']:9,.0f}/s ({bare['cpu_us_per_event']:.1f} us CPU/event), "
                      f"run_consumer {name} {real['per_s']:7,.0f}/s ({real['cpu_us_per_event']:.0f} us CPU/event"
                      + (f" + {postgres:.0f} us in PostgreSQL" if postgres is not None else "")
                      + f"), ratio {real['per_s'] / bare['per_s']:.3f}, CPU ratio {results[name]['cpu_ratio']:.3f}",
                      flush=True)
            finally:
                if stop_listening:
                    stop_listening()
                ProcessedEvent.objects.filter(consumer_group=group_name(get_consumer(name).group)).delete()
                AuditEntry.objects.filter(topic=topic_name(get_consumer(name).topic)).delete()
                delete_topics([topic_name(spec.base_name) for spec in TOPICS])
    finally:
        User.objects.filter(id__in=user_ids).delete()
        connection.close()
    print(json.dumps({"consumers": results}))


if __name__ == "__main__":
    main()
