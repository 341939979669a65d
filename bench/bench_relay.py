"""The outbox relay draining a backlog, next to a bare idempotent produce of the same rows.

    DATABASE_URL=... python bench/bench_relay.py [--rows 50000] [--repeat 3]

In a scratch database and topic namespace (bench/scratch.py) it commits a backlog of ``--rows``
outbox rows (sync events of 5,000 tasks, ~1 KB each, as bench/debezium_drain.py writes them) and
then, ``--repeat`` times and interleaved, on the same rows:

* the relay: an ``OutboxRelay`` started in a thread of this process publishes the backlog; timed
  from its start (the producer's creation included) until every row is marked sent;
* bare: one idempotent producer from the same ``producer_config`` produces the rows' payloads
  (read from the table beforehand, not timed) with the same keys and headers, and flushes; timed
  from the producer's creation until the flush returns.

Before each relay run the backlog is made unsent again (``sent_at = NULL``, then VACUUM ANALYZE).
CPU is this process's user+sys time over each run (``resource.getrusage``: every thread,
librdkafka's included; the wait for the end costs one indexed EXISTS every 20 ms), and for the
relay also that of the PostgreSQL backends serving it (psutil, on this machine: reading and
marking the rows; the bare produce reads them before it is timed). The broker's CPU is not
counted (the same messages reach it either way). Medians over the runs are printed, then a JSON
line.

With ``--rates 50 200`` it measures instead a relay that keeps up: ``manage.py relay_outbox`` as a
process of its own (so that its CPU is its own: psutil, every thread) while this process commits
one event per transaction at each rate for ``--seconds``, and a consumer of the topic here
(``poll`` and then what is already fetched, as the project's consumers read) notes when each
arrived. Printed per rate: commit -> consumer p50/p99 (``time.time()`` after the commit to the
arrival: linger.ms, the acknowledgement and the fetch included) and the relay's CPU per event;
and the relay's CPU over ``--seconds`` of idling, before the first rate.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scratch import scratch_environment  # noqa: E402

TASKS = 5000


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def fill_backlog(rows):
    """Commit ``rows`` outbox rows of TASKS tasks in id order."""
    from django.db import connection

    from events.outbox import serialise
    from testing.factories import sync_task_changed

    keys = [str(uuid.UUID(int=i + 1)) for i in range(TASKS)]
    with connection.cursor() as cursor:
        # The runs VACUUM it themselves; an autovacuum worker (another role's backend) would keep
        # the scratch database from being dropped at the end.
        cursor.execute("ALTER TABLE events_outboxevent SET (autovacuum_enabled = false)")
    with connection.cursor() as cursor, cursor.copy(
        "COPY events_outboxevent (event_id, event_type, topic, key, payload, created_at, park_reason)"
        " FROM STDIN"
    ) as copy:
        for n in range(rows):
            key = keys[n % TASKS]
            event = sync_task_changed(key, description="x" * 400)
            copy.write_row([event["event_id"], event["event_type"], "task-updates", key, serialise(event), "now", ""])


def make_unsent():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("UPDATE events_outboxevent SET sent_at = NULL")
        cursor.execute("VACUUM ANALYZE events_outboxevent")


def relay_run(rows):
    from django.db import connection

    from events.relay.loop import OutboxRelay
    from testing.waits import wait_until

    def drained():
        with connection.cursor() as cursor:  # served by the outbox_pending index
            cursor.execute("SELECT NOT EXISTS (SELECT 1 FROM events_outboxevent WHERE sent_at IS NULL)")
            return cursor.fetchone()[0]

    make_unsent()
    stop = threading.Event()
    database_cpu = backends_cpu_seconds()
    cpu, started = cpu_seconds(), time.monotonic()
    relay = OutboxRelay(stop=stop)
    thread = threading.Thread(target=relay.run, name="bench-relay")
    thread.start()
    try:
        wait_until(drained, 600, "the relay draining the backlog", interval=0.02)
        seconds, cpu = time.monotonic() - started, cpu_seconds() - cpu
        database_cpu = backends_cpu_seconds(since=database_cpu)  # before the relay's connections close
    finally:
        stop.set()
        thread.join(60)
    return {"seconds": seconds, "events_per_s": rows / seconds, "cpu_us_per_event": cpu / rows * 1e6,
            "database_cpu_us_per_event": database_cpu / rows * 1e6}


def backends_cpu_seconds(since=None):
    """{pid: CPU seconds} of the PostgreSQL backends connected to this database (but this thread's);
    with ``since`` (an earlier answer), the CPU they spent after it, summed."""
    import psutil
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        pids = [pid for (pid,) in cursor.fetchall()]
    now = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:  # gone meanwhile
            continue
        now[pid] = times.user + times.system
    if since is None:
        return now
    return sum(seconds - since.get(pid, 0.0) for pid, seconds in now.items())


def bare_run(rows, data):
    from confluent_kafka import Producer

    from events.core.headers import EVENT_ID, EVENT_TYPE
    from events.topics import topic_name
    from events.transports.kafka.config import producer_config

    topic = topic_name("task-updates")
    cpu, started = cpu_seconds(), time.monotonic()
    producer = Producer(producer_config())
    for key, payload, event_type, event_id in data:
        while True:
            try:
                producer.produce(topic, key=key.encode(), value=payload.encode(),
                                 headers=[(EVENT_TYPE, event_type.encode()), (EVENT_ID, str(event_id).encode())])
                break
            except BufferError:
                producer.poll(0.1)
    if producer.flush(600):
        raise TimeoutError("the bare producer left messages unacknowledged after 600 s")
    seconds, cpu = time.monotonic() - started, cpu_seconds() - cpu
    return {"seconds": seconds, "events_per_s": rows / seconds, "cpu_us_per_event": cpu / rows * 1e6}


def drain(rows=50_000, repeat=3):
    """Drain rate and CPU per event of the relay and of a bare produce (medians over ``repeat``
    interleaved runs each); returns them and their ratio as a dict."""
    with scratch_environment("benchrelay"):
        from events.models import OutboxEvent

        print(f"committing a backlog of {rows:,} outbox rows …", flush=True)
        fill_backlog(rows)
        data = list(OutboxEvent.objects.order_by("id").values_list("key", "payload", "event_type", "event_id"))
        runs = {"relay": [], "bare": []}
        for number in range(1, repeat + 1):
            for name, run in (("relay", lambda: relay_run(rows)), ("bare", lambda: bare_run(rows, data))):
                runs[name].append(run())
                run_result = runs[name][-1]
                database = run_result.get("database_cpu_us_per_event")
                print(f"  run {number} {name:<5}: {run_result['events_per_s']:>9,.0f} events/s, "
                      f"{run_result['cpu_us_per_event']:6.1f} µs CPU/event"
                      + ("" if database is None else f" (+ {database:.1f} µs in PostgreSQL)"), flush=True)
    result = {"rows": rows, "repeat": repeat}
    for name, measured in runs.items():
        result[name] = {field: statistics.median(run[field] for run in measured) for field in measured[0]}
    # Each relay run next to the bare run that follows it (same conditions, back to back).
    result["relay_vs_bare"] = statistics.median(
        relay["events_per_s"] / bare["events_per_s"] for relay, bare in zip(runs["relay"], runs["bare"])
    )
    return result


def steady(rates, seconds):
    """The relay process at each steady rate of commits: latency to a consumer and its CPU."""
    import psutil
    from confluent_kafka import OFFSET_END, Consumer, TopicPartition

    def cpu(process):
        times = process.cpu_times()
        return times.user + times.system

    with scratch_environment("benchrelay") as env:
        from django.db import transaction

        from events.core.headers import EVENT_ID
        from events.outbox import emit
        from events.topics import topic_name
        from events.transports.kafka.config import client_config
        from testing.factories import sync_task_changed
        from testing.processes import Process, manage
        from testing.stats import percentile
        from testing.waits import wait_until

        topic = topic_name("task-updates")
        consumer = Consumer(client_config(**{"group.id": "bench-relay-observer", "enable.auto.commit": False}))
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, partition, OFFSET_END) for partition in partitions])
        arrived, stop = {}, threading.Event()

        def observe():
            while not stop.is_set():
                first = consumer.poll(0.1)
                for message in [first, *consumer.consume(500, timeout=0)] if first is not None else []:
                    if not message.error():
                        arrived.setdefault(dict(message.headers())[EVENT_ID].decode(), time.time())

        def commit(count, rate):
            committed = {}
            started = time.monotonic()
            for n in range(count):
                key = str(uuid.UUID(int=n % TASKS + 1))
                event = sync_task_changed(key)
                with transaction.atomic():
                    emit(event, key=key)
                committed[event["event_id"]] = time.time()
                time.sleep(max(0.0, started + (n + 1) / rate - time.monotonic()))
            return committed

        observer = threading.Thread(target=observe, name="bench-observer")
        observer.start()
        relay = Process(manage("relay_outbox"), os.devnull, env).start()
        results = {}
        try:
            process = psutil.Process(relay.process.pid)
            warm_up = commit(10, 10)  # the producer is created at the first row
            wait_until(lambda: warm_up.keys() <= arrived.keys(), 120, "the relay publishing the warm-up")
            before = cpu(process)
            time.sleep(seconds)  # idling is what is measured here
            results["idle_cpu_ms_per_s"] = (cpu(process) - before) / seconds * 1000
            print(f"  relay idle: {results['idle_cpu_ms_per_s']:.2f} ms CPU per second", flush=True)
            for rate in rates:
                before = cpu(process)
                committed = commit(int(rate * seconds), rate)
                wait_until(lambda: committed.keys() <= arrived.keys(), 120, f"the events of {rate}/s arriving")
                relay_cpu = cpu(process) - before
                latencies = [(arrived[event_id] - at) * 1000 for event_id, at in committed.items()]
                results[rate] = {"p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99),
                                 "relay_cpu_ms_per_event": relay_cpu / len(committed) * 1000}
                print(f"  {rate:>6g}/s: commit -> consumer p50 {results[rate]['p50_ms']:.1f} ms, "
                      f"p99 {results[rate]['p99_ms']:.1f} ms; relay CPU {results[rate]['relay_cpu_ms_per_event']:.2f} "
                      "ms per event", flush=True)
        finally:
            relay.stop()
            stop.set()
            observer.join(10)
            consumer.close()
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rates", type=float, nargs="+", help="instead: a relay keeping up with these commits/s")
    parser.add_argument("--seconds", type=float, default=6.0, help="with --rates: how long each rate (and idling) lasts")
    args = parser.parse_args(argv)
    if args.rates:
        print(json.dumps(steady(args.rates, args.seconds)))
        return 0
    result = drain(args.rows, args.repeat)
    print(f"\nDrain of a {args.rows:,}-row backlog (medians of {args.repeat} interleaved runs)")
    print(f"{'publisher':<26}{'events/s':>10}{'CPU µs/event':>14}{'+ PostgreSQL':>14}")
    for name, label in (("relay", "relay (OutboxRelay)"), ("bare", "bare idempotent produce")):
        database = result[name].get("database_cpu_us_per_event")
        print(f"{label:<26}{result[name]['events_per_s']:>10,.0f}{result[name]['cpu_us_per_event']:>14.1f}"
              f"{'' if database is None else f'{database:.1f}':>14}")
    print(f"relay / bare (median of pairs): {result['relay_vs_bare']:.2f}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
