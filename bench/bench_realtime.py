"""End-to-end latency of live sync: API response -> the change at a second WebSocket client.

    DATABASE_URL=... python bench/bench_realtime.py [--rates 50 500] [--seconds 10] [--web-workers 1]

Starts the real processes on the configured (migrated) database, in a throw-away topic, group
and channel-layer namespace: uvicorn (HTTP + WebSocket, as in the Procfile), relay_outbox and
run_consumer realtime. One user; client A creates tasks through the REST API at a fixed rate
(open loop: requests start on schedule whether or not earlier ones have answered), client B
holds a WebSocket of the same user. For each task, latency = the moment B received its
sync.task_changed minus the moment A got the 201. Negative values happen (the push can beat
the HTTP response) and are kept. Prints, per rate: the rate achieved, p50/p90/p99/max, and how
many changes never reached B. The bench user (and so its tasks) and the topics are removed
afterwards.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "todo_project.settings")
PREFIX = f"bench-{uuid.uuid4().hex[:8]}-"
os.environ["KAFKA_TOPIC_PREFIX"] = os.environ["KAFKA_GROUP_PREFIX"] = os.environ["CHANNEL_LAYER_PREFIX"] = PREFIX

import django  # noqa: E402

django.setup()

import logging  # noqa: E402

import httpx  # noqa: E402
import websockets  # noqa: E402

from events.transports.kafka.admin import create_topics, delete_topics  # noqa: E402
from events.topics import TOPICS, topic_name  # noqa: E402
from tasks.accounts.tokens import issue  # noqa: E402
from tasks.models import User  # noqa: E402
from tasks.accounts.tokens import issue  # noqa: E402
from testing.ports import free_port  # noqa: E402
from testing.processes import serves  # noqa: E402
from testing.stats import percentile  # noqa: E402
from testing.waits import wait_until  # noqa: E402

MAX_IN_FLIGHT = 256
DELIVERY_GRACE_SECONDS = 15


def start_processes(port, web_workers, log_dir):
    # A database connection pool, as the Procfile gives the web process (without one, every
    # request opens a connection).
    env = {"DATABASE_POOL_MAX_SIZE": "10", **os.environ, "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "WARNING"}
    commands = {
        "web": [sys.executable, "-m", "uvicorn", "todo_project.asgi:application", "--host", "127.0.0.1",
                "--port", str(port), "--no-access-log", "--workers", str(web_workers),
                # Idle keep-alive connections of the client's pool must not be closed under it.
                "--timeout-keep-alive", "120"],
        "relay": [sys.executable, "manage.py", "relay_outbox"],
        "realtime": [sys.executable, "manage.py", "run_consumer", "realtime"],
    }
    return {
        name: subprocess.Popen(command, cwd=REPO, env=env, stdout=open(log_dir / f"{name}.log", "w"), stderr=subprocess.STDOUT)
        for name, command in commands.items()
    }


class Receiver:
    """Client B: the WebSocket, recording when each task's change arrived."""

    def __init__(self):
        self.arrived = {}
        self.changed = asyncio.Event()

    async def run(self, url, token):
        async with websockets.connect(url, additional_headers={"Authorization": f"Token {token}"}, max_queue=None) as socket:
            self.connected.set()
            async for raw in socket:
                now = time.perf_counter()
                message = json.loads(raw)
                if message.get("event_type") == "sync.task_changed":
                    self.arrived.setdefault(message["data"]["task_id"], now)
                    self.changed.set()

    async def wait_for(self, task_ids, timeout):
        deadline = time.perf_counter() + timeout
        while not all(task_id in self.arrived for task_id in task_ids) and time.perf_counter() < deadline:
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), max(deadline - time.perf_counter(), 0.01))
            except TimeoutError:
                pass


async def create_tasks(client, rate, count, answered):
    """Client A: POST /api/tasks/ on a fixed schedule; record when each 201 arrived."""
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    errors = []

    async def create(index):
        async with gate:
            try:
                response = await client.post("/api/tasks/", json={"title": f"Bench task {index}", "tags": ["bench"]})
            except httpx.TransportError as exc:
                errors.append(type(exc).__name__)
                return
            if response.status_code != 201:
                errors.append(response.status_code)
                return
            answered[response.json()["id"]] = time.perf_counter()

    started = time.perf_counter()
    pending = []
    for index in range(count):
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.create_task(create(index)))
    await asyncio.gather(*pending)
    return time.perf_counter() - started, errors


async def measure(port, token, rates, seconds):
    receiver = Receiver()
    receiver.connected = asyncio.Event()
    listening = asyncio.create_task(receiver.run(f"ws://127.0.0.1:{port}/ws/sync/", token))
    await asyncio.wait_for(receiver.connected.wait(), 30)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Token {token}"},
                                 limits=limits, timeout=60) as client:
        # Warm-up: the bridge joins its consumer group with the first changes.
        warm = {}
        await create_tasks(client, 10, 5, warm)
        await receiver.wait_for(list(warm), 90)
        if not all(task_id in receiver.arrived for task_id in warm):
            raise SystemExit("warm-up changes never reached the WebSocket; see the process logs")
        results = []
        for rate in rates:
            answered = {}
            elapsed, errors = await create_tasks(client, rate, int(rate * seconds), answered)
            await receiver.wait_for(list(answered), DELIVERY_GRACE_SECONDS)
            latencies = [(receiver.arrived[t] - answered[t]) * 1000 for t in answered if t in receiver.arrived]
            missing = sum(1 for t in answered if t not in receiver.arrived)
            results.append((rate, len(answered), elapsed, errors, latencies, missing))
    listening.cancel()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[50, 500], help="changes per second (default 50 500)")
    parser.add_argument("--seconds", type=float, default=10, help="duration of each rate (default 10)")
    parser.add_argument("--web-workers", type=int, default=1, help="uvicorn worker processes (default 1, as in the Procfile)")
    args = parser.parse_args()

    logging.getLogger("httpx").setLevel(logging.WARNING)  # a log line per request would cost the client CPU
    log_dir = Path(f"/tmp/{PREFIX}logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    create_topics()
    user = User.objects.create_user(f"{PREFIX}user", password=uuid.uuid4().hex)
    token = issue(user)
    port = free_port()
    processes = start_processes(port, args.web_workers, log_dir)
    try:
        wait_until(lambda: serves(f"http://127.0.0.1:{port}"), 60, "the web process (see its log)")
        results = asyncio.run(measure(port, token, args.rates, args.seconds))
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait(30)
        user.delete()
        delete_topics([topic_name(spec.base_name) for spec in TOPICS])

    print(f"API response -> WebSocket message at a second client; {args.seconds:g} s per rate, "
          f"{args.web_workers} web worker(s), logs in {log_dir}")
    print(f"{'target/s':>9} {'achieved/s':>10} {'changes':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'missing':>8} {'errors':>7}")
    for rate, count, elapsed, errors, latencies, missing in results:
        if not latencies:
            print(f"{rate:>9g} {count / elapsed:>10.1f} {count:>8} {'-':>8} {'-':>8} {'-':>8} {'-':>8} {missing:>8} {len(errors):>7}")
            continue
        print(
            f"{rate:>9g} {count / elapsed:>10.1f} {count:>8} {statistics.median(latencies):>8.1f} "
            f"{percentile(latencies, 0.90):>8.1f} {percentile(latencies, 0.99):>8.1f} {max(latencies):>8.1f} "
            f"{missing:>8} {len(errors):>7}"
        )


if __name__ == "__main__":
    main()
