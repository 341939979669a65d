"""The load generator of bench/run_all.py: a process of its own, so that its CPU is not the system's.

    python bench/load.py --port 8000 --token T --topic task-events --bootstrap 127.0.0.1:9092

It reads one JSON command a line on stdin and answers with JSON lines on stdout. Each command
first warms up, then prints ``{"ready": ...}`` and waits for a ``go`` line (the harness reads the
system's CPU in between), measures, and prints ``{"result": ...}`` with the CPU time this process
spent on the measured part (``load_cpu_s``):

- ``{"op": "throughput", "clients": 8, "seconds": 10[, "tokens": [...]]}``: closed loop, ``clients``
  keep-alive connections each creating tasks back to back, as the user of ``--token`` or, with
  ``tokens``, client i as the user of ``tokens[i % len(tokens)]``; creates/s and response time
  from the send.
- ``{"op": "freshness", "rate": 200, "seconds": 6}``: open loop, one create due every 1/rate s on
  up to ``CONNECTIONS`` keep-alive connections; a create that finds no free connection before the
  window ends is not sent (counted as ``not_sent``). For each answered create: when its
  ``task.created`` reached a Kafka consumer of ``--topic`` and when its ``sync.task_changed``
  reached a WebSocket client of the same user, measured (a) from the moment the request was
  written to the socket and (b) from the task's ``created_at`` in the response: the API sets it
  when it inserts the row, inside the request's transaction, a few ms before the commit, so (b) is
  commit-to-arrival plus that sliver. Neither can be negative: both instants precede the arrival.
  Every instant is ``time.time()`` of this machine (the server's clock is the same clock).

The HTTP client is a few lines of asyncio streams (HTTP/1.1, keep-alive): a general client
would cost this process several times the CPU per request, CPU the system under test then lacks.
"""

import argparse
import asyncio
import json
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testing.stats import percentile  # noqa: E402

CONNECTIONS = 64
ARRIVAL_GRACE_SECONDS = 30
CREATE_BODY = {"title": "bench", "priority": 2, "tags": ["bench"]}


class Connection:
    """One keep-alive HTTP/1.1 connection; ``post`` returns (status, body, the instant it was sent)."""

    def __init__(self, port, token):
        self.port = port
        self.auth = f"Authorization: Token {token}\r\n" if token else ""
        self.reader = self.writer = None

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    def close(self):
        if self.writer is not None:
            self.writer.close()

    async def post(self, path, payload):
        body = json.dumps(payload).encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: application/json\r\n"
                f"{self.auth}Content-Length: {len(body)}\r\n\r\n").encode()
        try:
            sent = time.time()
            self.writer.write(head + body)
            status, headers = self._head(await self.reader.readuntil(b"\r\n\r\n"))
            if "content-length" in headers:
                content = await self.reader.readexactly(int(headers["content-length"]))
            else:  # chunked
                content = b""
                while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                    content += (await self.reader.readexactly(size + 2))[:-2]
                await self.reader.readuntil(b"\r\n")
            if headers.get("connection") == "close":
                self.close()
                await self.open()
            return status, content, sent
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            self.close()
            await self.open()
            return None, b"", sent

    @staticmethod
    def _head(raw):
        lines = raw.decode("latin-1").split("\r\n")
        headers = dict((k.strip().lower(), v.strip()) for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line))
        return int(lines[0].split()[1]), headers


def figures(values_s):
    """p50/p99 in ms of a list of seconds, or None for none."""
    if not values_s:
        return {"p50_ms": None, "p99_ms": None}
    return {"p50_ms": round(percentile(values_s, .5) * 1000, 1), "p99_ms": round(percentile(values_s, .99) * 1000, 1)}


def timestamp(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Observers:
    """A Kafka consumer of the task topic and a WebSocket client of the user: when each task arrived."""

    def __init__(self, args):
        self.args = args
        self.on_kafka, self.on_socket = {}, {}
        self.stopped = threading.Event()

    async def start(self):
        from confluent_kafka import OFFSET_END, Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.args.bootstrap, "group.id": "bench-load-observer",
                             "enable.auto.commit": False})
        partitions = consumer.list_topics(self.args.topic, timeout=10).topics[self.args.topic].partitions
        consumer.assign([TopicPartition(self.args.topic, p, OFFSET_END) for p in partitions])
        consumer.poll(1.0)
        self.reader = threading.Thread(target=self._consume, args=(consumer,), daemon=True)
        self.reader.start()
        connected = asyncio.Event()
        self.listening = asyncio.create_task(self._listen(connected))
        await asyncio.wait_for(connected.wait(), 30)

    def _consume(self, consumer):
        while not self.stopped.is_set():
            # consume(n, timeout) waits out its timeout unless n messages come: the arrival time
            # would be late by up to the timeout. poll() returns at the first message.
            first = consumer.poll(0.1)
            if first is None:
                continue
            for message in [first, *consumer.consume(num_messages=500, timeout=0)]:
                now = time.time()
                if not message.error() and dict(message.headers() or []).get("event_type") == b"task.created":
                    self.on_kafka.setdefault(message.key().decode(), now)
        consumer.close()

    async def _listen(self, connected):
        import websockets

        async with websockets.connect(f"ws://127.0.0.1:{self.args.port}/ws/sync/", max_queue=None,
                                      additional_headers={"Authorization": f"Token {self.args.token}"}) as socket:
            connected.set()
            async for raw in socket:
                now = time.time()
                message = json.loads(raw)
                if message.get("event_type") == "sync.task_changed":
                    self.on_socket.setdefault(message["data"]["task_id"], now)

    async def arrived(self, task_ids):
        deadline = time.monotonic() + ARRIVAL_GRACE_SECONDS
        while time.monotonic() < deadline and not all(t in self.on_kafka and t in self.on_socket for t in task_ids):
            await asyncio.sleep(0.05)


