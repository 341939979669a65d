"""Debezium (OUTBOX_PUBLISHER=debezium) next to relay_outbox: drain rate of one backlog, and a fault drill.

    python bench/debezium_drain.py [--rows 50000]        (make debezium-drill)

On a private PostgreSQL with logical decoding and the shared Kafka under a scratch prefix (see
tests/deploy/debezium_stack.py), like the tests:

1. Drain. The Connect worker is started once (slot and connector made), stopped, and a backlog of
   ``--rows`` outbox rows (sync events of 5,000 tasks, ~1 KB each, committed 3 to a transaction as
   the services write them) is committed while nothing publishes. Then, on the same rows:
   Debezium streams them from its slot, relay_outbox publishes them, and a bare idempotent
   confluent-kafka produce of the same rows gives the ceiling. Each rate is taken from the first
   to the last message on the topics (their end offsets, polled), so the worker's JVM start and
   the relay's start are not counted.
2. Fault drill. Changes are committed at a paced rate while, one after the other, the Connect
   worker and PostgreSQL are killed with SIGKILL and restarted; afterwards every committed event
   must be on its topic (none lost), and the copies are counted (duplicates: at-least-once).
"""

import argparse
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TOPICS = ("task-events", "reminders", "task-updates")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--drill-rate", type=int, default=300, help="events/s committed during the fault drill")
    args = parser.parse_args()

    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "todo_project.settings")
    os.environ.setdefault("DEBUG", "true")
    prefix = f"dbzdrill-{uuid.uuid4().hex[:8]}-"
    os.environ["KAFKA_TOPIC_PREFIX"] = prefix
    import django

    django.setup()
    from testing.debezium import Stack

    stack = Stack(Path(tempfile.mkdtemp(prefix="debezium-drill-")), prefix)
    print(f"debezium drill: logs in {stack.logs}, topics {prefix}*", flush=True)
    try:
        stack.start()
        drain = drain_rates(stack, args.rows)
        drill = fault_drill(stack, args.drill_rate)
    finally:
        stack.stop()
        for p in (prefix, f"{prefix}relay-", f"{prefix}bare-"):
            stack.delete_topics(p)
    print_tables(args.rows, drain, drill)
    return 0 if all(row["lost"] == 0 for row in drill) else 1


def backlog(stack, rows, first_task=0):
    """Commit ``rows`` outbox rows, 3 per transaction; return their event ids."""
    from testing.factories import sync_task_changed as sync_event
    from events.outbox import serialise

    keys = [str(uuid.UUID(int=first_task + i)) for i in range(5000)]
    ids = []
    with stack.postgres.connect() as conn:
        conn.autocommit = False
        with conn.cursor() as cursor:
            for n in range(rows):
                event = sync_event(keys[n % len(keys)], description="x" * 400)
                ids.append(event["event_id"])
                cursor.execute(
                    "INSERT INTO events_outboxevent (event_id, event_type, topic, key, payload, created_at, park_reason)"
                    " VALUES (%s, %s, 'task-updates', %s, %s, now(), '')",
                    [event["event_id"], event["event_type"], keys[n % len(keys)], serialise(event)],
                )
                if n % 3 == 2:
                    conn.commit()
        conn.commit()
    return ids


def end_offsets(topics):
    from confluent_kafka import Consumer, TopicPartition

    from events.transports.kafka.config import client_config

    consumer = Consumer(client_config(**{"group.id": "unused"}))
    try:
        metadata = consumer.list_topics(timeout=30)
        total = 0
        for topic in topics:
            for partition in metadata.topics[topic].partitions:
                total += consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
        return total
    finally:
        consumer.close()


def time_drain(topics, count, timeout=900):
    """Seconds from the first to the ``count``-th message on ``topics`` (end offsets polled every 0.1 s)."""
    base = end_offsets(topics)
    first = None
    deadline = time.monotonic() + timeout
    while True:
        now = end_offsets(topics) - base
        if now > 0 and first is None:
            first = time.monotonic()
        if now >= count:
            return time.monotonic() - first
        if time.monotonic() > deadline:
            raise TimeoutError(f"{now} of {count} messages on {topics} in {timeout} s")
        time.sleep(0.1)


