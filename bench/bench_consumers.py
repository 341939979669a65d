"""Throughput of the audit consumer next to a bare confluent-kafka consume-and-parse loop.

    DATABASE_URL=... python bench/bench_consumers.py [--events 20000]

Produces N task events to a throw-away topic namespace on the configured broker, then reads
them twice: once with a bare loop (consume + json.loads, nothing else) and once with the real
audit consumer (validation, the processed-event records and audit rows of the events fetched
together in one transaction, offset storing and commits). Both rates are measured from the first message to the
last, so group joins do not count. The audit rows, processed-event records and topics are
removed afterwards.
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
from events.kafka import client_config, create_topics, delete_topics  # noqa: E402
from events.models import ProcessedEvent  # noqa: E402
from events.registry import get_consumer  # noqa: E402
from events.schemas import make_event  # noqa: E402
from events.topics import TASK_EVENTS, TOPICS, group_name, topic_name  # noqa: E402


def task_event(index):
    return make_event(
        "task.updated",
        {
            "task_id": str(uuid.uuid4()), "title": f"Task number {index}", "description": "Benchmark task",
            "completed": False, "due_date": "2026-12-20T18:00:00Z", "remind_at": None, "priority": 2,
            "recurrence_rule": None, "tags": ["bench", "work"], "parent_task_id": None, "version": 2,
            "user_id": "1",
        },
        source="todo-api",
        correlation_id=str(uuid.uuid4()),
    )


def produce(count):
    producer = Producer(client_config(**{"linger.ms": 20, "batch.num.messages": 10000}))
    topic = topic_name(TASK_EVENTS)
    for index in range(count):
        event = task_event(index)
        headers = [("event_type", event["event_type"]), ("event_id", event["event_id"])]
        while True:
            try:
                producer.produce(topic, json.dumps(event), key=event["data"]["task_id"], headers=headers)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0


def bare_loop(count):
    consumer = Consumer(client_config(**{"group.id": group_name("bench-bare"), "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic_name(TASK_EVENTS)])
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


def audit_consumer(count):
    runtime = ConsumerRuntime(get_consumer("audit"))

    def processed():
        return REGISTRY.get_sample_value("todo_consumer_processed_total", {"consumer": "audit"}) or 0
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    try:
        while processed() < 1:
            time.sleep(0.001)
        first, at_first = time.perf_counter(), processed()
        while processed() < count:
            if not thread.is_alive():
                raise RuntimeError("the audit consumer stopped early")
            time.sleep(0.01)
        return (count - at_first) / (time.perf_counter() - first)
    finally:
        runtime.stop()
        thread.join(60)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    count = parser.parse_args().events
    create_topics()
    try:
        print(f"broker {settings.KAFKA_BOOTSTRAP_SERVERS}, database {settings.DATABASES['default']['NAME']}, "
              f"{count} task events on {topic_name(TASK_EVENTS)} ({settings.KAFKA_TOPIC_PARTITIONS} partitions)")
        produce(count)
        bare = bare_loop(count)
        audit = audit_consumer(count)
        print(f"bare confluent-kafka consume + json.loads: {bare:12,.0f} events/s")
        print(f"audit consumer (run_consumer audit):     {audit:12,.0f} events/s")
        print(f"ratio audit / bare: {audit / bare:.3f} ({bare / audit:.0f}x slower)")
    finally:
        AuditEntry.objects.filter(topic=topic_name(TASK_EVENTS)).delete()
        ProcessedEvent.objects.filter(consumer_group=group_name("audit-service")).delete()
        delete_topics([topic_name(spec.base_name) for spec in TOPICS])


if __name__ == "__main__":
    main()