class Load:
    def __init__(self, args):
        self.args = args
        self.observers = None

    async def handshake(self, **ready):
        print(json.dumps({"ready": ready}), flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if line.strip() != "go":
            raise SystemExit(f"expected 'go', got {line!r}")

    async def throughput(self, clients, seconds, warmup=2.0, tokens=None):
        tokens = tokens or [self.args.token]
        connections = [await Connection(self.args.port, tokens[i % len(tokens)]).open() for i in range(clients)]

        async def client(connection, until, latencies, statuses):
            while time.monotonic() < until:
                status, _, sent = await connection.post("/api/tasks/", CREATE_BODY)
                latencies.append(time.time() - sent)
                statuses[status] = statuses.get(status, 0) + 1

        await asyncio.gather(*(client(c, time.monotonic() + warmup, [], {}) for c in connections))
        await self.handshake(op="throughput")
        latencies, statuses = [], {}
        cpu, began = time.process_time(), time.monotonic()
        await asyncio.gather(*(client(c, began + seconds, latencies, statuses) for c in connections))
        elapsed = time.monotonic() - began
        for connection in connections:
            connection.close()
        created = statuses.get(201, 0)
        return {"clients": clients, "users": min(clients, len(tokens)), "seconds": round(elapsed, 2), "changes": created,
                "requests_per_s": round(created / elapsed, 1), **figures(latencies),
                "errors": {str(k): v for k, v in statuses.items() if k != 201},
                "load_cpu_s": round(time.process_time() - cpu, 2)}

    async def open_loop(self, rate, seconds, idle):
        """Creates due every 1/rate s for ``seconds``: ({task_id: (sent, answered, created_at)}, errors, how
        many were not sent, the wall-clock start)."""
        answered, errors, not_sent = {}, {}, 0
        began, began_at = time.monotonic(), time.time()
        window_end = began + seconds

        async def create():
            nonlocal not_sent
            try:
                connection = await asyncio.wait_for(idle.get(), max(0.0, window_end - time.monotonic()))
            except TimeoutError:
                not_sent += 1
                return
            try:
                status, content, sent = await connection.post("/api/tasks/", CREATE_BODY)
                if status == 201:
                    task = json.loads(content)
                    answered[task["id"]] = (sent, time.time(), timestamp(task["created_at"]))
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1
            finally:
                idle.put_nowait(connection)

        pending = []
        for index in range(int(rate * seconds)):
            delay = began + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(create()))
        await asyncio.gather(*pending)
        return answered, errors, not_sent, began_at

    async def freshness(self, rate, seconds):
        idle = asyncio.Queue()
        for _ in range(CONNECTIONS):
            idle.put_nowait(await Connection(self.args.port, self.args.token).open())
        if self.observers is None:
            self.observers = Observers(self.args)
            await self.observers.start()
            warm, _, _, _ = await self.open_loop(10, 1, idle)  # the consumers and the bridge have their partitions
            await self.observers.arrived(list(warm))
        await self.handshake(op="freshness", rate=rate)
        cpu = time.process_time()
        answered, errors, not_sent, began = await self.open_loop(rate, seconds, idle)
        await self.observers.arrived(list(answered))
        load_cpu = time.process_time() - cpu
        while not idle.empty():
            idle.get_nowait().close()
        last = max((answer for _, answer, _ in answered.values()), default=began)
        row = {"target_per_s": rate, "seconds": seconds, "changes": len(answered),
               "achieved_per_s": round(len(answered) / (last - began), 1) if answered else 0.0,
               "not_sent": not_sent, "errors": errors,
               "response": figures([answer - sent for sent, answer, _ in answered.values()])}
        for label, arrivals in (("kafka", self.observers.on_kafka), ("websocket", self.observers.on_socket)):
            seen = [t for t in answered if t in arrivals]
            row[label] = {"missing": len(answered) - len(seen),
                          "from_sent": figures([arrivals[t] - answered[t][0] for t in seen]),
                          "from_commit": figures([arrivals[t] - answered[t][2] for t in seen])}
        row["load_cpu_s"] = round(load_cpu, 2)
        return row


async def serve(args):
    load = Load(args)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command = json.loads(line)
        op = command.pop("op")
        result = await getattr(load, op)(**command)
        print(json.dumps({"result": result}), flush=True)
    if load.observers is not None:
        load.observers.stopped.set()
        load.observers.listening.cancel()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--topic", required=True, help="the task-events topic's full name")
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