def drain_rates(stack, rows):
    from confluent_kafka import Producer

    from events.transports.kafka.config import producer_config

    worker = stack.connect_worker()
    worker.wait_running()
    worker.stop()  # the slot stays and keeps the WAL of what follows
    print(f"committing a backlog of {rows:,} rows with nothing publishing…", flush=True)
    backlog(stack, rows)
    results = {}

    topic = f"{stack.prefix}task-updates"
    timer = threading.Thread(target=lambda: results.__setitem__("debezium", time_drain([topic], rows)))
    timer.start()
    stack.worker = stack.connect_worker()
    timer.join()
    print(f"  debezium: {rows / results['debezium']:,.0f} events/s", flush=True)

    relay_prefix = f"{stack.prefix}relay-"
    stack.manage("create_topics", prefix=relay_prefix)
    timer = threading.Thread(target=lambda: results.__setitem__("relay", time_drain([relay_prefix + "task-updates"], rows)))
    timer.start()
    relay = stack.spawn("relay", "relay_outbox", prefix=relay_prefix, OUTBOX_PUBLISHER="relay")
    timer.join()
    relay.stop()
    print(f"  relay_outbox: {rows / results['relay']:,.0f} events/s", flush=True)

    bare_prefix = f"{stack.prefix}bare-"
    stack.manage("create_topics", prefix=bare_prefix)
    data = stack.postgres.query("SELECT key, payload, event_type, event_id FROM events_outboxevent ORDER BY id")
    producer = Producer(producer_config())
    start = time.monotonic()
    for key, payload, event_type, event_id in data:
        while True:
            try:
                producer.produce(bare_prefix + "task-updates", key=key.encode(), value=payload.encode(),
                                 headers=[("event_type", event_type.encode()), ("event_id", str(event_id).encode())])
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(300)
    results["bare"] = time.monotonic() - start
    print(f"  bare produce: {rows / results['bare']:,.0f} events/s", flush=True)
    return results


def fault_drill(stack, rate):
    """Paced commits while each fault is injected; what reached the topics afterwards."""
    from testing.debezium import event_ids_of, read_topics

    rows = []
    for fault in ("Connect worker", "PostgreSQL"):
        committed, stop = [], threading.Event()
        writer = threading.Thread(target=paced_writer, args=(stack, rate, committed, stop))
        writer.start()
        time.sleep(5)  # the load runs a while before the fault
        topic = [stack.prefix + "task-updates"]
        started, at_fault = time.monotonic(), end_offsets(topic)
        if fault == "Connect worker":
            stack.worker.kill()
            stack.worker = stack.connect_worker()
        else:
            stack.postgres.kill()
            stack.postgres.start()
        # Publishing again: 30 messages past the end the topic had when the fault struck.
        while end_offsets(topic) < at_fault + 30:
            time.sleep(0.2)
        recovered = time.monotonic() - started
        time.sleep(5)  # and a while after
        stop.set()
        writer.join()
        wanted = set(committed)
        messages = read_topics([stack.prefix + t for t in TOPICS],
                               lambda got: wanted <= event_ids_of(got), timeout=600)
        copies = Counter(m.header("event_id").decode() for m in messages if m.header("event_id").decode() in wanted)
        rows.append({"fault": f"kill -9 {fault}, restart", "committed": len(wanted), "on_topics": len(copies),
                     "lost": len(wanted - set(copies)), "duplicates": sum(copies.values()) - len(copies),
                     "publishing_again_s": recovered})
        print(f"  {rows[-1]}", flush=True)
    return rows


def paced_writer(stack, rate, committed, stop):
    """Three-row transactions at ``rate`` events/s until ``stop``; retries while PostgreSQL is down."""
    import psycopg

    from events.outbox import serialise
    from testing.factories import sync_task_changed as sync_event

    interval = 3 / rate
    next_at = time.monotonic()
    conn = None
    while not stop.is_set():
        try:
            conn = conn or psycopg.connect(stack.postgres.url)
            key = str(uuid.uuid4())
            events = [sync_event(key) for _ in range(3)]
            with conn.transaction():
                for event in events:
                    conn.execute(
                        "INSERT INTO events_outboxevent (event_id, event_type, topic, key, payload, created_at,"
                        " park_reason) VALUES (%s, %s, 'task-updates', %s, %s, now(), '')",
                        [event["event_id"], event["event_type"], key, serialise(event)],
                    )
            committed.extend(event["event_id"] for event in events)
        except psycopg.OperationalError:
            conn = None
            time.sleep(0.5)
            continue
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))


def print_tables(rows, drain, drill):
    relay = rows / drain["relay"]
    print(f"\nDrain of a {rows:,}-row backlog (same rows, same machine, same run)")
    print(f"{'publisher':<28}{'seconds':>10}{'events/s':>12}{'vs relay':>10}")
    for name, label in (("debezium", "Debezium (Kafka Connect)"), ("relay", "relay_outbox"),
                        ("bare", "bare idempotent produce")):
        rate = rows / drain[name]
        print(f"{label:<28}{drain[name]:>10.1f}{rate:>12,.0f}{rate / relay:>10.2f}")
    print("\nFault drill (OUTBOX_PUBLISHER=debezium)")
    print(f"{'fault':<36}{'committed':>10}{'on topics':>10}{'lost':>6}{'dupes':>7}{'publishing again after':>24}")
    for row in drill:
        print(f"{row['fault']:<36}{row['committed']:>10}{row['on_topics']:>10}{row['lost']:>6}{row['duplicates']:>7}"
              f"{row['publishing_again_s']:>22.1f} s")


if __name__ == "__main__":
    sys.exit(main())
