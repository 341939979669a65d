"""Benchmark of the write path: create-task requests per second, and commit-to-Kafka latency.

    python bench/bench_write_path.py [--seconds 20] [--clients 8] [--rate 50]

Needs the infrastructure up (`make infra`). It makes a scratch database and topic prefix, starts
the web server (as in the Procfile) and one relay, and then:

1. throughput: ``--clients`` keep-alive HTTP clients create tasks as fast as they can for
   ``--seconds``; prints requests/s and the response-time percentiles;
2. latency: one client creates ``--rate`` tasks per second for ``--seconds``; prints p50/p99/max
   of the relay's commit-to-Kafka latency (from each outbox row's ``created_at``, written just
   before the commit, to its ``sent_at``, when Kafka acknowledged it) and, end to end, of the
   time from the HTTP response to a consumer receiving the task.created message.

Everything it made is dropped at the end.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from http.client import HTTPConnection
from pathlib import Path

from scratch import REPO, scratch_environment, stop_all

from testing.ports import free_port
from testing.stats import percentile
from testing.waits import wait_until


class Api:
    def __init__(self, port, token=None):
        self.connection = HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Token {token}"

    def post(self, path, body):
        self.connection.request("POST", path, json.dumps(body), self.headers)
        response = self.connection.getresponse()
        payload = response.read()
        if response.status >= 300:
            raise RuntimeError(f"POST {path}: {response.status} {payload[:200]!r}")
        return json.loads(payload)


def answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def throughput(port, token, seconds, clients):
    counts, latencies, errors = [0] * clients, [], []
    deadline = time.monotonic() + seconds

    def client(index):
        api = Api(port, token)
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                api.post("/api/tasks/", {"title": f"bench {index}", "priority": 2, "tags": ["bench"]})
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(exc)
                api = Api(port, token)
                continue
            latencies.append(time.monotonic() - started)
            counts[index] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return sum(counts) / elapsed, latencies, errors


def relay_latency(port, token, seconds, rate):
    from confluent_kafka import OFFSET_END, Consumer, TopicPartition

    from events.transports.kafka.config import client_config
    from events.topics import topic_name

    consumer = Consumer(client_config(**{"group.id": "bench", "enable.auto.commit": False}))
    name = topic_name("task-events")
    partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
    consumer.assign([TopicPartition(name, p, OFFSET_END) for p in partitions])
    consumer.poll(1.0)  # join the partitions before the first create
    arrived = {}
    stop = threading.Event()

    def consume():
        while not stop.is_set():
            message = consumer.poll(0.1)
            if message is None or message.error():
                continue
            now = time.time()
            if message.headers() and dict(message.headers()).get("event_type") == b"task.created":
                arrived[message.key().decode()] = now

    reader = threading.Thread(target=consume)
    reader.start()
    api = Api(port, token)
    committed = {}
    interval = 1.0 / rate
    next_at = time.monotonic()
    deadline = next_at + seconds
    while next_at < deadline:
        time.sleep(max(0.0, next_at - time.monotonic()))
        task = api.post("/api/tasks/", {"title": "steady", "priority": 3})
        committed[task["id"]] = time.time()
        next_at += interval
    wait_until(lambda: set(committed) <= set(arrived), 60, "every task.created on Kafka")
    stop.set()
    reader.join()
    consumer.close()
    end_to_end = [arrived[task_id] - committed[task_id] for task_id in committed]

    from events.models import OutboxEvent

    # The relay's own view, on one clock: the row's insert (inside the request's transaction,
    # just before its commit) to the moment Kafka acknowledged it (sent_at).
    rows = OutboxEvent.objects.filter(key__in=list(committed), event_type="task.created")
    relay = [(sent_at - created_at).total_seconds() for created_at, sent_at in rows.values_list("created_at", "sent_at")]
    return relay, end_to_end


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rate", type=float, default=50, help="creates per second in the latency phase")
    args = parser.parse_args()

    # As the Procfile's web process: a connection pool.
    pool = os.environ.get("DATABASE_POOL_MAX_SIZE", "10")
    with scratch_environment("bench", DATABASE_POOL_MAX_SIZE=pool) as env:
        python = sys.executable
        port = free_port()
        uvicorn = str(Path(python).with_name("uvicorn"))
        processes = [
            subprocess.Popen(
                [uvicorn, "todo_project.asgi:application", "--host", "127.0.0.1", "--port", str(port),
                 "--no-access-log", "--log-level", "warning"], cwd=REPO, env=env),
            subprocess.Popen([python, "manage.py", "relay_outbox"], cwd=REPO, env=env),
        ]
        try:
            wait_until(lambda: answers(port), 60, "the web server")
            registered = Api(port).post(
                "/api/auth/register/", {"username": f"bench-{uuid.uuid4().hex[:8]}", "password": "bench-passphrase-1"}
            )
            token = registered["token"]

            print(f"throughput: {args.clients} clients for {args.seconds:.0f} s …", flush=True)
            rate, latencies, errors = throughput(port, token, args.seconds, args.clients)
            print(f"  create-task: {rate:.0f} requests/s; response time p50 {percentile(latencies, .5) * 1000:.1f} ms, "
                  f"p99 {percentile(latencies, .99) * 1000:.1f} ms; {len(errors)} errors")

            print(f"relay latency: {args.rate:.0f} creates/s for {args.seconds:.0f} s …", flush=True)
            relay, end_to_end = relay_latency(port, token, args.seconds, args.rate)
            for label, delays in [
                ("commit-to-Kafka (outbox row written -> Kafka acknowledged, relay clock)", relay),
                ("HTTP response received -> event consumed from Kafka", end_to_end),
            ]:
                print(f"  {label}, {len(delays)} events: p50 {statistics.median(delays) * 1000:.1f} ms, "
                      f"p99 {percentile(delays, .99) * 1000:.1f} ms, max {max(delays) * 1000:.1f} ms")
        finally:
            stop_all(processes)

if __name__ == "__main__":
    main()
